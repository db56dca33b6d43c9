//! DNS of an isolated dyno when the host's resolver listens on its own
//! loopback (systemd-resolved's `127.0.0.53`, a local dnsmasq): the dyno's
//! `127.0.0.1` is its own, so the agent writes the dyno's gateway into its
//! `/etc/resolv.conf` and the host's filter forwards port 53 there to the
//! resolver (issue 11, DESIGN §6 `network_dns`). Tried from inside a dyno:
//! - a name resolves, answered by the resolver on the host's loopback;
//! - the same path opens nothing else: a TCP service beside the resolver on
//!   the host's loopback stays out of reach through the gateway (while the
//!   host itself reaches it: the refusal is the filter's).

use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use dyno_tests::netlab::DnsServer;
use dyno_tests::*;

/// The name the test resolver knows, and its answer.
const NAME: &str = "dyno.example";
const ANSWER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

#[test]
fn a_resolver_on_the_hosts_loopback_answers_a_dyno_through_its_gateway_and_nothing_else_does() {
    require_root();
    // A loopback address of this test's own (all of 127/8 is the host's loopback).
    let pid = std::process::id();
    let local = Ipv4Addr::new(127, 53, (pid / 250 % 250) as u8, (pid % 250 + 2) as u8);
    let resolver = DnsServer::start(
        UdpSocket::bind((local, 53)).expect("a resolver on the host's loopback, port 53"),
        NAME,
        ANSWER,
    );
    let beside = TcpListener::bind((local, 0)).expect("a TCP service beside the resolver");
    let beside_port = beside.local_addr().expect("its port").port();
    // The host reaches it: a refusal from the dyno is the filter's doing.
    std::net::TcpStream::connect((local, beside_port)).expect("the host reaches its loopback service");

    let a = TestAgent::start(&format!("network_dns = [\"{local}\"]"));
    let slug = a.slug("dns", &[]);
    let command = format!(
        "cat /etc/resolv.conf; nslookup {NAME}; \
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
        logs.iter().any(|l| l.contains(&ANSWER.to_string())),
        "{NAME} did not resolve to {ANSWER} through {gateway}: {logs:#?}"
    );
    // Asked by the dyno itself (its own address, not the host's).
    let peers = resolver.peers.lock().expect("peers").clone();
    assert!(
        peers
            .iter()
            .any(|p| p.to_string().starts_with(&subnet.replace(".0/24", "."))),
        "the resolver saw no query from the dyno's subnet {subnet}: {peers:?}"
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
