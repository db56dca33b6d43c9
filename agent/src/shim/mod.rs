//! `dynoagent shim <run-id> <run-dir>`: the small, single-threaded parent of
//! one dyno run.
//!
//! The agent starts it with stdout as a report pipe. The shim
//! 1. starts a new session and forks once more, so that it is nobody's child
//!    and survives the agent (the first process exits at once) — this file;
//! 2. reads `spec.json`, starts the command ([`start`]) in a session of its
//!    own (or jailed, under the dyno's init) with its stdout/stderr on pipes,
//!    writes `exec.json` and reports `ok <shim-pid> <pid>` (or
//!    `err <message>`) on the report pipe;
//! 3. turns the command's output into log lines until the command exits
//!    ([`pump`]), or, for an attached run, hands the command's pty or pipes
//!    to its caller on `attach.sock` and hangs the command up when the
//!    caller goes ([`attach`]);
//! 4. kills whatever is left of the command's process group, reaps it, drains
//!    the pipes and writes `exit.json`, status and exit time ([`exit`]);
//!    an attached run's caller gets the status too.
//!
//! It runs before any async runtime exists and never starts a thread, so
//! forking here is safe (and [`crate::os::fork`] checks it).

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use chrono::Utc;
use nix::sys::signal::Signal;

use crate::logs::LogWriter;
use crate::os;
use crate::runs::{ExecRecord, RunDir, RunSpec, read_json, write_json_atomic};

mod attach;
pub mod exec;
mod exit;
mod pump;
mod start;

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
    match os::fork() {
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

fn supervise(run: &RunDir) -> io::Result<()> {
    os::ignore_signals(&[
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGPIPE,
        Signal::SIGQUIT,
    ])?;
    let spec: RunSpec = read_json(&run.spec())?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} is missing", run.spec().display())))?;
    let mut log = LogWriter::open(run.log(), &spec.dyno, spec.log_bounds())
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", run.log().display())))?;

    // SIGCHLD arrives as a byte on this socket; registered before the fork
    // so that an early exit cannot be missed.
    let (mut sig_r, sig_w) = UnixStream::pair()?;
    sig_r.set_nonblocking(true)?;
    sig_w.set_nonblocking(true)?;
    signal_hook::low_level::pipe::register(Signal::SIGCHLD as i32, sig_w)?;

    let mut started = start::start(run, &spec)?;
    // An attached run's caller may connect once exec.json is there.
    let mut caller = match std::mem::replace(&mut started.output, start::Output::Attached(0, Vec::new())) {
        start::Output::Attached(tag, fds) => Some(attach::Caller::listen(&run.attach_sock(), tag, fds)?),
        log => {
            started.output = log;
            None
        }
    };
    let started_at = Utc::now();
    let record = ExecRecord {
        pid: started.pid,
        start_ticks: os::start_ticks(started.pid).unwrap_or(0),
        started_at,
        shim_pid: std::process::id(),
        init_pid: started.init_pid,
    };
    write_json_atomic(&run.exec(), &record)?;
    report(&format!("ok {} {}", std::process::id(), started.pid));

    let status = match (&mut caller, started.output, spec.attach) {
        (Some(caller), _, Some(a)) => {
            attach::serve(caller, started.child, started.pid, started.init_pid, &a, &mut sig_r)?
        }
        (_, start::Output::Log(pipes), _) => {
            pump::pump(started.child, started.init_pid.is_none(), pipes, &mut sig_r, &mut log)?
        }
        _ => return Err(io::Error::other("an attached run without its caller")),
    };
    let status = exit::record(run, started.init_report.as_ref(), status, log)?;
    if let Some(caller) = caller {
        caller.finish(status);
        let _ = std::fs::remove_file(run.attach_sock());
    }
    Ok(())
}
