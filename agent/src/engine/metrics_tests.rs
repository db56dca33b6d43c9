//! Unit tests of the runtime metrics line.

use super::*;

#[test]
fn metrics_line_is_heroku_shaped() {
    let stats = cgroup::Stats {
        memory_current: 22_020_096,
        memory_rss: 20_971_520,
        memory_cache: 1_048_576,
        memory_peak: Some(30 << 20),
        cpu_usage_ns: 1_234_567_890,
        oom_kills: 0,
    };
    assert_eq!(
        metrics_line("web.1", &stats, 512 << 20),
        "source=web.1 sample#memory_total=21.00MB sample#memory_rss=20.00MB sample#memory_cache=1.00MB \
         sample#memory_quota=512.00MB sample#cpu_ms=1234"
    );
}
