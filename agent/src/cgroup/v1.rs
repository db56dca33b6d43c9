//! The cgroup v1 backend: one hierarchy per controller, mounted at
//! `<root>/<controller>`. A dyno's cgroup lives in exactly the `memory`,
//! `cpu`, `cpuacct`, `pids` and (when mounted) `freezer` hierarchies.
//! Creation, limits, adding a process, freezing and removal go through
//! `cgroups-rs`, over a [`Hierarchy`] of our own; everything that is read
//! goes through [`super::files`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cgroups_rs::CgroupPid;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Cgroup, ControllIdentifier, Controller, Hierarchy, MaxValue, Subsystem};

use super::files::{key, read, read_keyed, read_pids, read_u64, subdirs};
use super::kill::{self, Freezer};
use super::probe::{CpuCounter, FileProbe};
use super::{
    CFS_PERIOD_US, Cgroups, DynoCgroup, Error, Limits, Result, Stats, UsageProbe, Version, check_name, check_parent,
    undo_if_failed,
};

/// The v1 hierarchies a dyno's cgroup is created in (freezer when mounted).
const V1_CONTROLLERS: [&str; 4] = ["memory", "cpu", "cpuacct", "pids"];

/// `map_err` for a failed `cgroups-rs` call: `op` on the cgroup at `path`.
fn cgroups_failed(op: &'static str, path: &Path) -> impl FnOnce(cgroups_rs::fs::error::Error) -> Error {
    let path = path.to_path_buf();
    move |error| Error::Cgroups { op, path, error }
}

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
            .map_err(cgroups_failed("creating", &dyno.memory))
            .and_then(|()| dyno.apply(limits));
        undo_if_failed(created, &dyno.memory, || dyno.rmdirs())?;
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
/// controllers a dyno needs, under the injected root. (The crate's own `V1`
/// would read `/proc/self/mountinfo` and create the cgroup in every
/// hierarchy.)
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

    /// `cpuacct.usage`: the CPU time used, in nanoseconds.
    fn cpuacct_usage(&self) -> Result<PathBuf> {
        Ok(self.controller::<CpuAcctController>("cpuacct")?.1.join("cpuacct.usage"))
    }

    fn apply(&self, limits: &Limits) -> Result<()> {
        let (memory, memory_dir) = self.controller::<MemController>("memory")?;
        let bytes = limits.memory_bytes as i64;
        // RAM, then RAM + swap (memsw may never be below the RAM limit).
        // Without swap accounting swap cannot be capped: no swap then, and
        // RAM up to the kill limit.
        let memsw = memory_dir.join("memory.memsw.limit_in_bytes").exists();
        let ram = if memsw {
            limits.ram_bytes()
        } else {
            limits.memory_kill_bytes
        };
        memory
            .set_limit(ram as i64)
            .map_err(cgroups_failed("setting memory.limit_in_bytes of", memory_dir))?;
        memory
            .set_soft_limit(bytes)
            .map_err(cgroups_failed("setting memory.soft_limit_in_bytes of", memory_dir))?;
        if memsw {
            memory
                .set_memswap_limit(limits.memory_kill_bytes as i64)
                .map_err(cgroups_failed("setting memory.memsw.limit_in_bytes of", memory_dir))?;
        } else {
            tracing::warn!(cgroup = %memory_dir.display(), "no swap accounting: setting memory.swappiness 0 instead of a memory+swap limit");
            memory
                .set_swappiness(0)
                .map_err(cgroups_failed("setting memory.swappiness of", memory_dir))?;
        }
        // v1 does not charge socket buffers to the memory limit (v2 does):
        // without a limit of their own, a dyno pins host kernel memory in TCP
        // buffers (the host-wide tcp_mem pool) far past its limit. This one
        // is the kernel's soft bound (measured: about 2x with 900 sockets).
        let tcp = memory_dir.join("memory.kmem.tcp.limit_in_bytes");
        if tcp.exists() {
            std::fs::write(&tcp, bytes.to_string()).map_err(|error| Error::Write {
                path: tcp.clone(),
                value: bytes.to_string(),
                error,
            })?;
        }

        let (cpu, cpu_dir) = self.controller::<CpuController>("cpu")?;
        cpu.set_shares(limits.cpu_shares)
            .map_err(cgroups_failed("setting cpu.shares of", cpu_dir))?;
        cpu.set_cfs_period(CFS_PERIOD_US)
            .map_err(cgroups_failed("setting cpu.cfs_period_us of", cpu_dir))?;
        let quota = limits.cpu_quota_us().map_or(-1, |q| q as i64);
        cpu.set_cfs_quota(quota)
            .map_err(cgroups_failed("setting cpu.cfs_quota_us of", cpu_dir))?;

        let (pids, pids_dir) = self.controller::<PidController>("pids")?;
        pids.set_pid_max(MaxValue::Value(limits.pids_max as i64))
            .map_err(cgroups_failed("setting pids.max of", pids_dir))
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
                first_error.get_or_insert(cgroups_failed("removing", controller.path())(error));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The cgroup's directory in the freezer hierarchy.
struct V1Freezer<'a> {
    controller: &'a FreezerController,
    dir: &'a Path,
}

impl Freezer for V1Freezer<'_> {
    fn freeze(&self) -> Result<()> {
        self.controller.freeze().map_err(cgroups_failed("freezing", self.dir))?;
        let state = self.dir.join("freezer.state");
        if !kill::wait_frozen(|| Ok(read(&state)?.trim() == "FROZEN"))? {
            tracing::debug!(cgroup = %self.dir.display(), "still freezing; killing anyway");
        }
        Ok(())
    }

    fn thaw(&self) -> Result<()> {
        self.controller.thaw().map_err(cgroups_failed("thawing", self.dir))
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
            .map_err(cgroups_failed("adding a process to", &self.memory))
    }

    fn procs(&self) -> Result<Vec<u32>> {
        let mut pids = BTreeSet::new();
        for dir in self.dirs().filter(|d| d.exists()) {
            pids.extend(read_pids(&dir.join("cgroup.procs"))?);
        }
        Ok(pids.into_iter().collect())
    }

    fn threads(&self) -> Result<Vec<u32>> {
        read_pids(&self.memory.join("tasks"))
    }

    fn stats(&self) -> Result<Stats> {
        let stat_file = self.memory.join("memory.stat");
        let stat = read_keyed(&stat_file)?;
        Ok(Stats {
            memory_current: read_u64(&self.memory.join("memory.usage_in_bytes"))?,
            memory_rss: key(&stat, "total_rss", &stat_file)?,
            memory_cache: key(&stat, "total_cache", &stat_file)?,
            // Present with swap accounting only.
            memory_swap: stat.get("total_swap").copied().unwrap_or(0),
            pgpgin: key(&stat, "total_pgpgin", &stat_file)?,
            pgpgout: key(&stat, "total_pgpgout", &stat_file)?,
            memory_peak: Some(read_u64(&self.memory.join("memory.max_usage_in_bytes"))?),
            cpu_usage_ns: read_u64(&self.cpuacct_usage()?)?,
            oom_kills: self.oom_kills()?,
        })
    }

    fn usage_probe(&self) -> Result<Box<dyn UsageProbe>> {
        Ok(Box::new(FileProbe::open(
            self.cpuacct_usage()?,
            CpuCounter::Nanoseconds,
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
            .filter(|(_, dir)| dir.exists())
            .map(|(controller, dir)| V1Freezer { controller, dir });
        kill::kill_until_empty(self, freezer.as_ref().map(|f| f as &dyn Freezer))
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

#[cfg(test)]
#[path = "v1_tests.rs"]
mod tests;
