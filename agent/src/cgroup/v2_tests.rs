//! The v2 backend against the fake cgroup2 fs: creating (limits, parents,
//! controllers, failures), adding processes, reading stats and OOM kills,
//! removing, listing and reaping.

use std::fs;
use std::io;
use std::path::Path;

use crate::cgroup::fake::{fake_delegated, fake_mkdir, fake_rmdir, fake_v2, fake_write};
use crate::cgroup::testkit::{contents, size};
use crate::cgroup::{Cgroups as _, DEFAULT_PARENT, Error, Limits, Stats, V2Cgroups, Version, own_v2_cgroup};

#[test]
fn v2_create_writes_the_limits_of_standard_1x() {
    let (tmp, cgroups) = fake_v2();
    let cg = cgroups.create("web-1", &size("standard-1x")).unwrap();
    let dir = tmp.path().join("dynoagent/web-1");
    assert_eq!(cg.path(), dir);
    assert_eq!(cg.name(), "web-1");
    assert_eq!(contents(dir.join("memory.max")), "536870912");
    assert_eq!(contents(dir.join("memory.swap.max")), "0");
    assert_eq!(contents(dir.join("cpu.max")), "100000 100000");
    assert_eq!(contents(dir.join("cpu.weight")), "39");
    assert_eq!(contents(dir.join("pids.max")), "256");
    for level in [tmp.path(), &tmp.path().join("dynoagent")] {
        let enabled = contents(level.join("cgroup.subtree_control"));
        let enabled: Vec<&str> = enabled.split_whitespace().collect();
        for c in ["+memory", "+cpu", "+pids"] {
            assert!(enabled.contains(&c), "{c} in {}: {enabled:?}", level.display());
        }
    }
    assert_eq!(cgroups.version(), Version::V2);
}

#[test]
fn v2_create_without_quota_and_under_an_existing_nested_parent() {
    let (tmp, _) = fake_v2();
    // The parent chain exists already, controllers enabled the kernel's way.
    let mid = tmp.path().join("system.slice");
    fake_mkdir(&mid).unwrap();
    fs::write(mid.join("cgroup.subtree_control"), "cpu memory pids\n").unwrap();
    fs::write(tmp.path().join("cgroup.subtree_control"), "cpu io memory pids\n").unwrap();
    let cgroups = V2Cgroups::new(tmp.path(), "system.slice/dynos")
        .unwrap()
        .with_fs_ops(fake_mkdir, fake_rmdir);
    cgroups.create("worker.1", &size("performance-m")).unwrap();
    let dir = mid.join("dynos/worker.1");
    assert_eq!(contents(dir.join("cpu.max")), "max 100000");
    assert_eq!(contents(dir.join("cpu.weight")), "313");
    assert_eq!(contents(dir.join("memory.max")), "2684354560");
    assert_eq!(contents(dir.join("pids.max")), "16384");
    // Already enabled: left alone.
    assert_eq!(contents(mid.join("cgroup.subtree_control")), "cpu memory pids");
    assert_eq!(
        contents(tmp.path().join("cgroup.subtree_control")),
        "cpu io memory pids"
    );
}

#[test]
fn v2_create_refuses_an_existing_cgroup_and_keeps_it() {
    let (tmp, cgroups) = fake_v2();
    cgroups.create("web-1", &size("standard-1x")).unwrap();
    let err = cgroups.create("web-1", &size("standard-2x")).err().unwrap();
    assert!(
        matches!(&err, Error::Exists(p) if p.ends_with("dynoagent/web-1")),
        "{err}"
    );
    assert_eq!(contents(tmp.path().join("dynoagent/web-1/memory.max")), "536870912");
}

#[test]
fn v2_create_that_fails_leaves_nothing_behind() {
    fn mkdir_without_pids_max(dir: &Path) -> io::Result<()> {
        fake_mkdir(dir)?;
        fs::remove_file(dir.join("pids.max"))
    }
    let (tmp, cgroups) = fake_v2();
    let cgroups = cgroups.with_fs_ops(mkdir_without_pids_max, fake_rmdir);
    let err = cgroups.create("web-1", &size("standard-1x")).err().unwrap();
    assert!(
        matches!(&err, Error::Write { path, .. } if path.ends_with("web-1/pids.max")),
        "{err}"
    );
    assert!(err.to_string().contains("pids.max"), "{err}");
    assert!(!tmp.path().join("dynoagent/web-1").exists());
    assert!(cgroups.list().unwrap().is_empty());
}

