//! [`Supervision`], one dyno's lifecycle, and [`Supervision::step`], the
//! function from (state, input, time) to (state, actions).

use serde::{Deserialize, Serialize};

use super::Time;
use super::types::*;

/// The lifecycle of one dyno. Serializable so that it survives agent restarts;
/// every deadline is a wall-clock time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Supervision {
    pub state: State,
    pub updated_at: Time,
    /// Prefix of run ids: `<prefix>.<n>`.
    pub run_prefix: String,
    /// Runs started so far.
    pub runs: u32,
    /// The active run, if any.
    pub run: Option<Run>,
    /// The last run that ended.
    pub last_run: Option<Run>,
    /// New runs started after the first.
    pub restarts: u32,
    /// Consecutive crashes since the last reset.
    pub crashes: u32,
    pub last_exit: Option<LastExit>,
    pub next_restart_at: Option<Time>,
    pub stopping: Option<Stopping>,
    pub boot_deadline: Option<Time>,
    pub stable_at: Option<Time>,
    pub cycle_at: Option<Time>,
    pub ttl_at: Option<Time>,
    /// Consecutive spawn failures (the retry's backoff); reset by an exec.
    #[serde(default)]
    pub spawn_failures: u32,
    /// Out of `up` because of a daily cycle: from the cycle's stop until the
    /// next run is up (or the dyno crashes or goes down).
    #[serde(default)]
    pub cycling: bool,
}

impl Supervision {
    /// A dyno that has never run.
    pub fn new(run_prefix: impl Into<String>, now: Time) -> Self {
        Supervision {
            state: State::Down,
            updated_at: now,
            run_prefix: run_prefix.into(),
            runs: 0,
            run: None,
            last_run: None,
            restarts: 0,
            crashes: 0,
            last_exit: None,
            next_restart_at: None,
            stopping: None,
            boot_deadline: None,
            stable_at: None,
            cycle_at: None,
            ttl_at: None,
            spawn_failures: 0,
            cycling: false,
        }
    }

