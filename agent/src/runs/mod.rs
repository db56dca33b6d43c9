//! A run's state directory: the contract between the agent and the shim.
//!
//! `<state-dir>/runs/<run-id>/` holds
//! - `spec.json`  ([`RunSpec`], by the agent before the shim starts),
//! - `exec.json`  ([`ExecRecord`], by the shim once the command is exec'd),
//! - `exit.json`  ([`ExitRecord`], by the shim when the command has ended),
//! - `log`, `log.1` (the run's log, see [`crate::logs`]),
//! - `shim.log`   (the shim's own diagnostics),
//! - `attach.sock` (an attached run's caller connects here, see [`AttachSpec`]).
//!
//! Records are written atomically (temp file, fsync, rename, fsync of the
//! directory), so a reader sees a whole record or none, even after a crash.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::time::Time;

/// What the shim runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub run_id: String,
    pub app: String,
    /// `web.1`
    pub dyno: String,
    /// Shell command line, run as `/bin/sh -c`.
    pub command: String,
    /// The complete environment of the command.
    pub env: Vec<(String, String)>,
    /// Working directory: the slug's `app/`.
    pub workdir: PathBuf,
    /// The run's log is rotated before it would pass this size.
    pub log_max_bytes: u64,
    /// The app's lines a second, after a burst, beyond which they are
    /// dropped and counted (Heroku's L10).
    #[serde(default = "default_log_rate_lines")]
    pub log_rate_lines: u32,
    #[serde(default = "default_log_rate_burst")]
    pub log_rate_burst: u32,
    /// How to jail the run; `None` runs it on the host (development mode).
    pub jail: Option<JailSpec>,
    /// An attached one-off: its caller reaches the command through
    /// `attach.sock` (see [`AttachSpec`]); its output is not logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<AttachSpec>,
    /// Whose run this is, in the engine's words (opaque here): what
    /// rebuilds the dyno when its record cannot be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<serde_json::Value>,
}

fn default_log_rate_lines() -> u32 {
    crate::logs::Bounds::default().rate_lines
}

fn default_log_rate_burst() -> u32 {
    crate::logs::Bounds::default().burst
}

impl RunSpec {
    /// What bounds the run's log.
    pub fn log_bounds(&self) -> crate::logs::Bounds {
        crate::logs::Bounds {
            max_bytes: self.log_max_bytes,
            rate_lines: self.log_rate_lines,
            burst: self.log_rate_burst,
        }
    }
}

/// The jail of a run (see [`crate::os::JailPlan`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JailSpec {
    /// The stack image directory.
    pub stack: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    /// Bytes the dyno may write to `/app`, `/tmp` and `/dev/shm` together.
    pub disk_bytes: u64,
    pub nofile: u64,
    /// `cgroup.procs` files the dyno's init joins before it starts anything.
    pub cgroup_procs: Vec<PathBuf>,
    pub oom_score_adj: i32,
    /// The file keeping the run's network namespace (`None`: the host's).
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// The dyno's `/etc/resolv.conf` (with `netns`).
    #[serde(default)]
    pub resolv_conf: Option<PathBuf>,
}

/// How an attached run meets its caller. The shim serves `attach.sock` in
/// the run's directory: the first connection gets the command's pty master
/// (tag `t`) or its stdin, stdout and stderr pipes (tag `p`) by
/// `SCM_RIGHTS`, and, when the command has ended, its exit status (an init
/// report frame). When that connection closes first (the caller or the
/// agent is gone), or nobody connects within a minute, the shim hangs the
/// command up: SIGHUP, then SIGTERM to every process of the dyno, then
/// after `grace_secs` SIGKILL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachSpec {
    pub tty: bool,
    pub rows: u16,
    pub cols: u16,
    pub grace_secs: u64,
}

/// Written by the shim once the command is exec'd.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRecord {
    /// Host pid of the command.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_ticks: u64,
    pub started_at: Time,
    /// The shim's own pid.
    pub shim_pid: u32,
    /// Host pid of the dyno's init (PID 1 of its pid namespace), when jailed.
    #[serde(default)]
    pub init_pid: Option<u32>,
}

/// Written by the shim when the command has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub exited_at: Time,
}

/// Paths of one run's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn new(runs_root: &Path, run_id: &str) -> RunDir {
        RunDir {
            path: runs_root.join(run_id),
        }
    }
    pub fn spec(&self) -> PathBuf {
        self.path.join("spec.json")
    }
    pub fn exec(&self) -> PathBuf {
        self.path.join("exec.json")
    }
    pub fn exit(&self) -> PathBuf {
        self.path.join("exit.json")
    }
    pub fn log(&self) -> PathBuf {
        self.path.join("log")
    }
    /// The socket an attached run's caller connects to (see [`AttachSpec`]).
    pub fn attach_sock(&self) -> PathBuf {
        self.path.join("attach.sock")
    }
    pub fn shim_log(&self) -> PathBuf {
        self.path.join("shim.log")
    }
    /// Mountpoint of the jail's root (inside the run's mount namespace only).
    pub fn root(&self) -> PathBuf {
        self.path.join("root")
    }
    /// Mountpoint of the run's writable tmpfs (inside its mount namespace only).
    pub fn rw(&self) -> PathBuf {
        self.path.join("rw")
    }
    pub fn read_spec(&self) -> io::Result<Option<RunSpec>> {
        read_json(&self.spec())
    }

    pub fn read_exec(&self) -> io::Result<Option<ExecRecord>> {
        read_json(&self.exec())
    }
    pub fn read_exit(&self) -> io::Result<Option<ExitRecord>> {
        read_json(&self.exit())
    }
}

/// Writes `value` as JSON to `path` atomically and durably.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` atomically and durably: temp file, fsync, rename,
/// fsync of the directory. The file is created 0600 (see [`crate::private`]):
/// a temp file a crash left behind is replaced, never reused with its mode.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = crate::private::create_new(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

/// Reads a JSON record; `Ok(None)` when the file does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))),
    }
}

/// Live shims whose run directory lies under `runs_root`, by run id, found by
/// their command line (`… shim <run-id> <run-dir>`).
pub fn live_shims(runs_root: &Path) -> Vec<(String, u32)> {
    let mut found = Vec::new();
    for pid in crate::os::all_pids() {
        let Some(args) = crate::os::cmdline(pid) else {
            continue;
        };
        if args.len() != 4 || !crate::os::arg_is(&args[1], "shim") {
            continue;
        }
        let (Ok(run_id), Ok(dir)) = (std::str::from_utf8(&args[2]), std::str::from_utf8(&args[3])) else {
            continue;
        };
        if Path::new(dir) == runs_root.join(run_id) && crate::os::in_my_pid_namespace(pid) {
            found.push((run_id.to_string(), pid));
        }
    }
    found
}

#[cfg(test)]
mod tests;
