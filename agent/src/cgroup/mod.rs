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
//!   (its `fs::Cgroup` over a small [`Hierarchy`] of our own that knows only
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
//! # Limits
//!
//! | | v1 | v2 |
//! |---|---|---|
//! | memory | `memory.limit_in_bytes`, `memory.memsw.limit_in_bytes` = the same | `memory.max`, `memory.swap.max` = 0 |
//! | cpu shares | `cpu.shares` | `cpu.weight` = 1 + (shares − 2) × 9999 / 262142 (runc/crun) |
//! | cpu quota | `cpu.cfs_period_us` = 100000, `cpu.cfs_quota_us` = cores × period or −1 | `cpu.max` = "quota 100000" or "max 100000" |
//! | pids | `pids.max` | `pids.max` |
//!
//! "No swap beyond the limit": on v1 memory+swap is capped at the memory
//! limit; when the kernel has no swap accounting (no `memsw` files) the cgroup
//! gets `memory.swappiness` 0 instead, and a warning. On v2 `memory.swap.max`
//! is 0 (a warning when the kernel has no such file).
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
//! On v2 the parent must not be the agent's own cgroup: controllers can only
//! be enabled for the children of a cgroup without processes of its own.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::CgroupPid;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Cgroup, ControllIdentifier, Controller, Hierarchy, MaxValue, Subsystem};

/// The parent cgroup of all dynos, relative to the root of each hierarchy.
pub const DEFAULT_PARENT: &str = "dynoagent";
/// The CFS period used for the CPU quota, in microseconds.
pub const CFS_PERIOD_US: u64 = 100_000;
/// How long `kill_all` waits for the cgroup to become empty.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a v1 freeze may stay `FREEZING` before the kill goes ahead anyway.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(10);
/// The v1 hierarchies a dyno's cgroup is created in (freezer when mounted).
const V1_CONTROLLERS: [&str; 4] = ["memory", "cpu", "cpuacct", "pids"];
/// The v2 controllers enabled for the dynos.
const V2_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

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
    /// Hard memory limit in bytes; no swap beyond it.
    pub memory_bytes: u64,
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
    /// Highest memory charged (v1 `memory.max_usage_in_bytes`, v2
    /// `memory.peak`, which kernels before 5.19 lack: then `None`).
    pub memory_peak: Option<u64>,
    /// CPU time used (v1 `cpuacct.usage`, v2 `usage_usec` of `cpu.stat`).
    pub cpu_usage_ns: u64,
    /// Processes killed by the memory limit.
    pub oom_kills: u64,
}

/// What the usage ledger reads from a run's cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used since the cgroup was made.
    pub cpu_ns: u64,
    /// Highest memory charged since the previous reading (since the cgroup
    /// was made, for the first one; see [`UsageProbe`]).
    pub mem_peak_bytes: u64,
}

/// Open control files of one cgroup, for cheap periodic usage readings (a
/// `pread` per file instead of open/read/close).
pub trait UsageProbe: Send {
    /// Cumulative CPU time, and the memory peak since the previous read. Each
    /// read resets the peak: v1 by writing `0` to
    /// `memory.max_usage_in_bytes`; v2 by writing to `memory.peak` through
    /// the probe's own descriptor (Linux 6.12+; older kernels refuse the
    /// write and the peak stays the cgroup's lifetime peak, an upper bound).
    fn read(&mut self) -> Result<Usage>;
}

/// A [`UsageProbe`] over two control files.
struct FileProbe {
    cpu: (fs::File, PathBuf),
    /// `Some(key)`: a keyed file in microseconds (v2 `cpu.stat`); `None`: one number in nanoseconds.
    cpu_key: Option<&'static str>,
    peak: (fs::File, PathBuf),
    /// What resets the peak; `None` once the kernel refused it.
    reset: Option<&'static [u8]>,
    buf: Vec<u8>,
}

impl FileProbe {
    fn open(cpu: PathBuf, cpu_key: Option<&'static str>, peak: PathBuf, reset: &'static [u8]) -> Result<FileProbe> {
        let opened = |path: &Path, write: bool| {
            fs::OpenOptions::new()
                .read(true)
                .write(write)
                .open(path)
                .map_err(|error| Error::Io {
                    op: "opening",
                    path: path.to_path_buf(),
                    error,
                })
        };
        Ok(FileProbe {
            cpu: (opened(&cpu, false)?, cpu),
            cpu_key,
            peak: (opened(&peak, true)?, peak),
            reset: Some(reset),
            buf: vec![0; 4096],
        })
    }

