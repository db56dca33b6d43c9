//! Unit tests of the dyno lifecycle state machine (DESIGN §4).
//!
//! Most tests drive one [`Supervision`] through a [`Dyno`] harness that owns
//! the profile, the policy, a settable clock and a constant jitter, and assert
//! the exact actions of every step and the fields it leaves behind.

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
    }
}

/// Builds the context of one step.
fn ctx<'a>(profile: &'a Profile, policy: &'a Policy, now: Time, jitter: &'a mut dyn FnMut() -> f64) -> Ctx<'a> {
    Ctx {
        profile,
        policy,
        now,
        jitter,
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

fn up_actions() -> Vec<Action> {
    vec![
        log("State changed from starting to up"),
        changed(State::Starting, State::Up, "up"),
    ]
}

const SIGTERM_LINE: &str = "Stopping all processes with SIGTERM";
const SIGKILL_LINE: &str = "Stopping all processes with SIGKILL";

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

fn lost(at: Time) -> RunEnd {
    RunEnd {
        code: None,
        signal: None,
        oom: false,
        lost: true,
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

// ---------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------

#[test]
fn default_policy_is_the_contract() {
    let p = Policy::default();
    assert_eq!(p.boot_timeout, secs(60));
    assert_eq!(p.stop_grace, secs(30));
    assert_eq!(p.cooloffs, vec![mins(20), mins(40), mins(60), mins(180), mins(320)]);
    assert_eq!(p.stable_window, mins(10));
    assert_eq!(p.cycle, Some((mins(24 * 60), mins(216))));
}

#[test]
fn cooloff_per_crash_index() {
    let p = Policy::default();
    // (consecutive crashes, half, full) in minutes.
    let table: [(u32, u64, u64); 10] = [
        (0, 0, 0),
        (1, 0, 0),
        (2, 10, 20),
        (3, 20, 40),
        (4, 30, 60),
        (5, 90, 180),
        (6, 160, 320),
        (7, 160, 320),
        (8, 160, 320),
        (1000, 160, 320),
    ];
    for (crashes, half, full) in table {
        let (half, full) = (mins(half), mins(full));
        assert_eq!(p.cooloff(crashes, 0.0), half, "crash {crashes}, u=0");
        assert_eq!(p.cooloff(crashes, 0.5), full.mul_f64(0.75), "crash {crashes}, u=0.5");
        let high = p.cooloff(crashes, 0.999);
        assert!(high <= full, "crash {crashes}: {high:?} > {full:?}");
        assert!(high >= full.mul_f64(0.999), "crash {crashes}: {high:?} too short");
        assert_eq!(p.cooloff(crashes, 1.0), full, "crash {crashes}, u=1");
    }
}

#[test]
fn cooloff_clamps_jitter() {
    let p = Policy::default();
    assert_eq!(p.cooloff(2, -3.0), mins(10));
    assert_eq!(p.cooloff(2, 7.0), mins(20));
    assert_eq!(p.cooloff(6, f64::INFINITY), mins(320));
}

#[test]
fn cooloff_with_custom_or_empty_schedule() {
    let one = Policy {
        cooloffs: vec![secs(100)],
        ..Policy::default()
    };
    assert_eq!(one.cooloff(1, 0.9), Duration::ZERO);
    assert_eq!(one.cooloff(2, 0.0), secs(50));
    assert_eq!(one.cooloff(50, 1.0), secs(100));

    let none = Policy {
        cooloffs: vec![],
        ..Policy::default()
    };
    for crashes in [0, 1, 2, 3, 100] {
        assert_eq!(none.cooloff(crashes, 0.7), Duration::ZERO);
    }
}

#[test]
fn run_end_status_is_code_or_128_plus_signal() {
    assert_eq!(exited_code(0, t0()).status(), Some(0));
    assert_eq!(exited_code(3, t0()).status(), Some(3));
    assert_eq!(exited_signal(9, t0()).status(), Some(137));
    assert_eq!(exited_signal(15, t0()).status(), Some(143));
    assert_eq!(lost(t0()).status(), None);
}

// ---------------------------------------------------------------------------
// next_deadline
// ---------------------------------------------------------------------------

#[test]
fn next_deadline_is_none_for_a_new_dyno() {
    assert_eq!(Supervision::new("web.1", t0()).next_deadline(), None);
}

#[test]
fn next_deadline_sees_each_deadline_alone() {
    let at = t0() + secs(42);
    type Setter = fn(&mut Supervision, Time);
    let setters: [(&str, Setter); 6] = [
        ("stopping", |s, t| {
            s.stopping = Some(Stopping {
                intent: Intent::Stop,
                grace_until: t,
                killed: false,
            })
        }),
        ("boot_deadline", |s, t| s.boot_deadline = Some(t)),
        ("stable_at", |s, t| s.stable_at = Some(t)),
        ("cycle_at", |s, t| s.cycle_at = Some(t)),
        ("ttl_at", |s, t| s.ttl_at = Some(t)),
        ("next_restart_at", |s, t| s.next_restart_at = Some(t)),
    ];
    for (name, set) in setters {
        let mut s = Supervision::new("web.1", t0());
        set(&mut s, at);
        assert_eq!(s.next_deadline(), Some(at), "{name}");
    }
}

#[test]
fn next_deadline_picks_the_minimum() {
    let mut s = Supervision::new("web.1", t0());
    s.stopping = Some(Stopping {
        intent: Intent::Stop,
        grace_until: t0() + secs(60),
        killed: false,
    });
    s.boot_deadline = Some(t0() + secs(50));
    s.stable_at = Some(t0() + secs(40));
    s.cycle_at = Some(t0() + secs(30));
    s.ttl_at = Some(t0() + secs(20));
    s.next_restart_at = Some(t0() + secs(10));
    // Remove the earliest one at a time: the next one takes over.
    assert_eq!(s.next_deadline(), Some(t0() + secs(10)));
    s.next_restart_at = None;
    assert_eq!(s.next_deadline(), Some(t0() + secs(20)));
    s.ttl_at = None;
    assert_eq!(s.next_deadline(), Some(t0() + secs(30)));
    s.cycle_at = None;
    assert_eq!(s.next_deadline(), Some(t0() + secs(40)));
    s.stable_at = None;
    assert_eq!(s.next_deadline(), Some(t0() + secs(50)));
    s.boot_deadline = None;
    assert_eq!(s.next_deadline(), Some(t0() + secs(60)));

    // The minimum wherever it sits, in past or future.
    s.cycle_at = Some(t0() - secs(5));
    assert_eq!(s.next_deadline(), Some(t0() - secs(5)));
}

#[test]
fn next_deadline_ignores_the_grace_once_killed() {
    let mut s = Supervision::new("web.1", t0());
    s.stopping = Some(Stopping {
        intent: Intent::Stop,
        grace_until: t0() + secs(5),
        killed: true,
    });
    assert_eq!(s.next_deadline(), None);
    s.cycle_at = Some(t0() + secs(3600));
    assert_eq!(s.next_deadline(), Some(t0() + secs(3600)));
}

// ---------------------------------------------------------------------------
// Start, spawn, up
// ---------------------------------------------------------------------------

#[test]
fn start_of_a_new_web_dyno_spawns_its_first_run() {
    let mut d = Dyno::web();
    d.advance(secs(3));
    let out = d.start();
    assert_eq!(
        out,
        vec![
            log("State changed from down to starting"),
            changed(State::Down, State::Starting, "start"),
            log("Starting process with command `bundle exec puma -C config/puma.rb`"),
            spawn("web.1.1"),
        ]
    );
    let s = &d.sup;
    assert_eq!(s.state, State::Starting);
    assert_eq!(s.updated_at, t0() + secs(3));
    assert_eq!(
        s.run,
        Some(Run {
            id: "web.1.1".into(),
            spawned_at: t0() + secs(3),
            pid: None,
            exec_at: None,
        })
    );
    assert_eq!((s.runs, s.restarts, s.crashes), (1, 0, 0));
    assert_eq!(s.boot_deadline, Some(t0() + secs(3 + 7)));
    assert_eq!(s.ttl_at, None);
    assert_eq!(s.cycle_at, None);
    assert_eq!(s.stable_at, None);
    assert_eq!(s.next_deadline(), Some(t0() + secs(10)));
    assert!(s.running());
}

#[test]
fn start_of_a_worker_has_no_boot_deadline() {
    let mut d = Dyno::worker();
    assert_eq!(d.start(), start_actions(State::Down, "start", WORKER_CMD, "worker.1.1"));
    assert_eq!(d.sup.boot_deadline, None);
    assert_eq!(d.sup.next_deadline(), None);
}

#[test]
fn spawned_worker_is_up_at_once() {
    let mut d = Dyno::worker();
    d.start();
    d.advance(secs(2));
    d.u = 0.5;
    let out = d.step(Input::Spawned {
        run_id: "worker.1.1".into(),
        pid: 777,
        at: t0() + secs(1),
    });
    assert_eq!(out, up_actions());
    let s = &d.sup;
    assert_eq!(s.state, State::Up);
    assert_eq!(s.updated_at, t0() + secs(2));
    let run = s.run.as_ref().unwrap();
    assert_eq!(run.pid, Some(777));
    assert_eq!(run.exec_at, Some(t0() + secs(1)));
    assert_eq!(run.spawned_at, t0());
    assert_eq!(s.stable_at, Some(t0() + secs(2 + 90)));
    // Cycling counts from the exec: 1 s + 3600 s + half of 600 s.
    assert_eq!(s.cycle_at, Some(t0() + secs(1 + 3600 + 300)));
    assert_eq!(s.next_deadline(), s.stable_at);
}

#[test]
fn spawned_web_watches_its_port_then_port_bound_is_up() {
    let mut d = Dyno::web();
    d.start();
    d.advance(secs(1));
    let out = d.spawned();
    assert_eq!(
        out,
        vec![Action::WatchPort {
            run_id: "web.1.1".into()
        }]
    );
    assert_eq!(d.sup.state, State::Starting);
    assert_eq!(d.sup.boot_deadline, Some(t0() + secs(7)));
    assert_eq!(d.sup.stable_at, None);

    d.advance(secs(2));
    let out = d.port_bound();
    assert_eq!(out, up_actions());
    assert_eq!(d.sup.state, State::Up);
    assert_eq!(d.sup.boot_deadline, None);
    // The stable window counts from `up`, not from the exec.
    assert_eq!(d.sup.stable_at, Some(t0() + secs(3 + 90)));
    assert_eq!(d.sup.updated_at, t0() + secs(3));

    // A second report of the port changes nothing.
    let before = d.sup.clone();
    assert_eq!(d.port_bound(), vec![]);
    assert_eq!(d.sup, before);
}

#[test]
fn start_of_a_running_dyno_does_nothing() {
    let mut d = Dyno::worker().started_up();
    let before = d.sup.clone();
    assert_eq!(d.start(), vec![]);
    assert_eq!(d.sup, before);
}

#[test]
fn cycle_jitter_spans_the_configured_range() {
    for (u, extra) in [(0.0, 0), (0.5, 300)] {
        let mut d = Dyno::worker();
        d.u = u;
        d.start();
        d.spawned();
        assert_eq!(d.sup.cycle_at, Some(t0() + secs(3600 + extra)), "u={u}");
    }
    let mut d = Dyno::worker();
    d.u = 0.999;
    d.start();
    d.spawned();
    let cycle_at = d.sup.cycle_at.unwrap();
    assert!(cycle_at > t0() + secs(3600 + 599));
    assert!(cycle_at < t0() + secs(3600 + 600));
}

#[test]
fn no_cycling_when_disabled() {
    let mut d = Dyno::worker().with_policy(Policy {
        cycle: None,
        ..policy()
    });
    d.start();
    d.spawned();
    assert_eq!(d.sup.cycle_at, None);
}

// ---------------------------------------------------------------------------
// Boot timeout (R10)
// ---------------------------------------------------------------------------

const R10_LINE: &str = "Error R10 (Boot timeout) -> Web process failed to bind to $PORT within 7 seconds of launch";

fn boot_timeout_kill() -> Vec<Action> {
    vec![
        log(R10_LINE),
        log("Stopping process with SIGKILL"),
        Action::Signal(Signal::KillAll),
    ]
}

#[test]
fn boot_timeout_kills_a_web_dyno_and_counts_as_a_crash() {
    let mut d = Dyno::web();
    d.start();
    d.advance(secs(1));
    d.spawned();

    d.advance(secs(5)); // t0 + 6 s: not yet
    assert_eq!(d.tick(), vec![]);
    assert_eq!(d.sup.state, State::Starting);

    d.advance(secs(1)); // t0 + 7 s: the boot deadline
    assert_eq!(d.tick(), boot_timeout_kill());
    assert_eq!(d.sup.state, State::Starting);
    assert_eq!(d.sup.boot_deadline, None);
    assert_eq!(
        d.sup.stopping,
        Some(Stopping {
            intent: Intent::BootTimeout,
            grace_until: t0() + secs(7),
            killed: true,
        })
    );
    // Killed once: a later tick neither logs nor signals again.
    d.advance(secs(10));
    assert_eq!(d.tick(), vec![]);

    let end = exited_signal(9, d.now);
    let mut expected = vec![log("Process exited with status 137")];
    expected.extend(crash_and_restart(State::Starting, "boot_timeout", WEB_CMD, "web.1.2"));
    assert_eq!(d.exited(end), expected);
    assert_eq!(
        d.sup.last_exit,
        Some(LastExit {
            code: None,
            signal: Some(9),
            reason: ExitReason::BootTimeout,
            at: t0() + secs(17),
        })
    );
    assert_eq!(d.sup.crashes, 1);
    assert_eq!(d.sup.stopping, None);
    assert_eq!(d.sup.state, State::Starting);
    assert_eq!(d.sup.boot_deadline, Some(t0() + secs(17 + 7)));
}

#[test]
fn second_boot_timeout_stays_crashed_with_a_cooloff() {
    let mut d = Dyno::web();
    d.u = 0.0;
    d.start();
    for _ in 0..2 {
        d.spawned();
        d.advance(secs(7));
        assert_eq!(d.tick(), boot_timeout_kill());
        d.advance(secs(1));
        let end = exited_signal(9, d.now);
        d.exited(end);
    }
    assert_eq!(d.sup.state, State::Crashed);
    assert_eq!(d.sup.crashes, 2);
    assert_eq!(d.sup.run, None);
    assert_eq!(d.sup.last_exit.unwrap().reason, ExitReason::BootTimeout);
    assert_eq!(d.sup.next_restart_at, Some(d.now + mins(10)));
}

#[test]
fn boot_timeout_exit_actions_when_not_restarted_at_once() {
    let mut d = Dyno::web();
    d.start();
    d.spawned();
    d.port_bound();
    d.crash(); // first crash: restarted at once
    d.spawned();
    d.advance(secs(7));
    d.tick();
    let end = exited_signal(9, d.now);
    assert_eq!(
        d.exited(end),
        vec![
            log("Process exited with status 137"),
            log("State changed from starting to crashed"),
            changed(State::Starting, State::Crashed, "boot_timeout"),
        ]
    );
}

#[test]
fn no_boot_timeout_once_the_port_is_bound() {
    let mut d = Dyno::web().started_up();
    d.advance(secs(30));
    assert_eq!(d.tick(), vec![]);
    assert_eq!(d.sup.state, State::Up);
    assert_eq!(d.sup.stopping, None);
}

#[test]
fn boot_timeout_also_fires_before_the_exec() {
    let mut d = Dyno::web();
    d.start();
    d.advance(secs(7));
    assert_eq!(d.tick(), boot_timeout_kill());
    // The exec comes late: the kill is delivered again, no port watch.
    assert_eq!(d.spawned(), vec![Action::Signal(Signal::KillAll)]);
}

#[test]
fn workers_never_boot_timeout() {
    let mut d = Dyno::worker();
    d.start();
    d.advance(secs(3600));
    assert_eq!(d.tick(), vec![]);
    assert_eq!(d.sup.state, State::Starting);
}

// ---------------------------------------------------------------------------
// Crashes and the restart policy
// ---------------------------------------------------------------------------

#[test]
fn first_crash_restarts_at_once() {
    let mut d = Dyno::worker().started_up();
    d.advance(secs(20));
    let end = exited_code(1, d.now - secs(1));
    let mut expected = vec![log("Process exited with status 1")];
    expected.extend(crash_and_restart(State::Up, "exit", WORKER_CMD, "worker.1.2"));
    assert_eq!(d.exited(end), expected);

    let s = &d.sup;
    assert_eq!(s.state, State::Starting);
    assert_eq!((s.runs, s.restarts, s.crashes), (2, 1, 1));
    assert_eq!(s.run.as_ref().unwrap().id, "worker.1.2");
    assert_eq!(s.run.as_ref().unwrap().spawned_at, t0() + secs(20));
    assert_eq!(s.last_run.as_ref().unwrap().id, "worker.1.1");
    assert_eq!(s.last_run.as_ref().unwrap().pid, Some(4001));
    assert_eq!(
        s.last_exit,
        Some(LastExit {
            code: Some(1),
            signal: None,
            reason: ExitReason::Exit,
            at: t0() + secs(19),
        })
    );
    assert_eq!(s.next_restart_at, None);
    assert_eq!(s.stable_at, None);
    assert_eq!(s.cycle_at, None);
    assert_eq!(s.log_run().unwrap().id, "worker.1.2");
}

#[test]
fn crash_reasons_row_by_row() {
    let at = t0() + secs(4);
    // (end, runtime lines before the state change, reason)
    let rows: Vec<(RunEnd, Vec<&str>, ExitReason)> = vec![
        (
            exited_code(1, at),
            vec!["Process exited with status 1"],
            ExitReason::Exit,
        ),
        (
            exited_code(0, at),
            vec!["Process exited with status 0"],
            ExitReason::Exit,
        ),
        (
            exited_signal(9, at),
            vec!["Process exited with status 137"],
            ExitReason::Signal,
        ),
        (
            exited_signal(15, at),
            vec!["Process exited with status 143"],
            ExitReason::Signal,
        ),
        (
            oom_killed(at),
            vec![
                "Error R15 (Memory quota vastly exceeded)",
                "Process exited with status 137",
            ],
            ExitReason::Oom,
        ),
        (
            lost(at),
            vec!["Process lost: its run ended without an exit record"],
            ExitReason::Lost,
        ),
    ];
    for (end, lines, reason) in rows {
        let mut d = Dyno::worker().started_up();
        d.advance(secs(5));
        let out = d.exited(end);
        let mut expected: Vec<Action> = lines.iter().map(|l| log(*l)).collect();
        expected.extend(crash_and_restart(State::Up, reason.as_str(), WORKER_CMD, "worker.1.2"));
        assert_eq!(out, expected, "{reason:?}");
        assert_eq!(
            d.sup.last_exit,
            Some(LastExit {
                code: end.code,
                signal: end.signal,
                reason,
                at,
            }),
            "{reason:?}"
        );
        assert_eq!(d.sup.crashes, 1, "{reason:?}");
    }
}

#[test]
fn second_crash_waits_a_cooloff_in_half_to_full_of_20_min() {
    for (u, lo, hi) in [(0.0, mins(10), mins(10)), (0.999, mins(20).mul_f64(0.999), mins(20))] {
        let mut d = Dyno::worker().started_up();
        d.crash();
        d.spawned();
        d.advance(secs(30));
        d.u = u;
        let out = d.crash();
        assert_eq!(
            out,
            vec![
                log("Process exited with status 1"),
                log("State changed from up to crashed"),
                changed(State::Up, State::Crashed, "exit"),
            ],
            "u={u}"
        );
        let s = &d.sup;
        assert_eq!(s.state, State::Crashed);
        assert_eq!(s.crashes, 2);
        assert_eq!(s.run, None);
        assert!(!s.running());
        assert_eq!(s.last_run.as_ref().unwrap().id, "worker.1.2");
        assert_eq!(s.log_run().unwrap().id, "worker.1.2");
        let delay = (s.next_restart_at.unwrap() - d.now).to_std().unwrap();
        assert!(delay >= lo && delay <= hi, "u={u}: {delay:?}");
        assert!(delay >= mins(10) && delay <= mins(20), "u={u}: {delay:?}");
        assert_eq!(s.next_deadline(), s.next_restart_at);
    }
}

#[test]
fn cooloff_restart_fires_at_its_deadline_not_before() {
    let mut d = Dyno::worker().started_up();
    d.crash();
    d.spawned();
    d.u = 0.0;
    d.crash();
    let restart_at = d.sup.next_restart_at.unwrap();
    assert_eq!(restart_at, t0() + mins(10));

    d.now = restart_at - secs(1);
    let before = d.sup.clone();
    assert_eq!(d.tick(), vec![]);
    assert_eq!(d.sup, before);

    d.now = restart_at;
    assert_eq!(
        d.tick(),
        start_actions(State::Crashed, "crash_restart", WORKER_CMD, "worker.1.3")
    );
    let s = &d.sup;
    assert_eq!(s.state, State::Starting);
    assert_eq!(s.next_restart_at, None);
    assert_eq!((s.runs, s.restarts, s.crashes), (3, 2, 2));
    assert_eq!(s.run.as_ref().unwrap().spawned_at, restart_at);
}

#[test]
fn cooloff_restart_fires_on_a_late_tick() {
    let mut d = Dyno::worker().started_up();
    d.crash();
    d.spawned();
    d.u = 0.0;
    d.crash();
    d.now = d.sup.next_restart_at.unwrap() + mins(3);
    assert_eq!(
        d.tick(),
        start_actions(State::Crashed, "crash_restart", WORKER_CMD, "worker.1.3")
    );
    assert_eq!(d.sup.run.as_ref().unwrap().spawned_at, d.now);
}

#[test]
fn start_of_a_crashed_dyno_restarts_it_at_once() {
    let mut d = Dyno::worker().started_up();
    d.crash();
    d.spawned();
    d.crash();
    assert_eq!(d.sup.state, State::Crashed);
    d.advance(secs(60));
    assert_eq!(
        d.start(),
        start_actions(State::Crashed, "start", WORKER_CMD, "worker.1.3")
    );
    assert_eq!(d.sup.next_restart_at, None);
}

#[test]
fn spawn_failed_is_a_lost_run() {
    let mut d = Dyno::worker();
    d.start();
    d.advance(secs(1));
    let out = d.step(Input::SpawnFailed {
        run_id: "worker.1.1".into(),
        error: "clone: Operation not permitted".into(),
    });
    let mut expected = vec![
        // Never exec'd: no "Process lost" line.
        log("Failed to start process: clone: Operation not permitted"),
    ];
    expected.extend(crash_and_restart(State::Starting, "lost", WORKER_CMD, "worker.1.2"));
    assert_eq!(out, expected);
    let s = &d.sup;
    assert_eq!(
        s.last_exit,
        Some(LastExit {
            code: None,
            signal: None,
            reason: ExitReason::Lost,
            at: t0() + secs(1),
        })
    );
    let last = s.last_run.as_ref().unwrap();
    assert_eq!((last.id.as_str(), last.pid, last.exec_at), ("worker.1.1", None, None));
    assert_eq!(s.crashes, 1);

    // Failing again: a cool-off.
    let out = d.step(Input::SpawnFailed {
        run_id: "worker.1.2".into(),
        error: "no space".into(),
    });
    assert_eq!(d.sup.state, State::Crashed);
    assert_eq!(
        &out[1..],
        &[
            log("State changed from starting to crashed"),
            changed(State::Starting, State::Crashed, "lost"),
        ]
    );
    assert!(d.sup.next_restart_at.is_some());
}

// ---------------------------------------------------------------------------
// Stable window
// ---------------------------------------------------------------------------

#[test]
fn stable_window_resets_the_crash_count() {
    let mut d = Dyno::worker().started_up();
    d.crash();
    assert_eq!(d.sup.crashes, 1);
    d.spawned();
    let stable_at = d.sup.stable_at.unwrap();
    assert_eq!(stable_at, d.now + secs(90));

    d.now = stable_at - secs(1);
    assert_eq!(d.tick(), vec![]);
    assert_eq!(d.sup.crashes, 1);

    d.now = stable_at;
    assert_eq!(d.tick(), vec![]);
    assert_eq!(d.sup.crashes, 0);
    assert_eq!(d.sup.stable_at, None);
    assert_eq!(d.sup.state, State::Up);

    // The next crash is a first crash again: restarted at once.
    d.advance(secs(5));
    let mut expected = vec![log("Process exited with status 1")];
    expected.extend(crash_and_restart(State::Up, "exit", WORKER_CMD, "worker.1.3"));
    assert_eq!(d.crash(), expected);
    assert_eq!(d.sup.crashes, 1);
}

#[test]
fn crash_inside_the_stable_window_is_consecutive() {
    let mut d = Dyno::worker().started_up();
    d.crash();
    d.spawned();
    d.advance(secs(89));
    assert_eq!(d.tick(), vec![]);
    d.crash();
    assert_eq!(d.sup.crashes, 2);
    assert_eq!(d.sup.state, State::Crashed);
}

// ---------------------------------------------------------------------------
// Stop
// ---------------------------------------------------------------------------

#[test]
fn stop_within_the_grace_is_down_stopped() {
    let mut d = Dyno::worker().started_up();
    d.advance(secs(10));
    assert_eq!(d.stop(), term_actions());
    let s = &d.sup;
    assert_eq!(
        s.stopping,
        Some(Stopping {
            intent: Intent::Stop,
            grace_until: t0() + secs(15),
            killed: false,
        })
    );
    assert_eq!(s.state, State::Up);
    assert_eq!(
        (s.stable_at, s.cycle_at, s.boot_deadline, s.ttl_at),
        (None, None, None, None)
    );
    assert_eq!(s.next_deadline(), Some(t0() + secs(15)));

    d.advance(secs(4));
    assert_eq!(d.tick(), vec![]);
    let end = exited_signal(15, d.now);
    assert_eq!(
        d.exited(end),
        vec![
            log("Process exited with status 143"),
            log("State changed from up to down"),
            changed(State::Up, State::Down, "stop"),
        ]
    );
    let s = &d.sup;
    assert_eq!(s.state, State::Down);
    assert_eq!(s.run, None);
    assert_eq!(s.stopping, None);
    assert_eq!(s.crashes, 0);
    assert_eq!(s.next_restart_at, None);
    assert_eq!(s.next_deadline(), None);
    assert_eq!(
        s.last_exit,
        Some(LastExit {
            code: None,
            signal: Some(15),
            reason: ExitReason::Stopped,
            at: t0() + secs(14),
        })
    );
    // An exit 0 on SIGTERM is just as much a stop.
    let mut d = Dyno::web().started_up();
    d.stop();
    let end = exited_code(0, d.now);
    d.exited(end);
    assert_eq!(d.sup.state, State::Down);
    assert_eq!(d.sup.last_exit.unwrap().reason, ExitReason::Stopped);
}

#[test]
fn stop_past_the_grace_is_r12_then_sigkill() {
    let mut d = Dyno::worker().started_up();
    d.stop();
    d.advance(secs(4));
    assert_eq!(d.tick(), vec![]);
    d.advance(secs(1));
    assert_eq!(
        d.tick(),
        vec![
            log("Error R12 (Exit timeout) -> At least one process failed to exit within 5 seconds of SIGTERM"),
            log(SIGKILL_LINE),
            Action::Signal(Signal::KillAll),
        ]
    );
    assert!(logs(&d.tick()).is_empty());
    assert!(d.sup.stopping.unwrap().killed);
    assert_eq!(d.sup.next_deadline(), None);

    d.advance(secs(1));
    let end = exited_signal(9, d.now);
    assert_eq!(
        d.exited(end),
        vec![
            log("Process exited with status 137"),
            log("State changed from up to down"),
            changed(State::Up, State::Down, "stop"),
        ]
    );
    assert_eq!(d.sup.state, State::Down);
    assert_eq!(
        d.sup.last_exit,
        Some(LastExit {
            code: None,
            signal: Some(9),
            reason: ExitReason::StopTimeout,
            at: t0() + secs(6),
        })
    );
}

#[test]
fn stop_twice_signals_once() {
    let mut d = Dyno::worker().started_up();
    d.stop();
    let before = d.sup.clone();
    d.advance(secs(1));
    assert_eq!(d.stop(), vec![]);
    assert_eq!(d.sup, before);
}

#[test]
fn stop_of_a_crashed_dyno_waiting_for_restart_is_down() {
    let mut d = Dyno::worker().started_up();
    d.crash();
    d.spawned();
    d.crash();
    let restart_at = d.sup.next_restart_at.unwrap();
    d.advance(secs(60));
    assert_eq!(
        d.stop(),
        vec![
            log("State changed from crashed to down"),
            changed(State::Crashed, State::Down, "stop"),
        ]
    );
    assert_eq!(d.sup.state, State::Down);
    assert_eq!(d.sup.next_restart_at, None);
    assert_eq!(d.sup.next_deadline(), None);
    assert_eq!(d.sup.updated_at, d.now);

    // The old deadline no longer restarts it.
    d.now = restart_at + secs(1);
    assert_eq!(d.tick(), vec![]);
    assert_eq!(d.sup.state, State::Down);
}

#[test]
fn stop_of_a_down_dyno_does_nothing() {
    let mut d = Dyno::worker();
    assert_eq!(d.stop(), vec![]);
    assert_eq!(d.sup, Supervision::new("worker.1", t0()));

    let mut d = Dyno::worker().started_up();
    d.stop();
    let end = exited_signal(15, d.now);
    d.exited(end);
    let before = d.sup.clone();
    assert_eq!(d.stop(), vec![]);
    assert_eq!(d.sup, before);
}

#[test]
fn start_of_a_stopped_dyno_starts_a_new_run() {
    let mut d = Dyno::worker().started_up();
    d.stop();
    let end = exited_signal(15, d.now);
    d.exited(end);
    d.advance(secs(100));
    assert_eq!(d.start(), start_actions(State::Down, "start", WORKER_CMD, "worker.1.2"));
    let s = &d.sup;
    assert_eq!(s.state, State::Starting);
    assert_eq!((s.runs, s.restarts), (2, 1));
    assert_eq!(s.run.as_ref().unwrap().spawned_at, t0() + secs(100));
    assert_eq!(s.last_run.as_ref().unwrap().id, "worker.1.1");
}

#[test]
fn stop_before_the_exec_is_delivered_on_spawned() {
    let mut d = Dyno::web();
    d.start();
    assert_eq!(d.stop(), term_actions());
    assert_eq!(d.sup.boot_deadline, None);
    // Exec'd after the stop: SIGTERM again, no port watch, not up.
    d.advance(secs(1));
    assert_eq!(d.spawned(), vec![Action::Signal(Signal::Term)]);
    assert_eq!(d.sup.state, State::Starting);
    assert_eq!(d.sup.run.as_ref().unwrap().pid, Some(4001));
    let end = exited_signal(15, d.now);
    assert_eq!(
        d.exited(end),
        vec![
            log("Process exited with status 143"),
            log("State changed from starting to down"),
            changed(State::Starting, State::Down, "stop"),
        ]
    );
    assert_eq!(d.sup.last_exit.unwrap().reason, ExitReason::Stopped);
}

#[test]
fn stop_before_the_exec_past_the_grace_is_delivered_as_sigkill() {
    let mut d = Dyno::worker();
    d.start();
    d.stop();
    d.advance(secs(5));
    assert_eq!(
        logs(&d.tick()),
        vec![
            "Error R12 (Exit timeout) -> At least one process failed to exit within 5 seconds of SIGTERM",
            SIGKILL_LINE,
        ]
    );
    assert_eq!(d.spawned(), vec![Action::Signal(Signal::KillAll)]);
    let end = exited_signal(9, d.now);
    d.exited(end);
    assert_eq!(d.sup.state, State::Down);
    assert_eq!(d.sup.last_exit.unwrap().reason, ExitReason::StopTimeout);
}

#[test]
fn spawn_failed_while_stopping_is_down() {
    let mut d = Dyno::worker();
    d.start();
    d.stop();
    let out = d.step(Input::SpawnFailed {
        run_id: "worker.1.1".into(),
        error: "boom".into(),
    });
    assert_eq!(
        out,
        vec![
            log("Failed to start process: boom"),
            log("State changed from starting to down"),
            changed(State::Starting, State::Down, "stop"),
        ]
    );
    assert_eq!(d.sup.crashes, 0);
}

#[test]
fn start_while_stopping_runs_again_afterwards() {
    let mut d = Dyno::worker().started_up();
    d.stop();
    assert_eq!(d.start(), vec![]);
    assert_eq!(d.sup.stopping.unwrap().intent, Intent::Restart);
    let end = exited_signal(15, d.now);
    let mut expected = vec![log("Process exited with status 143")];
    expected.extend(start_actions(State::Up, "restart", WORKER_CMD, "worker.1.2"));
    assert_eq!(d.exited(end), expected);
}

#[test]
fn stop_while_restarting_wins() {
    let mut d = Dyno::worker().started_up();
    d.restart();
    assert_eq!(d.stop(), vec![]);
    assert_eq!(d.sup.stopping.unwrap().intent, Intent::Stop);
    let end = exited_signal(15, d.now);
    d.exited(end);
    assert_eq!(d.sup.state, State::Down);
    assert_eq!(d.sup.run, None);
}

// ---------------------------------------------------------------------------
// Restart
// ---------------------------------------------------------------------------

/// A worker on its third run, `up`, with two consecutive crashes counted.
fn worker_with_two_crashes() -> Dyno {
    let mut d = Dyno::worker().started_up();
    d.crash();
    d.spawned();
    d.u = 0.0;
    d.crash();
    d.now = d.sup.next_restart_at.unwrap();
    d.tick();
    d.spawned();
    assert_eq!((d.sup.state, d.sup.crashes, d.sup.runs), (State::Up, 2, 3));
    d
}

#[test]
fn restart_of_a_running_dyno_stops_it_then_runs_again() {
    let mut d = worker_with_two_crashes();
    assert_eq!(
        d.restart(),
        vec![log("Restarting"), log(SIGTERM_LINE), Action::Signal(Signal::Term)]
    );
    assert_eq!(d.sup.crashes, 0);
    assert_eq!(d.sup.stopping.unwrap().intent, Intent::Restart);
    assert_eq!(d.sup.state, State::Up);

    d.advance(secs(2));
    let end = exited_signal(15, d.now);
    let mut expected = vec![log("Process exited with status 143")];
    expected.extend(start_actions(State::Up, "restart", WORKER_CMD, "worker.1.4"));
    assert_eq!(d.exited(end), expected);
    let s = &d.sup;
    assert_eq!(s.state, State::Starting);
    assert_eq!((s.runs, s.restarts, s.crashes), (4, 3, 0));
    assert_eq!(s.stopping, None);
    assert_eq!(s.last_exit.unwrap().reason, ExitReason::Stopped);

    // The count was reset: the next crash restarts at once.
    d.spawned();
    d.crash();
    assert_eq!((d.sup.state, d.sup.crashes), (State::Starting, 1));
}

#[test]
fn restart_past_the_grace_is_stop_timeout_then_runs_again() {
    let mut d = Dyno::worker().started_up();
    d.restart();
    d.advance(secs(5));
    assert_eq!(
        logs(&d.tick()),
        vec![
            "Error R12 (Exit timeout) -> At least one process failed to exit within 5 seconds of SIGTERM",
            SIGKILL_LINE,
        ]
    );
    let end = exited_signal(9, d.now);
    let out = d.exited(end);
    assert_eq!(out.last(), Some(&spawn("worker.1.2")));
    assert_eq!(d.sup.state, State::Starting);
    assert_eq!(d.sup.last_exit.unwrap().reason, ExitReason::StopTimeout);
}

#[test]
fn restart_of_a_crashed_dyno_spawns_at_once_and_resets_the_count() {
    let mut d = Dyno::worker().started_up();
    d.crash();
    d.spawned();
    d.crash();
    assert_eq!(d.sup.state, State::Crashed);
    d.advance(secs(30));
    assert_eq!(
        d.restart(),
        start_actions(State::Crashed, "restart", WORKER_CMD, "worker.1.3")
    );
    assert_eq!(d.sup.crashes, 0);
    assert_eq!(d.sup.next_restart_at, None);
}

#[test]
fn restart_of_a_down_dyno_starts_it() {
    let mut d = Dyno::worker();
    assert_eq!(
        d.restart(),
        start_actions(State::Down, "restart", WORKER_CMD, "worker.1.1")
    );
    assert_eq!((d.sup.runs, d.sup.restarts), (1, 0));
}

// ---------------------------------------------------------------------------
// Stale run ids
// ---------------------------------------------------------------------------

#[test]
fn inputs_for_an_old_run_are_ignored() {
    let mut d = Dyno::web().started_up();
    d.crash(); // now on web.1.2, starting
    d.spawned(); // watching the port
    let before = d.sup.clone();
    let at = d.now;
    let stale = [
        Input::Exited {
            run_id: "web.1.1".into(),
            end: exited_code(1, at),
        },
        Input::Spawned {
            run_id: "web.1.1".into(),
            pid: 1,
            at,
        },
        Input::PortBound {
            run_id: "web.1.1".into(),
        },
        Input::SpawnFailed {
            run_id: "web.1.1".into(),
            error: "x".into(),
        },
        Input::Exited {
            run_id: "web.1.99".into(),
            end: lost(at),
        },
        Input::PortBound {
            run_id: "web.2.2".into(),
        },
    ];
    for input in stale {
        assert_eq!(d.step(input.clone()), vec![], "{input:?}");
        assert_eq!(d.sup, before, "{input:?}");
    }
}

#[test]
fn inputs_for_a_run_that_already_ended_are_ignored() {
    let mut d = Dyno::worker().started_up();
    d.stop();
    let end = exited_signal(15, d.now);
    d.exited(end);
    let before = d.sup.clone();
    let at = d.now;
    assert_eq!(
        d.step(Input::Exited {
            run_id: "worker.1.1".into(),
            end: exited_code(0, at),
        }),
        vec![]
    );
    assert_eq!(
        d.step(Input::Spawned {
            run_id: "worker.1.1".into(),
            pid: 9,
            at,
        }),
        vec![]
    );
    assert_eq!(d.sup, before);
}

// ---------------------------------------------------------------------------
// One-off dynos
// ---------------------------------------------------------------------------

#[test]
fn one_off_exit_is_down_and_never_restarted() {
    for (end, reason, line) in [
        (exited_code(0, t0()), "exit", "Process exited with status 0"),
        (exited_code(2, t0()), "exit", "Process exited with status 2"),
        (exited_signal(9, t0()), "signal", "Process exited with status 137"),
    ] {
        let mut d = Dyno::one_off();
        assert_eq!(d.start(), start_actions(State::Down, "start", RUN_CMD, "run.1.1"));
        assert_eq!(d.sup.ttl_at, Some(t0() + secs(600)));
        d.spawned();
        assert_eq!(d.sup.state, State::Up);
        assert_eq!(d.sup.cycle_at, None, "one-offs are not cycled");
        assert_eq!(
            d.exited(end),
            vec![
                log(line),
                log("State changed from up to down"),
                changed(State::Up, State::Down, reason),
            ]
        );
        let s = &d.sup;
        assert_eq!(s.state, State::Down);
        assert_eq!((s.run.clone(), s.next_restart_at, s.ttl_at), (None, None, None));
        assert_eq!(s.crashes, 0);
        assert_eq!(s.last_exit.unwrap().reason.as_str(), reason);
        assert_eq!(s.next_deadline(), None);
        d.advance(mins(60 * 48));
        assert_eq!(d.tick(), vec![]);
        assert_eq!(d.sup.runs, 1);
    }
}

#[test]
fn one_off_oom_is_down_with_r15() {
    let mut d = Dyno::one_off();
    d.start();
    d.spawned();
    let end = oom_killed(d.now);
    assert_eq!(
        d.exited(end),
        vec![
            log("Error R15 (Memory quota vastly exceeded)"),
            log("Process exited with status 137"),
            log("State changed from up to down"),
            changed(State::Up, State::Down, "oom"),
        ]
    );
    assert_eq!(d.sup.last_exit.unwrap().reason, ExitReason::Oom);
}

#[test]
fn one_off_time_to_live_stops_it() {
    let mut d = Dyno::one_off();
    d.start();
    d.advance(secs(2));
    d.spawned();
    assert_eq!(d.sup.ttl_at, Some(t0() + secs(600)));

    d.now = t0() + secs(599);
    assert_eq!(d.tick(), vec![]);
    d.now = t0() + secs(600);
    assert_eq!(
        d.tick(),
        vec![
            log("One-off dyno reached its time to live"),
            log(SIGTERM_LINE),
            Action::Signal(Signal::Term),
        ]
    );
    assert_eq!(d.sup.ttl_at, None);
    assert_eq!(d.sup.stopping.unwrap().intent, Intent::TimeToLive);

    let end = exited_signal(15, d.now);
    assert_eq!(
        d.exited(end),
        vec![
            log("Process exited with status 143"),
            log("State changed from up to down"),
            changed(State::Up, State::Down, "time_to_live"),
        ]
    );
    assert_eq!(d.sup.last_exit.unwrap().reason, ExitReason::Stopped);
    assert_eq!(d.sup.runs, 1);
}

#[test]
fn one_off_time_to_live_past_the_grace_is_stop_timeout() {
    let mut d = Dyno::one_off();
    d.start();
    d.spawned();
    d.now = t0() + secs(600);
    d.tick();
    d.advance(secs(5));
    assert_eq!(d.tick().last(), Some(&Action::Signal(Signal::KillAll)));
    let end = exited_signal(9, d.now);
    let out = d.exited(end);
    assert_eq!(out.last(), Some(&changed(State::Up, State::Down, "time_to_live")));
    assert_eq!(d.sup.last_exit.unwrap().reason, ExitReason::StopTimeout);
}

// ---------------------------------------------------------------------------
// Daily cycling
// ---------------------------------------------------------------------------

#[test]
fn cycling_restarts_the_run_without_counting_a_crash() {
    // A stable window longer than the cycle, so the crash count survives to it.
    let mut d = Dyno::worker().with_policy(Policy {
        stable_window: secs(7200),
        ..policy()
    });
    d.start();
    d.spawned();
    d.crash(); // first crash, restarted at once
    d.advance(secs(3));
    d.u = 0.0;
    d.spawned();
    assert_eq!(d.sup.crashes, 1);
    let cycle_at = d.sup.cycle_at.unwrap();
    assert_eq!(cycle_at, t0() + secs(3 + 3600));

    d.now = cycle_at - secs(1);
    assert_eq!(d.tick(), vec![]);
    d.now = cycle_at;
    assert_eq!(
        d.tick(),
        vec![log("Cycling"), log(SIGTERM_LINE), Action::Signal(Signal::Term)]
    );
    assert_eq!(d.sup.cycle_at, None);
    assert_eq!(d.sup.stopping.unwrap().intent, Intent::Cycle);

    d.advance(secs(1));
    let end = exited_signal(15, d.now);
    let mut expected = vec![log("Process exited with status 143")];
    expected.extend(start_actions(State::Up, "cycle", WORKER_CMD, "worker.1.3"));
    assert_eq!(d.exited(end), expected);
    let s = &d.sup;
    assert_eq!(s.state, State::Starting);
    assert_eq!(s.crashes, 1, "a cycle is not a crash");
    assert_eq!(s.next_restart_at, None);
    assert_eq!((s.runs, s.restarts), (3, 2));
    assert_eq!(s.last_exit.unwrap().reason, ExitReason::Stopped);
}

#[test]
fn stop_while_cycling_wins() {
    let mut d = Dyno::worker().started_up();
    d.now = d.sup.cycle_at.unwrap();
    d.tick();
    assert_eq!(d.stop(), vec![]);
    let end = exited_signal(15, d.now);
    let out = d.exited(end);
    assert_eq!(out.last(), Some(&changed(State::Up, State::Down, "stop")));
    assert_eq!(d.sup.state, State::Down);
}

// ---------------------------------------------------------------------------
// Persistence
// ---------------------------------------------------------------------------

#[test]
fn supervision_survives_a_serde_round_trip() {
    let mut d = Dyno::web().started_up();
    d.crash();
    d.spawned();
    d.port_bound();
    d.stop();
    let json = serde_json::to_string(&d.sup).unwrap();
    let back: Supervision = serde_json::from_str(&json).unwrap();
    assert_eq!(back, d.sup);
    assert!(json.contains(r#""state":"up""#), "{json}");
    assert!(json.contains(r#""intent":"stop""#), "{json}");
    assert!(json.contains(r#""reason":"exit""#), "{json}");
}

#[test]
fn contract_names() {
    for (state, name) in [
        (State::Starting, "starting"),
        (State::Up, "up"),
        (State::Crashed, "crashed"),
        (State::Down, "down"),
    ] {
        assert_eq!(state.as_str(), name);
        assert_eq!(state.to_string(), name);
        assert_eq!(serde_json::to_string(&state).unwrap(), format!("\"{name}\""));
    }
    for (reason, name) in [
        (ExitReason::Exit, "exit"),
        (ExitReason::Signal, "signal"),
        (ExitReason::Oom, "oom"),
        (ExitReason::BootTimeout, "boot_timeout"),
        (ExitReason::Lost, "lost"),
        (ExitReason::Stopped, "stopped"),
        (ExitReason::StopTimeout, "stop_timeout"),
    ] {
        assert_eq!(reason.as_str(), name);
        assert_eq!(serde_json::to_string(&reason).unwrap(), format!("\"{name}\""));
    }
}

// ---------------------------------------------------------------------------
// The whole cool-off schedule, in paused tokio time
// ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn cooloff_schedule_with_paused_time() {
    use tokio::time::{Instant, advance};

    let base = t0();
    let origin = Instant::now();
    // The driver's clock: wall time that moves with tokio's paused time.
    let clock = || base + (Instant::now() - origin);
    // The tokio instant the driver sleeps until for a wall-clock deadline.
    let wake_at = |t: Time| origin + (t - base).to_std().unwrap();

    let profile = worker();
    let policy = Policy {
        cycle: None,
        ..Policy::default()
    };
    let mut sup = Supervision::new("worker.1", clock());
    let step = |sup: &mut Supervision, input: Input, u: f64| {
        let mut jitter = move || u;
        let mut cx = ctx(&profile, &policy, clock(), &mut jitter);
        sup.step(&mut cx, input)
    };

    // (jitter, half, full in minutes) for crashes 1..=8.
    let schedule: [(f64, u64, u64); 8] = [
        (0.5, 0, 0),
        (0.0, 10, 20),
        (0.999, 20, 40),
        (0.5, 30, 60),
        (0.0, 90, 180),
        (0.999, 160, 320),
        (0.25, 160, 320),
        (0.0, 160, 320),
    ];

    step(&mut sup, Input::Start, 0.5);
    for (i, (u, half, full)) in schedule.into_iter().enumerate() {
        let n = i as u32 + 1;
        let run_id = sup.run.as_ref().unwrap().id.clone();
        let at = clock();
        step(
            &mut sup,
            Input::Spawned {
                run_id: run_id.clone(),
                pid: 100 + n,
                at,
            },
            u,
        );
        assert_eq!(sup.state, State::Up, "crash {n}");
        // Up for a while, shorter than the stable window.
        advance(Duration::from_secs(42)).await;
        let crashed_at = clock();
        let out = step(
            &mut sup,
            Input::Exited {
                run_id,
                end: exited_code(1, crashed_at),
            },
            u,
        );
        assert_eq!(sup.crashes, n, "crash {n}");
        assert_eq!(logs(&out)[0], "Process exited with status 1");

        if n == 1 {
            // Restarted at once, no cool-off.
            assert_eq!(sup.state, State::Starting);
            assert_eq!(sup.next_restart_at, None);
            assert_eq!(sup.next_deadline(), None);
            assert_eq!(out.last(), Some(&spawn("worker.1.2")));
            continue;
        }

        assert_eq!(sup.state, State::Crashed, "crash {n}");
        let deadline = sup.next_deadline().expect("a restart deadline");
        assert_eq!(Some(deadline), sup.next_restart_at, "crash {n}");
        let delay = (deadline - crashed_at).to_std().unwrap();
        let (half, full) = (mins(half), mins(full));
        assert!(delay >= half && delay <= full, "crash {n}: {delay:?}");
        assert_eq!(delay, full.mul_f64(0.5 + 0.5 * u), "crash {n}");

        // Just short of the deadline: nothing happens.
        let wake = wake_at(deadline);
        advance(wake - Instant::now() - Duration::from_secs(1)).await;
        assert_eq!(step(&mut sup, Input::Tick, u), vec![], "crash {n}");
        assert_eq!(sup.state, State::Crashed);

        // At the deadline the restart is spawned.
        advance(wake - Instant::now()).await;
        assert_eq!(Instant::now(), wake);
        assert_eq!(clock(), deadline);
        assert_eq!(Instant::now() - origin - (crashed_at - base).to_std().unwrap(), delay);
        let out = step(&mut sup, Input::Tick, u);
        let next_run = format!("worker.1.{}", n + 1);
        assert_eq!(
            out,
            start_actions(State::Crashed, "crash_restart", WORKER_CMD, &next_run),
            "crash {n}"
        );
        assert_eq!(sup.next_restart_at, None);
        assert_eq!(sup.restarts, n);
    }
    assert_eq!(sup.runs, 9);
}

// ---------------------------------------------------------------------------
// Deadlines never stay due
// ---------------------------------------------------------------------------

#[test]
fn a_due_deadline_that_no_longer_applies_is_dropped_on_tick() {
    // A web dyno that is up while a stale boot deadline (e.g. from an older
    // record) and a stale restart time are in the past: a tick must not act on
    // them and must not leave them due, or the driver would spin.
    let mut d = Dyno::web().started_up();
    d.sup.boot_deadline = Some(d.now - secs(1));
    d.sup.next_restart_at = Some(d.now - secs(1));
    let out = d.tick();
    assert_eq!(out, vec![]);
    assert_eq!(d.sup.state, State::Up);
    assert!(
        d.sup.next_deadline().is_none_or(|t| t > d.now),
        "{:?}",
        d.sup.next_deadline()
    );
}

#[test]
fn a_second_spawned_report_of_the_same_run_changes_nothing() {
    let mut d = Dyno::worker().started_up();
    let before = d.sup.clone();
    d.advance(secs(30));
    let (run_id, at) = (d.run_id(), d.now);
    let out = d.step(Input::Spawned { run_id, pid: 9999, at });
    assert_eq!(out, vec![]);
    assert_eq!(d.sup, before, "pid, stable window and cycle time are kept");
}
