//! Memory as on Heroku's Common Runtime (DESIGN §5), for real: a dyno may go
//! past its quota and is warned with R14 (at most once a metrics interval);
//! at the kill limit (2× by default) the whole dyno ends with reason `oom`
//! and R15, nothing of it left running.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use dyno_tests::probe::{MEM, static_probe};
use dyno_tests::*;
use nix::sys::signal::Signal;

/// A 32 MiB size (kill limit 64 MiB at the default ratio) and one-second
/// metrics lines.
const SMALL: &str = r#"
metrics_interval = "1s"
[sizes.small]
memory_bytes = 33554432
cpu_shares = 512
pids_max = 64
nofile = 256
[sizes.standard-1x]
memory_bytes = 536870912
cpu_shares = 1024
cpu_quota = 1.0
pids_max = 256
nofile = 10000
"#;

/// A directory slug holding the memory probe as `/app/mem`.
fn mem_slug(a: &TestAgent) -> PathBuf {
    let slug = a.slug("mem", &[]);
    let bin = slug.join("app/mem");
    std::fs::copy(static_probe(MEM), &bin).expect("copy the probe into the slug");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod the probe");
    slug
}

fn logs_of(a: &TestAgent, dyno: &str) -> Vec<String> {
    texts(&a.ctl_ok(&["logs", "--app", "shop", "--dyno", dyno, "-n", "100000"]))
}

