//! The fork→exec child of an unjailed run: [`ExecPlan`] (everything the
//! child needs, prepared before the fork) and [`spawn_command`], which starts
//! it in a session of its own and returns once the exec succeeded or failed.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{child, fd, process};

/// Everything the child needs between fork and exec, prepared before the fork
/// so that the child only makes syscalls (no allocation, no locks).
pub struct ExecPlan {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    workdir: CString,
    /// stdin is a pty the command takes as its controlling terminal.
    ctty: bool,
}

/// An [`ExecPlan`] with the NULL-terminated pointer arrays `execve` takes,
/// built before the fork; the borrow keeps the strings they point into alive.
pub(super) struct ExecArgs<'a> {
    plan: &'a ExecPlan,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

impl ExecPlan {
    /// The directory the command starts in.
    pub(super) fn workdir(&self) -> &CStr {
        &self.workdir
    }

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
            ctty: false,
        })
    }

    /// The same plan, its stdin a pty to take as controlling terminal.
    pub fn with_controlling_tty(mut self) -> ExecPlan {
        self.ctty = true;
        self
    }

    /// What [`ExecArgs::exec`] needs; built before the fork (it allocates).
    pub(super) fn args(&self) -> ExecArgs<'_> {
        let ptrs = |v: &[CString]| v.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
        ExecArgs {
            plan: self,
            argv: ptrs(&self.argv),
            envp: ptrs(&self.envp),
        }
    }
}

impl ExecArgs<'_> {
    /// The directory the command starts in.
    pub(super) fn workdir(&self) -> &CStr {
        self.plan.workdir()
    }

    /// Replaces the calling process with the plan's program; returns only on
    /// failure. Async-signal-safe.
    pub(super) fn exec(&self) -> io::Error {
        // SAFETY: `argv` and `envp` are NULL-terminated arrays of pointers
        // into the plan's NUL-terminated strings, which the borrow of `plan`
        // keeps alive (and unchanged) for the whole call.
        unsafe { libc::execve(self.plan.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        io::Error::last_os_error()
    }
}

/// Steps of the unjailed child, named in errors.
fn step_name(step: i32) -> &'static str {
    match step {
        1 => "setsid",
        2 => "redirecting standard streams",
        3 => "chdir to the app directory",
        4 => "closing inherited fds",
        6 => "taking the pty as controlling terminal",
        _ => "exec /bin/sh",
    }
}

/// Forks and execs `plan` in a new session with the given standard streams.
/// Returns the child's pid once the exec succeeded, or the exec's error (read
/// from a close-on-exec status pipe).
///
/// The child makes only async-signal-safe syscalls between fork and exec;
/// the shim calls this from its single thread.
pub fn spawn_command(plan: &ExecPlan, stdin: &OwnedFd, stdout: &OwnedFd, stderr: &OwnedFd) -> io::Result<u32> {
    let (status_r, status_w) = fd::pipe()?;
    let args = plan.args();
    let streams = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
    let status = status_w.as_fd();

    // SAFETY: the child below only makes raw, async-signal-safe syscalls on
    // memory prepared before the fork (`plan`, `args`, the fds), then execs
    // or _exits: it never allocates, locks or returns, whatever other
    // threads held at the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let fail = |step: i32, e: io::Error| child::fail(status, step, e);
        if let Err(e) = process::new_session() {
            fail(1, e);
        }
        child::default_signals();
        if let Err(e) = child::take_streams(streams) {
            fail(2, e);
        }
        if plan.ctty
            && let Err(e) = super::tty::make_controlling()
        {
            fail(6, e);
        }
        if let Err(e) = child::chdir(plan.workdir()) {
            fail(3, e);
        }
        if let Err(e) = child::close_inherited_on_exec() {
            fail(4, e);
        }
        fail(5, args.exec());
    }
    drop(status_w);
    let Some((step, errno)) = child::read_failure(&status_r)? else {
        return Ok(pid as u32);
    };
    // The child failed before exec and has exited: reap it.
    let _ = process::wait_exit(pid as u32);
    let err = io::Error::from_raw_os_error(errno);
    Err(io::Error::new(err.kind(), format!("{}: {err}", step_name(step))))
}

/// Makes std start `cmd` through fork and exec, the way the shim starts a
/// command (std otherwise prefers `posix_spawn`): for benchmarks that compare
/// the two.
pub fn use_fork_exec(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook does nothing, so the child runs only std's own
    // async-signal-safe steps between fork and exec.
    unsafe { cmd.pre_exec(|| Ok(())) }
}

#[cfg(test)]
#[path = "spawn_tests.rs"]
mod tests;
