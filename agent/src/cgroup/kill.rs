//! Emptying a cgroup: SIGKILL every process in it, round after round, frozen
//! while the signals go out when the cgroup has a freezer, until it is empty
//! or [`KILL_TIMEOUT`] has passed. v1 always ends up here; v2 when the
//! kernel has no `cgroup.kill` (before Linux 5.14), and after writing it, to
//! wait for the processes to be gone.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;

use super::{DynoCgroup, Error, KILL_TIMEOUT, POLL, Result};

/// How long a freeze may take before the kill goes ahead anyway: a task in
/// uninterruptible sleep can keep a cgroup freezing.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one round waits for the killed processes to leave the cgroup.
const ROUND: Duration = Duration::from_millis(200);

/// The freezer of one cgroup, as the kill loop uses it.
pub(super) trait Freezer {
    /// Freezes the cgroup, waiting (up to a bound, see [`wait_frozen`]) until it is.
    fn freeze(&self) -> Result<()>;
    fn thaw(&self) -> Result<()>;
}

/// Polls `frozen` until it says the cgroup is frozen, or [`FREEZE_TIMEOUT`]
/// has passed; returns whether it froze. The kill goes ahead either way:
/// what cannot be killed this round is killed in the next.
pub(super) fn wait_frozen(mut frozen: impl FnMut() -> Result<bool>) -> Result<bool> {
    let start = Instant::now();
    loop {
        if frozen()? {
            return Ok(true);
        }
        if start.elapsed() >= FREEZE_TIMEOUT {
            return Ok(false);
        }
        std::thread::sleep(POLL);
    }
}

/// SIGKILLs the processes of `cgroup` until it is empty, frozen while the
/// signals go out when there is a `freezer` (so nothing forks in between,
/// and no pid is reused while it is being signalled).
pub(super) fn kill_until_empty(cgroup: &dyn DynoCgroup, freezer: Option<&dyn Freezer>) -> Result<()> {
    let start = Instant::now();
    loop {
        let pids = cgroup.procs()?;
        if pids.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= KILL_TIMEOUT {
            return Err(Error::NotEmpty {
                path: cgroup.path().to_path_buf(),
                pids,
                waited: start.elapsed(),
            });
        }
        if let Some(f) = freezer {
            f.freeze()?;
        }
        let killed = cgroup
            .procs()
            .and_then(|pids| pids.into_iter().try_for_each(|pid| sigkill(pid, cgroup)));
        // Thaw even if a kill failed: frozen processes die only once thawed.
        if let Some(f) = freezer {
            f.thaw()?;
        }
        killed?;
        let round = Instant::now();
        while round.elapsed() < ROUND {
            if cgroup.procs()?.is_empty() {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
    }
}

/// SIGKILLs `pid` of `cgroup`; a process already gone is fine.
fn sigkill(pid: u32, cgroup: &dyn DynoCgroup) -> Result<()> {
    match crate::os::kill_pid(pid, Signal::SIGKILL as i32) {
        Err(e) if e.raw_os_error() == Some(Errno::ESRCH as i32) => Ok(()),
        Err(error) => Err(Error::Kill {
            pid,
            path: cgroup.path().to_path_buf(),
            error,
        }),
        Ok(()) => Ok(()),
    }
}

#[cfg(test)]
#[path = "kill_tests.rs"]
mod tests;
