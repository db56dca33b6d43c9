//! `dynoagent exec <run-dir> tty|pipes <rows>x<cols> <command>`: the helper
//! of one exec session (`dynoctl exec`, the `Exec` call), started by the
//! agent with its stdin as the session channel (see `api/session.rs`).
//!
//! It joins the live dyno of `run-dir` (cgroups, namespaces, root), makes
//! the command's pty (in the dyno's devpts, owned by its uid) or pipes,
//! forks the command with the dyno's environment and every privilege
//! dropped, and hands the pty master or pipes to the agent. Then it waits:
//! a byte on the channel is a signal for the command's process group; the
//! channel closing (the caller or the agent went) hangs the command up
//! (SIGHUP, SIGKILL a moment later); the command's end sends its status.
//! The dyno stopping ends the command with it (it lives in the dyno's pid
//! namespace). Single-threaded, before any runtime exists.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use crate::os::report::Report;
use crate::os::{self, ExecPlan};
use crate::runs::RunDir;

/// Between SIGHUP and SIGKILL once the caller went.
const HANGUP_GRACE: Duration = Duration::from_secs(2);

/// Entry point; `args` are the arguments after `exec`. Returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let [dir, mode, size, command] = args else {
        eprintln!("usage: dynoagent exec <run-dir> tty|pipes <rows>x<cols> <command>");
        return 2;
    };
    match run(Path::new(dir), mode == "tty", size, command) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn run(dir: &Path, tty: bool, size: &str, command: &str) -> io::Result<()> {
    let chan = UnixStream::from(io::stdin().as_fd().try_clone_to_owned()?);
    let run = RunDir {
        path: PathBuf::from(dir),
    };
    let spec = run
        .read_spec()?
        .ok_or_else(|| io::Error::other("the dyno has no run spec"))?;
    let exec = run
        .read_exec()?
        .ok_or_else(|| io::Error::other("the dyno is not running"))?;
    let jail = spec
        .jail
        .as_ref()
        .ok_or_else(|| io::Error::other("exec needs a jailed dyno (this one runs unjailed)"))?;
    let init = exec.init_pid.ok_or_else(|| io::Error::other("the dyno has no init"))?;
    if run.read_exit()?.is_some() || os::start_ticks(exec.pid) != Some(exec.start_ticks) {
        return Err(io::Error::other("the dyno is not running"));
    }
    let (rows, cols) = size
        .split_once('x')
        .and_then(|(r, c)| Some((r.parse().ok()?, c.parse().ok()?)))
        .ok_or_else(|| io::Error::other(format!("bad size {size:?}")))?;
    // SIGCHLD as a byte on a socket, registered before the fork.
    let (mut sig_r, sig_w) = UnixStream::pair()?;
    sig_r.set_nonblocking(true)?;
    sig_w.set_nonblocking(true)?;
    signal_hook::low_level::pipe::register(Signal::SIGCHLD as i32, sig_w)?;
    os::ignore_signals(&[Signal::SIGPIPE, Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT])?;

    os::jail::enter_dyno(init, &jail.cgroup_procs)?;
    let plan = ExecPlan::shell(command, &spec.env, Path::new("/app"))?;
    let as_ = os::jail::Dropped {
        uid: jail.uid,
        gid: jail.gid,
        nofile: jail.nofile,
    };
    let (pid, tag, handed): (u32, u8, Vec<OwnedFd>) = if tty {
        let (master, slave) = os::tty::open_pty(jail.uid, jail.gid, rows, cols)?;
        let pid = os::jail::spawn_dropped(&as_, &plan, [&slave, &slave, &slave], true)?;
        (pid, b't', vec![master])
    } else {
        let (in_r, in_w) = os::pipe()?;
        let (out_r, out_w) = os::pipe()?;
        let (err_r, err_w) = os::pipe()?;
        let pid = os::jail::spawn_dropped(&as_, &plan, [&in_r, &out_w, &err_w], false)?;
        (pid, b'p', vec![in_w, out_r, err_r])
    };
    let borrowed: Vec<_> = handed.iter().map(|f| f.as_fd()).collect();
    let sent = os::tty::send_fds(chan.as_fd(), tag, &borrowed);
    drop(borrowed);
    drop(handed);
    let status = wait(pid, &chan, &mut sig_r, sent.is_err())?;
    let _ = (&chan).write_all(&Report::Exited(status).encode());
    Ok(())
}

/// Waits for the command while serving the channel; returns its status.
fn wait(pid: u32, chan: &UnixStream, sig: &mut UnixStream, mut gone: bool) -> io::Result<os::ExitStatus> {
    chan.set_nonblocking(true)?;
    let mut kill_at: Option<Instant> = None;
    if gone {
        let _ = os::kill_group(pid, Signal::SIGHUP as i32);
        kill_at = Some(Instant::now() + HANGUP_GRACE);
    }
    loop {
        if let Some(s) = os::peek_exit(pid)? {
            os::wait_exit(pid)?;
            return Ok(s);
        }
        {
            let mut fds = vec![PollFd::new(sig.as_fd(), PollFlags::POLLIN)];
            if !gone {
                fds.push(PollFd::new(chan.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::from(500u16)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut sink = [0u8; 64];
        while matches!(sig.read(&mut sink), Ok(n) if n > 0) {}
        if !gone {
            let mut buf = [0u8; 64];
            match (&*chan).read(&mut buf) {
                Ok(0) => gone = true,
                Ok(n) => {
                    for &signal in &buf[..n] {
                        let _ = os::kill_group(pid, i32::from(signal));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => gone = true,
            }
            if gone {
                let _ = os::kill_group(pid, Signal::SIGHUP as i32);
                kill_at = Some(Instant::now() + HANGUP_GRACE);
            }
        }
        if kill_at.is_some_and(|t| Instant::now() >= t) {
            let _ = os::kill_group(pid, Signal::SIGKILL as i32);
            kill_at = None;
        }
    }
}