#[test]
fn v2_missing_controllers_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("cgroup.controllers"), "memory pids\n").unwrap();
    let err = V2Cgroups::new(tmp.path(), DEFAULT_PARENT).unwrap_err();
    assert!(
        matches!(err, Error::MissingController { controller: "cpu", .. }),
        "{err}"
    );
}

#[test]
fn v2_add_process_writes_cgroup_procs() {
    let (tmp, cgroups) = fake_v2();
    let cg = cgroups.create("web-1", &size("standard-1x")).unwrap();
    assert_eq!(cg.procs_files(), vec![tmp.path().join("dynoagent/web-1/cgroup.procs")]);
    cg.add_process(4242).unwrap();
    assert_eq!(contents(tmp.path().join("dynoagent/web-1/cgroup.procs")), "4242");
    // The kernel lists one pid per line.
    fs::write(tmp.path().join("dynoagent/web-1/cgroup.procs"), "4243\n4242\n").unwrap();
    assert_eq!(cg.procs().unwrap(), vec![4242, 4243]);
}

#[test]
fn v2_oom_kills_come_from_memory_events() {
    let (tmp, cgroups) = fake_v2();
    let cg = cgroups.create("web-1", &size("standard-1x")).unwrap();
    assert_eq!(cg.oom_kills().unwrap(), 0);
    let events = tmp.path().join("dynoagent/web-1/memory.events");
    fs::write(&events, "low 0\nhigh 0\nmax 12\noom 2\noom_kill 3\noom_group_kill 0\n").unwrap();
    assert_eq!(cg.oom_kills().unwrap(), 3);
    // A kernel before 4.13 has no oom_kill line: an error, not a zero.
    fs::write(&events, "low 0\nhigh 0\nmax 12\noom 2\n").unwrap();
    let err = cg.oom_kills().unwrap_err();
    assert!(matches!(&err, Error::Parse { path, .. } if path == &events), "{err}");
}

#[test]
fn v2_stats_parse_the_control_files() {
    let (tmp, cgroups) = fake_v2();
    let cg = cgroups.create("web-1", &size("standard-1x")).unwrap();
    let dir = tmp.path().join("dynoagent/web-1");
    fs::write(dir.join("memory.current"), "1000\n").unwrap();
    fs::write(dir.join("memory.peak"), "2000\n").unwrap();
    fs::write(
        dir.join("memory.stat"),
        "anon 600\nfile 300\nkernel 100\nshmem 0\npgfault 70\npgsteal 20\n",
    )
    .unwrap();
    fs::write(dir.join("memory.swap.current"), "400\n").unwrap();
    fs::write(
        dir.join("cpu.stat"),
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
    )
    .unwrap();
    fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\n").unwrap();
    let stats = cg.stats().unwrap();
    assert_eq!(
        stats,
        Stats {
            memory_current: 1000,
            memory_rss: 600,
            memory_cache: 300,
            memory_swap: 400,
            pgpgin: 70,
            pgpgout: 20,
            memory_peak: Some(2000),
            cpu_usage_ns: 1_500_000,
            oom_kills: 1,
        }
    );
    // Before Linux 5.19 there is no memory.peak.
    fs::remove_file(dir.join("memory.peak")).unwrap();
    assert_eq!(cg.stats().unwrap().memory_peak, None);
    // Anything else unreadable is an error naming the file.
    fs::write(dir.join("memory.current"), "lots\n").unwrap();
    let err = cg.stats().unwrap_err();
    assert!(err.to_string().contains("memory.current"), "{err}");
}

