use std::collections::HashMap;

use super::bill::cpu_shares;
use super::*;

/// 2026-11-22T10:00:00Z
const T10: Secs = 1_795_341_600;
const HOUR: u64 = 3600;

fn run(id: &str) -> RunInfo {
    RunInfo {
        run_id: id.into(),
        app: "shop".into(),
        dyno: "web.1".into(),
        dyno_id: "d-1".into(),
        ptype: "web".into(),
        size: "standard-1x".into(),
        release: "v7".into(),
    }
}

fn usage(cpu_ms: u64, peak: u64) -> Option<Usage> {
    Some(Usage {
        cpu_ns: cpu_ms * 1_000_000,
        mem_peak_bytes: peak,
    })
}

fn ledger(slice: u64) -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(&dir.path().join("ledger.db"), "host-a", slice).unwrap();
    (dir, l)
}

fn none() -> HashMap<String, Secs> {
    HashMap::new()
}

fn all(l: &Ledger) -> Vec<Record> {
    l.collect(0, u32::MAX - 1, true).unwrap().0
}

/// The records of `run_id` tile `[start, end)` exactly, in order, and only
/// the last is final (only an empty final record is empty).
fn assert_tiles(records: &[Record], run_id: &str, start: Secs, end: Secs) {
    let mine: Vec<&Record> = records.iter().filter(|r| r.run_id == run_id).collect();
    let mut at = start;
    for (i, r) in mine.iter().enumerate() {
        let last = i + 1 == mine.len();
        assert_eq!(r.start, at, "gap or overlap at {at}: {mine:#?}");
        assert!(r.end > r.start || (last && r.is_final), "empty record: {r:?}");
        assert_eq!(r.seconds, (r.end - r.start) as u64);
        assert_eq!(r.is_final, last, "final on the last record only: {mine:#?}");
        at = r.end;
    }
    assert_eq!(at, end, "records end at {at}, the run at {end}");
}

#[test]
fn slices_are_aligned_to_utc() {
    assert_eq!(T10 % 3600, 0, "the fixture is a UTC hour");
    assert_eq!(slice_start(T10 + 3599, HOUR), T10);
    assert_eq!(slice_start(T10 + 3600, HOUR), T10 + 3600);
    assert_eq!(slice_start(T10 - 1, HOUR), T10 - 3600);
    assert_eq!(slice_start(-1, 60), -60, "before the epoch too");
    assert_eq!(slice_start(T10 + 7, 1), T10 + 7);
}

#[test]
fn pieces_cut_at_every_boundary() {
    assert_eq!(pieces(T10 + 10, T10 + 20, HOUR), [(T10 + 10, T10 + 20)]);
    assert_eq!(
        pieces(T10 - 5, T10 + 7200 + 3, HOUR),
        [
            (T10 - 5, T10),
            (T10, T10 + 3600),
            (T10 + 3600, T10 + 7200),
            (T10 + 7200, T10 + 7203)
        ]
    );
    assert!(pieces(T10, T10, HOUR).is_empty());
    assert!(
        pieces(T10 + 5, T10, HOUR).is_empty(),
        "a backwards span is empty, not negative"
    );
    assert_eq!(pieces(T10, T10 + 3, 1).len(), 3);
    // The seconds always add up to the span.
    for (from, to, slice) in [
        (T10 + 1, T10 + 100_000, 3600),
        (T10 - 7, T10 + 13, 5),
        (T10, T10 + 1, 1),
    ] {
        let total: i64 = pieces(from, to, slice).iter().map(|(a, b)| b - a).sum();
        assert_eq!(total, to - from);
    }
}

#[test]
fn cpu_is_shared_in_proportion_and_adds_up() {
    let spans = pieces(T10 - 10, T10 + 30, HOUR); // 10 s + 30 s
    assert_eq!(cpu_shares(0, 4_000_000_000, &spans), [1000, 3000]);
    // Sub-millisecond remainders carry over instead of being lost.
    let spans = pieces(T10, T10 + 3, 1);
    let shares = cpu_shares(999_999, 2_000_001, &spans);
    // 0.999999 ms billed before, 2.000001 ms now: the counter crossed 3 ms.
    assert_eq!(shares.iter().sum::<u64>(), 3);
    assert_eq!(cpu_shares(0, 0, &spans), [0, 0, 0]);
}

