//! The driver around the supervisor: one actor task that owns every dyno.
//!
//! API calls, run reports (exec'd, port bound, exited) and timers arrive as
//! messages; the actor feeds them to each dyno's [`Supervision`], persists the
//! dyno record, and carries out the returned actions: spawn a shim, signal a
//! run, write a runtime log line, publish an event. Nothing else mutates dyno
//! state, so there are no locks and no races between, say, a stop and a crash.
//!
//! State on disk (`<state-dir>/`):
//! - `dynos/<app>/<name>.json`: the dyno record (spec + supervision), written
//!   before any run is spawned, so that a restarted agent knows every run;
//! - `runs/<run-id>/`: see [`crate::runs`];
//! - `events.jsonl`: the event log, so that `seq` survives restarts.
//!
//! On start the engine re-adopts live runs (shims found by their command line,
//! watched through a pidfd) and settles runs that ended while it was away from
//! their exit records (`lost` when there is none).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::{debug, error, info, warn};

use crate::cgroup::{self, Cgroups, CgroupsRef};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::ledger::RunInfo;
use crate::logs;
use crate::meter::{Meter, MeterConfig};
use crate::os;
use crate::runs::{self, JailSpec, RunDir, RunSpec};
use crate::supervisor::{Action, Ctx, Input, LastExit, Policy, Profile, RunEnd, Signal, State, Supervision, Time};
pub use crate::time::Clock;

/// Events kept in memory for `WatchEvents`; older ones need a snapshot.
const EVENTS_KEPT: usize = 10_000;
/// How often a web run's $PORT is probed while it is starting.
const PORT_PROBE: Duration = Duration::from_millis(50);

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
}

impl DynoSpec {
    /// Same dyno, same everything that matters to the run.
    fn same_run(&self, other: &DynoSpec) -> bool {
        let key = |s: &DynoSpec| {
            (
                s.command.clone(),
                s.size.clone(),
                s.release.clone(),
                s.env.clone(),
                s.slug_sha256.clone().unwrap_or_else(|| s.app_dir.display().to_string()),
                s.stack.clone(),
            )
        };
        key(self) == key(other)
    }

    fn profile(&self) -> Profile {
        Profile {
            web: self.ptype == "web",
            one_off: self.one_off,
            time_to_live: Duration::from_secs(self.time_to_live_secs),
            command: self.command.clone(),
        }
    }

    /// The complete environment of a run whose `app/` is at `root`.
    fn run_env(&self, root: &str) -> Vec<(String, String)> {
        let root = root.to_string();
        let mut env: BTreeMap<String, String> = self.env.clone();
        env.insert("DYNO".into(), self.name.clone());
        env.insert("HOME".into(), root.clone());
        env.insert("PATH".into(), format!("{root}/bin:/usr/local/bin:/usr/bin:/bin"));
        if let Some(port) = self.port {
            env.insert("PORT".into(), port.to_string());
        }
        env.into_iter().collect()
    }
}

/// Earlier request ids remembered per dyno.
const REQUEST_IDS_KEPT: usize = 32;

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
}

/// Sources `.profile.d/*.sh` and `.profile` of the app before its command.
const PROFILE: &str =
    "for f in .profile.d/*.sh; do [ -r \"$f\" ] && . \"./$f\"; done; unset f; [ -r .profile ] && . ./.profile; ";

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
}

impl DynoRecord {
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
            port: s.port,
            started_at: run.map(|r| r.exec_at.unwrap_or(r.spawned_at)),
            updated_at: self.sup.updated_at,
            restarts: self.sup.restarts,
            last_exit: self.sup.last_exit,
            next_restart_at: self.sup.next_restart_at,
            one_off: s.one_off,
            stack: s.stack.clone(),
            slug_sha256: s.slug_sha256.clone(),
            run_id: run.map(|r| r.id.clone()),
        }
    }
}

/// A state change, numbered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at: Time,
    pub from: State,
    pub to: State,
    pub reason: String,
    pub dyno: DynoView,
}

/// A validated start request.
#[derive(Clone, Debug)]
pub struct StartRequest {
    pub spec: DynoSpec,
    pub request_id: Option<String>,
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
    fn matches(&self, s: &DynoSpec) -> bool {
        match self {
            Selector::All => true,
            Selector::App(a) => s.app == *a,
            Selector::Type(a, t) => s.app == *a && s.ptype == *t,
            Selector::Dyno(a, n) => s.app == *a && s.name == *n,
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

/// The start of a `WatchEvents` stream.
pub struct Watch {
    /// Present when `after_seq` was 0 or older than the events kept.
    pub snapshot: Option<(u64, Vec<DynoView>, bool)>,
    pub backlog: Vec<Event>,
    pub live: broadcast::Receiver<Event>,
}

/// Dyno counts and committed memory, for `HostInfo`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub by_state: BTreeMap<&'static str, u32>,
    /// Memory limits of the dynos that are not down, added up.
    pub memory_committed: u64,
    /// What admission lets dynos commit ([`crate::host::allocatable`]).
    pub memory_allocatable: u64,
    /// `v1` or `v2`, when cgroups are in use.
    pub cgroup_version: Option<String>,
}

type Reply<T> = oneshot::Sender<T>;
type Key = (String, String);

enum Msg {
    Start(Box<StartRequest>, Reply<Result<DynoView>>),
    Stop(Selector, Reply<Result<Vec<DynoView>>>),
    Restart(Selector, Reply<Result<Vec<DynoView>>>),
    Get(String, String, Reply<Result<DynoView>>),
    List(Option<String>, Reply<Vec<DynoView>>),
    /// Events after a seq; `None`: a snapshot first.
    Watch(Option<u64>, Reply<Watch>),
    Logs(Option<String>, Option<String>, Reply<Vec<LogSource>>),
    Summary(Reply<Summary>),
    NextOneOff(String, Reply<String>),
    Run(Key, Input),
    /// A run's shim is gone: how it ended, and its cgroup's last usage.
    Ended(Key, Input, Option<cgroup::Usage>),
}

/// A cheap, cloneable handle to the engine.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::UnboundedSender<Msg>,
    meter: Meter,
}

impl Engine {
    /// The usage meter (the ledger's owner).
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Msg) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .map_err(|_| Error::Unavailable("shutting down".into()))?;
        rx.await.map_err(|_| Error::Unavailable("shutting down".into()))
    }

    pub async fn start(&self, req: StartRequest) -> Result<DynoView> {
        self.call(|r| Msg::Start(Box::new(req), r)).await?
    }
    pub async fn stop(&self, sel: Selector) -> Result<Vec<DynoView>> {
        self.call(|r| Msg::Stop(sel, r)).await?
    }
    pub async fn restart(&self, sel: Selector) -> Result<Vec<DynoView>> {
        self.call(|r| Msg::Restart(sel, r)).await?
    }
    pub async fn get(&self, app: &str, name: &str) -> Result<DynoView> {
        self.call(|r| Msg::Get(app.into(), name.into(), r)).await?
    }
    pub async fn list(&self, app: Option<String>) -> Result<Vec<DynoView>> {
        self.call(|r| Msg::List(app, r)).await
    }
    pub async fn watch(&self, after_seq: u64) -> Result<Watch> {
        self.call(|r| Msg::Watch(Some(after_seq), r)).await
    }
    /// A snapshot of every dyno and the events after it (the scheduler's hello).
    pub async fn subscribe(&self) -> Result<Watch> {
        self.call(|r| Msg::Watch(None, r)).await
    }
    pub async fn log_sources(&self, app: Option<String>, dyno: Option<String>) -> Result<Vec<LogSource>> {
        self.call(|r| Msg::Logs(app, dyno, r)).await
    }
    pub async fn summary(&self) -> Result<Summary> {
        self.call(Msg::Summary).await
    }
    /// The next free `run.N` name of an app.
    pub async fn next_one_off(&self, app: &str) -> Result<String> {
        self.call(|r| Msg::NextOneOff(app.into(), r)).await
    }
}

