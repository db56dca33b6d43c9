//! Agent configuration: a TOML file, overridden by `DYNOAGENT_*` environment
//! variables, overridden by command-line flags.
//!
//! Every key has a default (see [`Config::default`] and the README's table), so
//! an empty file is a valid configuration. Unknown keys are errors, and
//! [`Config::load`] reports every problem it finds at once, not just the first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::supervisor::Policy;

/// Limits of one dyno size (DESIGN §5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeLimits {
    /// Hard memory limit in bytes; no swap beyond it.
    pub memory_bytes: u64,
    pub cpu_shares: u64,
    /// CFS quota in cores; `None` means no quota.
    #[serde(default)]
    pub cpu_quota: Option<f64>,
    pub pids_max: u64,
    pub nofile: u64,
}

/// The cgroup limits of a size (nofile is applied by the jail, not a cgroup).
impl From<&SizeLimits> for crate::cgroup::Limits {
    fn from(s: &SizeLimits) -> crate::cgroup::Limits {
        crate::cgroup::Limits {
            memory_bytes: s.memory_bytes,
            cpu_shares: s.cpu_shares,
            cpu_quota: s.cpu_quota,
            pids_max: s.pids_max,
        }
    }
}

/// The default size table.
pub fn default_sizes() -> BTreeMap<String, SizeLimits> {
    const MIB: u64 = 1024 * 1024;
    let size = |mem, shares, quota, pids| SizeLimits {
        memory_bytes: mem,
        cpu_shares: shares,
        cpu_quota: quota,
        pids_max: pids,
        nofile: 10_000,
    };
    BTreeMap::from([
        ("standard-1x".into(), size(512 * MIB, 1024, Some(1.0), 256)),
        ("standard-2x".into(), size(1024 * MIB, 2048, Some(2.0), 512)),
        ("performance-m".into(), size(2560 * MIB, 8192, None, 16384)),
        ("performance-l".into(), size(14 * 1024 * MIB, 16384, None, 32768)),
    ])
}

/// A range of ports or ids, inclusive, written `"20000-29999"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub first: u32,
    pub last: u32,
}

impl Serialize for Range {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}-{}", self.first, self.last))
    }
}

impl<'de> Deserialize<'de> for Range {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let parse = |p: &str| p.trim().parse::<u32>().ok();
        match s.split_once('-').map(|(a, b)| (parse(a), parse(b))) {
            Some((Some(first), Some(last))) if first <= last => Ok(Range { first, last }),
            _ => Err(serde::de::Error::custom(format!(
                "expected a range `FIRST-LAST` with FIRST <= LAST, got {s:?}"
            ))),
        }
    }
}

