//! Layering: the TOML file, then `DYNOAGENT_*` environment variables, then
//! the command line's flags; each key is checked on its own so that every
//! bad key is reported, then the whole is validated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Config, ConfigError};

const ENV_PREFIX: &str = "DYNOAGENT_";

/// Values given on the command line; `None` leaves the lower layers alone.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub state_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub listen: Option<String>,
    pub scheduler: Option<String>,
    pub host_id: Option<String>,
    /// `NAME=DIR` pairs; added to (and replacing same-named) configured stacks.
    pub stacks: Vec<(String, PathBuf)>,
}

impl Config {
    /// Loads the file (if any), applies `env` (the process environment, as
    /// pairs) and the flag overrides, then validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut table = match file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => match text.parse::<toml::Table>() {
                    Ok(t) => t,
                    Err(e) => return Err(ConfigError(vec![format!("{}: {e}", path.display())])),
                },
                Err(e) => return Err(ConfigError(vec![format!("{}: {e}", path.display())])),
            },
            None => toml::Table::new(),
        };
        let origin = |key: &str, from_env: &BTreeMap<String, String>| match from_env.get(key) {
            Some(var) => format!("{var} (environment)"),
            None => match file {
                Some(p) => format!("{} key `{key}`", p.display()),
                None => format!("key `{key}`"),
            },
        };

        let mut from_env = BTreeMap::new();
        for (var, value) in env {
            let Some(key) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            // The socket variable is shared with dynoctl; the log filter is RUST_LOG-like.
            if key == "log" {
                continue;
            }
            table.insert(key.clone(), env_value(&value));
            from_env.insert(key, var);
        }

        // Each key on its own, so that every bad key is reported, not just the first.
        let mut good = toml::Table::new();
        for (key, value) in &table {
            let mut one = toml::Table::new();
            one.insert(key.clone(), value.clone());
            match Config::deserialize(one) {
                Ok(_) => {
                    good.insert(key.clone(), value.clone());
                }
                Err(e) => problems.push(format!("{}: {}", origin(key, &from_env), e.message().trim())),
            }
        }
        let mut config = match Config::deserialize(good) {
            Ok(c) => c,
            Err(e) => {
                problems.push(e.message().trim().to_string());
                Config::default()
            }
        };

        if let Some(v) = &flags.state_dir {
            config.state_dir = v.clone();
        }
        if let Some(v) = &flags.socket {
            config.socket = v.clone();
        }
        if let Some(v) = &flags.listen {
            config.listen = Some(v.clone());
        }
        if let Some(v) = &flags.scheduler {
            config.scheduler = Some(v.clone());
        }
        if let Some(v) = &flags.host_id {
            config.host_id = v.clone();
        }
        for (name, dir) in &flags.stacks {
            config.stacks.insert(name.clone(), dir.clone());
        }

        problems.extend(config.problems());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(problems))
        }
    }
}

/// An environment value as TOML: a TOML literal when it parses as one
/// (`30`, `true`, `["1s","2s"]`), else a plain string (`30s`, `/var/lib/x`).
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}
