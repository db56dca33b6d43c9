//! `dynoagent`'s main loop: opens the state directory, re-adopts runs, serves
//! the API on the Unix socket until told to stop. Stopping the agent never
//! stops dynos.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use dyno_proto::v1 as pb;
use tokio_stream::wrappers::UnixListenerStream;
use tracing::{info, warn};

use crate::api::{AgentService, UsageService};
use crate::config::Config;
use crate::engine::{self, Clock, DynoSpec, Engine, StartRequest};
use crate::slug::SlugCache;

/// The agent protects itself from the OOM killer; dynos are raised instead.
const AGENT_OOM_SCORE_ADJ: i32 = -900;

/// Runs the agent until `shutdown` resolves. With `sample`, also starts the
/// sample web dyno.
pub async fn run(cfg: Config, sample: bool, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let cfg = Arc::new(cfg);
    // TLS material is read and parsed before anything starts: a bad file is a clear error now.
    let tls = match &cfg.listen {
        Some(addr) => Some((addr.clone(), server_tls(&cfg)?)),
        None => None,
    };
    std::fs::create_dir_all(&cfg.state_dir).with_context(|| format!("creating {}", cfg.state_dir.display()))?;
    let _lock = lock_state_dir(&cfg.state_dir)?;
    if let Err(e) = crate::os::set_oom_score_adj(AGENT_OOM_SCORE_ADJ) {
        warn!(error = %e, "cannot lower the agent's oom_score_adj");
    }
    let listener = bind_socket(&cfg.socket).await?;
    // TLS is built before the engine starts: a bad file stops the agent
    // before it touches a dyno. The TCP port is bound once the agent serves.
    let tcp = match tls {
        Some((addr, tls)) => {
            let builder = tonic::transport::Server::builder()
                .tls_config(tls)
                .context("listen: TLS configuration")?;
            Some((addr, builder))
        }
        None => None,
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let stopped = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    // Before the engine: removes what a crash left half-unpacked.
    let slugs = SlugCache::from_config(&cfg)?;
    let (engine, engine_task) = engine::start(cfg.clone(), Clock::new(), stopped).await?;
    let gc_stop = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
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
        start_sample(&engine, &cfg, &slugs).await?;
    }

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::agent_server::AgentServer<AgentService>>()
        .await;
    health_reporter
        .set_serving::<pb::usage_server::UsageServer<UsageService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(dyno_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;

    info!(socket = %cfg.socket.display(), state_dir = %cfg.state_dir.display(), host_id = %cfg.host_id, "serving");
    let agent = AgentService {
        engine: engine.clone(),
        cfg: cfg.clone(),
        slugs,
    };
    let routes = tonic::service::Routes::new(health)
        .add_service(reflection)
        .add_service(pb::agent_server::AgentServer::new(agent))
        .add_service(pb::usage_server::UsageServer::new(UsageService {
            meter: engine.meter().clone(),
        }));
    let tcp = match tcp {
        Some((addr, mut builder)) => {
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("listen: binding {addr}"))?;
            info!(listen = %listener.local_addr()?, client_ca = cfg.tls_client_ca.is_some(), "serving the API on TCP with TLS");
            let mut stop = stop_rx.clone();
            let server = builder.add_routes(routes.clone()).serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            );
            Some(tokio::spawn(server))
        }
        None => None,
    };
    let report = cfg
        .scheduler
        .clone()
        .map(|url| tokio::spawn(crate::report::run(engine.clone(), cfg.clone(), url, stop_rx.clone())));
    let result = tonic::transport::Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), {
            // Stop the engine first: that ends the open log and event streams,
            // which the server waits for before it returns.
            let stop_tx = stop_tx.clone();
            async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            }
        })
        .await;
    let _ = stop_tx.send(true);
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
    // Commit the usage the meter still holds (the engine has stopped sending).
    let meter = engine.meter().clone();
    let _ = tokio::task::spawn_blocking(move || meter.stop(std::time::Duration::from_secs(10))).await;
    let _ = std::fs::remove_file(&cfg.socket);
    info!("agent stopped; dynos keep running");
    result.context("serving the API")
}

/// The TCP listener's TLS: the agent's certificate and key, and when
/// `tls_client_ca` is set, client certificates required and verified.
fn server_tls(cfg: &Config) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    // Parsed here (tonic only parses when the server starts), so that a bad
    // file is refused before the agent starts anything, naming key and file.
    let read = |key: &str, path: &Option<PathBuf>| -> anyhow::Result<Vec<u8>> {
        let path = path.as_ref().with_context(|| format!("listen: needs {key}"))?;
        let pem = std::fs::read(path).with_context(|| format!("{key}: reading {}", path.display()))?;
        let bad = |what: String| anyhow::anyhow!("{key}: {}: {what}", path.display());
        if key == "tls_key" {
            PrivateKeyDer::from_pem_slice(&pem).map_err(|e| bad(format!("no PEM private key ({e})")))?;
        } else {
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("not a PEM certificate bundle ({e})")))?;
            if certs.is_empty() {
                return Err(bad("no PEM certificate in it".into()));
            }
        }
        Ok(pem)
    };
    let identity = Identity::from_pem(read("tls_cert", &cfg.tls_cert)?, read("tls_key", &cfg.tls_key)?);
    let mut tls = ServerTlsConfig::new().identity(identity);
    if cfg.tls_client_ca.is_some() {
        tls = tls.client_ca_root(Certificate::from_pem(read("tls_client_ca", &cfg.tls_client_ca)?));
    }
    Ok(tls)
}

