//! The dyno lifecycle as a pure state machine: inputs in, actions out.
//!
//! One [`Supervision`] per dyno holds its state (`starting`, `up`, `crashed`,
//! `down`), its current run, its crash count and every deadline it waits for.
//! [`Supervision::step`] applies one [`Input`] at a given time and returns the
//! [`Action`]s the driver must carry out (spawn a run, signal it, write a log
//! line, publish a state change). Nothing here does I/O, reads a clock or
//! sleeps: deadlines are wall-clock times the driver sleeps until, and the
//! randomness of cool-offs and cycling comes in through [`Ctx::jitter`].
//!
//! Heroku semantics (DESIGN §4): a crash is any exit the agent did not ask for;
//! the first crash restarts at once, each further one after a cool-off of "up
//! to" the next step of the schedule (a random delay in [half, full]); the
//! count resets after a stable window, on an explicit restart and on a new
//! release; runs are cycled daily; one-off dynos are never restarted.
//!
//! - `types`: states, reasons, runs, profile and policy, inputs and actions;
//! - `step`: [`Supervision`] and its step function;
//! - `cycle`: where a run's daily cycle falls among its peers', and waiting
//!   for a cycling peer;
//! - `tests/`: the state machine's tests, one file per section.

mod cycle;
mod step;
mod types;

pub use self::cycle::{CYCLE_WAIT, NO_PEERS, Peers, pick_cycle};
pub use self::step::Supervision;
pub use self::types::*;
/// Wall-clock time in UTC.
pub use crate::time::Time;

#[cfg(test)]
mod tests;
