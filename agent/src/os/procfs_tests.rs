//! Unit tests of `procfs`.

use super::*;

#[test]
fn start_ticks_of_self_is_stable() {
    let me = std::process::id();
    let a = start_ticks(me).expect("own stat");
    assert_eq!(Some(a), start_ticks(me));
    assert!(start_ticks(u32::MAX).is_none());
}
