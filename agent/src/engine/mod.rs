//! The driver around the supervisor: one actor task that owns every dyno.
//!
//! API calls, run reports (exec'd, port bound, exited) and timers arrive as
//! messages; the actor feeds them to each dyno's
//! [`Supervision`](crate::supervisor::Supervision), persists the dyno record,
//! and carries out the returned actions: spawn a shim, signal a run, write a
//! runtime log line, publish an event. Nothing else mutates dyno state, so
//! there are no locks and no races between, say, a stop and a crash.
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
//!
//! Files, one sub-concern each:
//! - this one: the [`Engine`] handle, its messages, and [`start`];
//! - `actor`: the message loop, requests, and carrying out actions;
//! - `start`: `StartDyno`'s path, changes answered once durable, one-off names;
//! - `model`: the dyno spec, record and view; `store`: records on disk;
//! - `events`: the event log and the `WatchEvents` buffer;
//! - `admission`: memory admission, port and uid allocation;
//! - `launch`: preparing a run and spawning its shim; `signal`: signalling runs;
//! - `settle`: how an ended run ended; `readopt`: re-adoption after a restart;
//! - `metrics`: runtime metrics lines, R14, OOM of a whole dyno (v1), the
//!   readings a Prometheus scrape shows; `load`: a dyno's own load averages;
//! - `stats`: per-dyno figures on demand; `cordon`: a host that takes no
//!   new starts; `fds`: the descriptor budget and its admission;
//!   `stop_many`: a stop of many dynos with the disk's work batched.

mod actor;
mod admission;
mod cordon;
mod events;
pub mod fds;
mod launch;
mod load;
mod metrics;
mod model;
mod pending;
mod readopt;
mod remove;
mod settle;
mod signal;
mod start;
mod stats;
mod stop_many;
mod store;
#[cfg(test)]
mod testkit;

use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use self::actor::Actor;
use crate::cgroup::{self, CgroupsRef};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::meter::{Meter, MeterConfig};
use crate::supervisor::Input;

pub use self::cordon::{Cordon, REASON_MAX as CORDON_REASON_MAX};
pub use self::events::{Event, Snapshot, Watch};
pub use self::launch::shell_command;
pub use self::load::LoadAvg;
pub use self::metrics::{metrics_line, r14_lines};
pub use self::model::{
    Attach, DynoRecord, DynoSpec, DynoView, LogSource, Selector, StartRequest, Summary, dyno_metadata, run_env,
};
pub use self::pending::PendingStart;
pub use self::stats::DynoStats;
pub use self::store::Paths;
pub use crate::time::Clock;

type Reply<T> = oneshot::Sender<T>;
/// A dyno's key: its app and its name.
type Key = (String, String);

enum Msg {
    Start(Box<StartRequest>, Reply<Result<DynoView>>),
    Stop(Selector, Reply<Result<Vec<DynoView>>>),
    Restart(Selector, Reply<Result<Vec<DynoView>>>),
    Get(String, String, Reply<Result<DynoView>>),
    List(ListFilter, Reply<Listing>),
    Stats(Option<String>, Option<String>, Reply<Vec<stats::StatsTarget>>),
    /// Cordons (`Some(reason)`) or uncordons the host.
    Cordon(Option<String>, Reply<Result<Option<Cordon>>>),
    /// Events after a seq of a series; `None`: a snapshot first.
    Watch(Option<u64>, String, Reply<Watch>),
    Logs(Option<String>, Option<String>, Reply<Vec<LogSource>>),
    Summary(Reply<Summary>),
    NextOneOff(String, Reply<Result<String>>),
    /// A start in flight of a dyno (with its request id): its token, or
    /// why it is refused before its slug is prepared (a cordoned host).
    Pending(Key, Option<String>, Reply<Result<u64>>),
    /// A start in flight that will not reach the engine.
    Unpend(u64),
    Remove(Key, Reply<Result<DynoView>>),
    Run(Key, Input),
    /// A run's shim is gone: how it ended, and its cgroup's last usage.
    Ended(Key, Input, Option<cgroup::Usage>),
    /// The address of a run's network, once set up.
    Address(Key, String, std::net::Ipv4Addr),
    /// Every dyno as a Prometheus scrape shows it.
    Scrape(Reply<Vec<crate::telemetry::DynoRow>>),
}