    fn pread(buf: &mut [u8], (file, path): &(fs::File, PathBuf)) -> Result<String> {
        use std::os::unix::fs::FileExt;
        let n = file.read_at(buf, 0).map_err(|error| Error::Io {
            op: "reading",
            path: path.clone(),
            error,
        })?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl UsageProbe for FileProbe {
    fn read(&mut self) -> Result<Usage> {
        let text = FileProbe::pread(&mut self.buf, &self.cpu)?;
        let cpu_ns = match self.cpu_key {
            None => parse_u64(&self.cpu.1, &text)?,
            Some(k) => {
                let line = text.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix(' '));
                let usec = line.ok_or_else(|| Error::Parse {
                    path: self.cpu.1.clone(),
                    detail: format!("no {k:?} line"),
                })?;
                parse_u64(&self.cpu.1, usec)?.saturating_mul(1000)
            }
        };
        let mem_peak_bytes = parse_u64(&self.peak.1, &FileProbe::pread(&mut self.buf, &self.peak)?)?;
        if let Some(reset) = self.reset {
            use std::os::unix::fs::FileExt;
            if let Err(e) = self.peak.0.write_at(reset, 0) {
                tracing::debug!(path = %self.peak.1.display(), error = %e, "the memory peak cannot be reset: it stays the lifetime peak");
                self.reset = None;
            }
        }
        Ok(Usage { cpu_ns, mem_peak_bytes })
    }
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
    if let Ok(controllers) = fs::read_to_string(root.join("cgroup.controllers"))
        && controllers.split_whitespace().any(|c| c == "memory")
    {
        return Ok(Box::new(V2Cgroups::new(root, parent)?));
    }
    if root.join("memory/cgroup.procs").is_file() {
        return Ok(Box::new(V1Cgroups::new(root, parent)?));
    }
    Err(Error::NoHierarchy(root.to_path_buf()))
}

// ---------------------------------------------------------------------------
// v1

/// cgroup v1: one hierarchy per controller, mounted at `<root>/<controller>`.
#[derive(Debug)]
pub struct V1Cgroups {
    root: PathBuf,
    parent: PathBuf,
    freezer: bool,
}

impl V1Cgroups {
    /// Needs the memory, cpu, cpuacct and pids hierarchies; uses the freezer
    /// hierarchy when mounted (without it `kill_all` cannot freeze first).
    pub fn new(root: impl Into<PathBuf>, parent: &str) -> Result<V1Cgroups> {
        let root = root.into();
        let parent = check_parent(parent)?;
        for controller in V1_CONTROLLERS {
            let dir = root.join(controller);
            if !dir.join("cgroup.procs").is_file() {
                return Err(Error::MissingController { controller, path: dir });
            }
        }
        let freezer = root.join("freezer/cgroup.procs").is_file();
        if !freezer {
            tracing::warn!(root = %root.display(), "no v1 freezer hierarchy: dynos are killed without freezing");
        }
        Ok(V1Cgroups { root, parent, freezer })
    }

    fn controllers(&self) -> impl Iterator<Item = &'static str> {
        V1_CONTROLLERS.into_iter().chain(self.freezer.then_some("freezer"))
    }

    fn dyno(&self, name: &str) -> V1Dyno {
        let hierarchy = V1Hierarchy {
            root: self.root.clone(),
            freezer: self.freezer,
        };
        V1Dyno {
            name: name.to_string(),
            cgroup: Cgroup::load(Box::new(hierarchy), self.parent.join(name)),
            memory: self.root.join("memory").join(&self.parent).join(name),
        }
    }
}

impl Cgroups for V1Cgroups {
    fn version(&self) -> Version {
        Version::V1
    }

    fn create(&self, name: &str, limits: &Limits) -> Result<Box<dyn DynoCgroup>> {
        check_name(name)?;
        limits.validate()?;
        let dyno = self.dyno(name);
        if let Some(dir) = dyno.dirs().find(|d| d.exists()) {
            return Err(Error::Exists(dir.to_path_buf()));
        }
        let created = dyno
            .cgroup
            .create()
            .map_err(|error| Error::Cgroups {
                op: "creating",
                path: dyno.memory.clone(),
                error,
            })
            .and_then(|()| dyno.apply(limits));
        if let Err(e) = created {
            if let Err(cleanup) = dyno.rmdirs() {
                tracing::warn!(err = %cleanup, "could not remove a half-created cgroup");
            }
            return Err(e);
        }
        tracing::debug!(cgroup = %name, "created v1 cgroup");
        Ok(Box::new(dyno))
    }

    fn open(&self, name: &str) -> Result<Option<Box<dyn DynoCgroup>>> {
        check_name(name)?;
        let dyno = self.dyno(name);
        Ok(dyno.exists().then(|| Box::new(dyno) as Box<dyn DynoCgroup>))
    }

    fn list(&self) -> Result<Vec<String>> {
        let mut names = BTreeSet::new();
        for controller in self.controllers() {
            names.extend(subdirs(&self.root.join(controller).join(&self.parent))?);
        }
        Ok(names.into_iter().collect())
    }
}

/// The hierarchies of [`V1Cgroups`] as `cgroups-rs` sees them: only the
/// controllers a dyno needs, under the injected root.
#[derive(Clone, Debug)]
struct V1Hierarchy {
    root: PathBuf,
    freezer: bool,
}

impl Hierarchy for V1Hierarchy {
    fn subsystems(&self) -> Vec<Subsystem> {
        let dir = |controller: &str| self.root.join(controller);
        // The mount root inside each hierarchy (field 4 of mountinfo).
        let base = || PathBuf::from("/");
        let mut subsystems = vec![
            Subsystem::Mem(MemController::new(dir("memory"), base(), false)),
            Subsystem::Cpu(CpuController::new(dir("cpu"), base(), false)),
            Subsystem::CpuAcct(CpuAcctController::new(dir("cpuacct"), base())),
            Subsystem::Pid(PidController::new(dir("pids"), base(), false)),
        ];
        if self.freezer {
            subsystems.push(Subsystem::Freezer(FreezerController::new(
                dir("freezer"),
                base(),
                false,
            )));
        }
        subsystems
    }

