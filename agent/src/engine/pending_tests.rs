//! Unit tests of the starts in flight: a stop cancels what it selects.

use super::*;

fn key(app: &str, name: &str) -> Key {
    (app.into(), name.into())
}

#[test]
fn a_stop_cancels_the_starts_it_selects_and_only_those() {
    let mut p = PendingStarts::default();
    let web = p.add(key("shop", "web.1"));
    let worker = p.add(key("shop", "worker.1"));
    let other = p.add(key("blog", "web.1"));
    assert_eq!(p.cancel(&Selector::Type("shop".into(), "web".into())), 1);
    assert!(matches!(p.take(web), Err(Error::Aborted(m)) if m.contains("web.1 of app shop")));
    assert!(p.take(worker).is_ok());
    assert_eq!(
        p.cancel(&Selector::Dyno("shop".into(), "worker.1".into())),
        0,
        "taken: no longer in flight"
    );
    assert_eq!(p.cancel(&Selector::All), 1);
    assert!(p.take(other).is_err());
}

#[test]
fn a_forgotten_or_unknown_start_is_not_refused() {
    let mut p = PendingStarts::default();
    let t = p.add(key("shop", "web.1"));
    p.remove(t);
    assert_eq!(p.cancel(&Selector::App("shop".into())), 0);
    assert!(p.take(t).is_ok());
    assert!(p.take(12345).is_ok());
}
