//! Supervisor tests: one-off dynos: never restarted, time to live.

use super::*;

// ---------------------------------------------------------------------------
// One-off dynos
// ---------------------------------------------------------------------------

#[test]
fn one_off_exit_is_down_and_never_restarted() {
    for (end, reason, status) in [
        (exited_code(0, t0()), "exit", 0),
        (exited_code(2, t0()), "exit", 2),
        (exited_signal(9, t0()), "signal", 137),
    ] {
        let mut d = Dyno::one_off();
        assert_eq!(d.start(), start_actions(State::Down, "start", RUN_CMD, "run.1.1"));
        assert_eq!(d.sup.ttl_at, Some(t0() + secs(600)));
        d.spawned();
        assert_eq!(d.sup.state, State::Up);
        assert_eq!(d.sup.cycle_at, None, "one-offs are not cycled");
        assert_eq!(d.exited(end), down_actions(status, State::Up, reason));
        let s = &d.sup;
        assert_eq!(s.state, State::Down);
        assert_eq!((s.run.clone(), s.next_restart_at, s.ttl_at), (None, None, None));
        assert_eq!(s.crashes, 0);
        assert_eq!(s.last_exit.clone().unwrap().reason.as_str(), reason);
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
    let mut want = vec![log("Error R15 (Memory quota vastly exceeded)")];
    want.extend(down_actions(137, State::Up, "oom"));
    assert_eq!(d.exited(end), want);
    assert_eq!(d.sup.last_exit.clone().unwrap().reason, ExitReason::Oom);
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
    assert_eq!(d.exited(end), down_actions(143, State::Up, "time_to_live"));
    assert_eq!(d.sup.last_exit.clone().unwrap().reason, ExitReason::Stopped);
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
    assert_eq!(d.sup.last_exit.clone().unwrap().reason, ExitReason::StopTimeout);
}
