//! The syscall boundary: every raw libc call of the agent and the shim lives
//! here, each `unsafe` block with the reason it is sound. The rest of the code
//! sees `Result`s and owned fds, never an errno.
//!
//! Today a dyno's command is started in its own session in the slug's `app/`
//! directory ([`spawn_command`]); the namespaces, `pivot_root`, credentials and
//! capabilities of the jail will be set up here as well, between fork and exec.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Everything the child needs between fork and exec, prepared before the fork
/// so that the child only makes syscalls (no allocation, no locks).
pub struct ExecPlan {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    workdir: CString,
}

impl ExecPlan {
    /// `/bin/sh -c <command>` with exactly `env`, run in `workdir`.
    pub fn shell(command: &str, env: &[(String, String)], workdir: &Path) -> io::Result<ExecPlan> {
        let c = |b: &[u8]| {
            CString::new(b)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in command, environment or path"))
        };
        Ok(ExecPlan {
            path: c(b"/bin/sh")?,
            argv: vec![c(b"sh")?, c(b"-c")?, c(command.as_bytes())?],
            envp: env
                .iter()
                .map(|(k, v)| c(format!("{k}={v}").as_bytes()))
                .collect::<io::Result<_>>()?,
            workdir: c(workdir.as_os_str().as_bytes())?,
        })
    }
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A pipe whose both ends are close-on-exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Replaces `target` (0, 1 or 2) with a duplicate of `fd`.
pub fn redirect(fd: &OwnedFd, target: RawFd) -> io::Result<()> {
    // SAFETY: dup2 on an fd we own onto a standard stream number; no memory involved.
    cvt(unsafe { libc::dup2(fd.as_raw_fd(), target) }).map(drop)
}

/// Starts a new session with the calling process as its leader.
pub fn new_session() -> io::Result<()> {
    // SAFETY: setsid takes no arguments and touches no memory.
    cvt(unsafe { libc::setsid() }).map(drop)
}

/// Forks; returns `Some(child pid)` in the parent and `None` in the child.
///
/// # Safety
/// The caller must be single-threaded (the shim is), or the child must only
/// make async-signal-safe calls until it execs or exits.
pub unsafe fn fork() -> io::Result<Option<u32>> {
    // SAFETY: forwarded to the caller's contract above.
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

/// Forks and execs `plan` in a new session with the given standard streams.
/// Returns the child's pid once the exec succeeded, or the exec's error (read
/// from a close-on-exec status pipe).
///
/// Must be called from a single-threaded process (the shim).
pub fn spawn_command(plan: &ExecPlan, stdin: &OwnedFd, stdout: &OwnedFd, stderr: &OwnedFd) -> io::Result<u32> {
    let (status_r, status_w) = pipe()?;
    let argv: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let envp: Vec<*const libc::c_char> = plan.envp.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let fds = [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()];
    let status_fd = status_w.as_raw_fd();

    // SAFETY: the shim is single-threaded; the child below only makes raw
    // syscalls on memory prepared before the fork, then execs or _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: child of fork: only async-signal-safe syscalls on
        // pre-built, NUL-terminated buffers and arrays; never returns.
        unsafe {
            let fail = |step: i32| -> ! {
                let errno = *libc::__errno_location();
                let msg = [step, errno];
                libc::write(status_fd, msg.as_ptr().cast(), std::mem::size_of_val(&msg));
                libc::_exit(127)
            };
            if libc::setsid() < 0 {
                fail(1);
            }
            // Ignored signals stay ignored across exec: give the command the
            // default dispositions and an empty signal mask.
            for sig in 1..libc::SIGRTMIN() {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            for (target, fd) in fds.iter().enumerate() {
                if libc::dup2(*fd, target as libc::c_int) < 0 {
                    fail(2);
                }
            }
            if libc::chdir(plan.workdir.as_ptr()) < 0 {
                fail(3);
            }
            // Every fd above the standard three closes at exec: nothing of
            // the shim or the agent leaks into the dyno.
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) < 0 {
                fail(4);
            }
            libc::execve(plan.path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            fail(5);
        }
    }
    drop(status_w);
    let mut msg = [0u8; 8];
    let n = read_full(&status_r, &mut msg)?;
    if n == 0 {
        return Ok(pid as u32);
    }
    // The child failed before exec and has exited: reap it.
    let _ = wait_exit(pid as u32);
    let step = i32::from_ne_bytes(msg[0..4].try_into().expect("4 bytes"));
    let errno = i32::from_ne_bytes(msg[4..8].try_into().expect("4 bytes"));
    let what = match step {
        1 => "setsid",
        2 => "redirecting standard streams",
        3 => "chdir to the app directory",
        4 => "closing inherited fds",
        _ => "exec /bin/sh",
    };
    Err(io::Error::new(
        io::Error::from_raw_os_error(errno).kind(),
        format!("{what}: {}", io::Error::from_raw_os_error(errno)),
    ))
}

fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reads into the unfilled tail of `buf`, within its bounds.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        match n {
            0 => break,
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            n => got += n as usize,
        }
    }
    Ok(got)
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
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
    // SAFETY: waitid filled `info` (or left si_pid 0 when nothing exited).
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
    Ok(if libc::WIFEXITED(status) {
        ExitStatus::Code(libc::WEXITSTATUS(status))
    } else {
        ExitStatus::Signal(libc::WTERMSIG(status))
    })
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

/// The start time of `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`): with the pid, it identifies a process across pid reuse.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// The arguments of `pid` as in `/proc/PID/cmdline`.
pub fn cmdline(pid: u32) -> Option<Vec<Vec<u8>>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(<[u8]>::to_vec)
            .collect(),
    )
}

/// Every pid currently in `/proc`.
pub fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// Sets the calling process's `oom_score_adj`.
pub fn set_oom_score_adj(value: i32) -> io::Result<()> {
    std::fs::write("/proc/self/oom_score_adj", value.to_string())
}

/// `true` when `arg` equals `s`.
pub fn arg_is(arg: &[u8], s: &str) -> bool {
    OsStr::from_bytes(arg) == OsStr::new(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_of_self_is_stable() {
        let me = std::process::id();
        let a = start_ticks(me).expect("own stat");
        assert_eq!(Some(a), start_ticks(me));
        assert!(start_ticks(u32::MAX).is_none());
    }

    #[test]
    fn exec_plan_rejects_nul_bytes() {
        assert!(ExecPlan::shell("echo\0hi", &[], Path::new("/")).is_err());
        assert!(ExecPlan::shell("echo hi", &[("K".into(), "v\0".into())], Path::new("/")).is_err());
        assert!(ExecPlan::shell("echo hi", &[("K".into(), "v".into())], Path::new("/")).is_ok());
    }

    #[test]
    fn refuses_to_signal_init_or_everyone() {
        assert!(kill_group(1, libc::SIGTERM).is_err());
        assert!(kill_pid(0, libc::SIGTERM).is_err());
    }
}
