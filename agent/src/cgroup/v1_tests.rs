//! The v1 backend for real, as root on a v1 host, each test under a parent
//! cgroup of its own that is removed however the test ends: limits in only
//! the needed hierarchies, processes, stats, the usage probe, OOM kills,
//! removal and reaping.

use std::fs;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::Signal;

use crate::cgroup::testkit::{Fixture, ROOT, can_run, contents, gated, go, size, wait_for};
use crate::cgroup::{Cgroups as _, Error, Limits, V1Cgroups, Version, detect};

#[test]
fn v1_create_sets_the_limits_in_only_the_needed_hierarchies() {
    if !can_run("v1_create_sets_the_limits_in_only_the_needed_hierarchies") {
        return;
    }
    let fx = Fixture::new();
    let cg = fx.cgroups.create("web-1", &size("standard-1x")).unwrap();
    let dir = |h: &str| Path::new(ROOT).join(h).join(&fx.parent).join("web-1");
    assert_eq!(cg.path(), dir("memory"));
    assert_eq!(contents(dir("memory").join("memory.limit_in_bytes")), "536870912");
    if dir("memory").join("memory.memsw.limit_in_bytes").exists() {
        assert_eq!(contents(dir("memory").join("memory.memsw.limit_in_bytes")), "536870912");
    } else {
        assert_eq!(contents(dir("memory").join("memory.swappiness")), "0");
    }
    assert_eq!(contents(dir("cpu").join("cpu.shares")), "1024");
    assert_eq!(contents(dir("cpu").join("cpu.cfs_period_us")), "100000");
    assert_eq!(contents(dir("cpu").join("cpu.cfs_quota_us")), "100000");
    assert_eq!(contents(dir("pids").join("pids.max")), "256");
    assert!(dir("cpuacct").is_dir());
    assert!(dir("freezer").is_dir());
    let mut files = cg.procs_files();
    files.sort();
    let mut want: Vec<PathBuf> = ["cpu", "cpuacct", "freezer", "memory", "pids"]
        .iter()
        .map(|h| dir(h).join("cgroup.procs"))
        .collect();
    want.sort();
    assert_eq!(files, want);
    for unused in ["blkio", "devices", "cpuset", "systemd"] {
        assert!(!Path::new(ROOT).join(unused).join(&fx.parent).exists(), "{unused}");
    }
    assert_eq!(fx.cgroups.list().unwrap(), ["web-1"]);
    assert_eq!(fx.cgroups.version(), Version::V1);
    assert_eq!(detect(Path::new(ROOT), &fx.parent).unwrap().version(), Version::V1);

    let err = fx.cgroups.create("web-1", &size("standard-1x")).err().unwrap();
    assert!(matches!(err, Error::Exists(_)), "{err}");

    fx.cgroups.create("perf-1", &size("performance-m")).unwrap();
    assert_eq!(
        contents(dir("cpu").with_file_name("perf-1").join("cpu.cfs_quota_us")),
        "-1"
    );
    assert_eq!(contents(dir("cpu").with_file_name("perf-1").join("cpu.shares")), "8192");
    assert_eq!(fx.cgroups.list().unwrap(), ["perf-1", "web-1"]);
}

#[test]
fn v1_processes_stats_and_kill_all() {
    if !can_run("v1_processes_stats_and_kill_all") {
        return;
    }
    let fx = Fixture::new();
    let cg = fx.cgroups.create("web-1", &size("standard-1x")).unwrap();
    // Memory charged before the move stays with the old cgroup on v1,
    // so the process allocates (and burns CPU) after it.
    let (mut child, mut stdin) =
        gated("exec /usr/bin/python3 -c 'import time; b = b\"x\" * (8 << 20); time.sleep(30)'");
    cg.add_process(child.id()).unwrap();
    assert_eq!(cg.procs().unwrap(), [child.id()]);
    let own = fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
    assert!(own.contains(&format!("memory:/{}/web-1", fx.parent)), "{own}");
    go(&mut stdin);
    // Anonymous memory: on a cold page cache, python's own files are
    // charged too, and could make 8 MiB before the allocation does.
    wait_for("8 MiB of anonymous memory charged", || {
        cg.stats().unwrap().memory_rss >= 8 << 20
    });
    let stats = cg.stats().unwrap();
    assert!(stats.memory_rss >= 8 << 20, "{stats:?}");
    assert!(stats.memory_peak.unwrap() >= stats.memory_current, "{stats:?}");
    assert!(stats.cpu_usage_ns > 0, "{stats:?}");
    assert_eq!(stats.oom_kills, 0);

    let mut probe = cg.usage_probe().unwrap();
    cg.kill_all().unwrap();
    assert_eq!(cg.procs().unwrap(), Vec::<u32>::new());
    assert_eq!(child.wait().unwrap().signal(), Some(Signal::SIGKILL as i32));
    // Usage stays readable after the processes are gone.
    assert!(cg.stats().unwrap().memory_peak.unwrap() >= 8 << 20);
    // Thawed again: a new process runs normally.
    let state = Path::new(ROOT)
        .join("freezer")
        .join(&fx.parent)
        .join("web-1/freezer.state");
    assert_eq!(contents(state), "THAWED");
    // The ledger's probe: the same CPU counter, and a peak that each read resets.
    let first = probe.read().unwrap();
    assert!(first.cpu_ns >= stats.cpu_usage_ns, "{first:?} {stats:?}");
    assert!(first.mem_peak_bytes >= 8 << 20, "{first:?}");
    let second = probe.read().unwrap();
    assert!(second.mem_peak_bytes < 8 << 20, "reset by the first read: {second:?}");
    assert_eq!(second.cpu_ns, first.cpu_ns, "nothing runs any more");
}

