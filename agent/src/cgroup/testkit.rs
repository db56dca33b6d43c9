//! What the cgroup tests share: the limits of the default dyno sizes, reading
//! a control file, and, for the tests that create real v1 cgroups as root,
//! a parent cgroup of their own that is removed however the test ends, and
//! gated child processes to put into it.
//!
//! The sizes are written out here (the values of `config::default_sizes`)
//! so that cgroup, tests included, never imports config.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{Cgroups as _, Limits, V1Cgroups};

const MIB: u64 = 1024 * 1024;

/// The limits of the default size `name`.
pub(super) fn size(name: &str) -> Limits {
    let limits = |memory_mib: u64, cpu_shares, cpu_quota, pids_max| Limits {
        memory_bytes: memory_mib * MIB,
        memory_kill_bytes: memory_mib * MIB,
        swap: false,
        cpu_shares,
        cpu_quota,
        pids_max,
    };
    match name {
        "standard-1x" => limits(512, 1024, Some(1.0), 256),
        "standard-2x" => limits(1024, 2048, Some(2.0), 512),
        "performance-m" => limits(2560, 8192, None, 16384),
        _ => panic!("no size {name:?} in the tests"),
    }
}

/// The trimmed text of a file.
pub(super) fn contents(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_string()
}

// -- real v1 cgroups (root) ----------------------------------------------

pub(super) const ROOT: &str = "/sys/fs/cgroup";
const ALL_HIERARCHIES: [&str; 9] = [
    "memory", "cpu", "cpuacct", "pids", "freezer", "blkio", "devices", "cpuset", "systemd",
];

/// Whether this test can run: as root on a v1 host. A test that
/// cannot run never passes silently in CI.
pub(super) fn can_run(test: &str) -> bool {
    let why = if !nix::unistd::geteuid().is_root() {
        "not root"
    } else if !Path::new(ROOT).join("memory/cgroup.procs").is_file() {
        "no cgroup v1 memory hierarchy"
    } else {
        return true;
    };
    if std::env::var_os("CI").is_some() {
        panic!("{test} cannot run in CI: {why}");
    }
    eprintln!("skipping {test}: {why}");
    false
}

/// A parent cgroup of its own for one test, removed with everything
/// in it when the test ends, passed or failed.
pub(super) struct Fixture {
    pub(super) parent: String,
    pub(super) cgroups: V1Cgroups,
}

impl Fixture {
    pub(super) fn new() -> Fixture {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let parent = format!("dynoagent-test-{}-{n}", std::process::id());
        let cgroups = V1Cgroups::new(ROOT, &parent).unwrap();
        Fixture { parent, cgroups }
    }

    pub(super) fn dirs(&self, name: &str) -> Vec<PathBuf> {
        ALL_HIERARCHIES
            .iter()
            .map(|h| Path::new(ROOT).join(h).join(&self.parent).join(name))
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Err(e) = self.cgroups.reap(&|_| false) {
            eprintln!("cleaning up {}: {e}", self.parent);
        }
        for dir in self.dirs("") {
            if let Err(e) = fs::remove_dir(&dir)
                && e.kind() != io::ErrorKind::NotFound
            {
                eprintln!("removing {}: {e}", dir.display());
            }
        }
    }
}

/// `sh` waiting for a line on stdin before running `script`: it can
/// be put into a cgroup before it does anything.
pub(super) fn gated(script: &str) -> (Child, ChildStdin) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("read go; {script}"))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

pub(super) fn go(stdin: &mut ChildStdin) {
    stdin.write_all(b"go\n").unwrap();
    stdin.flush().unwrap();
}

pub(super) fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
