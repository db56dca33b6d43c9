//! Cordoning: a host that takes no new starts while its running dynos go on,
//! so that a scheduler or an operator can drain it. The state survives agent
//! restarts in `<state-dir>/cordon.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::Key;
use super::actor::Actor;
use crate::error::{Error, Reason, Result};
use crate::time::Time;

/// Longest reason kept.
pub const REASON_MAX: usize = 256;

/// Why and since when the host is cordoned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cordon {
    pub reason: String,
    pub since: Time,
}

/// Where the cordon is kept.
pub(super) fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("cordon.json")
}

/// The cordon left by an earlier agent, if any. One that cannot be read
/// keeps the host cordoned (refusing starts is the safe side), and says so.
pub(super) fn load(state_dir: &Path, now: Time) -> Option<Cordon> {
    let p = path(state_dir);
    match crate::runs::read_json::<Cordon>(&p) {
        Ok(c) => c,
        Err(e) => {
            warn!(path = %p.display(), error = %e, "cannot read the cordon: the host stays cordoned until `dynoctl uncordon`");
            Some(Cordon {
                reason: format!("the cordon file could not be read: {e}"),
                since: now,
            })
        }
    }
}

impl Actor {
    /// Cordons the host (`Some(reason)`) or uncordons it (`None`), durably:
    /// nothing changes unless the state directory took it.
    pub(super) fn set_cordon(&mut self, reason: Option<String>) -> Result<Option<Cordon>> {
        let p = path(&self.cfg.state_dir);
        let disk = |e: std::io::Error| {
            let message = format!("cannot write {}, nothing was changed: {e}", p.display());
            if e.kind() == std::io::ErrorKind::StorageFull {
                Error::ResourceExhausted(Reason::StateDiskFull, message)
            } else {
                Error::Internal(message)
            }
        };
        match reason {
            Some(reason) => {
                // Cordoning again keeps the first time, takes the new reason.
                let since = self.cordon.as_ref().map_or_else(|| self.clock.now(), |c| c.since);
                let c = Cordon { reason, since };
                crate::runs::write_json_atomic(&p, &c).map_err(disk)?;
                info!(reason = %c.reason, "host cordoned: new starts are refused, running dynos go on");
                self.cordon = Some(c);
            }
            None => {
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(disk(e)),
                }
                if self.cordon.take().is_some() {
                    info!("host uncordoned: starts are taken again");
                }
            }
        }
        Ok(self.cordon.clone())
    }

    /// `FAILED_PRECONDITION` (`HOST_CORDONED`) when the host is cordoned and
    /// `key` would start.
    pub(super) fn refuse_if_cordoned(&self, key: &Key) -> Result<()> {
        match &self.cordon {
            None => Ok(()),
            Some(c) => Err(Error::FailedPrecondition(
                Reason::HostCordoned,
                format!(
                    "this host is cordoned ({}): {} of app {} was not started; `dynoctl uncordon` takes starts again",
                    crate::names::quote(&c.reason),
                    key.1,
                    key.0
                ),
            )),
        }
    }
}
