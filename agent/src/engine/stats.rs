//! Per-dyno figures on demand (`ListDynoStats`): the actor names the running
//! runs, their cgroups are read off the actor.

use super::Key;
use super::actor::Actor;
use crate::cgroup::{self, CgroupsRef};
use crate::time::Time;

/// A running dyno whose cgroup is to be read.
pub struct StatsTarget {
    pub app: String,
    pub dyno: String,
    pub run_id: String,
    pub memory_quota: u64,
}

/// One running dyno's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct DynoStats {
    pub app: String,
    pub dyno: String,
    pub run_id: String,
    pub at: Time,
    pub memory_quota: u64,
    pub stats: cgroup::Stats,
}

impl Actor {
    /// The running dynos of `app` (all when `None`) named `dyno` or of
    /// process type `dyno` (all when `None`).
    pub(super) fn stats_targets(&self, app: &Option<String>, dyno: &Option<String>) -> Vec<StatsTarget> {
        self.dynos
            .iter()
            .filter(|(k, _): &(&Key, _)| {
                app.as_ref().is_none_or(|a| k.0 == *a)
                    && dyno
                        .as_ref()
                        .is_none_or(|d| k.1 == *d || k.1.rsplit_once('.').is_some_and(|(t, _)| t == d))
            })
            .filter_map(|(k, e)| {
                let run = e.rec.sup.run.as_ref().filter(|r| r.pid.is_some())?;
                Some(StatsTarget {
                    app: k.0.clone(),
                    dyno: k.1.clone(),
                    run_id: run.id.clone(),
                    memory_quota: e.rec.spec.memory_quota_bytes,
                })
            })
            .collect()
    }
}

/// Reads the targets' cgroups (blocking): the figures of those that could be
/// read, and the names of those that could not (with why).
pub fn read(cgroups: &CgroupsRef, targets: Vec<StatsTarget>, now: Time) -> (Vec<DynoStats>, Vec<String>) {
    let mut read = Vec::new();
    let mut unreadable = Vec::new();
    for t in targets {
        let stats = match cgroups.open(&t.run_id) {
            Ok(Some(cg)) => cg.stats().map_err(|e| e.to_string()),
            Ok(None) => Err(format!("the cgroup of run {} is gone", t.run_id)),
            Err(e) => Err(e.to_string()),
        };
        match stats {
            Ok(stats) => read.push(DynoStats {
                app: t.app,
                dyno: t.dyno,
                run_id: t.run_id,
                at: now,
                memory_quota: t.memory_quota,
                stats,
            }),
            Err(e) => unreadable.push(format!("{}/{}: {e}", t.app, t.dyno)),
        }
    }
    (read, unreadable)
}
