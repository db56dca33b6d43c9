//! The dyno model: what a dyno runs ([`DynoSpec`]), how it is stored
//! ([`DynoRecord`]), how the API shows it ([`DynoView`], [`Summary`]), and the
//! requests and selectors the engine is asked with.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::supervisor::{LastExit, Profile, State, Supervision};
use crate::time::Time;

/// Earlier request ids remembered per dyno.
pub(super) const REQUEST_IDS_KEPT: usize = 32;

/// What a dyno runs; fixed until a new StartDyno replaces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynoSpec {
    pub app: String,
    pub name: String,
    #[serde(rename = "type")]
    pub ptype: String,
    pub command: String,
    pub size: String,
    pub release: String,
    pub env: BTreeMap<String, String>,
    /// The slug as given.
    pub slug: String,
    pub slug_sha256: Option<String>,
    /// The unpacked `app/` directory.
    pub app_dir: PathBuf,
    pub stack: String,
    pub one_off: bool,
    pub time_to_live_secs: u64,
    pub port: Option<u16>,
    /// The memory quota of `size` when the dyno was given this spec (0 in
    /// records written before it was kept: filled in from the size table).
    #[serde(default)]
    pub memory_quota_bytes: u64,
    /// The scheduler's labels: not part of the run (new labels restart
    /// nothing).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// An attached one-off (`Attach`): its caller holds its terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<Attach>,
}

/// How an attached one-off meets its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attach {
    /// The command gets a pty (inside the dyno) of this size.
    pub tty: bool,
    pub rows: u16,
    pub cols: u16,
}

impl DynoSpec {
    /// Same dyno, same everything that matters to the run.
    pub(super) fn same_run(&self, other: &DynoSpec) -> bool {
        self.run_key() == other.run_key()
    }

    /// What the runs are made of: equal keys, nothing to restart for.
    fn run_key(&self) -> (&str, &str, &str, &BTreeMap<String, String>, String, &str) {
        (
            &self.command,
            &self.size,
            &self.release,
            &self.env,
            self.slug_sha256
                .clone()
                .unwrap_or_else(|| self.app_dir.display().to_string()),
            &self.stack,
        )
    }

    /// sha256 (hex) of [`run_key`](Self::run_key), each part length-prefixed
    /// so that no two keys hash alike.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let (command, size, release, env, slug, stack) = self.run_key();
        let mut h = Sha256::new();
        let mut part = |b: &[u8]| {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        };
        for p in [command, size, release] {
            part(p.as_bytes());
        }
        part(&(env.len() as u64).to_le_bytes());
        for (k, v) in env {
            part(k.as_bytes());
            part(v.as_bytes());
        }
        part(slug.as_bytes());
        part(stack.as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(super) fn profile(&self) -> Profile {
        Profile {
            web: self.ptype == "web",
            one_off: self.one_off,
            time_to_live: Duration::from_secs(self.time_to_live_secs),
            command: self.command.clone(),
        }
    }

    /// The complete environment of a run whose `app/` is at `root`.
    /// With Heroku's dyno metadata (DESIGN §10a): `HEROKU_APP_NAME`,
    /// `HEROKU_DYNO_ID` (the run's id: new for every run) and
    /// `HEROKU_RELEASE_VERSION`, which win over config vars of those names.
    pub(super) fn run_env(&self, root: &str, run_id: &str) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.extend(dyno_metadata(&self.app, run_id, &self.release));
        run_env(&env, &self.name, root, self.port)
    }
}

/// Heroku's runtime dyno metadata variables of a run.
pub fn dyno_metadata(app: &str, run_id: &str, release: &str) -> [(String, String); 3] {
    [
        ("HEROKU_APP_NAME".into(), app.into()),
        ("HEROKU_DYNO_ID".into(), run_id.into()),
        ("HEROKU_RELEASE_VERSION".into(), release.into()),
    ]
}

/// The complete environment of a run of dyno `name` with config vars `env`,
/// whose `app/` is at `root`: the config vars and the runtime's own `DYNO`,
/// `HOME`, `PATH` and (for a dyno with a port) `PORT`, which win.
pub fn run_env(env: &BTreeMap<String, String>, name: &str, root: &str, port: Option<u16>) -> Vec<(String, String)> {
    let mut env = env.clone();
    env.insert("DYNO".into(), name.to_string());
    env.insert("HOME".into(), root.to_string());
    env.insert("PATH".into(), format!("{root}/bin:/usr/local/bin:/usr/bin:/bin"));
    if let Some(port) = port {
        env.insert("PORT".into(), port.to_string());
    }
    env.into_iter().collect()
}

/// What a run's directory keeps of its dyno (in its `spec.json`), so that
/// a live run whose dyno record cannot be read is kept, not killed: the dyno
/// is rebuilt from it (with the supervision's history lost).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    pub id: String,
    pub uid: u32,
    pub created_at: Time,
    pub spec: DynoSpec,
}

impl Owner {
    pub(super) fn of(rec: &DynoRecord) -> Owner {
        Owner {
            id: rec.id.clone(),
            uid: rec.uid,
            created_at: rec.created_at,
            spec: rec.spec.clone(),
        }
    }
}

