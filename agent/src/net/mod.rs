//! A network namespace per dyno run (`network = "isolated"`), set up and
//! torn down through CNI.
//!
//! A run's network is a [`Lease`]: a namespace kept by a file
//! (`<state-dir>/net/<id>.ns`), the CNI chain's result for it (its address),
//! the `$PORT` it publishes, and the run it belongs to, recorded in
//! `<state-dir>/net/<id>.json` *before* the chain runs, so that whatever a
//! crash leaves behind is found and deleted (CNI DEL) at the next start.
//! Leases of live runs survive the agent (the namespace is a mount, the
//! veth and rules are the kernel's).
//!
//! Plugin execs cost tens of milliseconds each, so a small pool of leases
//! is prepared ahead ([`pool`]): a worker run takes a prepared namespace; a
//! new web dyno takes a prepared one with its port already published (pool
//! ports come from the top of `port_range`, dynos' own from the bottom).
//!
//! - here: [`Network`], leases, setup, release, sweep at start;
//! - [`cni`]: the conflist and the plugin protocol;
//! - [`filter`]: the host's iptables rules of what a dyno may reach;
//! - [`pool`]: prepared leases and their ports.

pub mod cni;
pub mod filter;
mod pool;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{error, info, warn};

use self::cni::{Attachment, Conflist, Runner};
use crate::config::{Config, NetworkMode, Range};
use crate::os::netns;

/// The agent's handle to the dynos' networks.
pub type NetworkRef = Arc<Network>;

/// One run's network (or a prepared one no run has yet).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// Also the CNI container id.
    pub id: String,
    /// The file that keeps the namespace.
    pub netns: PathBuf,
    /// `$PORT`, published on the host.
    pub port: Option<u16>,
    /// The run it belongs to; `None` while it waits in the pool. On disk
    /// only for leases made for a run (a prepared one's run is known from
    /// the run's spec: its `netns`).
    pub run: Option<String>,
    /// The chain's ADD result (`None` until ADD succeeded).
    pub result: Option<Value>,
}

impl Lease {
    /// The dyno's own address.
    pub fn address(&self) -> Option<Ipv4Addr> {
        self.result.as_ref().and_then(cni::ipv4_of)
    }
}

/// A lease a run will use, before it is set up.
#[derive(Clone, Debug)]
pub struct Claim {
    pub id: String,
    pub netns: PathBuf,
    port: Option<u16>,
    run: String,
}

/// The dynos' networks: the conflist, the plugin runner, the leases and
/// the pool.
pub struct Network {
    list: Conflist,
    runner: Runner,
    dir: PathBuf,
    /// The host's filter, installed at start and checked again every
    /// [`FILTER_CHECK`] (a firewall reload on the host drops its jumps).
    rules: filter::Rules,
    /// Nameservers written into each dyno's `/etc/resolv.conf` (a loopback
    /// one as the dyno's gateway).
    nameservers: Vec<Ipv4Addr>,
    port_range: Range,
    pool_size: usize,
    state: Mutex<State>,
    refill: tokio::sync::Notify,
    /// This agent's start (µs since the epoch): lease ids of two agent
    /// lifetimes never collide.
    epoch: u64,
}

#[derive(Default)]
struct State {
    leases: HashMap<String, Lease>,
    /// Prepared leases without a port, and with one (by port).
    ready_workers: Vec<String>,
    ready_web: Vec<String>,
    /// Prepared web leases handed to a dyno that has not run yet, by port.
    reserved: HashMap<u16, String>,
    /// Ports the pool holds (prepared, reserved or being prepared).
    pool_ports: BTreeSet<u16>,
    /// Ports dynos hold (as of the last allocation).
    dyno_ports: HashSet<u16>,
    next: u64,
}

impl Network {
    /// Reads the CNI chain and the lease records, and installs the host's
    /// filter. `None` with `network = "host"`. Fails (naming the key or the
    /// file) when the network cannot work here.
    pub async fn open(cfg: &Config) -> anyhow::Result<Option<NetworkRef>> {
        let Some((net, rules)) = Network::load(cfg)? else {
            return Ok(None);
        };
        rules.install().await.map_err(anyhow::Error::msg)?;
        if net.nameservers.is_empty() {
            warn!("no IPv4 nameserver in network_dns or the host's /etc/resolv.conf: dynos resolve no names");
        }
        info!(
            chain = %net.list.origin,
            network = %net.list.name,
            subnets = ?rules.subnets,
            nameservers = ?net.nameservers,
            leases = net.lock().leases.len(),
            "isolated dyno networks"
        );
        Ok(Some(net))
    }

