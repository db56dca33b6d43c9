//! The cgroup v2 backend: one unified hierarchy, driven entirely by reading
//! and writing its control files with `std::fs`. (`cgroups-rs` hard-codes
//! `/sys/fs/cgroup` for the v2 controller list and creates files it opens
//! for writing, which would make a fake tree accept writes to files the
//! kernel does not have.)

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;

use crate::time;

use super::files::{key, read, read_keyed, read_pids, read_u64, subdirs, write};
use super::kill::{self, Freezer};
use super::probe::{CpuCounter, FileProbe};
use super::{
    CFS_PERIOD_US, Cgroups, DynoCgroup, Error, Limits, POLL, Result, Stats, UsageProbe, Version, check_name,
    check_parent, shares_to_weight, undo_if_failed,
};

/// The v2 controllers enabled for the dynos.
const V2_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// How often `remove` retries an `rmdir` refused with EBUSY.
const RMDIR_RETRIES: u32 = 7;

/// `mkdir` or `rmdir` of a cgroup directory.
type DirOp = fn(&Path) -> io::Result<()>;

/// A write of a value to an existing control file.
type WriteOp = fn(&Path, &str) -> io::Result<()>;

/// The leaf of the agent's own cgroup that the agent (and the shims it
/// starts) moves into on a delegated subtree, beside the dynos' parent.
pub const AGENT_LEAF: &str = "agent";

/// cgroup v2: one unified hierarchy at `root`; the dynos' parent is under
/// `base`, the agent's own cgroup (the root when the agent runs there).
#[derive(Debug)]
pub struct V2Cgroups {
    root: PathBuf,
    /// The cgroup delegated to the agent: `root` joined with the agent's own
    /// cgroup (without [`AGENT_LEAF`]).
    base: PathBuf,
    parent: PathBuf,
    /// `mkdir` and `rmdir` of a cgroup: the plain calls on cgroupfs; tests
    /// swap in versions that also do what the kernel would (create the
    /// control files, refuse to remove a populated cgroup).
    mkdir: DirOp,
    rmdir: DirOp,
    /// Writes of the setup (`cgroup.subtree_control`, `cgroup.procs`): the
    /// plain write; tests swap in one that refuses controllers for a cgroup
    /// with processes and moves a pid out of its old cgroup.
    write: WriteOp,
}

fn plain_write(path: &Path, value: &str) -> io::Result<()> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?
        .write_all(value.as_bytes())
}

impl V2Cgroups {
    /// The dynos' parent at `<root>/<parent>`. Needs the memory, cpu and
    /// pids controllers in `<root>/cgroup.controllers`.
    pub fn new(root: impl Into<PathBuf>, parent: &str) -> Result<V2Cgroups> {
        let root = root.into();
        V2Cgroups::delegated(root.clone(), root, parent)
    }

    /// The dynos' parent at `<base>/<parent>`, `base` being the cgroup
    /// delegated to the agent under `root` (its own cgroup). Needs the
    /// memory, cpu and pids controllers in `<base>/cgroup.controllers`.
    pub fn delegated(root: PathBuf, base: PathBuf, parent: &str) -> Result<V2Cgroups> {
        let parent = check_parent(parent)?;
        if base != root && parent.components().next().is_some_and(|c| c.as_os_str() == AGENT_LEAF) {
            return Err(Error::InvalidName(format!(
                "{} (on a delegated cgroup, {AGENT_LEAF:?} is the agent's own leaf)",
                parent.display()
            )));
        }
        let path = base.join("cgroup.controllers");
        let available = read(&path)?;
        for controller in V2_CONTROLLERS {
            if !available.split_whitespace().any(|c| c == controller) {
                return Err(Error::MissingController { controller, path });
            }
        }
        Ok(V2Cgroups {
            root,
            base,
            parent,
            mkdir: |dir| std::fs::create_dir(dir),
            rmdir: |dir| std::fs::remove_dir(dir),
            write: plain_write,
        })
    }

