//! Runtime metrics (DESIGN §10a) and memory warnings (§5), off the actor
//! (the cgroup reads block):
//!
//! - every `metrics_interval`, a Heroku log-runtime-metrics line in each
//!   running dyno's log (`source=web.1 dyno=heroku.<app>.<run-id>
//!   sample#load_avg_1m=… sample#memory_total=…MB …`), and, while the dyno's
//!   memory (RSS + swap) is above its quota, `Process running mem=…M(…%)`
//!   and `Error R14 (Memory quota exceeded)`: at most once an interval;
//! - every [`LOAD_TICK`] (or the metrics interval when shorter), each
//!   dyno's runnable tasks, counted from its cgroup's threads, folded into
//!   its own load averages;
//! - every [`OOM_POLL`] on cgroup v1 (which cannot OOM-kill a whole cgroup),
//!   each dyno's `oom_kill` count: a dyno with an OOM kill is ended whole,
//!   so that no half of it is left running (v2 has `memory.oom.group`).
//!
//! The last reading of each run is kept in [`Figures`] for the Prometheus
//! scrape, which thus never reads a cgroup itself.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::actor::Actor;
use super::load::{LoadAvg, counts_toward_load};
use crate::cgroup;
use crate::logs;
use crate::runs::RunDir;

pub use super::load::LOAD_TICK;

/// How often cgroup v1 dynos are checked for OOM kills.
pub const OOM_POLL: Duration = Duration::from_millis(500);

/// What the samplers last saw of each live run, by run id.
#[derive(Clone, Debug, Default)]
pub struct RunFigures {
    pub stats: Option<cgroup::Stats>,
    pub load: LoadAvg,
    load_at: Option<Instant>,
}

/// The samplers' readings, shared with the scrape.
pub(super) type Figures = Arc<Mutex<HashMap<String, RunFigures>>>;

/// A sampler pass in flight (the next tick skips rather than piles up).
#[derive(Clone, Default)]
pub(super) struct Busy(Arc<AtomicBool>);

impl Busy {
    fn try_start(&self) -> Option<BusyGuard> {
        (!self.0.swap(true, Ordering::AcqRel)).then(|| BusyGuard(self.0.clone()))
    }
}

struct BusyGuard(Arc<AtomicBool>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One running dyno, as a sampler needs it.
struct Target {
    dyno: String,
    run_id: String,
    log: PathBuf,
    /// `heroku.<app>.<run-id>`.
    source_id: String,
    quota: u64,
}

/// The samplers' shared state, held by the actor.
#[derive(Clone, Default)]
pub(super) struct Samplers {
    pub(super) figures: Figures,
    metrics: Busy,
    load: Busy,
    oom: Busy,
}

impl Actor {
    fn targets(&self) -> Vec<Target> {
        self.dynos
            .values()
            .filter_map(|e| {
                let run = e.rec.sup.run.as_ref().filter(|r| r.pid.is_some())?;
                let quota = self.cfg.sizes.get(&e.rec.spec.size).map_or(0, |s| s.memory_bytes);
                Some(Target {
                    dyno: e.rec.spec.name.clone(),
                    run_id: run.id.clone(),
                    log: RunDir::new(&self.paths.runs, &run.id).log(),
                    source_id: format!("heroku.{}.{}", e.rec.spec.app, run.id),
                    quota,
                })
            })
            .collect()
    }

    /// Writes the runtime-metrics line (and R14 while above the quota) into
    /// each running dyno's log.
    pub(super) fn sample_metrics(&self) {
        let Some(cgroups) = self.cgroups.clone() else { return };
        let Some(guard) = self.samplers.metrics.try_start() else {
            return;
        };
        let targets = self.targets();
        let figures = self.samplers.figures.clone();
        let max_bytes = self.cfg.log_max_bytes;
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            for t in targets {
                let Ok(Some(cg)) = cgroups.open(&t.run_id) else {
                    continue;
                };
                let stats = match cg.stats() {
                    Ok(s) => s,
                    Err(e) => {
                        debug!(run = %t.run_id, error = %e, "cannot read cgroup stats");
                        continue;
                    }
                };
                let load = {
                    let mut f = figures.lock().unwrap_or_else(|e| e.into_inner());
                    let entry = f.entry(t.run_id.clone()).or_default();
                    entry.stats = Some(stats);
                    entry.load
                };
                let mut lines = vec![metrics_line(&t.dyno, &t.source_id, &stats, &load, t.quota)];
                lines.extend(r14_lines(&stats, t.quota));
                for line in lines {
                    if let Err(e) = logs::append_runtime(&t.log, &t.dyno, &line, max_bytes) {
                        debug!(run = %t.run_id, error = %e, "cannot write the metrics line");
                        break;
                    }
                }
            }
        });
    }

    /// Counts each running dyno's runnable tasks into its load averages;
    /// forgets runs that ended.
    pub(super) fn sample_load(&self) {
        let Some(cgroups) = self.cgroups.clone() else { return };
        let Some(guard) = self.samplers.load.try_start() else {
            return;
        };
        let targets = self.targets();
        let figures = self.samplers.figures.clone();
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            let mut counted = HashMap::new();
            for t in &targets {
                let Ok(Some(cg)) = cgroups.open(&t.run_id) else {
                    continue;
                };
                let Ok(threads) = cg.threads() else { continue };
                let active = threads
                    .into_iter()
                    .filter(|tid| crate::os::task_state(*tid).is_some_and(counts_toward_load))
                    .count() as u32;
                counted.insert(t.run_id.clone(), active);
            }
            let now = Instant::now();
            let live: std::collections::HashSet<&str> = targets.iter().map(|t| t.run_id.as_str()).collect();
            let mut f = figures.lock().unwrap_or_else(|e| e.into_inner());
            f.retain(|run, _| live.contains(run.as_str()));
            for (run, active) in counted {
                let entry = f.entry(run).or_default();
                // The first count of a run is one tick's worth.
                let dt = entry.load_at.map_or(LOAD_TICK, |at| now.duration_since(at));
                entry.load.update(active, dt);
                entry.load_at = Some(now);
            }
        });
    }

    /// cgroup v1: ends every dyno the memory limit has OOM-killed a process
    /// of (its runs then settle as `oom`).
    pub(super) fn watch_oom(&self) {
        let Some(cgroups) = self.cgroups.clone() else { return };
        if cgroups.version() != cgroup::Version::V1 {
            return;
        }
        let Some(guard) = self.samplers.oom.try_start() else {
            return;
        };
        let runs: Vec<String> = self.targets().into_iter().map(|t| t.run_id).collect();
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            end_oom_killed(&*cgroups, &runs);
        });
    }
}

