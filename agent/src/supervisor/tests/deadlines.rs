//! Supervisor tests: `next_deadline`, and deadlines that never stay due.

use super::*;

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
