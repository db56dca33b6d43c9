//! The host's capacity and use, via sysinfo.

use sysinfo::System;

/// CPUs, memory and load of the host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostStats {
    pub cpus: u32,
    pub memory_total: u64,
    pub memory_available: u64,
    pub load: [f64; 3],
}

/// Reads the current figures (a fresh, cheap sysinfo refresh of memory only).
pub fn stats() -> HostStats {
    let (memory_total, memory_available) = match System::new() {
        Ok(mut sys) => {
            sys.refresh_memory();
            (sys.total_memory(), sys.available_memory())
        }
        Err(_) => (0, 0),
    };
    let load = System::load_average().map_or([0.0; 3], |l| [l.one, l.five, l.fifteen]);
    HostStats {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        memory_total,
        memory_available,
        load,
    }
}

/// Whether the host has swap (`SwapTotal` of `/proc/meminfo` above zero):
/// then a dyno's memory past its quota goes to swap (DESIGN §5).
pub fn has_swap() -> bool {
    std::fs::read_to_string("/proc/meminfo").is_ok_and(|m| swap_total(&m) > 0)
}

/// `SwapTotal` of a `/proc/meminfo` text, in kB (0 when missing).
fn swap_total(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("SwapTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Memory the host may give dynos: `(total - reserve) * overcommit`.
pub fn allocatable(total: u64, reserve: u64, overcommit: f64) -> u64 {
    (total.saturating_sub(reserve) as f64 * overcommit) as u64
}

#[cfg(test)]
#[path = "host_tests.rs"]
mod tests;
