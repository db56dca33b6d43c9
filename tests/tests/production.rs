//! What a production host needs of the agent (DESIGN §10b): on cgroup v2, an
//! agent in a delegated cgroup (what systemd's `Delegate=yes` gives it)
//! moves itself into a leaf and starts dynos beside it; a cgroup setup that
//! cannot work stops it at start naming the file; on v1 the parent stays
//! relative to each hierarchy's root wherever the agent runs. It raises its
//! soft descriptor limit and writes no colour codes into a log file.
//!
//! The v2 cases run in the VM of `scripts/vm-test` (scripts/test runs this
//! file there); on this v1 host the v1 case runs instead.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dyno_tests::cleanup::remove_cgroup_tree;
use dyno_tests::env::cgroup_v2;
use dyno_tests::*;

/// A cgroup made by the test (with what an agent makes under it), removed
/// when dropped: declared before the agent, so dropped after it.
struct CgroupGuard(Vec<PathBuf>);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        // Deepest first: runs, the parent, the agent's leaf, the cgroup.
        for dir in self.0.iter().rev() {
            if let Ok(children) = std::fs::read_dir(dir) {
                for child in children.flatten().filter(|c| c.path().is_dir()) {
                    remove_cgroup_tree(&child.path(), Duration::from_secs(5));
                }
            }
            remove_cgroup_tree(dir, Duration::from_secs(5));
        }
    }
}

/// A launcher that moves itself into `cgroup_procs` (as systemd does with a
/// service) and execs the agent.
fn launcher_into(cgroup_procs: &Path) -> Vec<OsString> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("echo $$ > '{}' && exec \"$@\"", cgroup_procs.display()).into(),
        "sh".into(),
    ]
}

fn procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn enable_at_root() {
    std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+memory +cpu +pids")
        .expect("enable controllers at the root");
}

