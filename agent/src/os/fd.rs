//! File descriptors: close-on-exec pipes, redirecting the standard streams,
//! and the raw reads and writes used on status and report pipes (usable
//! between fork and exec: no allocation).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::cvt;

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

/// Reads until `buf` is full or end of file; returns the bytes read.
/// Async-signal-safe (no allocation).
pub(crate) fn read_full(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reads into the unfilled tail of `buf`, within its bounds;
        // `fd` is open while borrowed.
        let n = unsafe { libc::read(fd.as_fd().as_raw_fd(), buf[got..].as_mut_ptr().cast(), buf.len() - got) };
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

/// One `write(2)` of `buf`; returns the bytes written. Async-signal-safe.
pub(crate) fn write_once(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, which outlives the call;
    // `fd` is open for as long as it is borrowed.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Closes `fd` without dropping its owner. Async-signal-safe.
///
/// # Safety
/// Nothing may use `fd` afterwards, nor close it again: its owner must never
/// be dropped (as in a forked child that leaves with `_exit`).
pub(crate) unsafe fn close_behind_owner(fd: BorrowedFd<'_>) {
    // SAFETY: closing an fd touches no memory; by the caller's contract the
    // fd is not used again.
    unsafe { libc::close(fd.as_raw_fd()) };
}

/// How many descriptors this process has open now (the entries of
/// `/proc/self/fd`, less the one the count itself opens).
pub fn open_count() -> io::Result<u64> {
    let n = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    Ok(n.saturating_sub(1))
}

/// This process's `RLIMIT_NOFILE`: (soft, hard).
pub fn nofile_limits() -> io::Result<(u64, u64)> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map_err(io::Error::from)
}

/// Whether `e` says a process (`EMFILE`) or the system (`ENFILE`) has no
/// descriptor left to give.
pub fn is_exhausted(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}