fn read_u64(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The run's directory in the v1 memory hierarchy.
fn memory_cgroup(a: &TestAgent, run_id: &str) -> PathBuf {
    a.cgroup_dirs()
        .into_iter()
        .find(|d| d.parent().is_some_and(|h| h.ends_with("memory")))
        .expect("the agent's memory hierarchy (this host is cgroup v1)")
        .join(run_id)
}

fn host_has_swap() -> bool {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("SwapTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .is_some_and(|kb| kb > 0)
}

#[test]
fn a_dyno_at_one_and_a_half_times_its_quota_keeps_running_warned_with_r14_once_an_interval() {
    let a = TestAgent::start(SMALL);
    let slug = mem_slug(&a);
    a.ctl_ok(&start_args(
        "shop",
        "worker.1",
        &show(&slug),
        &["--size", "small", "--command", "exec /app/mem 48"],
    ));
    let d = a.wait_state("shop", "worker.1", "up");
    let run = d["run_id"].as_str().unwrap().to_string();
    // The cgroup: RAM + swap capped at twice the quota; RAM at the quota
    // only where the host has swap to take the rest.
    let cg = memory_cgroup(&a, &run);
    let kill = 64u64 << 20;
    let ram = if host_has_swap() { 32 << 20 } else { kill };
    assert_eq!(read_u64(&cg.join("memory.limit_in_bytes")), ram);
    assert_eq!(read_u64(&cg.join("memory.memsw.limit_in_bytes")), kill);
    assert_eq!(read_u64(&cg.join("memory.soft_limit_in_bytes")), 32 << 20);

    wait_for("the probe to hold 48 MiB", || {
        logs_of(&a, "worker.1").iter().any(|l| l == "held 48").then_some(())
    });
    wait_for("four R14 warnings", || {
        (logs_of(&a, "worker.1")
            .iter()
            .filter(|l| *l == "Error R14 (Memory quota exceeded)")
            .count()
            >= 4)
            .then_some(())
    });
    let raw = a.ctl_ok(&["logs", "--app", "shop", "--dyno", "worker.1", "-n", "100000"]);
    let lines: Vec<&str> = raw.lines().collect();
    let mut r14_at = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !line.ends_with("dyno[worker.1]: Error R14 (Memory quota exceeded)") {
            continue;
        }
        // Right after its `Process running mem=…M(…%)` line.
        let before = lines[i - 1];
        let text = before.split_once("]: ").unwrap().1;
        let mem = text
            .strip_prefix("Process running mem=")
            .unwrap_or_else(|| panic!("R14 not after its mem line: {before}"));
        let (mib, pct) = mem.split_once("M(").unwrap();
        let (mib, pct): (u64, f64) = (mib.parse().unwrap(), pct.trim_end_matches("%)").parse().unwrap());
        // Above the 32 MiB quota, below the kill limit (the first may come
        // while the probe is still on its way to 48 MiB).
        assert!((32..64).contains(&mib), "{before}");
        assert!(pct > 100.0 && pct < 200.0, "{before}");
        r14_at.push(log_stamp(line));
    }
    // At most once a metrics interval (1 s; the sampler's writes may land
    // a little early or late, never twice in one interval).
    for w in r14_at.windows(2) {
        assert!(w[1] - w[0] >= 0.5, "two R14 lines {:.3} s apart", w[1] - w[0]);
    }
    let metrics = lines
        .iter()
        .filter(|l| l.contains("dyno[worker.1]: source=worker.1 "))
        .count();
    assert!(
        r14_at.len() <= metrics,
        "{} R14 lines for {metrics} metrics lines",
        r14_at.len()
    );
    // Still the same run, never restarted.
    let now = a.dyno("shop", "worker.1").unwrap();
    assert_eq!(now["state"], "up");
    assert_eq!(now["run_id"], run.as_str());
    assert_eq!(now["restarts"], 0);
    assert!(alive(pid_of(&now)));
    a.ctl_ok(&["stop", "--app", "shop", "worker.1"]);
    a.wait_state("shop", "worker.1", "down");
}

#[test]
fn a_dyno_past_twice_its_quota_is_ended_whole_with_oom_and_r15() {
    let a = TestAgent::start(SMALL);
    let slug = mem_slug(&a);
    a.ctl_ok(&start_args(
        "shop",
        "worker.1",
        &show(&slug),
        // The hog is not the dyno's main process: the kernel's OOM kill of
        // it alone would leave `sleep` (and the hog's child) running.
        &[
            "--size",
            "small",
            "--command",
            "/app/mem 100 fork wait & exec sleep 600",
        ],
    ));
    let d = a.wait_state("shop", "worker.1", "up");
    let run = d["run_id"].as_str().unwrap().to_string();
    wait_for("the probe's child and its signal wait", || {
        let l = logs_of(&a, "worker.1");
        (l.iter().any(|l| l == "child") && l.iter().any(|l| l == "ready")).then_some(())
    });
    let cg = memory_cgroup(&a, &run);
    let procs: Vec<(u32, Option<u64>)> = std::fs::read_to_string(cg.join("cgroup.procs"))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .map(|p| (p, dyno_agent::os::start_ticks(p)))
        .collect();
    // init, sleep, the probe and its child.
    assert!(procs.len() >= 4, "{procs:?}");
    let hog = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", pid_of(&d)))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse::<u32>().unwrap())
        .next()
        .expect("the probe is sleep's child");
    signal(hog, Signal::SIGUSR1);

    // The first crash restarts at once: the run after it waits for a signal
    // that never comes.
    let after = a.wait_dyno("shop", "worker.1", "the OOM-killed run to be replaced", |d| {
        d["run_id"].as_str() != Some(run.as_str()) && d["last_exit"]["reason"] == "oom"
    });
    assert_eq!(after["last_exit"]["signal"], 9, "{after}");
    assert_eq!(after["restarts"], 1, "{after}");
    // Nothing of the old run is left: not the child the kernel did not pick.
    // A pid counts as the old run's only with the start time it had then
    // (the busy host may give a freed pid to another process).
    wait_for("every process of the OOM-killed run to be gone", || {
        procs
            .iter()
            .all(|&(p, ticks)| !alive(p) || dyno_agent::os::start_ticks(p) != ticks)
            .then_some(())
    });
    wait_for("the OOM-killed run's cgroup to be removed", || {
        (!cg.exists()).then_some(())
    });
    let logs = logs_of(&a, "worker.1");
    assert!(
        logs.iter().any(|l| l == "Error R15 (Memory quota vastly exceeded)"),
        "{logs:#?}"
    );
    assert!(
        !logs.iter().any(|l| l == "held 100"),
        "the probe got past its kill limit: {logs:#?}"
    );
    assert!(alive(a.agent_pid()));
    a.ctl_ok(&["stop", "--app", "shop", "worker.1"]);
    a.wait_state("shop", "worker.1", "down");
}