/// Paths under the state directory.
#[derive(Clone, Debug)]
pub struct Paths {
    pub dynos: PathBuf,
    pub runs: PathBuf,
    pub events: PathBuf,
    pub slugs: PathBuf,
}

impl Paths {
    pub fn new(state_dir: &Path) -> Paths {
        Paths {
            dynos: state_dir.join("dynos"),
            runs: state_dir.join("runs"),
            events: state_dir.join("events.jsonl"),
            slugs: state_dir.join("slugs"),
        }
    }
    fn record(&self, app: &str, name: &str) -> PathBuf {
        self.dynos.join(app).join(format!("{name}.json"))
    }
}

/// The persistent, numbered event log.
struct EventLog {
    path: PathBuf,
    file: fs::File,
    kept: VecDeque<Event>,
    last_seq: u64,
    live: broadcast::Sender<Event>,
}

impl EventLog {
    fn open(path: PathBuf) -> std::io::Result<EventLog> {
        let mut kept = VecDeque::new();
        let mut last_seq = 0;
        let mut lines = 0usize;
        if let Ok(f) = fs::File::open(&path) {
            for line in std::io::BufReader::new(f).lines() {
                lines += 1;
                // A torn last line after a crash is skipped.
                if let Ok(ev) = serde_json::from_str::<Event>(&line?) {
                    last_seq = last_seq.max(ev.seq);
                    kept.push_back(ev);
                    if kept.len() > EVENTS_KEPT {
                        kept.pop_front();
                    }
                }
            }
        }
        if lines > 2 * EVENTS_KEPT {
            // Compact: keep what is kept in memory.
            let mut text = String::new();
            for ev in &kept {
                text.push_str(&serde_json::to_string(ev).map_err(std::io::Error::other)?);
                text.push('\n');
            }
            runs::write_atomic(&path, text.as_bytes())?;
        }
        let file = fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let (live, _) = broadcast::channel(4096);
        Ok(EventLog {
            path,
            file,
            kept,
            last_seq,
            live,
        })
    }

    fn publish(&mut self, at: Time, from: State, to: State, reason: &str, dyno: DynoView) {
        self.last_seq += 1;
        let ev = Event {
            seq: self.last_seq,
            at,
            from,
            to,
            reason: reason.to_string(),
            dyno,
        };
        match serde_json::to_string(&ev) {
            Ok(mut line) => {
                line.push('\n');
                if let Err(e) = self.file.write_all(line.as_bytes()) {
                    error!(path = %self.path.display(), error = %e, "cannot append to the event log");
                }
            }
            Err(e) => error!(error = %e, "cannot encode event"),
        }
        self.kept.push_back(ev.clone());
        if self.kept.len() > EVENTS_KEPT {
            self.kept.pop_front();
        }
        let _ = self.live.send(ev);
    }
}

struct Entry {
    rec: DynoRecord,
    /// Port probe of the current run.
    probe: Option<AbortHandle>,
}

struct Actor {
    cfg: Arc<Config>,
    /// `None` only in the unjailed development mode without cgroups.
    cgroups: Option<CgroupsRef>,
    policy: Policy,
    clock: Clock,
    paths: Paths,
    exe: PathBuf,
    dynos: BTreeMap<Key, Entry>,
    events: EventLog,
    meter: Meter,
    /// Admission's bound on committed memory.
    allocatable: u64,
    tx: mpsc::UnboundedSender<Msg>,
}

