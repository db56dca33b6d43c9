//! Time, once: the agent's one clock and its one backoff.
//!
//! [`Clock`] is the wall clock read at start plus the monotonic time since:
//! a wall-clock step while the agent runs moves no deadline and no billing
//! boundary, and tokio's paused clock in tests moves it too (outside a
//! runtime `tokio::time::Instant` is the monotonic clock). [`backoff`] is the
//! capped exponential wait with jitter that every retry loop uses.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// A point in wall-clock time, as stored in records and shown to users.
pub type Time = DateTime<Utc>;

/// Wall-clock time derived from the monotonic clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    wall: Time,
    mono: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            wall: Utc::now(),
            mono: Instant::now(),
        }
    }

    /// A clock that reads `wall` now (a wall clock stepped since, in tests).
    #[cfg(test)]
    pub(crate) fn reading(wall: Time) -> Clock {
        Clock {
            wall,
            mono: Instant::now(),
        }
    }

    pub fn now(&self) -> Time {
        self.wall + self.mono.elapsed()
    }

    /// Anchors the clock to the wall clock again when they have drifted
    /// apart by more than `slack` (the wall clock was stepped); true if it
    /// did. Times it gave before are not revised.
    pub fn follow_wall(&mut self, slack: Duration) -> bool {
        let wall = Utc::now();
        let drift = (wall - self.now()).abs().to_std().unwrap_or(Duration::MAX);
        if drift <= slack {
            return false;
        }
        *self = Clock {
            wall,
            mono: Instant::now(),
        };
        true
    }

    /// The monotonic instant of a wall-clock deadline (now, if it is past).
    pub fn instant(&self, at: Time) -> Instant {
        match (at - self.wall).to_std() {
            Ok(d) => self.mono + d,
            Err(_) => self.mono,
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// The wait before retry `attempt` (0 for the first retry): with
/// `d = min(base * 2^attempt, max)`, a point in `[d/2, d]` chosen by
/// `jitter` in `[0, 1]`.
pub fn backoff(base: Duration, attempt: u32, max: Duration, jitter: f64) -> Duration {
    let d = base.saturating_mul(1u32 << attempt.min(20)).min(max);
    d.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let base = Duration::from_millis(200);
        let max = Duration::from_secs(30);
        assert_eq!(backoff(base, 0, max, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(base, 0, max, 0.0), Duration::from_millis(100));
        assert_eq!(backoff(base, 3, max, 1.0), Duration::from_millis(1600));
        assert_eq!(backoff(base, 10, max, 1.0), max);
        assert_eq!(backoff(base, u32::MAX, max, 0.0), max / 2, "no overflow");
        for j in [0.0, 0.3, 0.99] {
            let d = backoff(base, 4, max, j);
            assert!(
                d >= Duration::from_millis(1600) && d <= Duration::from_millis(3200),
                "{d:?}"
            );
        }
    }

    #[test]
    fn clock_maps_deadlines_to_instants() {
        let clock = Clock::new();
        let later = clock.now() + chrono::Duration::seconds(5);
        let d = clock.instant(later) - Instant::now();
        assert!(d <= Duration::from_secs(5) && d > Duration::from_secs(4), "{d:?}");
        // A deadline in the past is due now, not in the future.
        assert!(clock.instant(clock.now() - chrono::Duration::seconds(60)) <= Instant::now());
    }
}
