//! The dyno size table: the limits of each size (DESIGN §5) and their
//! defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Limits of one dyno size (DESIGN §5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeLimits {
    /// The memory quota in bytes (DESIGN §5): what admission counts and
    /// the RAM a dyno may hold where the host has swap; above it, R14.
    pub memory_bytes: u64,
    /// The kill limit as a multiple of the quota (R15 past it): 2.0 as on
    /// Heroku's Common Runtime, 1.0 for Private-Space behaviour.
    #[serde(default = "default_kill_ratio")]
    pub memory_kill_ratio: f64,
    pub cpu_shares: u64,
    /// CFS quota in cores; `None` means no quota.
    #[serde(default)]
    pub cpu_quota: Option<f64>,
    pub pids_max: u64,
    pub nofile: u64,
}

/// The default `memory_kill_ratio`.
pub const DEFAULT_KILL_RATIO: f64 = 2.0;

fn default_kill_ratio() -> f64 {
    DEFAULT_KILL_RATIO
}

impl SizeLimits {
    /// The kill limit in bytes: quota × `memory_kill_ratio`.
    pub fn memory_kill_bytes(&self) -> u64 {
        ((self.memory_bytes as f64) * self.memory_kill_ratio.max(1.0)).round() as u64
    }

    /// The cgroup limits of this size on a host with or without swap
    /// (nofile is applied by the jail, not a cgroup).
    pub fn cgroup_limits(&self, swap: bool) -> crate::cgroup::Limits {
        crate::cgroup::Limits {
            memory_bytes: self.memory_bytes,
            memory_kill_bytes: self.memory_kill_bytes(),
            swap,
            cpu_shares: self.cpu_shares,
            cpu_quota: self.cpu_quota,
            pids_max: self.pids_max,
        }
    }
}

/// The default size table.
pub fn default_sizes() -> BTreeMap<String, SizeLimits> {
    const MIB: u64 = 1024 * 1024;
    let size = |mem, shares, quota, pids| SizeLimits {
        memory_bytes: mem,
        memory_kill_ratio: DEFAULT_KILL_RATIO,
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
