//! Admission and allocation: whether a host has the memory for one more
//! dyno, and each dyno's own `$PORT` and uid.
//!
//! The decisions are pure functions of the dynos known and the
//! configuration; the [`Actor`] methods feed them its dynos (and, for ports,
//! a probe that the port can be bound on the host).

use std::collections::{BTreeMap, HashSet};

use super::Key;
use super::actor::Actor;
use super::model::DynoRecord;
use crate::config::{Config, Range, SizeLimits};
use crate::error::{Error, Reason, Result};
use crate::supervisor::State;

/// Memory limits of the `dynos` that are not down, `except` one.
pub(super) fn memory_committed<'a>(
    dynos: impl IntoIterator<Item = (&'a Key, &'a DynoRecord)>,
    sizes: &BTreeMap<String, SizeLimits>,
    except: Option<&Key>,
) -> u64 {
    dynos
        .into_iter()
        .filter(|(k, rec)| Some(*k) != except && rec.sup.state != State::Down)
        .map(|(_, rec)| sizes.get(&rec.spec.size).map_or(0, |l| l.memory_bytes))
        .sum()
}

/// Refuses dyno `key` of size `size` when it would take the memory committed
/// by the other dynos past `allocatable`.
pub(super) fn admit(cfg: &Config, allocatable: u64, committed: u64, key: &Key, size: &str) -> Result<()> {
    let need = cfg.sizes.get(size).map_or(0, |l| l.memory_bytes);
    if committed.saturating_add(need) <= allocatable {
        return Ok(());
    }
    let mib = |b: u64| b / (1 << 20);
    Err(Error::ResourceExhausted(
        Reason::InsufficientMemory,
        format!(
            "{}/{}: size {size} needs {} MiB of memory; {} MiB of this host's {} MiB allocatable is free \
         (memory_reserve {} MiB, memory_overcommit {})",
            key.0,
            key.1,
            mib(need),
            mib(allocatable.saturating_sub(committed)),
            mib(allocatable),
            mib(cfg.memory_reserve),
            cfg.memory_overcommit
        ),
    ))
}

/// The lowest port of `range` no dyno has and `bindable` accepts.
pub(super) fn free_port(range: Range, used: &HashSet<u16>, mut bindable: impl FnMut(u16) -> bool) -> Result<u16> {
    for p in range.first..=range.last {
        let p = p as u16;
        if !used.contains(&p) && bindable(p) {
            return Ok(p);
        }
    }
    Err(Error::ResourceExhausted(
        Reason::NoFreePort,
        format!("no free port in {}-{}", range.first, range.last),
    ))
}

/// The lowest uid of `range` no dyno has.
pub(super) fn free_uid(range: Range, used: &HashSet<u32>) -> Result<u32> {
    (range.first..=range.last).find(|u| !used.contains(u)).ok_or_else(|| {
        Error::ResourceExhausted(
            Reason::NoFreeUid,
            format!("no free uid in {}-{}", range.first, range.last),
        )
    })
}

/// Whether a dyno may keep `uid` (from its record): it lies in `range` and
/// no other dyno has it.
pub(super) fn uid_is_valid(uid: u32, range: Range, used: &HashSet<u32>) -> bool {
    (range.first..=range.last).contains(&uid) && !used.contains(&uid)
}

impl Actor {
    /// Memory limits of the dynos that are not down, `except` one.
    pub(super) fn committed(&self, except: Option<&Key>) -> u64 {
        memory_committed(self.dynos.iter().map(|(k, e)| (k, &e.rec)), &self.cfg.sizes, except)
    }

    /// Refuses a start that would commit more memory than is allocatable.
    pub(super) fn admit(&self, key: &Key, size: &str) -> Result<()> {
        admit(&self.cfg, self.allocatable, self.committed(Some(key)), key, size)
    }

    /// The uids dynos hold (a down dyno holds none).
    fn uids(&self) -> HashSet<u32> {
        self.dynos
            .values()
            .filter(|e| !e.rec.idle())
            .map(|e| e.rec.uid)
            .collect()
    }

    /// A port of `port_range` that no dyno has and that is free on the host.
    /// With isolated networks, a prepared network's port when one waits
    /// (see [`crate::net::Network::allocate_port`]).
    pub(super) fn allocate_port(&self) -> Result<u16> {
        // A down dyno holds no port.
        let used: HashSet<u16> = self
            .dynos
            .values()
            .filter(|e| !e.rec.idle())
            .filter_map(|e| e.rec.spec.port)
            .collect();
        let bindable = |p| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok();
        match &self.network {
            Some(net) => net.allocate_port(&used, bindable).ok_or_else(|| {
                let r = self.cfg.port_range;
                Error::ResourceExhausted(Reason::NoFreePort, format!("no free port in {}-{}", r.first, r.last))
            }),
            None => free_port(self.cfg.port_range, &used, bindable),
        }
    }

    /// The lowest uid of `uid_range` no other dyno has.
    pub(super) fn allocate_uid(&self) -> Result<u32> {
        free_uid(self.cfg.uid_range, &self.uids())
    }

    /// A fresh uid and (for a web dyno) port for dyno `key`, down until now,
    /// as it starts again.
    pub(super) fn fresh_allocation(&self, key: &Key) -> Result<(u32, Option<u16>)> {
        let uid = self.allocate_uid()?;
        let web = self.dynos.get(key).is_some_and(|e| e.rec.spec.ptype == "web");
        let port = if web { Some(self.allocate_port()?) } else { None };
        Ok((uid, port))
    }

    /// Gives back a port [`Actor::fresh_allocation`] took for a start that
    /// was refused.
    pub(super) fn unreserve_port(&self, port: Option<u16>) {
        if let (Some(net), Some(port)) = (&self.network, port) {
            net.unreserve(port);
        }
    }

    /// Whether a dyno read back from disk may keep `uid`.
    pub(super) fn uid_is_valid(&self, uid: u32) -> bool {
        uid_is_valid(uid, self.cfg.uid_range, &self.uids())
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
