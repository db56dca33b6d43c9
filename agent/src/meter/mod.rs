//! The meter: one thread that owns the usage ledger ([`crate::ledger`]).
//!
//! The engine tells it when a run was exec'd ([`Meter::open`]) and when it
//! ended ([`Meter::close`], with the final reading of its cgroup); at every
//! slice boundary the thread reads the cgroup of each open run through a
//! [`UsageProbe`] (a `pread` per control file) and writes the slice that
//! just ended for all of them in one transaction.
//!
//! Nothing is lost when the ledger cannot be written (disk full, I/O error):
//! opens and closes wait in an in-memory queue, in order, and are retried
//! every second until they commit; a failed slice write leaves the meters
//! where they were, so the next attempt writes the same spans. Every failure
//! is logged at error level, and [`Meter::status`] reports the queue and the
//! last error. A run with a close still queued is not billed past its end.
//!
//! Time is the agent's one [`Clock`], handed over by the engine (the wall
//! clock at start plus the monotonic time since): a wall-clock step while the
//! agent runs moves no boundary. Run start and end times come from the shim's exec and exit
//! records.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use crate::cgroup::CgroupsRef;
use crate::cgroup::{Usage, UsageProbe};
use crate::error::{Error, Result};
use crate::ledger::{Ledger, LedgerError, Record, RunInfo, Secs, slice_start};
use crate::runs::RunDir;
use crate::time::{Clock, Time};

/// How often queued writes are retried while the ledger fails.
const RETRY: Duration = Duration::from_secs(1);
/// How often collected records past retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Woken this long after a boundary, so that the boundary has surely passed.
const AFTER_BOUNDARY: Duration = Duration::from_millis(5);

/// What the meter is configured with.
#[derive(Clone, Debug)]
pub struct MeterConfig {
    pub ledger: PathBuf,
    pub host_id: String,
    /// Seconds per slice, at least 1.
    pub slice: u64,
    /// How long collected records are kept.
    pub retention: Duration,
    /// Where the runs' directories are (exit records, for reconciliation).
    pub runs: PathBuf,
}

/// How the ledger is doing, for `dynoctl info` and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeterStatus {
    /// Opens and closes waiting for the ledger to accept them.
    pub pending_writes: usize,
    /// The last write that failed, while writes are failing.
    pub last_error: Option<String>,
    pub open_runs: usize,
    pub last_seq: u64,
}

type Reply<T> = oneshot::Sender<Result<T>>;

enum Cmd {
    Open(RunInfo, Secs),
    Close(String, Secs, Option<Usage>),
    /// Closes the meters of runs that are no dyno's current run.
    Reconcile(HashSet<String>),
    Collect(u64, u32, bool, Reply<(Vec<Record>, bool)>),
    Ack(u64, Reply<u64>),
    Status(Reply<MeterStatus>),
    Stop(std::sync::mpsc::Sender<()>),
}

/// A queued write.
#[derive(Debug)]
enum Write {
    Open(RunInfo, Secs),
    Close(String, Secs, Option<Usage>),
}

/// The handle of the meter thread.
#[derive(Clone)]
pub struct Meter {
    tx: mpsc::Sender<Cmd>,
}

impl Meter {
    /// Opens the ledger (an error names it) and starts the thread, which
    /// reads the time from the agent's one `clock`.
    pub fn start(
        cfg: MeterConfig,
        cgroups: Option<CgroupsRef>,
        clock: Clock,
    ) -> std::result::Result<Meter, LedgerError> {
        let ledger = Ledger::open(&cfg.ledger, &cfg.host_id, cfg.slice)?;
        info!(
            path = %cfg.ledger.display(),
            slice_secs = cfg.slice,
            open_runs = ledger.open_runs().count(),
            "usage ledger open"
        );
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            ledger,
            cgroups,
            clock,
            probes: HashMap::new(),
            queue: VecDeque::new(),
            carried_peaks: HashMap::new(),
            last_error: None,
            slice_failing: false,
            last_prune: None,
            reconciled: false,
            cfg,
        };
        std::thread::Builder::new()
            .name("meter".into())
            .spawn(move || worker.run(rx))
            .expect("spawning the meter thread");
        Ok(Meter { tx })
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

    /// Run `run_id` ended at `at`; `usage` is its cgroup's final reading.
    pub fn close(&self, run_id: String, at: Time, usage: Option<Usage>) {
        self.send(Cmd::Close(run_id, at.timestamp(), usage));
    }

