//! What `/proc` says about processes: start times, command lines, children,
//! every pid, pid namespaces, and the kernel's last capability number.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// The start time of `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`): with the pid, it identifies a process across pid reuse.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// The state letter of thread `tid` (field 3 of `/proc/TID/stat`: `R`
/// running, `S` sleeping, `D` uninterruptible …), `None` once it is gone.
pub fn task_state(tid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// The arguments of `pid` as in `/proc/PID/cmdline`.
pub fn cmdline(pid: u32) -> Option<Vec<Vec<u8>>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(<[u8]>::to_vec)
            .collect(),
    )
}

/// `true` when `arg` (one argument of a [`cmdline`]) equals `s`.
pub fn arg_is(arg: &[u8], s: &str) -> bool {
    OsStr::from_bytes(arg) == OsStr::new(s)
}

/// Whether `pid` lives in the caller's pid namespace (a dyno's init, a fork
/// of its shim with the same command line, does not).
pub fn in_my_pid_namespace(pid: u32) -> bool {
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    ns(&pid.to_string()).is_some_and(|n| Some(n) == ns("self"))
}

/// Every pid currently in `/proc`.
pub fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// Host pids of the children of `pid` (`/proc/PID/task/PID/children`).
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// The highest capability number the kernel knows
/// (`/proc/sys/kernel/cap_last_cap`), 40 when it cannot be read.
pub(crate) fn cap_last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

#[cfg(test)]
#[path = "procfs_tests.rs"]
mod tests;
