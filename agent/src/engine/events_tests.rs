//! Unit tests of the event log: numbering across restarts, torn lines, and
//! where a `WatchEvents` stream starts.

use super::*;
use crate::engine::testkit::{record, t0};

fn view() -> DynoView {
    record("web.1", "standard-1x", State::Up, 100_000).view()
}

fn publish(log: &mut EventLog, n: usize) {
    for _ in 0..n {
        log.publish(t0(), State::Starting, State::Up, "bound", view());
    }
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

#[test]
fn seq_goes_on_after_a_reopen_and_a_torn_line_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut log = EventLog::open(path.clone()).unwrap();
    publish(&mut log, 3);
    drop(log);
    // A crash in the middle of an append.
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(br#"{"seq":4,"at":"#).unwrap();
    drop(f);
    let mut log = EventLog::open(path.clone()).unwrap();
    assert_eq!(log.last_seq, 3);
    assert_eq!(seqs(log.kept.make_contiguous()), [1, 2, 3]);
    publish(&mut log, 1);
    assert_eq!(log.last_seq, 4);
}

#[test]
fn a_watch_from_zero_starts_with_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path().join("events.jsonl")).unwrap();
    publish(&mut log, 2);
    let w = log.watch(None, || vec![view()]);
    let (seq, views, gap) = w.snapshot.expect("a snapshot");
    assert_eq!((seq, views.len(), gap), (2, 1, false));
    assert!(w.backlog.is_empty());
}

#[test]
fn a_watch_after_a_kept_seq_gets_the_backlog_without_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path().join("events.jsonl")).unwrap();
    publish(&mut log, 5);
    let w = log.watch(Some(2), || panic!("no snapshot wanted"));
    assert!(w.snapshot.is_none());
    assert_eq!(seqs(&w.backlog), [3, 4, 5]);
    let w = log.watch(Some(5), || panic!("no snapshot wanted"));
    assert!(w.snapshot.is_none() && w.backlog.is_empty(), "up to date");
}

#[test]
fn a_watch_from_a_seq_never_reached_gets_a_snapshot_marked_as_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path().join("events.jsonl")).unwrap();
    publish(&mut log, 2);
    let w = log.watch(Some(7), Vec::new);
    assert_eq!(w.snapshot.map(|(seq, _, gap)| (seq, gap)), Some((2, true)));
}

#[test]
fn a_watch_from_before_the_events_kept_gets_a_snapshot_marked_as_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path().join("events.jsonl")).unwrap();
    publish(&mut log, 4);
    // The oldest events are no longer kept.
    log.kept.drain(..2);
    let w = log.watch(Some(1), Vec::new);
    assert_eq!(w.snapshot.map(|(seq, _, gap)| (seq, gap)), Some((4, true)));
    let w = log.watch(Some(2), Vec::new);
    assert!(w.snapshot.is_none(), "3 and 4 are kept");
    assert_eq!(seqs(&w.backlog), [3, 4]);
}

#[test]
fn published_events_reach_live_watchers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path().join("events.jsonl")).unwrap();
    let mut w = log.watch(Some(0), Vec::new);
    publish(&mut log, 1);
    let ev = w.live.try_recv().unwrap();
    assert_eq!(
        (ev.seq, ev.from, ev.to, ev.reason.as_str()),
        (1, State::Starting, State::Up, "bound")
    );
}
