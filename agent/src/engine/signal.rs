//! Signalling runs: the supervisor's SIGTERM and SIGKILL to a dyno (through
//! its init when jailed, its process group otherwise, and the cgroup's kill
//! for what escaped), and ending what is left of a run nobody supervises.

use nix::sys::signal::Signal as NixSignal;
use tracing::{debug, warn};

use super::Key;
use super::actor::Actor;
use crate::os;
use crate::runs::{ExecRecord, RunDir};
use crate::supervisor::Signal;

/// The signal number the supervisor's `sig` is delivered as.
pub(super) fn signo(sig: Signal) -> i32 {
    match sig {
        Signal::Term => NixSignal::SIGTERM as i32,
        Signal::KillAll => NixSignal::SIGKILL as i32,
    }
}

impl Actor {
    pub(super) fn signal(&self, key: &Key, sig: Signal) {
        let Some(run) = self.dynos[key].rec.sup.run.as_ref().filter(|r| r.pid.is_some()) else {
            return; // not exec'd yet: the supervisor repeats it on Spawned
        };
        let signo = signo(sig);
        let exec = match RunDir::new(&self.paths.runs, &run.id).read_exec() {
            Ok(Some(exec)) => exec,
            other => {
                warn!(app = %key.0, dyno = %key.1, ?other, "no exec record: cannot signal the run");
                return;
            }
        };
        // A jailed dyno's init passes SIGTERM to every process of the dyno;
        // SIGKILL to it ends its whole pid namespace.
        let result = match exec.init_pid {
            Some(init) => os::kill_pid(init, signo),
            None => os::kill_group(exec.pid, signo),
        };
        if sig == Signal::KillAll
            && let Some(cgroups) = self.cgroups.clone()
        {
            // Whatever might have escaped the pid namespace's end.
            // In a run work slot: a `stop --all` of thousands of dynos
            // opens their cgroups a few at a time (see `fds`).
            let run_id = run.id.clone();
            let slots = self.run_work.clone();
            tokio::spawn(async move {
                let _slot = slots.acquire_owned().await.ok();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Ok(Some(cg)) = cgroups.open(&run_id)
                        && let Err(e) = cg.kill_all()
                    {
                        warn!(run = %run_id, error = %e, "cannot empty the run's cgroup");
                    }
                })
                .await;
            });
        }
        if let Err(e) = result {
            debug!(app = %key.0, dyno = %key.1, pid = exec.pid, error = %e, "signal not delivered");
        }
    }
}

/// SIGKILLs what is left of a run whose shim is gone or unknown, if its
/// command is still the process the exec record names.
pub(super) fn kill_run(exec: &ExecRecord) {
    if os::start_ticks(exec.pid) != Some(exec.start_ticks) {
        return;
    }
    let sigkill = NixSignal::SIGKILL as i32;
    // SIGKILL to a jailed dyno's init ends its whole pid namespace.
    if let Some(init) = exec.init_pid {
        let _ = os::kill_pid(init, sigkill);
    }
    let _ = os::kill_group(exec.pid, sigkill);
}
