//! Removing dynos: `RemoveDyno` of a `down` dyno, and finished one-offs past
//! `oneoff_retention`. The record goes first (a removal is answered only
//! once it is durable), then the dyno's run directories; a removal event
//! (`removed = true`) says so. A dyno that is not down is refused: stop it
//! first.

use std::fs;

use tracing::{info, warn};

use super::Key;
use super::actor::Actor;
use super::model::DynoView;
use crate::error::{Error, Reason, Result};
use crate::supervisor::State;
use crate::time::Time;

impl Actor {
    /// Removes dyno `key` if it is down (nothing running, nothing stopping):
    /// its record, its run directories; publishes the removal.
    pub(super) fn remove_dyno(&mut self, key: &Key, reason: &str) -> Result<DynoView> {
        let Some(entry) = self.dynos.get(key) else {
            return Err(Error::NotFound(format!("no dyno {} in app {}", key.1, key.0)));
        };
        let sup = &entry.rec.sup;
        if sup.state != State::Down || sup.running() || sup.stopping.is_some() {
            return Err(Error::FailedPrecondition(
                Reason::DynoNotDown,
                format!(
                    "{} of app {} is {}: only a down dyno can be removed (stop it first)",
                    key.1,
                    key.0,
                    sup.state.as_str()
                ),
            ));
        }
        let record = self.paths.record(&key.0, &key.1);
        if let Err(e) = fs::remove_file(&record)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(Error::Internal(format!(
                "cannot remove {}, nothing was removed: {e}",
                record.display()
            )));
        }
        let Some(entry) = self.dynos.remove(key) else {
            return Err(Error::NotFound(format!("no dyno {} in app {}", key.1, key.0)));
        };
        self.unsaved.remove(key);
        if let Some(p) = &entry.probe {
            p.abort();
        }
        let prefix = format!("{}.", entry.rec.sup.run_prefix);
        if let Ok(runs) = fs::read_dir(&self.paths.runs) {
            for run in runs.flatten() {
                let name = run.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) {
                    self.remove_run_dir(&name);
                }
            }
        }
        let view = entry.rec.view();
        info!(app = %key.0, dyno = %key.1, reason, "dyno removed");
        self.events.publish_removal(self.clock.now(), reason, view.clone());
        Ok(view)
    }

    /// Removes the one-offs that ended `oneoff_retention` or longer ago.
    pub(super) fn remove_expired_one_offs(&mut self, now: Time) {
        let Some(cutoff) = chrono::Duration::from_std(self.cfg.oneoff_retention)
            .ok()
            .and_then(|r| now.checked_sub_signed(r))
        else {
            return;
        };
        let expired: Vec<Key> = self
            .dynos
            .iter()
            .filter(|(_, e)| e.rec.spec.one_off && finished_before(&e.rec, cutoff))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            if let Err(e) = self.remove_dyno(&key, "retention") {
                warn!(app = %key.0, dyno = %key.1, error = %e, "cannot remove a finished one-off");
            }
        }
    }
}

/// Whether a dyno is down, with nothing running, since before `cutoff`.
pub(super) fn finished_before(rec: &super::model::DynoRecord, cutoff: Time) -> bool {
    let sup = &rec.sup;
    sup.state == State::Down && !sup.running() && sup.stopping.is_none() && sup.updated_at <= cutoff
}

#[cfg(test)]
#[path = "remove_tests.rs"]
mod tests;
