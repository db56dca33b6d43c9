//! The dyno's seccomp filter: a table of the syscalls a dyno may not make
//! ([`RULES`], one row per syscall with its reason), compiled into a classic
//! BPF program. Everything else is allowed; a foreign architecture's
//! syscalls (x32 included) kill the process.
//!
//! Errnos: a privileged operation fails with EPERM, what the kernel already
//! answers a process without capabilities, so nothing a program sees changes
//! (the filter only keeps the kernel from parsing the call). An optional
//! facility (keyrings, io_uring, perf events, …) fails with ENOSYS, what a
//! kernel built without it answers: software probing for it then takes its
//! "not available" path, where EPERM would read as a permission problem to
//! report. `clone3`, whose flags a filter cannot read, fails with ENOSYS so
//! that libc falls back to `clone`.
//!
//! Allowed on purpose, as in Docker's default profile: `ptrace`,
//! `process_vm_readv`/`writev` (the kernel confines them to the dyno's own
//! processes: one uid, no capabilities, a pid namespace of its own; profilers
//! such as py-spy and rbspy need them), `adjtimex` and `clock_adjtime`
//! (glibc's `ntp_gettime` and musl's `adjtimex` read the clock's state with
//! mode 0, the mode is in memory a filter cannot read, and every mode that
//! writes needs `CAP_SYS_TIME`).
//!
//! Allowed syscalls never look at their arguments, so the kernel's seccomp
//! cache (Linux 5.11+) lets them through without running the filter; only
//! `clone`, `unshare`, `personality`, `socket` and the refused ones run it.

use std::io;

use crate::os::cvt;

/// The architecture the seccomp filter is built for (`AUDIT_ARCH_*`) and the
/// syscall numbers it looks at.
#[cfg(target_arch = "x86_64")]
const SECCOMP_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const SECCOMP_ARCH: u32 = 0xc000_00b7;

/// What the filter does with a syscall of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Fails with EPERM: a privileged operation.
    Eperm,
    /// Fails with ENOSYS: a facility the dyno's kernel does not offer.
    Enosys,
    /// `clone`/`unshare`: EPERM when the flags (first argument) ask for a
    /// new user namespace, else allowed.
    NoNewUserNs,
    /// `personality`: the values Docker allows, else EPERM.
    Personality,
    /// `socket`: the `AF_VSOCK` family fails with EAFNOSUPPORT (what a kernel
    /// without vsock answers), every other family is allowed.
    NoVsock,
}

use Verdict::*;

/// The syscalls a dyno may not make, each with why.
#[rustfmt::skip]
const RULES: &[(libc::c_long, Verdict)] = &[
    // New user namespaces: root in one gives back mounts, chroot, an unbounded tmpfs.
    (libc::SYS_unshare, NoNewUserNs),
    (libc::SYS_clone, NoNewUserNs),
    (libc::SYS_clone3, Enosys),               // flags in memory the filter cannot read; libc falls back to clone
    // Kernel keyrings: a key would reach whoever shares the keyring, and outlive the dyno in its uid's
    // user keyring (uids are reused); a dyno's session keyring is its own and empty anyway.
    (libc::SYS_keyctl, Enosys),
    (libc::SYS_add_key, Enosys),
    (libc::SYS_request_key, Enosys),
    // Kernel surface no web process needs, and the usual first step of kernel exploits.
    (libc::SYS_io_uring_setup, Enosys),       // I/O that seccomp never sees; libraries fall back to epoll
    (libc::SYS_io_uring_enter, Enosys),
    (libc::SYS_io_uring_register, Enosys),
    (libc::SYS_userfaultfd, Enosys),          // stalls the kernel's page faults at will: the tool to win kernel races
    (libc::SYS_perf_event_open, Enosys),      // perf counters: a large surface and side channels on other tenants
    (libc::SYS_bpf, Enosys),                  // eBPF: verifier bugs are kernel exploits
    (libc::SYS_personality, Personality),     // odd personalities map page zero or make all memory executable
    (libc::SYS_socket, NoVsock),              // vsock talks to the hypervisor, past every network namespace
    // Privileged operations, already powerless without capabilities: refused before the kernel parses them.
    (libc::SYS_mount, Eperm),                 // mounts and the new mount API
    (libc::SYS_umount2, Eperm),
    (libc::SYS_pivot_root, Eperm),
    (libc::SYS_chroot, Eperm),
    (libc::SYS_fsopen, Eperm),
    (libc::SYS_fsconfig, Eperm),
    (libc::SYS_fsmount, Eperm),
    (libc::SYS_fspick, Eperm),
    (libc::SYS_move_mount, Eperm),
    (libc::SYS_open_tree, Eperm),
    (libc::SYS_mount_setattr, Eperm),
    (libc::SYS_setns, Eperm),                 // joining another namespace
    (libc::SYS_open_by_handle_at, Eperm),     // any file of a filesystem by handle, past the dyno's mounts
    (libc::SYS_kexec_load, Eperm),            // booting another kernel
    (libc::SYS_kexec_file_load, Eperm),
    (libc::SYS_reboot, Eperm),
    (libc::SYS_init_module, Eperm),           // kernel modules
    (libc::SYS_finit_module, Eperm),
    (libc::SYS_delete_module, Eperm),
    (libc::SYS_acct, Eperm),                  // process accounting
    (libc::SYS_swapon, Eperm),
    (libc::SYS_swapoff, Eperm),
    (libc::SYS_settimeofday, Eperm),          // the host's clock (reading it stays allowed)
    (libc::SYS_clock_settime, Eperm),
    (libc::SYS_quotactl, Eperm),              // disk quotas
    (libc::SYS_quotactl_fd, Eperm),
    (libc::SYS_syslog, Eperm),                // the kernel log: other tenants' OOM kills and crashes
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_iopl, Eperm),                  // raw I/O ports
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_ioperm, Eperm),
    // Obsolete: removed or deprecated, but older kernels still carry their code.
    (libc::SYS_lookup_dcookie, Enosys),
    (libc::SYS_nfsservctl, Enosys),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_uselib, Enosys),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_ustat, Enosys),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_sysfs, Enosys),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS__sysctl, Enosys),
];

