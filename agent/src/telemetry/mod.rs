//! The agent's figures for Prometheus (DESIGN §10a): counters the agent
//! bumps as things happen (starts and their latency, restarts by reason, OOM
//! kills, slug fetch errors, the slug cache's size), and, at each scrape, a
//! [`Scrape`] of every dyno the engine holds (state, restarts, CPU, memory,
//! quota, OOM kills, labelled `app`, `dyno`, `type`, `size`), encoded with
//! the official client (`prometheus-client`) in the text exposition format.
//!
//! - here: the counters, [`Scrape`] and [`encode`];
//! - `serve`: the HTTP listener of `metrics_listen` (`GET /metrics`).
//!
//! The counters are process-wide (one agent per process, as the client's
//! usual global registry): the slug cache and the engine bump them without
//! being handed a registry. A scrape builds a small registry around clones
//! of them (the clones share the values) and one collector that writes the
//! per-dyno series straight from the [`Scrape`]: nothing per dyno is kept
//! between scrapes, and a removed dyno leaves no stale series.

mod serve;

use std::sync::LazyLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use self::serve::serve;

/// The content type of what [`encode`] writes (text format 0.0.4).
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The lifecycle states, each always present in `dynoagent_dynos`.
const STATES: [&str; 4] = ["starting", "up", "crashed", "down"];

/// The agent's own counters, shared by everything that bumps them.
#[derive(Debug)]
pub struct Counters {
    starts: Counter,
    start_latency: Histogram,
    restarts: Family<[(&'static str, &'static str); 1], Counter>,
    oom_kills: Counter,
    fetch_errors: Counter,
    slug_cache_bytes: Gauge,
}

static COUNTERS: LazyLock<Counters> = LazyLock::new(|| Counters {
    starts: Counter::default(),
    // 1 ms to ~33 s: a jailed start is milliseconds, a cold slug seconds.
    start_latency: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 16,
    )),
    restarts: Family::default(),
    oom_kills: Counter::default(),
    fetch_errors: Counter::default(),
    slug_cache_bytes: Gauge::default(),
});

/// A run's command was exec'd, `latency` seconds after its spawn was asked for.
pub fn started(latency: f64) {
    COUNTERS.starts.inc();
    COUNTERS.start_latency.observe(latency.max(0.0));
}

/// A dyno started a new run for `reason` (`restart`, `cycle`,
/// `crash_restart`, `spawn_retry`).
pub fn restarted(reason: &'static str) {
    COUNTERS.restarts.get_or_create(&[("reason", reason)]).inc();
}

/// A run ended killed by its memory limit.
pub fn oom_killed() {
    COUNTERS.oom_kills.inc();
}

/// A slug download failed.
pub fn fetch_failed() {
    COUNTERS.fetch_errors.inc();
}

/// The slug cache now holds this many bytes.
pub fn slug_cache_bytes(bytes: u64) {
    COUNTERS.slug_cache_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
}

/// One dyno as a scrape shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DynoRow {
    pub app: String,
    pub dyno: String,
    pub ptype: String,
    pub size: String,
    pub state: &'static str,
    /// New runs started after the first.
    pub restarts: u64,
    /// Runs of this dyno the memory limit killed since the agent started.
    pub oom_kills: u64,
    /// CPU seconds of the current run (at the last metrics sample).
    pub cpu_seconds: f64,
    /// Memory (RAM charged + swap) of the current run, at the last sample.
    pub memory_bytes: u64,
    pub memory_quota_bytes: u64,
    pub memory_kill_bytes: u64,
}

/// What the engine and the meter say at a scrape.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    pub dynos: Vec<DynoRow>,
    /// Ledger writes waiting for the ledger to accept them.
    pub ledger_pending_writes: u64,
}

