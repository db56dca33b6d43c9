//! `Attach` and `Exec`: a caller's terminal (or plain streams) joined to a
//! command in a dyno.
//!
//! Both end at the same channel, a Unix stream socket whose far end is the
//! run's shim (`attach.sock`, an attached one-off) or the exec helper
//! (`dynoagent exec`, a socketpair): it hands over the command's pty master
//! (tag `t`) or its stdin, stdout and stderr pipes (tag `p`) by
//! `SCM_RIGHTS`, takes signal numbers as single bytes (pipes mode), and
//! sends the command's exit status as an init report frame when it ended.
//! Closing the channel is the caller going away: the far end hangs the
//! command up. [`relay`] pumps the fds to and from the gRPC stream; the
//! agent holds the pty master or pipes only while a caller is attached.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use dyno_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::agent::{AgentService, Stream_};
use super::{launch, validate};
use crate::engine::{Attach, Paths};
use crate::error::{Error, Reason, Result};
use crate::os::report::{FRAME_LEN, Report};
use crate::os::tty::AsyncIo as Fd;
use crate::os::{self, ExitStatus};
use crate::runs::RunDir;
use crate::supervisor::State;

/// How long the agent waits for a one-off's shim to serve `attach.sock` once
/// the one-off is past `starting` (while it starts, the engine's own start
/// path decides: a slow slug fetch or a slow host is not a failure here).
const CONNECT_WAIT: Duration = Duration::from_secs(60);

/// How long an attached one-off's exit status waits for the dyno to be
/// `down` in the engine.
const SETTLE_WAIT: Duration = Duration::from_secs(10);

/// After the command's status came, output still open is read this long
/// (processes of an exec session that outlive it may hold the pty).
const DRAIN: Duration = Duration::from_secs(2);

/// The command's fds, as handed over.
enum Handover {
    Tty(Fd),
    Pipes { stdin: Option<Fd>, stdout: Fd, stderr: Fd },
}

/// The first message of a session stream.
async fn first<T: prost::Message + Default>(input: &mut Streaming<T>) -> Result<T, Status> {
    match input.message().await {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(Error::invalid("start", "the stream ended before its first message").into()),
        Err(s) => Err(super::remap(&s).unwrap_or(s)),
    }
}

/// Who opened a session, for the dyno's log: the peer's uid on the Unix
/// socket, else the TCP peer.
fn who<T>(request: &Request<T>) -> String {
    if let Some(info) = request.extensions().get::<tonic::transport::server::UdsConnectInfo>()
        && let Some(cred) = &info.peer_cred
    {
        return format!("uid {}", cred.uid());
    }
    match request.remote_addr() {
        Some(addr) => format!("a TLS client at {addr}"),
        None => "an unknown caller".into(),
    }
}

