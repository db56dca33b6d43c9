//! Daily cycling that keeps an app up: when a run's cycle time is chosen,
//! it is placed in its window (interval + 0..jitter after the exec) as far as
//! it can be from the cycle times of the dyno's peers (the other dynos of
//! its app and process type), never within one restart of one of them when
//! the window has room; and a cycle that comes due while a peer is still
//! out of `up` because of its own cycle waits for it ([`CYCLE_WAIT`] at a
//! time). So the cycling of several dynos of one type never takes two of
//! them out of `up` at once.

use std::time::Duration;

use super::Time;
use super::types::Policy;

/// How long a due cycle waits, at a time, for a cycling peer.
pub const CYCLE_WAIT: Duration = Duration::from_secs(1);

/// What a dyno's step knows of its peers (same app and process type).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Peers {
    /// The cycle times the peers have chosen.
    pub cycles: Vec<Time>,
    /// A peer is out of `up` because of its cycle (stopping for it, or
    /// starting again after it).
    pub cycling: bool,
}

/// No peers (one-offs, tests of a lone dyno).
pub static NO_PEERS: Peers = Peers {
    cycles: Vec::new(),
    cycling: false,
};

impl Policy {
    /// How long one restart may keep a dyno out of `up`: the stop's grace
    /// and the boot timeout.
    pub fn restart_span(&self) -> Duration {
        self.stop_grace + self.boot_timeout
    }
}

/// A cycle time in `[earliest, earliest + jitter]` given a uniform `u` in
/// [0, 1): uniformly among the times at least `gap` from every one of
/// `peers`; when there are none, the time farthest from them.
pub fn pick_cycle(earliest: Time, jitter: Duration, peers: &[Time], gap: Duration, u: f64) -> Time {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let (width, gap) = (ms(jitter), ms(gap));
    // Peers as offsets from `earliest`, in milliseconds.
    let mut offsets: Vec<i64> = peers.iter().map(|p| (*p - earliest).num_milliseconds()).collect();
    offsets.sort_unstable();
    // The free stretches of [0, width]: outside (p - gap, p + gap) of every peer.
    let mut free = Vec::new();
    let mut from = 0i64;
    for p in &offsets {
        let (lo, hi) = (p.saturating_sub(gap), p.saturating_add(gap));
        if lo > from {
            free.push((from, lo.min(width)));
        }
        from = from.max(hi);
        if from > width {
            break;
        }
    }
    if from <= width {
        free.push((from, width));
    }
    free.retain(|(a, b)| b >= a);
    let u = u.clamp(0.0, 1.0);
    let total: i64 = free.iter().map(|(a, b)| b - a).sum();
    let at = if !free.is_empty() && total > 0 {
        // Uniform over the free time.
        let mut left = ((total as f64) * u) as i64;
        let mut chosen = free[0].0;
        for (a, b) in &free {
            if left <= b - a {
                chosen = a + left;
                break;
            }
            left -= b - a;
        }
        chosen
    } else if let Some((a, _)) = free.first() {
        *a
    } else {
        // No room: the time of the window farthest from every peer.
        let distance = |t: i64| offsets.iter().map(|p| (t - p).abs()).min().unwrap_or(i64::MAX);
        let mut candidates = vec![0, width];
        candidates.extend(
            offsets
                .windows(2)
                .map(|w| (w[0] + w[1]) / 2)
                .filter(|t| (0..=width).contains(t)),
        );
        candidates.into_iter().max_by_key(|t| distance(*t)).unwrap_or(0)
    };
    earliest + chrono::Duration::milliseconds(at.clamp(0, width))
}
