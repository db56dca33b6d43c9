//! DNS of an isolated dyno when the host's resolver listens on its own
//! loopback (systemd-resolved's `127.0.0.53`, a local dnsmasq): the dyno's
//! `127.0.0.1` is its own, so the agent writes the dyno's gateway into its
//! `/etc/resolv.conf` and the host's filter forwards port 53 there to the
//! resolver (issue 11, DESIGN §6 `network_dns`). Tried from inside a dyno:
//! - a name resolves, answered by the resolver on the host's loopback;
//! - the same path opens nothing else: a TCP service beside the resolver on
//!   the host's loopback stays out of reach through the gateway (while the
//!   host itself reaches it: the refusal is the filter's).

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};

use dyno_tests::*;

/// The answer of the test resolver for every A query.
const ANSWER: &str = "203.0.113.7";

/// A few lines of Python that answer every A query with [`ANSWER`] (and
/// every other query with no answer) over UDP.
const RESOLVER: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print("ready", flush=True)
while True:
    q, peer = s.recvfrom(512)
    i = 12
    while q[i] != 0:
        i += q[i] + 1
    qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
    answer = b""
    if qtype == 1:
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(sys.argv[2])
    head = struct.pack("!HHHHHH", struct.unpack("!H", q[:2])[0], 0x8180, 1, 1 if answer else 0, 0, 0)
    s.sendto(head + q[12:i + 5] + answer, peer)
"#;

/// The test resolver, ended (by its pid) when dropped.
struct Resolver(Child);

impl Resolver {
    fn start(addr: Ipv4Addr) -> Resolver {
        let mut child = Command::new("python3")
            .args(["-c", RESOLVER, &addr.to_string(), ANSWER])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the test resolver");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("piped"))
            .read_line(&mut line)
            .expect("the resolver's first line");
        assert_eq!(line.trim(), "ready", "the test resolver did not start on {addr}:53");
        Resolver(child)
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_resolver_on_the_hosts_loopback_answers_a_dyno_through_its_gateway_and_nothing_else_does() {
    require_root();
    // A loopback address of this test's own (all of 127/8 is the host's loopback).
    let pid = std::process::id();
    let local = Ipv4Addr::new(127, 53, (pid / 250 % 250) as u8, (pid % 250 + 2) as u8);
    let _resolver = Resolver::start(local);
    let beside = TcpListener::bind((local, 0)).expect("a TCP service beside the resolver");
    let beside_port = beside.local_addr().expect("its port").port();
    // The host reaches it: a refusal from the dyno is the filter's doing.
    std::net::TcpStream::connect((local, beside_port)).expect("the host reaches its loopback service");

    let a = TestAgent::start(&format!("network_dns = [\"{local}\"]"));
    let slug = a.slug("dns", &[]);
    let command = format!(
        "cat /etc/resolv.conf; nslookup dyno.example; \
         gw=$(awk '/^nameserver/ {{ print $2; exit }}' /etc/resolv.conf); \
         if nc -w 3 \"$gw\" {beside_port} </dev/null; then echo beside=reached; else echo beside=refused; fi; \
         exec sleep 600"
    );
    a.ctl_ok(&start_args("dns", "worker.1", &show(&slug), &["--command", &command]));
    let logs = wait_for("the dyno's DNS lookup and its probe of the service beside", || {
        let logs = texts(&a.ctl_ok(&["logs", "--app", "dns", "-n", "200"]));
        logs.iter().any(|l| l.starts_with("beside=")).then_some(logs)
    });

    // Its resolv.conf names its gateway (the network's first address), not
    // the host's loopback, which inside the dyno is the dyno's own.
    let (_, subnet) = dyno_tests::config::own_network(a.n);
    let gateway = subnet.replace(".0/24", ".1");
    let servers: Vec<&String> = logs.iter().filter(|l| l.starts_with("nameserver")).collect();
    assert_eq!(servers, [&format!("nameserver {gateway}")], "{logs:#?}");
    assert!(
        logs.iter().any(|l| l.contains(ANSWER)),
        "dyno.example did not resolve to {ANSWER} through {gateway}: {logs:#?}"
    );
    assert!(
        logs.iter().any(|l| l == "beside=refused"),
        "the dyno reached a host loopback service on port {beside_port} through its gateway: {logs:#?}"
    );

    a.ctl_ok(&["stop", "--all"]);
    a.wait_state("dns", "worker.1", "down");
    let left: Vec<_> = std::fs::read_dir(a.state.join("net"))
        .expect("the agent's net directory")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "the run's network left {left:?}");
}