#[test]
fn a_run_is_billed_per_slice_from_exec_to_exit() {
    let (_d, mut l) = ledger(HOUR);
    assert!(l.open_run(&run("r1"), T10 - 1800).unwrap());
    // Nothing is due inside the first slice.
    assert!(l.due(|_| Some(T10 - 1)).is_empty());
    assert_eq!(l.tick(T10 - 1, &none(), &[("r1".into(), usage(10, 100))]).unwrap(), 0);
    // The boundary passed: the first slice is written.
    assert_eq!(l.due(|_| Some(T10 + 1)), ["r1"]);
    assert_eq!(l.tick(T10 + 1, &none(), &[("r1".into(), usage(500, 2000))]).unwrap(), 1);
    assert_eq!(l.close("r1", T10 + 600, usage(800, 3000)).unwrap(), 1);
    let recs = all(&l);
    assert_tiles(&recs, "r1", T10 - 1800, T10 + 600);
    assert_eq!(recs.iter().map(|r| r.seconds).sum::<u64>(), 2400);
    assert_eq!(recs.iter().map(|r| r.cpu_ms).collect::<Vec<_>>(), [500, 300]);
    assert_eq!(recs.iter().map(|r| r.mem_peak_bytes).collect::<Vec<_>>(), [2000, 3000]);
    let r = &recs[0];
    assert_eq!((r.seq, r.id.as_str()), (1, "host-a:1"));
    assert_eq!(
        (&*r.app, &*r.dyno, &*r.dyno_id, &*r.ptype, &*r.size, &*r.release),
        ("shop", "web.1", "d-1", "web", "standard-1x", "v7")
    );
    assert_eq!(recs[1].id, "host-a:2");
    assert!(l.open_runs().next().is_none(), "closed");
}

#[test]
fn missing_slices_are_written_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    {
        let mut l = Ledger::open(&path, "host-a", 60).unwrap();
        l.open_run(&run("r1"), T10 + 30).unwrap();
        l.tick(T10 + 61, &none(), &[("r1".into(), usage(30, 1))]).unwrap();
        // The agent dies here; five boundaries pass while it is down.
    }
    let mut l = Ledger::open(&path, "host-a", 60).unwrap();
    assert_eq!(l.open_runs().map(|m| m.billed_until).collect::<Vec<_>>(), [T10 + 60]);
    assert_eq!(l.due(|_| Some(T10 + 6 * 60 + 5)), ["r1"]);
    assert_eq!(
        l.tick(T10 + 6 * 60 + 5, &none(), &[("r1".into(), usage(530, 7))])
            .unwrap(),
        5
    );
    // It ended while the agent was down again: settled from its exit time.
    drop(l);
    let mut l = Ledger::open(&path, "host-a", 60).unwrap();
    assert_eq!(l.close("r1", T10 + 8 * 60 + 10, usage(600, 9)).unwrap(), 3);
    let recs = all(&l);
    assert_tiles(&recs, "r1", T10 + 30, T10 + 8 * 60 + 10);
    assert_eq!(recs.iter().map(|r| r.cpu_ms).sum::<u64>(), 600);
    let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>(), "no holes");
}

#[test]
fn opening_and_closing_are_idempotent() {
    let (_d, mut l) = ledger(60);
    assert!(l.open_run(&run("r1"), T10).unwrap());
    assert!(!l.open_run(&run("r1"), T10 + 5).unwrap(), "already open: start kept");
    assert_eq!(l.close("r1", T10 + 90, None).unwrap(), 2);
    assert_eq!(
        l.close("r1", T10 + 200, None).unwrap(),
        0,
        "closing twice bills nothing"
    );
    assert!(
        !l.open_run(&run("r1"), T10).unwrap(),
        "a closed run is never metered again"
    );
    assert_eq!(l.close("unknown", T10, None).unwrap(), 0);
    assert_tiles(&all(&l), "r1", T10, T10 + 90);
}

