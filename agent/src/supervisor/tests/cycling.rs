//! Supervisor tests: daily cycling.

use super::*;

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
    assert_eq!(s.last_exit.clone().unwrap().reason, ExitReason::Stopped);
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
