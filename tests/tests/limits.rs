//! Cgroup limits, for real: memory, pids and CPU quota of a dyno's size, OOM
//! detection, and nothing left behind.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dyno_tests::*;

/// A small size so that the limits are quick to hit.
const TINY: &str = r#"
[sizes.tiny]
memory_bytes = 33554432
cpu_shares = 512
cpu_quota = 0.5
pids_max = 32
nofile = 64
[sizes.standard-1x]
memory_bytes = 536870912
cpu_shares = 1024
cpu_quota = 1.0
pids_max = 256
nofile = 10000
"#;

/// The run's cgroup directory in one v1 hierarchy, or on v2 the run's cgroup.
fn run_cgroup(a: &TestAgent, hierarchy: &str, run_id: &str) -> PathBuf {
    let dirs = a.cgroup_dirs();
    if dyno_tests::env::cgroup_v2() {
        return dirs.first().expect("the agent's parent cgroup").join(run_id);
    }
    let parent = dirs
        .into_iter()
        .find(|d| d.parent().is_some_and(|h| h.ends_with(hierarchy)))
        .unwrap_or_else(|| panic!("no {hierarchy} hierarchy for the agent"));
    parent.join(run_id)
}

fn read_u64(path: PathBuf) -> u64 {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

/// The first word of a control file.
fn first_word(path: PathBuf) -> String {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The run's memory limit (v1 `memory.limit_in_bytes`, v2 `memory.max`).
fn memory_limit(a: &TestAgent, run_id: &str) -> u64 {
    let dir = run_cgroup(a, "memory", run_id);
    match dyno_tests::env::cgroup_v2() {
        true => read_u64(dir.join("memory.max")),
        false => read_u64(dir.join("memory.limit_in_bytes")),
    }
}

/// The run's CPU quota per 100 ms period, in µs (v1 `cpu.cfs_quota_us`,
/// the first word of v2 `cpu.max`).
fn cpu_quota_us(a: &TestAgent, run_id: &str) -> u64 {
    let dir = run_cgroup(a, "cpu", run_id);
    match dyno_tests::env::cgroup_v2() {
        true => first_word(dir.join("cpu.max")).parse().unwrap(),
        false => read_u64(dir.join("cpu.cfs_quota_us")),
    }
}

/// The run's CPU share and what it should be for `shares`: v1 `cpu.shares`,
/// v2 `cpu.weight`.
fn cpu_share(a: &TestAgent, run_id: &str, shares: u64) -> (u64, u64) {
    let dir = run_cgroup(a, "cpu", run_id);
    match dyno_tests::env::cgroup_v2() {
        true => (
            read_u64(dir.join("cpu.weight")),
            dyno_agent::cgroup::shares_to_weight(shares),
        ),
        false => (read_u64(dir.join("cpu.shares")), shares),
    }
}

/// CPU time the run used, in ns (v1 `cpuacct.usage`, v2 `usage_usec` of `cpu.stat`).
fn cpu_usage_ns(a: &TestAgent, run_id: &str) -> u64 {
    if dyno_tests::env::cgroup_v2() {
        let path = run_cgroup(a, "cpu", run_id).join("cpu.stat");
        let stat = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let us: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .expect("usage_usec")
            .parse()
            .unwrap();
        return us * 1000;
    }
    read_u64(run_cgroup(a, "cpuacct", run_id).join("cpuacct.usage"))
}

/// No run cgroup is left under the agent's parent in any hierarchy (and
/// there is a parent to look in).
fn assert_no_run_cgroups(a: &TestAgent) {
    wait_for("the runs' cgroups to be removed", || {
        a.run_cgroups_left().is_empty().then_some(())
    });
}

#[test]
fn the_size_sets_the_cgroup_limits_of_the_run() {
    let a = TestAgent::start(TINY);
    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    a.ctl_ok(&start_args(
        "shop",
        "worker.2",
        &show(&slug),
        &["--size", "tiny", "--command", "exec sleep 600"],
    ));
    let std1x = a.wait_state("shop", "worker.1", "up");
    let tiny = a.wait_state("shop", "worker.2", "up");
    let run = |d: &serde_json::Value| d["run_id"].as_str().unwrap().to_string();

    // The quota is 512 MiB; memory and swap are capped at the kill limit,
    // twice that (RAM at the quota where the host has swap for the rest).
    let swap = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("SwapTotal:") && l.split_whitespace().nth(1) != Some("0"));
    let ram = |quota: u64| if swap { quota } else { 2 * quota };
    assert_eq!(memory_limit(&a, &run(&std1x)), ram(512 << 20));
    if dyno_tests::env::cgroup_v2() {
        // RAM + swap stop at the kill limit.
        let swap_max = read_u64(run_cgroup(&a, "memory", &run(&std1x)).join("memory.swap.max"));
        assert_eq!(ram(512 << 20) + swap_max, 1024 << 20);
    } else {
        assert_eq!(
            read_u64(run_cgroup(&a, "memory", &run(&std1x)).join("memory.memsw.limit_in_bytes")),
            1024 << 20
        );
        assert_eq!(
            read_u64(run_cgroup(&a, "memory", &run(&std1x)).join("memory.soft_limit_in_bytes")),
            512 << 20
        );
    }
    let (share, want) = cpu_share(&a, &run(&std1x), 1024);
    assert_eq!(share, want);
    assert_eq!(cpu_quota_us(&a, &run(&std1x)), 100_000);
    assert_eq!(read_u64(run_cgroup(&a, "pids", &run(&std1x)).join("pids.max")), 256);
    assert_eq!(memory_limit(&a, &run(&tiny)), ram(32 << 20));
    let (share, want) = cpu_share(&a, &run(&tiny), 512);
    assert_eq!(share, want);
    assert_eq!(cpu_quota_us(&a, &run(&tiny)), 50_000);

    // The dyno's processes are in it; the shim is not.
    let procs = std::fs::read_to_string(run_cgroup(&a, "memory", &run(&std1x)).join("cgroup.procs")).unwrap();
    let procs: Vec<u32> = procs.split_whitespace().map(|p| p.parse().unwrap()).collect();
    assert!(procs.contains(&pid_of(&std1x)), "{procs:?}");
    let exec: dyno_agent::runs::ExecRecord =
        dyno_agent::runs::read_json(&a.state.join("runs").join(run(&std1x)).join("exec.json"))
            .unwrap()
            .unwrap();
    assert!(procs.contains(&exec.init_pid.expect("jailed")));
    assert!(!procs.contains(&exec.shim_pid));

    a.ctl_ok(&["stop", "--all"]);
    a.wait_state("shop", "worker.1", "down");
    a.wait_state("shop", "worker.2", "down");
    assert_no_run_cgroups(&a);
}

#[test]
fn a_memory_hog_is_killed_at_the_limit_with_reason_oom() {
    let a = TestAgent::start(TINY);
    let slug = a.slug("s", &[]);
    let out = a.ctl(&run_args(
        "shop",
        &show(&slug),
        &[
            "--size",
            "tiny",
            "--",
            "sh",
            "-c",
            "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
        ],
    ));
    assert_eq!(out.status.code(), Some(137), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("survived"));
    let d = a.wait_state("shop", "run.1", "down");
    assert_eq!(d["last_exit"]["reason"], "oom", "{d}");
    let logs = texts(&a.ctl_ok(&["logs", "--app", "shop", "--dyno", "run.1"]));
    assert!(
        logs.iter().any(|l| l == "Error R15 (Memory quota vastly exceeded)"),
        "{logs:#?}"
    );
    // The agent survives and serves.
    assert!(alive(a.agent_pid()));
    a.ctl_ok(&["ps"]);
    assert_no_run_cgroups(&a);
}

#[test]
fn a_fork_bomb_stops_at_pids_max_and_the_agent_keeps_answering() {
    let a = TestAgent::start(TINY);
    let slug = a.slug("s", &[("bomb.sh", "b() { b | b & }; b; exec sleep 600\n")]);
    a.ctl_ok(&start_args(
        "shop",
        "bomb.1",
        &show(&slug),
        &["--size", "tiny", "--command", "sh bomb.sh"],
    ));
    let d = a.wait_state("shop", "bomb.1", "up");
    let pids = run_cgroup(&a, "pids", d["run_id"].as_str().unwrap());
    // The kernel counts every fork refused by pids.max.
    let refused = || {
        let events = std::fs::read_to_string(pids.join("pids.events")).ok()?;
        events.split_whitespace().nth(1)?.parse::<u64>().ok()
    };
    wait_for("forks refused at pids.max", || refused().filter(|n| *n > 0));
    let start = Instant::now();
    a.ctl_ok(&["ps"]);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "dynoctl ps took {took:?} during the fork bomb"
    );
    assert!(read_u64(pids.join("pids.current")) <= 32);
    assert!(alive(a.agent_pid()));

    a.ctl_ok(&["stop", "--app", "shop", "bomb.1"]);
    a.wait_state("shop", "bomb.1", "down");
    assert_no_run_cgroups(&a);
}

