//! The network tests' world around a dyno: a [`Lab`], a network namespace
//! joined to the host by a veth pair, that stands for the internet (its
//! addresses are in 198.18.0.0/15, the benchmarking range, a /30 per lab);
//! [`TcpServer`]s and a [`DnsServer`] in it or on the host (threads of the
//! test process whose sockets live in the namespace they were made in); and
//! [`NetTrace`], what a test's runs set up, checked gone at the end.
//!
//! Everything is removed when dropped, also when a test fails: servers
//! stop, routes, the veth pair and the namespace are deleted.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::agent::TestAgent;
use crate::wait::{DEADLINE, poll};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Where the CNI plugins are (Debian's containernetworking-plugins).
pub const CNI_BIN: &str = "/usr/lib/cni";

/// Panics unless what the network tests need is here: a network test never
/// passes without having run.
pub fn require_network_tools() {
    for plugin in ["ptp", "host-local", "portmap"] {
        let p = Path::new(CNI_BIN).join(plugin);
        assert!(
            p.is_file(),
            "{} is missing: the network tests need Debian's containernetworking-plugins (scripts/test installs it)",
            p.display()
        );
    }
    for tool in ["ip", "iptables", "iptables-restore"] {
        let found = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
            .unwrap_or(false)
            || ["/usr/sbin", "/sbin"].iter().any(|d| Path::new(d).join(tool).is_file());
        assert!(
            found,
            "{tool} is missing: the network tests need iproute2 and iptables (scripts/test installs them)"
        );
    }
}

/// Runs a command, panicking with its stderr when it fails; returns stdout.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command whose failure does not matter (clean-up of what may be gone).
fn quietly(program: &str, args: &[&str]) {
    let _ = Command::new(program).args(args).output();
}

/// The host's own non-loopback IPv4 address (the source of its default route).
pub fn host_ipv4() -> Ipv4Addr {
    let out = sh("ip", &["-4", "route", "get", "1.1.1.1"]);
    word_after(&out, "src")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no source address in `ip route get 1.1.1.1`: {out}"))
}

/// The host's IPv6 addresses outside the dynos' namespaces, with a `%IFNAME`
/// scope for link-local ones (every interface, loopback excepted).
pub fn host_ipv6() -> Vec<String> {
    let out = sh("ip", &["-6", "-o", "addr", "show"]);
    let mut v = Vec::new();
    for line in out.lines() {
        let mut words = line.split_whitespace();
        let (Some(_), Some(ifname)) = (words.next(), words.next()) else {
            continue;
        };
        let Some(cidr) = word_after(line, "inet6") else {
            continue;
        };
        let addr = cidr.split('/').next().unwrap_or_default();
        if ifname == "lo" || addr == "::1" {
            continue;
        }
        let ifname = ifname.split('@').next().unwrap_or(ifname);
        if addr.starts_with("fe80") {
            v.push(format!("{addr}%{ifname}"));
        } else {
            v.push(addr.to_string());
        }
    }
    v
}

/// The word after `key` in `text`.
pub fn word_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            return words.next();
        }
    }
    None
}

/// The host interface a route to `addr` leaves by (a dyno's host-side veth).
pub fn route_dev(addr: Ipv4Addr) -> Option<String> {
    let out = Command::new("ip")
        .args(["-4", "route", "get", &addr.to_string()])
        .output()
        .ok()?;
    word_after(&String::from_utf8_lossy(&out.stdout), "dev").map(str::to_string)
}

/// The index of a host interface.
pub fn ifindex(name: &str) -> u32 {
    let p = Path::new("/sys/class/net").join(name).join("ifindex");
    std::fs::read_to_string(&p)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no interface {name} ({})", p.display()))
}

/// Runs `f` on a thread that joined the network namespace kept by `ns`
/// (sockets it makes live there for good).
pub fn in_netns<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(ns).unwrap_or_else(|e| panic!("{}: {e}", ns.display()));
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("the netns thread panicked")
}

/// A stand-in for the internet: a namespace `dynolab-<pid>-<n>` with `eth0`
/// (`lab_ip`), its peer on the host (`host_if`, `host_ip`), and a default
/// route back through the host.
pub struct Lab {
    pub name: String,
    pub host_if: String,
    pub host_ip: Ipv4Addr,
    pub lab_ip: Ipv4Addr,
    /// Host routes added by [`Lab::add_address`], deleted on drop.
    routes: Vec<String>,
}

