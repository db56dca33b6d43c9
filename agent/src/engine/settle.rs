//! Settling a run that ended: from its shim's exit record (or the lack of
//! one) and its cgroup's last reading to the supervisor's
//! [`Input::Exited`], with the final usage for the ledger.
//!
//! [`run_end`] is the decision (exit code, signal, OOM kill or lost);
//! [`ended_input`] gathers what it needs (blocking reads, the cgroup's
//! removal) and [`watch_exit`] waits for the shim to go first.

use std::time::Duration;

use nix::sys::signal::Signal as NixSignal;
use tracing::{debug, error, warn};

use super::signal::kill_run;
use crate::cgroup::{self, Cgroups, CgroupsRef};
use crate::net::NetworkRef;
use crate::os;
use crate::runs::{ExitRecord, RunDir};
use crate::supervisor::{Input, RunEnd};
use crate::time::{Clock, Time};

/// How a run ended, from its exit record (`None`: there is none, the run is
/// lost, at `now`) and the OOM kills its cgroup counted.
pub(super) fn run_end(exit: Option<ExitRecord>, oom_kills: u64, now: Time) -> RunEnd {
    match exit {
        Some(x) => RunEnd {
            code: x.code,
            signal: x.signal,
            // The memory limit's killer sends SIGKILL.
            oom: oom_kills > 0 && x.signal == Some(NixSignal::SIGKILL as i32),
            lost: false,
            at: x.exited_at,
        },
        None => RunEnd::lost(now),
    }
}

/// One reading of an ended run's cgroup, then its removal (killing whatever
/// is left in it): the OOM kills for the exit reason, and the last usage for
/// the ledger. Blocking.
fn final_reading(cgroups: &dyn Cgroups, run_id: &str) -> (u64, Option<cgroup::Usage>) {
    let mut oom_kills = 0;
    let mut usage = None;
    match cgroups.open(run_id) {
        Ok(Some(cg)) => {
            match cg.stats() {
                Ok(s) => {
                    oom_kills = s.oom_kills;
                    usage = Some(cgroup::Usage {
                        cpu_ns: s.cpu_usage_ns,
                        mem_peak_bytes: s.memory_peak.unwrap_or(s.memory_current),
                    });
                }
                Err(e) => {
                    warn!(run = %run_id, error = %e, "cannot read the run's final usage");
                    oom_kills = cg.oom_kills().unwrap_or_else(|e| {
                        warn!(run = %run_id, error = %e, "cannot read OOM kills");
                        0
                    });
                }
            }
            if let Err(e) = cg.remove() {
                error!(run = %run_id, error = %e, "cannot remove the run's cgroup");
            }
        }
        Ok(None) => {}
        Err(e) => warn!(run = %run_id, error = %e, "cannot open the run's cgroup"),
    }
    (oom_kills, usage)
}

/// How a run whose shim is gone ended: from its exit record, else `lost`.
///
/// Also checks the run's cgroup for OOM kills and removes it (killing
/// whatever is left in it). Blocking.
pub(super) fn ended_input(
    dir: &RunDir,
    run_id: String,
    now: Time,
    cgroups: Option<&dyn Cgroups>,
) -> (Input, Option<cgroup::Usage>) {
    let (oom_kills, usage) = match cgroups {
        Some(cgroups) => final_reading(cgroups, &run_id),
        None => (0, None),
    };
    let exit = match dir.read_exit() {
        Ok(exit) => exit,
        Err(e) => {
            error!(run = %run_id, error = %e, "cannot read the run's exit record: settled as lost");
            None
        }
    };
    if exit.is_none() {
        // The shim vanished without a record; its command may still run
        // in its own session. End it, so that a restart never runs two.
        if let Ok(Some(exec)) = dir.read_exec() {
            kill_run(&exec);
        }
    }
    let end = run_end(exit, oom_kills, now);
    (Input::Exited { run_id, end }, usage)
}

/// Waits (through a pidfd) until the shim has exited, then reads how the run
/// ended and tears its network down (before the dyno counts as ended: a
/// restart never meets the previous run's port rule). The teardown and the
/// reading take one of the run work `slots` (their descriptors are in the
/// reserve, see `fds`).
pub(super) async fn watch_exit(
    shim_pid: u32,
    dir: RunDir,
    run_id: String,
    cgroups: Option<CgroupsRef>,
    network: Option<NetworkRef>,
    clock: Clock,
    slots: std::sync::Arc<tokio::sync::Semaphore>,
) -> (Input, Option<cgroup::Usage>) {
    // The pid may have been reused before a pidfd was opened: it is ours
    // only while its command line still names this run.
    let ours = || os::cmdline(shim_pid).is_some_and(|a| a.len() == 4 && os::arg_is(&a[2], &run_id));
    let poll = async || {
        while ours() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    match os::pidfd_open(shim_pid) {
        Ok(fd) => {
            if ours() {
                match os::pidfd_wait(fd).await {
                    Ok(()) => {}
                    Err(e) => {
                        warn!(shim_pid, error = %e, "cannot watch the shim; polling");
                        poll().await;
                    }
                }
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => debug!(shim_pid, error = %e, "shim already gone"),
        // No descriptor to spare (or another failure): the shim is not
        // gone for that; watch its command line instead.
        Err(e) => {
            warn!(shim_pid, error = %e, "cannot open a pidfd for the shim; polling");
            poll().await;
        }
    }
    let _slot = slots.acquire_owned().await.ok();
    let now = clock.now();
    if let Some(net) = &network {
        net.release_run(&run_id).await;
    }
    let fallback = run_id.clone();
    tokio::task::spawn_blocking(move || ended_input(&dir, run_id, now, cgroups.as_deref()))
        .await
        .unwrap_or_else(|e| {
            error!(error = %e, "settling a run failed");
            (
                Input::Exited {
                    run_id: fallback,
                    end: RunEnd::lost(now),
                },
                None,
            )
        })
}

#[cfg(test)]
#[path = "settle_tests.rs"]
mod tests;
