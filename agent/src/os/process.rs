//! Processes: signals to pids and process groups, waiting for and peeking at
//! a child's exit, pidfds, sessions, fork, `_exit`, signal dispositions and
//! `oom_score_adj`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::{SigHandler, Signal, signal};

use super::cvt;

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// Decodes a `waitpid` status word (of a process that has ended).
    pub(crate) fn from_wait_status(status: libc::c_int) -> ExitStatus {
        if libc::WIFEXITED(status) {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        } else {
            ExitStatus::Signal(libc::WTERMSIG(status))
        }
    }
}

/// Starts a new session with the calling process as its leader.
pub fn new_session() -> io::Result<()> {
    // SAFETY: setsid takes no arguments and touches no memory.
    cvt(unsafe { libc::setsid() }).map(drop)
}

/// Forks; returns `Some(child pid)` in the parent and `None` in the child.
///
/// Only a single-threaded process may fork and go on running arbitrary code
/// in the child; a caller with more than one thread gets an error and no
/// child.
pub fn fork() -> io::Result<Option<u32>> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(|e| io::Error::new(e.kind(), format!("counting threads in /proc/self/task: {e}")))?
        .count();
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork a process with {threads} threads"
        )));
    }
    // SAFETY: the caller is the process's only thread (checked above; only
    // this thread could have started another since), so no other thread can
    // hold a lock or be half-way through an allocation when the child is
    // created: the child may run any code.
    match cvt(unsafe { libc::fork() })? {
        0 => Ok(None),
        pid => Ok(Some(pid as u32)),
    }
}

/// Leaves the process at once, without running destructors or atexit hooks.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// Ignores each of `signals` (`SIG_IGN`) in the calling process.
pub fn ignore_signals(signals: &[Signal]) -> io::Result<()> {
    for sig in signals {
        // SAFETY: SIG_IGN installs no handler, so no code of ours ever runs
        // in signal context.
        unsafe { signal(*sig, SigHandler::SigIgn) }.map_err(io::Error::from)?;
    }
    Ok(())
}

/// Whether child `pid` has exited, without reaping it (so that its pid and
/// process group stay reserved). `None` while it runs.
pub fn peek_exit(pid: u32) -> io::Result<Option<ExitStatus>> {
    // SAFETY: siginfo_t is plain data; zeroed is a valid value for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `info` is a valid siginfo_t owned by this frame.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        break;
    }
    // SAFETY: waitid filled `info` (or left si_pid 0 when nothing exited);
    // the accessors read fields of the SIGCHLD layout, the one waitid fills.
    let (child, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
    if child == 0 {
        return Ok(None);
    }
    Ok(Some(if code == libc::CLD_EXITED {
        ExitStatus::Code(status)
    } else {
        ExitStatus::Signal(status)
    }))
}

/// Reaps child `pid`, blocking until it has exited.
pub fn wait_exit(pid: u32) -> io::Result<ExitStatus> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int for waitpid to fill.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if r >= 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(ExitStatus::from_wait_status(status))
}

/// Sends `sig` to every process of the process group `pgid`.
pub fn kill_group(pgid: u32, sig: i32) -> io::Result<()> {
    if pgid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to signal process group 0 or 1",
        ));
    }
    // SAFETY: kill with a negative pid signals a process group; no memory involved.
    cvt(unsafe { libc::kill(-(pgid as libc::pid_t), sig) }).map(drop)
}

/// Sends `sig` to one process.
pub fn kill_pid(pid: u32, sig: i32) -> io::Result<()> {
    if pid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to signal pid 0 or 1",
        ));
    }
    // SAFETY: kill on a positive pid; no memory involved.
    cvt(unsafe { libc::kill(pid as libc::pid_t, sig) }).map(drop)
}

/// A pidfd for `pid`: readable once the process has exited, immune to pid reuse.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Waits until the process of `pidfd` has exited.
pub async fn pidfd_wait(pidfd: OwnedFd) -> io::Result<()> {
    // SAFETY: the AsyncFd owns `pidfd`, so the fd stays open (and is not
    // reused) for as long as it is registered with the reactor.
    let afd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)?;
    let _ready = afd.readable().await?;
    Ok(())
}

/// Sets the calling process's `oom_score_adj`.
pub fn set_oom_score_adj(value: i32) -> io::Result<()> {
    std::fs::write("/proc/self/oom_score_adj", value.to_string())
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;

/// Raises the soft limit on open descriptors to the hard one (systemd
/// starts services with a soft limit of 1024); returns (before, after).
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    }
    Ok((soft, hard))
}
