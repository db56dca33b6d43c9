//! Unit tests of the meter thread: a failing ledger keeps usage until it is
//! written; slices are written as boundaries pass; ack is checked.

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

fn meter(dir: &std::path::Path, slice: u64) -> Meter {
    Meter::start(
        MeterConfig {
            ledger: dir.join("ledger.db"),
            host_id: "h".into(),
            slice,
            retention: Duration::from_secs(3600),
            runs: dir.join("runs"),
        },
        None,
        crate::time::Clock::new(),
    )
    .unwrap()
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

#[tokio::test]
async fn a_ledger_that_fails_keeps_the_usage_and_says_so_until_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let m = meter(dir.path(), 3600);
    let t = chrono::Utc::now();
    // The disk "fails" for usage records from now on.
    let db = rusqlite::Connection::open(dir.path().join("ledger.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER fail BEFORE INSERT ON usage BEGIN SELECT RAISE(ABORT, 'injected I/O error'); END;",
    )
    .unwrap();
    m.open(run("r1"), t - chrono::Duration::seconds(90));
    m.close("r1".into(), t, None);
    let status = until("the failure to show", async || {
        let s = m.status().await.unwrap();
        (s.pending_writes == 1).then_some(s)
    })
    .await;
    assert!(status.last_error.as_deref().unwrap().contains("injected"), "{status:?}");
    assert_eq!(status.last_seq, 0, "nothing pretends to be written");
    assert!(m.collect(0, 10, true).await.unwrap().0.is_empty());
    // The disk is back: the kept close is written, once.
    db.execute_batch("DROP TRIGGER fail").unwrap();
    let status = until("the retry", async || {
        let s = m.status().await.unwrap();
        (s.pending_writes == 0).then_some(s)
    })
    .await;
    assert_eq!(status.last_error, None);
    let (records, _) = m.collect(0, 10, true).await.unwrap();
    let secs: u64 = records.iter().map(|r| r.seconds).sum();
    assert_eq!(secs, 90, "{records:?}");
    assert_eq!(records.last().unwrap().end, t.timestamp());
    assert_eq!(status.open_runs, 0);
}

#[tokio::test]
async fn slices_are_written_as_boundaries_pass_and_ack_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let m = meter(dir.path(), 1);
    m.open(run("r1"), chrono::Utc::now() - chrono::Duration::seconds(3));
    m.reconcile(HashSet::from(["r1".to_string()]));
    // At least the three whole seconds before now, one record each.
    let records = until("three slices", async || {
        let (r, _) = m.collect(0, 100, false).await.unwrap();
        (r.len() >= 3).then_some(r)
    })
    .await;
    assert!(
        records.iter().all(|r| r.seconds == 1 && r.end - r.start == 1),
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
