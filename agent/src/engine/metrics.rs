//! Runtime metrics: every `metrics_interval`, a Heroku-style
//! `source=web.1 sample#memory_total=…` line in each running dyno's log,
//! read from its cgroup.

use std::path::PathBuf;

use tracing::debug;

use super::actor::Actor;
use crate::cgroup;
use crate::logs;
use crate::runs::RunDir;

impl Actor {
    /// Writes a Heroku-style runtime-metrics line into each running dyno's
    /// log, from its cgroup (off the actor: the reads block).
    pub(super) fn sample_metrics(&self) {
        let Some(cgroups) = self.cgroups.clone() else { return };
        let targets: Vec<(String, String, PathBuf, u64)> = self
            .dynos
            .values()
            .filter_map(|e| {
                let run = e.rec.sup.run.as_ref().filter(|r| r.pid.is_some())?;
                let quota = self.cfg.sizes.get(&e.rec.spec.size).map_or(0, |s| s.memory_bytes);
                let log = RunDir::new(&self.paths.runs, &run.id).log();
                Some((e.rec.spec.name.clone(), run.id.clone(), log, quota))
            })
            .collect();
        if targets.is_empty() {
            return;
        }
        let max_bytes = self.cfg.log_max_bytes;
        tokio::task::spawn_blocking(move || {
            for (dyno, run_id, log, quota) in targets {
                let Ok(Some(cg)) = cgroups.open(&run_id) else { continue };
                match cg.stats() {
                    Ok(stats) => {
                        if let Err(e) =
                            logs::append_runtime(&log, &dyno, &metrics_line(&dyno, &stats, quota), max_bytes)
                        {
                            debug!(run = %run_id, error = %e, "cannot write the metrics line");
                        }
                    }
                    Err(e) => debug!(run = %run_id, error = %e, "cannot read cgroup stats"),
                }
            }
        });
    }
}

/// `source=web.1 sample#memory_total=21.00MB … sample#cpu_ms=1234`, as Heroku's
/// runtime metrics.
pub fn metrics_line(dyno: &str, stats: &cgroup::Stats, quota: u64) -> String {
    let mb = |b: u64| format!("{:.2}MB", b as f64 / (1024.0 * 1024.0));
    format!(
        "source={dyno} sample#memory_total={} sample#memory_rss={} sample#memory_cache={} sample#memory_quota={} sample#cpu_ms={}",
        mb(stats.memory_current),
        mb(stats.memory_rss),
        mb(stats.memory_cache),
        mb(quota),
        stats.cpu_usage_ns / 1_000_000
    )
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
