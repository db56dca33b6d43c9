//! Unit tests of the runtime metrics line and the R14 warning.

use super::*;

fn stats() -> cgroup::Stats {
    cgroup::Stats {
        memory_current: 22_020_096,
        memory_rss: 20_971_520,
        memory_cache: 1_048_576,
        memory_swap: 0,
        pgpgin: 7000,
        pgpgout: 1500,
        memory_peak: Some(30 << 20),
        cpu_usage_ns: 1_234_567_890,
        oom_kills: 0,
    }
}

#[test]
fn metrics_line_has_every_field_of_herokus() {
    let load = LoadAvg {
        avg: [0.5, 0.25, 0.125],
    };
    assert_eq!(
        metrics_line("web.1", "heroku.shop.abc.1", &stats(), &load, 512 << 20),
        "source=web.1 dyno=heroku.shop.abc.1 sample#load_avg_1m=0.50 sample#load_avg_5m=0.25 \
         sample#load_avg_15m=0.12 sample#memory_total=21.00MB sample#memory_rss=20.00MB \
         sample#memory_cache=1.00MB sample#memory_swap=0.00MB sample#memory_pgpgin=7000pages \
         sample#memory_pgpgout=1500pages sample#memory_quota=512.00MB sample#cpu_ms=1234"
    );
}

#[test]
fn r14_only_above_the_quota_counting_swap() {
    let quota = 512 << 20;
    assert!(r14_lines(&stats(), quota).is_empty());
    let at = cgroup::Stats {
        memory_rss: quota,
        ..stats()
    };
    assert!(r14_lines(&at, quota).is_empty(), "at the quota is not above it");
    let above = cgroup::Stats {
        memory_rss: 500 << 20,
        memory_swap: 100 << 20,
        ..stats()
    };
    assert_eq!(
        r14_lines(&above, quota),
        ["Process running mem=600M(117.2%)", "Error R14 (Memory quota exceeded)"]
    );
}
