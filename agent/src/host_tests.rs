//! Unit tests of the host figures and allocatable memory.

#[test]
fn allocatable_is_total_minus_reserve_times_overcommit() {
    assert_eq!(super::allocatable(24 << 30, 1 << 30, 1.0), 23 << 30);
    assert_eq!(super::allocatable(24 << 30, 4 << 30, 1.5), 30 << 30);
    assert_eq!(
        super::allocatable(1 << 30, 2 << 30, 3.0),
        0,
        "a reserve over the total leaves nothing"
    );
}

#[test]
fn figures_are_plausible() {
    let s = super::stats();
    assert!(s.cpus >= 1);
    assert!(s.memory_total > 0 && s.memory_available <= s.memory_total);
    assert!(s.load.iter().all(|l| *l >= 0.0));
}

#[test]
fn swap_is_read_from_meminfo() {
    assert_eq!(
        super::swap_total("MemTotal: 100 kB\nSwapTotal:        2097148 kB\nSwapFree: 1 kB\n"),
        2_097_148
    );
    assert_eq!(super::swap_total("MemTotal: 100 kB\nSwapTotal:              0 kB\n"), 0);
    assert_eq!(super::swap_total(""), 0);
}
