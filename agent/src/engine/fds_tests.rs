//! Unit tests of the descriptor budget: the terms add up, a dyno keeps its
//! need in every state but down, admission refuses at the limit with
//! `NO_FREE_DESCRIPTORS` naming it, and only `EMFILE`/`ENFILE` count as
//! exhaustion.

use std::collections::BTreeMap;

use super::*;
use crate::engine::Key;
use crate::engine::model::DynoRecord;
use crate::engine::testkit::{key, record};
use crate::supervisor::State;

fn dynos(recs: Vec<DynoRecord>) -> BTreeMap<Key, DynoRecord> {
    recs.into_iter().map(|r| (key(&r.spec.name), r)).collect()
}

#[test]
fn a_dyno_needs_its_pidfd_and_the_meters_probe_and_a_web_dyno_its_port_probe() {
    assert_eq!(total(DYNO), 3, "{DYNO:?}");
    assert_eq!(dyno_need(false, false), 3);
    assert_eq!(dyno_need(true, false), 4, "a web dyno probes its $PORT while it starts");
    assert_eq!(
        dyno_need(false, true),
        7,
        "an attached one-off holds the shim's socket and the pty or pipes"
    );
    for t in DYNO.iter().chain(WEB).chain(ATTACHED).chain(RESERVE) {
        assert!(t.count > 0 && !t.holder.is_empty(), "{t:?}");
    }
    assert_eq!(reserve(), RESERVE.iter().map(|t| t.count).sum::<u64>());
    // The machine's hard limit of 20 000 and 5 000 dynos: 4 a dyno is
    // what there is; the reserve must leave room for 5 000 workers.
    assert!(
        reserve() + 5_000 * dyno_need(false, false) <= 20_000,
        "reserve {}",
        reserve()
    );
}

#[test]
fn every_dyno_that_is_not_down_keeps_its_need_and_starts_in_flight_count() {
    let mut attached = record("run.1", "standard-1x", State::Starting, 100_005);
    attached.spec.one_off = true;
    attached.spec.attach = Some(crate::engine::model::Attach {
        tty: true,
        rows: 24,
        cols: 80,
    });
    let d = dynos(vec![
        record("web.1", "standard-1x", State::Up, 100_000),
        record("worker.1", "standard-1x", State::Starting, 100_001),
        record("worker.2", "standard-1x", State::Crashed, 100_002),
        record("worker.3", "standard-1x", State::Down, 100_003),
        attached,
    ]);
    assert_eq!(
        committed(d.iter(), None, 0),
        reserve() + 4 + 3 + 3 + 7,
        "a crashed dyno waiting keeps its need"
    );
    assert_eq!(committed(d.iter(), Some(&key("web.1")), 0), reserve() + 3 + 3 + 7);
    assert_eq!(committed(d.iter(), None, 2), reserve() + 17 + 2 * PENDING_START);
}

#[test]
fn admission_refuses_past_the_limit_naming_it() {
    let b = Budget { soft: 1024, hard: 1024 };
    assert!(
        b.admit(1021, 3, "worker.9 of app shop").is_ok(),
        "exactly the limit fits"
    );
    let e = b.admit(1022, 3, "worker.9 of app shop").unwrap_err();
    let Error::ResourceExhausted(reason, message) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(*reason, Reason::NoFreeDescriptors);
    assert!(message.starts_with("descriptors: 1022 of 1024 committed"), "{message}");
    assert!(message.contains("worker.9 of app shop needs 3"), "{message}");
    assert!(
        message.ends_with("(RLIMIT_NOFILE soft=hard=1024); raise LimitNOFILE"),
        "{message}"
    );
    let s: tonic::Status = e.into();
    assert_eq!(s.code(), tonic::Code::ResourceExhausted);

    let b = Budget { soft: 1024, hard: 4096 };
    let Error::ResourceExhausted(_, m) = b.admit(1024, 1, "x").unwrap_err() else {
        panic!()
    };
    assert!(m.contains("(RLIMIT_NOFILE soft=1024, hard=4096)"), "{m}");
}

#[test]
fn available_is_the_limit_less_the_larger_of_committed_and_open() {
    let b = Budget { soft: 1000, hard: 1000 };
    assert_eq!(b.usage(400, 100).available, 600);
    assert_eq!(
        b.usage(400, 700).available,
        300,
        "more open than committed: the open count rules"
    );
    assert_eq!(b.usage(1200, 0).available, 0);
    assert_eq!(b.usage(0, 0).per_dyno, 3);
}

#[test]
fn only_emfile_and_enfile_are_exhaustion() {
    for errno in [libc::EMFILE, libc::ENFILE] {
        let e = std::io::Error::from_raw_os_error(errno);
        let mapped = exhausted_error("slug: /x.tgz", &e).expect("exhausted");
        let Error::ResourceExhausted(Reason::NoFreeDescriptors, m) = mapped else {
            panic!()
        };
        assert!(m.starts_with("slug: /x.tgz: ") && m.contains("RLIMIT_NOFILE"), "{m}");
    }
    for errno in [libc::ENOENT, libc::EACCES, libc::EINVAL] {
        assert!(exhausted_error("x", &std::io::Error::from_raw_os_error(errno)).is_none());
    }
}