    /// The earliest deadline this dyno waits for.
    pub fn next_deadline(&self) -> Option<Time> {
        [
            self.stopping.filter(|s| !s.killed).map(|s| s.grace_until),
            self.boot_deadline,
            self.stable_at,
            self.cycle_at,
            self.ttl_at,
            self.next_restart_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The run whose log the runtime's own lines go to: the active one, else
    /// the last one.
    pub fn log_run(&self) -> Option<&Run> {
        self.run.as_ref().or(self.last_run.as_ref())
    }

    /// Whether a run is active (spawned and not yet ended).
    pub fn running(&self) -> bool {
        self.run.is_some()
    }

    /// Applies one input; returns what the driver must do.
    pub fn step(&mut self, cx: &mut Ctx<'_>, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Start => self.on_start(cx, &mut out),
            Input::Stop => self.begin_stop(cx, Intent::Stop, &mut out),
            Input::Restart => {
                self.crashes = 0;
                self.spawn_failures = 0;
                if let Some(stopping) = &mut self.stopping {
                    // Already ending the run: make sure a fresh one follows.
                    if matches!(stopping.intent, Intent::Stop | Intent::TimeToLive) {
                        stopping.intent = Intent::Restart;
                    }
                } else if self.running() {
                    out.push(Action::Log("Restarting".into()));
                    self.begin_stop(cx, Intent::Restart, &mut out);
                } else {
                    self.spawn(cx, "restart", &mut out);
                }
            }
            Input::Spawned { run_id, pid, at } => self.on_spawned(cx, &run_id, pid, at, &mut out),
            Input::SpawnFailed { run_id, error } => {
                if self.is_current(&run_id) {
                    out.push(Action::Log(format!("Failed to start process: {error}")));
                    self.on_spawn_failed(cx, error, &mut out);
                }
            }
            Input::PortBound { run_id } => {
                if self.is_current(&run_id) && self.state == State::Starting && self.stopping.is_none() {
                    self.boot_deadline = None;
                    self.became_up(cx, &mut out);
                }
            }
            Input::Exited { run_id, end } => {
                if self.is_current(&run_id) {
                    self.on_exited(cx, end, &mut out);
                }
            }
            Input::Tick => self.on_tick(cx, &mut out),
        }
        out
    }

    fn is_current(&self, run_id: &str) -> bool {
        self.run.as_ref().is_some_and(|r| r.id == run_id)
    }

    fn set_state(&mut self, to: State, reason: &'static str, now: Time, out: &mut Vec<Action>) {
        if matches!(to, State::Crashed | State::Down) {
            self.cycling = false;
        }
        let from = self.state;
        self.state = to;
        self.updated_at = now;
        if from != to {
            out.push(Action::Log(format!("State changed from {from} to {to}")));
        }
        out.push(Action::Changed { from, to, reason });
    }

    fn on_start(&mut self, cx: &mut Ctx<'_>, out: &mut Vec<Action>) {
        if let Some(stopping) = &mut self.stopping {
            // A start while stopping: run again once the old run is gone.
            if stopping.intent == Intent::Stop {
                stopping.intent = Intent::Restart;
            }
            return;
        }
        if self.running() {
            return;
        }
        if self.state == State::Down {
            // An explicit start after a stop begins a fresh crash history.
            self.crashes = 0;
        }
        self.spawn(cx, "start", out);
    }

    /// Starts a new run now.
    fn spawn(&mut self, cx: &mut Ctx<'_>, reason: &'static str, out: &mut Vec<Action>) {
        let now = cx.now;
        if self.runs > 0 {
            self.restarts += 1;
        }
        self.runs += 1;
        let run_id = format!("{}.{}", self.run_prefix, self.runs);
        self.run = Some(Run {
            id: run_id.clone(),
            spawned_at: now,
            pid: None,
            exec_at: None,
        });
        self.next_restart_at = None;
        self.stable_at = None;
        self.cycle_at = None;
        self.boot_deadline = cx.profile.web.then(|| now + cx.policy.boot_timeout);
        self.ttl_at = cx.profile.one_off.then(|| now + cx.profile.time_to_live);
        self.set_state(State::Starting, reason, now, out);
        out.push(Action::Log(format!(
            "Starting process with command `{}`",
            cx.profile.command
        )));
        out.push(Action::Spawn { run_id });
    }

    fn on_spawned(&mut self, cx: &mut Ctx<'_>, run_id: &str, pid: u32, at: Time, out: &mut Vec<Action>) {
        // Only the first report of a run counts (a re-adopting agent may
        // learn of the exec twice).
        let Some(run) = self.run.as_mut().filter(|r| r.id == run_id && r.pid.is_none()) else {
            return;
        };
        run.pid = Some(pid);
        run.exec_at = Some(at);
        self.spawn_failures = 0;
        if !cx.profile.one_off
            && self.stopping.is_none()
            && let Some((interval, jitter)) = cx.policy.cycle
        {
            let u = (cx.jitter)();
            self.cycle_at = Some(super::pick_cycle(
                at + interval,
                jitter,
                &cx.peers.cycles,
                cx.policy.restart_span(),
                u,
            ));
        }
        if let Some(stopping) = self.stopping {
            // Asked to stop before the command was exec'd: deliver it now.
            out.push(Action::Signal(if stopping.killed {
                Signal::KillAll
            } else {
                Signal::Term
            }));
            return;
        }
        if cx.profile.web {
            out.push(Action::WatchPort {
                run_id: run_id.to_string(),
            });
        } else {
            self.became_up(cx, out);
        }
    }

    fn became_up(&mut self, cx: &mut Ctx<'_>, out: &mut Vec<Action>) {
        self.cycling = false;
        self.stable_at = Some(cx.now + cx.policy.stable_window);
        self.set_state(State::Up, "up", cx.now, out);
    }

    fn begin_stop(&mut self, cx: &mut Ctx<'_>, intent: Intent, out: &mut Vec<Action>) {
        let now = cx.now;
        if let Some(stopping) = &mut self.stopping {
            // Already stopping: a plain stop wins over a pending restart.
            if intent == Intent::Stop {
                stopping.intent = Intent::Stop;
            }
            return;
        }
        if !self.running() {
            if intent == Intent::Stop && self.state != State::Down {
                self.next_restart_at = None;
                self.set_state(State::Down, "stop", now, out);
            }
            return;
        }
        self.stopping = Some(Stopping {
            intent,
            grace_until: now + cx.policy.stop_grace,
            killed: false,
        });
        self.boot_deadline = None;
        self.stable_at = None;
        self.cycle_at = None;
        self.ttl_at = None;
        out.push(Action::Log("Stopping all processes with SIGTERM".into()));
        out.push(Action::Signal(Signal::Term));
    }

    fn on_exited(&mut self, cx: &mut Ctx<'_>, end: RunEnd, out: &mut Vec<Action>) {
        let now = cx.now;
        let run = self.run.take().expect("checked by caller");
        let was_execd = run.pid.is_some();
        self.last_run = Some(run);
        if self.state == State::Up && self.stable_at.is_some_and(|t| t <= end.at) {
            // Up for the whole stable window, even if no tick saw it.
            self.crashes = 0;
        }
        self.boot_deadline = None;
        self.stable_at = None;
        self.cycle_at = None;
        self.ttl_at = None;
        let stopping = self.stopping.take();

        if end.oom {
            out.push(Action::Log("Error R15 (Memory quota vastly exceeded)".into()));
        }
        match end.status() {
            Some(status) => out.push(Action::Log(format!("Process exited with status {status}"))),
            None if end.lost && was_execd => {
                out.push(Action::Log("Process lost: its run ended without an exit record".into()))
            }
            None => {}
        }
        let crash_reason = if end.lost {
            ExitReason::Lost
        } else if end.oom {
            ExitReason::Oom
        } else if end.signal.is_some() {
            ExitReason::Signal
        } else {
            ExitReason::Exit
        };
        let mut record = |reason| {
            self.last_exit = Some(LastExit {
                code: end.code,
                signal: end.signal,
                reason,
                at: end.at,
                message: None,
            });
        };

        match stopping {
            Some(Stopping {
                intent: Intent::BootTimeout,
                ..
            }) => {
                record(ExitReason::BootTimeout);
                self.crashed(cx, "boot_timeout", out);
            }
            Some(s) => {
                let reason = if s.killed {
                    ExitReason::StopTimeout
                } else {
                    ExitReason::Stopped
                };
                record(reason);
                if s.intent.runs_again() {
                    let why = if s.intent == Intent::Cycle { "cycle" } else { "restart" };
                    self.spawn(cx, why, out);
                } else {
                    let why = if s.intent == Intent::TimeToLive {
                        "time_to_live"
                    } else {
                        "stop"
                    };
                    self.set_state(State::Down, why, now, out);
                }
            }
            None => {
                record(crash_reason);
                if cx.profile.one_off {
                    // A one-off dyno has done its work: never restarted.
                    self.set_state(State::Down, crash_reason.as_str(), now, out);
                } else {
                    self.crashed(cx, crash_reason.as_str(), out);
                }
            }
        }
    }

    /// The host could not start the current run: not the app's crash. The
    /// dyno stays `starting` and the run is tried again after a short
    /// backoff (no cool-off, no crash counted); a stop wins.
    fn on_spawn_failed(&mut self, cx: &mut Ctx<'_>, error: String, out: &mut Vec<Action>) {
        let now = cx.now;
        // A run that never started is no dyno's last run: the last run that
        // ran stays, and the runtime's lines about the failure go to its log.
        // A dyno that never ran keeps its first failed run for that.
        let failed = self.run.take();
        if self.last_run.is_none() {
            self.last_run = failed;
        }
        self.boot_deadline = None;
        self.stable_at = None;
        self.cycle_at = None;
        self.ttl_at = None;
        let mut message = error;
        if message.len() > MESSAGE_MAX {
            let mut cut = MESSAGE_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        self.last_exit = Some(LastExit {
            code: None,
            signal: None,
            reason: ExitReason::SpawnFailed,
            at: now,
            message: Some(message),
        });
        if let Some(s) = self.stopping.take()
            && !s.intent.runs_again()
        {
            self.spawn_failures = 0;
            let why = if s.intent == Intent::TimeToLive {
                "time_to_live"
            } else {
                "stop"
            };
            self.set_state(State::Down, why, now, out);
            return;
        }
        self.spawn_failures += 1;
        let delay = cx.policy.spawn_backoff(self.spawn_failures);
        out.push(Action::Log(format!(
            "Starting again in {}s (spawn failure {})",
            delay.as_secs_f64(),
            self.spawn_failures
        )));
        self.next_restart_at = Some(now + delay);
    }

    /// Counts a crash and schedules (or performs) the restart.
    fn crashed(&mut self, cx: &mut Ctx<'_>, reason: &'static str, out: &mut Vec<Action>) {
        self.crashes += 1;
        let delay = cx.policy.cooloff(self.crashes, (cx.jitter)());
        self.set_state(State::Crashed, reason, cx.now, out);
        if delay.is_zero() {
            self.spawn(cx, "crash_restart", out);
        } else {
            self.next_restart_at = Some(cx.now + delay);
        }
    }

    fn on_tick(&mut self, cx: &mut Ctx<'_>, out: &mut Vec<Action>) {
        let now = cx.now;
        let due = |t: Option<Time>| t.is_some_and(|t| t <= now);

        if let Some(stopping) = &mut self.stopping
            && !stopping.killed
            && stopping.grace_until <= now
        {
            stopping.killed = true;
            if stopping.intent != Intent::BootTimeout {
                out.push(Action::Log(format!(
                    "Error R12 (Exit timeout) -> At least one process failed to exit within {} seconds of SIGTERM",
                    cx.policy.stop_grace.as_secs()
                )));
            }
            out.push(Action::Log("Stopping all processes with SIGKILL".into()));
            out.push(Action::Signal(Signal::KillAll));
        }
        if due(self.boot_deadline) && self.state == State::Starting && self.stopping.is_none() {
            self.boot_deadline = None;
            out.push(Action::Log(format!(
                "Error R10 (Boot timeout) -> Web process failed to bind to $PORT within {} seconds of launch",
                cx.policy.boot_timeout.as_secs()
            )));
            out.push(Action::Log("Stopping process with SIGKILL".into()));
            self.cycle_at = None;
            self.ttl_at = None;
            self.stable_at = None;
            self.stopping = Some(Stopping {
                intent: Intent::BootTimeout,
                grace_until: now,
                killed: true,
            });
            out.push(Action::Signal(Signal::KillAll));
        }
        if due(self.ttl_at) && self.stopping.is_none() {
            self.ttl_at = None;
            out.push(Action::Log("One-off dyno reached its time to live".into()));
            self.begin_stop(cx, Intent::TimeToLive, out);
        }
        if due(self.cycle_at) && self.stopping.is_none() {
            if cx.peers.cycling {
                // A peer is still out of `up` for its own cycle: not two at once.
                self.cycle_at = Some(now + super::CYCLE_WAIT);
            } else {
                self.cycle_at = None;
                out.push(Action::Log("Cycling".into()));
                self.begin_stop(cx, Intent::Cycle, out);
                self.cycling = self.stopping.is_some_and(|s| s.intent == Intent::Cycle);
            }
        }
        if due(self.stable_at) && self.state == State::Up {
            self.stable_at = None;
            self.crashes = 0;
        }
        if due(self.next_restart_at) && !self.running() {
            match self.state {
                State::Crashed => self.spawn(cx, "crash_restart", out),
                State::Starting => self.spawn(cx, "spawn_retry", out),
                _ => {}
            }
        }
        // A deadline that is due but no longer applies must not stay due, or
        // the driver would wake up for it again and again.
        for deadline in [
            &mut self.boot_deadline,
            &mut self.stable_at,
            &mut self.cycle_at,
            &mut self.ttl_at,
            &mut self.next_restart_at,
        ] {
            if deadline.is_some_and(|t| t <= now) {
                *deadline = None;
            }
        }
    }
}
