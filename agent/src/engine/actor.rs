//! The actor: the one task that owns every dyno. It takes messages (API
//! calls, run reports), fires due deadlines and samples metrics; each input
//! goes through the dyno's [`Supervision`] and the actions that come back
//! are carried out here, after the record is persisted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, error, info, warn};

use super::events::{EventLog, Watch};
use super::model::{DynoRecord, DynoView, LogSource, Selector, Summary};
use super::start::next_one_off;
use super::store::Paths;
use super::{Key, Msg};
use crate::cgroup::{self, CgroupsRef};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::ledger::RunInfo;
use crate::logs;
use crate::meter::Meter;
use crate::net::NetworkRef;
use crate::runs::RunDir;
use crate::supervisor::{Action, Ctx, Input, Policy};
use crate::time::{Clock, Time};

/// A dyno and what the actor holds for its current run.
pub(super) struct Entry {
    pub(super) rec: DynoRecord,
    /// Port probe of the current run.
    pub(super) probe: Option<AbortHandle>,
}

pub(super) struct Actor {
    pub(super) cfg: Arc<Config>,
    /// `None` only in the unjailed development mode without cgroups.
    pub(super) cgroups: Option<CgroupsRef>,
    pub(super) policy: Policy,
    pub(super) clock: Clock,
    pub(super) paths: Paths,
    pub(super) exe: PathBuf,
    pub(super) dynos: BTreeMap<Key, Entry>,
    pub(super) events: EventLog,
    pub(super) meter: Meter,
    /// Admission's bound on committed memory.
    pub(super) allocatable: u64,
    /// The dynos' networks (`None` with `network = "host"`).
    pub(super) network: Option<NetworkRef>,
    /// Networks picked for prepared runs, until their spawn takes them.
    pub(super) claims: std::collections::HashMap<String, crate::net::Claim>,
    pub(super) tx: mpsc::UnboundedSender<Msg>,
    /// Dynos whose record could not be written, and why: written again by
    /// the housekeeping tick.
    pub(super) unsaved: BTreeMap<Key, String>,
    /// Set while the host is cordoned: starts are refused.
    pub(super) cordon: Option<super::cordon::Cordon>,
    /// Whether the state disk was full at the last housekeeping.
    pub(super) state_disk_full: bool,
    /// Starts in flight (their slugs being prepared), for a stop to cancel.
    pub(super) pending: super::pending::PendingStarts,
    /// The descriptor limit dynos are admitted against (`fds`).
    pub(super) fds: super::fds::Budget,
    /// Slots of runs spawned or settled at once (their descriptors are in
    /// the reserve, see `fds::RUN_WORK_SLOTS`).
    pub(super) run_work: Arc<tokio::sync::Semaphore>,
    /// Live runs found at start that no record names and whose spec does
    /// not say whose they are: left running, their cgroups and directories
    /// kept.
    pub(super) unaccounted: std::collections::HashSet<String>,
    /// The metrics, load and OOM samplers and their last readings.
    pub(super) samplers: super::metrics::Samplers,
    /// Runs of each dyno the memory limit killed since the agent started.
    pub(super) oom_kills: std::collections::HashMap<Key, u64>,
}

/// The most queued messages handled in one go (see [`Actor::handle_queued`]).
const QUEUED: usize = 256;

/// How often what could not be written (events, records) is tried again.
const HOUSEKEEPING: std::time::Duration = std::time::Duration::from_secs(1);

impl Actor {
    pub(super) async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut metrics = tokio::time::interval(self.cfg.metrics_interval);
        metrics.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        metrics.tick().await;
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut load = tokio::time::interval(super::metrics::LOAD_TICK.min(self.cfg.metrics_interval));
        load.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut oom = tokio::time::interval(super::metrics::OOM_POLL);
        oom.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.dynos.values().filter_map(|e| e.rec.sup.next_deadline()).min();
            let sleep_until = deadline.map(|d| self.clock.instant(d));
            tokio::select! {
                _ = &mut shutdown => break,
                msg = rx.recv() => match msg {
                    Some(msg) => {
                        self.handle(msg);
                        self.handle_queued(&mut rx);
                    }
                    None => break,
                },
                _ = async {
                    match sleep_until {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => self.tick(),
                _ = metrics.tick() => self.sample_metrics(),
                _ = load.tick() => self.sample_load(),
                _ = oom.tick() => self.watch_oom(),
                _ = housekeeping.tick() => self.housekeeping(),
            }
        }
        for e in self.dynos.values() {
            if let Some(p) = &e.probe {
                p.abort();
            }
        }
        info!("engine stopped; dynos keep running");
    }