#[test]
fn clock_steps_never_make_negative_or_doubled_seconds() {
    let (_d, mut l) = ledger(60);
    l.open_run(&run("r1"), T10).unwrap();
    l.tick(T10 + 125, &none(), &[("r1".into(), None)]).unwrap();
    // The clock stepped back an hour: nothing is due and nothing is written.
    assert!(l.due(|_| Some(T10 - 3600)).is_empty());
    assert_eq!(l.tick(T10 - 3600, &none(), &[("r1".into(), None)]).unwrap(), 0);
    // The run "ended" before what is billed: clamped, no negative record,
    // an empty final one.
    assert_eq!(l.close("r1", T10 + 10, None).unwrap(), 1);
    let recs = all(&l);
    assert_tiles(&recs, "r1", T10, T10 + 120);
    assert_eq!(
        recs.last().map(|r| (r.start, r.end, r.is_final)),
        Some((T10 + 120, T10 + 120, true))
    );
    // A run "exec'd" after it ended (a forward step): an empty life.
    l.open_run(&run("r2"), T10 + 500).unwrap();
    assert_eq!(l.close("r2", T10 + 400, None).unwrap(), 0);
    assert!(all(&l).iter().all(|r| r.end > r.start || r.is_final));
}

#[test]
fn a_cpu_counter_that_goes_backwards_bills_no_cpu() {
    let (_d, mut l) = ledger(60);
    l.open_run(&run("r1"), T10).unwrap();
    l.tick(T10 + 61, &none(), &[("r1".into(), usage(5000, 1))]).unwrap();
    l.close("r1", T10 + 90, usage(10, 1)).unwrap();
    assert_eq!(all(&l).iter().map(|r| r.cpu_ms).collect::<Vec<_>>(), [5000, 0]);
}

#[test]
fn a_failed_write_moves_nothing_and_is_retried_whole() {
    let (_d, mut l) = ledger(60);
    l.open_run(&run("r1"), T10).unwrap();
    l.open_run(&run("r2"), T10).unwrap();
    // The second record of the transaction fails (a disk error, say).
    l.conn
        .execute_batch(
            "CREATE TRIGGER fail BEFORE INSERT ON usage WHEN NEW.run_id = 'r2'
             BEGIN SELECT RAISE(ABORT, 'injected I/O error'); END;",
        )
        .unwrap();
    let readings = [("r1".to_string(), usage(1, 1)), ("r2".to_string(), usage(1, 1))];
    let err = l.tick(T10 + 61, &none(), &readings).unwrap_err().to_string();
    assert!(err.contains("injected") && err.contains("ledger.db"), "{err}");
    assert!(all(&l).is_empty(), "all or nothing");
    assert_eq!(l.last_seq(), 0);
    assert!(l.open_runs().all(|m| m.billed_until == T10), "no meter moved");
    let err = l.close("r2", T10 + 70, None).unwrap_err();
    assert!(err.to_string().contains("injected"));
    assert!(l.is_open("r2"), "still open after a failed close");
    // The disk is back: the same spans are written, once.
    l.conn.execute_batch("DROP TRIGGER fail").unwrap();
    assert_eq!(l.tick(T10 + 61, &none(), &readings).unwrap(), 2);
    assert_eq!(l.close("r2", T10 + 70, None).unwrap(), 1);
    let recs = all(&l);
    assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_tiles(&recs, "r2", T10, T10 + 70);
}

#[test]
fn collect_pages_in_seq_order_and_says_when_more_follow() {
    let (_d, mut l) = ledger(1);
    l.open_run(&run("r1"), T10).unwrap();
    l.close("r1", T10 + 5, None).unwrap();
    let (page, more) = l.collect(0, 2, false).unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    assert!(more);
    let (page, more) = l.collect(2, 2, false).unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4]);
    assert!(more);
    let (page, more) = l.collect(4, 2, false).unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [5]);
    assert!(!more);
}

