//! Reporting to the scheduler: the agent's push stream.
//!
//! With `scheduler = URL`, the agent calls `dyno.v1.Scheduler/Report` and
//! streams, on each connection:
//! 1. a `Hello`: host id, agent version, capacity (`HostInfo`), and a
//!    snapshot of every dyno with the `seq` of the last event it includes;
//! 2. every event after that `seq`, in order, as it happens;
//! 3. a `Heartbeat` with the host's usage every `heartbeat_interval`.
//!
//! When the connection fails or the scheduler ends the stream, the agent
//! waits (capped exponential backoff with full jitter, reset once a
//! connection has lasted a while) and starts again with a fresh hello. Events
//! are not queued while disconnected: the next hello's snapshot carries the
//! state they led to, so the scheduler's view converges whatever it missed,
//! and memory stays bounded (a bounded send queue per connection; a scheduler
//! that reads too slowly to keep up makes the agent reconnect with a
//! snapshot rather than buffer).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dyno_proto::v1 as pb;
use rand::Rng;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tracing::{info, warn};

use crate::api::{dyno_pb, event_pb, host_info, timestamp};
use crate::config::Config;
use crate::engine::Engine;

/// Messages waiting to be sent on one connection.
const QUEUE: usize = 1024;
/// First backoff step.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// A connection that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);

/// Reports to the scheduler at `url` until `shutdown` resolves.
pub async fn run(engine: Engine, cfg: Arc<Config>, url: String, shutdown: impl Future<Output = ()> + Send + 'static) {
    tokio::pin!(shutdown);
    let mut attempt = 0u32;
    loop {
        let started = tokio::time::Instant::now();
        let result = tokio::select! {
            r = session(&engine, &cfg, &url) => r,
            _ = &mut shutdown => return,
        };
        match result {
            Ok(()) => info!(scheduler = %url, "the scheduler ended the report stream"),
            Err(e) => warn!(scheduler = %url, error = format!("{e:#}"), "reporting to the scheduler failed"),
        }
        if started.elapsed() >= STABLE {
            attempt = 0;
        }
        let delay = crate::time::backoff(BACKOFF_BASE, attempt, cfg.report_backoff_max, rand::rng().random());
        attempt = attempt.saturating_add(1);
        info!(scheduler = %url, delay_ms = delay.as_millis() as u64, "reconnecting to the scheduler");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut shutdown => return,
        }
    }
}

fn msg(kind: pb::report_message::Kind) -> pb::ReportMessage {
    pb::ReportMessage { kind: Some(kind) }
}

/// One connection: hello, then events and heartbeats until something fails.
async fn session(engine: &Engine, cfg: &Config, url: &str) -> anyhow::Result<()> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .with_context(|| format!("scheduler URL {url:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    if url.starts_with("https://") {
        let ca = cfg
            .scheduler_ca
            .as_ref()
            .context("an https scheduler needs scheduler_ca")?;
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
            .context("TLS configuration for the scheduler")?;
    }
    let channel = endpoint.connect().await.context("connecting")?;
    let mut client = pb::scheduler_client::SchedulerClient::new(channel);

    let mut watch = engine.subscribe().await?;
    let snapshot = watch.snapshot.take().context("the engine gave no snapshot")?;
    let (seq, dynos) = (snapshot.seq, snapshot.dynos);
    let hello = pb::Hello {
        host_id: cfg.host_id.clone(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        capacity: Some(host_info(engine, cfg).await?),
        snapshot: Some(pb::Snapshot {
            seq,
            dynos: dynos.iter().map(dyno_pb).collect(),
            gap: false,
            series: watch.series.clone(),
        }),
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    tx.send(msg(pb::report_message::Kind::Hello(hello)))
        .await
        .expect("the receiver is here");
    info!(scheduler = %url, seq, dynos = dynos.len(), "reporting to the scheduler");

    let pump = async {
        let mut heartbeat = tokio::time::interval(cfg.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        let mut last = seq;
        loop {
            let next = tokio::select! {
                ev = watch.live.recv() => match ev {
                    Ok(ev) if ev.seq <= last => continue,
                    Ok(ev) => {
                        last = ev.seq;
                        pb::report_message::Kind::Event(event_pb(&ev))
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        anyhow::bail!("fell {n} events behind the engine; starting over with a snapshot")
                    }
                    Err(broadcast::error::RecvError::Closed) => anyhow::bail!("the event log started a new series, or the engine stopped"),
                },
                _ = heartbeat.tick() => pb::report_message::Kind::Heartbeat(pb::Heartbeat {
                    at: Some(timestamp(chrono::Utc::now())),
                    usage: Some(host_info(engine, cfg).await?),
                }),
            };
            if tx.send(msg(next)).await.is_err() {
                // The call ended; its result says why.
                return Ok(());
            }
        }
    };
    let call = client.report(ReceiverStream::new(rx));
    tokio::select! {
        r = call => r.map(drop).context("the report stream"),
        r = pump => r,
    }
}
