//! Supervisor tests: explicit restarts of running, crashed and down dynos.

use super::*;

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
    assert_eq!(s.last_exit.clone().unwrap().reason, ExitReason::Stopped);

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
    assert_eq!(logs(&d.tick()), vec![R12_LINE, SIGKILL_LINE]);
    let end = exited_signal(9, d.now);
    let out = d.exited(end);
    assert_eq!(out.last(), Some(&spawn("worker.1.2")));
    assert_eq!(d.sup.state, State::Starting);
    assert_eq!(d.sup.last_exit.clone().unwrap().reason, ExitReason::StopTimeout);
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
