//! A dyno's own load averages: the kernel's exponentially damped averages
//! over 1, 5 and 15 minutes, fed with the number of the dyno's tasks that
//! are runnable or in uninterruptible sleep (what the kernel counts for the
//! host's load), sampled from its cgroup rather than read from the host.

use std::time::Duration;

/// How often the kernel samples the host's load (`LOAD_FREQ`, 5 s); dynos'
/// loads are sampled as often, or at each metrics interval when shorter.
pub const LOAD_TICK: Duration = Duration::from_secs(5);

/// The 1, 5 and 15 minute averages.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadAvg {
    pub avg: [f64; 3],
}

impl LoadAvg {
    /// Folds in `active` tasks observed `dt` after the previous sample:
    /// `avg = avg·e + active·(1 − e)` with `e = exp(−dt / period)`.
    pub fn update(&mut self, active: u32, dt: Duration) {
        const PERIODS: [f64; 3] = [60.0, 300.0, 900.0];
        let dt = dt.as_secs_f64();
        for (avg, period) in self.avg.iter_mut().zip(PERIODS) {
            let e = (-dt / period).exp();
            *avg = *avg * e + f64::from(active) * (1.0 - e);
        }
    }
}

/// Whether a task in this state (field 3 of `/proc/TID/stat`) counts toward
/// the load: running or runnable (`R`), uninterruptible sleep (`D`).
pub fn counts_toward_load(state: char) -> bool {
    matches!(state, 'R' | 'D')
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
