//! Unit tests of the per-dyno load averages.

use super::*;

#[test]
fn an_idle_dyno_has_no_load() {
    let mut l = LoadAvg::default();
    for _ in 0..100 {
        l.update(0, LOAD_TICK);
    }
    assert_eq!(l.avg, [0.0; 3]);
}

#[test]
fn a_busy_dyno_approaches_its_runnable_count_fastest_over_one_minute() {
    let mut l = LoadAvg::default();
    // One minute of one spinning task, sampled every 5 s.
    for _ in 0..12 {
        l.update(1, LOAD_TICK);
    }
    // 1 - e^-1 over the 1-minute period, less over the longer ones.
    assert!((l.avg[0] - (1.0 - (-1.0f64).exp())).abs() < 1e-9, "{l:?}");
    assert!(l.avg[0] > l.avg[1] && l.avg[1] > l.avg[2] && l.avg[2] > 0.0, "{l:?}");
    // An hour later it is about the count.
    for _ in 0..720 {
        l.update(2, LOAD_TICK);
    }
    assert!((l.avg[0] - 2.0).abs() < 1e-6 && (l.avg[2] - 2.0).abs() < 0.1, "{l:?}");
    // The sampling step does not change the curve: one 60 s step = twelve 5 s ones.
    let (mut a, mut b) = (LoadAvg::default(), LoadAvg::default());
    a.update(3, Duration::from_secs(60));
    for _ in 0..12 {
        b.update(3, LOAD_TICK);
    }
    assert!((a.avg[0] - b.avg[0]).abs() < 1e-9);
}

#[test]
fn runnable_and_uninterruptible_tasks_count() {
    assert!(counts_toward_load('R') && counts_toward_load('D'));
    for s in ['S', 'I', 'T', 't', 'Z', 'X'] {
        assert!(!counts_toward_load(s), "{s}");
    }
}