/// `personality` values a dyno may set (the query and the plain Linux
/// personalities, as Docker allows): PER_LINUX, PER_LINUX32, UNAME26,
/// UNAME26 | PER_LINUX32, and 0xffffffff, which only reads the current one.
const PERSONALITIES: [u32; 5] = [0, 0x0008, 0x0002_0000, 0x0002_0008, 0xffff_ffff];

/// The compiled filter, built before any fork (it allocates) and only read
/// after.
pub(super) struct Filter(Vec<libc::sock_filter>);

/// Where a jump goes: the next instruction or the block of a label.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Next,
    To(Label),
}

/// The blocks after the syscall comparisons.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    Kill,
    /// The first instruction of a verdict's block.
    Verdict(Verdict),
    /// The "allow" that ends a block looking at an argument.
    Allowed(Verdict),
}

/// A filter under construction: instructions whose jumps name labels, and
/// where each label was placed.
#[derive(Default)]
struct Asm {
    code: Vec<(u16, Target, Target, u32)>,
    labels: Vec<(Label, usize)>,
}

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Offsets in `struct seccomp_data`: nr, arch, and the low half of args[0].
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;

fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
}

impl Asm {
    fn load(&mut self, offset: u32) {
        self.code.push((LD_W_ABS, Target::Next, Target::Next, offset));
    }
    fn jump(&mut self, code: u16, k: u32, yes: Target, no: Target) {
        self.code.push((code, yes, no, k));
    }
    fn ret(&mut self, action: u32) {
        self.code.push((RET, Target::Next, Target::Next, action));
    }
    fn label(&mut self, label: Label) {
        self.labels.push((label, self.code.len()));
    }

    /// Resolves the labels into relative forward jumps.
    fn finish(self) -> Filter {
        let at = |label: Label| {
            self.labels
                .iter()
                .find(|(l, _)| *l == label)
                .map(|(_, at)| *at)
                .expect("every label the filter jumps to is placed")
        };
        let offset = |from: usize, to: Target| match to {
            Target::Next => 0,
            // Jumps are relative to the next instruction and only go forward.
            Target::To(label) => u8::try_from(at(label) - from - 1).expect("the filter's jumps fit in a byte"),
        };
        let code = self
            .code
            .iter()
            .enumerate()
            .map(|(i, &(code, yes, no, k))| libc::sock_filter {
                code,
                jt: offset(i, yes),
                jf: offset(i, no),
                k,
            })
            .collect();
        Filter(code)
    }
}

/// The dyno's filter: the arch check, one comparison per row of [`RULES`],
/// then one block per verdict.
pub(super) fn dyno_filter() -> Filter {
    use Target::{Next, To};
    let mut asm = Asm::default();
    asm.load(ARCH);
    asm.jump(JEQ, SECCOMP_ARCH, Next, To(Label::Kill));
    asm.load(NR);
    // x32 syscalls carry x86_64's audit arch; their numbers have this bit.
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    asm.jump(JGE, X32_SYSCALL_BIT, To(Label::Kill), Next);
    for &(nr, verdict) in RULES {
        asm.jump(JEQ, nr as u32, To(Label::Verdict(verdict)), Next);
    }
    asm.ret(libc::SECCOMP_RET_ALLOW);
    asm.label(Label::Verdict(Eperm));
    asm.ret(errno(libc::EPERM));
    asm.label(Label::Verdict(Enosys));
    asm.ret(errno(libc::ENOSYS));
    // The blocks that look at an argument end with their own "allow" (jumps
    // only go forward).
    asm.label(Label::Verdict(NoNewUserNs));
    asm.load(ARG0_LOW);
    asm.jump(JSET, libc::CLONE_NEWUSER as u32, Next, To(Label::Allowed(NoNewUserNs)));
    asm.ret(errno(libc::EPERM));
    asm.label(Label::Allowed(NoNewUserNs));
    asm.ret(libc::SECCOMP_RET_ALLOW);
    asm.label(Label::Verdict(Personality));
    asm.load(ARG0_LOW);
    for persona in PERSONALITIES {
        asm.jump(JEQ, persona, To(Label::Allowed(Personality)), Next);
    }
    asm.ret(errno(libc::EPERM));
    asm.label(Label::Allowed(Personality));
    asm.ret(libc::SECCOMP_RET_ALLOW);
    asm.label(Label::Verdict(NoVsock));
    asm.load(ARG0_LOW);
    asm.jump(JEQ, libc::AF_VSOCK as u32, Next, To(Label::Allowed(NoVsock)));
    asm.ret(errno(libc::EAFNOSUPPORT));
    asm.label(Label::Allowed(NoVsock));
    asm.ret(libc::SECCOMP_RET_ALLOW);
    asm.label(Label::Kill);
    asm.ret(libc::SECCOMP_RET_KILL_PROCESS);
    asm.finish()
}

/// Installs `filter` on the calling thread (which must already have
/// `no_new_privs`, or `CAP_SYS_ADMIN`). Async-signal-safe.
pub(super) fn install(filter: &Filter) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: filter.0.len() as u16,
        filter: filter.0.as_ptr() as *mut libc::sock_filter,
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