    fn root(&self) -> PathBuf {
        self.root.clone()
    }

    fn root_control_group(&self) -> Cgroup {
        Cgroup::load(Box::new(self.clone()), "")
    }

    fn parent_control_group(&self, path: &str) -> Cgroup {
        let parent = Path::new(path).parent().unwrap_or(Path::new(""));
        Cgroup::load(Box::new(self.clone()), parent)
    }

    fn v2(&self) -> bool {
        false
    }
}

struct V1Dyno {
    name: String,
    /// Knows the cgroup's directory in each hierarchy used.
    cgroup: Cgroup,
    /// The directory in the memory hierarchy.
    memory: PathBuf,
}

impl V1Dyno {
    /// The cgroup's directory in each hierarchy used.
    fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.cgroup.subsystems().iter().map(|s| s.to_controller().path())
    }

    fn exists(&self) -> bool {
        self.dirs().any(|d| d.exists())
    }

    /// The controller of type `T` (named `name`) and its directory.
    fn controller<'a, T>(&'a self, name: &'static str) -> Result<(&'a T, &'a Path)>
    where
        &'a T: From<&'a Subsystem>,
        T: Controller + ControllIdentifier,
    {
        let controller = self
            .cgroup
            .controller_of::<T>()
            .ok_or_else(|| Error::MissingController {
                controller: name,
                path: self.memory.clone(),
            })?;
        Ok((controller, controller.path()))
    }

    fn apply(&self, limits: &Limits) -> Result<()> {
        let failed = |op: &'static str, dir: &Path| {
            let path = dir.to_path_buf();
            move |error| Error::Cgroups { op, path, error }
        };
        let (memory, memory_dir) = self.controller::<MemController>("memory")?;
        let bytes = limits.memory_bytes as i64;
        memory
            .set_limit(bytes)
            .map_err(failed("setting memory.limit_in_bytes of", memory_dir))?;
        if memory_dir.join("memory.memsw.limit_in_bytes").exists() {
            memory
                .set_memswap_limit(bytes)
                .map_err(failed("setting memory.memsw.limit_in_bytes of", memory_dir))?;
        } else {
            tracing::warn!(cgroup = %memory_dir.display(), "no swap accounting: setting memory.swappiness 0 instead of a memory+swap limit");
            memory
                .set_swappiness(0)
                .map_err(failed("setting memory.swappiness of", memory_dir))?;
        }

        let (cpu, cpu_dir) = self.controller::<CpuController>("cpu")?;
        cpu.set_shares(limits.cpu_shares)
            .map_err(failed("setting cpu.shares of", cpu_dir))?;
        cpu.set_cfs_period(CFS_PERIOD_US)
            .map_err(failed("setting cpu.cfs_period_us of", cpu_dir))?;
        let quota = limits.cpu_quota_us().map_or(-1, |q| q as i64);
        cpu.set_cfs_quota(quota)
            .map_err(failed("setting cpu.cfs_quota_us of", cpu_dir))?;

        let (pids, pids_dir) = self.controller::<PidController>("pids")?;
        pids.set_pid_max(MaxValue::Value(limits.pids_max as i64))
            .map_err(failed("setting pids.max of", pids_dir))
    }

    /// Removes the cgroup's directory in every hierarchy (those missing are
    /// fine); tries them all, returns the first error.
    fn rmdirs(&self) -> Result<()> {
        let mut first_error = None;
        for subsystem in self.cgroup.subsystems() {
            let controller = subsystem.to_controller();
            // `delete` retries for a while, as runc does: the kernel may still
            // hold the cgroup busy just after its last process exited.
            if let Err(error) = controller.delete() {
                first_error.get_or_insert(Error::Cgroups {
                    op: "removing",
                    path: controller.path().to_path_buf(),
                    error,
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn freeze(&self, freezer: &FreezerController, dir: &Path) -> Result<()> {
        freezer.freeze().map_err(|error| Error::Cgroups {
            op: "freezing",
            path: dir.to_path_buf(),
            error,
        })?;
        let state = dir.join("freezer.state");
        let start = Instant::now();
        while read(&state)?.trim() != "FROZEN" {
            if start.elapsed() > FREEZE_TIMEOUT {
                // A task in uninterruptible sleep can keep it FREEZING; kill
                // what can be killed and try again in the next round.
                tracing::debug!(cgroup = %dir.display(), "still freezing; killing anyway");
                break;
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }
}

impl DynoCgroup for V1Dyno {
    fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().map(|d| d.join("cgroup.procs")).collect()
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn path(&self) -> &Path {
        &self.memory
    }

    fn add_process(&self, pid: u32) -> Result<()> {
        self.cgroup
            .add_task_by_tgid(CgroupPid::from(u64::from(pid)))
            .map_err(|error| Error::Cgroups {
                op: "adding a process to",
                path: self.memory.clone(),
                error,
            })
    }

    fn procs(&self) -> Result<Vec<u32>> {
        let mut pids = BTreeSet::new();
        for dir in self.dirs().filter(|d| d.exists()) {
            pids.extend(read_pids(&dir.join("cgroup.procs"))?);
        }
        Ok(pids.into_iter().collect())
    }

    fn stats(&self) -> Result<Stats> {
        let stat_file = self.memory.join("memory.stat");
        let stat = read_keyed(&stat_file)?;
        Ok(Stats {
            memory_current: read_u64(&self.memory.join("memory.usage_in_bytes"))?,
            memory_rss: key(&stat, "total_rss", &stat_file)?,
            memory_cache: key(&stat, "total_cache", &stat_file)?,
            memory_peak: Some(read_u64(&self.memory.join("memory.max_usage_in_bytes"))?),
            cpu_usage_ns: read_u64(&self.controller::<CpuAcctController>("cpuacct")?.1.join("cpuacct.usage"))?,
            oom_kills: self.oom_kills()?,
        })
    }

    fn usage_probe(&self) -> Result<Box<dyn UsageProbe>> {
        Ok(Box::new(FileProbe::open(
            self.controller::<CpuAcctController>("cpuacct")?.1.join("cpuacct.usage"),
            None,
            self.memory.join("memory.max_usage_in_bytes"),
            b"0",
        )?))
    }

    fn oom_kills(&self) -> Result<u64> {
        // `oom_kill` since Linux 4.13.
        let path = self.memory.join("memory.oom_control");
        key(&read_keyed(&path)?, "oom_kill", &path)
    }

    fn kill_all(&self) -> Result<()> {
        // No freezer hierarchy, or a half-created cgroup without a directory
        // there: kill without freezing.
        let freezer = self
            .controller::<FreezerController>("freezer")
            .ok()
            .filter(|(_, dir)| dir.exists());
        let freeze = freezer.map(|(f, dir)| move || self.freeze(f, dir));
        let thaw = freezer.map(|(f, dir)| {
            move || {
                f.thaw().map_err(|error| Error::Cgroups {
                    op: "thawing",
                    path: dir.to_path_buf(),
                    error,
                })
            }
        });
        let freezer = freeze.as_ref().zip(thaw.as_ref()).map(|(f, t)| Freezer {
            freeze: f as &dyn Fn() -> Result<()>,
            thaw: t as &dyn Fn() -> Result<()>,
        });
        kill_until_empty(&self.memory, &|| self.procs(), freezer)
    }

    fn remove(&self) -> Result<()> {
        if !self.exists() {
            return Ok(());
        }
        self.kill_all()?;
        self.rmdirs()?;
        tracing::debug!(cgroup = %self.name, "removed v1 cgroup");
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// v2

/// cgroup v2: one unified hierarchy at `root`.
#[derive(Debug)]
pub struct V2Cgroups {
    root: PathBuf,
    parent: PathBuf,
    /// `mkdir` and `rmdir` of a cgroup: the plain calls on cgroupfs; tests
    /// swap in versions that also do what the kernel would (create the
    /// control files, refuse to remove a populated cgroup).
    mkdir: fn(&Path) -> io::Result<()>,
    rmdir: fn(&Path) -> io::Result<()>,
}

impl V2Cgroups {
    /// Needs the memory, cpu and pids controllers in `<root>/cgroup.controllers`.
    pub fn new(root: impl Into<PathBuf>, parent: &str) -> Result<V2Cgroups> {
        let root = root.into();
        let parent = check_parent(parent)?;
        let path = root.join("cgroup.controllers");
        let available = read(&path)?;
        for controller in V2_CONTROLLERS {
            if !available.split_whitespace().any(|c| c == controller) {
                return Err(Error::MissingController { controller, path });
            }
        }
        Ok(V2Cgroups {
            root,
            parent,
            mkdir: |dir| fs::create_dir(dir),
            rmdir: |dir| fs::remove_dir(dir),
        })
    }

    #[cfg(test)]
    fn with_fs_ops(self, mkdir: fn(&Path) -> io::Result<()>, rmdir: fn(&Path) -> io::Result<()>) -> V2Cgroups {
        V2Cgroups { mkdir, rmdir, ..self }
    }

    fn parent_dir(&self) -> PathBuf {
        self.root.join(&self.parent)
    }

    /// Creates the parent where missing and enables the controllers for the
    /// children of the root, of every cgroup down to the parent, and of the
    /// parent itself.
    fn ensure_parent(&self) -> Result<()> {
        let mut dir = self.root.clone();
        enable_controllers(&dir)?;
        for component in self.parent.components() {
            dir.push(component);
            match (self.mkdir)(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(error) => {
                    return Err(Error::Io {
                        op: "creating",
                        path: dir,
                        error,
                    });
                }
            }
            enable_controllers(&dir)?;
        }
        Ok(())
    }

    fn dyno(&self, name: &str) -> V2Dyno {
        V2Dyno {
            name: name.to_string(),
            dir: self.parent_dir().join(name),
            rmdir: self.rmdir,
        }
    }
}

/// Writes the missing ones of [`V2_CONTROLLERS`] to `dir/cgroup.subtree_control`.
fn enable_controllers(dir: &Path) -> Result<()> {
    let path = dir.join("cgroup.subtree_control");
    let enabled = read(&path)?;
    let enabled: Vec<&str> = enabled.split_whitespace().map(|c| c.trim_start_matches('+')).collect();
    if V2_CONTROLLERS.iter().all(|c| enabled.contains(c)) {
        return Ok(());
    }
    // One write for all three: the kernel applies each token of it.
    let value: Vec<String> = V2_CONTROLLERS.iter().map(|c| format!("+{c}")).collect();
    write(&path, &value.join(" "))
}

impl Cgroups for V2Cgroups {
    fn version(&self) -> Version {
        Version::V2
    }

    fn create(&self, name: &str, limits: &Limits) -> Result<Box<dyn DynoCgroup>> {
        check_name(name)?;
        limits.validate()?;
        self.ensure_parent()?;
        let dyno = self.dyno(name);
        match (self.mkdir)(&dyno.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(Error::Exists(dyno.dir)),
            Err(error) => {
                return Err(Error::Io {
                    op: "creating",
                    path: dyno.dir,
                    error,
                });
            }
        }
        if let Err(e) = dyno.apply(limits) {
            if let Err(cleanup) = (self.rmdir)(&dyno.dir) {
                tracing::warn!(cgroup = %dyno.dir.display(), err = %cleanup, "could not remove a half-created cgroup");
            }
            return Err(e);
        }
        tracing::debug!(cgroup = %name, "created v2 cgroup");
        Ok(Box::new(dyno))
    }

    fn open(&self, name: &str) -> Result<Option<Box<dyn DynoCgroup>>> {
        check_name(name)?;
        let dyno = self.dyno(name);
        Ok(dyno.dir.is_dir().then(|| Box::new(dyno) as Box<dyn DynoCgroup>))
    }

    fn list(&self) -> Result<Vec<String>> {
        subdirs(&self.parent_dir()).map(|names| names.into_iter().collect())
    }
}

struct V2Dyno {
    name: String,
    dir: PathBuf,
    rmdir: fn(&Path) -> io::Result<()>,
}

impl V2Dyno {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn apply(&self, limits: &Limits) -> Result<()> {
        write(&self.file("memory.max"), &limits.memory_bytes.to_string())?;
        let swap = self.file("memory.swap.max");
        if swap.exists() {
            write(&swap, "0")?;
        } else {
            tracing::warn!(cgroup = %self.dir.display(), "no memory.swap.max (no swap accounting): swap is not limited");
        }
        write(
            &self.file("cpu.weight"),
            &shares_to_weight(limits.cpu_shares).to_string(),
        )?;
        let max = match limits.cpu_quota_us() {
            Some(quota) => format!("{quota} {CFS_PERIOD_US}"),
            None => format!("max {CFS_PERIOD_US}"),
        };
        write(&self.file("cpu.max"), &max)?;
        write(&self.file("pids.max"), &limits.pids_max.to_string())
    }

    fn freeze(&self) -> Result<()> {
        write(&self.file("cgroup.freeze"), "1")?;
        let events = self.file("cgroup.events");
        let start = Instant::now();
        while read_keyed(&events)?.get("frozen") != Some(&1) && start.elapsed() < FREEZE_TIMEOUT {
            std::thread::sleep(POLL);
        }
        Ok(())
    }
}

impl DynoCgroup for V2Dyno {
    fn procs_files(&self) -> Vec<PathBuf> {
        vec![self.file("cgroup.procs")]
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn path(&self) -> &Path {
        &self.dir
    }

    fn add_process(&self, pid: u32) -> Result<()> {
        write(&self.file("cgroup.procs"), &pid.to_string())
    }

    fn procs(&self) -> Result<Vec<u32>> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        read_pids(&self.file("cgroup.procs"))
    }

    fn stats(&self) -> Result<Stats> {
        let stat_file = self.file("memory.stat");
        let stat = read_keyed(&stat_file)?;
        let cpu_file = self.file("cpu.stat");
        let cpu = read_keyed(&cpu_file)?;
        let memory_peak = match read_u64(&self.file("memory.peak")) {
            Ok(peak) => Some(peak),
            Err(Error::Io { error, .. }) if error.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(Stats {
            memory_current: read_u64(&self.file("memory.current"))?,
            memory_rss: key(&stat, "anon", &stat_file)?,
            memory_cache: key(&stat, "file", &stat_file)?,
            memory_peak,
            cpu_usage_ns: key(&cpu, "usage_usec", &cpu_file)?.saturating_mul(1000),
            oom_kills: self.oom_kills()?,
        })
    }

    fn usage_probe(&self) -> Result<Box<dyn UsageProbe>> {
        Ok(Box::new(FileProbe::open(
            self.file("cpu.stat"),
            Some("usage_usec"),
            self.file("memory.peak"),
            b"reset\n",
        )?))
    }

    fn oom_kills(&self) -> Result<u64> {
        let path = self.file("memory.events");
        key(&read_keyed(&path)?, "oom_kill", &path)
    }

    fn kill_all(&self) -> Result<()> {
        if !self.dir.exists() {
            return Ok(());
        }
        let kill = self.file("cgroup.kill");
        let freezer = if kill.exists() {
            // Linux >= 5.14: the kernel kills every process, forks included.
            write(&kill, "1")?;
            None
        } else if self.file("cgroup.freeze").exists() {
            Some(Freezer {
                freeze: &|| self.freeze(),
                thaw: &|| write(&self.file("cgroup.freeze"), "0"),
            })
        } else {
            None
        };
        kill_until_empty(&self.dir, &|| self.procs(), freezer)
    }

    fn remove(&self) -> Result<()> {
        if !self.dir.exists() {
            return Ok(());
        }
        self.kill_all()?;
        // The kernel can still count the cgroup populated for a moment after
        // its last process died: EBUSY then, so retry with backoff like runc.
        let mut delay = POLL;
        loop {
            match (self.rmdir)(&self.dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && delay < Duration::from_secs(1) => {
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Err(error) => {
                    return Err(Error::Io {
                        op: "removing",
                        path: self.dir.clone(),
                        error,
                    });
                }
            }
        }
        tracing::debug!(cgroup = %self.name, "removed v2 cgroup");
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// shared

struct Freezer<'a> {
    freeze: &'a dyn Fn() -> Result<()>,
    thaw: &'a dyn Fn() -> Result<()>,
}

/// SIGKILLs the processes of the cgroup at `path` until it is empty, frozen
/// while the signals go out when there is a freezer (so nothing forks in
/// between, and no pid is reused while it is being signalled).
fn kill_until_empty(path: &Path, procs: &dyn Fn() -> Result<Vec<u32>>, freezer: Option<Freezer>) -> Result<()> {
    let start = Instant::now();
    loop {
        let pids = procs()?;
        if pids.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= KILL_TIMEOUT {
            return Err(Error::NotEmpty {
                path: path.to_path_buf(),
                pids,
                waited: start.elapsed(),
            });
        }
        if let Some(f) = &freezer {
            (f.freeze)()?;
        }
        let killed = procs().and_then(|pids| pids.into_iter().try_for_each(|pid| sigkill(pid, path)));
        // Thaw even if a kill failed: frozen processes die only once thawed.
        if let Some(f) = &freezer {
            (f.thaw)()?;
        }
        killed?;
        let round = Instant::now();
        while round.elapsed() < Duration::from_millis(200) {
            if procs()?.is_empty() {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
    }
}

fn sigkill(pid: u32, cgroup: &Path) -> Result<()> {
    match crate::os::kill_pid(pid, libc::SIGKILL) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        Err(error) => Err(Error::Kill {
            pid,
            path: cgroup.to_path_buf(),
            error,
        }),
        Ok(()) => Ok(()),
    }
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

/// The names of the subdirectories of `dir` (none if `dir` is missing).
fn subdirs(dir: &Path) -> Result<BTreeSet<String>> {
    let listing_failed = |error| Error::Io {
        op: "listing",
        path: dir.to_path_buf(),
        error,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(listing_failed(e)),
    };
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(listing_failed)?;
        if !entry.file_type().map_err(listing_failed)?.is_dir() {
            continue;
        }
        match entry.file_name().into_string() {
            Ok(name) if check_name(&name).is_ok() => {
                names.insert(name);
            }
            name => tracing::warn!(dir = %dir.display(), ?name, "ignoring a cgroup with an unexpected name"),
        }
    }
    Ok(names)
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|error| Error::Io {
        op: "reading",
        path: path.to_path_buf(),
        error,
    })
}

/// Writes `value` to an existing control file (never creates one).
fn write(path: &Path, value: &str) -> Result<()> {
    let failed = |error| Error::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        error,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(failed)?;
    file.write_all(value.as_bytes()).map_err(failed)
}

fn parse_u64(path: &Path, s: &str) -> Result<u64> {
    s.trim().parse().map_err(|_| Error::Parse {
        path: path.to_path_buf(),
        detail: format!("expected a number, got {:?}", s.trim()),
    })
}

fn read_u64(path: &Path) -> Result<u64> {
    parse_u64(path, &read(path)?)
}

fn read_pids(path: &Path) -> Result<Vec<u32>> {
    let text = read(path)?;
    let mut pids = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim().parse().map_err(|_| Error::Parse {
                path: path.to_path_buf(),
                detail: format!("expected a pid, got {l:?}"),
            })
        })
        .collect::<Result<Vec<u32>>>()?;
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// A flat keyed file (`key value` lines: `memory.stat`, `cpu.stat`,
/// `memory.events`, `memory.oom_control`).
fn read_keyed(path: &Path) -> Result<HashMap<String, u64>> {
    let text = read(path)?;
    let mut map = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (k, v) = line.split_once(' ').ok_or_else(|| Error::Parse {
            path: path.to_path_buf(),
            detail: format!("expected `key value`, got {line:?}"),
        })?;
        map.insert(k.to_string(), parse_u64(path, v)?);
    }
    Ok(map)
}

fn key(map: &HashMap<String, u64>, key: &str, path: &Path) -> Result<u64> {
    map.get(key).copied().ok_or_else(|| Error::Parse {
        path: path.to_path_buf(),
        detail: format!("no {key:?} line"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_sizes;

    fn size(name: &str) -> Limits {
        Limits::from(&default_sizes()[name])
    }

    fn contents(path: impl AsRef<Path>) -> String {
        let path = path.as_ref();
        fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
            .trim()
            .to_string()
    }

    #[test]
    fn shares_convert_to_weights_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2048), 79);
        assert_eq!(shares_to_weight(8192), 313);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(u64::MAX), 10_000);
    }

    #[test]
    fn quotas_are_microseconds_per_period() {
        assert_eq!(size("standard-1x").cpu_quota_us(), Some(100_000));
        assert_eq!(size("standard-2x").cpu_quota_us(), Some(200_000));
        assert_eq!(size("performance-m").cpu_quota_us(), None);
        let tiny = Limits {
            cpu_quota: Some(0.001),
            ..size("standard-1x")
        };
        assert_eq!(tiny.cpu_quota_us(), Some(1000));
    }

    #[test]
    fn bad_names_and_limits_are_refused() {
        for name in ["", ".", "..", ".x", "a/b", "a b", "x\0", "é", &"a".repeat(201)] {
            assert!(matches!(check_name(name), Err(Error::InvalidName(_))), "{name:?}");
        }
        for name in ["web.1", "run-7", "0b8e7f4c-1d2e-4f00-9a1b-1234567890ab", "a:b@c_d"] {
            check_name(name).unwrap();
        }
        assert_eq!(check_parent("/a/b/").unwrap(), PathBuf::from("a/b"));
        assert!(check_parent("a/../b").is_err());
        assert!(check_parent("").is_err());
        for bad in [
            Limits {
                cpu_quota: Some(0.0),
                ..size("standard-1x")
            },
            Limits {
                cpu_quota: Some(f64::NAN),
                ..size("standard-1x")
            },
            Limits {
                memory_bytes: 0,
                ..size("standard-1x")
            },
            Limits {
                pids_max: 0,
                ..size("standard-1x")
            },
        ] {
            assert!(matches!(bad.validate(), Err(Error::InvalidLimits(_))), "{bad:?}");
        }
    }

    // -- v2 against a fake cgroupfs ------------------------------------------

    /// `mkdir` in a cgroup2 fs: the kernel also creates the control files,
    /// those of a controller only if the parent enabled it for its children.
    fn fake_mkdir(dir: &Path) -> io::Result<()> {
        fs::create_dir(dir)?;
        let parent = dir.parent().expect("a cgroup has a parent");
        let enabled = fs::read_to_string(parent.join("cgroup.subtree_control"))?;
        let enabled: Vec<&str> = enabled.split_whitespace().map(|c| c.trim_start_matches('+')).collect();
        let on = |c: &str| enabled.contains(&c);
        let controllers = enabled.join(" ");
        let mut files = vec![
            ("cgroup.procs", ""),
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
    fn fake_rmdir(dir: &Path) -> io::Result<()> {
        let has_children = fs::read_dir(dir)?.any(|e| e.is_ok_and(|e| e.path().is_dir()));
        let populated = !fs::read_to_string(dir.join("cgroup.procs"))?.trim().is_empty();
        if has_children || populated {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        fs::remove_dir_all(dir)
    }

    /// A fake cgroup2 root like a systemd host's, with no controller enabled
    /// for its children yet.
    fn fake_v2() -> (tempfile::TempDir, V2Cgroups) {
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
        fs::write(dir.join("memory.stat"), "anon 600\nfile 300\nkernel 100\nshmem 0\n").unwrap();
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
    fn v2_usage_probe_reads_cpu_and_resets_the_peak_through_its_fd() {
        let (tmp, cgroups) = fake_v2();
        let cg = cgroups.create("web-1", &size("standard-1x")).unwrap();
        let dir = tmp.path().join("dynoagent/web-1");
        fs::write(
            dir.join("cpu.stat"),
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
        )
        .unwrap();
        fs::write(dir.join("memory.peak"), "4096\n").unwrap();
        let mut probe = cg.usage_probe().unwrap();
        assert_eq!(
            probe.read().unwrap(),
            Usage {
                cpu_ns: 2_500_000,
                mem_peak_bytes: 4096
            }
        );
        // The reset went to memory.peak (a fake file keeps what was written).
        assert!(
            fs::read_to_string(dir.join("memory.peak"))
                .unwrap()
                .starts_with("reset")
        );
        // The probe keeps its descriptors: the kernel rewrites the same files in place.
        fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cpu.stat"))
            .unwrap()
            .write_all(b"usage_usec 9000\nuser_usec 8000\nsystem_usec 1000\n")
            .unwrap();
        fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(dir.join("memory.peak"))
            .unwrap()
            .write_all(b"1024\n")
            .unwrap();
        assert_eq!(
            probe.read().unwrap(),
            Usage {
                cpu_ns: 9_000_000,
                mem_peak_bytes: 1024
            }
        );
        // A malformed file is an error naming it.
        fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(dir.join("cpu.stat"))
            .unwrap()
            .write_all(b"user_usec 1\n")
            .unwrap();
        let err = probe.read().unwrap_err().to_string();
        assert!(err.contains("cpu.stat") && err.contains("usage_usec"), "{err}");
        // Without memory.peak (before Linux 5.19) there is no probe, and the error says which file.
        fs::remove_file(dir.join("memory.peak")).unwrap();
        let err = cg.usage_probe().err().expect("no memory.peak").to_string();
        assert!(err.contains("memory.peak"), "{err}");
    }

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
            assert_eq!(status.signal(), Some(libc::SIGKILL));
        });
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
    fn detect_tells_v2_from_v1_from_nothing() {
        let (tmp, _) = fake_v2();
        assert_eq!(detect(tmp.path(), DEFAULT_PARENT).unwrap().version(), Version::V2);

        let v1 = tempfile::tempdir().unwrap();
        for c in ["memory", "cpu", "cpuacct", "pids", "freezer"] {
            fs::create_dir(v1.path().join(c)).unwrap();
            fs::write(v1.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        // A cgroup2 mount without the memory controller (this host's
        // /sys/fs/cgroup/unified) beside the v1 hierarchies.
        fs::write(v1.path().join("cgroup.controllers"), "hugetlb\n").unwrap();
        let found = detect(v1.path(), DEFAULT_PARENT).unwrap();
        assert_eq!(found.version(), Version::V1);
        assert!(found.list().unwrap().is_empty());

        fs::remove_dir_all(v1.path().join("pids")).unwrap();
        let err = detect(v1.path(), DEFAULT_PARENT).err().unwrap();
        assert!(
            matches!(err, Error::MissingController { controller: "pids", .. }),
            "{err}"
        );

        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            detect(empty.path(), DEFAULT_PARENT),
            Err(Error::NoHierarchy(_))
        ));
        assert_eq!(Version::V1.to_string(), "v1");
    }

    // -- v1 for real (root) ------------------------------------------------

    mod v1_real {
        use super::*;
        use std::os::unix::process::ExitStatusExt;
        use std::process::{Child, ChildStdin, Command, Stdio};
        use std::sync::atomic::{AtomicU32, Ordering};

        const ROOT: &str = "/sys/fs/cgroup";
        const ALL_HIERARCHIES: [&str; 9] = [
            "memory", "cpu", "cpuacct", "pids", "freezer", "blkio", "devices", "cpuset", "systemd",
        ];

        /// Whether this test can run: as root on a v1 host. A test that
        /// cannot run never passes silently in CI.
        fn can_run(test: &str) -> bool {
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
        struct Fixture {
            parent: String,
            cgroups: V1Cgroups,
        }

        impl Fixture {
            fn new() -> Fixture {
                static COUNTER: AtomicU32 = AtomicU32::new(0);
                let n = COUNTER.fetch_add(1, Ordering::Relaxed);
                let parent = format!("dynoagent-test-{}-{n}", std::process::id());
                let cgroups = V1Cgroups::new(ROOT, &parent).unwrap();
                Fixture { parent, cgroups }
            }

            fn dirs(&self, name: &str) -> Vec<PathBuf> {
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
        fn gated(script: &str) -> (Child, ChildStdin) {
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(format!("read go; {script}"))
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            let stdin = child.stdin.take().unwrap();
            (child, stdin)
        }

        fn go(stdin: &mut ChildStdin) {
            stdin.write_all(b"go\n").unwrap();
            stdin.flush().unwrap();
        }

        fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
            let start = Instant::now();
            while !done() {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "timed out waiting for {what}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }

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
            assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
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
            wait_for("the daemon and the main process", || cg.procs().unwrap().len() == 2);
            let daemon = *cg.procs().unwrap().iter().find(|&&p| p != child.id()).unwrap();
            let parent_of_daemon = contents(format!("/proc/{daemon}/stat"));
            assert!(
                !parent_of_daemon.contains(&format!(") S {} ", child.id())),
                "{parent_of_daemon}"
            );

            cg.kill_all().unwrap();
            assert_eq!(cg.procs().unwrap(), Vec::<u32>::new());
            assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
            // Gone, or a zombie until its new parent reaps it.
            wait_for("the daemon to die", || {
                fs::read_to_string(format!("/proc/{daemon}/stat")).map_or(true, |s| {
                    s.rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
                })
            });
        }

        #[test]
        fn v1_oom_kill_is_detected() {
            if !can_run("v1_oom_kill_is_detected") {
                return;
            }
            let fx = Fixture::new();
            let tiny = Limits {
                memory_bytes: 16 << 20,
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
            assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
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
            assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
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
            assert_eq!(in_dead.wait().unwrap().signal(), Some(libc::SIGKILL));
            assert_eq!(cgroups.list().unwrap(), ["run-live"]);
            for dir in fx.dirs("run-dead").into_iter().chain(fx.dirs("run-half")) {
                assert!(!dir.exists(), "{} left behind", dir.display());
            }
            live.remove().unwrap();
            assert_eq!(in_live.wait().unwrap().signal(), Some(libc::SIGKILL));
        }
    }
}
