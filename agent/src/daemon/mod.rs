//! `dynoagent`'s main loop: opens the state directory, re-adopts runs, serves
//! the API on the Unix socket until told to stop. Stopping the agent never
//! stops dynos.
//!
//! - [`run`] (here): the wiring, from the configuration to the served API;
//! - [`entry`]: `main`, the command line, tracing, the signals;
//! - `shutdown`: the one stop value every task started here waits on;
//! - `listen`: the Unix socket and the TCP listener with TLS;
//! - `socket`: accepting on the Unix socket, bound again if it is removed;
//! - [`authority`]: stock clients' `:authority` on the Unix socket, made valid;
//! - `sample`: the quick-start sample app.

mod authority;
mod entry;
mod listen;
mod sample;
mod shutdown;
mod socket;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use dyno_proto::v1 as pb;
use tokio_stream::StreamExt;
use tracing::{info, warn};

pub use self::authority::FixAuthority;
pub use self::entry::main;
use crate::api::{AgentService, Codes, UsageService};
use crate::config::Config;
use crate::engine::{self, Clock};
use crate::slug::SlugCache;

/// The agent protects itself from the OOM killer; dynos are raised instead.
const AGENT_OOM_SCORE_ADJ: i32 = -900;

/// Runs the agent until `shutdown` resolves. With `sample`, also starts the
/// sample web dyno.
///
/// Every task started here (the engine, the slug GC, the TCP listener, the
/// report stream) waits on one [`shutdown::Shutdown`] fired when `shutdown`
/// resolves or when the Unix socket's server ends.
pub async fn run(cfg: Config, sample: bool, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let cfg = Arc::new(cfg);
    // TLS material is read and parsed before anything starts: a bad file is a clear error now.
    let tls = match &cfg.listen {
        Some(addr) => Some((addr.clone(), listen::server_tls(&cfg)?)),
        None => None,
    };
    if let Some(addr) = &cfg.listen
        && cfg.tls_client_ca.is_none()
    {
        // Allowed only by listen_without_client_auth (see config validation).
        warn!(
            listen = %addr,
            "listen_without_client_auth: the TCP API asks no client certificate (no tls_client_ca); \
             anyone who can connect, a dyno included, may list, start and stop dynos and read every app's logs"
        );
    }
    crate::private::create_state_dir(&cfg.state_dir)
        .with_context(|| format!("creating {}", cfg.state_dir.display()))?;
    let _lock = lock_state_dir(&cfg.state_dir)?;
    make_private(&cfg.state_dir)?;
    if let Err(e) = crate::os::set_oom_score_adj(AGENT_OOM_SCORE_ADJ) {
        warn!(error = %e, "cannot lower the agent's oom_score_adj");
    }
    let listener = listen::bind_socket(&cfg.socket).await?;
    // TLS is built before the engine starts: a bad file stops the agent
    // before it touches a dyno. The TCP port is bound once the agent serves.
    let tcp = match tls {
        Some((addr, tls)) => Some((addr, listen::tls_builder(tls)?)),
        None => None,
    };

    let (trigger, stop) = shutdown::channel();
    // Before the engine: removes what a crash left half-unpacked.
    let slugs = SlugCache::from_config(&cfg)?;
    let (engine, engine_task) = engine::start(cfg.clone(), Clock::new(), stop.wait()).await?;
    let gc_stop = {
        // The slug cache's GC ends with everything else.
        stop.wait()
    };
    let slugs_in_use = {
        let engine = engine.clone();
        move || {
            let engine = engine.clone();
            async move {
                let dynos = engine.list(None).await.ok()?;
                Some(dynos.into_iter().filter_map(|d| d.slug_sha256).collect())
            }
        }
    };
    tokio::spawn(crate::slug::gc_task(slugs.clone(), slugs_in_use, gc_stop));

    if sample {
        sample::start_sample(&engine, &cfg, &slugs).await?;
    }

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::agent_server::AgentServer<AgentService>>()
        .await;
    health_reporter
        .set_serving::<pb::usage_server::UsageServer<UsageService>>()
        .await;
    let (reflection_v1, reflection_v1alpha) = reflection()?;
    // Recovered (re-adopted, settled, reaped): clients may connect now.
    listen::publish_socket(&cfg.socket)?;
    info!(socket = %cfg.socket.display(), state_dir = %cfg.state_dir.display(), host_id = %cfg.host_id, "serving");
    let agent = AgentService {
        engine: engine.clone(),
        cfg: cfg.clone(),
        slugs,
    };
    // Each service answers early failures (a request that does not decode,
    // one over the size limit) with the codes DESIGN §9 promises.
    let routes = tonic::service::Routes::new(Codes(health))
        .add_service(Codes(reflection_v1))
        .add_service(Codes(reflection_v1alpha))
        .add_service(Codes(pb::agent_server::AgentServer::new(agent)))
        .add_service(Codes(pb::usage_server::UsageServer::new(UsageService {
            meter: engine.meter().clone(),
        })));
    let tcp = match tcp {
        Some((addr, mut builder)) => {
            let router = builder.add_routes(routes.clone());
            Some(listen::serve_tcp(&addr, router, cfg.tls_client_ca.is_some(), &stop).await?)
        }
        None => None,
    };
    let metrics = match &cfg.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics_listen: binding {addr}"))?;
            info!(metrics_listen = %addr, "serving Prometheus metrics at /metrics");
            let engine = engine.clone();
            let scrape = move || {
                let engine = engine.clone();
                async move {
                    crate::telemetry::Scrape {
                        dynos: engine.scrape().await.unwrap_or_default(),
                        ledger_pending_writes: engine.meter().snapshot().pending_writes as u64,
                    }
                }
            };
            Some(tokio::spawn(crate::telemetry::serve(listener, scrape, stop.wait())))
        }
        None => None,
    };
    let report = cfg
        .scheduler
        .clone()
        .map(|url| tokio::spawn(crate::report::run(engine.clone(), cfg.clone(), url, stop.wait())));
    let result = tonic::transport::Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            socket::incoming(cfg.socket.clone(), listener).map(|c| c.map(FixAuthority::new)),
            async {
                // Stop the engine first: that ends the open log and event streams,
                // which the server waits for before it returns.
                shutdown.await;
                trigger.fire();
            },
        )
        .await;
    trigger.fire();
    let _ = engine_task.await;
    if let Some(tcp) = tcp {
        match tcp.await {
            Ok(Err(e)) => warn!(error = %e, "the TCP API server failed"),
            Err(e) => warn!(error = %e, "the TCP API server task failed"),
            Ok(Ok(())) => {}
        }
    }
    if let Some(report) = report {
        let _ = report.await;
    }
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    // Commit the usage the meter still holds (the engine has stopped sending).
    let meter = engine.meter().clone();
    let _ = tokio::task::spawn_blocking(move || meter.stop(std::time::Duration::from_secs(10))).await;
    let _ = std::fs::remove_file(&cfg.socket);
    info!("agent stopped; dynos keep running");
    result.context("serving the API")
}

