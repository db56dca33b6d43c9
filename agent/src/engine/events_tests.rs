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
    drop(log);
    // The torn tail was cut off: the next append got a line of its own.
    let log = EventLog::open(path.clone()).unwrap();
    assert_eq!(
        seqs(log.kept.iter().cloned().collect::<Vec<_>>().as_slice()),
        [1, 2, 3, 4]
    );
    assert!(
        fs::read_to_string(&path)
            .unwrap()
            .lines()
            .all(|l| l.starts_with("{\"seq\":"))
    );
}

#[test]
fn an_event_that_cannot_be_written_is_not_published_until_it_is_and_keeps_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut log = EventLog::open(path.clone()).unwrap();
    publish(&mut log, 1);
    let mut w = log.watch(Some(1), "", Vec::new);
    // A full disk: every append fails.
    let good = std::mem::replace(
        &mut log.file,
        fs::OpenOptions::new().append(true).open("/dev/full").unwrap(),
    );
    publish(&mut log, 2);
    assert!(w.live.try_recv().is_err(), "nothing is streamed before it is durable");
    assert_eq!(log.last_seq, 1);
    let (waiting, why) = log.trouble().expect("the failure is told");
    assert_eq!(waiting, 2);
    assert!(why.contains("No space left"), "{why}");
    // Nobody has seen 2 and 3: an agent that dies now may give them again.
    assert_eq!(log.watch(Some(1), "", Vec::new).backlog.len(), 0);
    assert!(!log.flush(), "still full");
    log.file = good;
    assert!(log.flush());
    assert_eq!(log.trouble(), None);
    assert_eq!((w.live.try_recv().unwrap().seq, w.live.try_recv().unwrap().seq), (2, 3));
    drop(log);
    let log = EventLog::open(path).unwrap();
    assert_eq!(seqs(log.kept.iter().cloned().collect::<Vec<_>>().as_slice()), [1, 2, 3]);
}

#[test]
fn the_series_survives_a_reopen_and_a_reset_log_starts_another() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut log = EventLog::open(path.clone()).unwrap();
    publish(&mut log, 3);
    let series = log.series.clone();
    assert!(log.kept.iter().all(|e| e.series == series));
    drop(log);
    let log = EventLog::open(path.clone()).unwrap();
    assert_eq!(log.series, series);
    // A reader of this series resumes without a snapshot.
    let w = log.watch(Some(2), &series, || panic!("no snapshot wanted"));
    assert_eq!(
        (w.series.as_str(), seqs(&w.backlog).as_slice()),
        (series.as_str(), &[3][..])
    );
    drop(log);
    // The state directory is reset: seqs start over, in another series.
    fs::remove_file(&path).unwrap();
    let mut log = EventLog::open(path).unwrap();
    publish(&mut log, 3);
    assert_ne!(log.series, series);
    let w = log.watch(Some(2), &series, Vec::new);
    assert_eq!(
        w.snapshot.map(|s| (s.seq, s.gap)),
        Some((3, true)),
        "not the old series' 3"
    );
}

#[test]
fn events_from_before_series_existed_join_the_log_s_series() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut log = EventLog::open(path.clone()).unwrap();
    publish(&mut log, 2);
    drop(log);
    // As an older agent wrote them.
    let old: String = fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("series");
            format!("{v}\n")
        })
        .collect();
    fs::write(&path, old).unwrap();
    let mut log = EventLog::open(path.clone()).unwrap();
    publish(&mut log, 1);
    assert_eq!(log.last_seq, 3);
    assert!(!log.series.is_empty() && log.kept.iter().all(|e| e.series == log.series));
    let series = log.series.clone();
    drop(log);
    // Still one log: the older lines stay in the series that followed them.
    let log = EventLog::open(path).unwrap();
    assert_eq!(log.series, series);
    assert_eq!(seqs(log.kept.iter().cloned().collect::<Vec<_>>().as_slice()), [1, 2, 3]);
}

#[test]
fn too_many_events_waiting_for_the_disk_are_given_up_for_a_new_series() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path().join("events.jsonl")).unwrap();
    publish(&mut log, 1);
    let series = log.series.clone();
    let mut w = log.watch(Some(1), "", Vec::new);
    log.file = fs::OpenOptions::new().append(true).open("/dev/full").unwrap();
    publish(&mut log, EVENTS_KEPT + 1);
    assert_ne!(log.series, series);
    assert_eq!(log.pending.len(), 1, "only the event after the new series waits");
    assert!(matches!(w.live.try_recv(), Err(broadcast::error::TryRecvError::Closed)));
    let w = log.watch(Some(1), &series, Vec::new);
    assert!(w.snapshot.is_some_and(|s| s.gap));
}