    /// After recovery, once every run that ended while the agent was away has
    /// been closed: `current` holds every dyno's current run; meters of other
    /// runs are closed at their exit record's time. No slice is billed before
    /// this.
    pub fn reconcile(&self, current: HashSet<String>) {
        self.send(Cmd::Reconcile(current));
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx));
        rx.await
            .map_err(|_| Error::Unavailable("the usage meter has stopped".into()))?
    }

    /// Records with `seq > after_seq`, at most `limit`, and whether more follow.
    pub async fn collect(&self, after_seq: u64, limit: u32, include_collected: bool) -> Result<(Vec<Record>, bool)> {
        self.ask(|r| Cmd::Collect(after_seq, limit, include_collected, r)).await
    }

    /// Marks every record up to `seq` collected; returns how many were newly marked.
    pub async fn ack(&self, seq: u64) -> Result<u64> {
        self.ask(|r| Cmd::Ack(seq, r)).await
    }

    pub async fn status(&self) -> Result<MeterStatus> {
        self.ask(Cmd::Status).await
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

struct Worker {
    cfg: MeterConfig,
    ledger: Ledger,
    cgroups: Option<CgroupsRef>,
    clock: Clock,
    probes: HashMap<String, Box<dyn UsageProbe>>,
    /// Writes not committed yet, in order.
    queue: VecDeque<Write>,
    /// Memory peaks read for a slice whose write failed (the read reset them).
    carried_peaks: HashMap<String, u64>,
    last_error: Option<String>,
    slice_failing: bool,
    last_prune: Option<Instant>,
    /// Slices are billed only once the engine has told how every run it
    /// knows of ended ([`Meter::reconcile`]): until then an open meter may
    /// belong to a run that ended while the agent was away.
    reconciled: bool,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        loop {
            let wait = if self.queue.is_empty() && !self.slice_failing {
                self.until_next_boundary()
            } else {
                RETRY.min(self.until_next_boundary())
            };
            match rx.recv_timeout(wait) {
                Ok(Cmd::Stop(done)) => {
                    self.flush();
                    let _ = done.send(());
                    break;
                }
                Ok(cmd) => self.handle(cmd),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    break;
                }
            }
            self.flush();
            self.bill_due_slices();
            self.prune_now_and_then();
        }
        debug!("meter stopped");
    }

    fn now(&self) -> Secs {
        self.clock.now().timestamp()
    }

    fn until_next_boundary(&self) -> Duration {
        let now = self.clock.now();
        let next = slice_start(now.timestamp(), self.cfg.slice) + self.cfg.slice as i64;
        let next = chrono::DateTime::from_timestamp(next, 0).expect("a valid time");
        (next - now).to_std().unwrap_or_default() + AFTER_BOUNDARY
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Open(run, at) => self.queue.push_back(Write::Open(run, at)),
            Cmd::Close(run_id, at, usage) => self.queue.push_back(Write::Close(run_id, at, usage)),
            Cmd::Reconcile(current) => {
                self.reconcile(&current);
                self.reconciled = true;
            }
            Cmd::Collect(after, limit, all, reply) => {
                let r = self.ledger.collect(after, limit, all).map_err(internal);
                let _ = reply.send(r);
            }
            Cmd::Ack(seq, reply) => {
                let r = self.ledger.ack(seq, self.now()).map_err(|e| match e {
                    LedgerError::AckBeyondEnd { .. } => Error::invalid("seq", e.to_string()),
                    e => internal(e),
                });
                let _ = reply.send(r);
            }
            Cmd::Status(reply) => {
                let r = self.ledger.last_seq().map_err(internal).map(|last_seq| MeterStatus {
                    pending_writes: self.queue.len(),
                    last_error: self.last_error.clone(),
                    open_runs: self.ledger.open_runs().count(),
                    last_seq,
                });
                let _ = reply.send(r);
            }
            Cmd::Stop(_) => unreachable!("handled by run"),
        }
    }

    /// Commits queued writes in order, stopping at the first failure.
    fn flush(&mut self) {
        while let Some(w) = self.queue.front() {
            let result = match w {
                Write::Open(run, at) => self.ledger.open_run(run, *at).map(|opened| {
                    if opened {
                        debug!(run = %run.run_id, start = at, "metering");
                    }
                }),
                Write::Close(run_id, at, usage) => {
                    let usage = with_carried_peak(*usage, self.carried_peaks.get(run_id));
                    self.ledger.close(run_id, *at, usage).map(|n| {
                        debug!(run = %run_id, end = at, records = n, "metered to its end");
                    })
                }
            };
            match result {
                Ok(()) => {
                    if let Some(Write::Close(run_id, ..)) = self.queue.pop_front() {
                        self.probes.remove(&run_id);
                        self.carried_peaks.remove(&run_id);
                    }
                    if self.queue.is_empty() && !self.slice_failing && self.last_error.take().is_some() {
                        info!("the usage ledger accepts writes again");
                    }
                }
                Err(e) => {
                    self.failed(format!("{e}"));
                    return;
                }
            }
        }
    }

    fn failed(&mut self, e: String) {
        error!(
            error = %e,
            pending_writes = self.queue.len(),
            "USAGE NOT RECORDED YET: the ledger refused a write; it is kept in memory and retried"
        );
        self.last_error = Some(e);
    }

    /// Writes the slices that ended for every open run without a close
    /// queued.
    fn bill_due_slices(&mut self) {
        if !self.reconciled {
            return;
        }
        let now = self.now();
        let closing: HashSet<&str> = self
            .queue
            .iter()
            .filter_map(|w| match w {
                Write::Close(id, ..) => Some(id.as_str()),
                Write::Open(..) => None,
            })
            .collect();
        let due: Vec<String> = self
            .ledger
            .due(now)
            .into_iter()
            .filter(|id| !closing.contains(id.as_str()))
            .collect();
        if due.is_empty() {
            self.slice_failing = false;
            return;
        }
        let readings: Vec<(String, Option<Usage>)> = due
            .into_iter()
            .map(|id| {
                let usage = self.read(&id);
                let usage = with_carried_peak(usage, self.carried_peaks.get(&id));
                (id, usage)
            })
            .collect();
        match self.ledger.advance(now, &readings) {
            Ok(n) => {
                debug!(records = n, "slice billed");
                self.carried_peaks.clear();
                self.slice_failing = false;
                if self.queue.is_empty() && self.last_error.take().is_some() {
                    info!("the usage ledger accepts writes again");
                }
            }
            Err(e) => {
                for (id, u) in &readings {
                    if let Some(u) = u {
                        self.carried_peaks.insert(id.clone(), u.mem_peak_bytes);
                    }
                }
                self.slice_failing = true;
                self.failed(format!("{e}"));
            }
        }
    }

    /// The run's cgroup usage, through a probe opened on first use.
    fn read(&mut self, run_id: &str) -> Option<Usage> {
        let cgroups = self.cgroups.as_ref()?;
        if !self.probes.contains_key(run_id) {
            let probe = cgroups.open(run_id).ok().flatten().and_then(|cg| match cg.usage_probe() {
                Ok(p) => Some(p),
                Err(e) => {
                    warn!(run = run_id, error = %e, "cannot read the run's usage: billing its time without CPU and memory");
                    None
                }
            })?;
            self.probes.insert(run_id.to_string(), probe);
        }
        match self.probes.get_mut(run_id).expect("inserted").read() {
            Ok(u) => Some(u),
            Err(e) => {
                debug!(run = run_id, error = %e, "usage probe failed; reopening next time");
                self.probes.remove(run_id);
                None
            }
        }
    }

    fn reconcile(&mut self, current: &HashSet<String>) {
        let queued_open: HashSet<&str> = self
            .queue
            .iter()
            .filter_map(|w| match w {
                Write::Open(r, _) => Some(r.run_id.as_str()),
                Write::Close(..) => None,
            })
            .collect();
        let stale: Vec<(String, Secs)> = self
            .ledger
            .open_runs()
            .filter(|m| !current.contains(&m.run.run_id) && !queued_open.contains(m.run.run_id.as_str()))
            .map(|m| (m.run.run_id.clone(), m.billed_until))
            .collect();
        for (run_id, billed_until) in stale {
            let dir = RunDir::new(&self.cfg.runs, &run_id);
            let end = match dir.read_exit() {
                Ok(Some(x)) => x.exited_at.timestamp(),
                other => {
                    error!(
                        run = %run_id,
                        ?other,
                        "a metered run has no exit record and is no dyno's run: billed up to {billed_until} only"
                    );
                    billed_until
                }
            };
            warn!(run = %run_id, end, "closing the meter of a run that ended while the agent was away");
            self.queue.push_back(Write::Close(run_id, end, None));
        }
    }

    fn prune_now_and_then(&mut self) {
        if self.last_prune.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
            return;
        }
        self.last_prune = Some(Instant::now());
        match self.ledger.prune(self.now(), self.cfg.retention.as_secs()) {
            Ok(0) => {}
            Ok(n) => info!(records = n, "pruned collected usage records past retention"),
            Err(e) => warn!(error = %e, "cannot prune the ledger"),
        }
    }
}

/// A reading with its memory peak raised to a peak read for a slice whose
/// write failed (reading the peak reset it).
fn with_carried_peak(usage: Option<Usage>, carried: Option<&u64>) -> Option<Usage> {
    usage.map(|mut u| {
        if let Some(peak) = carried {
            u.mem_peak_bytes = u.mem_peak_bytes.max(*peak);
        }
        u
    })
}

fn internal(e: LedgerError) -> Error {
    Error::Internal(e.to_string())
}

#[cfg(test)]
mod tests;