/// A dyno as stored on disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DynoRecord {
    pub id: String,
    pub spec: DynoSpec,
    pub sup: Supervision,
    pub created_at: Time,
    /// The request id of the StartDyno that gave the dyno its spec.
    pub request_id: Option<String>,
    /// Request ids of earlier StartDynos of this dyno, newest last (at most
    /// [`REQUEST_IDS_KEPT`]): a late retry of one of them changes nothing.
    #[serde(default)]
    pub past_request_ids: VecDeque<String>,
    /// The dyno's own unprivileged uid (and gid), from `uid_range`.
    #[serde(default)]
    pub uid: u32,
    /// The address of its current run's network namespace
    /// (`network = "isolated"`), once set up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<std::net::Ipv4Addr>,
    /// The last run that could not be started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_spawn_error: Option<SpawnError>,
}

/// A run that could not be started: when, which, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnError {
    pub at: Time,
    pub run_id: String,
    pub message: String,
}

/// A dyno as the API and `dynoctl` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DynoView {
    pub id: String,
    pub app: String,
    pub name: String,
    #[serde(rename = "type")]
    pub ptype: String,
    pub state: State,
    pub size: String,
    pub command: String,
    pub release: String,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub started_at: Option<Time>,
    pub updated_at: Time,
    pub restarts: u32,
    pub last_exit: Option<LastExit>,
    pub next_restart_at: Option<Time>,
    pub one_off: bool,
    pub stack: String,
    pub slug_sha256: Option<String>,
    pub run_id: Option<String>,
    /// The dyno's own address (its network namespace's), when isolated.
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub created_at: Option<Time>,
    #[serde(default)]
    pub memory_quota_bytes: u64,
    #[serde(default)]
    pub spec_hash: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_spawn_error: Option<SpawnError>,
}

impl DynoRecord {
    /// Down with nothing running or stopping: the dyno holds no uid and no
    /// port (it takes fresh ones when it starts again).
    pub(super) fn idle(&self) -> bool {
        self.sup.state == crate::supervisor::State::Down && !self.sup.running() && self.sup.stopping.is_none()
    }

    pub fn view(&self) -> DynoView {
        let s = &self.spec;
        let run = self.sup.log_run();
        DynoView {
            id: self.id.clone(),
            app: s.app.clone(),
            name: s.name.clone(),
            ptype: s.ptype.clone(),
            state: self.sup.state,
            size: s.size.clone(),
            command: s.command.clone(),
            release: s.release.clone(),
            pid: self.sup.run.as_ref().and_then(|r| r.pid),
            port: s.port.filter(|_| !self.idle()),
            started_at: run.map(|r| r.exec_at.unwrap_or(r.spawned_at)),
            updated_at: self.sup.updated_at,
            restarts: self.sup.restarts,
            last_exit: self.sup.last_exit.clone(),
            next_restart_at: self.sup.next_restart_at,
            one_off: s.one_off,
            stack: s.stack.clone(),
            slug_sha256: s.slug_sha256.clone(),
            run_id: run.map(|r| r.id.clone()),
            address: self.address.filter(|_| self.sup.running()).map(|a| a.to_string()),
            created_at: Some(self.created_at),
            memory_quota_bytes: s.memory_quota_bytes,
            spec_hash: s.hash(),
            labels: s.labels.clone(),
            last_spawn_error: self.last_spawn_error.clone(),
        }
    }
}

/// A validated start request.
#[derive(Clone, Debug)]
pub struct StartRequest {
    pub spec: DynoSpec,
    pub request_id: Option<String>,
    /// The agent picked the one-off's name (the request named none): a retry
    /// with the same request id is for the one-off the id holds.
    pub picked_name: bool,
    /// The start in flight this is (see [`Engine::pending`](super::Engine::pending)).
    pub pending: Option<u64>,
}

/// Which dynos a stop or restart applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    All,
    App(String),
    Type(String, String),
    Dyno(String, String),
}

impl Selector {
    pub(super) fn matches(&self, s: &DynoSpec) -> bool {
        match self {
            Selector::All => true,
            Selector::App(a) => s.app == *a,
            Selector::Type(a, t) => s.app == *a && s.ptype == *t,
            Selector::Dyno(a, n) => s.app == *a && s.name == *n,
        }
    }

    /// Whether dyno `key` (app, name) is selected.
    pub(super) fn matches_key(&self, key: &(String, String)) -> bool {
        let ptype = key.1.rsplit_once('.').map_or(key.1.as_str(), |(t, _)| t);
        match self {
            Selector::All => true,
            Selector::App(a) => key.0 == *a,
            Selector::Type(a, t) => key.0 == *a && ptype == t,
            Selector::Dyno(a, n) => key.0 == *a && key.1 == *n,
        }
    }
}

/// Where to read a dyno's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSource {
    pub app: String,
    pub dyno: String,
    pub run_id: String,
    pub log: PathBuf,
    /// The dyno's current (or, when none runs, last) run.
    pub current: bool,
    /// The run is still going.
    pub active: bool,
}

/// Dyno counts and committed memory, for `HostInfo`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub by_state: BTreeMap<&'static str, u32>,
    /// Set while the host is cordoned.
    pub cordon: Option<super::cordon::Cordon>,
    /// Memory limits of the dynos that are not down, added up.
    pub memory_committed: u64,
    /// What admission lets dynos commit ([`crate::host::allocatable`]).
    pub memory_allocatable: u64,
    /// `v1` or `v2`, when cgroups are in use.
    pub cgroup_version: Option<String>,
    /// The state directory's file system: bytes free (to root), and whether
    /// it is full.
    pub state_disk_free: u64,
    pub state_disk_full: bool,
    /// What waits to be written to the state directory, and why.
    pub state_unwritten: Vec<String>,
    /// Descriptors: the limit, open, committed, available, per dyno.
    pub fds: super::fds::Usage,
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