    /// Handles what else is queued (up to [`QUEUED`] messages) before the
    /// loop looks at every dyno's deadline again: on a dense host that look
    /// is a walk over thousands of dynos, and a burst of run reports (a stop
    /// of all dynos ends thousands of runs) need not pay it for each. The
    /// events of consecutive run reports are appended and synced together
    /// (published, as ever, only once durable); anything else is handled
    /// after them.
    fn handle_queued(&mut self, rx: &mut mpsc::UnboundedReceiver<Msg>) {
        let mut held = false;
        for _ in 0..QUEUED {
            let Ok(msg) = rx.try_recv() else { break };
            let report = matches!(msg, Msg::Run(..) | Msg::Ended(..));
            if report != held {
                if report {
                    self.events.hold();
                } else {
                    self.events.release();
                }
                held = report;
            }
            self.handle(msg);
        }
        if held {
            self.events.release();
        }
    }

    /// Writes what could not be written before: pending events, records;
    /// says when the state disk fills up or has room again.
    fn housekeeping(&mut self) {
        let (free, full) = crate::os::disk_space(&self.cfg.state_dir);
        if full != self.state_disk_full {
            self.state_disk_full = full;
            if full {
                error!(state_dir = %self.cfg.state_dir.display(), free,
                    "THE STATE DISK IS FULL: dynos keep running; their log lines are dropped and counted, runs that cannot be prepared are retried, events and records wait");
            } else {
                info!(state_dir = %self.cfg.state_dir.display(), free, "the state disk has room again");
            }
        }
        self.remove_expired_one_offs(self.clock.now());
        self.events.flush();
        let keys: Vec<Key> = self.unsaved.keys().cloned().collect();
        for key in keys {
            if self.dynos.contains_key(&key) {
                let _ = self.persist(&key);
            } else {
                self.unsaved.remove(&key);
            }
        }
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
                let cancelled = self.pending.cancel(&sel);
                let r = match self.each(&sel, Input::Stop) {
                    // Only starts in flight: cancelled, nothing to show yet.
                    Err(Error::NotFound(_)) if cancelled > 0 => Ok(Vec::new()),
                    r => r,
                };
                let _ = reply.send(r);
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
            Msg::List(filter, reply) => {
                let dynos = self
                    .dynos
                    .values()
                    .filter(|e| filter.app.as_ref().is_none_or(|a| e.rec.spec.app == *a))
                    .filter(|e| filter.states.is_empty() || filter.states.contains(&e.rec.sup.state))
                    .map(|e| e.rec.view())
                    .collect();
                let (seq, series) = self.events.position();
                let _ = reply.send(super::Listing { dynos, seq, series });
            }
            Msg::Stats(app, dyno, reply) => {
                let _ = reply.send(self.stats_targets(&app, &dyno));
            }
            Msg::Cordon(reason, reply) => {
                let _ = reply.send(self.set_cordon(reason));
            }
            Msg::Watch(after, series, reply) => {
                let _ = reply.send(self.watch(after, &series));
            }
            Msg::Logs(app, dyno, reply) => {
                let _ = reply.send(self.log_sources(app, dyno));
            }
            Msg::Summary(reply) => {
                let _ = reply.send(self.summary());
            }
            Msg::NextOneOff(app, reply) => {
                let _ = reply.send(next_one_off(self.dynos.keys(), &app));
            }
            Msg::Pending(key, request_id, reply) => {
                // A retry of a start that was taken is answered as before;
                // anything else waits for no slug on a cordoned host.
                let replay = request_id.as_deref().is_some_and(|rid| self.holder_of(rid).is_some());
                let r = match replay {
                    true => Ok(self.pending.add(key)),
                    false => self
                        .refuse_if_cordoned(&key)
                        .and_then(|()| self.admit_pending_fds(&key))
                        .map(|()| self.pending.add(key)),
                };
                let _ = reply.send(r);
            }
            Msg::Unpend(token) => self.pending.remove(token),
            Msg::Remove(key, reply) => {
                let _ = reply.send(self.remove_dyno(&key, "removed"));
            }
            Msg::Run(key, Input::SpawnFailed { run_id, error }) => {
                self.step(
                    &key,
                    Input::SpawnFailed {
                        run_id: run_id.clone(),
                        error,
                    },
                );
                self.abandon_run(&key, &run_id);
            }
            Msg::Run(key, input) => self.step(&key, input),
            Msg::Ended(key, input, usage) => {
                self.meter_close(&input, usage);
                if let Input::Exited { run_id, end } = &input
                    && end.oom
                    && self
                        .dynos
                        .get(&key)
                        .is_some_and(|e| e.rec.sup.run.as_ref().is_some_and(|r| r.id == *run_id))
                {
                    crate::telemetry::oom_killed();
                    *self.oom_kills.entry(key.clone()).or_default() += 1;
                }
                self.step(&key, input);
            }
            Msg::Scrape(reply) => {
                let _ = reply.send(self.scrape_rows());
            }
            Msg::Address(key, run_id, address) => {
                if let Some(e) = self.dynos.get_mut(&key)
                    && e.rec.sup.run.as_ref().is_some_and(|r| r.id == run_id)
                {
                    // Persisted with the Spawned step that follows.
                    e.rec.address = Some(address);
                }
            }
        }
    }

    fn watch(&self, after: Option<u64>, series: &str) -> Watch {
        self.events
            .watch(after, series, || self.dynos.values().map(|e| e.rec.view()).collect())
    }

    fn summary(&self) -> Summary {
        let mut s = Summary {
            cgroup_version: self.cgroups.as_ref().map(|c| c.version().to_string()),
            memory_committed: self.committed(None),
            memory_allocatable: self.allocatable,
            ..Summary::default()
        };
        (s.state_disk_free, s.state_disk_full) = crate::os::disk_space(&self.cfg.state_dir);
        if let Some((n, why)) = self.events.trouble() {
            s.state_unwritten.push(format!("{n} events: {why}"));
        }
        s.cordon = self.cordon.clone();
        s.fds = self.fds_usage();
        if let Some(why) = self.unsaved.values().next() {
            s.state_unwritten
                .push(format!("{} dyno records: {why}", self.unsaved.len()));
        }
        for e in self.dynos.values() {
            *s.by_state.entry(e.rec.sup.state.as_str()).or_default() += 1;
        }
        s
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
        // Each dyno's change is answered only once its record is written;
        // one that cannot be changed stays as it was and is named.
        let refused = if input == Input::Stop && keys.len() > 1 {
            self.stop_many(&keys)
        } else {
            self.each_in_turn(&keys, &input)
        };
        let Some((_, e)) = refused.first() else {
            return Ok(keys.iter().map(|k| self.dynos[k].rec.view()).collect());
        };
        // Say exactly what changed and what did not.
        let names = |ks: &mut dyn Iterator<Item = &Key>| ks.map(|k| k.1.as_str()).collect::<Vec<_>>().join(", ");
        let unchanged = names(&mut refused.iter().map(|(k, _)| *k));
        let changed = names(&mut keys.iter().filter(|k| !refused.iter().any(|(r, _)| r == k)));
        let message = format!(
            "not changed: {unchanged}; changed: {}: {e}",
            if changed.is_empty() { "none" } else { &changed }
        );
        Err(match e {
            Error::ResourceExhausted(reason, _) => Error::ResourceExhausted(*reason, message),
            Error::FailedPrecondition(reason, _) => Error::FailedPrecondition(*reason, message),
            _ => Error::Internal(message),
        })
    }

    /// [`Actor::each`]'s changes one dyno after the other; returns the
    /// dynos that could not be changed, with why.
    fn each_in_turn<'k>(&mut self, keys: &'k [Key], input: &Input) -> Vec<(&'k Key, Error)> {
        let mut refused = Vec::new();
        for k in keys {
            // A down dyno that starts again takes a fresh uid and port; on
            // a cordoned host it stays down.
            let fresh = match (input, self.dynos[k].rec.idle()) {
                (Input::Restart, true) => match self
                    .refuse_if_cordoned(k)
                    .and_then(|()| {
                        let spec = &self.dynos[k].rec.spec;
                        self.admit_fds(k, spec.ptype == "web", spec.one_off && spec.attach.is_some())
                    })
                    .and_then(|()| self.fresh_allocation(k))
                {
                    Ok(f) => Some(f),
                    Err(e) => {
                        refused.push((k, e));
                        continue;
                    }
                },
                _ => None,
            };
            let r = self.step_durably(k, input.clone(), |rec| {
                if let Some((uid, port)) = fresh {
                    rec.uid = uid;
                    rec.spec.port = port;
                }
            });
            if let Err(e) = r {
                self.unreserve_port(fresh.and_then(|(_, p)| p));
                refused.push((k, e));
            }
        }
        refused
    }

    /// Every dyno as a Prometheus scrape shows it.
    fn scrape_rows(&self) -> Vec<crate::telemetry::DynoRow> {
        let figures = self.samplers.figures.lock().unwrap_or_else(|e| e.into_inner());
        self.dynos
            .iter()
            .map(|(key, e)| {
                let spec = &e.rec.spec;
                let size = self.cfg.sizes.get(&spec.size);
                let stats = e.rec.sup.run.as_ref().and_then(|r| figures.get(&r.id)?.stats);
                crate::telemetry::DynoRow {
                    app: spec.app.clone(),
                    dyno: spec.name.clone(),
                    ptype: spec.ptype.clone(),
                    size: spec.size.clone(),
                    state: e.rec.sup.state.as_str(),
                    restarts: u64::from(e.rec.sup.restarts),
                    oom_kills: self.oom_kills.get(key).copied().unwrap_or(0),
                    cpu_seconds: stats.map_or(0.0, |s| s.cpu_usage_ns as f64 / 1e9),
                    memory_bytes: stats.map_or(0, |s| s.memory_current + s.memory_swap),
                    memory_quota_bytes: size.map_or(0, |s| s.memory_bytes),
                    memory_kill_bytes: size.map_or(0, |s| s.memory_kill_bytes()),
                }
            })
            .collect()
    }

    /// Feeds one input to a dyno and carries out the actions.
    pub(super) fn step(&mut self, key: &Key, input: Input) {
        if let Input::Spawned { run_id, at, .. } = &input {
            self.meter_open(key, run_id, *at);
            if let Some(run) = self.dynos.get(key).and_then(|e| e.rec.sup.run.as_ref())
                && run.id == *run_id
                && run.pid.is_none()
            {
                crate::telemetry::started((*at - run.spawned_at).num_microseconds().unwrap_or(0) as f64 / 1e6);
            }
        }
        let now = self.clock.now();
        if !self.dynos.contains_key(key) {
            return;
        }
        debug!(app = %key.0, dyno = %key.1, ?input, "input");
        let peers = self.peers_for(key, &input);
        let entry = self.dynos.get_mut(key).expect("present");
        let actions = decide(&self.policy, now, &mut entry.rec, input, &peers);
        self.apply(key, actions, false);
    }

    /// [`Actor::peers`] for the inputs whose step reads them (a run's exec
    /// picks its cycle time among its peers', a due cycle waits for a peer's),
    /// none for the others: finding them walks the dyno's whole app, which
    /// on a dense host is thousands of dynos for every start and exit.
    pub(super) fn peers_for(&self, key: &Key, input: &Input) -> crate::supervisor::Peers {
        match input {
            Input::Spawned { .. } | Input::Tick => self.peers(key),
            _ => crate::supervisor::Peers::default(),
        }
    }

    /// What a dyno's step knows of the other dynos of its app and process
    /// type (one-offs have none): their cycle times, and whether one is out
    /// of `up` because of its cycle.
    pub(super) fn peers(&self, key: &Key) -> crate::supervisor::Peers {
        let mut peers = crate::supervisor::Peers::default();
        let Some(me) = self.dynos.get(key) else { return peers };
        if me.rec.spec.one_off {
            return peers;
        }
        let app = (key.0.clone(), String::new());
        for (k, e) in self.dynos.range(app..).take_while(|(k, _)| k.0 == key.0) {
            if k == key || e.rec.spec.one_off || e.rec.spec.ptype != me.rec.spec.ptype {
                continue;
            }
            peers.cycles.extend(e.rec.sup.cycle_at);
            peers.cycling |= e.rec.sup.cycling;
        }
        peers
    }

    /// Carries out a dyno's actions; its record is written first unless it
    /// already was (`saved`).
    pub(super) fn apply(&mut self, key: &Key, actions: Vec<Action>, saved: bool) {
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
        // knows every run it may have started. A run whose record could not
        // be written is not spawned.
        if !saved && let Err(e) = self.persist(key) {
            for a in &actions {
                if let Action::Spawn { run_id } = a
                    && !unprepared.iter().any(|(id, _)| id == run_id)
                {
                    unprepared.push((run_id.clone(), e.clone()));
                }
            }
        }
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
                        && let Err(e) = logs::append_runtime(log, &key.1, &text, self.cfg.log_max_bytes)
                    {
                        warn!(path = %log.display(), error = %e, "cannot write runtime log line");
                    }
                }
                Action::Changed { from, to, reason } => {
                    if to == crate::supervisor::State::Starting && reason != "start" {
                        crate::telemetry::restarted(reason);
                    }
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
    pub(super) fn meter_open(&self, key: &Key, run_id: &str, at: Time) {
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

    /// Bills a run that ended up to its end: its exit time, or for a run
    /// that vanished without an exit record, the last second it was seen
    /// alive.
    pub(super) fn meter_close(&self, input: &Input, usage: Option<cgroup::Usage>) {
        if let Input::Exited { run_id, end } = input {
            let end = if end.lost {
                crate::meter::End::Lost(end.at)
            } else {
                crate::meter::End::Exited(end.at)
            };
            self.meter.close(run_id.clone(), end, usage);
        }
    }

    /// Writes a dyno's record; a failure is logged (once until it passes)
    /// and the record is written again by the housekeeping tick.
    pub(super) fn persist(&mut self, key: &Key) -> std::result::Result<(), String> {
        match self.paths.save_record(&key.0, &key.1, &self.dynos[key].rec) {
            Ok(()) => {
                if self.unsaved.remove(key).is_some() {
                    info!(app = %key.0, dyno = %key.1, "dyno record written again");
                }
                Ok(())
            }
            Err(e) => {
                let why = format!("cannot write the dyno record: {e}");
                if self.unsaved.get(key) != Some(&why) {
                    error!(app = %key.0, dyno = %key.1, error = %why, "the record waits for the disk");
                }
                self.unsaved.insert(key.clone(), why.clone());
                Err(why)
            }
        }
    }
}

/// What a dyno's supervision makes of an input at `now`.
pub(super) fn decide(
    policy: &Policy,
    now: Time,
    rec: &mut DynoRecord,
    input: Input,
    peers: &crate::supervisor::Peers,
) -> Vec<Action> {
    let profile = rec.spec.profile();
    let mut rng = rand::rng();
    let mut jitter = || rng.random::<f64>();
    let mut cx = Ctx {
        profile: &profile,
        policy,
        now,
        jitter: &mut jitter,
        peers,
    };
    let failed_run = match &input {
        Input::SpawnFailed { run_id, .. } if rec.sup.run.as_ref().is_some_and(|r| r.id == *run_id) => {
            Some(run_id.clone())
        }
        _ => None,
    };
    let actions = rec.sup.step(&mut cx, input);
    // Kept past later runs: why the dyno last failed to start.
    if let Some(run_id) = failed_run {
        let message = rec.sup.last_exit.as_ref().and_then(|x| x.message.clone());
        rec.last_spawn_error = Some(super::model::SpawnError {
            at: now,
            run_id,
            message: message.unwrap_or_default(),
        });
    }
    actions
}
