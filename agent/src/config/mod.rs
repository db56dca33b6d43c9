//! Agent configuration: a TOML file, overridden by `DYNOAGENT_*` environment
//! variables, overridden by command-line flags.
//!
//! Every key has a default (see [`Config::default`] and the README's table), so
//! an empty file is a valid configuration. Unknown keys are errors, and
//! [`Config::load`] reports every problem it finds at once, not just the first.
//!
//! - here: the [`Config`] type, its defaults and the values derived from it;
//! - `load`: layering file → environment → flags;
//! - `validate`: the semantic checks, every problem at once;
//! - `sizes`: the dyno size table (DESIGN §5);
//! - `serde_forms`: ranges (`"20000-29999"`) and lists of human durations.

mod load;
mod serde_forms;
mod sizes;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::load::Overrides;
pub use self::serde_forms::Range;
use self::serde_forms::duration_list;
pub use self::sizes::{SizeLimits, default_sizes};
use crate::supervisor::Policy;

/// Log output format of the agent itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Where dynos' network lives (DESIGN §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// A network namespace per run, set up through CNI.
    Isolated,
    /// The host's own (development only).
    Host,
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
    /// Serve `listen` without `tls_client_ca`: anyone who can connect (a dyno
    /// too) may then use the whole API. Off: such a configuration is refused.
    pub listen_without_client_auth: bool,
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
    /// How long a finished one-off is kept (record, run directories, logs)
    /// before it is removed.
    #[serde(with = "humantime_serde")]
    pub oneoff_retention: Duration,
    /// A run's log is rotated before it would pass this size; one rotated
    /// file is kept.
    pub log_max_bytes: u64,
    /// The app's log lines a second a dyno may sustain; past it (and its
    /// burst) lines are dropped and counted (Heroku's `Error L10`).
    pub log_rate_lines: u32,
    /// Lines a dyno may write at once above `log_rate_lines`.
    pub log_rate_burst: u32,
    /// Usage slice length (billing records never span two slices).
    #[serde(with = "humantime_serde")]
    pub usage_slice: Duration,
    /// How long usage records are kept after billing acknowledged them
    /// (records not yet acknowledged are never deleted).
    #[serde(with = "humantime_serde")]
    pub usage_retention: Duration,
    /// Bytes a dyno may write (its `/app` changes, `/tmp` and `/dev/shm`
    /// together).
    pub disk_limit: u64,
    /// Where the cgroup filesystem is mounted.
    pub cgroup_root: PathBuf,
    /// The dynos' parent cgroup, under which each run gets its own.
    pub cgroup_parent: String,
    /// How often a runtime-metrics line goes into each running dyno's log
    /// (and, above the quota, R14).
    #[serde(with = "humantime_serde")]
    pub metrics_interval: Duration,
    /// Optional TCP address (`host:port`) serving the Prometheus text
    /// exposition at `GET /metrics` (plain HTTP); off by default.
    pub metrics_listen: Option<String>,
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
    /// The only directory under which directory slugs (a path holding `app/`,
    /// used in place) are accepted; no default: without it they are refused.
    pub slug_dir_root: Option<PathBuf>,
    /// `isolated` (a network namespace per run, through CNI) or `host`.
    pub network: NetworkMode,
    /// The CNI chain (a `.conflist`); unset: the built-in one (ptp with
    /// NAT, then portmap; `agent/src/net/default.conflist`).
    pub cni_config: Option<PathBuf>,
    /// Where the chain's plugins are.
    pub cni_bin_dir: PathBuf,
    /// Ranges a dyno may not reach (besides the host, other dynos and
    /// link-local, which it never reaches); a configured list replaces this.
    pub network_deny: Vec<String>,
    /// Ranges a dyno reaches although `network_deny` lists them.
    pub network_allow: Vec<String>,
    /// Nameservers of dynos' `/etc/resolv.conf`, reachable on port 53
    /// whatever the lists say; unset: the host's.
    pub network_dns: Option<Vec<std::net::Ipv4Addr>>,
    /// Tracked connections a dyno may open (its share of the host's
    /// conntrack table).
    pub network_max_connections: u32,
    /// Prepared networks kept ready, of each kind (with and without a port).
    pub network_pool: usize,
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
            listen_without_client_auth: false,
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
            oneoff_retention: Duration::from_secs(3600),
            log_max_bytes: crate::logs::Bounds::default().max_bytes,
            log_rate_lines: crate::logs::Bounds::default().rate_lines,
            log_rate_burst: crate::logs::Bounds::default().burst,
            usage_slice: Duration::from_secs(3600),
            usage_retention: Duration::from_secs(7 * 24 * 3600),
            disk_limit: 1024 * 1024 * 1024,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            cgroup_parent: crate::cgroup::DEFAULT_PARENT.into(),
            metrics_interval: Duration::from_secs(20),
            metrics_listen: None,
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
            slug_dir_root: None,
            network: NetworkMode::Isolated,
            cni_config: None,
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            network_deny: [
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "100.64.0.0/10",
                "fc00::/7",
            ]
            .map(String::from)
            .to_vec(),
            network_allow: Vec::new(),
            network_dns: None,
            network_max_connections: 4096,
            network_pool: 4,
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

impl Config {
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

    /// What bounds each run's log.
    pub fn log_bounds(&self) -> crate::logs::Bounds {
        crate::logs::Bounds {
            max_bytes: self.log_max_bytes,
            rate_lines: self.log_rate_lines,
            burst: self.log_rate_burst,
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
            ..Policy::default()
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

#[cfg(test)]
mod tests;
