//! Unit tests of the seccomp filter, installed for real in forked children.
//!
//! The tests run as root with every capability, so a refusal seen here is
//! the filter's, not the kernel's. Every probed call is harmless if the
//! filter let it through (bad pointers, no-op arguments): a broken filter
//! fails the test, never changes the host.

use std::os::fd::AsRawFd;

use super::*;
use crate::os::fd::{pipe, read_full};
use crate::os::process::{ExitStatus, wait_exit};

/// A raw syscall and its six arguments.
type Call = (libc::c_long, [libc::c_long; 6]);

fn call(nr: libc::c_long, args: &[libc::c_long]) -> Call {
    let mut all = [0; 6];
    all[..args.len()].copy_from_slice(args);
    (nr, all)
}

/// Installs the dyno's seccomp filter in a forked child, makes `calls` there
/// and returns what each gave: 0 when it succeeded, else its errno.
fn under_the_filter(calls: &[Call]) -> Vec<i32> {
    let filter = dyno_filter();
    let mut results = vec![0i32; calls.len()];
    let (r, w) = pipe().unwrap();
    // SAFETY: the child only makes raw syscalls on memory prepared before
    // the fork (`calls`, `results`), then _exits; it never returns into the
    // test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: as above: raw syscalls on memory prepared before the fork,
        // then _exit.
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            if install(&filter).is_err() {
                libc::_exit(100);
            }
            for (result, (nr, a)) in results.iter_mut().zip(calls) {
                let ret = libc::syscall(*nr, a[0], a[1], a[2], a[3], a[4], a[5]);
                *result = if ret < 0 { *libc::__errno_location() } else { 0 };
            }
            libc::write(w.as_raw_fd(), results.as_ptr().cast(), results.len() * 4);
            libc::_exit(0);
        }
    }
    drop(w);
    let mut buf = vec![0u8; calls.len() * 4];
    assert_eq!(
        read_full(&r, &mut buf).unwrap(),
        buf.len(),
        "the child could not install the filter"
    );
    assert_eq!(wait_exit(pid as u32).unwrap(), ExitStatus::Code(0));
    buf.chunks_exact(4)
        .map(|c| i32::from_ne_bytes(c.try_into().unwrap()))
        .collect()
}

fn unshare(flags: libc::c_int) -> Call {
    call(libc::SYS_unshare, &[flags as libc::c_long])
}

#[test]
fn seccomp_filter_refuses_user_namespaces_but_not_other_clone_flags() {
    let got = under_the_filter(&[
        unshare(libc::CLONE_NEWUSER),
        call(libc::SYS_clone3, &[0, 0]),
        unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS),
        // Other flags pass the filter (and then succeed or fail on capabilities).
        unshare(libc::CLONE_FILES),
    ]);
    assert_eq!(got[0], libc::EPERM);
    assert_eq!(got[1], libc::ENOSYS, "clone3 must fall back to clone");
    assert_eq!(got[2], libc::EPERM);
    assert_eq!(got[3], 0);
}

#[test]
fn seccomp_filter_refuses_keyrings_and_kernel_surface_a_dyno_never_needs() {
    let session_keyring = -3; // KEY_SPEC_SESSION_KEYRING
    let null = 0;
    let bad_fd = -1;
    let cases: [(&str, Call, i32); 12] = [
        ("keyctl", call(libc::SYS_keyctl, &[0, session_keyring, 0]), libc::ENOSYS),
        (
            "add_key",
            call(libc::SYS_add_key, &[null, null, null, 0, session_keyring]),
            libc::ENOSYS,
        ),
        (
            "request_key",
            call(libc::SYS_request_key, &[null, null, null, 0]),
            libc::ENOSYS,
        ),
        (
            "io_uring_setup",
            call(libc::SYS_io_uring_setup, &[1, null]),
            libc::ENOSYS,
        ),
        ("userfaultfd", call(libc::SYS_userfaultfd, &[1]), libc::ENOSYS),
        (
            "perf_event_open",
            call(libc::SYS_perf_event_open, &[null, 0, -1, -1, 0]),
            libc::ENOSYS,
        ),
        ("bpf", call(libc::SYS_bpf, &[0, null, 0]), libc::ENOSYS),
        (
            "mount",
            call(libc::SYS_mount, &[null, null, null, 0, null]),
            libc::EPERM,
        ),
        ("setns", call(libc::SYS_setns, &[bad_fd, 0]), libc::EPERM),
        (
            "open_by_handle_at",
            call(libc::SYS_open_by_handle_at, &[bad_fd, null, 0]),
            libc::EPERM,
        ),
        ("clock_settime", call(libc::SYS_clock_settime, &[0, null]), libc::EPERM),
        ("syslog", call(libc::SYS_syslog, &[10, null, 0]), libc::EPERM), // SYSLOG_ACTION_SIZE_BUFFER
    ];
    let calls: Vec<Call> = cases.iter().map(|c| c.1).collect();
    let got = under_the_filter(&calls);
    for ((name, _, want), got) in cases.iter().zip(got) {
        assert_eq!(got, *want, "{name}: errno {got}, expected {want}");
    }
}

#[test]
fn seccomp_filter_keeps_what_programs_need() {
    // SAFETY: timex is plain data; all zeroes is modes = 0, a read.
    let mut timex: libc::timex = unsafe { std::mem::zeroed() };
    let timex_ptr = &mut timex as *mut libc::timex as libc::c_long;
    let cases: [(&str, Call, i32); 7] = [
        // Reading the clock's state (mode 0), as glibc's ntp_gettime does.
        ("clock_adjtime read", call(libc::SYS_clock_adjtime, &[0, timex_ptr]), 0),
        ("adjtimex read", call(libc::SYS_adjtimex, &[timex_ptr]), 0),
        ("personality query", call(libc::SYS_personality, &[0xffff_ffff]), 0),
        ("personality PER_LINUX", call(libc::SYS_personality, &[0]), 0),
        (
            "personality ADDR_NO_RANDOMIZE",
            call(libc::SYS_personality, &[libc::ADDR_NO_RANDOMIZE as libc::c_long]),
            libc::EPERM,
        ),
        (
            "socket AF_UNIX",
            call(
                libc::SYS_socket,
                &[libc::AF_UNIX as libc::c_long, libc::SOCK_STREAM as libc::c_long],
            ),
            0,
        ),
        (
            "socket AF_VSOCK",
            call(
                libc::SYS_socket,
                &[libc::AF_VSOCK as libc::c_long, libc::SOCK_STREAM as libc::c_long],
            ),
            libc::EAFNOSUPPORT,
        ),
    ];
    let calls: Vec<Call> = cases.iter().map(|c| c.1).collect();
    let got = under_the_filter(&calls);
    for ((name, _, want), got) in cases.iter().zip(got) {
        assert_eq!(got, *want, "{name}: errno {got}, expected {want}");
    }
}

#[test]
fn every_syscall_has_one_row() {
    let mut seen = std::collections::BTreeSet::new();
    for (nr, _) in RULES {
        assert!(seen.insert(*nr), "syscall {nr} has two rows in RULES");
    }
}
