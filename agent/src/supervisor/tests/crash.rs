//! Supervisor tests: crashes and the restart policy (reasons, cool-offs), and the stable window.

use super::*;

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
            message: None,
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
            RunEnd::lost(at),
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
                message: None,
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

/// DESIGN §4: a spawn failure is the host's, not the app's crash: no
/// cool-off and no crash counted; the dyno stays `starting` and the agent
/// tries again on its own short backoff (doubling, capped), with the reason
/// in `last_exit`. An exec resets the backoff.
#[test]
fn spawn_failed_stays_starting_and_retries_on_a_short_backoff() {
    let mut d = Dyno::worker();
    d.start();
    d.advance(secs(1));
    let out = d.step(Input::SpawnFailed {
        run_id: "worker.1.1".into(),
        error: "network: CNI plugin ptp ADD (dn-1): no addresses left".into(),
    });
    assert_eq!(
        out,
        vec![
            log("Failed to start process: network: CNI plugin ptp ADD (dn-1): no addresses left"),
            log("Starting again in 2s (spawn failure 1)"),
        ]
    );
    let s = &d.sup;
    assert_eq!(s.state, State::Starting, "not crashed");
    assert_eq!(s.crashes, 0, "not the app's crash");
    assert_eq!(
        s.last_exit,
        Some(LastExit {
            code: None,
            signal: None,
            reason: ExitReason::SpawnFailed,
            at: t0() + secs(1),
            message: Some("network: CNI plugin ptp ADD (dn-1): no addresses left".into()),
        })
    );
    assert_eq!(s.next_restart_at, Some(t0() + secs(3)));
    // The dyno never ran: its first failed run holds the failures' lines.
    let last = s.last_run.as_ref().unwrap();
    assert_eq!((last.id.as_str(), last.pid, last.exec_at), ("worker.1.1", None, None));

    // Nothing before the backoff; then a new run, still `starting`.
    d.advance(secs(1));
    assert_eq!(d.tick(), vec![]);
    d.advance(secs(1));
    assert_eq!(
        d.tick(),
        vec![
            changed(State::Starting, State::Starting, "spawn_retry"),
            log(format!("Starting process with command `{WORKER_CMD}`")),
            spawn("worker.1.2"),
        ]
    );

    // Failing again doubles the wait (2 s, 4 s, … at most spawn_retry_max, 50 s here).
    for (n, wait) in [(2, 4), (3, 8), (4, 16), (5, 32), (6, 50), (7, 50)] {
        let run = format!("worker.1.{n}");
        d.step(Input::SpawnFailed {
            run_id: run,
            error: "no space".into(),
        });
        assert_eq!(d.sup.next_restart_at, Some(d.now + secs(wait)), "failure {n}");
        assert_eq!((d.sup.state, d.sup.crashes), (State::Starting, 0));
        d.advance(secs(wait));
        d.tick();
    }

    // An exec resets the backoff; a crash after it is a crash as ever.
    d.step(Input::Spawned {
        run_id: "worker.1.8".into(),
        pid: 42,
        at: d.now,
    });
    assert_eq!((d.sup.state, d.sup.spawn_failures), (State::Up, 0));
}

#[test]
fn a_long_spawn_failure_message_is_cut_at_a_character_boundary() {
    let mut d = Dyno::worker();
    d.start();
    let error = format!("{}é{}", "x".repeat(MESSAGE_MAX - 1), "y".repeat(8000));
    d.step(Input::SpawnFailed {
        run_id: "worker.1.1".into(),
        error,
    });
    let message = d.sup.last_exit.clone().unwrap().message.unwrap();
    assert_eq!(message, "x".repeat(MESSAGE_MAX - 1));
}

#[test]
fn a_stop_while_waiting_to_retry_a_spawn_is_down() {
    let mut d = Dyno::worker();
    d.start();
    d.step(Input::SpawnFailed {
        run_id: "worker.1.1".into(),
        error: "boom".into(),
    });
    let out = d.stop();
    assert_eq!(
        out,
        vec![
            log("State changed from starting to down"),
            changed(State::Starting, State::Down, "stop"),
        ]
    );
    assert_eq!(d.sup.next_restart_at, None);
    d.advance(secs(60));
    assert_eq!(d.tick(), vec![], "no retry after a stop");
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