/// Opens the state directory, re-adopts what is running and starts the actor.
/// The actor ends when `shutdown` resolves; dynos keep running.
pub async fn start(
    cfg: Arc<Config>,
    clock: Clock,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Engine, tokio::task::JoinHandle<()>)> {
    let paths = Paths::new(&cfg.state_dir);
    for dir in [&paths.dynos, &paths.runs, &paths.slugs] {
        fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    let events =
        EventLog::open(paths.events.clone()).map_err(|e| anyhow::anyhow!("{}: {e}", paths.events.display()))?;
    let exe = std::env::current_exe().map_err(|e| anyhow::anyhow!("locating the agent binary: {e}"))?;
    let cgroups: Option<CgroupsRef> = match cgroup::detect(&cfg.cgroup_root, &cfg.cgroup_parent) {
        Ok(c) => {
            info!(version = %c.version(), root = %cfg.cgroup_root.display(), parent = %cfg.cgroup_parent, "cgroups");
            Some(Arc::from(c))
        }
        Err(e) if cfg.allow_unjailed => {
            warn!(error = %e, "no usable cgroups: dynos run without limits (development mode)");
            None
        }
        Err(e) => anyhow::bail!("cgroups at {}: {e}", cfg.cgroup_root.display()),
    };
    let meter = Meter::start(
        MeterConfig {
            ledger: cfg.state_dir.join("ledger.db"),
            host_id: cfg.host_id.clone(),
            slice: cfg.usage_slice.as_secs(),
            retention: cfg.usage_retention,
            runs: paths.runs.clone(),
        },
        cgroups.clone(),
    )?;
    let cfg_reserve_overcommit = (cfg.memory_reserve, cfg.memory_overcommit);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut actor = Actor {
        cgroups,
        policy: cfg.policy(),
        cfg,
        clock,
        paths,
        exe,
        dynos: BTreeMap::new(),
        events,
        meter: meter.clone(),
        allocatable: crate::host::allocatable(
            crate::host::stats().memory_total,
            cfg_reserve_overcommit.0,
            cfg_reserve_overcommit.1,
        ),
        tx: tx.clone(),
    };
    actor.recover()?;
    let task = tokio::spawn(actor.run(rx, shutdown));
    Ok((Engine { tx, meter }, task))
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut metrics = tokio::time::interval(self.cfg.metrics_interval);
        metrics.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        metrics.tick().await;
        loop {
            let deadline = self.dynos.values().filter_map(|e| e.rec.sup.next_deadline()).min();
            let sleep_until = deadline.map(|d| self.clock.instant(d));
            tokio::select! {
                _ = &mut shutdown => break,
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => break,
                },
                _ = async {
                    match sleep_until {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => self.tick(),
                _ = metrics.tick() => self.sample_metrics(),
            }
        }
        for e in self.dynos.values() {
            if let Some(p) = &e.probe {
                p.abort();
            }
        }
        info!("engine stopped; dynos keep running");
    }

    /// Writes a Heroku-style runtime-metrics line into each running dyno's
    /// log, from its cgroup (off the actor: the reads block).
    fn sample_metrics(&self) {
        let Some(cgroups) = self.cgroups.clone() else { return };
        let targets: Vec<(String, String, PathBuf, u64)> = self
            .dynos
            .values()
            .filter_map(|e| {
                let run = e.rec.sup.run.as_ref().filter(|r| r.pid.is_some())?;
                let quota = self.cfg.sizes.get(&e.rec.spec.size).map_or(0, |s| s.memory_bytes);
                let log = RunDir::new(&self.paths.runs, &run.id).log();
                Some((e.rec.spec.name.clone(), run.id.clone(), log, quota))
            })
            .collect();
        if targets.is_empty() {
            return;
        }
        tokio::task::spawn_blocking(move || {
            for (dyno, run_id, log, quota) in targets {
                let Ok(Some(cg)) = cgroups.open(&run_id) else { continue };
                match cg.stats() {
                    Ok(stats) => {
                        if let Err(e) = logs::append_runtime(&log, &dyno, &metrics_line(&dyno, &stats, quota)) {
                            debug!(run = %run_id, error = %e, "cannot write the metrics line");
                        }
                    }
                    Err(e) => debug!(run = %run_id, error = %e, "cannot read cgroup stats"),
                }
            }
        });
    }

    fn tick(&mut self) {
        let now = self.clock.now();
        let due: Vec<Key> = self
            .dynos
            .iter()
            .filter(|(_, e)| e.rec.sup.next_deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.step(&key, Input::Tick);
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Start(req, reply) => {
                let _ = reply.send(self.start_dyno(*req));
            }
            Msg::Stop(sel, reply) => {
                let _ = reply.send(self.each(&sel, Input::Stop));
            }
            Msg::Restart(sel, reply) => {
                let _ = reply.send(self.each(&sel, Input::Restart));
            }
            Msg::Get(app, name, reply) => {
                let r = self
                    .dynos
                    .get(&(app.clone(), name.clone()))
                    .map(|e| e.rec.view())
                    .ok_or_else(|| Error::NotFound(format!("no dyno {name} in app {app}")));
                let _ = reply.send(r);
            }
            Msg::List(app, reply) => {
                let views = self
                    .dynos
                    .values()
                    .filter(|e| app.as_ref().is_none_or(|a| e.rec.spec.app == *a))
                    .map(|e| e.rec.view())
                    .collect();
                let _ = reply.send(views);
            }
            Msg::Watch(after, reply) => {
                let _ = reply.send(self.watch(after));
            }
            Msg::Logs(app, dyno, reply) => {
                let _ = reply.send(self.log_sources(app, dyno));
            }
            Msg::Summary(reply) => {
                let mut s = Summary {
                    cgroup_version: self.cgroups.as_ref().map(|c| c.version().to_string()),
                    memory_committed: self.committed(None),
                    memory_allocatable: self.allocatable,
                    ..Summary::default()
                };
                for e in self.dynos.values() {
                    *s.by_state.entry(e.rec.sup.state.as_str()).or_default() += 1;
                }
                let _ = reply.send(s);
            }
            Msg::NextOneOff(app, reply) => {
                let n = self
                    .dynos
                    .keys()
                    .filter(|(a, _)| *a == app)
                    .filter_map(|(_, name)| crate::names::parse_dyno_name(name))
                    .filter(|(t, _)| *t == "run")
                    .map(|(_, n)| n)
                    .max()
                    .unwrap_or(0);
                let _ = reply.send(format!("run.{}", n + 1));
            }
            Msg::Run(key, input) => self.step(&key, input),
            Msg::Ended(key, input, usage) => {
                self.meter_close(&input, usage);
                self.step(&key, input);
            }
        }
    }

    fn watch(&self, after: Option<u64>) -> Watch {
        let live = self.events.live.subscribe();
        let oldest = self.events.kept.front().map_or(self.events.last_seq + 1, |e| e.seq);
        // Events after `after` are no longer all kept, or `after` is from a
        // future this agent never reached (its state was reset): snapshot.
        let gap = after.is_some_and(|after| after.saturating_add(1) < oldest || after > self.events.last_seq);
        if after.is_none() || gap {
            let views = self.dynos.values().map(|e| e.rec.view()).collect();
            Watch {
                snapshot: Some((self.events.last_seq, views, gap)),
                backlog: Vec::new(),
                live,
            }
        } else {
            Watch {
                snapshot: None,
                backlog: self
                    .events
                    .kept
                    .iter()
                    .filter(|e| Some(e.seq) > after)
                    .cloned()
                    .collect(),
                live,
            }
        }
    }

    fn log_sources(&self, app: Option<String>, dyno: Option<String>) -> Vec<LogSource> {
        let mut sources = Vec::new();
        for e in self.dynos.values() {
            let spec = &e.rec.spec;
            if app.as_ref().is_some_and(|a| spec.app != *a)
                || dyno.as_ref().is_some_and(|d| spec.name != *d && spec.ptype != *d)
            {
                continue;
            }
            let current = e.rec.sup.log_run().map(|r| r.id.clone());
            // The previous run first: its last lines tell why it ended.
            for run in [&e.rec.sup.last_run, &e.rec.sup.run].into_iter().flatten() {
                let is_current = Some(&run.id) == current.as_ref();
                if !is_current && e.rec.sup.run.is_none() {
                    continue; // last_run is the current one then
                }
                sources.push(LogSource {
                    app: spec.app.clone(),
                    dyno: spec.name.clone(),
                    run_id: run.id.clone(),
                    log: RunDir::new(&self.paths.runs, &run.id).log(),
                    current: is_current,
                    active: is_current && e.rec.sup.running(),
                });
            }
        }
        sources
    }

    /// Memory limits of the dynos that are not down, `except` one.
    fn committed(&self, except: Option<&Key>) -> u64 {
        self.dynos
            .iter()
            .filter(|(k, e)| Some(*k) != except && e.rec.sup.state != State::Down)
            .map(|(_, e)| self.cfg.sizes.get(&e.rec.spec.size).map_or(0, |l| l.memory_bytes))
            .sum()
    }

    /// Refuses a start that would commit more memory than is allocatable.
    fn admit(&self, key: &Key, size: &str) -> Result<()> {
        let need = self.cfg.sizes.get(size).map_or(0, |l| l.memory_bytes);
        let committed = self.committed(Some(key));
        if committed.saturating_add(need) <= self.allocatable {
            return Ok(());
        }
        let mib = |b: u64| b / (1 << 20);
        Err(Error::ResourceExhausted(format!(
            "{}/{}: size {size} needs {} MiB of memory; {} MiB of this host's {} MiB allocatable is free \
             (memory_reserve {} MiB, memory_overcommit {})",
            key.0,
            key.1,
            mib(need),
            mib(self.allocatable.saturating_sub(committed)),
            mib(self.allocatable),
            mib(self.cfg.memory_reserve),
            self.cfg.memory_overcommit
        )))
    }

    fn start_dyno(&mut self, req: StartRequest) -> Result<DynoView> {
        let key = (req.spec.app.clone(), req.spec.name.clone());
        if let Some(rid) = &req.request_id
            && let Some(e) = self
                .dynos
                .values()
                .find(|e| e.rec.request_id.as_ref() == Some(rid) || e.rec.past_request_ids.contains(rid))
        {
            return Ok(e.rec.view());
        }
        // A running dyno asked for the same run again commits nothing new.
        let same_and_running = self
            .dynos
            .get(&key)
            .is_some_and(|e| e.rec.sup.state != State::Down && e.rec.spec.same_run(&req.spec));
        if !same_and_running {
            self.admit(&key, &req.spec.size)?;
        }
        if let Some(entry) = self.dynos.get_mut(&key) {
            let mut spec = req.spec;
            // A dyno keeps its port.
            spec.port = entry.rec.spec.port;
            if entry.rec.spec.same_run(&spec) {
                if entry.rec.sup.state == State::Down && !entry.rec.sup.running() {
                    self.step(&key, Input::Start);
                }
            } else {
                info!(app = %key.0, dyno = %key.1, "new spec: restarting");
                entry.rec.spec = spec;
                if let Some(old) = std::mem::replace(&mut entry.rec.request_id, req.request_id) {
                    entry.rec.past_request_ids.push_back(old);
                    if entry.rec.past_request_ids.len() > REQUEST_IDS_KEPT {
                        entry.rec.past_request_ids.pop_front();
                    }
                }
                self.step(&key, Input::Restart);
            }
            return Ok(self.dynos[&key].rec.view());
        }

        let mut spec = req.spec;
        if spec.ptype == "web" {
            spec.port = Some(self.allocate_port()?);
        }
        let id = uuid::Uuid::new_v4().to_string();
        let now = self.clock.now();
        let rec = DynoRecord {
            sup: Supervision::new(id.clone(), now),
            id,
            spec,
            created_at: now,
            request_id: req.request_id,
            past_request_ids: VecDeque::new(),
            uid: self.allocate_uid()?,
        };
        fs::create_dir_all(self.paths.dynos.join(&key.0)).map_err(|e| Error::Internal(format!("state dir: {e}")))?;
        self.dynos.insert(key.clone(), Entry { rec, probe: None });
        self.step(&key, Input::Start);
        Ok(self.dynos[&key].rec.view())
    }

    fn allocate_port(&self) -> Result<u16> {
        let used: std::collections::HashSet<u16> = self.dynos.values().filter_map(|e| e.rec.spec.port).collect();
        let range = self.cfg.port_range;
        for p in range.first..=range.last {
            let p = p as u16;
            if !used.contains(&p) && std::net::TcpListener::bind(("0.0.0.0", p)).is_ok() {
                return Ok(p);
            }
        }
        Err(Error::ResourceExhausted(format!(
            "no free port in {}-{}",
            range.first, range.last
        )))
    }

    /// The lowest uid of `uid_range` no other dyno has.
    fn allocate_uid(&self) -> Result<u32> {
        let used: std::collections::HashSet<u32> = self.dynos.values().map(|e| e.rec.uid).collect();
        let range = self.cfg.uid_range;
        (range.first..=range.last)
            .find(|u| !used.contains(u))
            .ok_or_else(|| Error::ResourceExhausted(format!("no free uid in {}-{}", range.first, range.last)))
    }

    fn each(&mut self, sel: &Selector, input: Input) -> Result<Vec<DynoView>> {
        let keys: Vec<Key> = self
            .dynos
            .iter()
            .filter(|(_, e)| sel.matches(&e.rec.spec))
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() && *sel != Selector::All {
            return Err(Error::NotFound(match sel {
                Selector::App(a) => format!("app {a} has no dynos"),
                Selector::Type(a, t) => format!("app {a} has no {t} dynos"),
                Selector::Dyno(a, n) => format!("no dyno {n} in app {a}"),
                Selector::All => unreachable!(),
            }));
        }
        for k in &keys {
            self.step(k, input.clone());
        }
        Ok(keys.iter().map(|k| self.dynos[k].rec.view()).collect())
    }

    /// Feeds one input to a dyno and carries out the actions.
    fn step(&mut self, key: &Key, input: Input) {
        if let Input::Spawned { run_id, at, .. } = &input {
            self.meter_open(key, run_id, *at);
        }
        let Some(entry) = self.dynos.get_mut(key) else {
            return;
        };
        let profile = entry.rec.spec.profile();
        let mut rng = rand::rng();
        let mut jitter = || rng.random::<f64>();
        let mut cx = Ctx {
            profile: &profile,
            policy: &self.policy,
            now: self.clock.now(),
            jitter: &mut jitter,
        };
        debug!(app = %key.0, dyno = %key.1, ?input, "input");
        let actions = entry.rec.sup.step(&mut cx, input);
        self.apply(key, actions);
    }

    fn apply(&mut self, key: &Key, actions: Vec<Action>) {
        // Spawns first prepare their run directory, so that the runtime lines
        // written below land in the new run's log.
        let mut unprepared = Vec::new();
        for a in &actions {
            if let Action::Spawn { run_id } = a
                && let Err(e) = self.prepare_run(key, run_id)
            {
                error!(app = %key.0, dyno = %key.1, error = %e, "cannot prepare run");
                unprepared.push((run_id.clone(), e.to_string()));
            }
        }
        // The record is durable before any shim exists: a restarted agent
        // knows every run it may have started.
        self.persist(key);
        let entry = &self.dynos[key];
        let log = entry
            .rec
            .sup
            .log_run()
            .map(|r| RunDir::new(&self.paths.runs, &r.id).log());
        let mut follow_up = Vec::new();
        for a in actions {
            match a {
                Action::Log(text) => {
                    if let Some(log) = &log
                        && let Err(e) = logs::append_runtime(log, &key.1, &text)
                    {
                        warn!(path = %log.display(), error = %e, "cannot write runtime log line");
                    }
                }
                Action::Changed { from, to, reason } => {
                    let view = self.dynos[key].rec.view();
                    info!(app = %key.0, dyno = %key.1, %from, %to, reason, "state changed");
                    self.events.publish(self.clock.now(), from, to, reason, view);
                }
                Action::Signal(sig) => self.signal(key, sig),
                other => follow_up.push(other),
            }
        }
        for a in follow_up {
            match a {
                Action::Spawn { run_id } => match unprepared.iter().find(|(id, _)| *id == run_id) {
                    Some((_, error)) => {
                        let input = Input::SpawnFailed {
                            run_id,
                            error: error.clone(),
                        };
                        let _ = self.tx.send(Msg::Run(key.clone(), input));
                    }
                    None => self.spawn(key, run_id),
                },
                Action::WatchPort { run_id } => self.watch_port(key, run_id),
                _ => {}
            }
        }
        // A new run or an ended one: the old run's probe is stale.
        let entry = self.dynos.get_mut(key).expect("present");
        if !entry.rec.sup.running()
            && let Some(p) = entry.probe.take()
        {
            p.abort();
        }
    }

    /// Starts metering `run_id` if it is the dyno's current run (the ledger
    /// ignores a run it already meters or has closed).
    fn meter_open(&self, key: &Key, run_id: &str, at: Time) {
        let Some(e) = self.dynos.get(key) else { return };
        if e.rec.sup.run.as_ref().is_none_or(|r| r.id != run_id) {
            return;
        }
        let spec = &e.rec.spec;
        self.meter.open(
            RunInfo {
                run_id: run_id.to_string(),
                app: spec.app.clone(),
                dyno: spec.name.clone(),
                dyno_id: e.rec.id.clone(),
                ptype: spec.ptype.clone(),
                size: spec.size.clone(),
                release: spec.release.clone(),
            },
            at,
        );
    }

    /// Bills a run that ended up to its end.
    fn meter_close(&self, input: &Input, usage: Option<cgroup::Usage>) {
        if let Input::Exited { run_id, end } = input {
            self.meter.close(run_id.clone(), end.at, usage);
        }
    }

    fn persist(&self, key: &Key) {
        let rec = &self.dynos[key].rec;
        let path = self.paths.record(&key.0, &key.1);
        if let Err(e) = runs::write_json_atomic(&path, rec) {
            error!(path = %path.display(), error = %e, "cannot persist dyno record");
        }
    }

    fn prepare_run(&mut self, key: &Key, run_id: &str) -> std::io::Result<()> {
        let rec = &self.dynos[key].rec;
        let dir = RunDir::new(&self.paths.runs, run_id);
        fs::create_dir_all(&dir.path)?;
        let size = self
            .cfg
            .sizes
            .get(&rec.spec.size)
            .ok_or_else(|| std::io::Error::other(format!("size {:?} is not configured", rec.spec.size)))?;
        let jail = match self.cfg.stacks.get(&rec.spec.stack) {
            Some(stack) => {
                let cgroup_procs = match &self.cgroups {
                    Some(cgroups) => cgroups
                        .create(run_id, &cgroup::Limits::from(size))
                        .map_err(|e| std::io::Error::other(format!("cgroup: {e}")))?
                        .procs_files(),
                    None => Vec::new(),
                };
                Some(JailSpec {
                    stack: stack.clone(),
                    uid: rec.uid,
                    gid: rec.uid,
                    hostname: rec.id.clone(),
                    disk_bytes: self.cfg.disk_limit,
                    nofile: size.nofile,
                    cgroup_procs,
                    oom_score_adj: self.cfg.dyno_oom_score_adj,
                })
            }
            None if self.cfg.allow_unjailed => None,
            None => {
                return Err(std::io::Error::other(format!(
                    "stack {:?} is not configured and allow_unjailed is off",
                    rec.spec.stack
                )));
            }
        };
        let root = match &jail {
            Some(_) => "/app".to_string(),
            None => rec.spec.app_dir.display().to_string(),
        };
        let spec = RunSpec {
            run_id: run_id.to_string(),
            app: rec.spec.app.clone(),
            dyno: rec.spec.name.clone(),
            command: format!("{PROFILE}{}", rec.spec.command),
            env: rec.spec.run_env(&root),
            workdir: rec.spec.app_dir.clone(),
            log_max_bytes: self.cfg.log_max_bytes,
            jail,
        };
        runs::write_json_atomic(&dir.spec(), &spec)?;
        // Keep the previous run's directory for its logs; drop older ones.
        if let Some(n) = run_id.rsplit_once('.').and_then(|(_, n)| n.parse::<u32>().ok())
            && n > 2
        {
            let old = format!("{}.{}", rec.sup.run_prefix, n - 2);
            self.remove_run_dir(&old);
        }
        Ok(())
    }

    /// Removes a run's directory; its exit record goes to the meter first
    /// (closing a meter twice is harmless), so that a run whose end the meter
    /// has not seen yet is still billed to its real end.
    fn remove_run_dir(&self, run_id: &str) {
        let dir = RunDir::new(&self.paths.runs, run_id);
        if let Ok(Some(exit)) = dir.read_exit() {
            self.meter.close(run_id.to_string(), exit.exited_at, None);
        }
        if let Err(e) = fs::remove_dir_all(&dir.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(path = %dir.path.display(), error = %e, "cannot remove a run directory");
        }
    }

    fn signal(&self, key: &Key, sig: Signal) {
        let Some(run) = self.dynos[key].rec.sup.run.as_ref().filter(|r| r.pid.is_some()) else {
            return; // not exec'd yet: the supervisor repeats it on Spawned
        };
        let signo = match sig {
            Signal::Term => libc::SIGTERM,
            Signal::KillAll => libc::SIGKILL,
        };
        let exec = match RunDir::new(&self.paths.runs, &run.id).read_exec() {
            Ok(Some(exec)) => exec,
            other => {
                warn!(app = %key.0, dyno = %key.1, ?other, "no exec record: cannot signal the run");
                return;
            }
        };
        // A jailed dyno's init passes SIGTERM to every process of the dyno;
        // SIGKILL to it ends its whole pid namespace.
        let result = match exec.init_pid {
            Some(init) => os::kill_pid(init, signo),
            None => os::kill_group(exec.pid, signo),
        };
        if sig == Signal::KillAll
            && let Some(cgroups) = self.cgroups.clone()
        {
            // Whatever might have escaped the pid namespace's end.
            let run_id = run.id.clone();
            tokio::task::spawn_blocking(move || {
                if let Ok(Some(cg)) = cgroups.open(&run_id)
                    && let Err(e) = cg.kill_all()
                {
                    warn!(run = %run_id, error = %e, "cannot empty the run's cgroup");
                }
            });
        }
        if let Err(e) = result {
            debug!(app = %key.0, dyno = %key.1, pid = exec.pid, error = %e, "signal not delivered");
        }
    }

    fn spawn(&mut self, key: &Key, run_id: String) {
        let cgroups = self.cgroups.clone();
        let exe = self.exe.clone();
        let dir = RunDir::new(&self.paths.runs, &run_id);
        let tx = self.tx.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let input = match spawn_shim(&exe, &run_id, &dir).await {
                Ok((shim_pid, exec)) => {
                    let _ = tx.send(Msg::Run(
                        key.clone(),
                        Input::Spawned {
                            run_id: run_id.clone(),
                            pid: exec.pid,
                            at: exec.started_at,
                        },
                    ));
                    let (input, usage) = watch_exit(shim_pid, dir, run_id, cgroups).await;
                    Msg::Ended(key, input, usage)
                }
                Err(error) => {
                    warn!(app = %key.0, dyno = %key.1, %run_id, %error, "spawn failed");
                    Msg::Run(key, Input::SpawnFailed { run_id, error })
                }
            };
            let _ = tx.send(input);
        });
    }

    fn watch_port(&mut self, key: &Key, run_id: String) {
        let Some(port) = self.dynos[key].rec.spec.port else {
            return;
        };
        let tx = self.tx.clone();
        let k = key.clone();
        let task = tokio::spawn(async move {
            loop {
                let probe = tokio::net::TcpStream::connect(("127.0.0.1", port));
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), probe).await {
                    let _ = tx.send(Msg::Run(k, Input::PortBound { run_id }));
                    return;
                }
                tokio::time::sleep(PORT_PROBE).await;
            }
        });
        let entry = self.dynos.get_mut(key).expect("present");
        if let Some(old) = entry.probe.replace(task.abort_handle()) {
            old.abort();
        }
    }

    /// Loads dyno records and re-adopts or settles their runs.
    fn recover(&mut self) -> anyhow::Result<()> {
        let mut records = Vec::new();
        for app in fs::read_dir(&self.paths.dynos)? {
            let app = app?.path();
            if !app.is_dir() {
                continue;
            }
            for f in fs::read_dir(&app)? {
                let f = f?.path();
                if f.extension().is_some_and(|e| e == "json") {
                    match runs::read_json::<DynoRecord>(&f) {
                        Ok(Some(rec)) => records.push(rec),
                        Ok(None) => {}
                        Err(e) => error!(path = %f.display(), error = %e, "skipping unreadable dyno record"),
                    }
                }
            }
        }
        let live: HashMap<String, u32> = runs::live_shims(&self.paths.runs).into_iter().collect();
        let mut settle = Vec::new();
        for mut rec in records {
            // A record without a valid uid (from an older agent) gets one now:
            // a dyno never runs as root or shares its uid.
            let range = self.cfg.uid_range;
            if !(range.first..=range.last).contains(&rec.uid) || self.dynos.values().any(|e| e.rec.uid == rec.uid) {
                rec.uid = self
                    .allocate_uid()
                    .map_err(|e| anyhow::anyhow!("{}/{}: {e}", rec.spec.app, rec.spec.name))?;
                warn!(app = %rec.spec.app, dyno = %rec.spec.name, uid = rec.uid, "assigned a uid to a dyno record without a valid one");
            }
            let key = (rec.spec.app.clone(), rec.spec.name.clone());
            if let Some(run) = rec.sup.run.clone() {
                settle.push((key.clone(), run, rec.spec.port));
            }
            self.dynos.insert(key.clone(), Entry { rec, probe: None });
            self.persist(&key);
        }
        info!(dynos = self.dynos.len(), live_runs = live.len(), "recovered state");

        for (key, run, port) in settle {
            let dir = RunDir::new(&self.paths.runs, &run.id);
            let exec = dir.read_exec().ok().flatten();
            // The agent may have died before the meter committed this run's
            // start: opening again is a no-op for a metered run.
            if let Some(exec) = &exec {
                self.meter_open(&key, &run.id, exec.started_at);
            }
            if run.pid.is_none()
                && let Some(exec) = exec
            {
                self.step(
                    &key,
                    Input::Spawned {
                        run_id: run.id.clone(),
                        pid: exec.pid,
                        at: exec.started_at,
                    },
                );
            }
            if let Some(&shim_pid) = live.get(&run.id) {
                info!(app = %key.0, dyno = %key.1, run = %run.id, shim_pid, "re-adopting live run");
                let cgroups = self.cgroups.clone();
                let tx = self.tx.clone();
                let k = key.clone();
                let run_id = run.id.clone();
                tokio::spawn(async move {
                    // The shim may still be starting its command.
                    let exec = loop {
                        if let Ok(Some(exec)) = dir.read_exec() {
                            break Some(exec);
                        }
                        if os::cmdline(shim_pid).is_none() {
                            break None;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    };
                    if let Some(exec) = exec {
                        let _ = tx.send(Msg::Run(
                            k.clone(),
                            Input::Spawned {
                                run_id: run_id.clone(),
                                pid: exec.pid,
                                at: exec.started_at,
                            },
                        ));
                    }
                    let (input, usage) = watch_exit(shim_pid, dir, run_id, cgroups).await;
                    let _ = tx.send(Msg::Ended(k, input, usage));
                });
                let state = self.dynos[&key].rec.sup.state;
                if state == State::Starting && port.is_some() {
                    self.watch_port(&key, run.id.clone());
                }
            } else {
                let (input, usage) = ended_input(&dir, run.id.clone(), self.clock.now(), self.cgroups.as_deref());
                info!(app = %key.0, dyno = %key.1, run = %run.id, ?input, "settling a run that ended while the agent was away");
                self.meter_close(&input, usage);
                self.step(&key, input);
            }
        }

        // Runs of a dyno (settling may have started new ones above).
        let referenced: std::collections::HashSet<String> = self
            .dynos
            .values()
            .flat_map(|e| [&e.rec.sup.run, &e.rec.sup.last_run])
            .flatten()
            .map(|r| r.id.clone())
            .collect();
        if let Some(cgroups) = &self.cgroups {
            let active: std::collections::HashSet<String> = self
                .dynos
                .values()
                .filter_map(|e| e.rec.sup.run.as_ref())
                .map(|r| r.id.clone())
                .collect();
            match cgroups.reap(&|name| active.contains(name)) {
                Ok(reaped) if !reaped.is_empty() => warn!(?reaped, "removed cgroups of runs that no longer exist"),
                Ok(_) => {}
                Err(e) => error!(error = %e, "cannot reap leftover cgroups"),
            }
        }
        // Shims nobody knows about (their record was lost): end them.
        for (run_id, shim_pid) in &live {
            if !referenced.contains(run_id) {
                let dir = RunDir::new(&self.paths.runs, run_id);
                warn!(run = %run_id, shim_pid, "ending an orphaned run");
                if let Ok(Some(exec)) = dir.read_exec() {
                    kill_run(&exec);
                }
            }
        }
        // Run directories of no dyno.
        for d in fs::read_dir(&self.paths.runs)?.flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            if !referenced.contains(&name) && !live.contains_key(&name) {
                self.remove_run_dir(&name);
            }
        }
        // Meters of runs that are no dyno's current run any more (the agent
        // died between a run's end and its billing) are closed; the meter
        // bills no slice before this, as every run that ended while the agent
        // was away has been closed above.
        self.meter.reconcile(
            self.dynos
                .values()
                .filter_map(|e| e.rec.sup.run.as_ref())
                .map(|r| r.id.clone())
                .collect(),
        );
        Ok(())
    }
}

