//! The privileges a dyno's command gives up before exec: its file limit, the
//! capability bounding, ambient and inheritable sets, root (for the dyno's
//! uid and gid, with no supplementary groups), and the right to gain any of
//! them back (`no_new_privs`). Every function is async-signal-safe: they run
//! in the command's process between fork and exec.

use std::io;

use crate::os::cvt;

/// Sets the soft and hard limit on open files to `nofile`.
pub(super) fn limit_open_files(nofile: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: nofile,
        rlim_max: nofile,
    };
    // SAFETY: `limit` is a valid rlimit on this stack frame, only read.
    cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }).map(drop)
}

/// Empties the capability bounding set (capabilities `0..=cap_last`) and the
/// ambient set; must run while still privileged.
pub(super) fn drop_bounding_and_ambient(cap_last: u32) -> io::Result<()> {
    for cap in 0..=cap_last {
        // SAFETY: PR_CAPBSET_DROP takes integer arguments only.
        cvt(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) })?;
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes integer arguments only.
    cvt(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    })
    .map(drop)
}

/// Becomes `uid`/`gid` (real, effective and saved) with `gid` as the only
/// group. Leaving uid 0 clears the permitted and effective capability sets.
pub(super) fn become_user(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: setgroups reads one gid from this stack frame; the other two
    // take integers only.
    cvt(unsafe { libc::setgroups(1, &gid) })?;
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::setresgid(gid, gid, gid) })?;
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::setresuid(uid, uid, uid) }).map(drop)
}

/// Clears every capability set of the calling thread, the inheritable one
/// included (which leaving uid 0 does not clear).
pub(super) fn clear_capabilities() -> io::Result<()> {
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    /// `_LINUX_CAPABILITY_VERSION_3`: two `CapData`s (64 capabilities).
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = CapHeader {
        version: VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: `header` and `data` have the kernel's layout for version 3
    // (a header and two data words), live on this stack frame, and outlive
    // the call; capset may write the preferred version into `header` only.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Sets `no_new_privs`: no exec (setuid, file capabilities) can raise the
/// process's privileges again. Also what lets an unprivileged process
/// install a seccomp filter.
pub(super) fn no_new_privs() -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }).map(drop)
}
