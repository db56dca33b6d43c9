//! The meter thread: opens the ledger (and keeps trying), checks every
//! second which runs still run, bills the slices they were seen alive past,
//! writes queued opens and closes in order, answers Collect and Ack, and
//! publishes its status.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::{Alive, Cmd, End, LedgerState, Liveness, MeterConfig, MeterStatus};
use crate::cgroup::{CgroupsRef, Usage, UsageProbe};
use crate::error::Error;
use crate::ledger::{Ledger, LedgerError, RunInfo, Secs};
use crate::runs::RunDir;
use crate::time::Clock;

/// How often the ledger is tried again while it cannot be opened.
const RETRY: Duration = Duration::from_secs(1);
/// How often collected records past retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Woken this long after a whole second, so that it has surely passed.
const AFTER_SECOND: Duration = Duration::from_millis(5);
/// The same ledger failure is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// A queued write.
#[derive(Debug)]
enum Write {
    Open(RunInfo, Secs),
    Close(String, End, Option<Usage>),
}

/// What the meter knows of a run's life.
#[derive(Clone, Copy, Debug)]
struct Watched {
    /// The last second it was seen alive.
    seen: Secs,
    /// Its command is gone (its close has not been written yet).
    gone: bool,
}

pub(super) struct Worker {
    cfg: MeterConfig,
    /// `None` until it could be opened.
    ledger: Option<Ledger>,
    cgroups: Option<CgroupsRef>,
    clock: Clock,
    liveness: Box<dyn Liveness>,
    probes: HashMap<String, Box<dyn UsageProbe>>,
    /// Every run being metered: from opens, and the ledger's open meters.
    runs: HashMap<String, Watched>,
    /// Writes not committed yet, in order.
    queue: VecDeque<Write>,
    /// Memory peaks read for a slice whose write failed (the read reset them).
    carried_peaks: HashMap<String, u64>,
    last_error: Option<String>,
    failing_since: Option<crate::time::Time>,
    locked: bool,
    tick_failing: bool,
    /// The last whole second checked.
    last_tick: Secs,
    next_open: Instant,
    logged: Option<(String, Instant)>,
    last_prune: Option<Instant>,
    /// The current runs of the engine's [`super::Meter::reconcile`], until
    /// the ledger is open to reconcile them with.
    to_reconcile: Option<HashSet<String>>,
    /// Slices are billed only once the engine has told how every run it
    /// knows of ended ([`super::Meter::reconcile`]).
    reconciled: bool,
    status: Arc<Mutex<MeterStatus>>,
}

impl Worker {
    pub(super) fn new(
        cfg: MeterConfig,
        cgroups: Option<CgroupsRef>,
        clock: Clock,
        liveness: Box<dyn Liveness>,
        status: Arc<Mutex<MeterStatus>>,
    ) -> Worker {
        Worker {
            cfg,
            ledger: None,
            cgroups,
            clock,
            liveness,
            probes: HashMap::new(),
            runs: HashMap::new(),
            queue: VecDeque::new(),
            carried_peaks: HashMap::new(),
            last_error: None,
            failing_since: None,
            locked: false,
            tick_failing: false,
            last_tick: 0,
            next_open: Instant::now(),
            logged: None,
            last_prune: None,
            to_reconcile: None,
            reconciled: false,
            status,
        }
    }