#[test]
fn a_watch_from_zero_starts_with_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path().join("events.jsonl")).unwrap();
    publish(&mut log, 2);
    let w = log.watch(None, "", || vec![view()]);
    let snap = w.snapshot.expect("a snapshot");
    assert_eq!((snap.seq, snap.dynos.len(), snap.gap), (2, 1, false));
    assert!(w.backlog.is_empty());
}

#[test]
fn a_watch_after_a_kept_seq_gets_the_backlog_without_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path().join("events.jsonl")).unwrap();
    publish(&mut log, 5);
    let w = log.watch(Some(2), "", || panic!("no snapshot wanted"));
    assert!(w.snapshot.is_none());
    assert_eq!(seqs(&w.backlog), [3, 4, 5]);
    let w = log.watch(Some(5), "", || panic!("no snapshot wanted"));
    assert!(w.snapshot.is_none() && w.backlog.is_empty(), "up to date");
}

#[test]
fn a_watch_from_a_seq_never_reached_gets_a_snapshot_marked_as_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path().join("events.jsonl")).unwrap();
    publish(&mut log, 2);
    let w = log.watch(Some(7), "", Vec::new);
    assert_eq!(w.snapshot.map(|s| (s.seq, s.gap)), Some((2, true)));
}

#[test]
fn a_watch_from_before_the_events_kept_gets_a_snapshot_marked_as_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path().join("events.jsonl")).unwrap();
    publish(&mut log, 4);
    // The oldest events are no longer kept.
    log.kept.drain(..2);
    let w = log.watch(Some(1), "", Vec::new);
    assert_eq!(w.snapshot.map(|s| (s.seq, s.gap)), Some((4, true)));
    let w = log.watch(Some(2), "", Vec::new);
    assert!(w.snapshot.is_none(), "3 and 4 are kept");
    assert_eq!(seqs(&w.backlog), [3, 4]);
}

#[test]
fn published_events_reach_live_watchers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventLog::open(dir.path().join("events.jsonl")).unwrap();
    let mut w = log.watch(Some(0), "", Vec::new);
    publish(&mut log, 1);
    let ev = w.live.try_recv().unwrap();
    assert_eq!(
        (ev.seq, ev.from, ev.to, ev.reason.as_str()),
        (1, State::Starting, State::Up, "bound")
    );
}

#[test]
fn a_log_that_cannot_be_compacted_still_opens_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut log = EventLog::open(path.clone()).unwrap();
    publish(&mut log, 2 * EVENTS_KEPT + 1);
    drop(log);
    // The compaction's temporary file cannot be made (as on a full disk):
    // a directory sits where it goes.
    let tmp = dir.path().join(format!(".events.jsonl.tmp.{}", std::process::id()));
    fs::create_dir(&tmp).unwrap();
    fs::write(tmp.join("x"), "").unwrap();
    let before = fs::metadata(&path).unwrap().len();
    let mut log = EventLog::open(path.clone()).expect("the log opens");
    assert_eq!(log.last_seq, 2 * EVENTS_KEPT as u64 + 1);
    assert_eq!(fs::metadata(&path).unwrap().len(), before, "left as it was");
    publish(&mut log, 1);
    assert_eq!(log.last_seq, 2 * EVENTS_KEPT as u64 + 2);
    drop(log);
    // Once it can, the next start compacts.
    fs::remove_dir_all(&tmp).unwrap();
    let log = EventLog::open(path.clone()).unwrap();
    assert_eq!(log.last_seq, 2 * EVENTS_KEPT as u64 + 2);
    assert!(fs::metadata(&path).unwrap().len() < before);
}

#[test]
fn events_held_in_a_batch_are_numbered_at_once_and_published_together_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut log = EventLog::open(path.clone()).unwrap();
    publish(&mut log, 1);
    let mut w = log.watch(Some(1), "", Vec::new);
    log.hold();
    publish(&mut log, 3);
    // Numbered, not yet durable: nobody sees them, nothing is on disk.
    assert_eq!(log.position().0, 1);
    assert_eq!(seqs(log.pending.make_contiguous()), [2, 3, 4]);
    assert!(w.live.try_recv().is_err());
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 1);
    log.release();
    assert_eq!(log.position().0, 4);
    assert!(log.pending.is_empty());
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 4);
    let live: Vec<u64> = std::iter::from_fn(|| w.live.try_recv().ok()).map(|e| e.seq).collect();
    assert_eq!(live, [2, 3, 4]);
    // After the batch, each event is published as it comes again.
    publish(&mut log, 1);
    assert_eq!(log.position().0, 5);
}
