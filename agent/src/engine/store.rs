//! The engine's state directory: where everything lives ([`Paths`]) and the
//! dyno records on disk (`dynos/<app>/<name>.json`, written atomically).

use std::fs;
use std::path::{Path, PathBuf};

use tracing::error;

use super::model::DynoRecord;
use crate::runs;

/// Paths under the state directory.
#[derive(Clone, Debug)]
pub struct Paths {
    pub dynos: PathBuf,
    pub runs: PathBuf,
    pub events: PathBuf,
    pub slugs: PathBuf,
}

impl Paths {
    pub fn new(state_dir: &Path) -> Paths {
        Paths {
            dynos: state_dir.join("dynos"),
            runs: state_dir.join("runs"),
            events: state_dir.join("events.jsonl"),
            slugs: state_dir.join("slugs"),
        }
    }

    pub(super) fn record(&self, app: &str, name: &str) -> PathBuf {
        self.dynos.join(app).join(format!("{name}.json"))
    }

    /// Writes the record of dyno `name` of `app` (its app's directory
    /// exists); a failure is logged, not returned.
    pub(super) fn save_record(&self, app: &str, name: &str, rec: &DynoRecord) {
        let path = self.record(app, name);
        if let Err(e) = runs::write_json_atomic(&path, rec) {
            error!(path = %path.display(), error = %e, "cannot persist dyno record");
        }
    }

    /// Every readable dyno record; unreadable ones are logged and skipped.
    pub(super) fn load_records(&self) -> std::io::Result<Vec<DynoRecord>> {
        let mut records = Vec::new();
        for app in fs::read_dir(&self.dynos)? {
            let app = app?.path();
            if !app.is_dir() {
                continue;
            }
            for f in fs::read_dir(&app)? {
                let f = f?.path();
                if f.extension().is_some_and(|e| e == "json") {
                    match runs::read_json::<DynoRecord>(&f) {
                        Ok(Some(rec)) => records.push(rec),
                        Ok(None) => {}
                        Err(e) => error!(path = %f.display(), error = %e, "skipping unreadable dyno record"),
                    }
                }
            }
        }
        Ok(records)
    }
}
