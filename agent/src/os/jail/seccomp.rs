//! The dyno's seccomp filter: no new user namespaces (in which a dyno would
//! regain every capability: mounts, chroot, unbounded tmpfs), and nothing of
//! a foreign architecture.

use std::io;

use crate::os::cvt;

/// The architecture the seccomp filter is built for (`AUDIT_ARCH_*`) and the
/// syscall numbers it looks at.
#[cfg(target_arch = "x86_64")]
const SECCOMP_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const SECCOMP_ARCH: u32 = 0xc000_00b7;

/// Instructions of the filter.
pub(super) type Filter = [libc::sock_filter; 14];

/// A seccomp filter that refuses new user namespaces (in which a dyno would
/// regain every capability: mounts, chroot, unbounded tmpfs): `unshare` and
/// `clone` with `CLONE_NEWUSER` fail with EPERM; `clone3`, whose flags a
/// filter cannot read, fails with ENOSYS so that libc falls back to `clone`.
/// A foreign architecture's syscalls kill the process.
pub(super) fn user_namespace_filter() -> Filter {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    /// x32 syscalls carry x86_64's audit arch; their numbers have this bit.
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let errno = |e: i32| libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA);
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    // struct seccomp_data: nr at 0, arch at 4, args[0] at 16 (low half first).
    // Jumps are relative to the next instruction and only go forward.
    [
        /* 0 */ op(LD_W_ABS, 0, 0, 4),
        /* 1 */ op(JEQ, 1, 0, SECCOMP_ARCH), // -> 3, else 2
        /* 2 */ op(RET, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        /* 3 */ op(LD_W_ABS, 0, 0, 0),
        /* 4 */ op(JGE, 8, 0, X32_SYSCALL_BIT), // -> 13
        /* 5 */ op(JEQ, 3, 0, libc::SYS_unshare as u32), // -> 9
        /* 6 */ op(JEQ, 2, 0, libc::SYS_clone as u32), // -> 9
        /* 7 */ op(JEQ, 0, 4, libc::SYS_clone3 as u32), // -> 8, else 12
        /* 8 */ op(RET, 0, 0, errno(libc::ENOSYS)),
        /* 9 */ op(LD_W_ABS, 0, 0, 16),
        /* 10 */ op(JSET, 0, 1, libc::CLONE_NEWUSER as u32), // -> 11, else 12
        /* 11 */ op(RET, 0, 0, errno(libc::EPERM)),
        /* 12 */ op(RET, 0, 0, libc::SECCOMP_RET_ALLOW),
        /* 13 */ op(RET, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
    ]
}

/// Installs `filter` on the calling thread (which must already have
/// `no_new_privs`, or `CAP_SYS_ADMIN`). Async-signal-safe.
pub(super) fn install(filter: &Filter) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `filter`'s instructions and says how many
    // there are; the kernel copies them and writes nothing through the
    // pointer (the `*mut` is only the C declaration's).
    cvt(unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        )
    })
    .map(drop)
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
