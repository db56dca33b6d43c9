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
