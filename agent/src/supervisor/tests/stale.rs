//! Supervisor tests: inputs for an old or ended run are ignored.

use super::*;

// ---------------------------------------------------------------------------
// Stale run ids
// ---------------------------------------------------------------------------

#[test]
fn inputs_for_an_old_run_are_ignored() {
    let mut d = Dyno::web().started_up();
    d.crash(); // now on web.1.2, starting
    d.spawned(); // watching the port
    let before = d.sup.clone();
    let at = d.now;
    let stale = [
        Input::Exited {
            run_id: "web.1.1".into(),
            end: exited_code(1, at),
        },
        Input::Spawned {
            run_id: "web.1.1".into(),
            pid: 1,
            at,
        },
        Input::PortBound {
            run_id: "web.1.1".into(),
        },
        Input::SpawnFailed {
            run_id: "web.1.1".into(),
            error: "x".into(),
        },
        Input::Exited {
            run_id: "web.1.99".into(),
            end: RunEnd::lost(at),
        },
        Input::PortBound {
            run_id: "web.2.2".into(),
        },
    ];
    for input in stale {
        assert_eq!(d.step(input.clone()), vec![], "{input:?}");
        assert_eq!(d.sup, before, "{input:?}");
    }
}

#[test]
fn inputs_for_a_run_that_already_ended_are_ignored() {
    let mut d = Dyno::worker().started_up();
    d.stop();
    let end = exited_signal(15, d.now);
    d.exited(end);
    let before = d.sup.clone();
    let at = d.now;
    assert_eq!(
        d.step(Input::Exited {
            run_id: "worker.1.1".into(),
            end: exited_code(0, at),
        }),
        vec![]
    );
    assert_eq!(
        d.step(Input::Spawned {
            run_id: "worker.1.1".into(),
            pid: 9,
            at,
        }),
        vec![]
    );
    assert_eq!(d.sup, before);
}
