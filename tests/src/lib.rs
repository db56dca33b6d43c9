//! The test kit of the end-to-end tests (`tests/*.rs`) and benchmarks
//! (`benches/*.rs`), which run the real `dynoagent` and `dynoctl` as root.
//! Each of them says `use dyno_tests::*;` (or names what it uses).
//!
//! - [`agent`]: [`TestAgent`], the harness: starts and stops an agent in a
//!   temporary directory, runs dynoctl against it (the words of its
//!   `start` and `run`: [`start_args`], [`run_args`]), gRPC clients;
//!   [`config`]: its configuration file; [`cleanup`]: what dropping it
//!   removes; [`env`]: root, the binaries under test, the stack image;
//! - [`wait`]: [`wait_for`] and [`wait_ok`] poll a condition up to
//!   [`DEADLINE`]; [`nothing_happens_for`] is the bounded wait that proves
//!   nothing happens;
//! - [`procs`]: processes seen from the host; [`grpc`]: request builders,
//!   the `WatchEvents` stream and raw calls; [`stock`]: clients nobody here
//!   wrote (grpcio, grpcurl);
//! - [`http`]: the one loopback HTTP server ([`TestServer`], shared with the
//!   agent's unit tests) and a GET client; [`tarball`]: the one tar.gz
//!   builder;
//! - [`ledger`]: the usage ledger's records, the runs' lives, and the
//!   billing check of the fault tests;
//! - [`probe`]: static C probe programs, for raw syscalls inside a dyno;
//! - [`netlab`]: the network tests' stand-in for the internet, servers in it
//!   and on the host, and the check that no dyno network is left;
//! - [`bench`]: settings and statistics of the benchmarks.

pub mod agent;
pub mod bench;
pub mod cleanup;
pub mod config;
pub mod env;
pub mod grpc;
pub mod http;
pub mod ledger;
pub mod netlab;
pub mod probe;
pub mod procs;
pub mod stock;
pub mod tarball;
pub mod wait;

pub use agent::{TestAgent, log_stamp, run_args, show, start_args, texts};
pub use config::FAST;
pub use env::{agent_bin, ctl_bin, require_root, stack};
pub use grpc::{
    blocking, get_dyno, next_within, raw_unary, selector, start_req, summarize, watch_events, watch_series,
};
pub use http::{Reply, TestServer, http_get};
pub use procs::{alive, pid_namespace_members, pid_of, signal, wait_for_handler};
pub use stock::{grpcurl, python_with_grpcio, stock_script};
pub use wait::{DEADLINE, nothing_happens_for, poll, wait_for, wait_ok};

/// A worker's command: sleeps, never exits on its own.
pub const SLEEPER: &str = "exec sleep 600";

/// A web dyno's command: busybox httpd serving the slug's `app/` on `$PORT`.
pub const WEB: &str = "exec busybox httpd -f -p $PORT -h .";
