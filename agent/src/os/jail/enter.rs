//! Entering a live dyno (`dynoctl exec`): the exec helper joins the dyno's
//! cgroups and namespaces (network, uts, ipc, pid, mount, then its root)
//! and forks the command, which drops every privilege exactly as the dyno's
//! own command did (`command.rs`): the dyno's uid, no capabilities,
//! `no_new_privs`, its seccomp filter.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use super::init::Child;
use super::{JailPlan, command, seccomp};
use crate::os::spawn::ExecPlan;
use crate::os::{child, cvt, fd, process, procfs};

/// Joins the cgroups (`cgroup_procs` files) and the namespaces of the dyno
/// whose init is `init`, then its root: from here on the calling process
/// sees the dyno's files, and the children it forks live in the dyno's
/// pid namespace. Must be called from a single-threaded process.
pub fn enter_dyno(init: u32, cgroup_procs: &[PathBuf]) -> io::Result<()> {
    // Checked while /proc is the host's (the dyno's /proc does not show us).
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing to enter a dyno with {threads} threads"
        )));
    }
    for procs in cgroup_procs {
        std::fs::write(procs, std::process::id().to_string())
            .map_err(|e| io::Error::new(e.kind(), format!("joining {}: {e}", procs.display())))?;
    }
    let open = |path: String, flags: libc::c_int| -> io::Result<OwnedFd> {
        let c = CString::new(path.clone()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: a NUL-terminated path; the returned fd is owned below.
        let fd = cvt(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) })
            .map_err(|e| io::Error::new(e.kind(), format!("opening {path}: {e}")))?;
        // SAFETY: open succeeded: the fd is ours alone.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    // Everything is opened before the first setns: /proc/<init> is the
    // host's /proc only until the mount namespace changes.
    let mut namespaces = Vec::new();
    for (name, kind) in [
        ("net", libc::CLONE_NEWNET),
        ("uts", libc::CLONE_NEWUTS),
        ("ipc", libc::CLONE_NEWIPC),
        ("pid", libc::CLONE_NEWPID),
        ("mnt", libc::CLONE_NEWNS),
    ] {
        namespaces.push((name, kind, open(format!("/proc/{init}/ns/{name}"), libc::O_RDONLY)?));
    }
    let root = open(format!("/proc/{init}/root"), libc::O_PATH | libc::O_DIRECTORY)?;
    for (name, kind, ns) in &namespaces {
        // SAFETY: setns on an fd we own; no memory involved.
        cvt(unsafe { libc::setns(ns.as_raw_fd(), *kind) })
            .map_err(|e| io::Error::new(e.kind(), format!("joining the dyno's {name} namespace: {e}")))?;
    }
    // SAFETY: fchdir to an fd we own, then chroot and chdir to static
    // NUL-terminated paths.
    unsafe {
        cvt(libc::fchdir(root.as_raw_fd()))?;
        cvt(libc::chroot(c".".as_ptr()))?;
        cvt(libc::chdir(c"/".as_ptr()))?;
    }
    Ok(())
}

/// What the exec'd command runs as.
pub struct Dropped {
    pub uid: u32,
    pub gid: u32,
    pub nofile: u64,
}

/// Forks `exec` (after [`enter_dyno`]: into the dyno's pid namespace) with
/// `streams` as its 0/1/2 (with `tty`, a pty it takes as controlling
/// terminal) and every privilege dropped; returns its host pid once it
/// exec'd, or the step that failed.
pub fn spawn_dropped(as_: &Dropped, exec: &ExecPlan, streams: [&OwnedFd; 3], tty: bool) -> io::Result<u32> {
    let plan = JailPlan {
        root: PathBuf::new(),
        rw: PathBuf::new(),
        stack: PathBuf::new(),
        app: PathBuf::new(),
        disk_bytes: 0,
        hostname: String::new(),
        uid: as_.uid,
        gid: as_.gid,
        nofile: as_.nofile,
        netns: None,
        resolv_conf: None,
    };
    let args = exec.args();
    let filter = seccomp::dyno_filter();
    let child = Child {
        plan: &plan,
        exec: &args,
        filter: &filter,
        streams: [streams[0].as_fd(), streams[1].as_fd(), streams[2].as_fd()],
        cap_last: procfs::cap_last_cap(),
        netns: None,
        console: None,
        tty,
        shim_ends: &[],
    };
    let (status_r, status_w) = fd::pipe()?;
    // SAFETY: the caller is single-threaded (enter_dyno checked it), so the
    // child may run any code; it only makes raw syscalls before its exec.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        command::exec_dropped(&child, status_w.as_fd())
    }
    let pid = pid as u32;
    drop(status_w);
    match child::read_failure(&status_r)? {
        None => Ok(pid),
        Some((step, errno)) => {
            let _ = process::wait_exit(pid);
            let e = io::Error::from_raw_os_error(errno);
            Err(io::Error::new(e.kind(), format!("{}: {e}", super::step_name(step))))
        }
    }
}