impl Lab {
    pub fn new() -> Lab {
        require_network_tools();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let idx = ((pid % 1024) * 16 + n % 16) % 16384;
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + idx * 4;
        let lab = Lab {
            name: format!("dynolab-{pid}-{n}"),
            host_if: format!("dl{}x{n}", pid % 100000),
            host_ip: Ipv4Addr::from(base + 1),
            lab_ip: Ipv4Addr::from(base + 2),
            routes: Vec::new(),
        };
        // Leftovers of an earlier process with this pid.
        quietly("ip", &["link", "del", &lab.host_if]);
        quietly("ip", &["netns", "del", &lab.name]);
        sh("ip", &["netns", "add", &lab.name]);
        let ns = lab.name.as_str();
        sh(
            "ip",
            &[
                "link",
                "add",
                &lab.host_if,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            ],
        );
        sh(
            "ip",
            &["addr", "add", &format!("{}/30", lab.host_ip), "dev", &lab.host_if],
        );
        sh("ip", &["link", "set", &lab.host_if, "up"]);
        sh(
            "ip",
            &["-n", ns, "addr", "add", &format!("{}/30", lab.lab_ip), "dev", "eth0"],
        );
        sh("ip", &["-n", ns, "link", "set", "eth0", "up"]);
        sh("ip", &["-n", ns, "link", "set", "lo", "up"]);
        sh(
            "ip",
            &["-n", ns, "route", "add", "default", "via", &lab.host_ip.to_string()],
        );
        lab
    }

    /// The file that keeps the namespace.
    pub fn ns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Adds `addr` to the lab (on its `lo`) with a host route to it through
    /// the lab's veth, e.g. a cloud's metadata address.
    pub fn add_address(&mut self, addr: Ipv4Addr) {
        sh(
            "ip",
            &["-n", &self.name, "addr", "add", &format!("{addr}/32"), "dev", "lo"],
        );
        let dst = format!("{addr}/32");
        sh(
            "ip",
            &[
                "route",
                "replace",
                &dst,
                "via",
                &self.lab_ip.to_string(),
                "dev",
                &self.host_if,
            ],
        );
        self.routes.push(dst);
    }

    /// A TCP listener on `addr:port` (0: any) inside the lab.
    pub fn listen(&self, addr: Ipv4Addr, port: u16) -> TcpListener {
        in_netns(&self.ns_path(), move || {
            TcpListener::bind((addr, port)).expect("bind in the lab")
        })
    }

    /// A UDP socket on `addr:port` inside the lab.
    pub fn udp(&self, addr: Ipv4Addr, port: u16) -> UdpSocket {
        in_netns(&self.ns_path(), move || {
            UdpSocket::bind((addr, port)).expect("bind udp in the lab")
        })
    }

    /// Connects from the lab to `to` and returns the greeting of a
    /// [`TcpServer`] there.
    pub fn greet(&self, to: SocketAddr) -> Result<String, String> {
        in_netns(&self.ns_path(), move || TcpServer::greet_from(to))
    }

    /// `GET /` from the lab (a client on the internet) to `to`: the
    /// response, or why there is none.
    pub fn http_get(&self, to: SocketAddr) -> Result<String, String> {
        in_netns(&self.ns_path(), move || http_get_at(to))
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for dst in &self.routes {
            quietly("ip", &["route", "del", dst, "dev", &self.host_if]);
        }
        quietly("ip", &["link", "del", &self.host_if]);
        quietly("ip", &["netns", "del", &self.name]);
    }
}

