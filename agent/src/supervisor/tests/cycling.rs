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

// ---------------------------------------------------------------------------
// Cycling that keeps an app up: spread among peers, one at a time
// ---------------------------------------------------------------------------

#[test]
fn a_lone_dynos_cycle_time_is_uniform_over_its_window() {
    let at = t0();
    for (u, expect) in [(0.0, 0), (0.5, 300), (0.999_999, 599)] {
        let t = pick_cycle(at, secs(600), &[], secs(37), u);
        assert_eq!((t - at).num_seconds(), expect, "u = {u}");
    }
}

#[test]
fn a_cycle_time_keeps_one_restart_away_from_every_peer_when_the_window_has_room() {
    let at = t0();
    let gap = secs(60);
    let peers = [at + secs(100), at + secs(300), at + secs(590)];
    for i in 0..=1000 {
        let t = pick_cycle(at, secs(600), &peers, gap, f64::from(i) / 1000.0);
        assert!(t >= at && t <= at + secs(600), "{t} outside the window");
        for p in peers {
            assert!(
                (t - p).num_milliseconds().abs() >= 60_000,
                "{t} within a restart of {p}"
            );
        }
    }
}

#[test]
fn without_room_a_cycle_time_is_the_farthest_from_its_peers() {
    let at = t0();
    // Every time of [0, 100] s is within 60 s of a peer at 0 s or 100 s.
    let t = pick_cycle(at, secs(100), &[at, at + secs(100)], secs(60), 0.3);
    assert_eq!((t - at).num_seconds(), 50);
    let t = pick_cycle(at, secs(100), &[at + secs(20)], secs(200), 0.3);
    assert_eq!((t - at).num_seconds(), 100);
}

#[test]
fn the_cycle_time_is_chosen_away_from_the_peers_cycle_times() {
    let mut d = Dyno::worker();
    // The policy's window is 3600 s + 0..600 s; a restart is 5 + 7 s.
    d.peers.cycles = vec![t0() + secs(3600 + 300)];
    d.u = 0.5;
    d.start();
    d.spawned();
    let at = d.sup.cycle_at.unwrap();
    assert!(at >= t0() + secs(3600) && at <= t0() + secs(4200));
    assert!((at - (t0() + secs(3900))).num_seconds().abs() >= 12, "{at}");
}

#[test]
fn a_due_cycle_waits_while_a_peer_is_out_of_up_for_its_own() {
    let mut d = Dyno::worker().started_up();
    let due = d.sup.cycle_at.unwrap();
    d.now = due;
    d.peers.cycling = true;
    assert_eq!(d.tick(), vec![], "no cycle while a peer cycles");
    assert_eq!(d.sup.cycle_at, Some(due + CYCLE_WAIT));
    assert!(!d.sup.cycling);
    d.now = due + CYCLE_WAIT;
    d.peers.cycling = false;
    assert_eq!(
        d.tick(),
        vec![log("Cycling"), log(SIGTERM_LINE), Action::Signal(Signal::Term)]
    );
    assert!(d.sup.cycling, "out of up because of the cycle");
    d.advance(secs(1));
    d.exited(exited_signal(15, d.now));
    assert!(d.sup.cycling, "still out: starting again");
    d.spawned();
    assert_eq!(d.sup.state, State::Up);
    assert!(!d.sup.cycling, "up again");
}

#[test]
fn a_crash_or_stop_during_a_cycle_ends_its_cycling() {
    let mut d = Dyno::worker().started_up();
    d.now = d.sup.cycle_at.unwrap();
    d.tick();
    assert!(d.sup.cycling);
    d.stop();
    d.exited(exited_signal(15, d.now));
    assert_eq!(d.sup.state, State::Down);
    assert!(!d.sup.cycling);
}

/// Four workers of one type, each told of the other three at every step
/// as the engine tells them, through many days of cycling with short
/// windows (interval 60 s + 0..30 s) and stops of 1–4 s: never two out of
/// `up` because of cycling at once, and every cycle starts within its
/// window or waits only for a cycling peer.
#[test]
fn four_peers_cycling_are_never_two_out_of_up_at_once() {
    let policy = Policy {
        cycle: Some((secs(60), secs(30))),
        stop_grace: secs(5),
        boot_timeout: secs(7),
        ..policy()
    };
    let mut dynos: Vec<Dyno> = (1..=4)
        .map(|n| Dyno::new(&format!("worker.{n}"), worker()).with_policy(policy.clone()))
        .collect();
    let mut seed = 7u64;
    let mut rand = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    // When each stopping dyno's run exits.
    let mut exits: Vec<Option<Time>> = vec![None; 4];
    let peers_of = |dynos: &[Dyno], i: usize| Peers {
        cycles: dynos
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(_, d)| d.sup.cycle_at)
            .collect(),
        cycling: dynos.iter().enumerate().any(|(j, d)| j != i && d.sup.cycling),
    };
    let mut now = t0();
    for i in 0..4 {
        dynos[i].now = now;
        dynos[i].peers = peers_of(&dynos, i);
        dynos[i].u = rand();
        dynos[i].start();
        dynos[i].spawned();
    }
    let mut cycles = 0;
    while now < t0() + secs(3 * 24 * 3600) {
        // The next event: a deadline or an exit.
        let next = dynos
            .iter()
            .filter_map(|d| d.sup.next_deadline())
            .chain(exits.iter().flatten().copied())
            .min()
            .expect("something is always due");
        now = next;
        for i in 0..4 {
            dynos[i].now = now;
            dynos[i].peers = peers_of(&dynos, i);
            dynos[i].u = rand();
            if exits[i].is_some_and(|t| t <= now) {
                exits[i] = None;
                let out = dynos[i].exited(exited_signal(15, now));
                assert!(out.iter().any(|a| matches!(a, Action::Spawn { .. })), "{out:?}");
                dynos[i].peers = peers_of(&dynos, i);
                dynos[i].spawned();
            } else if dynos[i].sup.next_deadline().is_some_and(|t| t <= now) {
                let exec_at = dynos[i].sup.run.as_ref().and_then(|r| r.exec_at).unwrap();
                let out = dynos[i].tick();
                if out.contains(&Action::Signal(Signal::Term)) {
                    cycles += 1;
                    assert!(now >= exec_at + secs(60), "cycled early");
                    exits[i] = Some(now + secs(1 + (rand() * 3.0) as u64));
                }
            }
            let out_of_up = dynos.iter().filter(|d| d.sup.cycling).count();
            assert!(
                out_of_up <= 1,
                "{out_of_up} dynos out of up because of cycling at {now}"
            );
        }
    }
    assert!(cycles > 4 * 2000, "only {cycles} cycles in three days");
}