    /// For the agent in the cgroup `own` (its line `0::<own>` of
    /// `/proc/self/cgroup`) of the cgroup2 fs at `root`: the base is `own`,
    /// or its parent when `own` is already the agent's leaf (an agent
    /// started from inside it).
    pub fn for_own_cgroup(root: PathBuf, own: &str, parent: &str) -> Result<V2Cgroups> {
        let own = own.trim().trim_start_matches('/');
        let mut base = root.clone();
        if !own.is_empty() {
            for component in own.split('/') {
                if component.is_empty() || component == "." || component == ".." {
                    return Err(Error::InvalidName(format!("own cgroup /{own}")));
                }
                base.push(component);
            }
        }
        if base != root && base.file_name().is_some_and(|n| n == AGENT_LEAF) {
            base.pop();
        }
        V2Cgroups::delegated(root, base, parent)
    }

    #[cfg(test)]
    pub(super) fn with_fs_ops(self, mkdir: DirOp, rmdir: DirOp) -> V2Cgroups {
        V2Cgroups { mkdir, rmdir, ..self }
    }

    #[cfg(test)]
    pub(super) fn with_write_op(self, write: WriteOp) -> V2Cgroups {
        V2Cgroups { write, ..self }
    }

    /// The cgroup delegated to the agent (the root when it runs there).
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The dynos' parent cgroup directory.
    pub fn parent_dir(&self) -> PathBuf {
        self.base.join(&self.parent)
    }

    fn write_setup(&self, path: &Path, value: &str) -> Result<()> {
        (self.write)(path, value).map_err(|error| Error::Write {
            path: path.to_path_buf(),
            value: value.to_string(),
            error,
        })
    }

