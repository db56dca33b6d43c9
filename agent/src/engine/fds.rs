//! The descriptor budget: how many descriptors the agent holds for each
//! dyno over its life, the reserve it keeps for itself, and the admission
//! that refuses a start it could not serve within `RLIMIT_NOFILE`.
//!
//! Every term is named after what holds the descriptors. A dyno that is not
//! `down` keeps its whole need from its admission to its stop, whatever
//! phase its run is in (starting, up, crashed and waiting for its restart),
//! so a crash restart of an admitted dyno is always served. Work whose
//! descriptors do not belong to one dyno for its life (spawning a shim, a
//! CNI ADD or DEL, settling an ended run, preparing a slug) is bounded by
//! slots ([`RUN_WORK_SLOTS`]) or counted per start in flight
//! ([`PENDING_START`]), and the reserve covers the slots' worst case.
//!
//! The figures were measured (`tests/tests/descriptors.rs` counts
//! `/proc/<agent>/fd` against them, across slice boundaries); the README's
//! "Descriptors" section lists them.

use crate::error::{Error, Reason, Result};

/// Descriptors held by one named holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Term {
    pub holder: &'static str,
    pub count: u64,
}

const fn term(holder: &'static str, count: u64) -> Term {
    Term { holder, count }
}

/// What every dyno that is not down holds, for its whole life.
pub const DYNO: &[Term] = &[
    // engine/settle.rs::watch_exit: the run's end, immune to pid reuse.
    term("pidfd of the run's shim", 1),
    // meter: the usage probe, opened at the run's first slice boundary and
    // kept (a pread each boundary instead of open/read/close).
    term("meter: the run's CPU counter", 1),
    term("meter: the run's memory peak", 1),
];

/// What a `web` dyno holds besides: its `$PORT` probe, while it starts.
pub const WEB: &[Term] = &[term("$PORT probe (a TCP connect while starting)", 1)];

/// What an attached one-off holds besides, while its caller is attached:
/// the connection to the shim's `attach.sock` and the pty master it hands
/// over (or the command's stdin, stdout and stderr without a pty).
pub const ATTACHED: &[Term] = &[
    term("attach.sock connection to the shim", 1),
    term("pty master, or stdin/stdout/stderr pipes", 3),
];

/// A start in flight (between a valid `StartDyno` and the engine): its slug
/// being resolved (the source file or download socket, the staging
/// directory and the file being written, the chmod descriptor).
pub const PENDING_START: u64 = 6;

/// Runs spawned or settled at once (a shim's spawn with its network setup;
/// an ended run's network teardown and final cgroup reading); more wait.
pub const RUN_WORK_SLOTS: usize = 16;

/// The worst a slot holds: the shim's spawn (its log file, its stdout pipe
/// and the exec status pipe of the fork, both ends) or a CNI plugin's
/// (stdin, stdout and stderr pipes, both ends, and the namespace's handle).
pub const RUN_WORK: u64 = 8;

/// What the agent holds for itself whatever the dynos.
pub const RESERVE: &[Term] = &[
    term("stdin, stdout, stderr", 3),
    term("async runtime: epoll, wakers, signal pipe, blocking pool", 16),
    term("state: agent.lock, events.jsonl, cordon.json, records being written", 6),
    term("usage ledger: ledger.db, -wal, -shm, journals", 8),
    term("listeners: API socket, TCP, metrics, their re-binds", 6),
    term("API calls in flight: connections, log follows, exec sessions", 96),
    term("runs spawned or settled at once", RUN_WORK_SLOTS as u64 * RUN_WORK),
    term("metrics, OOM and stats readings: cgroup files, /proc", 8),
    term("network: netlink, iptables-restore, the pool's preparations", 16),
];

/// The sum of `terms`.
pub fn total(terms: &[Term]) -> u64 {
    terms.iter().map(|t| t.count).sum()
}

/// The reserve: [`RESERVE`] added up.
pub fn reserve() -> u64 {
    total(RESERVE)
}

/// What a dyno needs for its life: [`DYNO`], plus [`WEB`] for a web dyno,
/// plus [`ATTACHED`] for an attached one-off.
pub fn dyno_need(web: bool, attached: bool) -> u64 {
    total(DYNO) + if web { total(WEB) } else { 0 } + if attached { total(ATTACHED) } else { 0 }
}

/// The agent's descriptor limit and what it has committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// `RLIMIT_NOFILE`, soft (raised to the hard one at start) and hard.
    pub soft: u64,
    pub hard: u64,
}

/// Descriptors as `HostInfo` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// The soft limit.
    pub limit: u64,
    /// Open now (`/proc/self/fd`); 0 when it could not be counted.
    pub open: u64,
    /// The reserve plus every admitted dyno's need plus starts in flight.
    pub committed: u64,
    /// What a new start may still take: the limit less the larger of
    /// `committed` and `open`.
    pub available: u64,
    pub reserve: u64,
    /// A worker dyno's need (a web dyno needs [`WEB`] more).
    pub per_dyno: u64,
}