    /// Tears down every network recorded in a state directory (the test
    /// kit's clean-up after an agent it killed; an agent's own start keeps
    /// live runs' networks, see [`Network::sweep`]); with `filter`, also
    /// removes the network's chains from the host (decommissioning it).
    pub async fn release_all(cfg: &Config, filter: bool) -> anyhow::Result<()> {
        if let Some((net, rules)) = Network::load(cfg)? {
            net.sweep(&HashMap::new()).await;
            if filter {
                rules.uninstall().await;
            }
        }
        Ok(())
    }

    /// The chain, the lease records and the filter's rules (not installed).
    fn load(cfg: &Config) -> anyhow::Result<Option<(NetworkRef, filter::Rules)>> {
        if cfg.network == NetworkMode::Host {
            return Ok(None);
        }
        let list = Conflist::load(cfg.cni_config.as_deref()).map_err(anyhow::Error::msg)?;
        for t in list.types() {
            let bin = cfg.cni_bin_dir.join(t);
            if !bin.is_file() {
                anyhow::bail!(
                    "{}: plugin {t:?} is not in cni_bin_dir {} (Debian: apt-get install containernetworking-plugins)",
                    list.origin,
                    cfg.cni_bin_dir.display()
                );
            }
        }
        if list.name.len() > filter::Rules::NAME_MAX {
            anyhow::bail!(
                "{}: network name {:?} is longer than {} characters (the host's filter chains are named after it)",
                list.origin,
                list.name,
                filter::Rules::NAME_MAX
            );
        }
        let subnets: Vec<String> = list.subnets().into_iter().filter(|s| is_v4_cidr(s)).collect();
        if subnets.is_empty() {
            anyhow::bail!(
                "{}: no IPv4 `subnet` in any plugin's ipam: the agent filters what dynos reach by their subnet",
                list.origin
            );
        }
        let nameservers = match &cfg.network_dns {
            Some(list) => list.clone(),
            None => host_nameservers(Path::new("/etc/resolv.conf")),
        };
        let v4 = |l: &[String]| l.iter().filter(|c| is_v4_cidr(c)).cloned().collect::<Vec<_>>();
        let rules = filter::Rules {
            network: list.name.clone(),
            subnets,
            dns: nameservers
                .iter()
                .filter(|n| !n.is_loopback())
                .map(Ipv4Addr::to_string)
                .collect(),
            local_dns: nameservers.iter().find(|n| n.is_loopback()).map(Ipv4Addr::to_string),
            allow: v4(&cfg.network_allow),
            deny: v4(&cfg.network_deny),
            max_conns: cfg.network_max_connections,
        };
        let dir = cfg.state_dir.join("net");
        crate::private::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        let mut state = State::default();
        for lease in load_leases(&dir) {
            state.leases.insert(lease.id.clone(), lease);
        }
        let net = Arc::new(Network {
            rules: rules.clone(),
            runner: Runner {
                bin_dir: cfg.cni_bin_dir.clone(),
            },
            list,
            dir,
            nameservers,
            port_range: cfg.port_range,
            pool_size: cfg.network_pool,
            state: Mutex::new(state),
            refill: tokio::sync::Notify::new(),
            epoch: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
        });
        Ok(Some((net, rules)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file that keeps lease `id`'s namespace.
    fn netns_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.ns"))
    }

    fn record(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn new_id(&self, state: &mut State) -> String {
        state.next += 1;
        format!("dn-{:x}-{}", self.epoch, state.next)
    }

    /// The `resolv.conf` of lease `id` (bind-mounted on the dyno's
    /// `/etc/resolv.conf`).
    pub fn resolv_conf_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.resolv"))
    }

    /// Writes a lease's `resolv.conf` (0644: the dyno reads it through its
    /// bind mount): the nameservers, a loopback one replaced by the dyno's
    /// gateway (where the host's filter forwards port 53 to it).
    fn write_resolv_conf(&self, lease: &Lease) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let gateway = lease.result.as_ref().and_then(cni::gateway_of);
        let mut text = String::from("# written by dynoagent (network_dns)\n");
        let mut listed = Vec::new();
        for ns in &self.nameservers {
            // Loopback resolvers are all reached at the gateway (the first
            // one answers: see the filter's DNS chain).
            let server = if ns.is_loopback() { gateway } else { Some(*ns) };
            if let Some(server) = server.filter(|s| !listed.contains(s)) {
                listed.push(server);
                text.push_str(&format!("nameserver {server}\n"));
            }
        }
        let path = self.resolv_conf_of(&lease.id);
        let tmp = path.with_extension("resolv.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, &path)
    }

    /// The address of `run`'s network, once set up.
    pub fn address_of(&self, run: &str) -> Option<Ipv4Addr> {
        let state = self.lock();
        state
            .leases
            .values()
            .find(|l| l.run.as_deref() == Some(run))
            .and_then(Lease::address)
    }

    /// Picks the network of run `run` (publishing `port`): a prepared one
    /// from the pool when there is one (then [`Network::setup`] has nothing
    /// left to do), else a new one to set up.
    pub fn claim(&self, run: &str, port: Option<u16>) -> Claim {
        let mut state = self.lock();
        let prepared = match port {
            Some(p) => state.reserved.remove(&p).or_else(|| {
                let i = state.ready_web.iter().position(|id| state.leases[id].port == Some(p))?;
                Some(state.ready_web.remove(i))
            }),
            None => state.ready_workers.pop(),
        };
        let id = match prepared {
            Some(id) => {
                if let Some(p) = port {
                    state.pool_ports.remove(&p);
                }
                // The run is known in memory only (no write on the start path);
                // after a restart, live runs' specs say which namespace is theirs.
                let lease = state.leases.get_mut(&id).expect("pool entries are leases");
                lease.run = Some(run.to_string());
                id
            }
            None => self.new_id(&mut state),
        };
        drop(state);
        self.refill.notify_one();
        Claim {
            netns: self.netns_of(&id),
            id,
            port,
            run: run.to_string(),
        }
    }

    /// Sets up a claimed network (nothing to do for a prepared one). On a
    /// failure nothing of it is left.
    pub async fn setup(&self, claim: &Claim) -> Result<Lease, String> {
        if let Some(lease) = self.lock().leases.get(&claim.id)
            && lease.result.is_some()
        {
            return Ok(lease.clone());
        }
        self.create(&claim.id, claim.port, Some(claim.run.clone())).await
    }

    /// Creates, records and adds a lease.
    async fn create(&self, id: &str, port: Option<u16>, run: Option<String>) -> Result<Lease, String> {
        let mut lease = Lease {
            id: id.to_string(),
            netns: self.netns_of(id),
            port,
            run,
            result: None,
        };
        // Recorded first: a crash from here on leaves something to find.
        crate::runs::write_json_atomic(&self.record(id), &lease)
            .map_err(|e| format!("{}: {e}", self.record(id).display()))?;
        self.lock().leases.insert(id.to_string(), lease.clone());
        let path = lease.netns.clone();
        let made = tokio::task::spawn_blocking(move || netns::create(&path))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| format!("creating the network namespace {}: {e}", lease.netns.display())));
        let added = match made {
            Ok(()) => self.runner.add(&self.list, &self.attachment(&lease)).await,
            Err(e) => Err(e),
        };
        match added {
            Ok(result) => {
                lease.result = Some(result);
                let finished = self.finish(&lease).and_then(|()| {
                    crate::runs::write_json_atomic(&self.record(id), &lease).map_err(|e| (self.record(id), e))
                });
                if let Err((path, e)) = finished {
                    let why = format!("{}: {e}", path.display());
                    self.release(lease).await;
                    return Err(why);
                }
                self.lock().leases.insert(id.to_string(), lease.clone());
                Ok(lease)
            }
            Err(e) => {
                self.release(lease).await;
                Err(e)
            }
        }
    }

