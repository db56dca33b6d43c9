//! What a forked child may do before exec: only async-signal-safe syscalls
//! on memory prepared before the fork (no allocation, no locks, no logging),
//! and, when a step fails, a `[step, errno]` frame on a close-on-exec status
//! pipe that its parent reads (end of file with no bytes means the exec
//! succeeded). Shared by the unjailed command (`spawn.rs`) and the jailed
//! one (`jail/command.rs`).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::{cvt, fd, process};

/// Bytes of a failure frame: two native-endian i32s, the step and the errno.
const FAILURE_LEN: usize = 8;

/// Reports the failed `step` (and the errno of `err`) on the status pipe,
/// then leaves with status 127. A failed write is ignored: the parent then
/// sees the child's exit without a frame.
pub(super) fn fail(status: BorrowedFd<'_>, step: i32, err: io::Error) -> ! {
    let errno = err.raw_os_error().unwrap_or(0);
    let mut frame = [0u8; FAILURE_LEN];
    frame[..4].copy_from_slice(&step.to_ne_bytes());
    frame[4..].copy_from_slice(&errno.to_ne_bytes());
    let _ = fd::write_once(status, &frame);
    process::exit_now(127)
}

/// Reads the child's status pipe until end of file: `None` when the child
/// exec'd (nothing was written), else the `(step, errno)` it reported.
pub(super) fn read_failure(status: &OwnedFd) -> io::Result<Option<(i32, i32)>> {
    let mut frame = [0u8; FAILURE_LEN];
    if fd::read_full(status, &mut frame)? == 0 {
        return Ok(None);
    }
    let word = |i: usize| i32::from_ne_bytes([frame[i], frame[i + 1], frame[i + 2], frame[i + 3]]);
    Ok(Some((word(0), word(4))))
}

/// Gives the calling process default signal dispositions and an empty signal
/// mask: ignored signals would otherwise stay ignored across exec.
pub(super) fn default_signals() {
    // SAFETY: SIG_DFL installs no handler; the signal set lives on this
    // stack frame and is initialised by sigemptyset before sigprocmask reads
    // it. Only raw syscalls, no allocation.
    unsafe {
        for sig in 1..libc::SIGRTMIN() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// Makes `streams` the calling process's standard input, output and error.
pub(super) fn take_streams(streams: [BorrowedFd<'_>; 3]) -> io::Result<()> {
    for (target, stream) in streams.iter().enumerate() {
        // SAFETY: dup2 of an open (borrowed) fd onto 0, 1 or 2; no memory involved.
        cvt(unsafe { libc::dup2(stream.as_raw_fd(), target as libc::c_int) })?;
    }
    Ok(())
}

/// Changes the working directory.
pub(super) fn chdir(dir: &CStr) -> io::Result<()> {
    // SAFETY: `dir` is a NUL-terminated string that outlives the call.
    cvt(unsafe { libc::chdir(dir.as_ptr()) }).map(drop)
}

/// Marks every fd above the standard three close-on-exec: nothing of the
/// shim or the agent leaks into the dyno.
pub(super) fn close_inherited_on_exec() -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on fds;
    // no memory involved, and no fd is closed before the exec.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}