impl Budget {
    /// The limits of this process now.
    pub fn current() -> Budget {
        match crate::os::fd::nofile_limits() {
            Ok((soft, hard)) => Budget { soft, hard },
            // getrlimit does not fail for RLIMIT_NOFILE; the kernel's default.
            Err(_) => Budget { soft: 1024, hard: 1024 },
        }
    }

    /// The figures, with `committed` descriptors committed and `open` open.
    pub fn usage(&self, committed: u64, open: u64) -> Usage {
        Usage {
            limit: self.soft,
            open,
            committed,
            available: self.soft.saturating_sub(committed.max(open)),
            reserve: reserve(),
            per_dyno: dyno_need(false, false),
        }
    }

    /// Refuses `what` (a dyno, or a start in flight) needing `need`
    /// descriptors when `committed` ones are committed: `RESOURCE_EXHAUSTED`
    /// (`NO_FREE_DESCRIPTORS`) naming the limit and what to do.
    pub fn admit(&self, committed: u64, need: u64, what: &str) -> Result<()> {
        if committed.saturating_add(need) <= self.soft {
            return Ok(());
        }
        let open = crate::os::fd::open_count().map_or_else(|e| format!("? ({e})"), |n| n.to_string());
        Err(self.exhausted(format!(
            "descriptors: {committed} of {} committed ({} reserved for the agent, the rest to dynos and starts in \
             flight; {open} open now), {what} needs {need}",
            self.soft,
            reserve(),
        )))
    }

    /// `RESOURCE_EXHAUSTED` (`NO_FREE_DESCRIPTORS`): `message`, then the
    /// limit and what to do.
    pub fn exhausted(&self, message: String) -> Error {
        let limit = if self.soft == self.hard {
            format!("soft=hard={}", self.soft)
        } else {
            format!("soft={}, hard={}", self.soft, self.hard)
        };
        Error::ResourceExhausted(
            Reason::NoFreeDescriptors,
            format!("{message} (RLIMIT_NOFILE {limit}); raise LimitNOFILE"),
        )
    }
}

/// Maps an error the start path met to `RESOURCE_EXHAUSTED`
/// (`NO_FREE_DESCRIPTORS`) when it says no descriptor was left.
pub fn exhausted_error(what: &str, e: &std::io::Error) -> Option<Error> {
    crate::os::fd::is_exhausted(e).then(|| Budget::current().exhausted(format!("{what}: {e}")))
}

/// What dyno `rec` needs for its life.
pub(super) fn need_of(rec: &super::model::DynoRecord) -> u64 {
    dyno_need(rec.spec.ptype == "web", rec.spec.one_off && rec.spec.attach.is_some())
}

/// The reserve, the need of every dyno of `dynos` but `except` (a down
/// dyno needs nothing), and `pending` starts in flight.
pub(super) fn committed<'a>(
    dynos: impl IntoIterator<Item = (&'a super::Key, &'a super::model::DynoRecord)>,
    except: Option<&super::Key>,
    pending: usize,
) -> u64 {
    let dynos: u64 = dynos
        .into_iter()
        .filter(|(k, rec)| Some(*k) != except && rec.sup.state != crate::supervisor::State::Down)
        .map(|(_, rec)| need_of(rec))
        .sum();
    reserve() + dynos + pending as u64 * PENDING_START
}

impl super::actor::Actor {
    /// [`committed`] over the actor's dynos and starts in flight.
    pub(super) fn fds_committed(&self, except: Option<&super::Key>) -> u64 {
        committed(self.dynos.iter().map(|(k, e)| (k, &e.rec)), except, self.pending.len())
    }

    /// Refuses dyno `key` (`web`, `attached`) when its need does not fit in
    /// what the others left (its own earlier need, if any, is given back).
    pub(super) fn admit_fds(&self, key: &super::Key, web: bool, attached: bool) -> Result<()> {
        let what = format!("{} of app {}", key.1, key.0);
        self.fds
            .admit(self.fds_committed(Some(key)), dyno_need(web, attached), &what)
    }

    /// Refuses a start in flight of dyno `key` before its slug is prepared
    /// when the slug's preparation and the dyno would not fit.
    /// A dyno that runs already keeps its need: its start (the same spec
    /// again, or a new one that restarts it) is not refused for room.
    pub(super) fn admit_pending_fds(&self, key: &super::Key) -> Result<()> {
        if self
            .dynos
            .get(key)
            .is_some_and(|e| e.rec.sup.state != crate::supervisor::State::Down)
        {
            return Ok(());
        }
        let web = crate::names::parse_dyno_name(&key.1).is_some_and(|(t, _)| t == "web");
        let what = format!("{} of app {} (with its slug being prepared)", key.1, key.0);
        self.fds.admit(
            self.fds_committed(Some(key)),
            dyno_need(web, false) + PENDING_START,
            &what,
        )
    }

    /// The figures `HostInfo` shows.
    pub(super) fn fds_usage(&self) -> Usage {
        let open = crate::os::fd::open_count().unwrap_or(0);
        self.fds.usage(self.fds_committed(None), open)
    }
}

#[cfg(test)]
#[path = "fds_tests.rs"]
mod tests;