/// The services reflection lists: the ones served. `dyno.v1.Scheduler`,
/// which the agent calls but does not serve, is left out.
const ADVERTISED: [&str; 5] = [
    "dyno.v1.Agent",
    "dyno.v1.Usage",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Reflection, v1 and v1alpha (which grpcurl 1.8 and grpcio-reflection
/// speak), each describing every served service, both reflections included.
#[allow(clippy::type_complexity)]
fn reflection() -> anyhow::Result<(
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
    tonic_reflection::server::v1alpha::ServerReflectionServer<impl tonic_reflection::server::v1alpha::ServerReflection>,
)> {
    let builder = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(dyno_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET);
        for name in ADVERTISED {
            b = b.with_service_name(name);
        }
        b
    };
    let v1 = builder().build_v1().context("building the reflection service (v1)")?;
    let v1alpha = builder()
        .build_v1alpha()
        .context("building the reflection service (v1alpha)")?;
    Ok((v1, v1alpha))
}

/// Makes a state directory that an older agent or an operator left readable
/// by other users private, and says so once.
fn make_private(dir: &Path) -> anyhow::Result<()> {
    let fixed = crate::private::tighten(dir).context("making the state directory private")?;
    if let Some((first, mode)) = &fixed.first {
        warn!(
            files = fixed.files,
            dirs = fixed.dirs,
            first = %first.display(),
            was = %format!("{mode:o}"),
            "the state directory was readable by other users: made private"
        );
    }
    Ok(())
}

/// One agent per state directory: an exclusive lock held while it runs.
fn lock_state_dir(dir: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let path = dir.join("agent.lock");
    let file = crate::private::append(&path).with_context(|| format!("creating {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| anyhow::anyhow!("{}: another dynoagent uses this state directory ({e})", path.display()))
}