#[test]
fn ack_collects_once_and_unacked_records_come_back() {
    let (_d, mut l) = ledger(1);
    l.open_run(&run("r1"), T10).unwrap();
    l.close("r1", T10 + 4, None).unwrap();
    let first = l.collect(0, 100, false).unwrap().0;
    assert_eq!(first.len(), 4);
    // The collector crashed before acking: the same records, same ids.
    assert_eq!(l.collect(0, 100, false).unwrap().0, first);
    assert_eq!(l.ack(2, T10 + 10).unwrap(), 2);
    assert_eq!(l.ack(2, T10 + 11).unwrap(), 0, "acking again changes nothing");
    let rest = l.collect(0, 100, false).unwrap().0;
    assert_eq!(rest, first[2..]);
    // Acked records stay visible to ops until pruned.
    assert_eq!(l.collect(0, 100, true).unwrap().0, first);
    assert!(l.collect(u64::MAX, 100, true).unwrap().0.is_empty(), "no wrap-around");
    let err = l.ack(5, T10 + 12).unwrap_err().to_string();
    assert!(err.contains("seq 5") && err.contains("last record is 4"), "{err}");
}

#[test]
fn prune_removes_only_collected_records_past_retention_and_never_reuses_seq() {
    let (_d, mut l) = ledger(1);
    l.open_run(&run("r1"), T10).unwrap();
    l.close("r1", T10 + 4, None).unwrap();
    l.ack(4, T10 + 100).unwrap();
    assert_eq!(l.prune(T10 + 100 + 50, 60).unwrap(), 0, "within retention");
    assert_eq!(l.prune(T10 + 100 + 61, 60).unwrap(), 4);
    assert!(all(&l).is_empty());
    // Uncollected records are never pruned, however old.
    l.open_run(&run("r2"), T10).unwrap();
    l.close("r2", T10 + 1, None).unwrap();
    assert_eq!(l.prune(T10 + 10_000_000, 60).unwrap(), 0);
    let recs = all(&l);
    assert_eq!(
        recs.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [5],
        "seq continues after pruning"
    );
    assert_eq!(recs[0].id, "host-a:5");
}

#[test]
fn a_newer_schema_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    drop(Ledger::open(&path, "h", 1).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = Ledger::open(&path, "h", 1).err().expect("refused").to_string();
    assert!(err.contains("schema version 99") && err.contains("ledger.db"), "{err}");
}

#[test]
fn the_database_is_wal_with_full_sync() {
    let (_d, l) = ledger(1);
    let mode: String = l.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    let sync: i64 = l.conn.pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap();
    assert_eq!((mode.as_str(), sync), ("wal", 2));
}

