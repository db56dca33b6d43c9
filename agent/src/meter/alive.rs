//! Whether a metered run is still running, as the meter checks it every
//! second: a run is billed only as far as it was seen alive.
//!
//! The real check ([`RunsLiveness`]) looks at the run's command, from its
//! exec record: the host pid with the start time the shim recorded (so a
//! reused pid is not mistaken for the run). The shim takes the exit time
//! only after the command is gone (a jailed command is reaped by its init,
//! which the shim reaps after it), so a command seen at `t` exits after
//! `t`: billing to what was seen never passes the recorded exit.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;

use tracing::warn;

use crate::runs::{ExecRecord, RunDir};

/// What a liveness check says about a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alive {
    Yes,
    /// Its command has exited (or its run directory is gone).
    No,
    /// Cannot tell (an unreadable exec record): billed as before, as alive.
    Unknown,
}

/// The meter's view of runs' lives (a fake in unit tests).
pub trait Liveness: Send {
    fn check(&mut self, run_id: &str) -> Alive;
    /// The run is closed: forget what was kept about it.
    fn forget(&mut self, run_id: &str);
}

/// Checks runs through their exec records and `/proc` (one read of
/// `/proc/PID/stat` a run a second; the exec record is read once).
pub struct RunsLiveness {
    runs: PathBuf,
    execs: HashMap<String, ExecRecord>,
    /// Runs whose exec record could not be read, already warned about.
    warned: std::collections::HashSet<String>,
}

impl RunsLiveness {
    pub fn new(runs: PathBuf) -> RunsLiveness {
        RunsLiveness {
            runs,
            execs: HashMap::new(),
            warned: Default::default(),
        }
    }
}

impl Liveness for RunsLiveness {
    fn check(&mut self, run_id: &str) -> Alive {
        if !self.execs.contains_key(run_id) {
            match RunDir::new(&self.runs, run_id).read_exec() {
                Ok(Some(exec)) => {
                    self.execs.insert(run_id.to_string(), exec);
                }
                Ok(None) => return Alive::No,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Alive::No,
                Err(e) => {
                    if self.warned.insert(run_id.to_string()) {
                        warn!(run = run_id, error = %e, "cannot read the run's exec record: billing it as alive until it ends");
                    }
                    return Alive::Unknown;
                }
            }
        }
        let exec = &self.execs[run_id];
        match crate::os::start_ticks(exec.pid) {
            Some(t) if t == exec.start_ticks || exec.start_ticks == 0 => Alive::Yes,
            _ => Alive::No,
        }
    }

    fn forget(&mut self, run_id: &str) {
        self.execs.remove(run_id);
        self.warned.remove(run_id);
    }
}
