//! HTTP in the tests: the one loopback server (it lives in the agent crate,
//! `dyno_agent::testkit`, so that the agent's own unit tests use it too) and
//! a plain GET client for the dynos' web servers.

use std::io::{Read, Write};
use std::time::Duration;

pub use dyno_agent::testkit::{Reply, TestServer};

/// `GET <path>` over HTTP/1.0 to `127.0.0.1:<port>`: the whole response
/// (head and body), or what arrived within 5 s.
pub fn http_get(port: u64, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port as u16)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .expect("request");
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    response
}