/// Which dynos a listing shows.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Only this app's; all when `None`.
    pub app: Option<String>,
    /// Only those in one of these states; all when empty.
    pub states: Vec<crate::supervisor::State>,
}

/// Dynos, with the event log position they reflect: watching from `seq` of
/// `series` misses no change after the listing.
#[derive(Clone, Debug)]
pub struct Listing {
    pub dynos: Vec<DynoView>,
    pub seq: u64,
    pub series: String,
}

/// A cheap, cloneable handle to the engine.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::UnboundedSender<Msg>,
    meter: Meter,
    /// `None` only in the unjailed development mode without cgroups.
    cgroups: Option<CgroupsRef>,
    clock: Clock,
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
    /// Removes a `down` dyno (record, run directories); `FAILED_PRECONDITION`
    /// for one that is not down.
    pub async fn remove(&self, app: &str, name: &str) -> Result<DynoView> {
        self.call(|r| Msg::Remove((app.into(), name.into()), r)).await?
    }
    pub async fn get(&self, app: &str, name: &str) -> Result<DynoView> {
        self.call(|r| Msg::Get(app.into(), name.into(), r)).await?
    }
    pub async fn list(&self, app: Option<String>) -> Result<Vec<DynoView>> {
        let filter = ListFilter {
            app,
            states: Vec::new(),
        };
        Ok(self.listing(filter).await?.dynos)
    }
    /// The dynos `filter` selects, and the event position they reflect.
    pub async fn listing(&self, filter: ListFilter) -> Result<Listing> {
        self.call(|r| Msg::List(filter, r)).await
    }
    /// The cgroup figures of the running dynos of `app` (all when `None`)
    /// named or of process type `dyno` (all when `None`); and the dynos whose
    /// cgroup could not be read, with why.
    pub async fn stats(&self, app: Option<String>, dyno: Option<String>) -> Result<(Vec<DynoStats>, Vec<String>)> {
        let targets = self.call(|r| Msg::Stats(app, dyno, r)).await?;
        let Some(cgroups) = self.cgroups.clone() else {
            return Ok((
                Vec::new(),
                targets
                    .iter()
                    .map(|t| format!("{}/{}: no cgroups (development mode)", t.app, t.dyno))
                    .collect(),
            ));
        };
        let now = self.clock.now();
        tokio::task::spawn_blocking(move || stats::read(&cgroups, targets, now))
            .await
            .map_err(|e| Error::Internal(format!("stats task: {e}")))
    }
    /// Cordons the host: starts are refused until [`uncordon`](Self::uncordon).
    pub async fn cordon(&self, reason: String) -> Result<Option<Cordon>> {
        self.call(|r| Msg::Cordon(Some(reason), r)).await?
    }
    pub async fn uncordon(&self) -> Result<Option<Cordon>> {
        self.call(|r| Msg::Cordon(None, r)).await?
    }
    /// The events after `after_seq` of `series` (empty: any series).
    pub async fn watch(&self, after_seq: u64, series: &str) -> Result<Watch> {
        self.call(|r| Msg::Watch(Some(after_seq), series.into(), r)).await
    }
    /// A snapshot of every dyno and the events after it (the scheduler's hello).
    pub async fn subscribe(&self) -> Result<Watch> {
        self.call(|r| Msg::Watch(None, String::new(), r)).await
    }
    pub async fn log_sources(&self, app: Option<String>, dyno: Option<String>) -> Result<Vec<LogSource>> {
        self.call(|r| Msg::Logs(app, dyno, r)).await
    }
    pub async fn summary(&self) -> Result<Summary> {
        self.call(Msg::Summary).await
    }
    /// Registers a start of dyno `name` of `app` in flight (its slug being
    /// prepared): a stop that selects it meanwhile cancels it. The start
    /// passes the token in [`StartRequest::pending`]; dropping it forgets it.
    pub async fn pending(&self, app: &str, name: &str, request_id: Option<String>) -> Result<pending::PendingStart> {
        let token = self
            .call(|r| Msg::Pending((app.into(), name.into()), request_id, r))
            .await??;
        Ok(pending::PendingStart {
            token,
            tx: self.tx.clone(),
        })
    }
    /// Every dyno as a Prometheus scrape shows it (the figures of the last
    /// metrics sample).
    pub async fn scrape(&self) -> Result<Vec<crate::telemetry::DynoRow>> {
        self.call(Msg::Scrape).await
    }
    /// The next free `run.N` name of an app.
    pub async fn next_one_off(&self, app: &str) -> Result<String> {
        self.call(|r| Msg::NextOneOff(app.into(), r)).await?
    }
}