    /// What a lease needs beside the chain: its `resolv.conf`, and with a
    /// loopback resolver, `route_localnet` on the host's end of its link (so
    /// that the filter may forward the dyno's queries to `127.0.0.0/8`).
    fn finish(&self, lease: &Lease) -> Result<(), (PathBuf, std::io::Error)> {
        self.write_resolv_conf(lease)
            .map_err(|e| (self.resolv_conf_of(&lease.id), e))?;
        if self.nameservers.iter().any(Ipv4Addr::is_loopback) {
            for iface in lease.result.as_ref().map(cni::host_interfaces).unwrap_or_default() {
                let knob = PathBuf::from(format!("/proc/sys/net/ipv4/conf/{iface}/route_localnet"));
                std::fs::write(&knob, "1").map_err(|e| (knob, e))?;
            }
        }
        Ok(())
    }

    fn attachment<'a>(&self, lease: &'a Lease) -> Attachment<'a> {
        Attachment {
            container_id: &lease.id,
            netns: &lease.netns,
            port: lease.port,
        }
    }

    /// Tears down `run`'s network, if it has one.
    pub async fn release_run(&self, run: &str) {
        let lease = {
            let state = self.lock();
            state.leases.values().find(|l| l.run.as_deref() == Some(run)).cloned()
        };
        if let Some(lease) = lease {
            self.release(lease).await;
        }
    }

    /// CNI DEL, then the namespace and the record. A failed DEL keeps the
    /// record, so that the next start tries again.
    async fn release(&self, lease: Lease) {
        // Plugins' iptables calls can fail while other writers hold the
        // ruleset (several agents, a busy host): DEL is idempotent, so it is
        // tried again before the lease is left for the next start.
        let mut deleted = Err(String::new());
        for (attempt, pause) in DEL_RETRIES.iter().enumerate() {
            deleted = self
                .runner
                .del(&self.list, &self.attachment(&lease), lease.result.as_ref())
                .await;
            match &deleted {
                Ok(()) => break,
                Err(e) if attempt + 1 < DEL_RETRIES.len() => {
                    warn!(lease = %lease.id, error = %e, "CNI DEL failed; trying again");
                    tokio::time::sleep(*pause).await;
                }
                Err(_) => {}
            }
        }
        self.lock().leases.remove(&lease.id);
        match deleted {
            Ok(()) => {
                if let Err(e) = netns::remove(&lease.netns) {
                    error!(lease = %lease.id, error = %e, "cannot remove a network namespace");
                }
                let _ = std::fs::remove_file(self.resolv_conf_of(&lease.id));
                if let Err(e) = std::fs::remove_file(self.record(&lease.id))
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    warn!(lease = %lease.id, error = %e, "cannot remove a network record");
                }
            }
            Err(e) => {
                error!(lease = %lease.id, run = ?lease.run, error = %e, "CNI DEL failed; retried at the next start")
            }
        }
    }

    /// At start, once runs are re-adopted: `live` names the namespace of
    /// every live run. Releases every lease no live run holds (the pool's,
    /// the dead runs', a crash's half-made ones) and namespace files
    /// without a record.
    pub async fn sweep(&self, live: &HashMap<String, PathBuf>) {
        let stale: Vec<Lease> = {
            let mut state = self.lock();
            let mut stale = Vec::new();
            for lease in state.leases.values_mut() {
                match live.iter().find(|(_, ns)| **ns == lease.netns) {
                    Some((run, _)) => lease.run = Some(run.clone()),
                    None => stale.push(lease.clone()),
                }
            }
            stale
        };
        if !stale.is_empty() {
            info!(leases = stale.len(), "tearing down networks no live run holds");
        }
        for lease in stale {
            self.release(lease).await;
        }
        let known: HashSet<PathBuf> = self.lock().leases.values().map(|l| l.netns.clone()).collect();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "ns") && !known.contains(&path) {
                warn!(path = %path.display(), "removing a network namespace without a record");
                let _ = netns::remove(&path);
                let _ = std::fs::remove_file(path.with_extension("resolv"));
            }
        }
    }
}

