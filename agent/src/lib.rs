//! dynoagent: the per-host runtime agent of a Heroku-style platform, and
//! dynoctl, its command line.
//!
//! Module map (one concern each):
//! - [`config`]: TOML + environment + flags, validated all at once;
//! - [`supervisor`]: the dyno lifecycle as a pure state machine;
//! - [`engine`]: the actor that drives the state machines, spawns shims,
//!   persists dyno records and re-adopts runs after a restart;
//! - [`shim`]: the small single-threaded parent of one dyno run;
//! - [`jail`]: the syscall boundary (every raw libc call lives there);
//! - [`runs`]: a run's state directory, the agent/shim contract;
//! - [`logs`]: log line format, rotation, tail and follow;
//! - [`slug`]: where a dyno's `app/` comes from (paths, HTTP(S) fetch), the
//!   slug cache and its garbage collection; Procfiles;
//! - [`unpack`]: the hardened streaming unpacker of tarball slugs;
//! - [`api`]: the tonic services and their error mapping;
//! - [`daemon`]: `dynoagent`'s main loop; [`ctl`]: `dynoctl`;
//! - [`client`]: a gRPC channel over the Unix socket;
//! - [`cgroup`]: the dynos' cgroups (v1 and v2) behind one trait;
//! - [`ledger`]: the usage ledger in SQLite; [`meter`]: the thread that owns
//!   it and bills every open run at each slice boundary;
//! - [`host`]: capacity via sysinfo; [`names`]: input validation.

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
pub mod os;
pub mod report;
pub mod runs;
pub mod shim;
pub mod slug;
pub mod supervisor;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod time;
pub mod unpack;
