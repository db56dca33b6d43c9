//! The dyno's init: PID 1 of its pid namespace. It waits for the shim's
//! go-ahead (sent once it is in the dyno's cgroups), joins the run's network
//! namespace, builds the root
//! filesystem, joins a fresh session keyring, forks the command, then reaps
//! every zombie, passes termination signals to every process of the dyno,
//! and reports to the shim (see [`super::report`]) until the command has
//! exited.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::report::Report;
use super::seccomp::Filter;
use super::{JailPlan, command, keyring, rootfs};
use crate::os::spawn::ExecArgs;
use crate::os::{ExitStatus, child, fd, process};

/// What the command's process needs, prepared by the shim before it forked
/// the init (so that nothing is allocated after the fork).
#[derive(Clone, Copy)]
pub(super) struct Child<'a> {
    pub plan: &'a JailPlan,
    pub exec: &'a ExecArgs<'a>,
    pub filter: &'a Filter,
    /// The command's stdin, stdout and stderr (the shim owns them).
    pub streams: [BorrowedFd<'a>; 3],
    /// The kernel's highest capability number.
    pub cap_last: u32,
    /// The run's network namespace (close-on-exec), joined first.
    pub netns: Option<&'a std::os::fd::OwnedFd>,
    /// With a pty: where the init sends the pty's master once it allocated
    /// it in the dyno's devpts (the `streams` are then unused).
    pub console: Option<super::Console<'a>>,
    /// The command's stdin is a pty to take as its controlling terminal.
    pub tty: bool,
    /// The shim's ends of the command's pipes: closed by the init first
    /// thing, or a reader of stdin would never see its end.
    pub shim_ends: &'a [BorrowedFd<'a>],
}

fn send(report: BorrowedFd<'_>, message: Report) {
    // A failed write is ignored: the shim then learns of the end from the
    // init's exit status.
    let _ = fd::write_once(report, &message.encode());
}

