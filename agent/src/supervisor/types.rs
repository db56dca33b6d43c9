//! The vocabulary of the lifecycle: states and exit reasons (contract
//! names), runs and how they end, what kind of dyno it is and the policy's
//! numbers, and the inputs and actions of a step.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Time;

/// Lifecycle state of a dyno (contract names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Starting,
    Up,
    Crashed,
    Down,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Up => "up",
            State::Crashed => "crashed",
            State::Down => "down",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run ended (the first five are the contract's crash reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    Exit,
    Signal,
    Oom,
    BootTimeout,
    Lost,
    /// Stopped on request within the grace period.
    Stopped,
    /// Stopped on request and SIGKILLed after the grace period (R12).
    StopTimeout,
    /// The host could not prepare or start the run (disk, cgroup, network)
    /// before the command was exec'd: not the app's crash.
    SpawnFailed,
}

impl ExitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Exit => "exit",
            ExitReason::Signal => "signal",
            ExitReason::Oom => "oom",
            ExitReason::BootTimeout => "boot_timeout",
            ExitReason::Lost => "lost",
            ExitReason::Stopped => "stopped",
            ExitReason::StopTimeout => "stop_timeout",
            ExitReason::SpawnFailed => "spawn_failed",
        }
    }
}

/// How a run ended, as recorded by its shim (or found missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEnd {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Killed by the memory limit of its cgroup.
    pub oom: bool,
    /// No exit record: the run vanished.
    pub lost: bool,
    pub at: Time,
}

impl RunEnd {
    /// A run that vanished without an exit record, found so at `at`.
    pub fn lost(at: Time) -> RunEnd {
        RunEnd {
            code: None,
            signal: None,
            oom: false,
            lost: true,
            at,
        }
    }

    /// The status a shell would report: the code, or 128 + the signal.
    pub fn status(&self) -> Option<i32> {
        self.code.or(self.signal.map(|s| 128 + s))
    }
}

/// The end of the last run, as shown in `ps` and the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: ExitReason,
    pub at: Time,
    /// What went wrong, for `spawn_failed` (at most [`MESSAGE_MAX`] bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The longest `LastExit::message` kept.
pub const MESSAGE_MAX: usize = 300;

/// One process lifetime of a dyno.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    /// When the spawn was requested.
    pub spawned_at: Time,
    /// Host pid of the command, once exec'd.
    pub pid: Option<u32>,
    /// When the command was exec'd.
    pub exec_at: Option<Time>,
}

/// Why the agent is ending the current run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// `down` afterwards.
    Stop,
    /// One-off dyno past its time to live: `down` afterwards.
    TimeToLive,
    /// A fresh run afterwards (explicit restart, new release).
    Restart,
    /// Daily cycling: a fresh run afterwards.
    Cycle,
    /// R10: killed for not binding $PORT; counts as a crash.
    BootTimeout,
}

impl Intent {
    pub(super) fn runs_again(self) -> bool {
        matches!(self, Intent::Restart | Intent::Cycle)
    }
}

/// A stop in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopping {
    pub intent: Intent,
    /// SIGKILL to everything left when this passes.
    pub grace_until: Time,
    /// SIGKILL was sent.
    pub killed: bool,
}

/// What kind of dyno this is; fixed for a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// `web` dynos are `up` once $PORT accepts connections.
    pub web: bool,
    /// One-off (`run.N`): never restarted, ends after `time_to_live`.
    pub one_off: bool,
    pub time_to_live: Duration,
    pub command: String,
}

/// Every number of the lifecycle (DESIGN §4), all configurable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub boot_timeout: Duration,
    pub stop_grace: Duration,
    /// Cool-offs before the 2nd, 3rd, ... restart; the last repeats forever.
    pub cooloffs: Vec<Duration>,
    pub stable_window: Duration,
    /// Daily cycling: every run is restarted after `interval` plus a random
    /// part of `jitter`; `None` disables it.
    pub cycle: Option<(Duration, Duration)>,
    /// After a spawn failure the run is tried again after this, doubling
    /// with each consecutive failure up to `spawn_retry_max`.
    pub spawn_retry: Duration,
    pub spawn_retry_max: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        let min = |m: u64| Duration::from_secs(m * 60);
        Policy {
            boot_timeout: Duration::from_secs(60),
            stop_grace: Duration::from_secs(30),
            cooloffs: vec![min(20), min(40), min(60), min(180), min(320)],
            stable_window: min(10),
            cycle: Some((min(24 * 60), min(216))),
            spawn_retry: Duration::from_secs(1),
            spawn_retry_max: Duration::from_secs(60),
        }
    }
}

impl Policy {
    /// The wait before trying again after the `failures`-th consecutive
    /// spawn failure: `spawn_retry`, doubled each time, at most
    /// `spawn_retry_max`.
    pub fn spawn_backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        (self.spawn_retry * (1u32 << doublings)).min(self.spawn_retry_max)
    }

    /// The cool-off before restarting after the `crashes`-th consecutive crash
    /// (1-based), given a uniform random number `u` in [0, 1): zero for the
    /// first, then a delay in [half, full] of the schedule's step.
    pub fn cooloff(&self, crashes: u32, u: f64) -> Duration {
        if crashes <= 1 || self.cooloffs.is_empty() {
            return Duration::ZERO;
        }
        let i = ((crashes - 2) as usize).min(self.cooloffs.len() - 1);
        let full = self.cooloffs[i];
        full.mul_f64(0.5 + 0.5 * u.clamp(0.0, 1.0))
    }
}

/// What a step needs besides the input: the dyno's kind, the policy, the time
/// and a source of uniform random numbers in [0, 1).
pub struct Ctx<'a> {
    pub profile: &'a Profile,
    pub policy: &'a Policy,
    pub now: Time,
    pub jitter: &'a mut dyn FnMut() -> f64,
    /// The other dynos of the app and process type, for cycling.
    pub peers: &'a super::Peers,
}

/// Something that happened to a dyno.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Run the dyno (a new dyno, or a start of a crashed or down one).
    Start,
    /// Stop it gracefully; it stays `down`.
    Stop,
    /// Restart it gracefully and reset its crash count (explicit restart or
    /// new release).
    Restart,
    /// The run's command was exec'd.
    Spawned { run_id: String, pid: u32, at: Time },
    /// The run could not be started at all.
    SpawnFailed { run_id: String, error: String },
    /// A web run accepts connections on $PORT.
    PortBound { run_id: String },
    /// The run ended.
    Exited { run_id: String, end: RunEnd },
    /// Time passed: fire every deadline that is due.
    Tick,
}

/// Signals the driver delivers to a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM to every process of the dyno.
    Term,
    /// SIGKILL to every process of the dyno.
    KillAll,
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Start a new run with this id.
    Spawn { run_id: String },
    /// Deliver a signal to the current run.
    Signal(Signal),
    /// Watch $PORT of this run and report `PortBound`.
    WatchPort { run_id: String },
    /// Write a runtime line (`dyno[web.1]: …`) into the dyno's log.
    Log(String),
    /// Publish a state change.
    Changed {
        from: State,
        to: State,
        reason: &'static str,
    },
}
