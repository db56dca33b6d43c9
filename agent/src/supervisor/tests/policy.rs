//! Supervisor tests: the policy numbers: the contract defaults and the cool-off per crash.

use super::*;

// ---------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------

#[test]
fn default_policy_is_the_contract() {
    let p = Policy::default();
    assert_eq!(p.boot_timeout, secs(60));
    assert_eq!(p.stop_grace, secs(30));
    assert_eq!(p.cooloffs, vec![mins(20), mins(40), mins(60), mins(180), mins(320)]);
    assert_eq!(p.stable_window, mins(10));
    assert_eq!(p.cycle, Some((mins(24 * 60), mins(216))));
}

#[test]
fn cooloff_per_crash_index() {
    let p = Policy::default();
    // (consecutive crashes, half, full) in minutes.
    let table: [(u32, u64, u64); 10] = [
        (0, 0, 0),
        (1, 0, 0),
        (2, 10, 20),
        (3, 20, 40),
        (4, 30, 60),
        (5, 90, 180),
        (6, 160, 320),
        (7, 160, 320),
        (8, 160, 320),
        (1000, 160, 320),
    ];
    for (crashes, half, full) in table {
        let (half, full) = (mins(half), mins(full));
        assert_eq!(p.cooloff(crashes, 0.0), half, "crash {crashes}, u=0");
        assert_eq!(p.cooloff(crashes, 0.5), full.mul_f64(0.75), "crash {crashes}, u=0.5");
        let high = p.cooloff(crashes, 0.999);
        assert!(high <= full, "crash {crashes}: {high:?} > {full:?}");
        assert!(high >= full.mul_f64(0.999), "crash {crashes}: {high:?} too short");
        assert_eq!(p.cooloff(crashes, 1.0), full, "crash {crashes}, u=1");
    }
}

#[test]
fn cooloff_clamps_jitter() {
    let p = Policy::default();
    assert_eq!(p.cooloff(2, -3.0), mins(10));
    assert_eq!(p.cooloff(2, 7.0), mins(20));
    assert_eq!(p.cooloff(6, f64::INFINITY), mins(320));
}

#[test]
fn cooloff_with_custom_or_empty_schedule() {
    let one = Policy {
        cooloffs: vec![secs(100)],
        ..Policy::default()
    };
    assert_eq!(one.cooloff(1, 0.9), Duration::ZERO);
    assert_eq!(one.cooloff(2, 0.0), secs(50));
    assert_eq!(one.cooloff(50, 1.0), secs(100));

    let none = Policy {
        cooloffs: vec![],
        ..Policy::default()
    };
    for crashes in [0, 1, 2, 3, 100] {
        assert_eq!(none.cooloff(crashes, 0.7), Duration::ZERO);
    }
}

#[test]
fn run_end_status_is_code_or_128_plus_signal() {
    assert_eq!(exited_code(0, t0()).status(), Some(0));
    assert_eq!(exited_code(3, t0()).status(), Some(3));
    assert_eq!(exited_signal(9, t0()).status(), Some(137));
    assert_eq!(exited_signal(15, t0()).status(), Some(143));
    assert_eq!(RunEnd::lost(t0()).status(), None);
}
