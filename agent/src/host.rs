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

#[cfg(test)]
mod tests {
    #[test]
    fn figures_are_plausible() {
        let s = super::stats();
        assert!(s.cpus >= 1);
        assert!(s.memory_total > 0 && s.memory_available <= s.memory_total);
        assert!(s.load.iter().all(|l| *l >= 0.0));
    }
}
