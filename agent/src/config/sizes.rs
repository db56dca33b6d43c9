//! The dyno size table: the limits of each size (DESIGN §5) and their
//! defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
