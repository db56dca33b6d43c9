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
