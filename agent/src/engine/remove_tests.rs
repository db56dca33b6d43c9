//! Unit tests of what counts as a finished dyno for retention.

use super::*;
use crate::engine::testkit::{record, t0};

#[test]
fn only_a_dyno_down_since_before_the_cutoff_is_finished() {
    let hour = chrono::Duration::hours(1);
    let down = record("run.1", "standard-1x", State::Down, 20001);
    assert!(finished_before(&down, t0()));
    assert!(finished_before(&down, t0() + hour));
    assert!(!finished_before(&down, t0() - hour), "down for less than the retention");
    let up = record("run.2", "standard-1x", State::Up, 20002);
    assert!(!finished_before(&up, t0() + hour));
    let mut stopping = record("run.3", "standard-1x", State::Down, 20003);
    stopping.sup.run = Some(crate::supervisor::Run {
        id: "id-run.3.1".into(),
        spawned_at: t0(),
        pid: None,
        exec_at: None,
    });
    assert!(!finished_before(&stopping, t0() + hour), "a run still going");
}
