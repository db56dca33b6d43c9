//! `dynoagent shim <run-id> <run-dir>`: the small, single-threaded parent of
//! one dyno run.
//!
//! The agent starts it with stdout as a report pipe. The shim
//! 1. starts a new session and forks once more, so that it is nobody's child
//!    and survives the agent (the first process exits at once);
//! 2. reads `spec.json`, starts the command in a session of its own with its
//!    stdout/stderr on pipes, writes `exec.json` and reports
//!    `ok <shim-pid> <pid>` (or `err <message>`) on the report pipe;
//! 3. turns the command's output into log lines until the command exits;
//! 4. kills whatever is left of the command's process group, reaps it, drains
//!    the pipes and writes `exit.json` (status and exit time).
//!
//! It runs before any async runtime exists and never starts a thread, so
//! forking here is safe.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::logs::LogWriter;
use crate::os::{self, ExecPlan, ExitStatus};
use crate::runs::{ExecRecord, ExitRecord, RunDir, RunSpec, read_json, write_json_atomic};

/// How long the pipes are drained after the command exited, for output of
/// processes that escaped its process group.
const DRAIN: Duration = Duration::from_secs(2);

/// Entry point; `args` are the arguments after `shim`. Returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let [run_id, dir] = args else {
        eprintln!("usage: dynoagent shim <run-id> <run-dir>");
        return 2;
    };
    let run = RunDir {
        path: PathBuf::from(dir),
    };
    if let Err(e) = os::new_session() {
        eprintln!("shim {run_id}: setsid: {e}");
        return 1;
    }
    // SAFETY: nothing has started a thread in this process.
    match unsafe { os::fork() } {
        Err(e) => {
            eprintln!("shim {run_id}: fork: {e}");
            return 1;
        }
        Ok(Some(_)) => os::exit_now(0),
        Ok(None) => {}
    }
    match supervise(&run) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shim {run_id}: {e}");
            report(&format!("err {e}"));
            1
        }
    }
}

/// Writes one line to the report pipe (stdout), then points stdout at
/// /dev/null so that a gone agent can never block or kill the shim.
fn report(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = os::redirect(&OwnedFd::from(null), 1);
    }
}

fn ignore_signals() -> io::Result<()> {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGPIPE,
        Signal::SIGQUIT,
    ] {
        // SAFETY: installing SIG_IGN runs no code in signal context.
        unsafe { signal(sig, SigHandler::SigIgn) }.map_err(io::Error::from)?;
    }
    Ok(())
}