#[test]
fn the_ledger_and_its_wal_are_readable_by_root_only() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, mut l) = ledger(HOUR);
    assert!(l.open_run(&run("r1"), T10).unwrap());
    for name in ["ledger.db", "ledger.db-wal", "ledger.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}

#[test]
fn a_run_is_billed_only_as_far_as_it_was_seen_alive() {
    let (dir, mut l) = ledger(1);
    l.open_run(&run("r1"), T10).unwrap();
    l.open_run(&run("r2"), T10).unwrap();
    // r2's command was gone after T10 + 2; the meter sees r1 at T10 + 5.
    let gone = HashMap::from([("r2".to_string(), T10 + 2)]);
    assert_eq!(l.due(|id| Some(if id == "r2" { T10 + 2 } else { T10 + 5 })).len(), 2);
    let bills = [("r1".to_string(), None), ("r2".to_string(), None)];
    assert_eq!(l.tick(T10 + 5, &gone, &bills).unwrap(), 4 + 1);
    let billed = |l: &Ledger, id: &str| l.open_run_of(id).map(|m| (m.billed_until, m.seen_alive));
    // A slice is billed once the run was seen a second past it.
    assert_eq!(billed(&l, "r1"), Some((T10 + 4, T10 + 5)));
    assert_eq!(billed(&l, "r2"), Some((T10 + 1, T10 + 2)));
    // Ticks after it never move a gone run, and what was seen survives a restart.
    l.tick(T10 + 9, &gone, &bills).unwrap();
    assert_eq!(billed(&l, "r2"), Some((T10 + 1, T10 + 2)));
    drop(l);
    let mut l = Ledger::open(&dir.path().join("ledger.db"), "host-a", 1).unwrap();
    assert_eq!(billed(&l, "r1"), Some((T10 + 8, T10 + 9)));
    assert_eq!(billed(&l, "r2"), Some((T10 + 1, T10 + 2)));
    // Closing always writes the final record: the second before the exit
    // was left for it.
    assert_eq!(l.close("r2", T10 + 2, None).unwrap(), 1);
    l.close("r1", T10 + 9, None).unwrap();
    let recs = all(&l);
    assert_tiles(&recs, "r1", T10, T10 + 9);
    assert_tiles(&recs, "r2", T10, T10 + 2);
    assert!(recs.iter().all(|r| r.end > r.start), "no empty record: {recs:#?}");
}

#[test]
fn a_run_shorter_than_a_second_has_no_record_and_a_long_one_one_final() {
    let (_d, mut l) = ledger(HOUR);
    l.open_run(&run("short"), T10 + 5).unwrap();
    assert_eq!(
        l.close("short", T10 + 5, None).unwrap(),
        0,
        "nothing to bill, nothing billed"
    );
    l.open_run(&run("long"), T10 - 10).unwrap();
    l.close("long", T10 + 7210, None).unwrap();
    let recs = all(&l);
    assert_eq!(recs.iter().filter(|r| r.is_final).count(), 1, "{recs:#?}");
    assert_tiles(&recs, "long", T10 - 10, T10 + 7210);
}

#[test]
fn a_version_1_ledger_is_migrated_with_sensible_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let conn = schema::create_v1(&path);
    // What the previous agent wrote: r1 closed (two records), r2 open (one).
    conn.execute_batch(&format!(
        "INSERT INTO meters VALUES ('r1','shop','web.1','d-1','web','standard-1x','v7',{a},{c},0,{c});
         INSERT INTO meters VALUES ('r2','shop','web.2','d-2','web','standard-1x','v7',{a},{b},0,NULL);
         INSERT INTO usage VALUES (1,'host-a:1','r1','shop','web.1','d-1','web','standard-1x','v7',{a},{b},1800,0,0,NULL);
         INSERT INTO usage VALUES (2,'host-a:2','r2','shop','web.2','d-2','web','standard-1x','v7',{a},{b},1800,0,0,NULL);
         INSERT INTO usage VALUES (3,'host-a:3','r1','shop','web.1','d-1','web','standard-1x','v7',{b},{c},60,0,0,NULL);
         UPDATE ledger_meta SET value = 4;",
        a = T10 - 1800,
        b = T10,
        c = T10 + 60
    ))
    .unwrap();
    drop(conn);
    let mut l = Ledger::open(&path, "host-a", HOUR).unwrap();
    let version: i64 = l.conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, 2);
    let recs = all(&l);
    assert_eq!(
        recs.iter().map(|r| (r.seq, r.is_final)).collect::<Vec<_>>(),
        [(1, false), (2, false), (3, true)],
        "the closed run's last record is final, the open run's is not"
    );
    let open: Vec<_> = l.open_runs().cloned().collect();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].billed_until, open[0].seen_alive),
        (T10, T10),
        "seen alive as far as billed"
    );
    assert_eq!(l.last_seq(), 3);
    // The migrated ledger goes on: r2 vanished; billed to what was seen.
    assert_eq!(l.close("r2", open[0].seen_alive, None).unwrap(), 1);
    let recs = all(&l);
    assert_tiles(&recs, "r2", T10 - 1800, T10);
    assert_eq!(recs.last().unwrap().seq, 4);
    // Opening it again migrates nothing twice.
    drop(l);
    assert_eq!(all(&Ledger::open(&path, "host-a", HOUR).unwrap()).len(), 4);
}

#[test]
fn a_ledger_locked_by_another_process_fails_fast_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    drop(Ledger::open(&path, "h", 1).unwrap());
    let holder = Connection::open(&path).unwrap();
    holder
        .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; UPDATE ledger_meta SET value = value;")
        .unwrap();
    let t = std::time::Instant::now();
    let err = Ledger::open(&path, "h", 1).err().expect("locked");
    assert!(err.is_locked(), "{err}");
    assert!(err.to_string().contains("ledger.db"), "{err}");
    assert!(t.elapsed() < std::time::Duration::from_secs(2), "{:?}", t.elapsed());
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    Ledger::open(&path, "h", 1).unwrap();
}
