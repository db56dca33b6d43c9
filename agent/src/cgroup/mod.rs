//! The cgroups of dynos: one cgroup per dyno run, under a configurable parent
//! (default [`DEFAULT_PARENT`]), holding the size's limits (DESIGN §5), read
//! for usage stats and OOM kills, and killed and removed as a whole.
//!
//! The host's backend is a [`Cgroups`] (from [`detect`], or [`V1Cgroups`] /
//! [`V2Cgroups`] directly); each dyno's cgroup is a [`DynoCgroup`]. The
//! cgroupfs root is a parameter everywhere, so tests point it at a tempdir.
//!
//! # What is where
//!
//! - **v1** (one hierarchy per controller): the cgroup is created in exactly
//!   the `memory`, `cpu`, `cpuacct`, `pids` and (when mounted) `freezer`
//!   hierarchies, found as `<root>/<controller>` (this also works where `cpu`
//!   and `cpuacct` are symlinks to a combined `cpu,cpuacct` mount). Creation,
//!   limits, adding a process, freezing and removal go through `cgroups-rs`
//!   (its `fs::Cgroup` over a small
//!   [`Hierarchy`](cgroups_rs::fs::Hierarchy) of our own that knows only
//!   those controllers under the injected root; the crate's own `V1` would
//!   read `/proc/self/mountinfo` and create the cgroup in every hierarchy).
//! - **v2**: everything by reading and writing the control files with
//!   `std::fs`. `cgroups-rs` hard-codes `/sys/fs/cgroup` for the v2
//!   controller list and creates files it opens for writing, which would make
//!   a fake tree accept writes to files the kernel does not have.
//! - **Both**: every file the results depend on (`cgroup.procs`, stats,
//!   `memory.oom_control`, `memory.events`) is read directly, because
//!   `cgroups-rs` turns read errors into zeros or empty lists; here a read
//!   error is an [`Error`] naming the file. Signals go through
//!   [`crate::os::kill_pid`].
//! - **Tests**: v2 runs against a fake cgroupfs in a tempdir, with `mkdir`
//!   and `rmdir` swapped for ones that do what the kernel does (create the
//!   control files; remove them with the directory). Real code only ever
//!   `mkdir`s and `rmdir`s cgroup directories. v1 is tested for real, as root.
//!
//! # Files
//!
//! - this file: the [`Cgroups`] and [`DynoCgroup`] traits, [`Limits`],
//!   [`Stats`], [`Error`], [`detect`], and the rules for cgroup names;
//! - `v1.rs` and `v2.rs`: the two backends;
//! - `files.rs`: reading, writing and parsing control files, listing
//!   cgroups (shared by both backends);
//! - `kill.rs`: the freeze / SIGKILL / thaw loop that empties a cgroup;
//! - `probe.rs`: the [`UsageProbe`] the usage ledger reads every slice;
//! - tests: `*_tests.rs` next to the file they test; `fake.rs` (the fake
//!   cgroup2 fs) and `testkit.rs` (the sizes' limits, the root fixture of
//!   the real v1 tests) for all of them.
//!
//! # Limits
//!
//! | | v1 | v2 |
//! |---|---|---|
//! | memory (host without swap) | `memory.limit_in_bytes` = `memory.memsw.limit_in_bytes` = kill limit | `memory.max` = kill limit, `memory.swap.max` = 0 |
//! | memory (host with swap) | `memory.limit_in_bytes` = quota, `memory.memsw.limit_in_bytes` = kill limit | `memory.max` = quota, `memory.swap.max` = kill limit − quota |
//! | memory (both) | `memory.soft_limit_in_bytes` = quota | `memory.oom.group` = 1 |
//! | cpu shares | `cpu.shares` | `cpu.weight` = 1 + (shares − 2) × 9999 / 262142 (runc/crun) |
//! | cpu quota | `cpu.cfs_period_us` = 100000, `cpu.cfs_quota_us` = cores × period or −1 | `cpu.max` = "quota 100000" or "max 100000" |
//! | pids | `pids.max` | `pids.max` |
//!
//! Memory as on Heroku's Common Runtime (DESIGN §5): the quota is what the
//! dyno may hold in RAM; memory and swap together are capped at the kill
//! limit (quota × `memory_kill_ratio`), where the kernel OOM-kills inside the
//! cgroup. On v2 `memory.oom.group` makes that kill take the whole dyno; v1
//! has no such switch, so the agent watches `oom_kill` and kills the rest
//! itself. When the kernel has no swap accounting (no `memsw` files) the v1
//! cgroup gets `memory.swappiness` 0 instead, and a warning; on v2 a missing
//! `memory.swap.max` is a warning.
//!
//! # Lifecycle
//!
//! [`Cgroups::create`] refuses a name that already exists ([`Error::Exists`]):
//! a leftover cgroup would carry stale processes, peaks and OOM counts into
//! a new run. Nothing is removed on `Drop`: a dyno outlives an agent restart,
//! and the next agent finds its cgroup again with [`Cgroups::open`]. Cgroups
//! of runs that ended while no agent was there to remove them are found with
//! [`Cgroups::list`] and removed by [`Cgroups::reap`], which the agent calls
//! at start with the set of runs it re-adopted.
//!
//! [`DynoCgroup::kill_all`] kills every process in the cgroup, including
//! double-forked daemons: v2 writes `cgroup.kill` (Linux ≥ 5.14); v1, and v2
//! without `cgroup.kill`, freeze the cgroup, SIGKILL each process, thaw, and
//! repeat until it is empty (bounded by [`KILL_TIMEOUT`]).
//!
//! Every call blocks (file I/O, and `kill_all`/`remove` wait for processes to
//! die): async code calls them from `spawn_blocking`.
//!
//! On v2 controllers can only be enabled for the children of a cgroup without
//! processes of its own (the root excepted). So on v2 the agent's parent is
//! relative to the agent's own cgroup (the subtree systemd delegates with
//! `Delegate=yes`, or the root), and at start ([`for_agent`]) the agent moves
//! itself, and whatever else is in that cgroup, into its leaf
//! [`AGENT_LEAF`], beside the dynos' parent:
//!
//! ```text
//! <own cgroup>/            e.g. system.slice/dynoagent.service
//!   agent/                 the agent and the shims it starts
//!   <cgroup_parent>/<run>  one per dyno run, with its limits
//! ```

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod files;
mod kill;
mod probe;
mod v1;
mod v2;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