/// The scrape's text: the counters and every series of `scrape`, in the
/// Prometheus text exposition format (0.0.4).
pub fn encode(scrape: Scrape) -> String {
    let c = &*COUNTERS;
    let mut registry = Registry::with_prefix("dynoagent");
    registry.register("starts", "Runs whose command was exec'd", c.starts.clone());
    registry.register(
        "start_latency_seconds",
        "Seconds from a run's spawn to its command's exec",
        c.start_latency.clone(),
    );
    registry.register("restarts", "New runs of a dyno, by reason", c.restarts.clone());
    registry.register(
        "oom_kills",
        "Runs killed by their memory limit (R15)",
        c.oom_kills.clone(),
    );
    registry.register("slug_fetch_errors", "Failed slug downloads", c.fetch_errors.clone());
    registry.register(
        "slug_cache_bytes",
        "Bytes in the slug cache",
        c.slug_cache_bytes.clone(),
    );
    registry.register_collector(Box::new(ScrapeCollector(scrape)));
    let mut out = String::with_capacity(4096);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

/// Writes a [`Scrape`]'s series (under the registry's `dynoagent_` prefix).
#[derive(Debug)]
struct ScrapeCollector(Scrape);

impl Collector for ScrapeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let mut m = encoder.encode_descriptor("dynos", "Dynos by lifecycle state", None, MetricType::Gauge)?;
        for state in STATES {
            let n = s.dynos.iter().filter(|d| d.state == state).count() as i64;
            ConstGauge::new(n).encode(m.encode_family(&[("state", state)])?)?;
        }
        let m = encoder.encode_descriptor(
            "ledger_pending_writes",
            "Usage ledger writes waiting for the ledger",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(s.ledger_pending_writes).unwrap_or(i64::MAX)).encode(m)?;

        let labels = |d: &DynoRow| {
            [
                ("app", d.app.clone()),
                ("dyno", d.dyno.clone()),
                ("type", d.ptype.clone()),
                ("size", d.size.clone()),
            ]
        };
        let all: Vec<_> = s.dynos.iter().map(|d| (d, labels(d))).collect();
        let mut m = encoder.encode_descriptor("dyno_state", "1 for a dyno's current state", None, MetricType::Gauge)?;
        for (d, l) in &all {
            let with_state = [
                l[0].clone(),
                l[1].clone(),
                l[2].clone(),
                l[3].clone(),
                ("state", d.state.into()),
            ];
            ConstGauge::new(1i64).encode(m.encode_family(&with_state)?)?;
        }
        series(
            &mut encoder,
            "dyno_restarts",
            "New runs of the dyno after its first",
            MetricType::Counter,
            &all,
            |d| Value::Int(d.restarts),
        )?;
        series(
            &mut encoder,
            "dyno_oom_kills",
            "Runs of the dyno killed by the memory limit",
            MetricType::Counter,
            &all,
            |d| Value::Int(d.oom_kills),
        )?;
        series(
            &mut encoder,
            "dyno_cpu_seconds",
            "CPU time of the dyno's current run",
            MetricType::Counter,
            &all,
            |d| Value::Float(d.cpu_seconds),
        )?;
        series(
            &mut encoder,
            "dyno_memory_bytes",
            "Memory of the dyno's current run (RAM charged and swap)",
            MetricType::Gauge,
            &all,
            |d| Value::Int(d.memory_bytes),
        )?;
        series(
            &mut encoder,
            "dyno_memory_quota_bytes",
            "The dyno's memory quota (R14 above it)",
            MetricType::Gauge,
            &all,
            |d| Value::Int(d.memory_quota_bytes),
        )?;
        series(
            &mut encoder,
            "dyno_memory_kill_bytes",
            "The dyno's memory kill limit (R15 at it)",
            MetricType::Gauge,
            &all,
            |d| Value::Int(d.memory_kill_bytes),
        )?;
        Ok(())
    }
}

enum Value {
    Int(u64),
    Float(f64),
}

type Labels = [(&'static str, String); 4];

/// One per-dyno family: a value of each dyno under its labels.
fn series(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    dynos: &[(&DynoRow, Labels)],
    value: impl Fn(&DynoRow) -> Value,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, kind)?;
    for (d, l) in dynos {
        let e = m.encode_family(l)?;
        match (value(d), kind) {
            (Value::Int(v), MetricType::Counter) => ConstCounter::new(v).encode(e)?,
            (Value::Float(v), MetricType::Counter) => ConstCounter::new(v).encode(e)?,
            (Value::Int(v), _) => ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(e)?,
            (Value::Float(v), _) => ConstGauge::new(v).encode(e)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