#[test]
fn an_agent_in_a_delegated_cgroup_starts_dynos_beside_its_own_leaf() {
    if !cgroup_v2() {
        v1_parent_is_relative_to_the_hierarchy_root();
        return;
    }
    enable_at_root();
    let base = PathBuf::from(format!("/sys/fs/cgroup/dyno-e2e-delegated-{}", std::process::id()));
    let _guard = CgroupGuard(vec![base.clone()]);
    std::fs::create_dir(&base).unwrap();
    let mut a = TestAgent::start_under(launcher_into(&base.join("cgroup.procs")), "");
    a.v2_base = Some(base.clone());
    let leaf = base.join(dyno_agent::cgroup::AGENT_LEAF);
    assert!(procs(&leaf).contains(&a.agent_pid()), "agent not in {}", leaf.display());
    assert!(procs(&base).is_empty(), "{:?} left in {}", procs(&base), base.display());

    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    let d = a.wait_state("shop", "worker.1", "up");
    let run = a
        .cgroup_dirs()
        .first()
        .expect("the agent's parent")
        .join(d["run_id"].as_str().unwrap());
    assert!(run.starts_with(&base), "{}", run.display());
    assert!(procs(&run).contains(&pid_of(&d)), "{:?}", procs(&run));
    // standard-1x's limits are written there: RAM and swap together stop at
    // the kill limit, twice the 512 MiB quota.
    let read = |f: &str| -> u64 {
        let path = run.join(f);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(read("memory.max") + read("memory.swap.max"), 1024 << 20);
    assert!(read("memory.max") >= 512 << 20);
    // The shim runs beside the agent, not in the dyno's cgroup.
    let exec: dyno_agent::runs::ExecRecord = dyno_agent::runs::read_json(
        &a.state
            .join("runs")
            .join(d["run_id"].as_str().unwrap())
            .join("exec.json"),
    )
    .unwrap()
    .unwrap();
    assert!(procs(&leaf).contains(&exec.shim_pid), "shim not in {}", leaf.display());

    // Restarted from inside its leaf (the service's cgroup itself takes no
    // process any more: controllers are enabled for its children), it finds
    // the same base and re-adopts the dyno.
    a.kill9();
    a.launcher = launcher_into(&leaf.join("cgroup.procs"));
    a.spawn();
    assert!(procs(&leaf).contains(&a.agent_pid()));
    assert!(procs(&base).is_empty());
    assert_eq!(a.wait_state("shop", "worker.1", "up")["pid"], d["pid"]);
    a.start_dyno("shop", "worker.2", &slug, "exec sleep 600");
    a.wait_state("shop", "worker.2", "up");

    a.ctl_ok(&["stop", "--all"]);
    a.wait_state("shop", "worker.1", "down");
    a.wait_state("shop", "worker.2", "down");
    wait_for("the runs' cgroups to be removed", || {
        a.run_cgroups_left().is_empty().then_some(())
    });
}

#[test]
fn a_cgroup_without_the_controllers_stops_the_agent_at_start_naming_the_file() {
    if !cgroup_v2() {
        v1_parent_is_relative_to_the_hierarchy_root();
        return;
    }
    enable_at_root();
    // A cgroup whose parent enables no controller for it: what a service
    // without Delegate=yes may get.
    let outer = PathBuf::from(format!("/sys/fs/cgroup/dyno-e2e-undelegated-{}", std::process::id()));
    let inner = outer.join("svc");
    let _guard = CgroupGuard(vec![outer.clone(), inner.clone()]);
    std::fs::create_dir(&outer).unwrap();
    std::fs::create_dir(&inner).unwrap();
    let mut a = TestAgent::start("");
    a.kill9();
    a.launcher = launcher_into(&inner.join("cgroup.procs"));
    let (status, log) = a.spawn_expect_exit();
    assert!(!status.success(), "{status}: {log}");
    let file = inner.join("cgroup.controllers");
    assert!(
        log.contains(&file.display().to_string()),
        "{file:?} not named in:\n{log}"
    );
}

/// On v1 the parent is relative to each hierarchy's root, wherever the
/// agent runs: an agent started in a cgroup of its own in every hierarchy
/// still puts its runs under `<hierarchy>/<parent>`.
fn v1_parent_is_relative_to_the_hierarchy_root() {
    let name = format!(
        "dyno-e2e-v1-elsewhere-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    )
    .replace(['(', ')'], "");
    let dirs: Vec<PathBuf> = ["pids", "memory"]
        .iter()
        .map(|h| Path::new("/sys/fs/cgroup").join(h).join(&name))
        .collect();
    let _guards: Vec<CgroupGuard> = dirs.iter().map(|d| CgroupGuard(vec![d.clone()])).collect();
    for d in &dirs {
        std::fs::create_dir(d).unwrap();
    }
    let script = dirs
        .iter()
        .map(|d| format!("echo $$ > '{}'", d.join("cgroup.procs").display()))
        .collect::<Vec<_>>()
        .join(" && ");
    let launcher = vec![
        "sh".into(),
        "-c".into(),
        format!("{script} && exec \"$@\"").into(),
        "sh".into(),
    ];
    let a = TestAgent::start_under(launcher, "");
    assert!(procs(&dirs[0]).contains(&a.agent_pid()));
    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    let d = a.wait_state("shop", "worker.1", "up");
    let memory = a
        .cgroup_dirs()
        .into_iter()
        .find(|d| d.parent() == Some(Path::new("/sys/fs/cgroup/memory")))
        .expect("the parent at the memory hierarchy's root");
    assert!(procs(&memory.join(d["run_id"].as_str().unwrap())).contains(&pid_of(&d)));
    a.ctl_ok(&["stop", "--all"]);
    a.wait_state("shop", "worker.1", "down");
}

#[test]
fn the_agent_raises_its_soft_descriptor_limit_and_logs_without_colour() {
    let launcher = vec![
        "sh".into(),
        "-c".into(),
        "ulimit -Sn 256 && exec \"$@\"".into(),
        "sh".into(),
    ];
    let a = TestAgent::start_under(launcher, "");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", a.agent_pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    let words: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (words[3], words[4]);
    assert_eq!(soft, hard, "{line}");
    assert_ne!(soft, "256", "{line}");
    let log = a.agent_log();
    assert!(log.contains("raised the soft limit on open files"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in the agent's log:\n{log}");
}
