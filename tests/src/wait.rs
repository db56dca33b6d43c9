//! Waiting in tests: every wait for something to happen polls its condition
//! ([`wait_for`], [`wait_ok`], or [`poll`] under a caller's own deadline);
//! the one fixed wait is [`nothing_happens_for`], a bounded wait whose point
//! is that nothing happens during it.

use std::time::{Duration, Instant};

/// Generous: the CI machine has 2 cores and runs tests in parallel.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often [`wait_for`] and [`wait_ok`] look again.
const EVERY: Duration = Duration::from_millis(50);

/// Calls `check` every `every` until it returns `Ok`, or returns its last
/// `Err` once `limit` has passed (always after at least one call).
/// On a slower machine (`DYNO_E2E_SLOWDOWN`, the emulated VM) every limit
/// is that many times longer.
pub fn poll<T, E>(limit: Duration, every: Duration, mut check: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let limit = limit * crate::env::slowdown();
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(last) if start.elapsed() > limit => return Err(last),
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// Waits until `check` returns `Some`, polling; panics with `what` after
/// [`DEADLINE`].
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    poll(DEADLINE, EVERY, || check().ok_or(()))
        .unwrap_or_else(|()| panic!("timed out after {DEADLINE:?} waiting for {what}"))
}

/// Waits until `check` returns `Ok`, polling; panics with `what` and the last
/// `Err` it returned (what was still wrong) after [`DEADLINE`].
pub fn wait_ok<T>(what: &str, check: impl FnMut() -> Result<T, String>) -> T {
    poll(DEADLINE, EVERY, check)
        .unwrap_or_else(|last| panic!("timed out after {DEADLINE:?} waiting for {what}; last: {last}"))
}

/// A bounded wait that proves nothing happens: sleeps `window`, after which
/// the caller asserts that what must not happen (a restart, a kill, a
/// write) did not happen meanwhile. The only fixed sleep of the tests; never
/// use it to wait for something to happen (that is [`wait_for`]).
pub fn nothing_happens_for(window: Duration) {
    std::thread::sleep(window);
}
