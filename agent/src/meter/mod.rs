//! The meter: one thread that owns the usage ledger ([`crate::ledger`]).
//!
//! The engine tells it when a run was exec'd ([`Meter::open`]) and when it
//! ended ([`Meter::close`]: at its exit record's time, or `lost`, with the
//! final reading of its cgroup). Every second the thread checks that each
//! open run is still running ([`alive`]) and records, for all of them in one
//! statement, that they were seen alive then; a slice is billed once its run
//! was seen alive past it, reading the run's cgroup through a
//! [`UsageProbe`] (a `pread` per control file). So however late the meter
//! hears of an end (the agent frozen, the ledger locked, the agent killed),
//! no second past the run's exit is ever written; a run that vanished
//! without an exit record is billed to the last second it was seen alive,
//! which is in the ledger across a `kill -9`.
//!
//! Nothing waits for the ledger. The thread opens it in the background and
//! retries every second while it cannot (another process holds a lock, disk
//! full, I/O error); opens and closes wait in an in-memory queue, in order,
//! and are written once it takes them, and a statement waits at most a
//! quarter of a second for a lock. Every failure is logged at error level
//! (rate-limited). [`Meter::status`] answers from a snapshot the thread
//! publishes, never through the thread; Collect and Ack fail at once with
//! `UNAVAILABLE` while the ledger is locked or not open, and after a few
//! seconds if the thread does not answer.
//!
//! Time is the agent's one [`Clock`], handed over by the engine (the wall
//! clock at start plus the monotonic time since): a wall-clock step while the
//! agent runs moves no boundary. Run start and end times come from the shim's exec and exit
//! records.
//!
//! Files: this one (the handle and its messages), `worker` (the thread),
//! `alive` (whether a run still runs).

mod alive;
mod worker;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{error, warn};

pub use self::alive::{Alive, Liveness, RunsLiveness};
use self::worker::Worker;
use crate::cgroup::CgroupsRef;
use crate::cgroup::Usage;
use crate::error::{Error, Result};
use crate::ledger::{Record, RunInfo, Secs};
use crate::time::{Clock, Time};

/// How long Collect and Ack wait for the meter thread before they answer
/// `UNAVAILABLE` (it never waits long on the ledger: this is a backstop).
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// What the meter is configured with.
#[derive(Clone, Debug)]
pub struct MeterConfig {
    pub ledger: PathBuf,
    pub host_id: String,
    /// Seconds per slice, at least 1.
    pub slice: u64,
    /// How long collected records are kept.
    pub retention: Duration,
    /// Where the runs' directories are (exec and exit records).
    pub runs: PathBuf,
}

/// Whether the ledger takes writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LedgerState {
    /// Not open yet (the first attempt has not ended, or it failed).
    #[default]
    Opening,
    /// Open, and the last write went through.
    Ok,
    /// Another process holds a lock on it.
    Locked,
    /// Writes fail (disk full, I/O error).
    Failing,
}

impl LedgerState {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerState::Opening => "opening",
            LedgerState::Ok => "ok",
            LedgerState::Locked => "locked",
            LedgerState::Failing => "failing",
        }
    }
}

/// How the ledger is doing, for `dynoctl info` and tests: a snapshot the
/// meter thread publishes, read without waiting for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeterStatus {
    pub ledger_path: PathBuf,
    pub ledger: LedgerState,
    /// Since when the ledger has refused writes (or could not be opened).
    pub failing_since: Option<Time>,
    /// Opens and closes waiting for the ledger to accept them.
    pub pending_writes: usize,
    /// The last failure, while the ledger refuses writes.
    pub last_error: Option<String>,
    /// Runs being metered (open in the ledger or waiting to be).
    pub open_runs: usize,
    pub last_seq: u64,
}

impl MeterStatus {
    /// Collect and Ack are served: the ledger is open and not locked, or
    /// the thread is still at its first attempt to open it (which it answers
    /// after, within a lock's short wait).
    fn serves(&self) -> bool {
        match self.ledger {
            LedgerState::Ok | LedgerState::Failing => true,
            LedgerState::Opening => self.failing_since.is_none(),
            LedgerState::Locked => false,
        }
    }