/// How often the host's filter is checked (and put back when something on
/// the host removed it).
pub const FILTER_CHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Pauses between the attempts of a CNI DEL (one attempt per entry).
const DEL_RETRIES: [std::time::Duration; 4] = [
    std::time::Duration::from_millis(100),
    std::time::Duration::from_millis(300),
    std::time::Duration::from_millis(1000),
    std::time::Duration::ZERO,
];

/// Whether `s` is an IPv4 CIDR (`a.b.c.d/n`) or address.
pub fn is_v4_cidr(s: &str) -> bool {
    let (addr, len) = s.split_once('/').unwrap_or((s, "32"));
    addr.parse::<Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 32)
}

/// The IPv4 nameservers of a `resolv.conf`.
pub fn host_nameservers(path: &Path) -> Vec<Ipv4Addr> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

fn load_leases(dir: &Path) -> Vec<Lease> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match crate::runs::read_json::<Lease>(&path) {
            Ok(Some(l)) => out.push(l),
            Ok(None) => {}
            Err(e) => {
                // Its id is its name: enough for a DEL without a result.
                let id = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
                error!(path = %path.display(), error = %e, "unreadable network record: torn down");
                out.push(Lease {
                    netns: dir.join(format!("{id}.ns")),
                    id,
                    port: None,
                    run: None,
                    result: None,
                });
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
