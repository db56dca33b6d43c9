//! Supervisor tests: stopping: within and past the grace (R12), before the exec, while restarting.

use super::*;

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
    assert_eq!(d.exited(end), down_actions(143, State::Up, "stop"));
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
            message: None,
        })
    );
    // An exit 0 on SIGTERM is just as much a stop.
    let mut d = Dyno::web().started_up();
    d.stop();
    let end = exited_code(0, d.now);
    d.exited(end);
    assert_eq!(d.sup.state, State::Down);
    assert_eq!(d.sup.last_exit.clone().unwrap().reason, ExitReason::Stopped);
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
        vec![log(R12_LINE), log(SIGKILL_LINE), Action::Signal(Signal::KillAll)]
    );
    assert!(logs(&d.tick()).is_empty());
    assert!(d.sup.stopping.unwrap().killed);
    assert_eq!(d.sup.next_deadline(), None);

    d.advance(secs(1));
    let end = exited_signal(9, d.now);
    assert_eq!(d.exited(end), down_actions(137, State::Up, "stop"));
    assert_eq!(d.sup.state, State::Down);
    assert_eq!(
        d.sup.last_exit,
        Some(LastExit {
            code: None,
            signal: Some(9),
            reason: ExitReason::StopTimeout,
            at: t0() + secs(6),
            message: None,
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
    assert_eq!(d.exited(end), down_actions(143, State::Starting, "stop"));
    assert_eq!(d.sup.last_exit.clone().unwrap().reason, ExitReason::Stopped);
}

#[test]
fn stop_before_the_exec_past_the_grace_is_delivered_as_sigkill() {
    let mut d = Dyno::worker();
    d.start();
    d.stop();
    d.advance(secs(5));
    assert_eq!(logs(&d.tick()), vec![R12_LINE, SIGKILL_LINE]);
    assert_eq!(d.spawned(), vec![Action::Signal(Signal::KillAll)]);
    let end = exited_signal(9, d.now);
    d.exited(end);
    assert_eq!(d.sup.state, State::Down);
    assert_eq!(d.sup.last_exit.clone().unwrap().reason, ExitReason::StopTimeout);
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
