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

    /// Writes the record of dyno `name` of `app` durably (its app's
    /// directory exists).
    pub(super) fn save_record(&self, app: &str, name: &str, rec: &DynoRecord) -> std::io::Result<()> {
        runs::write_json_atomic(&self.record(app, name), rec)
    }

    /// Every readable dyno record. An unreadable one is logged, moved aside
    /// (`<name>.json.unreadable`, for whoever investigates) and skipped: the
    /// dyno is rebuilt from its live run, if it has one.
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
                        Err(e) => {
                            let aside = f.with_extension("json.unreadable");
                            error!(path = %f.display(), error = %e, moved_to = %aside.display(),
                                "CANNOT READ A DYNO RECORD: moved aside; its live run, if any, is kept and its dyno rebuilt");
                            if let Err(e) = fs::rename(&f, &aside) {
                                error!(path = %f.display(), error = %e, "cannot move an unreadable dyno record aside");
                            }
                        }
                    }
                }
            }
        }
        Ok(records)
    }
}