/// Runs the dyno's init; never returns. `go` is the read end of the shim's
/// go-ahead pipe, `report` the write end of the report pipe.
///
/// Must run in the first process of a new pid namespace, forked from a
/// single-threaded process; anywhere else it leaves at once with status 1
/// (its `kill(-1)` would otherwise reach every process of the host).
pub(super) fn run(child: &Child<'_>, go: BorrowedFd<'_>, report: BorrowedFd<'_>) -> ! {
    if std::process::id() != 1 {
        process::exit_now(1);
    }
    // Shown by `ps` inside the dyno (the command line stays the shim's).
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes,
    // here a static one.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"dyno-init".as_ptr(), 0, 0, 0) };
    for fd in child.shim_ends {
        // SAFETY: these fds are the shim's (borrowed from its stack frames,
        // which the init never returns to); nothing in the init uses them.
        unsafe { fd::close_behind_owner(*fd) };
    }
    // Wait until the shim has put us into the dyno's cgroup.
    let mut byte = [0u8; 1];
    if !matches!(fd::read_full(go, &mut byte), Ok(1)) {
        process::exit_now(1);
    }
    if let Some(ns) = child.netns
        && let Err(e) = crate::os::netns::join(ns)
    {
        send(report, failed(16, &e));
        process::exit_now(1);
    }
    if let Err((step, e)) = rootfs::build_root(child.plan) {
        send(report, failed(step, &e));
        process::exit_now(1);
    }
    // Before the fork: the command and everything it starts inherit it.
    if let Err(e) = keyring::join_fresh_session_keyring() {
        send(report, failed(15, &e));
        process::exit_now(1);
    }
    // A pty of the dyno's own devpts, owned by its uid: the master goes to
    // the shim, the slave becomes the command's stdin, stdout and stderr.
    let mut slave = None;
    let shim_streams = child.streams;
    let mut with_pty = *child;
    if let Some(console) = child.console {
        let sent = crate::os::tty::open_pty(child.plan.uid, child.plan.gid, console.rows, console.cols)
            .and_then(|(master, s)| crate::os::tty::send_fds(console.sock, b't', &[master.as_fd()]).map(|()| s));
        match sent {
            Ok(s) => slave = Some(s),
            Err(e) => {
                send(report, failed(18, &e));
                process::exit_now(1);
            }
        }
        let fd = slave.as_ref().expect("set above").as_fd();
        with_pty.streams = [fd, fd, fd];
        with_pty.tty = true;
    }
    let child = &with_pty;
    // Block every signal: init takes them synchronously with sigwaitinfo.
    // SAFETY: sigset_t is plain data; zeroed is a valid value for sigfillset
    // to fill.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `all` lives on this stack frame; sigprocmask only reads it.
    unsafe {
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
    }
    let (status_r, status_w) = match fd::pipe() {
        Ok(p) => p,
        Err(e) => {
            send(report, failed(14, &e));
            process::exit_now(1);
        }
    };
    // SAFETY: init is single-threaded (forked from the single-threaded
    // shim, it started no thread), so the child may run any code.
    let cmd = unsafe { libc::fork() };
    if cmd < 0 {
        send(report, failed(14, &io::Error::last_os_error()));
        process::exit_now(1);
    }
    if cmd == 0 {
        command::exec_dropped(child, status_w.as_fd())
    }
    drop(status_w);
    drop(slave);
    for stream in shim_streams {
        // SAFETY: init's copies of the dyno's streams (the command has its
        // own); their owners live in the shim's stack frames, which init
        // never returns to (it leaves with _exit), so nothing uses or closes
        // them again.
        unsafe { fd::close_behind_owner(stream) };
    }
    match child::read_failure(&status_r) {
        Ok(None) => send(report, Report::Started),
        Ok(Some((step, errno))) => send(report, Report::Failed { step, errno }),
        Err(_) => send(report, Report::Failed { step: 0, errno: 0 }),
    }
    drop(status_r);
    wait_for_the_command(cmd, &all, report)
}

fn failed(step: i32, e: &io::Error) -> Report {
    Report::Failed {
        step,
        errno: e.raw_os_error().unwrap_or(0),
    }
}

/// Init's loop once the command runs: forwards termination signals to every
/// process of the dyno and reaps zombies; when the command has exited, kills
/// what is left, reaps it, reports the command's status and exits.
fn wait_for_the_command(cmd: libc::pid_t, all: &libc::sigset_t, report: BorrowedFd<'_>) -> ! {
    let mut result: Option<ExitStatus> = None;
    loop {
        // SAFETY: siginfo_t is plain data for sigwaitinfo to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `all` and `info` are valid for the call.
        let sig = unsafe { libc::sigwaitinfo(all, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            if matches!(
                sig,
                libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT | libc::SIGUSR1 | libc::SIGUSR2
            ) {
                // Every process of the dyno (all of this pid namespace but init).
                // SAFETY: no memory involved; from PID 1 (checked in `run`),
                // kill(-1) signals only this pid namespace.
                unsafe { libc::kill(-1, sig) };
            }
            continue;
        }
        loop {
            let mut status = 0;
            // SAFETY: `status` is a valid int for waitpid to fill.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == cmd {
                result = Some(ExitStatus::from_wait_status(status));
                // The command is gone: the dyno is over. End the rest.
                // SAFETY: as above, only this namespace.
                unsafe { libc::kill(-1, libc::SIGKILL) };
            }
        }
        if let Some(status) = result {
            // Reap what the SIGKILL left behind, then report.
            loop {
                let mut status = 0;
                // SAFETY: blocking waitpid for any child into a valid int;
                // ECHILD ends the loop.
                if unsafe { libc::waitpid(-1, &mut status, 0) } < 0 {
                    break;
                }
            }
            send(report, Report::Exited(status));
            process::exit_now(0);
        }
    }
}