/// SIGKILLs what is left of a run whose shim is gone or unknown, if its
/// command is still the process the exec record names.
fn kill_run(exec: &runs::ExecRecord) {
    if os::start_ticks(exec.pid) != Some(exec.start_ticks) {
        return;
    }
    // SIGKILL to a jailed dyno's init ends its whole pid namespace.
    if let Some(init) = exec.init_pid {
        let _ = os::kill_pid(init, libc::SIGKILL);
    }
    let _ = os::kill_group(exec.pid, libc::SIGKILL);
}

/// `source=web.1 sample#memory_total=21.00MB … sample#cpu_ms=1234`, as Heroku's
/// runtime metrics.
pub fn metrics_line(dyno: &str, stats: &cgroup::Stats, quota: u64) -> String {
    let mb = |b: u64| format!("{:.2}MB", b as f64 / (1024.0 * 1024.0));
    format!(
        "source={dyno} sample#memory_total={} sample#memory_rss={} sample#memory_cache={} sample#memory_quota={} sample#cpu_ms={}",
        mb(stats.memory_current),
        mb(stats.memory_rss),
        mb(stats.memory_cache),
        mb(quota),
        stats.cpu_usage_ns / 1_000_000
    )
}

/// How a run whose shim is gone ended: from its exit record, else `lost`.
///
/// Also checks the run's cgroup for OOM kills and removes it (killing
/// whatever is left in it). Blocking.
fn ended_input(
    dir: &RunDir,
    run_id: String,
    now: Time,
    cgroups: Option<&dyn Cgroups>,
) -> (Input, Option<cgroup::Usage>) {
    let mut oom_kills = 0;
    let mut usage = None;
    if let Some(cgroups) = cgroups {
        match cgroups.open(&run_id) {
            Ok(Some(cg)) => {
                // One reading: OOM kills for the exit reason, and the last
                // usage for the ledger, before the cgroup goes.
                match cg.stats() {
                    Ok(s) => {
                        oom_kills = s.oom_kills;
                        usage = Some(cgroup::Usage {
                            cpu_ns: s.cpu_usage_ns,
                            mem_peak_bytes: s.memory_peak.unwrap_or(s.memory_current),
                        });
                    }
                    Err(e) => {
                        warn!(run = %run_id, error = %e, "cannot read the run's final usage");
                        oom_kills = cg.oom_kills().unwrap_or_else(|e| {
                            warn!(run = %run_id, error = %e, "cannot read OOM kills");
                            0
                        });
                    }
                }
                if let Err(e) = cg.remove() {
                    error!(run = %run_id, error = %e, "cannot remove the run's cgroup");
                }
            }
            Ok(None) => {}
            Err(e) => warn!(run = %run_id, error = %e, "cannot open the run's cgroup"),
        }
    }
    let end = match dir.read_exit() {
        Ok(Some(x)) => RunEnd {
            code: x.code,
            signal: x.signal,
            // The memory limit's killer sends SIGKILL.
            oom: oom_kills > 0 && x.signal == Some(libc::SIGKILL),
            lost: false,
            at: x.exited_at,
        },
        _ => {
            // The shim vanished without a record; its command may still run
            // in its own session. End it, so that a restart never runs two.
            if let Ok(Some(exec)) = dir.read_exec() {
                kill_run(&exec);
            }
            RunEnd {
                code: None,
                signal: None,
                oom: false,
                lost: true,
                at: now,
            }
        }
    };
    (Input::Exited { run_id, end }, usage)
}

