//! Unit tests of admission and allocation (no root, no host ports taken).

use std::collections::{BTreeMap, HashSet};

use super::*;
use crate::engine::testkit::{key, record};

const MIB: u64 = 1 << 20;

fn range(first: u32, last: u32) -> Range {
    Range { first, last }
}

/// Records by key, as the actor holds them.
fn dynos(recs: Vec<DynoRecord>) -> BTreeMap<Key, DynoRecord> {
    recs.into_iter().map(|r| (key(&r.spec.name), r)).collect()
}

fn committed(dynos: &BTreeMap<Key, DynoRecord>, except: Option<&Key>) -> u64 {
    memory_committed(dynos.iter(), &Config::default().sizes, except)
}

#[test]
fn committed_memory_counts_every_dyno_that_is_not_down() {
    let d = dynos(vec![
        record("web.1", "standard-1x", State::Up, 100_000),
        record("web.2", "standard-2x", State::Starting, 100_001),
        record("worker.1", "standard-2x", State::Crashed, 100_002),
        record("worker.2", "performance-l", State::Down, 100_003),
        record("clock.1", "no-such-size", State::Up, 100_004),
    ]);
    assert_eq!(
        committed(&d, None),
        (512 + 1024 + 1024) * MIB,
        "down and unknown sizes count nothing"
    );
    assert_eq!(
        committed(&d, Some(&key("web.2"))),
        (512 + 1024) * MIB,
        "the dyno asking is left out"
    );
    assert_eq!(committed(&d, Some(&key("worker.2"))), (512 + 1024 + 1024) * MIB);
}

#[test]
fn admission_accepts_up_to_exactly_what_is_allocatable() {
    let cfg = Config::default();
    let k = key("web.3");
    assert!(admit(&cfg, 1024 * MIB, 0, &k, "standard-2x").is_ok());
    assert!(
        admit(&cfg, 1024 * MIB, 512 * MIB, &k, "standard-1x").is_ok(),
        "fills it exactly"
    );
    assert!(
        admit(&cfg, 0, 0, &k, "no-such-size").is_ok(),
        "an unknown size needs nothing"
    );
}

#[test]
fn admission_refuses_past_allocatable_and_says_why() {
    let cfg = Config::default();
    let k = key("web.3");
    let err = admit(&cfg, 1024 * MIB, 768 * MIB, &k, "standard-1x").unwrap_err();
    assert!(matches!(err, Error::ResourceExhausted(..)), "{err:?}");
    let msg = err.to_string();
    for part in [
        "shop/web.3",
        "size standard-1x needs 512 MiB",
        "256 MiB of this host's 1024 MiB allocatable is free",
        "memory_reserve 1024 MiB",
        "memory_overcommit 1",
    ] {
        assert!(msg.contains(part), "{part:?} not in {msg:?}");
    }
    // Committed beyond allocatable (a smaller host after a restart): nothing
    // is free, and no underflow.
    let msg = admit(&cfg, 256 * MIB, 1024 * MIB, &k, "standard-1x")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("0 MiB of this host's 256 MiB"), "{msg}");
    // No overflow either.
    assert!(admit(&cfg, u64::MAX - 1, u64::MAX, &k, "standard-1x").is_err());
}

#[test]
fn ports_are_the_lowest_free_one_never_a_taken_one() {
    let r = range(20000, 20004);
    assert_eq!(free_port(r, &HashSet::new(), |_| true).unwrap(), 20000);
    let used = HashSet::from([20000, 20001, 20003]);
    assert_eq!(free_port(r, &used, |_| true).unwrap(), 20002);
    // A port some other process holds on the host is skipped too.
    assert_eq!(free_port(r, &used, |p| p != 20002).unwrap(), 20004);
    // Ports a dyno has are never probed.
    let mut probed = Vec::new();
    free_port(r, &used, |p| {
        probed.push(p);
        false
    })
    .unwrap_err();
    assert_eq!(probed, [20002, 20004]);
}

#[test]
fn port_exhaustion_names_the_range() {
    let r = range(20000, 20002);
    let used = HashSet::from([20000, 20001, 20002]);
    let err = free_port(r, &used, |_| true).unwrap_err();
    assert!(matches!(err, Error::ResourceExhausted(..)), "{err:?}");
    assert!(err.to_string().contains("no free port in 20000-20002"), "{err}");
    let err = free_port(r, &HashSet::new(), |_| false).unwrap_err();
    assert!(err.to_string().contains("no free port in 20000-20002"), "{err}");
}

#[test]
fn uids_are_the_lowest_free_one_never_a_taken_one() {
    let r = range(100_000, 100_003);
    assert_eq!(free_uid(r, &HashSet::new()).unwrap(), 100_000);
    assert_eq!(free_uid(r, &HashSet::from([100_000, 100_002])).unwrap(), 100_001);
    assert_eq!(
        free_uid(r, &HashSet::from([100_000, 100_001, 100_002])).unwrap(),
        100_003
    );
    // Uids outside the range (records from an older agent) free nothing.
    assert_eq!(free_uid(r, &HashSet::from([0, 99_999, 100_000])).unwrap(), 100_001);
}

#[test]
fn uid_exhaustion_names_the_range() {
    let r = range(100_000, 100_001);
    let err = free_uid(r, &HashSet::from([100_000, 100_001])).unwrap_err();
    assert!(matches!(err, Error::ResourceExhausted(..)), "{err:?}");
    assert!(err.to_string().contains("no free uid in 100000-100001"), "{err}");
}

#[test]
fn a_recovered_uid_is_kept_only_in_range_and_unshared() {
    let r = range(100_000, 100_009);
    let used = HashSet::from([100_001]);
    assert!(uid_is_valid(100_000, r, &used));
    assert!(uid_is_valid(100_009, r, &used));
    assert!(!uid_is_valid(100_001, r, &used), "another dyno has it");
    assert!(!uid_is_valid(0, r, &used), "root, from a record without a uid");
    assert!(!uid_is_valid(100_010, r, &used), "outside the range");
}
