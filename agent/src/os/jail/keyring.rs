//! The dyno's session keyring: a fresh, empty, anonymous one joined by its
//! init before the command is forked, so that every process of the dyno
//! inherits it instead of the agent's (under systemd each service has a
//! private session keyring, and whatever root put there). The seccomp filter
//! then refuses every keyring call, so it stays empty; it goes away with the
//! dyno's last process.

use std::io;

/// `KEYCTL_JOIN_SESSION_KEYRING` (`<linux/keyctl.h>`; not in the libc crate).
const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;

/// Replaces the calling process's session keyring with a new anonymous one.
/// A kernel built without keyrings (ENOSYS) has nothing to share: that is
/// success too. Async-signal-safe.
pub(super) fn join_fresh_session_keyring() -> io::Result<()> {
    // SAFETY: a NULL name asks for an anonymous keyring; the kernel reads no
    // memory of ours and writes none.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    if r >= 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOSYS) {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
#[path = "keyring_tests.rs"]
mod tests;