pub use self::probe::{Usage, UsageProbe};
pub use self::v1::V1Cgroups;
pub use self::v2::{AGENT_LEAF, V2Cgroups};

/// The parent cgroup of all dynos, relative to the root of each hierarchy.
pub const DEFAULT_PARENT: &str = "dynoagent";
/// The CFS period used for the CPU quota, in microseconds.
pub const CFS_PERIOD_US: u64 = 100_000;
/// How long `kill_all` waits for the cgroup to become empty.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the waits of this module look again.
const POLL: Duration = Duration::from_millis(10);

/// Which cgroup interface the host offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

/// The cgroup limits of one dyno size.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// The memory quota in bytes (DESIGN §5): the RAM the dyno may hold
    /// where the host has swap; above it the dyno's log gets R14.
    pub memory_bytes: u64,
    /// The kill limit (quota × `memory_kill_ratio`): memory and swap together
    /// past this are OOM-killed (R15). At least `memory_bytes`.
    pub memory_kill_bytes: u64,
    /// The host has swap: RAM is capped at the quota and the rest up to the
    /// kill limit goes to swap. Without swap, RAM up to the kill limit.
    pub swap: bool,
    /// v1 `cpu.shares`; converted to `cpu.weight` on v2.
    pub cpu_shares: u64,
    /// CFS quota in cores; `None` for no quota.
    pub cpu_quota: Option<f64>,
    pub pids_max: u64,
}

impl Limits {
    fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidLimits(what));
        if self.memory_bytes == 0 || self.memory_bytes > i64::MAX as u64 {
            return bad(format!("memory_bytes {} out of range", self.memory_bytes));
        }
        if self.memory_kill_bytes < self.memory_bytes || self.memory_kill_bytes > i64::MAX as u64 {
            return bad(format!(
                "memory_kill_bytes {} out of range (at least memory_bytes {})",
                self.memory_kill_bytes, self.memory_bytes
            ));
        }
        if self.pids_max == 0 || self.pids_max > i64::MAX as u64 {
            return bad(format!("pids_max {} out of range", self.pids_max));
        }
        if let Some(q) = self.cpu_quota
            && !(q.is_finite() && q > 0.0 && q < 1e6)
        {
            return bad(format!("cpu_quota {q} is not a positive number of cores"));
        }
        Ok(())
    }

    /// The RAM limit: the quota where the host has swap (the excess goes to
    /// swap), else the kill limit.
    pub fn ram_bytes(&self) -> u64 {
        if self.swap {
            self.memory_bytes
        } else {
            self.memory_kill_bytes
        }
    }

    /// The quota in microseconds per [`CFS_PERIOD_US`] (at least 1 ms, the
    /// kernel's minimum), or `None` for no quota.
    pub fn cpu_quota_us(&self) -> Option<u64> {
        self.cpu_quota
            .map(|cores| ((cores * CFS_PERIOD_US as f64).round() as u64).max(1000))
    }
}

