//! Processes seen from the host: whether one is alive, signalling it, the
//! members of a dyno's pid namespace, waiting for a signal handler.

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::wait::wait_for;

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// The pid field of a dyno (from `ps --json`), as u32.
pub fn pid_of(d: &Value) -> u32 {
    d["pid"].as_u64().unwrap_or_else(|| panic!("no pid in {d}")) as u32
}

/// Sends a signal to a pid.
pub fn signal(pid: u32, sig: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("kill");
}

/// Host pids of every process in the pid namespace of `pid` (a dyno's init,
/// its command and whatever they started).
pub fn pid_namespace_members(pid: u32) -> Vec<u32> {
    let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/pid")) else {
        return Vec::new();
    };
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|n| n == ns))
        .collect()
}

/// Waits until `pid` has a handler for `sig` (a shell reached its `trap`).
pub fn wait_for_handler(pid: u32, sig: Signal) {
    wait_for(&format!("a {sig} handler in {pid}"), || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let caught = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?.trim();
        (u64::from_str_radix(caught, 16).ok()? & (1 << (sig as i32 - 1)) != 0).then_some(())
    });
}