    /// Prepares the agent's subtree at start, so that a setup that cannot
    /// work stops the agent rather than every start: on a delegated cgroup
    /// (not the root), every process in it (the agent, and shims an earlier
    /// agent left there) moves into its leaf [`AGENT_LEAF`], since
    /// controllers can only be enabled for the children of a cgroup without
    /// processes of its own; then the parent is created and its controllers
    /// enabled.
    pub fn setup(&self) -> Result<()> {
        if self.base != self.root {
            let leaf = self.base.join(AGENT_LEAF);
            match (self.mkdir)(&leaf) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(Error::io("creating", &leaf, error)),
            }
            let procs = leaf.join("cgroup.procs");
            // A process that forks meanwhile leaves a child behind: look again.
            for _ in 0..100 {
                let pids = read_pids(&self.base.join("cgroup.procs"))?;
                if pids.is_empty() {
                    break;
                }
                for pid in pids {
                    match self.write_setup(&procs, &pid.to_string()) {
                        Ok(()) => tracing::info!(pid, leaf = %leaf.display(), "moved into the agent's leaf cgroup"),
                        // Gone meanwhile.
                        Err(Error::Write { error, .. }) if error.raw_os_error() == Some(Errno::ESRCH as i32) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        self.ensure_parent()
    }

    /// Creates the parent where missing and enables the controllers for the
    /// children of the base, of every cgroup down to the parent, and of the
    /// parent itself.
    fn ensure_parent(&self) -> Result<()> {
        let mut dir = self.base.clone();
        self.enable_controllers(&dir)?;
        for component in self.parent.components() {
            dir.push(component);
            match (self.mkdir)(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(Error::io("creating", &dir, error)),
            }
            self.enable_controllers(&dir)?;
        }
        Ok(())
    }

    /// Writes the missing ones of [`V2_CONTROLLERS`] to `dir/cgroup.subtree_control`.
    fn enable_controllers(&self, dir: &Path) -> Result<()> {
        let path = dir.join("cgroup.subtree_control");
        let enabled = read(&path)?;
        let enabled: Vec<&str> = enabled.split_whitespace().map(|c| c.trim_start_matches('+')).collect();
        if V2_CONTROLLERS.iter().all(|c| enabled.contains(c)) {
            return Ok(());
        }
        // One write for all three: the kernel applies each token of it.
        let value: Vec<String> = V2_CONTROLLERS.iter().map(|c| format!("+{c}")).collect();
        self.write_setup(&path, &value.join(" "))
    }

    fn dyno(&self, name: &str) -> V2Dyno {
        V2Dyno {
            name: name.to_string(),
            dir: self.parent_dir().join(name),
            rmdir: self.rmdir,
        }
    }
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
            Err(error) => return Err(Error::io("creating", &dyno.dir, error)),
        }
        undo_if_failed(dyno.apply(limits), &dyno.dir, || {
            (self.rmdir)(&dyno.dir).map_err(|error| Error::io("removing", &dyno.dir, error))
        })?;
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
    rmdir: DirOp,
}

impl V2Dyno {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn apply(&self, limits: &Limits) -> Result<()> {
        write(&self.file("memory.max"), &limits.ram_bytes().to_string())?;
        let swap = self.file("memory.swap.max");
        if swap.exists() {
            let swap_max = limits.memory_kill_bytes - limits.ram_bytes();
            write(&swap, &swap_max.to_string())?;
        } else {
            tracing::warn!(cgroup = %self.dir.display(), "no memory.swap.max (no swap accounting): swap is not limited");
        }
        // Linux >= 4.19: an OOM kill takes every process of the dyno.
        let group = self.file("memory.oom.group");
        if group.exists() {
            write(&group, "1")?;
        } else {
            tracing::warn!(cgroup = %self.dir.display(), "no memory.oom.group: the agent ends the dyno after an OOM kill");
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
}

/// `cgroup.freeze`, and `frozen` of `cgroup.events` to see it done.
impl Freezer for V2Dyno {
    fn freeze(&self) -> Result<()> {
        write(&self.file("cgroup.freeze"), "1")?;
        let events = self.file("cgroup.events");
        kill::wait_frozen(|| Ok(read_keyed(&events)?.get("frozen") == Some(&1)))?;
        Ok(())
    }

    fn thaw(&self) -> Result<()> {
        write(&self.file("cgroup.freeze"), "0")
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

    fn threads(&self) -> Result<Vec<u32>> {
        read_pids(&self.file("cgroup.threads"))
    }

    fn stats(&self) -> Result<Stats> {
        let stat_file = self.file("memory.stat");
        let stat = read_keyed(&stat_file)?;
        let cpu_file = self.file("cpu.stat");
        let cpu = read_keyed(&cpu_file)?;
        let optional = |name: &str| match read_u64(&self.file(name)) {
            Ok(v) => Ok(Some(v)),
            Err(Error::Io { error, .. }) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
        let memory_peak = optional("memory.peak")?;
        let memory_swap = optional("memory.swap.current")?.unwrap_or(0);
        Ok(Stats {
            memory_current: read_u64(&self.file("memory.current"))?,
            memory_rss: key(&stat, "anon", &stat_file)?,
            memory_cache: key(&stat, "file", &stat_file)?,
            memory_swap,
            pgpgin: stat.get("pgfault").copied().unwrap_or(0),
            pgpgout: stat.get("pgsteal").copied().unwrap_or(0),
            memory_peak,
            cpu_usage_ns: key(&cpu, "usage_usec", &cpu_file)?.saturating_mul(1000),
            oom_kills: self.oom_kills()?,
        })
    }

    fn usage_probe(&self) -> Result<Box<dyn UsageProbe>> {
        Ok(Box::new(FileProbe::open(
            self.file("cpu.stat"),
            CpuCounter::KeyedMicroseconds("usage_usec"),
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
        let freezer: Option<&dyn Freezer> = if kill.exists() {
            // Linux >= 5.14: the kernel kills every process, forks included.
            write(&kill, "1")?;
            None
        } else if self.file("cgroup.freeze").exists() {
            Some(self)
        } else {
            None
        };
        kill::kill_until_empty(self, freezer)
    }

    fn remove(&self) -> Result<()> {
        if !self.dir.exists() {
            return Ok(());
        }
        self.kill_all()?;
        // The kernel can still count the cgroup populated for a moment after
        // its last process died: EBUSY then, so retry with backoff like runc
        // (no jitter: 10 ms doubling to 640 ms, 1.27 s in all).
        let mut attempt = 0;
        loop {
            match (self.rmdir)(&self.dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(Errno::EBUSY as i32) && attempt < RMDIR_RETRIES => {
                    std::thread::sleep(time::backoff(POLL, attempt, Duration::from_secs(1), 1.0));
                    attempt += 1;
                }
                Err(error) => return Err(Error::io("removing", &self.dir, error)),
            }
        }
        tracing::debug!(cgroup = %self.name, "removed v2 cgroup");
        Ok(())
    }
}

#[cfg(test)]
#[path = "v2_tests.rs"]
mod tests;
