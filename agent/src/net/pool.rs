//! The network's background work: the host filter's periodic check, and
//! prepared networks: `network_pool` namespaces without a port (for worker
//! and one-off runs) and as many with a published port (for new web dynos),
//! made in the background so that a start only takes one.
//!
//! Ports: a dyno's `$PORT` is the lowest free one of `port_range`, unless a
//! prepared web network is waiting, whose port (picked from the top of the
//! range) the new dyno then gets. Both choices are made under one lock, so
//! a port is never a dyno's and the pool's at once.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::Network;

/// After a failed preparation, the pool waits this long before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

impl Network {
    /// `$PORT` for a new web dyno, given the ports dynos hold (`used`) and
    /// whether a port can be bound on the host: a prepared web network's
    /// port when one waits (it is kept for this port's dyno), else the lowest
    /// free one. `None` when no port is free.
    pub fn allocate_port(&self, used: &HashSet<u16>, mut bindable: impl FnMut(u16) -> bool) -> Option<u16> {
        let mut state = self.lock();
        state.dyno_ports = used.clone();
        let waiting = state
            .ready_web
            .iter()
            .position(|id| state.leases[id].port.is_some_and(|p| !used.contains(&p)));
        let port = match waiting {
            Some(i) => {
                let id = state.ready_web.remove(i);
                let port = state.leases[&id].port.expect("web leases have a port");
                state.reserved.insert(port, id);
                port
            }
            None => (self.port_range.first..=self.port_range.last)
                .map(|p| p as u16)
                .find(|p| !used.contains(p) && !state.pool_ports.contains(p) && bindable(*p))?,
        };
        state.dyno_ports.insert(port);
        drop(state);
        self.refill.notify_one();
        Some(port)
    }

    /// Gives back the port [`Network::allocate_port`] picked for a dyno
    /// that was not created: a prepared network reserved for it waits for
    /// the next web dyno again.
    pub fn unreserve(&self, port: u16) {
        let mut state = self.lock();
        state.dyno_ports.remove(&port);
        if let Some(id) = state.reserved.remove(&port) {
            state.ready_web.push(id);
        }
    }

    /// Tells the pool which ports dynos hold before it prepares any (after
    /// re-adoption: a re-adopted web dyno's port may be at the top of the
    /// range, where the pool takes its own).
    pub fn dyno_ports_are(&self, ports: HashSet<u16>) {
        self.lock().dyno_ports = ports;
    }

    /// The highest port no dyno and no pool entry holds, now held by the pool.
    fn pool_port(&self) -> Option<u16> {
        let mut state = self.lock();
        let port = (self.port_range.first..=self.port_range.last)
            .rev()
            .map(|p| p as u16)
            .find(|p| {
                !state.dyno_ports.contains(p)
                    && !state.pool_ports.contains(p)
                    && std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok()
            })?;
        state.pool_ports.insert(port);
        Some(port)
    }

    /// What the pool lacks: (workers, web).
    fn lacking(&self) -> (usize, usize) {
        let state = self.lock();
        (
            self.pool_size.saturating_sub(state.ready_workers.len()),
            self.pool_size.saturating_sub(state.ready_web.len()),
        )
    }

    /// Prepares one network; `web` with a port of its own.
    async fn prepare(&self, web: bool) -> bool {
        let port = if web {
            match self.pool_port() {
                Some(p) => Some(p),
                None => return false,
            }
        } else {
            None
        };
        let id = {
            let mut state = self.lock();
            self.new_id(&mut state)
        };
        match self.create(&id, port, None).await {
            Ok(lease) => {
                let mut state = self.lock();
                if web {
                    state.ready_web.push(lease.id);
                } else {
                    state.ready_workers.push(lease.id);
                }
                true
            }
            Err(e) => {
                if let Some(p) = port {
                    self.lock().pool_ports.remove(&p);
                }
                warn!(error = %e, "cannot prepare a dyno network for the pool");
                false
            }
        }
    }

    /// Until `stop` resolves: keeps the pool full and checks the host's
    /// filter every [`super::FILTER_CHECK`]; then tears down what the pool
    /// holds (prepared networks are not kept across agent restarts).
    pub async fn background(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let fill = async {
            loop {
                let (workers, web) = self.lacking();
                let ok = if workers > 0 {
                    self.prepare(false).await
                } else if web > 0 {
                    self.prepare(true).await
                } else {
                    self.refill.notified().await;
                    true
                };
                if !ok {
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        };
        // The filter too: a firewall reload on the host (ufw, firewalld,
        // an iptables-restore without --noflush) drops its jumps.
        let guard = async {
            let mut every = tokio::time::interval(super::FILTER_CHECK);
            every.tick().await;
            loop {
                every.tick().await;
                match self.rules.install().await {
                    Ok(0) => {}
                    Ok(n) => warn!(
                        jumps = n,
                        "the host's dyno filter had lost jumps (a firewall reload?): put back"
                    ),
                    Err(e) => warn!(error = %e, "cannot check the host's dyno filter"),
                }
            }
        };
        tokio::select! {
            _ = fill => {}
            _ = guard => {}
            _ = stop => {}
        }
        let idle: Vec<_> = {
            let mut state = self.lock();
            let mut ids: Vec<String> = state.ready_workers.drain(..).collect();
            ids.append(&mut state.ready_web);
            ids.extend(state.reserved.drain().map(|(_, id)| id));
            ids.iter().filter_map(|id| state.leases.get(id).cloned()).collect()
        };
        for lease in idle {
            self.release(lease).await;
        }
    }
}