/// Starts `dynoagent shim` for a prepared run directory and waits for its
/// report. Returns the shim's pid and the exec record.
async fn spawn_shim(exe: &Path, run_id: &str, dir: &RunDir) -> std::result::Result<(u32, runs::ExecRecord), String> {
    let shim_log = fs::File::create(dir.shim_log()).map_err(|e| format!("{}: {e}", dir.shim_log().display()))?;
    let mut child = tokio::process::Command::new(exe)
        .arg("shim")
        .arg(run_id)
        .arg(&dir.path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(shim_log)
        .env_clear()
        .spawn()
        .map_err(|e| format!("starting the shim: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(stdout);
    let result = tokio::time::timeout(Duration::from_secs(30), reader.read_line(&mut line)).await;
    // The first shim process exits right after forking the real one.
    let _ = child.wait().await;
    match result {
        Err(_) => return Err("the shim did not report within 30s".into()),
        Ok(Err(e)) => return Err(format!("reading the shim's report: {e}")),
        Ok(Ok(_)) => {}
    }
    let line = line.trim();
    if let Some(msg) = line.strip_prefix("err ") {
        return Err(msg.to_string());
    }
    let mut parts = line.strip_prefix("ok ").unwrap_or("").split(' ');
    let shim_pid: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(|| {
        let diag = fs::read_to_string(dir.shim_log()).unwrap_or_default();
        format!("the shim ended without a report: {}", diag.trim())
    })?;
    let exec = dir
        .read_exec()
        .map_err(|e| e.to_string())?
        .ok_or("the shim reported success without an exec record")?;
    Ok((shim_pid, exec))
}

/// Waits (through a pidfd) until the shim has exited, then reads how the run ended.
async fn watch_exit(
    shim_pid: u32,
    dir: RunDir,
    run_id: String,
    cgroups: Option<CgroupsRef>,
) -> (Input, Option<cgroup::Usage>) {
    match os::pidfd_open(shim_pid) {
        Ok(fd) => {
            // The pid may have been reused before we opened it: it is ours only
            // while its command line still names this run.
            let ours = os::cmdline(shim_pid).is_some_and(|a| a.len() == 4 && os::arg_is(&a[2], &run_id));
            if ours {
                match os::pidfd_wait(fd).await {
                    Ok(()) => {}
                    Err(e) => {
                        warn!(shim_pid, error = %e, "cannot watch the shim; polling");
                        while os::cmdline(shim_pid).is_some() {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
        }
        Err(e) => debug!(shim_pid, error = %e, "shim already gone"),
    }
    let now = chrono::Utc::now();
    let fallback = run_id.clone();
    tokio::task::spawn_blocking(move || ended_input(&dir, run_id, now, cgroups.as_deref()))
        .await
        .unwrap_or_else(|e| {
            error!(error = %e, "settling a run failed");
            let end = RunEnd {
                code: None,
                signal: None,
                oom: false,
                lost: true,
                at: now,
            };
            (Input::Exited { run_id: fallback, end }, None)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_line_is_heroku_shaped() {
        let stats = cgroup::Stats {
            memory_current: 22_020_096,
            memory_rss: 20_971_520,
            memory_cache: 1_048_576,
            memory_peak: Some(30 << 20),
            cpu_usage_ns: 1_234_567_890,
            oom_kills: 0,
        };
        assert_eq!(
            metrics_line("web.1", &stats, 512 << 20),
            "source=web.1 sample#memory_total=21.00MB sample#memory_rss=20.00MB sample#memory_cache=1.00MB \
             sample#memory_quota=512.00MB sample#cpu_ms=1234"
        );
    }
}