    /// Why Collect and Ack are not served, naming the ledger.
    fn unavailable(&self) -> Error {
        let state = match self.ledger {
            LedgerState::Locked => "is locked by another process (busy)",
            LedgerState::Opening => "is not open yet",
            _ => "refuses writes",
        };
        let since = self
            .failing_since
            .map(|t| format!(" since {}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
            .unwrap_or_default();
        let error = self.last_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
        Error::Unavailable(format!(
            "usage ledger {} {state}{since}{error}; {} writes and {} runs' usage kept in memory, retried every second",
            self.ledger_path.display(),
            self.pending_writes,
            self.open_runs
        ))
    }
}

/// How a run ended, as the meter bills it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// At its exit record's time (or the time the agent saw it exit).
    Exited(Time),
    /// It vanished without an exit record, found so at this time: billed
    /// to the last second it was seen alive.
    Lost(Time),
}

type Reply<T> = oneshot::Sender<Result<T>>;

enum Cmd {
    Open(RunInfo, Secs),
    Close(String, End, Option<Usage>),
    /// Closes the meters of runs that are no dyno's current run.
    Reconcile(HashSet<String>),
    Collect(u64, u32, bool, Reply<(Vec<Record>, bool)>),
    Ack(u64, Reply<u64>),
    Stop(mpsc::Sender<()>),
}

/// The handle of the meter thread.
#[derive(Clone)]
pub struct Meter {
    tx: mpsc::Sender<Cmd>,
    status: Arc<Mutex<MeterStatus>>,
}

impl Meter {
    /// Starts the thread, which opens the ledger in the background (never
    /// waiting for it here) and reads the time from the agent's one `clock`.
    pub fn start(cfg: MeterConfig, cgroups: Option<CgroupsRef>, clock: Clock) -> Meter {
        let liveness = Box::new(RunsLiveness::new(cfg.runs.clone()));
        Meter::start_with(cfg, cgroups, clock, liveness)
    }

    /// [`Meter::start`] with another way of telling whether runs still run.
    pub fn start_with(
        cfg: MeterConfig,
        cgroups: Option<CgroupsRef>,
        clock: Clock,
        liveness: Box<dyn Liveness>,
    ) -> Meter {
        let status = Arc::new(Mutex::new(MeterStatus {
            ledger_path: cfg.ledger.clone(),
            ..MeterStatus::default()
        }));
        let (tx, rx) = mpsc::channel();
        let worker = Worker::new(cfg, cgroups, clock, liveness, status.clone());
        std::thread::Builder::new()
            .name("meter".into())
            .spawn(move || worker.run(rx))
            .expect("spawning the meter thread");
        Meter { tx, status }
    }

    fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_err() {
            error!("the meter thread is gone: usage is not being recorded");
        }
    }

    /// Run `run` was exec'd at `at`.
    pub fn open(&self, run: RunInfo, at: Time) {
        self.send(Cmd::Open(run, at.timestamp()));
    }

    /// Run `run_id` ended; `usage` is its cgroup's final reading.
    pub fn close(&self, run_id: String, end: End, usage: Option<Usage>) {
        self.send(Cmd::Close(run_id, end, usage));
    }

    /// After recovery, once every run that ended while the agent was away has
    /// been closed: `current` holds every dyno's current run; meters of other
    /// runs are closed at their exit record's time (or as lost). No slice is
    /// billed before this.
    pub fn reconcile(&self, current: HashSet<String>) {
        self.send(Cmd::Reconcile(current));
    }

    /// The last status the thread published (never waits for it).
    pub fn snapshot(&self) -> MeterStatus {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T> {
        let status = self.snapshot();
        if !status.serves() {
            return Err(status.unavailable());
        }
        let (tx, rx) = oneshot::channel();
        self.send(make(tx));
        match tokio::time::timeout(ASK_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::Unavailable("the usage meter has stopped".into())),
            Err(_) => Err(Error::Unavailable(format!(
                "usage ledger {} is busy: the meter did not answer within {ASK_TIMEOUT:?}",
                status.ledger_path.display()
            ))),
        }
    }

    /// Records with `seq > after_seq`, at most `limit`, and whether more follow.
    pub async fn collect(&self, after_seq: u64, limit: u32, include_collected: bool) -> Result<(Vec<Record>, bool)> {
        self.ask(|r| Cmd::Collect(after_seq, limit, include_collected, r)).await
    }

    /// Marks every record up to `seq` collected; returns how many were newly marked.
    pub async fn ack(&self, seq: u64) -> Result<u64> {
        self.ask(|r| Cmd::Ack(seq, r)).await
    }

    /// How the ledger is doing; answers at once, whatever its state.
    pub async fn status(&self) -> Result<MeterStatus> {
        Ok(self.snapshot())
    }

    /// Writes what is queued (as far as the ledger lets it) and ends the
    /// thread; waits at most `timeout`.
    pub fn stop(&self, timeout: Duration) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Cmd::Stop(tx)).is_ok() && rx.recv_timeout(timeout).is_err() {
            warn!("the meter did not stop in time");
        }
    }
}

#[cfg(test)]
mod tests;
