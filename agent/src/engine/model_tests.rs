//! Unit tests of the dyno model: what counts as the same run, selectors,
//! and the view.

use super::*;
use crate::engine::testkit::{record, spec};

#[test]
fn same_run_looks_at_what_the_run_depends_on_only() {
    let a = spec("web.1", "standard-1x");
    let mut b = a.clone();
    b.slug = "https://elsewhere/shop.tgz".into();
    b.port = Some(20000);
    b.time_to_live_secs = 60;
    assert!(a.same_run(&b), "the slug's source, port and ttl change no run");
    for change in [
        |s: &mut DynoSpec| s.command = "rails s".into(),
        |s: &mut DynoSpec| s.size = "standard-2x".into(),
        |s: &mut DynoSpec| s.release = "v2".into(),
        |s: &mut DynoSpec| {
            s.env.insert("NEW".into(), "1".into());
        },
        |s: &mut DynoSpec| s.slug_sha256 = Some("cd".repeat(32)),
        |s: &mut DynoSpec| s.stack = "heroku-22".into(),
    ] {
        let mut b = a.clone();
        change(&mut b);
        assert!(!a.same_run(&b), "{b:?}");
    }
    // Without a digest, the unpacked directory identifies the slug.
    let mut a = a;
    a.slug_sha256 = None;
    let mut b = a.clone();
    assert!(a.same_run(&b));
    b.app_dir = "/elsewhere/app".into();
    assert!(!a.same_run(&b));
}

#[test]
fn selectors_match_by_app_type_and_name() {
    let s = spec("web.1", "standard-1x");
    assert!(Selector::All.matches(&s));
    assert!(Selector::App("shop".into()).matches(&s));
    assert!(!Selector::App("blog".into()).matches(&s));
    assert!(Selector::Type("shop".into(), "web".into()).matches(&s));
    assert!(!Selector::Type("shop".into(), "worker".into()).matches(&s));
    assert!(Selector::Dyno("shop".into(), "web.1".into()).matches(&s));
    assert!(!Selector::Dyno("shop".into(), "web.2".into()).matches(&s));
    assert!(!Selector::Dyno("blog".into(), "web.1".into()).matches(&s));
}

#[test]
fn the_profile_follows_the_spec() {
    let p = spec("web.1", "standard-1x").profile();
    assert!(p.web && !p.one_off);
    assert_eq!(p.time_to_live, Duration::from_secs(24 * 3600));
    assert!(!spec("worker.1", "standard-1x").profile().web);
}

#[test]
fn a_view_of_a_dyno_that_never_ran() {
    let v = record("worker.1", "standard-2x", State::Down, 100_000).view();
    assert_eq!(
        (v.app.as_str(), v.name.as_str(), v.ptype.as_str()),
        ("shop", "worker.1", "worker")
    );
    assert_eq!((v.state, v.size.as_str()), (State::Down, "standard-2x"));
    assert_eq!((v.pid, v.started_at, v.run_id), (None, None, None));
}

#[test]
fn the_spec_hash_follows_the_run_not_the_labels() {
    let a = spec("web.1", "standard-1x");
    assert_eq!(a.hash().len(), 64);
    assert_eq!(a.hash(), a.clone().hash(), "stable");
    let mut labelled = a.clone();
    labelled.labels.insert("team".into(), "payments".into());
    labelled.port = Some(20001);
    assert_eq!(a.hash(), labelled.hash(), "labels and port change no run");
    let mut other_env = a.clone();
    other_env.env.insert("NEW".into(), "1".into());
    assert_ne!(a.hash(), other_env.hash());
    // Parts are length-prefixed: moving bytes between fields changes the hash.
    let (mut x, mut y) = (a.clone(), a.clone());
    x.command = "ab".into();
    x.size = "c".into();
    y.command = "a".into();
    y.size = "bc".into();
    assert_ne!(x.hash(), y.hash());
    // Equal hashes exactly when the runs are the same.
    assert_eq!(a.same_run(&other_env), a.hash() == other_env.hash());
}

#[test]
fn the_view_carries_what_a_scheduler_needs() {
    let mut rec = record("web.1", "standard-1x", crate::supervisor::State::Up, 7);
    rec.spec.labels.insert("team".into(), "payments".into());
    rec.last_spawn_error = Some(SpawnError {
        at: rec.created_at,
        run_id: "r1".into(),
        message: "slug: gone".into(),
    });
    let v = rec.view();
    assert_eq!(v.created_at, Some(rec.created_at));
    assert_eq!(v.memory_quota_bytes, 512 << 20);
    assert_eq!(v.spec_hash, rec.spec.hash());
    assert_eq!(v.labels.get("team").map(String::as_str), Some("payments"));
    assert_eq!(
        v.last_spawn_error.as_ref().map(|e| e.message.as_str()),
        Some("slug: gone")
    );
}
