//! Starts in flight: a `StartDyno` is known to the engine from the moment
//! its request is valid, before its slug is fetched and unpacked, so that a
//! stop arriving meanwhile cancels it (the stop is answered, and the start
//! then refused with `ABORTED`) instead of answering `NOT_FOUND` and letting
//! the dyno come up after it.

use std::collections::HashMap;

use super::model::Selector;
use super::{Key, Msg};
use crate::error::{Error, Result};

/// The starts in flight, by token.
#[derive(Default)]
pub(super) struct PendingStarts {
    next: u64,
    starts: HashMap<u64, Pending>,
}

struct Pending {
    key: Key,
    cancelled: bool,
}

impl PendingStarts {
    /// Registers a start of dyno `key`; its token.
    pub(super) fn add(&mut self, key: Key) -> u64 {
        self.next += 1;
        self.starts.insert(self.next, Pending { key, cancelled: false });
        self.next
    }

    /// How many starts are in flight.
    pub(super) fn len(&self) -> usize {
        self.starts.len()
    }

    /// Forgets a start (it reached the engine, or failed before).
    pub(super) fn remove(&mut self, token: u64) {
        self.starts.remove(&token);
    }

    /// Cancels every start in flight of a dyno `sel` selects; how many.
    pub(super) fn cancel(&mut self, sel: &Selector) -> usize {
        let mut n = 0;
        for p in self.starts.values_mut().filter(|p| sel.matches_key(&p.key)) {
            p.cancelled = true;
            n += 1;
        }
        n
    }

    /// Takes the start of `token` as it reaches the engine: `ABORTED` when a
    /// stop cancelled it meanwhile.
    pub(super) fn take(&mut self, token: u64) -> Result<()> {
        match self.starts.remove(&token) {
            Some(p) if p.cancelled => Err(Error::Aborted(format!(
                "the start of {} of app {} was cancelled: a stop for it arrived while its slug was being prepared",
                p.key.1, p.key.0
            ))),
            _ => Ok(()),
        }
    }
}

/// A start in flight, registered with the engine until it reaches it;
/// dropped before (a slug that failed, a client gone), it is forgotten.
pub struct PendingStart {
    pub(super) token: u64,
    pub(super) tx: tokio::sync::mpsc::UnboundedSender<Msg>,
}

impl PendingStart {
    /// What the start passes in [`StartRequest::pending`](super::StartRequest::pending).
    pub fn token(&self) -> u64 {
        self.token
    }
}

impl Drop for PendingStart {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Unpend(self.token));
    }
}

#[cfg(test)]
#[path = "pending_tests.rs"]
mod tests;
