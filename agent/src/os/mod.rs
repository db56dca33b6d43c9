//! The syscall boundary: every raw libc call of the agent, the shim and the
//! dyno's init lives in this module tree, each `unsafe` block with a
//! `// SAFETY:` comment saying why it is sound. The rest of the code sees
//! `Result`s and owned fds, never an errno; the workspace denies `unsafe_code`
//! everywhere but here (see `lib.rs`).
//!
//! Map:
//! - [`fd`]: pipes, redirecting standard streams, reading and writing raw fds;
//! - [`process`]: signals to pids and process groups, waiting for and peeking
//!   at exits, pidfds, sessions, fork, `_exit`, signal dispositions,
//!   `oom_score_adj`;
//! - [`procfs`]: what `/proc` says about processes (start ticks, command
//!   lines, children, pid namespaces);
//! - `child`: what a forked child may do before exec (only async-signal-safe
//!   syscalls) and how it reports a failed step to its parent;
//! - [`resolve`]: `openat2` path resolution that symlinks cannot lead out
//!   of a directory, real paths of fds, fds named as paths for mount options;
//! - [`exec_limits`]: the kernel's limits on what `execve` takes (`ARG_MAX`,
//!   `MAX_ARG_STRLEN`), checked when a start is validated;
//! - [`spawn`]: the fork→exec child of an unjailed run ([`ExecPlan`],
//!   [`spawn_command`]);
//! - [`tty`]: ptys (allocated in a dyno's own devpts), window sizes, raw
//!   mode of the caller's terminal, fds passed over Unix sockets;
//! - [`jail`]: a jailed run: the dyno's init (PID 1 of its pid namespace),
//!   its root filesystem, the privileges it drops, the seccomp filter, and the
//!   init→shim [`report`] wire format.

use std::io;

mod child;
pub mod exec_limits;
pub mod fd;
pub mod jail;
pub mod netns;
pub mod process;
pub mod procfs;
pub mod resolve;
pub mod spawn;
pub mod tty;

pub use self::fd::{pipe, redirect};
pub use self::jail::{Console, JailIo, JailPlan, Jailed, report, spawn_jailed, step_name};
pub use self::process::{
    ExitStatus, exit_now, fork, ignore_signals, kill_group, kill_pid, new_session, peek_exit, pidfd_open, pidfd_wait,
    set_oom_score_adj, wait_exit,
};
pub use self::procfs::{all_pids, arg_is, children, cmdline, in_my_pid_namespace, start_ticks, task_state};
pub use self::spawn::{ExecPlan, spawn_command, use_fork_exec};

/// A raw libc return code as a `Result`: negative means `errno` says why.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Below this many free bytes a file system counts as full: a record or a
/// run directory no longer fits.
const DISK_LOW: u64 = 256 * 1024;

/// The bytes free on `dir`'s file system (to root), and whether it is full
/// (of bytes or of inodes); `(0, false)` when it cannot be asked.
pub fn disk_space(dir: &std::path::Path) -> (u64, bool) {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => {
            let free = s.blocks_free().saturating_mul(s.fragment_size());
            (free, free < DISK_LOW || (s.files() > 0 && s.files_free() == 0))
        }
        Err(_) => (0, false),
    }
}