fn supervise(run: &RunDir) -> io::Result<()> {
    ignore_signals()?;
    let spec: RunSpec = read_json(&run.spec())?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} is missing", run.spec().display())))?;
    let mut log = LogWriter::open(run.log(), &spec.dyno, spec.log_max_bytes)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", run.log().display())))?;

    // SIGCHLD arrives as a byte on this socket; registered before the fork
    // so that an early exit cannot be missed.
    let (mut sig_r, sig_w) = UnixStream::pair()?;
    sig_r.set_nonblocking(true)?;
    sig_w.set_nonblocking(true)?;
    signal_hook::low_level::pipe::register(libc::SIGCHLD, sig_w)?;

    let null = OwnedFd::from(std::fs::File::open("/dev/null")?);
    let (out_r, out_w) = os::pipe()?;
    let (err_r, err_w) = os::pipe()?;
    let (report_r, report_w) = os::pipe()?;
    let (child, pid, init_pid) = match &spec.jail {
        None => {
            let plan = ExecPlan::shell(&spec.command, &spec.env, &spec.workdir)?;
            let pid = os::spawn_command(&plan, &null, &out_w, &err_w)?;
            (pid, pid, None)
        }
        Some(j) => {
            let exec = ExecPlan::shell(&spec.command, &spec.env, std::path::Path::new("/app"))?;
            for dir in [run.root(), run.rw()] {
                std::fs::create_dir_all(&dir)?;
            }
            let plan = os::JailPlan {
                root: run.root(),
                rw: run.rw(),
                stack: j.stack.clone(),
                app: spec.workdir.clone(),
                disk_bytes: j.disk_bytes,
                hostname: j.hostname.clone(),
                uid: j.uid,
                gid: j.gid,
                nofile: j.nofile,
            };
            let jailed = os::spawn_jailed(
                &plan,
                &exec,
                [&null, &out_w, &err_w],
                &report_w,
                &j.cgroup_procs,
                j.oom_score_adj,
            )?;
            drop(report_w);
            let mut msg = [0u8; 12];
            let n = (&std::fs::File::from(report_r.try_clone()?)).read(&mut msg)?;
            let word = |i: usize| i32::from_ne_bytes(msg[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
            if n != 12 || word(0) != os::report::STARTED {
                let _ = os::wait_exit(jailed.init);
                let why = if n == 12 && word(0) == os::report::FAILED {
                    format!("{}: {}", os::step_name(word(1)), io::Error::from_raw_os_error(word(2)))
                } else {
                    "the dyno's init ended before starting the command".to_string()
                };
                return Err(io::Error::other(format!("jail: {why}")));
            }
            let pid = os::children(jailed.init).first().copied().unwrap_or(jailed.init);
            (jailed.init, pid, Some(jailed.init))
        }
    };
    let started_at = Utc::now();
    drop((out_w, err_w, null));

    let record = ExecRecord {
        pid,
        start_ticks: os::start_ticks(pid).unwrap_or(0),
        started_at,
        shim_pid: std::process::id(),
        init_pid,
    };
    write_json_atomic(&run.exec(), &record)?;
    report(&format!("ok {} {pid}", std::process::id()));

    let status = pump(child, init_pid.is_none(), [out_r, err_r], &mut sig_r, &mut log)?;
    let exited_at = Utc::now();
    // A jailed run's status is the command's, as its init reported it.
    let status = match init_pid {
        Some(_) => last_reported_status(&report_r).unwrap_or(status),
        None => status,
    };
    let _ = log.finish();
    let (code, signal) = match status {
        ExitStatus::Code(c) => (Some(c), None),
        ExitStatus::Signal(s) => (None, Some(s)),
    };
    write_json_atomic(
        &run.exit(),
        &ExitRecord {
            code,
            signal,
            exited_at,
        },
    )
}

/// Copies output into the log until the command exits; then ends the rest of
/// its process group, reaps it and drains the pipes. Returns its status.
fn pump(
    pid: u32,
    kill_group: bool,
    pipes: [OwnedFd; 2],
    sig: &mut UnixStream,
    log: &mut LogWriter,
) -> io::Result<ExitStatus> {
    let [out, err] = pipes;
    let mut open = [Some(out), Some(err)];
    let mut status = None;
    let mut drain_until: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if status.is_some() && open.iter().all(Option::is_none) {
            break;
        }
        let timeout = match drain_until {
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                PollTimeout::try_from(left.as_millis().min(1000) as i32).unwrap_or(PollTimeout::ZERO)
            }
            None => PollTimeout::NONE,
        };
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(3);
        fds.push(PollFd::new(sig.as_fd(), PollFlags::POLLIN));
        let streams: Vec<usize> = (0..2).filter(|i| open[*i].is_some()).collect();
        for i in &streams {
            fds.push(PollFd::new(open[*i].as_ref().expect("open").as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);

        for (slot, i) in streams.iter().enumerate() {
            if !ready[slot + 1] {
                continue;
            }
            let fd = open[*i].as_ref().expect("open");
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => open[*i] = None,
                Ok(n) => log.feed(*i, &buf[..n])?,
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(_) => open[*i] = None,
            }
        }
        if ready[0] {
            let mut sink = [0u8; 64];
            while matches!(sig.read(&mut sink), Ok(n) if n > 0) {}
        }
        if status.is_none()
            && let Some(s) = os::peek_exit(pid)?
        {
            // The command is gone: the dyno is over. End what is left of its
            // process group while the group id is still reserved by the
            // unreaped command, then reap it.
            if kill_group {
                let _ = os::kill_group(pid, libc::SIGKILL);
            }
            os::wait_exit(pid)?;
            status = Some(s);
            drain_until = Some(Instant::now() + DRAIN);
        }
    }
    Ok(status.expect("loop ends only after the exit"))
}

/// The last `EXITED` message of the dyno's init, if it sent one.
fn last_reported_status(report: &OwnedFd) -> Option<ExitStatus> {
    let mut bytes = Vec::new();
    let _ = (&std::fs::File::from(report.try_clone().ok()?)).read_to_end(&mut bytes);
    bytes
        .chunks_exact(12)
        .map(|m| {
            let w = |i: usize| i32::from_ne_bytes(m[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
            (w(0), w(1), w(2))
        })
        .filter(|(kind, ..)| *kind == os::report::EXITED)
        .map(|(_, signaled, v)| {
            if signaled == 1 {
                ExitStatus::Signal(v)
            } else {
                ExitStatus::Code(v)
            }
        })
        .next_back()
}
