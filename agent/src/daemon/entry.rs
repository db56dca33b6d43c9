//! The `dynoagent` binary: shim dispatch (before any runtime exists), the
//! command line, configuration loading, tracing setup, and the shutdown
//! future made of SIGTERM and SIGINT; everything else is [`super::run`].
//! Exit codes: 0 after a clean stop, 2 for a bad command line or
//! configuration, 1 when the agent fails.

use std::path::PathBuf;

use tracing::info;

use crate::config::{Config, LogFormat, Overrides};

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
    // So is the exec helper (it joins a dyno's namespaces).
    if args.get(1).map(String::as_str) == Some("exec") {
        return crate::shim::exec::main(&args[2..]);
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
    let overrides = Overrides {
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
    match crate::os::process::raise_nofile_limit() {
        Ok((before, after)) if before < after => info!(before, after, "raised the soft limit on open files"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the soft limit on open files"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dynoagent: starting the runtime: {e}");
            return 1;
        }
    };
    let result = runtime.block_on(async {
        // The handlers are installed here, before the socket exists: a
        // SIGTERM that arrives as soon as a client can connect ends the agent
        // cleanly instead of by the default disposition.
        let shutdown = signals();
        super::run(cfg, flags.sample, shutdown).await
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

/// Installs the SIGTERM and SIGINT handlers now (inside the runtime) and
/// returns what resolves on the first of them: the agent stops, dynos keep
/// running. Never resolves when the handlers cannot be installed.
fn signals() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        match handlers {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => info!("SIGTERM: shutting down, dynos keep running"),
                    _ = int.recv() => info!("SIGINT: shutting down, dynos keep running"),
                }
            }
            _ => std::future::pending().await,
        }
    }
}

/// The agent's own log: stderr, text or JSON, filtered by `DYNOAGENT_LOG`.
fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DYNOAGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not into a journal or a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