/// Opens the state directory, re-adopts what is running and starts the actor.
/// The actor ends when `shutdown` resolves; dynos keep running.
pub async fn start(
    cfg: Arc<Config>,
    clock: Clock,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Engine, tokio::task::JoinHandle<()>)> {
    let paths = Paths::new(&cfg.state_dir);
    // Records and runs are root's alone; the slug cache keeps the modes the
    // dynos read it with (through their mounts).
    for dir in [&paths.dynos, &paths.runs] {
        crate::private::create_dir_all(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(&paths.slugs).map_err(|e| anyhow::anyhow!("creating {}: {e}", paths.slugs.display()))?;
    let events =
        events::EventLog::open(paths.events.clone()).map_err(|e| anyhow::anyhow!("{}: {e}", paths.events.display()))?;
    let exe = std::env::current_exe().map_err(|e| anyhow::anyhow!("locating the agent binary: {e}"))?;
    let cgroups: Option<CgroupsRef> = match cgroup::for_agent(&cfg.cgroup_root, &cfg.cgroup_parent) {
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
        clock,
    );
    let allocatable = crate::host::allocatable(
        crate::host::stats().memory_total,
        cfg.memory_reserve,
        cfg.memory_overcommit,
    );
    // Before re-adoption: what a crashed agent left is torn down, the
    // networks of live runs are kept.
    let network = crate::net::Network::open(&cfg).await?;
    if let Some(net) = &network {
        net.sweep(&live_networks(&paths.runs)).await;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let cfg_state_dir = cfg.state_dir.clone();
    let mut actor = Actor {
        cgroups: cgroups.clone(),
        policy: cfg.policy(),
        cfg,
        clock,
        paths,
        exe,
        dynos: BTreeMap::new(),
        events,
        meter: meter.clone(),
        allocatable,
        network: network.clone(),
        cordon: cordon::load(&cfg_state_dir, clock.now()),
        claims: Default::default(),
        unsaved: BTreeMap::new(),
        state_disk_full: false,
        pending: Default::default(),
        fds: fds::Budget::current(),
        run_work: Arc::new(tokio::sync::Semaphore::new(fds::RUN_WORK_SLOTS)),
        unaccounted: Default::default(),
        samplers: Default::default(),
        oom_kills: Default::default(),
        tx: tx.clone(),
    };
    actor.recover()?;
    if let Some(net) = &network {
        net.dyno_ports_are(actor.dynos.values().filter_map(|e| e.rec.spec.port).collect());
    }
    let task = match network {
        // The pool fills once re-adoption has settled the ports dynos hold,
        // and ends with the actor.
        Some(net) => {
            let (stop_pool, pool_stopped) = oneshot::channel::<()>();
            let pool = tokio::spawn(net.background(async {
                let _ = pool_stopped.await;
            }));
            tokio::spawn(async move {
                actor.run(rx, shutdown).await;
                let _ = stop_pool.send(());
                let _ = pool.await;
            })
        }
        None => tokio::spawn(actor.run(rx, shutdown)),
    };
    Ok((
        Engine {
            tx,
            meter,
            cgroups,
            clock,
        },
        task,
    ))
}

/// The network namespace of every run whose shim lives, by run id (from
/// its spec).
fn live_networks(runs_root: &std::path::Path) -> std::collections::HashMap<String, std::path::PathBuf> {
    crate::runs::live_shims(runs_root)
        .into_iter()
        .filter_map(|(run_id, _)| {
            let spec = crate::runs::RunDir::new(runs_root, &run_id).read_spec().ok()??;
            Some((run_id, spec.jail?.netns?))
        })
        .collect()
}