/// Log output format of the agent itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The whole configuration. Field names are the TOML keys and, upper-cased
/// with a `DYNOAGENT_` prefix, the environment variables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Identifies this host in usage ids and reports; defaults to the hostname.
    pub host_id: String,
    /// Dyno records, run directories, logs, slug cache, ledger.
    pub state_dir: PathBuf,
    /// The gRPC Unix socket (mode 0660).
    pub socket: PathBuf,
    /// Optional TCP address (`host:port`) for the gRPC API, served with TLS.
    pub listen: Option<String>,
    /// Optional scheduler URL (`http://` or `https://`) the agent reports to.
    pub scheduler: Option<String>,
    /// PEM certificate chain and key of the TLS listener (required with `listen`).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: when set, TCP clients must present a certificate it signed.
    pub tls_client_ca: Option<PathBuf>,
    /// PEM CA bundle to verify an `https://` scheduler with (default: the
    /// system's web PKI roots are not used; without it `https` is refused).
    pub scheduler_ca: Option<PathBuf>,
    /// How often the push stream carries a heartbeat with host usage.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Longest wait between two attempts to reach the scheduler.
    #[serde(with = "humantime_serde")]
    pub report_backoff_max: Duration,
    /// Host memory kept out of what dynos may be given (bytes).
    pub memory_reserve: u64,
    /// Allocatable memory is `(total - memory_reserve) * memory_overcommit`.
    pub memory_overcommit: f64,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Stacks by name: a directory holding the stack image.
    pub stacks: BTreeMap<String, PathBuf>,
    /// Ports handed to web dynos as $PORT.
    pub port_range: Range,
    /// Unprivileged uids (and gids) handed to dynos.
    pub uid_range: Range,
    /// R10: a web dyno must bind $PORT within this.
    #[serde(with = "humantime_serde")]
    pub boot_timeout: Duration,
    /// Between SIGTERM and SIGKILL when stopping (R12).
    #[serde(with = "humantime_serde")]
    pub stop_grace: Duration,
    /// Cool-offs before the 2nd, 3rd, … crash restart; the last one repeats.
    #[serde(with = "duration_list")]
    pub restart_cooloffs: Vec<Duration>,
    /// A run up this long resets the crash count.
    #[serde(with = "humantime_serde")]
    pub stable_window: Duration,
    /// Daily cycling on or off.
    pub cycling: bool,
    #[serde(with = "humantime_serde")]
    pub cycle_interval: Duration,
    /// A random part of this is added to `cycle_interval` per run.
    #[serde(with = "humantime_serde")]
    pub cycle_jitter: Duration,
    /// Default and maximum lifetime of one-off dynos.
    #[serde(with = "humantime_serde")]
    pub oneoff_ttl: Duration,
    /// A run's log is rotated past this size; one rotated file is kept.
    pub log_max_bytes: u64,
    /// Usage slice length (billing records never span two slices).
    #[serde(with = "humantime_serde")]
    pub usage_slice: Duration,
    /// How long usage records are kept after billing acknowledged them
    /// (records not yet acknowledged are never deleted).
    #[serde(with = "humantime_serde")]
    pub usage_retention: Duration,
    /// Bytes a dyno may write (its `/app` changes and `/tmp` together).
    pub disk_limit: u64,
    /// Where the cgroup filesystem is mounted.
    pub cgroup_root: PathBuf,
    /// The dynos' parent cgroup, under which each run gets its own.
    pub cgroup_parent: String,
    /// How often a runtime-metrics line goes into each running dyno's log.
    #[serde(with = "humantime_serde")]
    pub metrics_interval: Duration,
    /// `oom_score_adj` of dynos: the kernel's OOM killer picks them first.
    pub dyno_oom_score_adj: i32,
    /// Slug limits (DESIGN §7): compressed bytes (a larger Content-Length is
    /// refused before the body is read), unpacked bytes, entries, path depth
    /// and path length.
    pub slug_max_compressed_bytes: u64,
    pub slug_max_unpacked_bytes: u64,
    pub slug_max_entries: u64,
    pub slug_max_depth: usize,
    pub slug_max_path_bytes: usize,
    /// Slug downloads: connection setup (TCP and TLS).
    #[serde(with = "humantime_serde")]
    pub slug_connect_timeout: Duration,
    /// Slug downloads: no byte received for this long fails the attempt.
    #[serde(with = "humantime_serde")]
    pub slug_read_timeout: Duration,
    /// Slug downloads: the whole fetch, every attempt and backoff included.
    #[serde(with = "humantime_serde")]
    pub slug_fetch_timeout: Duration,
    /// Slug downloads: attempts after the first on transient errors.
    pub slug_fetch_retries: u32,
    /// Slug downloads: backoff before the first retry; doubles, capped, jittered.
    #[serde(with = "humantime_serde")]
    pub slug_retry_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub slug_retry_backoff_max: Duration,
    /// A cached slug no dyno has used for this long is removed.
    #[serde(with = "humantime_serde")]
    pub slug_cache_grace: Duration,
    /// Development only: without a configured stack, run dynos on the host,
    /// unjailed, as root. Off by default: the agent then refuses such starts.
    pub allow_unjailed: bool,
    /// Default dyno size.
    pub default_size: String,
    /// The size table.
    pub sizes: BTreeMap<String, SizeLimits>,
}

impl Default for Config {
    fn default() -> Self {
        let policy = Policy::default();
        let (cycle_interval, cycle_jitter) = policy.cycle.expect("cycling is on by default");
        Config {
            host_id: default_host_id(),
            state_dir: PathBuf::from("/var/lib/dynoagent"),
            socket: PathBuf::from("/run/dynoagent/dynoagent.sock"),
            listen: None,
            scheduler: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            scheduler_ca: None,
            heartbeat_interval: Duration::from_secs(5),
            report_backoff_max: Duration::from_secs(30),
            memory_reserve: 1 << 30,
            memory_overcommit: 1.0,
            log_format: LogFormat::Text,
            stacks: BTreeMap::new(),
            port_range: Range {
                first: 20000,
                last: 29999,
            },
            uid_range: Range {
                first: 100000,
                last: 165535,
            },
            boot_timeout: policy.boot_timeout,
            stop_grace: policy.stop_grace,
            restart_cooloffs: policy.cooloffs,
            stable_window: policy.stable_window,
            cycling: true,
            cycle_interval,
            cycle_jitter,
            oneoff_ttl: Duration::from_secs(24 * 3600),
            log_max_bytes: 10 * 1024 * 1024,
            usage_slice: Duration::from_secs(3600),
            usage_retention: Duration::from_secs(7 * 24 * 3600),
            disk_limit: 1024 * 1024 * 1024,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            cgroup_parent: crate::cgroup::DEFAULT_PARENT.into(),
            metrics_interval: Duration::from_secs(20),
            dyno_oom_score_adj: 800,
            slug_max_compressed_bytes: 1 << 30,
            slug_max_unpacked_bytes: 4 << 30,
            slug_max_entries: 200_000,
            slug_max_depth: 64,
            slug_max_path_bytes: 4096,
            slug_connect_timeout: Duration::from_secs(10),
            slug_read_timeout: Duration::from_secs(30),
            slug_fetch_timeout: Duration::from_secs(15 * 60),
            slug_fetch_retries: 4,
            slug_retry_backoff: Duration::from_secs(1),
            slug_retry_backoff_max: Duration::from_secs(30),
            slug_cache_grace: Duration::from_secs(3600),
            allow_unjailed: false,
            default_size: "standard-1x".into(),
            sizes: default_sizes(),
        }
    }
}