/// `GET /` over HTTP/1.0 to `to` (5 s at most): the whole response, or why
/// there is none.
pub fn http_get_at(to: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).map_err(|e| format!("{to}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("{to}: {e}"))?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(|e| format!("{to}: {e}"))?;
    Ok(response)
}

/// A TCP server on a thread: greets every connection with `peer=<ip>
/// <tag>\n` and keeps it open until the client closes it or the server is
/// dropped; remembers its peers.
pub struct TcpServer {
    pub addr: SocketAddr,
    pub peers: Arc<Mutex<Vec<IpAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpServer {
    pub fn start(listener: TcpListener, tag: &str) -> TcpServer {
        let addr = listener.local_addr().expect("local addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let tag = tag.to_string();
        let thread = {
            let (stop, peers) = (stop.clone(), peers.clone());
            std::thread::spawn(move || {
                let mut open: Vec<TcpStream> = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((mut s, peer)) => {
                            peers.lock().unwrap().push(peer.ip());
                            let _ = s.write_all(format!("peer={} {tag}\n", peer.ip()).as_bytes());
                            let _ = s.set_nonblocking(true);
                            open.push(s);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                    // Closed by the client: read returns 0.
                    open.retain_mut(|s| {
                        let mut buf = [0u8; 512];
                        !matches!(s.read(&mut buf), Ok(0))
                    });
                }
            })
        };
        TcpServer {
            addr,
            peers,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn peers(&self) -> Vec<IpAddr> {
        self.peers.lock().unwrap().clone()
    }

    /// Connects from here and returns the greeting (a positive control).
    pub fn greet_from(to: SocketAddr) -> Result<String, String> {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).map_err(|e| format!("{to}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).map_err(|e| format!("{to}: {e}"))?;
        Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A DNS server on a thread answering A queries for one name with one
/// address (AAAA: no answer; other names: NXDOMAIN); remembers the sources
/// of the queries.
pub struct DnsServer {
    pub peers: Arc<Mutex<Vec<IpAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    pub fn start(socket: UdpSocket, name: &str, answer: Ipv4Addr) -> DnsServer {
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let thread = {
            let (stop, peers) = (stop.clone(), peers.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    peers.lock().unwrap().push(from.ip());
                    if let Some(reply) = dns_reply(&buf[..n], &name, answer) {
                        let _ = socket.send_to(&reply, from);
                    }
                }
            })
        };
        DnsServer {
            peers,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The answer to one DNS query (RFC 1035 §4.1), `None` for what is not one.
fn dns_reply(q: &[u8], name: &str, answer: Ipv4Addr) -> Option<Vec<u8>> {
    if q.len() < 12 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question = &q[12..i + 4];
    let matches = labels.join(".") == name;
    let answers = u16::from(matches && qtype == 1);
    let rcode = if matches { 0 } else { 3 };
    let mut r = Vec::new();
    r.extend_from_slice(&q[0..2]);
    r.extend_from_slice(&[0x81, 0x80 | rcode]);
    r.extend_from_slice(&[0, 1, 0, answers as u8, 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if answers == 1 {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&answer.octets());
    }
    Some(r)
}

/// One network a test's run had: its lease id, address and host veth.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    pub id: String,
    pub address: Option<Ipv4Addr>,
    pub veth: Option<String>,
}

/// The networks of an agent's runs a test has seen (from the lease records
/// in `<state>/net/`), to check at the end that none of them is left. A
/// watching trace ([`NetTrace::watch`]) looks every 20 ms on a thread of its
/// own, so that one-off runs' short-lived networks are seen too.
pub struct NetTrace {
    state: PathBuf,
    seen: Arc<Mutex<BTreeMap<String, Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The lease records in `<state>/net/` now: (id, address).
pub fn lease_records_in(state: &Path) -> Vec<(String, Option<Ipv4Addr>)> {
    let dir = state.join("net");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let id = p.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        let address = std::fs::read_to_string(&p)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| {
                v["result"]["ips"][0]["address"]
                    .as_str()
                    .and_then(|s| s.split('/').next()?.parse().ok())
            });
        out.push((id, address));
    }
    out.sort();
    out
}

/// The lease records of an agent now: (id, address).
pub fn lease_records(a: &TestAgent) -> Vec<(String, Option<Ipv4Addr>)> {
    lease_records_in(&a.state)
}

/// The `.ns` files in `<state>/net/`.
pub fn ns_files(a: &TestAgent) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(a.state.join("net"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ns"))
        .collect();
    v.sort();
    v
}

/// The host-local IPAM files (`/var/lib/cni/networks/<network>/<ip>`) whose
/// container id is `id`.
pub fn ipam_files_of(network: &str, id: &str) -> Vec<PathBuf> {
    let dir = Path::new("/var/lib/cni/networks").join(network);
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.lines().next().is_some_and(|l| l.trim() == id)))
        .collect()
}

/// Adds the leases recorded in `state` to `seen` (a veth once it is known).
fn look(state: &Path, seen: &Mutex<BTreeMap<String, Seen>>) {
    for (id, address) in lease_records_in(state) {
        let known = seen.lock().unwrap().get(&id).is_some_and(|s| s.veth.is_some());
        if known {
            continue;
        }
        let veth = address.and_then(route_dev).filter(|d| d.starts_with("veth"));
        let mut seen = seen.lock().unwrap();
        let entry = seen.entry(id.clone()).or_insert(Seen {
            id,
            address,
            veth: None,
        });
        entry.address = entry.address.or(address);
        if entry.veth.is_none() {
            entry.veth = veth;
        }
    }
}

impl NetTrace {
    /// A trace of what the agent has now (no watching).
    pub fn snapshot(a: &TestAgent) -> NetTrace {
        let t = NetTrace {
            state: a.state.clone(),
            seen: Arc::default(),
            stop: Arc::new(AtomicBool::new(true)),
            thread: None,
        };
        t.observe();
        t
    }

    /// A trace that watches the agent's leases until dropped.
    pub fn watch(a: &TestAgent) -> NetTrace {
        let mut t = NetTrace::snapshot(a);
        t.stop.store(false, Ordering::SeqCst);
        let (state, seen, stop) = (t.state.clone(), t.seen.clone(), t.stop.clone());
        t.thread = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                look(&state, &seen);
                std::thread::sleep(Duration::from_millis(20));
            }
        }));
        t
    }

    /// Records every lease the agent has now.
    pub fn observe(&self) {
        look(&self.state, &self.seen);
    }

    /// The networks seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().values().cloned().collect()
    }

    /// What is left of the seen networks: records, namespace files, veths,
    /// IPAM files of `network`, mounts; empty when nothing.
    pub fn leftovers(&self, a: &TestAgent, network: &str) -> Vec<String> {
        let mut left = Vec::new();
        let net = a.state.join("net");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for s in self.seen() {
            for ext in ["json", "ns"] {
                let p = net.join(format!("{}.{ext}", s.id));
                if p.exists() {
                    left.push(format!("{}", p.display()));
                }
            }
            if mounts.contains(&format!("{}.ns", s.id)) {
                left.push(format!("a mount of {}.ns", s.id));
            }
            if let Some(v) = &s.veth
                && Path::new("/sys/class/net").join(v).exists()
            {
                left.push(format!("host veth {v} (of {})", s.id));
            }
            for f in ipam_files_of(network, &s.id) {
                left.push(format!("IPAM lease {} (of {})", f.display(), s.id));
            }
        }
        left
    }

    /// Stops every dyno of the agent and waits (polling) until nothing of
    /// the networks seen (and no `.ns` file at all) is left; panics naming
    /// what is.
    pub fn stop_all_and_assert_clean(&self, a: &TestAgent, network: &str) {
        self.observe();
        let seen = self.seen();
        assert!(!seen.is_empty(), "the test saw no dyno network at all");
        assert!(
            seen.iter().any(|s| s.veth.is_some()),
            "the test saw no dyno network with a host veth: {seen:?}"
        );
        a.ctl_ok(&["stop", "--all"]);
        let r = poll(DEADLINE, Duration::from_millis(100), || {
            let mut left = self.leftovers(a, network);
            left.extend(ns_files(a).iter().map(|p| format!("namespace file {}", p.display())));
            let running: Vec<String> = a
                .ps()
                .iter()
                .filter(|d| d["state"] != "down" && d["state"] != "crashed")
                .map(|d| format!("{}/{} {}", d["app"], d["name"], d["state"]))
                .collect();
            if left.is_empty() && running.is_empty() {
                Ok(())
            } else {
                Err(format!("left: {left:?}; dynos not down: {running:?}"))
            }
        });
        if let Err(e) = r {
            panic!(
                "after every dyno stopped, their networks are not all torn down: {e}\n--- agent log ---\n{}",
                a.agent_log()
            );
        }
    }
}

impl Drop for NetTrace {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