#[test]
fn v2_remove_deletes_the_cgroup_and_keeps_the_parent() {
    let (tmp, cgroups) = fake_v2();
    let cg = cgroups.create("web-1", &size("standard-1x")).unwrap();
    cg.remove().unwrap();
    assert!(!tmp.path().join("dynoagent/web-1").exists());
    assert!(tmp.path().join("dynoagent/cgroup.procs").exists());
    assert_eq!(
        contents(tmp.path().join("dynoagent/cgroup.subtree_control")),
        "+memory +cpu +pids"
    );
    // Again: already gone is fine; and it reads as empty.
    cg.remove().unwrap();
    assert_eq!(cg.procs().unwrap(), Vec::<u32>::new());
    assert!(cgroups.open("web-1").unwrap().is_none());
}

#[test]
fn v2_list_open_and_reap_leftovers() {
    let (tmp, cgroups) = fake_v2();
    for name in ["run-a", "run-b", "run-c"] {
        cgroups.create(name, &size("standard-1x")).unwrap();
    }
    // Not a cgroup: ignored.
    fs::write(tmp.path().join("dynoagent/notes"), "").unwrap();
    assert_eq!(cgroups.list().unwrap(), ["run-a", "run-b", "run-c"]);
    let cg = cgroups.open("run-b").unwrap().unwrap();
    assert_eq!(cg.name(), "run-b");
    assert!(cgroups.open("run-x").unwrap().is_none());
    assert!(cgroups.open("../x").is_err());

    // After an agent restart: only run-b is still a live run.
    let restarted = V2Cgroups::new(tmp.path(), DEFAULT_PARENT)
        .unwrap()
        .with_fs_ops(fake_mkdir, fake_rmdir);
    let reaped = restarted.reap(&|name| name == "run-b").unwrap();
    assert_eq!(reaped, ["run-a", "run-c"]);
    assert_eq!(restarted.list().unwrap(), ["run-b"]);
}

#[test]
fn v2_memory_limits_follow_the_quota_the_kill_limit_and_swap() {
    let (tmp, cgroups) = fake_v2();
    let limits = Limits {
        memory_kill_bytes: 1024 << 20,
        ..size("standard-1x")
    };
    // No swap on the host: RAM up to the kill limit, no swap.
    cgroups.create("noswap-1", &limits).unwrap();
    let dir = tmp.path().join("dynoagent/noswap-1");
    assert_eq!(contents(dir.join("memory.max")), "1073741824");
    assert_eq!(contents(dir.join("memory.swap.max")), "0");
    assert_eq!(contents(dir.join("memory.oom.group")), "1");
    // Swap: RAM up to the quota, the rest of the kill limit in swap.
    cgroups
        .create(
            "swap-1",
            &Limits {
                swap: true,
                ..limits.clone()
            },
        )
        .unwrap();
    let dir = tmp.path().join("dynoagent/swap-1");
    assert_eq!(contents(dir.join("memory.max")), "536870912");
    assert_eq!(contents(dir.join("memory.swap.max")), "536870912");
    assert_eq!(contents(dir.join("memory.oom.group")), "1");
    // A kill limit below the quota is refused.
    let bad = Limits {
        memory_kill_bytes: 1,
        ..limits
    };
    assert!(matches!(cgroups.create("bad-1", &bad), Err(Error::InvalidLimits(_))));
}

const SERVICE: &str = "/system.slice/dynoagent.service";

#[test]
fn v2_delegated_without_setup_is_the_busy_error_of_the_no_internal_processes_rule() {
    // What an agent that stays in its own cgroup meets: the fake refuses as
    // the kernel does, naming the file.
    let (tmp, cgroups) = fake_delegated(&[4242], SERVICE);
    let err = cgroups.create("web.1", &size("standard-1x")).err().unwrap();
    let file = tmp.path().join("system.slice/dynoagent.service/cgroup.subtree_control");
    match &err {
        Error::Write { path, error, .. } => {
            assert_eq!(path, &file);
            assert_eq!(error.raw_os_error(), Some(nix::errno::Errno::EBUSY as i32));
        }
        other => panic!("want a write error, got {other}"),
    }
}

