//! Supervisor tests: start, spawn and up: the first run of web and worker dynos, cycling deadlines.

use super::*;

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
