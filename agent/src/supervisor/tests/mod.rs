//! Unit tests of the dyno lifecycle state machine (DESIGN §4).
//!
//! Most tests drive one [`Supervision`] through a [`Dyno`] harness that owns
//! the profile, the policy, a settable clock and a constant jitter, and assert
//! the exact actions of every step and the fields it leaves behind.

use std::time::Duration;

use super::*;

use chrono::{TimeZone, Utc};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const WEB_CMD: &str = "bundle exec puma -C config/puma.rb";
const WORKER_CMD: &str = "bundle exec sidekiq";
const RUN_CMD: &str = "bash";

fn t0() -> Time {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn mins(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

fn web() -> Profile {
    Profile {
        web: true,
        one_off: false,
        time_to_live: mins(24 * 60),
        command: WEB_CMD.into(),
    }
}

fn worker() -> Profile {
    Profile {
        web: false,
        one_off: false,
        time_to_live: mins(24 * 60),
        command: WORKER_CMD.into(),
    }
}

fn one_off() -> Profile {
    Profile {
        web: false,
        one_off: true,
        time_to_live: secs(600),
        command: RUN_CMD.into(),
    }
}

/// Short, distinct numbers so that a test notices a hard-coded default; the
/// cool-offs are the contract's, so their bounds can be checked in minutes.
fn policy() -> Policy {
    Policy {
        boot_timeout: secs(7),
        stop_grace: secs(5),
        cooloffs: vec![mins(20), mins(40), mins(60), mins(180), mins(320)],
        stable_window: secs(90),
        cycle: Some((secs(3600), secs(600))),
        spawn_retry: secs(2),
        spawn_retry_max: secs(50),
    }
}

/// Builds the context of one step.
fn ctx<'a>(profile: &'a Profile, policy: &'a Policy, now: Time, jitter: &'a mut dyn FnMut() -> f64) -> Ctx<'a> {
    Ctx {
        profile,
        policy,
        now,
        jitter,
        peers: &NO_PEERS,
    }
}

/// The runtime log lines among `actions`, in order.
fn logs(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Log(line) => Some(line.as_str()),
            _ => None,
        })
        .collect()
}

fn log(line: impl Into<String>) -> Action {
    Action::Log(line.into())
}

fn changed(from: State, to: State, reason: &'static str) -> Action {
    Action::Changed { from, to, reason }
}

fn spawn(run_id: &str) -> Action {
    Action::Spawn { run_id: run_id.into() }
}

/// What a fresh run from state `from` produces.
fn start_actions(from: State, reason: &'static str, command: &str, run_id: &str) -> Vec<Action> {
    vec![
        log(format!("State changed from {from} to starting")),
        changed(from, State::Starting, reason),
        log(format!("Starting process with command `{command}`")),
        spawn(run_id),
    ]
}

/// A crash from state `from` that is restarted at once as `run_id`.
fn crash_and_restart(from: State, reason: &'static str, command: &str, run_id: &str) -> Vec<Action> {
    let mut out = vec![
        log(format!("State changed from {from} to crashed")),
        changed(from, State::Crashed, reason),
    ];
    out.extend(start_actions(State::Crashed, "crash_restart", command, run_id));
    out
}

/// An exit with `status` from state `from` that leaves the dyno down.
fn down_actions(status: i32, from: State, reason: &'static str) -> Vec<Action> {
    vec![
        log(format!("Process exited with status {status}")),
        log(format!("State changed from {from} to down")),
        changed(from, State::Down, reason),
    ]
}

fn up_actions() -> Vec<Action> {
    vec![
        log("State changed from starting to up"),
        changed(State::Starting, State::Up, "up"),
    ]
}

const SIGTERM_LINE: &str = "Stopping all processes with SIGTERM";
const SIGKILL_LINE: &str = "Stopping all processes with SIGKILL";
/// The R12 line of a stop past the grace of [`policy`].
const R12_LINE: &str = "Error R12 (Exit timeout) -> At least one process failed to exit within 5 seconds of SIGTERM";

fn term_actions() -> Vec<Action> {
    vec![log(SIGTERM_LINE), Action::Signal(Signal::Term)]
}

fn exited_code(code: i32, at: Time) -> RunEnd {
    RunEnd {
        code: Some(code),
        signal: None,
        oom: false,
        lost: false,
        at,
    }
}

fn exited_signal(signal: i32, at: Time) -> RunEnd {
    RunEnd {
        code: None,
        signal: Some(signal),
        oom: false,
        lost: false,
        at,
    }
}

fn oom_killed(at: Time) -> RunEnd {
    RunEnd {
        code: None,
        signal: Some(9),
        oom: true,
        lost: false,
        at,
    }
}

/// One dyno under test: its supervision plus everything a step needs.
struct Dyno {
    profile: Profile,
    policy: Policy,
    now: Time,
    /// What the jitter closure returns.
    u: f64,
    next_pid: u32,
    sup: Supervision,
    /// What the dyno's steps are told of its peers.
    peers: Peers,
}

impl Dyno {
    fn new(prefix: &str, profile: Profile) -> Self {
        Dyno {
            profile,
            policy: policy(),
            now: t0(),
            u: 0.5,
            next_pid: 4000,
            sup: Supervision::new(prefix, t0()),
            peers: Peers::default(),
        }
    }

    fn web() -> Self {
        Dyno::new("web.1", web())
    }

    fn worker() -> Self {
        Dyno::new("worker.1", worker())
    }

    fn one_off() -> Self {
        Dyno::new("run.1", one_off())
    }

    fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    fn step(&mut self, input: Input) -> Vec<Action> {
        let u = self.u;
        let mut jitter = move || u;
        let mut cx = ctx(&self.profile, &self.policy, self.now, &mut jitter);
        cx.peers = &self.peers;
        self.sup.step(&mut cx, input)
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn run_id(&self) -> String {
        self.sup.run.as_ref().expect("an active run").id.clone()
    }

    fn start(&mut self) -> Vec<Action> {
        self.step(Input::Start)
    }

    fn stop(&mut self) -> Vec<Action> {
        self.step(Input::Stop)
    }

    fn restart(&mut self) -> Vec<Action> {
        self.step(Input::Restart)
    }

    fn tick(&mut self) -> Vec<Action> {
        self.step(Input::Tick)
    }

    fn spawned(&mut self) -> Vec<Action> {
        self.next_pid += 1;
        let (run_id, pid, at) = (self.run_id(), self.next_pid, self.now);
        self.step(Input::Spawned { run_id, pid, at })
    }

    fn port_bound(&mut self) -> Vec<Action> {
        let run_id = self.run_id();
        self.step(Input::PortBound { run_id })
    }

    fn exited(&mut self, end: RunEnd) -> Vec<Action> {
        let run_id = self.run_id();
        self.step(Input::Exited { run_id, end })
    }

    /// Exit 1 of the current run, now.
    fn crash(&mut self) -> Vec<Action> {
        let end = exited_code(1, self.now);
        self.exited(end)
    }

    /// Spawned (and for web, PortBound): the run is `up`.
    fn bring_up(&mut self) {
        self.spawned();
        if self.profile.web {
            self.port_bound();
        }
        assert_eq!(self.sup.state, State::Up);
    }

    /// A new dyno, started and `up`.
    fn started_up(mut self) -> Self {
        self.start();
        self.bring_up();
        self
    }
}

mod boot_timeout;
mod crash;
mod cycling;
mod deadlines;
mod one_off;
mod persistence;
mod policy;
mod restart;
mod schedule;
mod stale;
mod start;
mod stop;