#[test]
fn v2_delegated_setup_moves_the_agent_into_its_leaf_and_dynos_start_beside_it() {
    let (tmp, cgroups) = fake_delegated(&[4242, 4343], SERVICE);
    let service = tmp.path().join("system.slice/dynoagent.service");
    cgroups.setup().unwrap();
    assert_eq!(cgroups.base(), service);
    assert_eq!(cgroups.parent_dir(), service.join(DEFAULT_PARENT));
    assert_eq!(contents(service.join("cgroup.procs")), "");
    assert_eq!(contents(service.join("agent/cgroup.procs")), "4242\n4343");
    for level in [service.clone(), service.join(DEFAULT_PARENT)] {
        let enabled = contents(level.join("cgroup.subtree_control"));
        for c in ["+memory", "+cpu", "+pids"] {
            assert!(enabled.contains(c), "{c} in {}: {enabled:?}", level.display());
        }
    }
    let cg = cgroups.create("web.1", &size("standard-1x")).unwrap();
    assert_eq!(cg.path(), service.join("dynoagent/web.1"));
    assert_eq!(contents(cg.path().join("memory.max")), "536870912");
    cg.add_process(5555).unwrap();
    assert_eq!(cgroups.list().unwrap(), vec!["web.1".to_string()]);
    // The agent's leaf is not a dyno's: reaping leaves it alone.
    fs::write(cg.path().join("cgroup.procs"), "").unwrap();
    assert_eq!(cgroups.reap(&|_| false).unwrap(), vec!["web.1".to_string()]);
    assert!(service.join("agent").is_dir());
    // A process found in the agent's cgroup at a later start (the fake lets
    // one in; the kernel would refuse it now) moves in beside the shims.
    fs::write(service.join("cgroup.procs"), "6000\n").unwrap();
    cgroups.setup().unwrap();
    assert_eq!(contents(service.join("agent/cgroup.procs")), "4242\n4343\n6000");
}

#[test]
fn v2_an_agent_started_inside_its_leaf_uses_the_same_base() {
    let (tmp, cgroups) = fake_delegated(&[], &format!("{SERVICE}/agent"));
    assert_eq!(cgroups.base(), tmp.path().join("system.slice/dynoagent.service"));
}

#[test]
fn v2_at_the_root_nothing_moves() {
    let (tmp, _) = fake_v2();
    let cgroups = V2Cgroups::for_own_cgroup(tmp.path().to_path_buf(), "/", DEFAULT_PARENT)
        .unwrap()
        .with_fs_ops(fake_mkdir, fake_rmdir)
        .with_write_op(fake_write);
    cgroups.setup().unwrap();
    assert_eq!(contents(tmp.path().join("cgroup.procs")), "1");
    assert!(!tmp.path().join("agent").exists());
    cgroups.create("web.1", &size("standard-1x")).unwrap();
    assert!(tmp.path().join("dynoagent/web.1/memory.max").is_file());
}

#[test]
fn v2_delegated_without_controllers_names_the_file() {
    let (tmp, _) = fake_delegated(&[1], SERVICE);
    // A service without Delegate=yes: no controller for it.
    let controllers = tmp.path().join("system.slice/dynoagent.service/cgroup.controllers");
    fs::write(&controllers, "").unwrap();
    let err = V2Cgroups::for_own_cgroup(tmp.path().to_path_buf(), SERVICE, DEFAULT_PARENT).unwrap_err();
    assert!(
        matches!(&err, Error::MissingController { path, .. } if path == &controllers),
        "{err}"
    );
}

#[test]
fn v2_delegated_refuses_a_parent_named_like_the_agents_leaf_and_odd_own_paths() {
    let (tmp, _) = fake_delegated(&[1], SERVICE);
    let root = tmp.path().to_path_buf();
    let err = V2Cgroups::for_own_cgroup(root.clone(), SERVICE, "agent/dynos").unwrap_err();
    assert!(matches!(err, Error::InvalidName(_)), "{err}");
    let err = V2Cgroups::for_own_cgroup(root, "/system.slice/../x", DEFAULT_PARENT).unwrap_err();
    assert!(matches!(err, Error::InvalidName(_)), "{err}");
}

#[test]
fn own_v2_cgroup_reads_the_unified_line() {
    let text = "12:memory:/x\n0::/system.slice/dynoagent.service\n";
    assert_eq!(own_v2_cgroup(text), Some("/system.slice/dynoagent.service"));
    assert_eq!(own_v2_cgroup("4:pids:/\n"), None);
}
