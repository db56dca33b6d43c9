//! Killing everything in a cgroup: v2 with and without `cgroup.kill` (the
//! fake cgroup2 fs playing the kernel), and double-forked daemons in a real
//! v1 cgroup (root).

use std::fs;
use std::os::unix::process::ExitStatusExt as _;

use nix::sys::signal::Signal;

use crate::cgroup::Cgroups as _;
use crate::cgroup::fake::fake_v2;
use crate::cgroup::testkit::{Fixture, can_run, contents, gated, go, size, wait_for};

#[test]
fn v2_kill_all_writes_cgroup_kill() {
    let (tmp, cgroups) = fake_v2();
    let cg = cgroups.create("web-1", &size("standard-1x")).unwrap();
    cg.kill_all().unwrap();
    assert_eq!(contents(tmp.path().join("dynoagent/web-1/cgroup.kill")), "1");
}

#[test]
fn v2_kill_all_without_cgroup_kill_signals_each_process() {
    let (tmp, cgroups) = fake_v2();
    let cg = cgroups.create("web-1", &size("standard-1x")).unwrap();
    let dir = tmp.path().join("dynoagent/web-1");
    // A kernel before 5.2: neither cgroup.kill nor cgroup.freeze.
    fs::remove_file(dir.join("cgroup.kill")).unwrap();
    fs::remove_file(dir.join("cgroup.freeze")).unwrap();
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    cg.add_process(child.id()).unwrap();
    std::thread::scope(|s| {
        let killer = s.spawn(|| cg.kill_all());
        // Play the kernel: the pid leaves cgroup.procs when it dies.
        let status = child.wait().unwrap();
        fs::write(dir.join("cgroup.procs"), "").unwrap();
        killer.join().unwrap().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    });
}

#[test]
fn v1_kill_all_kills_double_forked_daemons() {
    if !can_run("v1_kill_all_kills_double_forked_daemons") {
        return;
    }
    let fx = Fixture::new();
    let cg = fx.cgroups.create("worker-1", &size("standard-1x")).unwrap();
    // The subshell forks a sleep and exits: the sleep is reparented
    // away from anything the agent knows, like a daemon's.
    let (mut child, mut stdin) = gated("(sleep 300 &); exec sleep 301");
    cg.add_process(child.id()).unwrap();
    go(&mut stdin);
    // Wait for the settled state, not for a count: for a moment the
    // cgroup also holds the subshell (before or after it forks the
    // daemon), and the main process may not have exec'd its sleep yet.
    let main = child.id();
    let mut daemon = 0;
    wait_for("the daemon, reparented, and the main process", || {
        let procs = cg.procs().unwrap();
        let others: Vec<u32> = procs.iter().copied().filter(|&p| p != main).collect();
        let [other] = others[..] else { return false };
        daemon = other;
        procs.len() == 2
            && stat_of(main).is_some_and(|(comm, _)| comm == "sleep")
            && stat_of(other).is_some_and(|(comm, ppid)| comm == "sleep" && ppid != main)
    });

    cg.kill_all().unwrap();
    assert_eq!(cg.procs().unwrap(), Vec::<u32>::new());
    assert_eq!(child.wait().unwrap().signal(), Some(Signal::SIGKILL as i32));
    // Gone, or a zombie until its new parent reaps it.
    wait_for("the daemon to die", || {
        fs::read_to_string(format!("/proc/{daemon}/stat")).map_or(true, |s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
    });
}

/// A process's command name and parent pid, if it is still there.
fn stat_of(pid: u32) -> Option<(String, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
    Some((comm, ppid))
}
