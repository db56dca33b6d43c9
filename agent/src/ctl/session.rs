//! `dynoctl run` and `dynoctl exec`: the caller's terminal joined to a
//! command in a dyno over `Attach` or `Exec`. With a terminal on stdin and
//! stdout (and no `--no-tty`) the command gets a pty: the terminal goes raw
//! (restored on every way out), its size and resizes are passed on, and
//! what is typed (Ctrl-C, Ctrl-Z included) reaches the dyno's foreground
//! process group through the pty. Otherwise stdin, stdout and stderr are
//! streamed. Returns the command's status (128 + N for a signal).

use std::io::{Read, Write};

use dyno_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::render::dyno_json;
use super::{Failure, R};
use crate::os::tty;

/// Whether the command gets a pty, and the terminal's size.
pub(super) fn terminal(no_tty: bool) -> Option<pb::TerminalSize> {
    let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
    if no_tty || !tty::is_terminal(&stdin) || !tty::is_terminal(&stdout) {
        return None;
    }
    let (rows, cols) = tty::size(std::os::fd::AsFd::as_fd(&stdout)).unwrap_or((24, 80));
    Some(pb::TerminalSize {
        rows: u32::from(rows.max(1)),
        cols: u32::from(cols.max(1)),
    })
}

fn input(i: pb::session_input::Input) -> pb::SessionInput {
    pb::SessionInput { input: Some(i) }
}

/// Runs one session: `first` is the stream's first message, `wrap` makes a
/// request of an input.
pub(super) async fn attach_session<Req, F, Fut>(
    first: Req,
    wrap: fn(pb::SessionInput) -> Req,
    call: F,
    pty: bool,
    json: bool,
) -> R<i32>
where
    Req: Send + 'static,
    F: FnOnce(ReceiverStream<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<tonic::Streaming<pb::SessionOutput>>, tonic::Status>>,
{
    let (tx, rx) = mpsc::channel::<Req>(16);
    tx.send(first)
        .await
        .map_err(|_| Failure::new(tonic::Code::Internal, "request stream closed"))?;
    let mut stream = call(ReceiverStream::new(rx)).await?.into_inner();
    let mut raw = if pty {
        Some(tty::RawMode::enter(std::io::stdin())?)
    } else {
        None
    };
    // stdin: a thread of its own (reads block).
    let stdin_tx = tx.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        let mut stdin = std::io::stdin().lock();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = stdin_tx.blocking_send(wrap(input(pb::session_input::Input::StdinEof(true))));
                    return;
                }
                Ok(n) => {
                    let msg = wrap(input(pb::session_input::Input::Stdin(buf[..n].to_vec())));
                    if stdin_tx.blocking_send(msg).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut winch = match pty {
        true => tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok(),
        false => None,
    };
    // A dynoctl told to go (SIGTERM, SIGHUP) gives its terminal back first.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let code = loop {
        let next = tokio::select! {
            m = stream.message() => m,
            Some(()) = async { match winch.as_mut() { Some(w) => w.recv().await, None => std::future::pending().await } } => {
                if let Some(size) = terminal(false) {
                    let _ = tx.send(wrap(input(pb::session_input::Input::Resize(size)))).await;
                }
                continue;
            }
            Some(()) = recv_or_pending(&mut term) => {
                drop(raw);
                return Err(Failure::new(tonic::Code::Cancelled, "terminated: the session is closed"));
            }
            Some(()) = recv_or_pending(&mut hup) => {
                drop(raw);
                return Err(Failure::new(tonic::Code::Cancelled, "hung up: the session is closed"));
            }
        };
        let msg = match next {
            Ok(Some(m)) => m,
            Ok(None) => {
                if let Some(r) = raw.as_mut() {
                    r.restore();
                }
                return Err(Failure::new(
                    tonic::Code::Unavailable,
                    "the agent ended the session without an exit status",
                ));
            }
            Err(s) => {
                if let Some(r) = raw.as_mut() {
                    r.restore();
                }
                return Err(s.into());
            }
        };
        use pb::session_output::Output;
        match msg.output {
            Some(Output::Started(d)) if json => {
                let _ = writeln!(err, "{}", dyno_json(&d));
            }
            Some(Output::Stdout(b)) => {
                let _ = out.write_all(&b);
                let _ = out.flush();
            }
            Some(Output::Stderr(b)) => {
                let _ = err.write_all(&b);
                let _ = err.flush();
            }
            Some(Output::Exit(x)) => break x.code.or(x.signal.map(|s| 128 + s)).unwrap_or(125),
            Some(Output::Started(_)) | None => {}
        }
    };
    drop(raw);
    Ok(code)
}

/// The next delivery of a signal, or never without a handler.
async fn recv_or_pending(sig: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match sig.as_mut() {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}