    pub(super) fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        loop {
            self.try_open();
            self.flush();
            // The shims stamp exec and exit times with the wall clock: the
            // meter follows it when it is stepped, so that "seen alive" is
            // never ahead of a recorded exit (a run's seconds never go back:
            // each is clamped to what it was billed).
            if self.clock.follow_wall(std::time::Duration::from_secs(1)) {
                warn!(now = %self.clock.now(), "the wall clock was stepped: the meter follows it");
                self.last_tick = self.last_tick.min(self.clock.now().timestamp() - 1);
            }
            if self.clock.now().timestamp() > self.last_tick {
                self.tick();
            }
            self.prune_now_and_then();
            self.publish();
            match rx.recv_timeout(self.until_next_second()) {
                Ok(Cmd::Stop(done)) => {
                    self.try_open();
                    self.flush();
                    self.publish();
                    let _ = done.send(());
                    break;
                }
                Ok(cmd) => self.handle(cmd),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.flush();
                    break;
                }
            }
        }
        debug!("meter stopped");
    }

    fn until_next_second(&self) -> Duration {
        let now = self.clock.now();
        let next = chrono::DateTime::from_timestamp(now.timestamp() + 1, 0).expect("a valid time");
        (next - now).to_std().unwrap_or_default() + AFTER_SECOND
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Open(run, at) => {
                self.runs
                    .entry(run.run_id.clone())
                    .or_insert(Watched { seen: at, gone: false });
                self.queue.push_back(Write::Open(run, at));
            }
            Cmd::Close(run_id, end, usage) => self.queue.push_back(Write::Close(run_id, end, usage)),
            Cmd::Reconcile(current) => {
                self.to_reconcile = Some(current);
                self.reconcile();
            }
            Cmd::Collect(after, limit, all, reply) => {
                let r = match &self.ledger {
                    Some(l) => l.collect(after, limit, all),
                    None => {
                        let _ = reply.send(Err(self.snapshot().unavailable()));
                        return;
                    }
                };
                let r = r.map_err(|e| self.api_error(e));
                let _ = reply.send(r);
            }
            Cmd::Ack(seq, reply) => {
                let now = self.clock.now().timestamp();
                let r = match &mut self.ledger {
                    Some(l) => l.ack(seq, now),
                    None => {
                        let _ = reply.send(Err(self.snapshot().unavailable()));
                        return;
                    }
                };
                let r = r.map_err(|e| match e {
                    LedgerError::AckBeyondEnd { .. } => Error::invalid("seq", e.to_string()),
                    e => self.api_error(e),
                });
                let _ = reply.send(r);
            }
            Cmd::Stop(_) => unreachable!("handled by run"),
        }
    }

    /// A ledger error as an API error: a lock is `UNAVAILABLE` (and the
    /// ledger is known to be locked from now on).
    fn api_error(&mut self, e: LedgerError) -> Error {
        if e.is_locked() {
            self.failed(&e);
            self.snapshot().unavailable()
        } else {
            Error::Internal(e.to_string())
        }
    }

    /// Opens the ledger if it is not open, at most once per [`RETRY`].
    fn try_open(&mut self) {
        if self.ledger.is_some() || Instant::now() < self.next_open {
            return;
        }
        self.next_open = Instant::now() + RETRY;
        match Ledger::open(&self.cfg.ledger, &self.cfg.host_id, self.cfg.slice) {
            Ok(ledger) => {
                info!(
                    path = %self.cfg.ledger.display(),
                    slice_secs = self.cfg.slice,
                    open_runs = ledger.open_runs().count(),
                    "usage ledger open"
                );
                for m in ledger.open_runs() {
                    let w = self.runs.entry(m.run.run_id.clone()).or_insert(Watched {
                        seen: m.seen_alive,
                        gone: false,
                    });
                    w.seen = w.seen.max(m.seen_alive);
                }
                self.ledger = Some(ledger);
                self.succeeded();
                self.reconcile();
            }
            Err(e) => self.failed(&e),
        }
    }

    /// Commits queued writes in order, stopping at the first failure.
    fn flush(&mut self) {
        while let Some(w) = self.queue.front() {
            let Some(ledger) = self.ledger.as_mut() else { return };
            let result = match w {
                Write::Open(run, at) => ledger.open_run(run, *at).map(|opened| {
                    if opened {
                        debug!(run = %run.run_id, start = at, "metering");
                    } else if !ledger.is_open(&run.run_id) {
                        // Metered and closed before (a re-adopted run's
                        // repeated open): nothing to watch.
                        self.runs.remove(&run.run_id);
                    }
                }),
                Write::Close(run_id, end, usage) => {
                    let end = match *end {
                        End::Exited(at) => at.timestamp(),
                        End::Lost(at) => {
                            let seen = self.runs.get(run_id).map(|w| w.seen);
                            let committed = ledger.open_run_of(run_id).map(|m| m.seen_alive);
                            let seen = seen.max(committed).unwrap_or(at.timestamp());
                            warn!(run = %run_id, seen_alive = seen, "a run vanished without an exit record: billed to the last second it was seen alive");
                            seen.min(at.timestamp())
                        }
                    };
                    let usage = with_carried_peak(*usage, self.carried_peaks.get(run_id));
                    ledger.close(run_id, end, usage).map(|n| {
                        debug!(run = %run_id, end, records = n, "metered to its end");
                    })
                }
            };
            match result {
                Ok(()) => {
                    if let Some(Write::Close(run_id, ..)) = self.queue.pop_front() {
                        self.probes.remove(&run_id);
                        self.carried_peaks.remove(&run_id);
                        self.runs.remove(&run_id);
                        self.liveness.forget(&run_id);
                    }
                    self.succeeded();
                }
                Err(e) => {
                    self.failed(&e);
                    return;
                }
            }
        }
    }

    /// One second: which runs still run, then (in one transaction) when they
    /// were seen alive and the slices they were seen alive past.
    fn tick(&mut self) {
        // The time is taken before any run is looked at: a run found alive
        // was alive at `now`, whatever delays the checks.
        let now = self.clock.now().timestamp();
        self.last_tick = now;
        for (run_id, w) in self.runs.iter_mut().filter(|(_, w)| !w.gone) {
            match self.liveness.check(run_id) {
                Alive::Yes | Alive::Unknown => w.seen = w.seen.max(now),
                Alive::No => {
                    w.gone = true;
                    debug!(run = %run_id, seen_alive = w.seen, "the run's command is gone: not billed past the last second it was seen alive");
                }
            }
        }
        let Some(ledger) = self.ledger.as_ref() else { return };
        // Runs the meter does not watch (none, normally) count as gone at
        // what the ledger says.
        let gone: HashMap<String, Secs> = ledger
            .open_runs()
            .filter_map(|m| match self.runs.get(&m.run.run_id) {
                Some(w) if !w.gone => None,
                Some(w) => Some((m.run.run_id.clone(), w.seen)),
                None => Some((m.run.run_id.clone(), m.seen_alive)),
            })
            .collect();
        let due = if self.reconciled {
            let closing: HashSet<&str> = self
                .queue
                .iter()
                .filter_map(|w| match w {
                    Write::Close(id, ..) => Some(id.as_str()),
                    Write::Open(..) => None,
                })
                .collect();
            let runs = &self.runs;
            ledger
                .due(|id| runs.get(id).map(|w| w.seen))
                .into_iter()
                .filter(|id| !closing.contains(id.as_str()))
                .collect()
        } else {
            Vec::new()
        };
        let readings: Vec<(String, Option<Usage>)> = due
            .into_iter()
            .map(|id| {
                let usage = self.read(&id);
                let usage = with_carried_peak(usage, self.carried_peaks.get(&id));
                (id, usage)
            })
            .collect();
        let ledger = self.ledger.as_mut().expect("open");
        match ledger.tick(now, &gone, &readings) {
            Ok(n) => {
                if n > 0 {
                    debug!(records = n, "slice billed");
                }
                self.carried_peaks.clear();
                self.tick_failing = false;
                self.succeeded();
            }
            Err(e) => {
                for (id, u) in &readings {
                    if let Some(u) = u {
                        self.carried_peaks.insert(id.clone(), u.mem_peak_bytes);
                    }
                }
                self.tick_failing = true;
                self.failed(&e);
            }
        }
    }

    /// A write went through: the ledger is not locked; once nothing waits,
    /// it is healthy again.
    fn succeeded(&mut self) {
        self.locked = false;
        if self.queue.is_empty() && !self.tick_failing {
            self.failing_since = None;
            self.logged = None;
            if self.last_error.take().is_some() {
                info!(path = %self.cfg.ledger.display(), "the usage ledger accepts writes again; nothing was lost");
            }
        }
    }

    fn failed(&mut self, e: &LedgerError) {
        let message = e.to_string();
        self.locked = e.is_locked();
        self.failing_since.get_or_insert_with(|| self.clock.now());
        let repeat = self
            .logged
            .as_ref()
            .is_some_and(|(m, at)| *m == message && at.elapsed() < LOG_EVERY);
        if !repeat {
            error!(
                error = %message,
                locked = self.locked,
                pending_writes = self.queue.len(),
                runs = self.runs.len(),
                "USAGE NOT RECORDED YET: the ledger refused a write; usage is kept in memory and retried every second"
            );
            self.logged = Some((message.clone(), Instant::now()));
        }
        self.last_error = Some(message);
    }

    fn snapshot(&self) -> MeterStatus {
        let ledger = match (&self.ledger, self.locked, self.last_error.is_some()) {
            (_, true, _) => LedgerState::Locked,
            (None, ..) => LedgerState::Opening,
            (Some(_), false, true) => LedgerState::Failing,
            (Some(_), false, false) => LedgerState::Ok,
        };
        MeterStatus {
            ledger_path: self.cfg.ledger.clone(),
            ledger,
            failing_since: self.failing_since,
            pending_writes: self.queue.len(),
            last_error: self.last_error.clone(),
            open_runs: self.runs.len(),
            last_seq: self.ledger.as_ref().map_or(0, |l| l.last_seq()),
        }
    }

    fn publish(&self) {
        let s = self.snapshot();
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = s;
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

    /// Closes the meters of runs that are no dyno's current run, once the
    /// engine said which are and the ledger is open.
    fn reconcile(&mut self) {
        let Some(ledger) = &self.ledger else { return };
        let Some(current) = self.to_reconcile.take() else {
            return;
        };
        let queued_open: HashSet<&str> = self
            .queue
            .iter()
            .filter_map(|w| match w {
                Write::Open(r, _) => Some(r.run_id.as_str()),
                Write::Close(..) => None,
            })
            .collect();
        let stale: Vec<String> = ledger
            .open_runs()
            .filter(|m| !current.contains(&m.run.run_id) && !queued_open.contains(m.run.run_id.as_str()))
            .map(|m| m.run.run_id.clone())
            .collect();
        let now = self.clock.now();
        for run_id in stale {
            let end = match RunDir::new(&self.cfg.runs, &run_id).read_exit() {
                Ok(Some(x)) => End::Exited(x.exited_at),
                other => {
                    error!(run = %run_id, ?other, "a metered run has no exit record and is no dyno's run: billed to the last second it was seen alive");
                    End::Lost(now)
                }
            };
            warn!(run = %run_id, ?end, "closing the meter of a run that ended while the agent was away");
            self.queue.push_back(Write::Close(run_id, end, None));
        }
        self.reconciled = true;
    }

    fn prune_now_and_then(&mut self) {
        let Some(ledger) = self.ledger.as_mut() else { return };
        if self.last_prune.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
            return;
        }
        self.last_prune = Some(Instant::now());
        match ledger.prune(self.clock.now().timestamp(), self.cfg.retention.as_secs()) {
            Ok(0) => {}
            Ok(n) => info!(records = n, "pruned collected usage records past retention"),
            Err(e) => warn!(error = %e, "cannot prune the ledger"),
        }
    }
}

/// A reading with its memory peak raised to a peak read for a slice whose
/// write failed (reading the peak reset it).
pub(super) fn with_carried_peak(usage: Option<Usage>, carried: Option<&u64>) -> Option<Usage> {
    usage.map(|mut u| {
        if let Some(peak) = carried {
            u.mem_peak_bytes = u.mem_peak_bytes.max(*peak);
        }
        u
    })
}
