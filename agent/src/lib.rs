//! dynoagent: the per-host runtime agent of a Heroku-style platform, and
//! dynoctl, its command line.
//!
//! Module map, one concern a module, in the order a StartDyno request meets
//! them (the README's "Architecture" walks the whole path):
//! - [`daemon`]: `dynoagent`'s entry (flags, tracing, the shim dispatch),
//!   `run(config, sample, shutdown)` wiring, listeners and TLS, the sample app;
//! - [`api`]: the tonic services, request validation, the one
//!   start-from-slug path (`api::launch`), stream pumps, pb ↔ domain, the one
//!   error → status mapping; [`report`]: the push stream to a scheduler;
//! - [`slug`]: slug sources, HTTP(S) fetch, the cache and its GC, Procfiles;
//!   [`unpack`]: the hardened streaming unpacker of tarball slugs;
//! - [`engine`]: the actor that owns every dyno: the model, records and the
//!   event log, admission, launching and settling runs, re-adoption, metrics;
//! - [`supervisor`]: the dyno lifecycle as a pure state machine;
//! - [`shim`]: the single-threaded parent of one dyno run (session, output
//!   pump, exit record); [`runs`]: a run's directory, the agent ↔ shim contract;
//! - [`os`]: the syscall boundary: every raw syscall and every `unsafe`
//!   (fds, processes, procfs, the fork → exec child, and the jail: rootfs,
//!   privileges, seccomp, the dyno's init and its report to the shim);
//! - [`cgroup`]: the dynos' cgroups behind one trait (v1, v2, kill, probes);
//!   [`net`]: a network namespace per run through CNI, the host's filter;
//! - [`meter`]: the thread that bills every open run at each slice boundary
//!   into the [`ledger`] (SQLite);
//! - [`telemetry`]: the Prometheus endpoint (`metrics_listen`) and the
//!   agent's counters;
//! - [`logs`]: log line format, rotation, tail and follow;
//!   [`private`]: the state directory is root's alone (modes, fixed at start);
//! - [`config`]: file → environment → flags, validated all at once; sizes;
//! - [`time`]: the one clock and the one backoff; [`host`]: capacity;
//!   [`names`]: input validation; [`error`]: the library's error type;
//! - [`ctl`]: `dynoctl` (grammar, commands, rendering); [`client`]: a gRPC
//!   channel over the Unix socket.
//!
//! Only [`os`] may use `unsafe`: the workspace denies `unsafe_code`
//! everywhere else and `clippy::undocumented_unsafe_blocks` everywhere.

pub mod api;
pub mod cgroup;
pub mod client;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod engine;
pub mod error;
pub mod host;
pub mod ledger;
pub mod logs;
pub mod meter;
pub mod names;
pub mod net;
// The syscall boundary: the only module allowed `unsafe` (the workspace
// denies it everywhere else), each block with a `// SAFETY:` comment.
#[allow(unsafe_code)]
pub mod os;
pub mod private;
pub mod report;
pub mod runs;
pub mod shim;
pub mod slug;
pub mod supervisor;
pub mod telemetry;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod time;
pub mod unpack;
