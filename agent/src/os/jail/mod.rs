//! A jailed run. The shim unshares a pid namespace and forks the dyno's
//! init (`init.rs`, PID 1 there), puts it into the dyno's cgroups, then lets
//! it go: the init joins the run's network namespace (when it has one),
//! builds the root filesystem (`rootfs.rs`), joins a fresh
//! session keyring (`keyring.rs`) and forks the command (`command.rs`),
//! which drops its privileges (`privileges.rs`), installs the seccomp filter
//! (`seccomp.rs`) and execs. The init tells the shim how it went in the
//! [`report`] wire format.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use super::{cvt, fd, process, procfs, spawn::ExecPlan};

mod command;
mod enter;
mod init;
mod keyring;
mod privileges;
pub mod report;
mod rootfs;
mod seccomp;

pub use self::enter::{Dropped, enter_dyno, spawn_dropped};
pub use self::report::step_name;

/// What a jailed run looks like; everything prepared before any fork.
#[derive(Clone, Debug)]
pub struct JailPlan {
    /// Empty directory the new root is mounted on (`<run-dir>/root`).
    pub root: PathBuf,
    /// Empty directory the run's writable tmpfs is mounted on (`<run-dir>/rw`).
    pub rw: PathBuf,
    /// The stack image, bind-mounted read-only as `/`.
    pub stack: PathBuf,
    /// The slug's unpacked `app/`: the read-only lower layer of `/app`.
    pub app: PathBuf,
    /// Bytes a dyno may write (`/app` changes, `/tmp` and `/dev/shm` together).
    pub disk_bytes: u64,
    pub hostname: String,
    pub uid: u32,
    pub gid: u32,
    pub nofile: u64,
    /// The file keeping the run's network namespace (`None`: the host's).
    pub netns: Option<PathBuf>,
    /// Bind-mounted on the stack's `/etc/resolv.conf` (when it has one).
    pub resolv_conf: Option<PathBuf>,
}

/// Where the dyno's init sends the master of the pty it allocates for the
/// command, and the pty's first size.
#[derive(Clone, Copy)]
pub struct Console<'a> {
    pub sock: std::os::fd::BorrowedFd<'a>,
    pub rows: u16,
    pub cols: u16,
}

/// The command's standard streams and what the init does with the shim's
/// fds: `streams` become the command's 0/1/2 (unless a `console` gives it a
/// pty), `shim_ends` (the shim's ends of those pipes) are closed first.
pub struct JailIo<'a> {
    pub streams: [&'a OwnedFd; 3],
    pub shim_ends: &'a [&'a OwnedFd],
    pub console: Option<Console<'a>>,
}

/// A started jailed run.
pub struct Jailed {
    /// Host pid of the dyno's init.
    pub init: u32,
}

/// Starts a jailed run: unshares a pid namespace, forks the dyno's init,
/// puts it into the cgroup (`cgroup_procs` files) and raises its
/// `oom_score_adj`, then lets it build the jail and start the command.
/// The init reports on `report_w`; `streams` become the command's 0/1/2.
///
/// Must be called from a single-threaded process (the shim); it fails
/// otherwise.
pub fn spawn_jailed(
    plan: &JailPlan,
    exec: &ExecPlan,
    io: JailIo<'_>,
    report_w: &OwnedFd,
    cgroup_procs: &[PathBuf],
    oom_score_adj: i32,
) -> io::Result<Jailed> {
    let JailIo {
        streams,
        shim_ends,
        console,
    } = io;
    let shim_ends: Vec<std::os::fd::BorrowedFd<'_>> = shim_ends.iter().map(|f| f.as_fd()).collect();
    let cap_last = procfs::cap_last_cap();
    let args = exec.args();
    let filter = seccomp::dyno_filter();
    let netns = plan.netns.as_deref().map(super::netns::open).transpose()?;
    let (go_r, go_w) = fd::pipe()?;
    // SAFETY: unshare takes flags only; it affects the children forked next.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWPID) })?;
    let child = init::Child {
        plan,
        exec: &args,
        filter: &filter,
        streams: [streams[0].as_fd(), streams[1].as_fd(), streams[2].as_fd()],
        cap_last,
        netns: netns.as_ref(),
        console,
        tty: false,
        shim_ends: &shim_ends,
    };
    let Some(init) = process::fork()? else {
        drop(go_w);
        // The first process of the new pid namespace, forked from the
        // single-threaded shim.
        init::run(&child, go_r.as_fd(), report_w.as_fd())
    };
    drop(go_r);
    let admit = (|| {
        for procs in cgroup_procs {
            std::fs::write(procs, init.to_string())
                .map_err(|e| io::Error::new(e.kind(), format!("joining {}: {e}", procs.display())))?;
        }
        std::fs::write(format!("/proc/{init}/oom_score_adj"), oom_score_adj.to_string())
    })();
    if let Err(e) = admit {
        let _ = process::kill_pid(init, libc::SIGKILL);
        let _ = process::wait_exit(init);
        return Err(e);
    }
    fd::write_once(go_w.as_fd(), b"g")?;
    Ok(Jailed { init })
}
