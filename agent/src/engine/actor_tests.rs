//! Unit tests of the actor's pure helpers.

use super::*;
use crate::engine::testkit::key;

#[test]
fn the_next_one_off_follows_the_highest_run_of_the_app() {
    assert_eq!(next_one_off(&[], "shop"), "run.1");
    let keys = [
        key("web.1"),
        key("run.2"),
        key("run.7"),
        key("run.x"),
        ("blog".to_string(), "run.9".to_string()),
    ];
    assert_eq!(next_one_off(&keys, "shop"), "run.8");
    assert_eq!(next_one_off(&keys, "blog"), "run.10");
    assert_eq!(next_one_off(&keys, "other"), "run.1");
}
