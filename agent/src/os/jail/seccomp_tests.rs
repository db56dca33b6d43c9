//! Unit tests of the seccomp filter, installed for real in forked children.

use std::os::fd::AsRawFd;

use super::*;
use crate::os::fd::{pipe, read_full};
use crate::os::process::{ExitStatus, wait_exit};

/// Installs the dyno's seccomp filter in a forked child and reports what
/// `unshare(flags)` and `clone3` return there.
fn under_the_filter(flags: libc::c_int) -> (i32, i32) {
    let filter = user_namespace_filter();
    let (r, w) = pipe().unwrap();
    // SAFETY: the child only makes raw syscalls on memory prepared before
    // the fork, then _exits; it never returns into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: as above: raw syscalls on this frame's memory, then _exit.
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            if install(&filter).is_err() {
                libc::_exit(100);
            }
            let errno = || *libc::__errno_location();
            let a = if libc::unshare(flags) < 0 { errno() } else { 0 };
            let b = if libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) < 0 {
                errno()
            } else {
                0
            };
            let msg = [a, b];
            libc::write(w.as_raw_fd(), msg.as_ptr().cast(), 8);
            libc::_exit(0);
        }
    }
    drop(w);
    let mut buf = [0u8; 8];
    assert_eq!(
        read_full(&r, &mut buf).unwrap(),
        8,
        "the child could not install the filter"
    );
    assert_eq!(wait_exit(pid as u32).unwrap(), ExitStatus::Code(0));
    (
        i32::from_ne_bytes(buf[..4].try_into().unwrap()),
        i32::from_ne_bytes(buf[4..].try_into().unwrap()),
    )
}

#[test]
fn seccomp_filter_refuses_user_namespaces_only() {
    let (newuser, clone3) = under_the_filter(libc::CLONE_NEWUSER);
    assert_eq!(newuser, libc::EPERM);
    assert_eq!(clone3, libc::ENOSYS, "clone3 must fall back to clone");
    let (newuser_and_ns, _) = under_the_filter(libc::CLONE_NEWUSER | libc::CLONE_NEWNS);
    assert_eq!(newuser_and_ns, libc::EPERM);
    // Other flags pass the filter (and then succeed or fail on capabilities).
    let (files, _) = under_the_filter(libc::CLONE_FILES);
    assert_eq!(files, 0);
}
