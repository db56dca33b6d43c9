//! The per-dyno bound on log lines, as Heroku's `Error L10 (output buffer
//! overflow)`: a token bucket of `burst` lines refilled at `per_sec` lines a
//! second. A line without a token is dropped and only counted; once a second
//! at most, the count becomes one runtime line,
//! `Error L10 (output buffer overflow): N messages dropped since <time>.`
//!
//! Dropping must cost next to nothing, since a flooding dyno makes the shim
//! (outside its cgroup) do it for every line: [`count_lines`] is the whole
//! per-line work of a dropped line.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// How often, at most, dropped lines are reported.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Newlines in `data`: the lines a dropped chunk ends.
pub fn count_lines(data: &[u8]) -> u64 {
    data.iter().filter(|b| **b == b'\n').count() as u64
}

/// A token bucket of lines, with the count of the lines it refused.
#[derive(Debug)]
pub struct Limiter {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
    dropped: u64,
    /// When the first unreported line was dropped (monotonic, and as shown).
    since: Option<(Instant, DateTime<Utc>)>,
}

impl Limiter {
    /// A full bucket: `burst` lines at once, then `per_sec` a second.
    pub fn new(per_sec: u32, burst: u32, now: Instant) -> Limiter {
        Limiter {
            per_sec: f64::from(per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            at: now,
            dropped: 0,
            since: None,
        }
    }

    /// Adds the tokens earned since the last refill.
    pub fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.at = now;
    }

    /// Whether a line would be admitted now.
    pub fn has_token(&self) -> bool {
        self.tokens >= 1.0
    }

    /// Takes a line's token; `false` (and the line counted as dropped) when
    /// there is none.
    pub fn admit(&mut self, now: Instant, wall: DateTime<Utc>) -> bool {
        if self.has_token() {
            self.tokens -= 1.0;
            true
        } else {
            self.drop_lines(1, now, wall);
            false
        }
    }

    /// Counts `n` dropped lines.
    pub fn drop_lines(&mut self, n: u64, now: Instant, wall: DateTime<Utc>) {
        if n == 0 {
            return;
        }
        self.dropped += n;
        self.since.get_or_insert((now, wall));
    }

    /// How long until the pending report is due (zero if it is), or `None`
    /// when no dropped line waits to be reported.
    pub fn report_due(&self, now: Instant) -> Option<Duration> {
        let (first, _) = self.since?;
        Some((first + REPORT_EVERY).saturating_duration_since(now))
    }

    /// The L10 text for the lines dropped since the last report, once
    /// [`REPORT_EVERY`] has passed since the first of them (or at once with
    /// `now_anyway`, at the end of the run).
    pub fn report(&mut self, now: Instant, now_anyway: bool) -> Option<String> {
        let due = self.report_due(now)?;
        if !due.is_zero() && !now_anyway {
            return None;
        }
        let (_, wall) = self.since.take()?;
        let n = std::mem::take(&mut self.dropped);
        Some(format!(
            "Error L10 (output buffer overflow): {n} messages dropped since {}.",
            wall.format("%Y-%m-%dT%H:%M:%S+00:00")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn wall() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
    }

    #[test]
    fn a_full_bucket_admits_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut l = Limiter::new(10, 3, t0);
        assert!((0..3).all(|_| l.admit(t0, wall())));
        assert!(!l.admit(t0, wall()));
        l.refill(t0 + Duration::from_millis(250));
        assert!(l.admit(t0, wall()) && l.admit(t0, wall()));
        assert!(!l.admit(t0, wall()));
        // Never more than the burst, however long it was idle.
        l.refill(t0 + Duration::from_secs(3600));
        assert_eq!((0..10).filter(|_| l.admit(t0, wall())).count(), 3);
    }

    #[test]
    fn drops_are_reported_once_a_second_in_herokus_words() {
        let t0 = Instant::now();
        let mut l = Limiter::new(1, 1, t0);
        assert_eq!(l.report_due(t0), None);
        l.drop_lines(5, t0, wall());
        l.drop_lines(0, t0, wall());
        assert!(l.admit(t0, wall()));
        assert!(!l.admit(t0, wall()));
        assert_eq!(l.report_due(t0), Some(REPORT_EVERY));
        assert_eq!(l.report(t0 + Duration::from_millis(500), false), None);
        let text = l.report(t0 + REPORT_EVERY, false).unwrap();
        assert_eq!(
            text,
            "Error L10 (output buffer overflow): 6 messages dropped since 2026-11-22T10:00:00+00:00."
        );
        assert_eq!(l.report(t0 + REPORT_EVERY * 5, true), None, "nothing left to report");
        l.drop_lines(2, t0 + REPORT_EVERY * 5, wall());
        assert!(l.report(t0 + REPORT_EVERY * 5, true).unwrap().contains(": 2 messages"));
    }

    #[test]
    fn counting_lines_counts_newlines() {
        assert_eq!(count_lines(b""), 0);
        assert_eq!(count_lines(b"x\nx\nunfinished"), 2);
    }
}