/// One agent per state directory: an exclusive lock held while it runs.
fn lock_state_dir(dir: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let path = dir.join("agent.lock");
    let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| anyhow::anyhow!("{}: another dynoagent uses this state directory ({e})", path.display()))
}

async fn bind_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            bail!("{}: another agent is serving on this socket", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod 0660 {}", path.display()))?;
    Ok(listener)
}

/// The sample app: a static page served by busybox httpd on $PORT.
async fn start_sample(engine: &Engine, cfg: &Config, slugs: &Arc<SlugCache>) -> anyhow::Result<()> {
    if cfg.default_stack().is_none() && !cfg.allow_unjailed {
        bail!("--sample needs a stack: --stack default=DIR (rootfs/build.sh DIR builds one)");
    }
    let root: PathBuf = cfg.state_dir.join("sample-slug");
    let app = root.join("app");
    std::fs::create_dir_all(app.join("public"))?;
    std::fs::write(
        app.join("Procfile"),
        "web: exec busybox httpd -f -v -p $PORT -h public\n",
    )?;
    std::fs::write(
        app.join("public/index.html"),
        "<!doctype html><title>dynoagent sample</title><h1>Hello from a dyno</h1>\n",
    )?;
    let slug = slugs.resolve(&root.display().to_string(), None).await?;
    let command = crate::slug::procfile_command(&slug.app_dir, "web")?;
    let view = engine
        .start(StartRequest {
            spec: DynoSpec {
                app: "sample".into(),
                name: "web.1".into(),
                ptype: "web".into(),
                command,
                size: cfg.default_size.clone(),
                release: "v1".into(),
                env: Default::default(),
                slug: root.display().to_string(),
                slug_sha256: None,
                app_dir: slug.app_dir,
                stack: cfg.default_stack().unwrap_or_default().to_string(),
                one_off: false,
                time_to_live_secs: 0,
                port: None,
            },
            request_id: None,
        })
        .await?;
    let port = view.port.unwrap_or_default();
    info!(port, "sample dyno sample/web.1 started");
    println!(
        "sample dyno sample/web.1 is {}: curl http://127.0.0.1:{port}/",
        view.state
    );
    Ok(())
}

/// Command line of `dynoagent`.
#[derive(Debug, clap::Parser)]
#[command(name = "dynoagent", version, about = "Per-host dyno runtime agent")]
struct Flags {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[arg(long)]
    socket: Option<PathBuf>,
    /// TCP address for the API (TLS).
    #[arg(long)]
    listen: Option<String>,
    /// A stack image, NAME=DIR; repeatable.
    #[arg(long = "stack", value_name = "NAME=DIR")]
    stacks: Vec<String>,
    #[arg(long)]
    scheduler: Option<String>,
    #[arg(long)]
    host_id: Option<String>,
    /// Also start the sample web dyno (app `sample`, `web.1`).
    #[arg(long)]
    sample: bool,
}

/// The whole `dynoagent` binary; returns its exit code.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().collect();
    // The shim is single-threaded: it must run before any runtime exists.
    if args.get(1).map(String::as_str) == Some("shim") {
        return crate::shim::main(&args[2..]);
    }
    let flags = <Flags as clap::Parser>::parse();
    let mut stacks = Vec::new();
    for s in &flags.stacks {
        match s.split_once('=') {
            Some((n, d)) => stacks.push((n.to_string(), PathBuf::from(d))),
            None => {
                eprintln!("dynoagent: --stack {s:?}: expected NAME=DIR");
                return 2;
            }
        }
    }
    let overrides = crate::config::Overrides {
        state_dir: flags.state_dir,
        socket: flags.socket,
        listen: flags.listen,
        scheduler: flags.scheduler,
        host_id: flags.host_id,
        stacks,
    };
    let cfg = match Config::load(flags.config.as_deref(), std::env::vars(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dynoagent: {e}");
            return 2;
        }
    };
    init_tracing(cfg.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dynoagent: starting the runtime: {e}");
            return 1;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = async {
            use tokio::signal::unix::{SignalKind, signal};
            match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => info!("SIGTERM: shutting down, dynos keep running"),
                        _ = int.recv() => info!("SIGINT: shutting down, dynos keep running"),
                    }
                }
                _ => std::future::pending().await,
            }
        };
        run(cfg, flags.sample, shutdown).await
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("dynoagent: {e:#}");
            1
        }
    }
}

fn init_tracing(format: crate::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DYNOAGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        crate::config::LogFormat::Json => builder.json().init(),
        crate::config::LogFormat::Text => builder.init(),
    }
}