fn default_host_id() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Every problem found in a configuration, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

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

const ENV_PREFIX: &str = "DYNOAGENT_";

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

    /// Semantic checks, all of them.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.host_id.is_empty() || self.host_id.contains(':') || self.host_id.len() > 253 {
            p.push(format!(
                "host_id: {:?} must be 1-253 characters without ':'",
                self.host_id
            ));
        }
        if !self.state_dir.is_absolute() {
            p.push(format!(
                "state_dir: {} must be an absolute path",
                self.state_dir.display()
            ));
        }
        if self.socket.as_os_str().is_empty() {
            p.push("socket: must not be empty".into());
        }
        if self.port_range.first == 0 || self.port_range.last > 65535 {
            p.push("port_range: ports must lie in 1-65535".into());
        }
        if self.uid_range.first == 0 {
            p.push("uid_range: must not include uid 0".into());
        }
        for (name, d) in [
            ("boot_timeout", self.boot_timeout),
            ("stable_window", self.stable_window),
            ("cycle_interval", self.cycle_interval),
            ("oneoff_ttl", self.oneoff_ttl),
            ("usage_slice", self.usage_slice),
            ("usage_retention", self.usage_retention),
            ("metrics_interval", self.metrics_interval),
            ("heartbeat_interval", self.heartbeat_interval),
            ("report_backoff_max", self.report_backoff_max),
        ] {
            if d.is_zero() {
                p.push(format!("{name}: must be greater than zero"));
            }
        }
        if self.oneoff_ttl > Duration::from_secs(24 * 3600) {
            p.push("oneoff_ttl: must be at most 24h".into());
        }
        if self.usage_slice.subsec_nanos() != 0 {
            p.push("usage_slice: must be a whole number of seconds".into());
        }
        if self.usage_slice > Duration::from_secs(24 * 3600) {
            p.push("usage_slice: must be at most 24h".into());
        }
        if self.restart_cooloffs.is_empty() {
            p.push("restart_cooloffs: needs at least one duration".into());
        }
        if self.cgroup_parent.is_empty()
            || self.cgroup_parent.starts_with('/')
            || self
                .cgroup_parent
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            p.push(format!(
                "cgroup_parent: {:?} must be a relative cgroup path like `dynoagent`",
                self.cgroup_parent
            ));
        }
        if self.disk_limit < 1024 * 1024 {
            p.push("disk_limit: must be at least 1 MiB".into());
        }
        if !(-1000..=1000).contains(&self.dyno_oom_score_adj) {
            p.push("dyno_oom_score_adj: must lie in -1000..=1000".into());
        }
        if self.log_max_bytes < 4096 {
            p.push("log_max_bytes: must be at least 4096".into());
        }
        p.extend(self.slug_problems());
        if !self.sizes.contains_key(&self.default_size) {
            p.push(format!(
                "default_size: {:?} is not in the size table",
                self.default_size
            ));
        }
        for (name, s) in &self.sizes {
            if s.memory_bytes < 4 * 1024 * 1024 {
                p.push(format!("sizes.{name}.memory_bytes: must be at least 4 MiB"));
            }
            if s.cpu_quota.is_some_and(|q| q.is_nan() || q <= 0.0) {
                p.push(format!("sizes.{name}.cpu_quota: must be greater than zero"));
            }
            if s.pids_max == 0 || s.nofile == 0 || s.cpu_shares == 0 {
                p.push(format!(
                    "sizes.{name}: pids_max, nofile and cpu_shares must be greater than zero"
                ));
            }
        }
        if !(self.memory_overcommit.is_finite() && self.memory_overcommit > 0.0) {
            p.push("memory_overcommit: must be a number greater than zero".into());
        }
        if let Some(addr) = &self.listen {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                p.push(format!("listen: {addr:?} is not an address like 0.0.0.0:7443"));
            }
            if self.tls_cert.is_none() || self.tls_key.is_none() {
                p.push("listen: needs tls_cert and tls_key (the TCP API is served with TLS only)".into());
            }
        } else if self.tls_client_ca.is_some() {
            p.push("tls_client_ca: only applies with listen".into());
        }
        if let Some(url) = &self.scheduler
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            p.push(format!("scheduler: {url:?} must be an http:// or https:// URL"));
        }
        if self.scheduler.as_deref().is_some_and(|u| u.starts_with("https://")) && self.scheduler_ca.is_none() {
            p.push("scheduler: an https:// scheduler needs scheduler_ca".into());
        }
        for (name, path) in [
            ("tls_cert", &self.tls_cert),
            ("tls_key", &self.tls_key),
            ("tls_client_ca", &self.tls_client_ca),
            ("scheduler_ca", &self.scheduler_ca),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                p.push(format!("{name}: {} is not a readable file", path.display()));
            }
        }
        for (name, dir) in &self.stacks {
            if !crate::names::valid_stack(name) {
                p.push(format!("stacks: invalid stack name {name:?}"));
            }
            if !dir.is_absolute() {
                p.push(format!("stacks.{name}: {} must be an absolute path", dir.display()));
            }
        }
        p
    }

    fn slug_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (name, v, min) in [
            ("slug_max_compressed_bytes", self.slug_max_compressed_bytes, 1024),
            ("slug_max_unpacked_bytes", self.slug_max_unpacked_bytes, 1024),
            ("slug_max_entries", self.slug_max_entries, 1),
            ("slug_max_depth", self.slug_max_depth as u64, 2),
            ("slug_max_path_bytes", self.slug_max_path_bytes as u64, 16),
        ] {
            if v < min {
                p.push(format!("{name}: must be at least {min}"));
            }
        }
        for (name, d) in [
            ("slug_connect_timeout", self.slug_connect_timeout),
            ("slug_read_timeout", self.slug_read_timeout),
            ("slug_fetch_timeout", self.slug_fetch_timeout),
            ("slug_retry_backoff", self.slug_retry_backoff),
            ("slug_cache_grace", self.slug_cache_grace),
        ] {
            if d.is_zero() {
                p.push(format!("{name}: must be greater than zero"));
            }
        }
        if self.slug_retry_backoff_max < self.slug_retry_backoff {
            p.push("slug_retry_backoff_max: must be at least slug_retry_backoff".into());
        }
        if self.slug_fetch_retries > 100 {
            p.push("slug_fetch_retries: must be at most 100".into());
        }
        p
    }

    /// The unpacker's limits.
    pub fn slug_limits(&self) -> crate::unpack::Limits {
        crate::unpack::Limits {
            compressed_bytes: self.slug_max_compressed_bytes,
            unpacked_bytes: self.slug_max_unpacked_bytes,
            entries: self.slug_max_entries,
            depth: self.slug_max_depth,
            path_bytes: self.slug_max_path_bytes,
        }
    }

    /// The lifecycle numbers for the supervisor.
    pub fn policy(&self) -> Policy {
        Policy {
            boot_timeout: self.boot_timeout,
            stop_grace: self.stop_grace,
            cooloffs: self.restart_cooloffs.clone(),
            stable_window: self.stable_window,
            cycle: self.cycling.then_some((self.cycle_interval, self.cycle_jitter)),
        }
    }

    /// The default stack: the one named `default`, else the first configured.
    pub fn default_stack(&self) -> Option<&str> {
        if self.stacks.contains_key("default") {
            Some("default")
        } else {
            self.stacks.keys().next().map(String::as_str)
        }
    }
}