/// v1 `cpu.shares` to v2 `cpu.weight`, the conversion of runc and crun:
/// [2, 262144] maps linearly onto [1, 10000].
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// Usage of one dyno's cgroup, for the runtime-metrics log line and billing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Memory charged now (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub memory_current: u64,
    /// Anonymous memory (v1 `total_rss`, v2 `anon` of `memory.stat`).
    pub memory_rss: u64,
    /// Page cache (v1 `total_cache`, v2 `file` of `memory.stat`).
    pub memory_cache: u64,
    /// Swapped out (v1 `total_swap` of `memory.stat`, 0 without swap
    /// accounting; v2 `memory.swap.current`, 0 where missing).
    pub memory_swap: u64,
    /// Pages charged and uncharged (v1 `total_pgpgin` / `total_pgpgout` of
    /// `memory.stat`; v2 has no such counters: `pgfault` and `pgsteal`).
    pub pgpgin: u64,
    pub pgpgout: u64,
    /// Highest memory charged (v1 `memory.max_usage_in_bytes`, v2
    /// `memory.peak`, which kernels before 5.19 lack: then `None`).
    pub memory_peak: Option<u64>,
    /// CPU time used (v1 `cpuacct.usage`, v2 `usage_usec` of `cpu.stat`).
    pub cpu_usage_ns: u64,
    /// Processes killed by the memory limit.
    pub oom_kills: u64,
}

/// What can go wrong; every variant names the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid cgroup name {0:?}: want [A-Za-z0-9_.:@-] not starting with a dot")]
    InvalidName(String),
    #[error("invalid cgroup limits: {0}")]
    InvalidLimits(String),
    #[error("no usable cgroup hierarchy at {0}: neither cgroup2 with the memory controller nor a v1 memory hierarchy")]
    NoHierarchy(PathBuf),
    #[error("cgroup controller {controller} is not available at {path}")]
    MissingController { controller: &'static str, path: PathBuf },
    #[error("cgroup {0} already exists")]
    Exists(PathBuf),
    #[error("{op} {path}: {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error("writing {value:?} to {path}: {error}")]
    Write {
        path: PathBuf,
        value: String,
        error: io::Error,
    },
    #[error("parsing {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("{op} {path}: {error}")]
    Cgroups {
        op: &'static str,
        path: PathBuf,
        error: cgroups_rs::fs::error::Error,
    },
    #[error("killing pid {pid} of {path}: {error}")]
    Kill { pid: u32, path: PathBuf, error: io::Error },
    #[error("cgroup {path} still has processes {pids:?} after {waited:?}")]
    NotEmpty {
        path: PathBuf,
        pids: Vec<u32>,
        waited: Duration,
    },
}

impl Error {
    /// [`Error::Io`]: `op` (“reading”, “creating”…) failed on `path`.
    fn io(op: &'static str, path: &Path, error: io::Error) -> Error {
        Error::Io {
            op,
            path: path.to_path_buf(),
            error,
        }
    }