/// Kills the whole cgroup of each of `runs` with an OOM kill (blocking).
fn end_oom_killed(cgroups: &dyn cgroup::Cgroups, runs: &[String]) {
    for run in runs {
        let Ok(Some(cg)) = cgroups.open(run) else { continue };
        if cg.oom_kills().unwrap_or(0) == 0 || cg.procs().is_ok_and(|p| p.is_empty()) {
            continue;
        }
        warn!(run = %run, "the memory limit killed a process of the dyno: ending the whole dyno");
        if let Err(e) = cg.kill_all() {
            warn!(run = %run, error = %e, "cannot end an OOM-killed dyno");
        }
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// Heroku's runtime-metrics line: `source=web.1 dyno=heroku.<app>.<id>
/// sample#load_avg_1m=0.00 … sample#memory_quota=512.00MB sample#cpu_ms=1234`.
pub fn metrics_line(dyno: &str, source_id: &str, stats: &cgroup::Stats, load: &LoadAvg, quota: u64) -> String {
    let mb = |b: u64| format!("{:.2}MB", b as f64 / MIB);
    format!(
        "source={dyno} dyno={source_id} sample#load_avg_1m={:.2} sample#load_avg_5m={:.2} sample#load_avg_15m={:.2} \
         sample#memory_total={} sample#memory_rss={} sample#memory_cache={} sample#memory_swap={} \
         sample#memory_pgpgin={}pages sample#memory_pgpgout={}pages sample#memory_quota={} sample#cpu_ms={}",
        load.avg[0],
        load.avg[1],
        load.avg[2],
        mb(stats.memory_current + stats.memory_swap),
        mb(stats.memory_rss),
        mb(stats.memory_cache),
        mb(stats.memory_swap),
        stats.pgpgin,
        stats.pgpgout,
        mb(quota),
        stats.cpu_usage_ns / 1_000_000
    )
}

/// While the dyno's memory (RSS + swap, as Heroku counts it) is above its
/// quota: `Process running mem=600M(117.2%)` and `Error R14 (Memory quota
/// exceeded)`; nothing at or below it.
pub fn r14_lines(stats: &cgroup::Stats, quota: u64) -> Vec<String> {
    let used = stats.memory_rss + stats.memory_swap;
    if quota == 0 || used <= quota {
        return Vec::new();
    }
    vec![
        format!(
            "Process running mem={}M({:.1}%)",
            (used as f64 / MIB).round() as u64,
            used as f64 * 100.0 / quota as f64
        ),
        "Error R14 (Memory quota exceeded)".to_string(),
    ]
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
