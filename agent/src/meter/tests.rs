//! Unit tests of the meter thread: a failing or locked ledger keeps the
//! usage until it is written and never blocks the handle; slices are written
//! as runs are seen alive past them; a run is never billed past the last
//! second it was seen alive, however late its close comes.

use std::sync::Arc;
use std::time::Instant;

use super::worker::with_carried_peak;
use super::*;

fn run(id: &str) -> RunInfo {
    RunInfo {
        run_id: id.into(),
        app: "shop".into(),
        dyno: "worker.1".into(),
        dyno_id: "d-1".into(),
        ptype: "worker".into(),
        size: "standard-1x".into(),
        release: "v1".into(),
    }
}

/// Runs are alive unless named in the shared set.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<HashSet<String>>>);

impl Fake {
    fn kill(&self, id: &str) {
        self.0.lock().unwrap().insert(id.into());
    }
}

impl Liveness for Fake {
    fn check(&mut self, run_id: &str) -> Alive {
        if self.0.lock().unwrap().contains(run_id) {
            Alive::No
        } else {
            Alive::Yes
        }
    }
    fn forget(&mut self, _: &str) {}
}

fn meter_with(dir: &std::path::Path, slice: u64, fake: &Fake) -> Meter {
    meter_on(dir, slice, fake, crate::time::Clock::new())
}

fn meter_on(dir: &std::path::Path, slice: u64, fake: &Fake, clock: crate::time::Clock) -> Meter {
    Meter::start_with(
        MeterConfig {
            ledger: dir.join("ledger.db"),
            host_id: "h".into(),
            slice,
            retention: Duration::from_secs(3600),
            runs: dir.join("runs"),
        },
        None,
        clock,
        Box::new(fake.clone()),
    )
}

fn meter(dir: &std::path::Path, slice: u64) -> Meter {
    meter_with(dir, slice, &Fake::default())
}

async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The records of `run_id`: tiling `[start, end)`, final on the last only.
fn assert_tiles(records: &[Record], run_id: &str, start: Secs, end: Secs) {
    let mine: Vec<&Record> = records.iter().filter(|r| r.run_id == run_id).collect();
    let mut at = start;
    for (i, r) in mine.iter().enumerate() {
        assert_eq!(r.start, at, "gap or overlap: {mine:#?}");
        assert_eq!(r.is_final, i + 1 == mine.len(), "final on the last only: {mine:#?}");
        at = r.end;
    }
    assert_eq!(at, end, "{mine:#?}");
}

#[tokio::test]
async fn a_ledger_that_fails_keeps_the_usage_and_says_so_until_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let m = meter(dir.path(), 3600);
    until("the ledger to open", async || {
        (m.snapshot().ledger == LedgerState::Ok).then_some(())
    })
    .await;
    let t = chrono::Utc::now();
    // The disk "fails" for usage records from now on.
    let db = rusqlite::Connection::open(dir.path().join("ledger.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER fail BEFORE INSERT ON usage BEGIN SELECT RAISE(ABORT, 'injected I/O error'); END;",
    )
    .unwrap();
    m.open(run("r1"), t - chrono::Duration::seconds(90));
    m.close("r1".into(), End::Exited(t), None);
    let status = until("the failure to show", async || {
        let s = m.status().await.unwrap();
        (s.pending_writes == 1).then_some(s)
    })
    .await;
    assert!(status.last_error.as_deref().unwrap().contains("injected"), "{status:?}");
    assert_eq!(status.ledger, LedgerState::Failing);
    assert!(status.failing_since.is_some());
    assert_eq!(status.last_seq, 0, "nothing pretends to be written");
    assert!(m.collect(0, 10, true).await.unwrap().0.is_empty());
    // The disk is back: the kept close is written, once.
    db.execute_batch("DROP TRIGGER fail").unwrap();
    let status = until("the retry", async || {
        let s = m.status().await.unwrap();
        (s.pending_writes == 0).then_some(s)
    })
    .await;
    assert_eq!(
        (status.last_error, status.ledger, status.failing_since),
        (None, LedgerState::Ok, None)
    );
    let (records, _) = m.collect(0, 10, true).await.unwrap();
    let secs: u64 = records.iter().map(|r| r.seconds).sum();
    assert_eq!(secs, 90, "{records:?}");
    assert_eq!(records.last().unwrap().end, t.timestamp());
    assert!(records.last().unwrap().is_final);
    assert_eq!(status.open_runs, 0);
}

#[tokio::test]
async fn slices_are_written_as_boundaries_pass_and_ack_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let m = meter(dir.path(), 1);
    m.open(run("r1"), chrono::Utc::now() - chrono::Duration::seconds(4));
    m.reconcile(HashSet::from(["r1".to_string()]));
    // At least the three whole seconds before now, one record each.
    let records = until("three slices", async || {
        let (r, _) = m.collect(0, 100, false).await.unwrap();
        (r.len() >= 3).then_some(r)
    })
    .await;
    assert!(
        records
            .iter()
            .all(|r| r.seconds == 1 && r.end - r.start == 1 && !r.is_final),
        "{records:?}"
    );
    assert!(records.windows(2).all(|w| w[0].end == w[1].start));
    let err = m.ack(1_000_000).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    m.ack(records[1].seq).await.unwrap();
    let (rest, _) = m.collect(0, 100, false).await.unwrap();
    assert_eq!(rest.first().map(|r| r.seq), Some(records[2].seq));
    m.stop(Duration::from_secs(5));
}

