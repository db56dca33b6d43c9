//! What a [`TestAgent`] leaves behind, removed when it is dropped (also when
//! a test fails): the agent process, every dyno process and shim its runs
//! recorded (found by pid from its own run records, never by name), and its
//! parent cgroup with whatever runs are left in it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::agent::TestAgent;
use crate::wait::poll;

fn sigkill() -> i32 {
    nix::sys::signal::Signal::SIGKILL as i32
}

/// Each test agent has its own parent cgroup: an agent reaps every cgroup
/// under its parent that is not one of its runs.
pub(crate) fn cgroup_parent(n: u32) -> String {
    format!("dynoagent-e2e-{}-{n}", std::process::id())
}

/// Removes the cgroup directory `dir` and the run cgroups under it, killing
/// (by pid) the processes still in them; tries for up to `within`. Returns
/// whether `dir` is gone.
pub fn remove_cgroup_tree(dir: &Path, within: Duration) -> bool {
    poll(within, Duration::from_millis(20), || {
        let runs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
            .unwrap_or_default();
        for run in &runs {
            if let Ok(procs) = std::fs::read_to_string(run.join("cgroup.procs")) {
                for pid in procs.split_whitespace().filter_map(|p| p.parse().ok()) {
                    let _ = dyno_agent::os::kill_pid(pid, sigkill());
                }
            }
            let _ = std::fs::remove_dir(run);
        }
        std::fs::remove_dir(dir).or_else(|e| if dir.exists() { Err(e) } else { Ok(()) })
    })
    .is_ok()
}

impl TestAgent {
    /// The cgroup directories of this agent's parent, in every hierarchy
    /// (v1) or in the unified one under the agent's own cgroup (v2).
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let parent = cgroup_parent(self.n);
        if crate::env::cgroup_v2() {
            let dir = self.v2_base().join(parent);
            return if dir.is_dir() { vec![dir] } else { Vec::new() };
        }
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
            return Vec::new();
        };
        hierarchies
            .flatten()
            .map(|h| h.path().join(&parent))
            .filter(|d| d.is_dir())
            .collect()
    }

    /// On v2, the cgroup the agent runs in (the one its launcher put it in,
    /// else the test's own): its parent cgroup is under it.
    pub fn v2_base(&self) -> PathBuf {
        self.v2_base.clone().unwrap_or_else(crate::env::v2_own_base)
    }

    /// The run cgroups left under the agent's parent cgroups. Fails when
    /// there is no parent cgroup to look in: a check of nothing.
    pub fn run_cgroups_left(&self) -> Vec<PathBuf> {
        let dirs = self.cgroup_dirs();
        assert!(
            !dirs.is_empty(),
            "no parent cgroup {} for the agent (cgroup {}): nothing to check",
            cgroup_parent(self.n),
            if crate::env::cgroup_v2() { "v2" } else { "v1" }
        );
        dirs.iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect()
    }

    /// Kills every dyno process and shim this agent's runs recorded.
    fn kill_runs(&self) {
        let runs = self.state.join("runs");
        let Ok(dir) = std::fs::read_dir(&runs) else { return };
        for run in dir.flatten() {
            let path = run.path();
            if let Ok(Some(exec)) = dyno_agent::runs::read_json::<dyno_agent::runs::ExecRecord>(&path.join("exec.json"))
                && dyno_agent::os::start_ticks(exec.pid) == Some(exec.start_ticks)
            {
                let _ = dyno_agent::os::kill_group(exec.pid, sigkill());
            }
        }
        for (_, shim) in dyno_agent::runs::live_shims(&runs) {
            let _ = dyno_agent::os::kill_pid(shim, sigkill());
        }
    }
}

impl TestAgent {
    /// Tears down every network namespace the agent recorded (CNI DEL: its
    /// veth, address, NAT and port rules), as its next start would, and the
    /// filter chains of its own network (see [`crate::config`]).
    pub fn release_networks(&self) {
        let overrides = dyno_agent::config::Overrides {
            state_dir: Some(self.state.clone()),
            ..Default::default()
        };
        let Ok(cfg) = dyno_agent::config::Config::load(Some(&self.config), std::iter::empty(), &overrides) else {
            return;
        };
        // On a thread of its own: a test may drop its agent inside a runtime.
        let released = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(dyno_agent::net::Network::release_all(&cfg, true))
        })
        .join();
        match released {
            Ok(Err(e)) => eprintln!("releasing the agent's networks: {e:#}"),
            Err(_) => eprintln!("releasing the agent's networks panicked"),
            Ok(Ok(())) => {}
        }
        // host-local's directory of the agent's own network, once it holds
        // no address any more (only its lock and its last reservation).
        let (name, _) = crate::config::own_network(self.n);
        let ipam = Path::new("/var/lib/cni/networks").join(name);
        let only_bookkeeping = std::fs::read_dir(&ipam).is_ok_and(|d| {
            d.flatten().all(|e| {
                let f = e.file_name().to_string_lossy().into_owned();
                f == "lock" || f.starts_with("last_reserved_ip")
            })
        });
        if only_bookkeeping {
            let _ = std::fs::remove_dir_all(&ipam);
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.kill_runs();
        self.release_networks();
        for dir in self.cgroup_dirs() {
            remove_cgroup_tree(&dir, Duration::from_secs(2));
        }
        if self.tmpfs
            && let Err(e) = nix::mount::umount2(&self.state, nix::mount::MntFlags::MNT_DETACH)
        {
            eprintln!("cannot unmount the tmpfs at {}: {e}", self.state.display());
        }
        if std::thread::panicking() {
            eprintln!(
                "--- agent log ({}) ---\n{}",
                self.dir.path().display(),
                self.agent_log()
            );
        }
    }
}
