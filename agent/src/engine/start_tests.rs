//! Unit tests of the start path's pure helpers: one-off names, request ids.

use super::*;
use crate::engine::testkit::key;

#[test]
fn the_next_one_off_follows_the_highest_run_of_the_app() {
    let next = |keys: &[Key], app: &str| next_one_off(keys, app).expect("a free number");
    assert_eq!(next(&[], "shop"), "run.1");
    let keys = [
        key("web.1"),
        key("run.2"),
        key("run.7"),
        key("run.x"),
        ("blog".to_string(), "run.9".to_string()),
    ];
    assert_eq!(next(&keys, "shop"), "run.8");
    assert_eq!(next(&keys, "blog"), "run.10");
    assert_eq!(next(&keys, "other"), "run.1");
}

#[test]
fn past_the_last_one_off_number_the_lowest_free_one_is_taken_then_none() {
    let keys = [key("run.999999"), key("run.1"), key("run.2")];
    assert_eq!(next_one_off(&keys, "shop").expect("run.3 is free"), "run.3");
    let all: Vec<Key> = (1..=crate::names::MAX_DYNO_NUMBER)
        .map(|n| key(&format!("run.{n}")))
        .collect();
    let err = next_one_off(&all, "shop").expect_err("every number is taken");
    assert!(matches!(err, Error::ResourceExhausted(..)), "{err:?}");
    assert!(err.to_string().contains("one-off"), "{err}");
}

#[test]
fn a_request_id_belongs_to_one_app_dyno_and_spec() {
    use crate::engine::testkit::{record, spec};
    let mut rec = record("worker.1", "standard-1x", State::Up, 1);
    rec.request_id = Some("req-1".into());
    rec.past_request_ids.push_back("req-0".into());
    let ask = |spec: crate::engine::DynoSpec, picked_name: bool| StartRequest {
        spec,
        request_id: Some("req-1".into()),
        picked_name,
        pending: None,
    };
    let same = ask(spec("worker.1", "standard-1x"), false);
    assert_eq!(repeated_request(&rec, &same, "req-1").expect("a retry").id, rec.id);

    let mut other_app = spec("worker.1", "standard-1x");
    other_app.app = "blog".into();
    let mut other_spec = spec("worker.1", "standard-1x");
    other_spec.command = "bin/other".into();
    for (what, req) in [
        ("another app", ask(other_app, false)),
        ("another dyno", ask(spec("worker.2", "standard-1x"), false)),
        ("another spec", ask(other_spec.clone(), false)),
        ("a picked one-off name", ask(spec("run.1", "standard-1x"), true)),
    ] {
        let err = repeated_request(&rec, &req, "req-1").expect_err(what);
        assert!(matches!(err, Error::FailedPrecondition(..)), "{what}: {err:?}");
        assert!(err.to_string().contains("request_id \"req-1\""), "{what}: {err}");
    }
    // An earlier id of the dyno: its spec was replaced since; a late retry
    // gets the dyno unchanged.
    assert_eq!(
        repeated_request(&rec, &ask(other_spec, false), "req-0")
            .expect("late retry")
            .id,
        rec.id
    );
    // A one-off whose name the agent picked: the retry names none.
    let mut one_off = record("run.3", "standard-1x", State::Up, 2);
    one_off.spec.one_off = true;
    one_off.request_id = Some("req-1".into());
    let mut retry = spec("run.4", "standard-1x");
    retry.one_off = true;
    assert_eq!(
        repeated_request(&one_off, &ask(retry, true), "req-1")
            .expect("retry")
            .id,
        one_off.id
    );
}

#[test]
fn a_spawn_failure_is_kept_as_the_last_spawn_error_past_later_runs() {
    use crate::engine::testkit::{record, t0};
    use crate::supervisor::{Action, NO_PEERS, Policy};
    let policy = Policy::default();
    let mut rec = record("worker.1", "standard-1x", State::Down, 1);
    let spawned = |actions: &[Action]| {
        actions
            .iter()
            .find_map(|a| match a {
                Action::Spawn { run_id } => Some(run_id.clone()),
                _ => None,
            })
            .expect("a spawn")
    };
    let first = spawned(&decide(&policy, t0(), &mut rec, Input::Start, &NO_PEERS));
    // A stale run's failure is not this dyno's.
    decide(
        &policy,
        t0(),
        &mut rec,
        Input::SpawnFailed {
            run_id: "not-a-run".into(),
            error: "x".into(),
        },
        &NO_PEERS,
    );
    assert_eq!(rec.last_spawn_error, None);
    decide(
        &policy,
        t0(),
        &mut rec,
        Input::SpawnFailed {
            run_id: first.clone(),
            error: "slug: no such file".into(),
        },
        &NO_PEERS,
    );
    let kept = rec.last_spawn_error.clone().expect("recorded");
    assert_eq!(
        (kept.run_id.as_str(), kept.message.as_str()),
        (first.as_str(), "slug: no such file")
    );
    // A later run that starts keeps it.
    let second = spawned(&decide(
        &policy,
        t0() + chrono::Duration::hours(1),
        &mut rec,
        Input::Restart,
        &NO_PEERS,
    ));
    assert_ne!(second, first);
    assert_eq!(rec.last_spawn_error, Some(kept));
}