#[test]
fn a_cpu_hog_gets_about_its_quota() {
    let a = TestAgent::start(TINY);
    let slug = a.slug("s", &[]);
    a.ctl_ok(&start_args(
        "shop",
        "hog.1",
        &show(&slug),
        &["--size", "tiny", "--command", "while :; do :; done"],
    ));
    let d = a.wait_state("shop", "hog.1", "up");
    let run_id = d["run_id"].as_str().unwrap();
    let (u0, t0) = (cpu_usage_ns(&a, run_id), Instant::now());
    // Measure over a window long enough for many 100 ms CFS periods.
    wait_for("a measuring window of 3 s", || {
        (t0.elapsed() >= Duration::from_secs(3)).then_some(())
    });
    let (u1, t1) = (cpu_usage_ns(&a, run_id), t0.elapsed());
    let cores = (u1 - u0) as f64 / t1.as_nanos() as f64;
    // Quota 0.5 core: never (much) more; on a busy 2-core machine maybe less.
    assert!(cores <= 0.6, "used {cores:.2} cores with a 0.5 core quota");
    assert!(cores >= 0.2, "used only {cores:.2} cores");
    a.ctl_ok(&["stop", "--app", "shop", "hog.1"]);
    a.wait_state("shop", "hog.1", "down");
    assert_no_run_cgroups(&a);
}

#[test]
fn leftover_cgroups_of_a_crashed_agent_are_reaped_at_start() {
    let mut a = TestAgent::start("");
    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    let d = a.wait_state("shop", "worker.1", "up");
    a.kill9();
    // A stray cgroup under the agent's parent, as a crash between creating a
    // run's cgroup and recording the run would leave.
    let stray: Vec<PathBuf> = a.cgroup_dirs().iter().map(|d| d.join("stray-run.1")).collect();
    for dir in &stray {
        std::fs::create_dir(dir).unwrap();
    }
    a.spawn();
    // The live run keeps its cgroup; the stray one is gone.
    assert!(run_cgroup(&a, "memory", d["run_id"].as_str().unwrap()).is_dir());
    for dir in &stray {
        assert!(!dir.exists(), "{} left", dir.display());
    }
    assert_eq!(a.dyno("shop", "worker.1").unwrap()["pid"], d["pid"]);
}