/// `["20m", "40m"]` as a list of durations.
mod duration_list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| humantime::format_duration(*d).to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| humantime::parse_duration(s).map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}"))))
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)], flags: &Overrides) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(Some(&path), env, flags)
    }

    #[test]
    fn empty_file_gives_the_contract_defaults() {
        let c = load("", &[], &Overrides::default()).unwrap();
        assert_eq!(c.socket, PathBuf::from("/run/dynoagent/dynoagent.sock"));
        assert_eq!(c.boot_timeout, Duration::from_secs(60));
        assert_eq!(c.stop_grace, Duration::from_secs(30));
        assert_eq!(c.stable_window, Duration::from_secs(600));
        let mins: Vec<u64> = c.restart_cooloffs.iter().map(|d| d.as_secs() / 60).collect();
        assert_eq!(mins, [20, 40, 60, 180, 320]);
        assert_eq!(c.sizes["standard-1x"].memory_bytes, 512 * 1024 * 1024);
        assert_eq!(
            c.port_range,
            Range {
                first: 20000,
                last: 29999
            }
        );
        assert_eq!(c.default_size, "standard-1x");
    }

    #[test]
    fn durations_are_human() {
        let c = load(
            "boot_timeout = \"3s\"\nstop_grace = \"1500ms\"\nrestart_cooloffs = [\"1s\", \"2m\"]\n",
            &[],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.boot_timeout, Duration::from_secs(3));
        assert_eq!(c.stop_grace, Duration::from_millis(1500));
        assert_eq!(c.restart_cooloffs, [Duration::from_secs(1), Duration::from_secs(120)]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = load(
            "bogus = 1\nboot_timeout = \"soon\"\nport_range = \"9-3\"\ndefault_size = \"huge\"\nlog_max_bytes = 10\n",
            &[("DYNOAGENT_ALSO_BOGUS", "x")],
            &Overrides::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "bogus",
            "boot_timeout",
            "port_range",
            "default_size",
            "log_max_bytes",
            "DYNOAGENT_ALSO_BOGUS",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        assert_eq!(err.0.len(), 6, "{text}");
    }

    #[test]
    fn flags_override_environment_override_file() {
        let flags = Overrides {
            socket: Some("/tmp/flag.sock".into()),
            ..Default::default()
        };
        let c = load(
            "socket = \"/tmp/file.sock\"\nstate_dir = \"/tmp/file\"\nstop_grace = \"9s\"\n",
            &[
                ("DYNOAGENT_SOCKET", "/tmp/env.sock"),
                ("DYNOAGENT_STATE_DIR", "/tmp/env"),
                ("OTHER_VAR", "ignored"),
            ],
            &flags,
        )
        .unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/flag.sock"));
        assert_eq!(c.state_dir, PathBuf::from("/tmp/env"));
        assert_eq!(c.stop_grace, Duration::from_secs(9));
    }

    #[test]
    fn environment_values_may_be_toml_literals() {
        let c = load(
            "",
            &[("DYNOAGENT_CYCLING", "false"), ("DYNOAGENT_LOG_MAX_BYTES", "65536")],
            &Overrides::default(),
        )
        .unwrap();
        assert!(!c.cycling);
        assert_eq!(c.log_max_bytes, 65536);
        assert_eq!(c.policy().cycle, None);
    }

    #[test]
    fn default_stack_prefers_the_one_named_default() {
        let flags = Overrides {
            stacks: vec![("cedar".into(), "/s/cedar".into()), ("default".into(), "/s/d".into())],
            ..Default::default()
        };
        let c = load("", &[], &flags).unwrap();
        assert_eq!(c.default_stack(), Some("default"));
        let c = load(
            "[stacks]\nheroku-24 = \"/s/24\"\nabc = \"/s/abc\"\n",
            &[],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.default_stack(), Some("abc"));
    }

    #[test]
    fn slug_keys_default_to_the_design_limits_and_are_validated() {
        let c = load("", &[], &Overrides::default()).unwrap();
        assert_eq!(c.slug_limits(), crate::unpack::Limits::default());
        let c = load(
            "slug_max_compressed_bytes = 2048\nslug_read_timeout = \"250ms\"\n",
            &[("DYNOAGENT_SLUG_FETCH_RETRIES", "0")],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.slug_limits().compressed_bytes, 2048);
        assert_eq!(c.slug_read_timeout, Duration::from_millis(250));
        assert_eq!(c.slug_fetch_retries, 0);
        let err = load(
            "slug_max_entries = 0\nslug_cache_grace = \"0s\"\nslug_retry_backoff = \"10s\"\nslug_retry_backoff_max = \"1s\"\nslug_max_depth = -1\n",
            &[],
            &Overrides::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "slug_max_entries",
            "slug_cache_grace",
            "slug_retry_backoff_max",
            "slug_max_depth",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }

    #[test]
    fn size_table_is_validated() {
        let err = load(
            "[sizes.tiny]\nmemory_bytes = 1\ncpu_shares = 0\npids_max = 1\nnofile = 1\n",
            &[],
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("sizes.tiny.memory_bytes"), "{err}");
        assert!(err.contains("sizes.tiny: pids_max"), "{err}");
    }
}
