//! Unit tests of the Prometheus exposition.

use super::*;

fn row(n: usize, state: &'static str) -> DynoRow {
    DynoRow {
        app: "shop".into(),
        dyno: format!("web.{n}"),
        ptype: "web".into(),
        size: "standard-1x".into(),
        state,
        restarts: 2,
        oom_kills: 1,
        cpu_seconds: 1.5,
        memory_bytes: 20 << 20,
        memory_quota_bytes: 512 << 20,
        memory_kill_bytes: 1024 << 20,
    }
}

#[test]
fn a_scrape_has_the_agents_figures_and_every_dynos_series() {
    started(0.004);
    restarted("cycle");
    let text = encode(Scrape {
        dynos: vec![row(1, "up"), row(2, "crashed")],
        ledger_pending_writes: 3,
    });
    for line in [
        "# TYPE dynoagent_dynos gauge",
        "dynoagent_dynos{state=\"up\"} 1",
        "dynoagent_dynos{state=\"crashed\"} 1",
        "dynoagent_dynos{state=\"down\"} 0",
        "dynoagent_ledger_pending_writes 3",
        "# TYPE dynoagent_starts_total counter",
        "# TYPE dynoagent_start_latency_seconds histogram",
        "dynoagent_restarts_total{reason=\"cycle\"} 1",
        "# TYPE dynoagent_oom_kills_total counter",
        "# TYPE dynoagent_slug_fetch_errors_total counter",
        "# TYPE dynoagent_slug_cache_bytes gauge",
        "dynoagent_dyno_state{app=\"shop\",dyno=\"web.2\",type=\"web\",size=\"standard-1x\",state=\"crashed\"} 1",
        "dynoagent_dyno_restarts_total{app=\"shop\",dyno=\"web.1\",type=\"web\",size=\"standard-1x\"} 2",
        "dynoagent_dyno_cpu_seconds_total{app=\"shop\",dyno=\"web.1\",type=\"web\",size=\"standard-1x\"} 1.5",
        "dynoagent_dyno_memory_quota_bytes{app=\"shop\",dyno=\"web.1\",type=\"web\",size=\"standard-1x\"} 536870912",
        "dynoagent_dyno_oom_kills_total{app=\"shop\",dyno=\"web.2\",type=\"web\",size=\"standard-1x\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("dynoagent_start_latency_seconds_bucket{le=\"0.004\"}")),
        "{text}"
    );
}
