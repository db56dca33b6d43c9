//! A fake cgroup2 fs for the tests: a tempdir with the root's control files,
//! and `mkdir` / `rmdir` that do what the kernel does in a cgroup2 mount
//! (create a new cgroup's control files; refuse to remove a busy cgroup and
//! take its files with it), swapped into [`V2Cgroups`] in place of the
//! plain calls.

use std::fs;
use std::io;
use std::path::Path;

use nix::errno::Errno;

use super::{DEFAULT_PARENT, V2Cgroups};

/// `mkdir` in a cgroup2 fs: the kernel also creates the control files,
/// those of a controller only if the parent enabled it for its children.
pub(super) fn fake_mkdir(dir: &Path) -> io::Result<()> {
    fs::create_dir(dir)?;
    let parent = dir.parent().expect("a cgroup has a parent");
    let enabled = fs::read_to_string(parent.join("cgroup.subtree_control"))?;
    let enabled: Vec<&str> = enabled.split_whitespace().map(|c| c.trim_start_matches('+')).collect();
    let on = |c: &str| enabled.contains(&c);
    let controllers = enabled.join(" ");
    let mut files = vec![
        ("cgroup.procs", ""),
        ("cgroup.threads", ""),
        ("cgroup.controllers", controllers.as_str()),
        ("cgroup.subtree_control", ""),
        ("cgroup.events", "populated 0\nfrozen 0\n"),
        ("cgroup.kill", ""),
        ("cgroup.freeze", "0\n"),
        ("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"),
    ];
    if on("memory") {
        files.extend([
            ("memory.max", "max\n"),
            ("memory.swap.max", "max\n"),
            ("memory.swap.current", "0\n"),
            ("memory.oom.group", "0\n"),
            ("memory.current", "0\n"),
            ("memory.peak", "0\n"),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
            ),
            ("memory.stat", "anon 0\nfile 0\nkernel 0\nshmem 0\n"),
        ]);
    }
    if on("cpu") {
        files.extend([("cpu.max", "max 100000\n"), ("cpu.weight", "100\n")]);
    }
    if on("pids") {
        files.extend([("pids.max", "max\n"), ("pids.current", "0\n")]);
    }
    for (name, text) in files {
        fs::write(dir.join(name), text)?;
    }
    Ok(())
}

/// `rmdir` in a cgroup2 fs: refused while the cgroup has children or
/// processes; its control files go with it.
pub(super) fn fake_rmdir(dir: &Path) -> io::Result<()> {
    let has_children = fs::read_dir(dir)?.any(|e| e.is_ok_and(|e| e.path().is_dir()));
    let populated = !fs::read_to_string(dir.join("cgroup.procs"))?.trim().is_empty();
    if has_children || populated {
        return Err(io::Error::from_raw_os_error(Errno::EBUSY as i32));
    }
    fs::remove_dir_all(dir)
}

/// A fake cgroup2 root like a systemd host's, with no controller enabled
/// for its children yet.
pub(super) fn fake_v2() -> (tempfile::TempDir, V2Cgroups) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fs::write(
        root.join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids rdma misc\n",
    )
    .unwrap();
    fs::write(root.join("cgroup.subtree_control"), "").unwrap();
    fs::write(root.join("cgroup.procs"), "1\n").unwrap();
    let cgroups = V2Cgroups::new(root, DEFAULT_PARENT)
        .unwrap()
        .with_fs_ops(fake_mkdir, fake_rmdir);
    (tmp, cgroups)
}

/// A write to a control file of a cgroup2 fs: enabling controllers in
/// `cgroup.subtree_control` of a cgroup other than the root that has
/// processes is refused with EBUSY (the "no internal processes" rule); a pid
/// written to `cgroup.procs` leaves the cgroup it was in. The file must exist.
pub(super) fn fake_write(path: &Path, value: &str) -> io::Result<()> {
    let dir = path.parent().expect("a control file is in a cgroup");
    let is_root = !dir.parent().is_some_and(|p| p.join("cgroup.controllers").is_file());
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if !path.is_file() {
        return Err(io::Error::from_raw_os_error(Errno::ENOENT as i32));
    }
    match name {
        "cgroup.subtree_control" if !is_root && value.contains('+') => {
            if !fs::read_to_string(dir.join("cgroup.procs"))?.trim().is_empty() {
                return Err(io::Error::from_raw_os_error(Errno::EBUSY as i32));
            }
            fs::write(path, value)
        }
        "cgroup.procs" => {
            let pid = value.trim();
            let mut root = dir.to_path_buf();
            while root.parent().is_some_and(|p| p.join("cgroup.controllers").is_file()) {
                root.pop();
            }
            remove_pid(&root, pid)?;
            let mut procs = fs::read_to_string(path)?;
            procs.push_str(pid);
            procs.push('\n');
            fs::write(path, procs)
        }
        _ => fs::write(path, value),
    }
}

/// Takes `pid` out of the `cgroup.procs` of `dir` and every cgroup under it.
fn remove_pid(dir: &Path, pid: &str) -> io::Result<()> {
    let procs = dir.join("cgroup.procs");
    let kept: Vec<String> = fs::read_to_string(&procs)?
        .split_whitespace()
        .filter(|p| *p != pid)
        .map(|p| format!("{p}\n"))
        .collect();
    fs::write(&procs, kept.concat())?;
    for entry in fs::read_dir(dir)?.flatten() {
        if entry.path().is_dir() {
            remove_pid(&entry.path(), pid)?;
        }
    }
    Ok(())
}

/// A fake cgroup2 fs like a systemd host's with the agent's service
/// `system.slice/dynoagent.service` delegated (its controllers available,
/// none enabled for its children) and holding the processes `pids`, and the
/// agent's backend for it (parent [`DEFAULT_PARENT`]) as seen from `own`.
pub(super) fn fake_delegated(pids: &[u32], own: &str) -> (tempfile::TempDir, V2Cgroups) {
    let (tmp, _) = fake_v2();
    let root = tmp.path();
    fs::write(root.join("cgroup.subtree_control"), "cpu memory pids\n").unwrap();
    let slice = root.join("system.slice");
    fake_mkdir(&slice).unwrap();
    fs::write(slice.join("cgroup.subtree_control"), "cpu memory pids\n").unwrap();
    let service = slice.join("dynoagent.service");
    fake_mkdir(&service).unwrap();
    let procs: String = pids.iter().map(|p| format!("{p}\n")).collect();
    fs::write(service.join("cgroup.procs"), procs).unwrap();
    let cgroups = V2Cgroups::for_own_cgroup(root.to_path_buf(), own, DEFAULT_PARENT)
        .unwrap()
        .with_fs_ops(fake_mkdir, fake_rmdir)
        .with_write_op(fake_write);
    (tmp, cgroups)
}