/// `Attach`: starts the one-off of the first message and joins its caller
/// to it.
pub(super) async fn attach(
    svc: &AgentService,
    request: Request<Streaming<pb::AttachRequest>>,
) -> Result<Response<Stream_<pb::SessionOutput>>, Status> {
    let mut input = request.into_inner();
    let start = match first(&mut input).await?.request {
        Some(pb::attach_request::Request::Start(s)) => s,
        _ => return Err(Error::invalid("start", "the first message must be start").into()),
    };
    let mut req = start.start.ok_or_else(|| Error::invalid("start.start", "is missing"))?;
    if !req.name.is_empty() {
        return Err(Error::invalid(
            "start.start.name",
            "an attached one-off is named by the agent: leave it empty",
        )
        .into());
    }
    let (rows, cols) = validate::terminal_size("start.size", start.size.as_ref())?;
    req.one_off = true;
    let attach = Attach {
        tty: start.tty,
        rows,
        cols,
    };
    let view = launch::start_attached(&svc.engine, &svc.cfg, &svc.slugs, req, attach).await?;
    let runs = Paths::new(&svc.cfg.state_dir).runs;
    let conn = connect(svc, &runs, &view.app, &view.name).await?;
    let (tx, rx) = mpsc::channel(64);
    let _ = tx
        .send(Ok(pb::SessionOutput {
            output: Some(pb::session_output::Output::Started(super::dyno_pb(&view))),
        }))
        .await;
    let inputs = input_stream(input, |m: pb::AttachRequest| match m.request {
        Some(pb::attach_request::Request::Input(i)) => Ok(i),
        _ => Err(Error::invalid("input", "only the first message is start")),
    });
    let engine = svc.engine.clone();
    let (app, name) = (view.app.clone(), view.name.clone());
    tokio::spawn(async move {
        let settled = async move {
            // The caller learns the status once the one-off is `down`: a
            // `ps` right after `dynoctl run` shows it ended.
            let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
            while tokio::time::Instant::now() < deadline {
                match engine.get(&app, &name).await {
                    Ok(v) if v.state != State::Down => tokio::time::sleep(Duration::from_millis(20)).await,
                    _ => return,
                }
            }
        };
        if let Err(status) = session(conn, inputs, &tx, Some(Box::pin(settled))).await {
            let _ = tx.send(Err(status)).await;
        }
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

/// Connects to the one-off's `attach.sock` once its shim serves it.
async fn connect(svc: &AgentService, runs: &Path, app: &str, name: &str) -> Result<UnixStream> {
    let mut deadline = tokio::time::Instant::now() + CONNECT_WAIT;
    loop {
        let view = svc.engine.get(app, name).await?;
        if view.state == State::Starting {
            deadline = tokio::time::Instant::now() + CONNECT_WAIT;
        }
        if let Some(run_id) = &view.run_id
            && let Ok(conn) = UnixStream::connect(RunDir::new(runs, run_id).attach_sock()).await
        {
            return Ok(conn);
        }
        if view.state == State::Down {
            return Err(Error::FailedPrecondition(
                Reason::DynoNotRunning,
                format!("one-off {name} ended before it could be attached"),
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Internal(format!(
                "one-off {name} was not ready to attach within a minute of starting"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `Exec`: runs the first message's argv in the live dyno it names.
pub(super) async fn exec(
    svc: &AgentService,
    request: Request<Streaming<pb::ExecRequest>>,
) -> Result<Response<Stream_<pb::SessionOutput>>, Status> {
    let who = who(&request);
    let mut input = request.into_inner();
    let start = match first(&mut input).await?.request {
        Some(pb::exec_request::Request::Start(s)) => s,
        _ => return Err(Error::invalid("start", "the first message must be start").into()),
    };
    validate::dyno(&start.app, &start.name)?;
    validate::exec_argv("start.argv", &start.argv)?;
    let (rows, cols) = validate::terminal_size("start.size", start.size.as_ref())?;
    let view = svc.engine.get(&start.app, &start.name).await?;
    let live = matches!(view.state, State::Starting | State::Up) && view.pid.is_some();
    let Some(run_id) = view.run_id.as_ref().filter(|_| live) else {
        return Err(Error::FailedPrecondition(
            Reason::DynoNotRunning,
            format!("dyno {} of {} is not running", start.name, start.app),
        )
        .into());
    };
    let dir = RunDir::new(&Paths::new(&svc.cfg.state_dir).runs, run_id);
    let command = start
        .argv
        .iter()
        .map(|w| crate::ctl::shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    let line = format!("Starting exec session for {who}: {command}");
    if let Err(e) = crate::logs::append_runtime(&dir.log(), &start.name, &line, svc.cfg.log_max_bytes) {
        tracing::warn!(app = %start.app, dyno = %start.name, error = %e, "cannot log an exec session");
    }
    tracing::info!(app = %start.app, dyno = %start.name, %who, "exec session");
    let (conn, helper) = spawn_helper(&dir, start.tty, rows, cols, &command)?;
    let (tx, rx) = mpsc::channel(64);
    let inputs = input_stream(input, |m: pb::ExecRequest| match m.request {
        Some(pb::exec_request::Request::Input(i)) => Ok(i),
        _ => Err(Error::invalid("input", "only the first message is start")),
    });
    tokio::spawn(async move {
        let result = session(conn, inputs, &tx, None).await;
        // The helper ends once its command did (or hung it up).
        let out = helper.wait_with_output().await;
        if let Err(status) = result {
            let why = out
                .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
                .unwrap_or_default();
            let status = match why.as_str() {
                "" => status,
                why => Error::FailedPrecondition(Reason::ExecFailed, format!("exec: {why}")).into(),
            };
            let _ = tx.send(Err(status)).await;
        }
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

/// Starts `dynoagent exec` for the run in `dir`; returns the agent's end of
/// its channel and the helper.
fn spawn_helper(
    dir: &RunDir,
    tty: bool,
    rows: u16,
    cols: u16,
    command: &str,
) -> Result<(UnixStream, tokio::process::Child)> {
    let internal = |what: &str, e: io::Error| Error::Internal(format!("{what}: {e}"));
    let (ours, theirs) = os::tty::socketpair().map_err(|e| internal("socketpair", e))?;
    let exe = std::env::current_exe().map_err(|e| internal("the agent's own binary", e))?;
    let helper = tokio::process::Command::new(exe)
        .arg("exec")
        .arg(&dir.path)
        .arg(if tty { "tty" } else { "pipes" })
        .arg(format!("{rows}x{cols}"))
        .arg(command)
        .stdin(std::process::Stdio::from(theirs))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .env_clear()
        .spawn()
        .map_err(|e| internal("starting the exec helper", e))?;
    let ours = std::os::unix::net::UnixStream::from(ours);
    ours.set_nonblocking(true).map_err(|e| internal("channel", e))?;
    let conn = UnixStream::from_std(ours).map_err(|e| internal("channel", e))?;
    Ok((conn, helper))
}

type Inputs = mpsc::Receiver<Result<Option<pb::SessionInput>, Status>>;

/// The caller's messages after the first as `SessionInput`s: `Ok(None)` once
/// the caller half-closed its side (stdin's end), an error when the stream
/// broke or a message was wrong.
fn input_stream<T: Send + 'static>(
    mut input: Streaming<T>,
    pick: impl Fn(T) -> Result<pb::SessionInput> + Send + 'static,
) -> Inputs {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let item = match input.message().await {
                Ok(Some(m)) => pick(m).map(Some).map_err(Status::from),
                Ok(None) => Ok(None),
                Err(s) => Err(super::remap(&s).unwrap_or(s)),
            };
            let end = !matches!(item, Ok(Some(_)));
            if tx.send(item).await.is_err() || end {
                return;
            }
        }
    });
    rx
}

/// Receives the handover on the channel.
async fn handover(conn: &UnixStream) -> Result<Handover, Status> {
    let got = loop {
        conn.readable()
            .await
            .map_err(|e| Error::Internal(format!("session channel: {e}")))?;
        match conn.try_io(Interest::READABLE, || os::tty::recv_fds(conn.as_fd())) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => break other,
        }
    };
    let bad = || {
        Status::from(Error::Internal(
            "the session's command ended before it could be attached".into(),
        ))
    };
    match got {
        Ok(Some((b't', mut fds))) if fds.len() == 1 => Ok(Handover::Tty(fd(fds.remove(0))?)),
        Ok(Some((b'p', fds))) if fds.len() == 3 => {
            let mut it = fds.into_iter();
            let (i, o, e) = (it.next(), it.next(), it.next());
            match (i, o, e) {
                (Some(i), Some(o), Some(e)) => Ok(Handover::Pipes {
                    stdin: Some(fd(i)?),
                    stdout: fd(o)?,
                    stderr: fd(e)?,
                }),
                _ => Err(bad()),
            }
        }
        _ => Err(bad()),
    }
}

/// Pumps one session: the caller's input to the command, its output to the
/// caller, and its exit status last. Returns when the command's status was
/// sent, or when the caller went (dropping the channel hangs the command up).
async fn session(
    mut conn: UnixStream,
    mut inputs: Inputs,
    tx: &mpsc::Sender<Result<pb::SessionOutput, Status>>,
    settled: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
) -> Result<(), Status> {
    let hand = handover(&conn).await?;
    let (tty, mut stdin, stdout, stderr) = match hand {
        Handover::Tty(m) => (true, None, Some(m), None),
        Handover::Pipes { stdin, stdout, stderr } => (false, stdin, Some(stdout), Some(stderr)),
    };
    let (mut out, mut err) = (stdout, stderr);
    let mut inputs_open = true;
    let mut status: Option<ExitStatus> = None;
    let mut frame = [0u8; FRAME_LEN];
    let mut got = 0;
    let (mut obuf, mut ebuf) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
    let drain = tokio::time::sleep(Duration::from_secs(86400 * 365));
    tokio::pin!(drain);
    let send =
        |o: pb::session_output::Output| async move { tx.send(Ok(pb::SessionOutput { output: Some(o) })).await.is_ok() };
    loop {
        if status.is_some() && out.is_none() && err.is_none() {
            break;
        }
        tokio::select! {
            _ = tx.closed() => return Ok(()),
            item = inputs.recv(), if inputs_open => match item {
                Some(Ok(Some(i))) => {
                    apply(i, if tty { out.as_ref() } else { None }, &mut stdin, &mut conn).await?;
                }
                // Half-closed: the caller sends nothing more (its stdin ended).
                Some(Ok(None)) => {
                    inputs_open = false;
                    stdin = None;
                }
                Some(Err(status)) => return Err(status),
                None => return Ok(()),
            },
            n = read_some(out.as_ref(), &mut obuf) => match n {
                Some(n) => if !send(pb::session_output::Output::Stdout(obuf[..n].to_vec())).await { return Ok(()) },
                None => out = None,
            },
            n = read_some(err.as_ref(), &mut ebuf) => match n {
                Some(n) => if !send(pb::session_output::Output::Stderr(ebuf[..n].to_vec())).await { return Ok(()) },
                None => err = None,
            },
            n = conn.read(&mut frame[got..]), if status.is_none() => match n {
                Ok(0) | Err(_) => return Err(Error::Internal("the session ended without an exit status".into()).into()),
                Ok(n) => {
                    got += n;
                    if got == FRAME_LEN {
                        match Report::decode(&frame) {
                            Ok(Report::Exited(s)) => status = Some(s),
                            _ => return Err(Error::Internal("a bad exit frame on the session channel".into()).into()),
                        }
                        drain.as_mut().reset(tokio::time::Instant::now() + DRAIN);
                    }
                }
            },
            _ = &mut drain, if status.is_some() => break,
        }
    }
    let (code, signal) = match status {
        Some(ExitStatus::Code(c)) => (Some(c), None),
        Some(ExitStatus::Signal(s)) => (None, Some(s)),
        None => (None, None),
    };
    if let Some(settled) = settled {
        settled.await;
    }
    send(pb::session_output::Output::Exit(pb::SessionExit { code, signal })).await;
    Ok(())
}

/// Applies one input of the caller.
async fn apply(
    input: pb::SessionInput,
    master: Option<&Fd>,
    stdin: &mut Option<Fd>,
    conn: &mut UnixStream,
) -> Result<(), Status> {
    use pb::session_input::Input;
    let target = master.or(stdin.as_ref());
    match input.input {
        Some(Input::Stdin(bytes)) => {
            if let Some(fd) = target {
                // A command that stopped reading its stdin is its business.
                let _ = fd.write_all(&bytes).await;
            }
        }
        Some(Input::StdinEof(true)) => match master {
            Some(fd) => {
                let _ = fd.write_all(&[4]).await;
            }
            None => *stdin = None,
        },
        Some(Input::StdinEof(false)) | None => {}
        Some(Input::Resize(size)) => {
            let (rows, cols) = validate::terminal_size("input.resize", Some(&size))?;
            if let Some(master) = master {
                let _ = os::tty::set_size(master.as_fd(), rows, cols);
            }
        }
        Some(Input::Signal(sig)) => {
            let sig = validate::session_signal("input.signal", sig)?;
            match master {
                Some(master) => {
                    if let Some(pgrp) = os::tty::foreground_group(master.as_fd()) {
                        let _ = os::kill_group(pgrp, sig);
                    }
                }
                // The far end signals the command's process group.
                _ => {
                    let _ = conn.write_all(&[sig as u8]).await;
                }
            }
        }
    }
    Ok(())
}

/// Reads some bytes of `fd`; `None` at its end (a pty's master reads EIO
/// once the last slave is closed). Pending forever without an fd.
async fn read_some(fd: Option<&Fd>, buf: &mut [u8]) -> Option<usize> {
    let Some(fd) = fd else {
        return std::future::pending().await;
    };
    match fd.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

fn fd(fd: OwnedFd) -> Result<Fd, Status> {
    Fd::new(fd).map_err(|e| Error::Internal(format!("session fd: {e}")).into())
}
