//! The agent's one "stop now" value. [`run`](super::run) derives it from the
//! shutdown future it is given and hands a [`Shutdown`] to every task it
//! starts (engine, slug GC, listeners, report stream); each waits on it
//! with [`Shutdown::wait`]. Firing it (or dropping the [`Trigger`]) stops
//! them all; dynos keep running.

use std::future::Future;

use tokio::sync::watch;

/// Fires the shutdown.
pub(super) struct Trigger(watch::Sender<bool>);

/// Waits for the shutdown; cheap to clone.
#[derive(Clone)]
pub(super) struct Shutdown(watch::Receiver<bool>);

/// A new, unfired shutdown.
pub(super) fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub(super) fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Resolves once the shutdown is fired or its trigger is gone.
    pub(super) fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|fired| *fired).await;
        }
    }
}

#[cfg(test)]
#[path = "shutdown_tests.rs"]
mod tests;