#[tokio::test]
async fn a_run_whose_command_is_gone_is_never_billed_past_it_however_late_its_close() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    let m = meter_with(dir.path(), 1, &fake);
    let start = chrono::Utc::now() - chrono::Duration::seconds(3);
    m.open(run("r1"), start);
    m.open(run("r2"), start);
    m.reconcile(HashSet::from(["r1".to_string(), "r2".to_string()]));
    until("the first slices", async || {
        let (r, _) = m.collect(0, 100, true).await.unwrap();
        (r.len() >= 4).then_some(())
    })
    .await;
    // Both commands end now; the agent hears of r1's end (exit record at
    // `exited`) three seconds late, and finds r2 lost even later.
    let exited = chrono::Utc::now();
    fake.kill("r1");
    fake.kill("r2");
    let later = Instant::now() + Duration::from_secs(3);
    until("three seconds to pass", async || (Instant::now() > later).then_some(())).await;
    let (records, _) = m.collect(0, 100, true).await.unwrap();
    assert!(
        records.iter().all(|r| r.end <= exited.timestamp()),
        "billed past the end before the close came: {records:#?}"
    );
    m.close("r1".into(), End::Exited(exited), None);
    m.close("r2".into(), End::Lost(chrono::Utc::now()), None);
    let records = until("both closes", async || {
        let (r, _) = m.collect(0, 100, true).await.unwrap();
        (r.iter().filter(|r| r.is_final).count() == 2).then_some(r)
    })
    .await;
    assert_tiles(&records, "r1", start.timestamp(), exited.timestamp());
    let lost_end = records
        .iter()
        .filter(|r| r.run_id == "r2")
        .map(|r| r.end)
        .max()
        .unwrap();
    assert!(
        lost_end <= exited.timestamp() && lost_end >= exited.timestamp() - 2,
        "lost run billed to {lost_end}, last alive about {}",
        exited.timestamp()
    );
    assert_tiles(&records, "r2", start.timestamp(), lost_end);
}

#[tokio::test]
async fn a_locked_ledger_blocks_nothing_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    drop(crate::ledger::Ledger::open(&path, "h", 1).unwrap());
    // Another process holds the ledger before the agent starts.
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder
        .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; UPDATE ledger_meta SET value = value;")
        .unwrap();
    let t = Instant::now();
    let m = meter(dir.path(), 1);
    let start = chrono::Utc::now() - chrono::Duration::seconds(5);
    m.open(run("r1"), start);
    m.reconcile(HashSet::from(["r1".to_string()]));
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "start waited {:?}",
        t.elapsed()
    );
    let s = until("the lock to show", async || {
        let s = m.status().await.unwrap();
        (s.ledger == LedgerState::Locked).then_some(s)
    })
    .await;
    assert!(s.failing_since.is_some() && s.pending_writes == 1, "{s:?}");
    for _ in 0..3 {
        let t = Instant::now();
        m.status().await.unwrap();
        let err = m.collect(0, 10, false).await.unwrap_err().to_string();
        assert!(err.contains("ledger.db") && err.contains("locked"), "{err}");
        let err = m.ack(1).await.unwrap_err();
        assert!(matches!(err, Error::Unavailable(_)), "{err}");
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "answered in {:?}",
            t.elapsed()
        );
    }
    let exited = chrono::Utc::now();
    m.close("r1".into(), End::Exited(exited), None);
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    let records = until("the kept usage to be written", async || {
        let s = m.status().await.unwrap();
        if s.ledger != LedgerState::Ok || s.pending_writes > 0 {
            return None;
        }
        Some(m.collect(0, 100, true).await.unwrap().0)
    })
    .await;
    assert_tiles(&records, "r1", start.timestamp(), exited.timestamp());
}

#[test]
fn a_carried_peak_only_ever_raises_a_reading() {
    let u = |peak| Usage {
        cpu_ns: 7,
        mem_peak_bytes: peak,
    };
    assert_eq!(with_carried_peak(Some(u(10)), Some(&30)), Some(u(30)));
    assert_eq!(with_carried_peak(Some(u(50)), Some(&30)), Some(u(50)));
    assert_eq!(with_carried_peak(Some(u(10)), None), Some(u(10)));
    assert_eq!(with_carried_peak(None, Some(&30)), None, "no reading stays none");
}

#[tokio::test]
async fn after_the_wall_clock_steps_back_a_run_is_billed_by_it_never_past_its_recorded_exit() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    // The meter's clock was anchored before the wall clock stepped back 30 s;
    // the shims stamp exec and exit times with the wall clock.
    let before_the_step = crate::time::Clock::reading(chrono::Utc::now() + chrono::Duration::seconds(30));
    let m = meter_on(dir.path(), 1, &fake, before_the_step);
    let start = chrono::Utc::now();
    m.open(run("r1"), start);
    m.reconcile(HashSet::from(["r1".to_string()]));
    let later = Instant::now() + Duration::from_secs(3);
    until("three seconds to pass", async || (Instant::now() > later).then_some(())).await;
    let exited = chrono::Utc::now();
    fake.kill("r1");
    m.close("r1".into(), End::Exited(exited), None);
    let records = until("the close", async || {
        let (r, _) = m.collect(0, 100, true).await.unwrap();
        r.iter().any(|r| r.is_final).then_some(r)
    })
    .await;
    let ran = exited.timestamp() - start.timestamp();
    assert_tiles(&records, "r1", start.timestamp(), exited.timestamp());
    let billed: i64 = records.iter().map(|r| r.seconds as i64).sum();
    assert!((billed - ran).abs() <= 1, "a {ran} s run was billed {billed} s");
    m.stop(Duration::from_secs(5));
}
