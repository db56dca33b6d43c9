//! The fresh session keyring, joined for real in a forked child (whose
//! keyrings go away with it: the test process's own are never touched).

use std::os::fd::AsRawFd;

use super::*;
use crate::os::fd::{pipe, read_full};
use crate::os::process::{ExitStatus, wait_exit};

const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
const KEYCTL_SEARCH: libc::c_long = 10;
const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;

#[test]
fn each_join_gives_a_new_empty_session_keyring() {
    let (r, w) = pipe().unwrap();
    // SAFETY: the child only makes raw syscalls on static strings and its
    // stack, then _exits; it never returns into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            let session = || libc::syscall(libc::SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
            let search = || {
                libc::syscall(
                    libc::SYS_keyctl,
                    KEYCTL_SEARCH,
                    KEY_SPEC_SESSION_KEYRING,
                    c"user".as_ptr(),
                    c"dyno-unit-key".as_ptr(),
                    0,
                )
            };
            let mut out = [0i64; 5];
            out[0] = if join_fresh_session_keyring().is_ok() { 1 } else { 0 };
            out[1] = session();
            let payload = b"x";
            let key = libc::syscall(
                libc::SYS_add_key,
                c"user".as_ptr(),
                c"dyno-unit-key".as_ptr(),
                payload.as_ptr(),
                payload.len(),
                KEY_SPEC_SESSION_KEYRING,
            );
            out[2] = if key > 0 && search() == key { 1 } else { 0 };
            out[3] = if join_fresh_session_keyring().is_ok() {
                session()
            } else {
                -1
            };
            out[4] = if search() < 0 {
                *libc::__errno_location() as i64
            } else {
                0
            };
            libc::write(w.as_raw_fd(), out.as_ptr().cast(), 40);
            libc::_exit(0);
        }
    }
    drop(w);
    let mut buf = [0u8; 40];
    assert_eq!(read_full(&r, &mut buf).unwrap(), 40);
    assert_eq!(wait_exit(pid as u32).unwrap(), ExitStatus::Code(0));
    let out: Vec<i64> = buf
        .chunks_exact(8)
        .map(|c| i64::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(out[0], 1, "joining a fresh session keyring failed");
    assert!(out[1] > 0, "no session keyring after joining: {out:?}");
    assert_eq!(
        out[2], 1,
        "a key added to the fresh keyring is not found there: {out:?}"
    );
    assert!(
        out[3] > 0 && out[3] != out[1],
        "the second join kept the keyring: {out:?}"
    );
    assert_eq!(
        out[4],
        libc::ENOKEY as i64,
        "the new keyring still holds the old key: {out:?}"
    );
}