#[test]
fn v1_oom_kill_is_detected() {
    if !can_run("v1_oom_kill_is_detected") {
        return;
    }
    let fx = Fixture::new();
    let tiny = Limits {
        memory_bytes: 16 << 20,
        memory_kill_bytes: 16 << 20,
        swap: false,
        cpu_shares: 1024,
        cpu_quota: None,
        pids_max: 64,
    };
    let cg = fx.cgroups.create("web-1", &tiny).unwrap();
    assert_eq!(cg.oom_kills().unwrap(), 0);
    let (mut child, mut stdin) = gated("exec /usr/bin/python3 -c 'b = b\"x\" * (64 << 20)'");
    cg.add_process(child.id()).unwrap();
    go(&mut stdin);
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "{status:?}");
    assert!(cg.oom_kills().unwrap() >= 1);
    assert!(cg.stats().unwrap().oom_kills >= 1);
    assert!(cg.stats().unwrap().memory_peak.unwrap() <= 16 << 20);
}

#[test]
fn v1_remove_leaves_no_directory_in_any_hierarchy() {
    if !can_run("v1_remove_leaves_no_directory_in_any_hierarchy") {
        return;
    }
    let fx = Fixture::new();
    let cg = fx.cgroups.create("web-1", &size("standard-1x")).unwrap();
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    cg.add_process(child.id()).unwrap();
    cg.remove().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(Signal::SIGKILL as i32));
    for dir in fx.dirs("web-1") {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    assert!(fx.cgroups.list().unwrap().is_empty());
    assert!(fx.cgroups.open("web-1").unwrap().is_none());
    cg.remove().unwrap();
}

#[test]
fn v1_reap_removes_leftovers_of_a_crashed_agent() {
    if !can_run("v1_reap_removes_leftovers_of_a_crashed_agent") {
        return;
    }
    let fx = Fixture::new();
    let live = fx.cgroups.create("run-live", &size("standard-1x")).unwrap();
    let dead = fx.cgroups.create("run-dead", &size("standard-1x")).unwrap();
    let mut in_live = Command::new("sleep").arg("30").spawn().unwrap();
    let mut in_dead = Command::new("sleep").arg("30").spawn().unwrap();
    live.add_process(in_live.id()).unwrap();
    dead.add_process(in_dead.id()).unwrap();
    // A crash halfway through a create: only the memory hierarchy.
    fs::create_dir(Path::new(ROOT).join("memory").join(&fx.parent).join("run-half")).unwrap();
    drop((live, dead));

    // The next agent.
    let cgroups = V1Cgroups::new(ROOT, &fx.parent).unwrap();
    assert_eq!(cgroups.list().unwrap(), ["run-dead", "run-half", "run-live"]);
    let live = cgroups.open("run-live").unwrap().unwrap();
    assert_eq!(live.procs().unwrap(), [in_live.id()]);
    let reaped = cgroups.reap(&|name| name == "run-live").unwrap();
    assert_eq!(reaped, ["run-dead", "run-half"]);
    assert_eq!(in_dead.wait().unwrap().signal(), Some(Signal::SIGKILL as i32));
    assert_eq!(cgroups.list().unwrap(), ["run-live"]);
    for dir in fx.dirs("run-dead").into_iter().chain(fx.dirs("run-half")) {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    live.remove().unwrap();
    assert_eq!(in_live.wait().unwrap().signal(), Some(Signal::SIGKILL as i32));
}