    /// [`Error::Parse`] of `path`.
    fn parse(path: &Path, detail: String) -> Error {
        Error::Parse {
            path: path.to_path_buf(),
            detail,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The host's cgroup backend, shared with blocking tasks.
pub type CgroupsRef = std::sync::Arc<dyn Cgroups>;

/// The host's cgroup backend: creates, finds and lists the dynos' cgroups
/// under its parent.
pub trait Cgroups: Send + Sync {
    fn version(&self) -> Version;

    /// Creates the cgroup `name` under the parent (creating the parent if
    /// missing) with `limits`. Fails with [`Error::Exists`] if it exists; on
    /// any other failure nothing is left behind.
    fn create(&self, name: &str, limits: &Limits) -> Result<Box<dyn DynoCgroup>>;

    /// The existing cgroup `name`, to re-adopt a run after an agent restart.
    fn open(&self, name: &str) -> Result<Option<Box<dyn DynoCgroup>>>;

    /// The names of all cgroups under the parent, sorted (on v1: present in
    /// any of the hierarchies used).
    fn list(&self) -> Result<Vec<String>>;

    /// Kills and removes every cgroup under the parent for which `keep` is
    /// false: the leftovers of runs that ended while no agent was there.
    /// Tries them all; returns the names removed, or the first error.
    fn reap(&self, keep: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
        let mut reaped = Vec::new();
        let mut first_error = None;
        for name in self.list()? {
            if keep(&name) {
                continue;
            }
            let removed = self.open(&name).and_then(|cg| cg.map_or(Ok(()), |cg| cg.remove()));
            match removed {
                Ok(()) => reaped.push(name),
                Err(e) => {
                    tracing::warn!(cgroup = %name, err = %e, "could not reap a leftover cgroup");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(reaped), Err)
    }
}

/// The cgroup of one dyno run.
pub trait DynoCgroup: Send + Sync {
    /// The name under the parent.
    fn name(&self) -> &str;
    /// The cgroup's directory (on v1, the one in the memory hierarchy).
    fn path(&self) -> &Path;
    /// The `cgroup.procs` files a process is written to to join the cgroup
    /// (one per v1 hierarchy; one on v2): what the shim uses for the dyno's
    /// init, before it starts anything.
    fn procs_files(&self) -> Vec<PathBuf>;
    /// Moves process `pid` (all its threads) into the cgroup.
    fn add_process(&self, pid: u32) -> Result<()>;
    /// The processes in the cgroup, sorted; empty once it is removed.
    fn procs(&self) -> Result<Vec<u32>>;
    /// Every thread in the cgroup (v1 `tasks`, v2 `cgroup.threads`): what a
    /// dyno's load average counts.
    fn threads(&self) -> Result<Vec<u32>>;
    fn stats(&self) -> Result<Stats>;
    /// Opens the files the usage ledger reads every slice.
    fn usage_probe(&self) -> Result<Box<dyn UsageProbe>>;
    /// How many processes the memory limit has killed (v1 `oom_kill` of
    /// `memory.oom_control`, v2 `oom_kill` of `memory.events`).
    fn oom_kills(&self) -> Result<u64>;
    /// SIGKILLs every process in the cgroup and waits until it is empty.
    fn kill_all(&self) -> Result<()>;
    /// [`kill_all`](Self::kill_all), then removes the cgroup. Removing a
    /// cgroup that is already gone succeeds.
    fn remove(&self) -> Result<()>;
}

/// The backend for the cgroupfs at `root` (normally `/sys/fs/cgroup`): v2 if
/// `root` is a cgroup2 mount offering the memory controller, else v1 if it
/// holds a v1 memory hierarchy. `parent` is the dynos' parent cgroup,
/// relative to the root of each hierarchy.
pub fn detect(root: &Path, parent: &str) -> Result<Box<dyn Cgroups>> {
    if is_v2(root) {
        return Ok(Box::new(V2Cgroups::new(root, parent)?));
    }
    if root.join("memory/cgroup.procs").is_file() {
        return Ok(Box::new(V1Cgroups::new(root, parent)?));
    }
    Err(Error::NoHierarchy(root.to_path_buf()))
}

/// The cgroups of the agent at start: [`detect`], but on v2 the parent is
/// relative to the agent's own cgroup (from `/proc/self/cgroup`) and the
/// subtree is set up now ([`V2Cgroups::setup`]: the agent moves into its
/// leaf, the parent gets its controllers), so that a setup that cannot work
/// stops the agent with the file at fault instead of failing every start.
pub fn for_agent(root: &Path, parent: &str) -> Result<Box<dyn Cgroups>> {
    if is_v2(root) {
        let cgroup = Path::new("/proc/self/cgroup");
        let text = fs::read_to_string(cgroup).map_err(|error| Error::io("reading", cgroup, error))?;
        let own = own_v2_cgroup(&text).ok_or_else(|| Error::parse(cgroup, "no `0::` line (cgroup v2)".into()))?;
        let v2 = V2Cgroups::for_own_cgroup(root.to_path_buf(), own, parent)?;
        v2.setup()?;
        return Ok(Box::new(v2));
    }
    detect(root, parent)
}

/// The agent's cgroup v2 path in the text of `/proc/self/cgroup`.
pub fn own_v2_cgroup(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

fn is_v2(root: &Path) -> bool {
    fs::read_to_string(root.join("cgroup.controllers"))
        .is_ok_and(|controllers| controllers.split_whitespace().any(|c| c == "memory"))
}

/// A dyno's cgroup name: one path component of `[A-Za-z0-9_.:@-]`, not
/// starting with a dot (so never `.` or `..`).
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_string()))
    }
}

/// The parent: one or more valid names separated by `/`.
fn check_parent(parent: &str) -> Result<PathBuf> {
    let parent = parent.trim_matches('/');
    let mut path = PathBuf::new();
    for component in parent.split('/') {
        check_name(component).map_err(|_| Error::InvalidName(parent.to_string()))?;
        path.push(component);
    }
    Ok(path)
}

/// What both backends do when applying the limits to a cgroup they just made
/// failed: `undo` (remove it) so that nothing is left behind, and return the
/// failure. A failed undo is only logged: the first error is what matters.
fn undo_if_failed(applied: Result<()>, dir: &Path, undo: impl FnOnce() -> Result<()>) -> Result<()> {
    if applied.is_err()
        && let Err(cleanup) = undo()
    {
        tracing::warn!(cgroup = %dir.display(), err = %cleanup, "could not remove a half-created cgroup");
    }
    applied
}
