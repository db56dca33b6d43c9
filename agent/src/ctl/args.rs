//! The `dynoctl` grammar (clap): global flags and one subcommand per
//! command of DESIGN §10.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Ops command line of dynoagent.
#[derive(Debug, Parser)]
#[command(
    name = "dynoctl",
    version,
    about,
    after_help = "The same API serves stock gRPC clients over the socket by its path \
(reflection v1 and v1alpha, health):\n  \
grpcurl -plaintext -unix /run/dynoagent/dynoagent.sock list\n  \
grpcurl -plaintext -unix -d '{}' /run/dynoagent/dynoagent.sock dyno.v1.Agent/HostInfo\n  \
python3: grpc.insecure_channel(\"unix:///run/dynoagent/dynoagent.sock\")"
)]
pub struct Cli {
    /// The agent's socket.
    #[arg(
        long,
        env = "DYNOAGENT_SOCKET",
        default_value = "/run/dynoagent/dynoagent.sock",
        global = true
    )]
    pub socket: PathBuf,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct SlugArgs {
    #[arg(long)]
    pub app: String,
    /// Path (directory or .tar.gz; relative ones are made absolute), file:// or http(s):// URL of the slug.
    #[arg(long)]
    pub slug: String,
    /// Expected sha256 of a tarball slug (optional; a cached digest is then used without fetching).
    #[arg(long)]
    pub sha256: Option<String>,
    #[arg(long)]
    pub size: Option<String>,
    /// Config var, repeatable.
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    #[arg(long)]
    pub stack: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List dynos, grouped by app and process type.
    Ps {
        #[arg(long)]
        app: Option<String>,
        /// Only dynos in this state (starting, up, crashed, down); repeatable.
        #[arg(long = "state", value_name = "STATE")]
        states: Vec<String>,
    },
    /// Start (or update) a dyno.
    Start {
        #[command(flatten)]
        slug: SlugArgs,
        /// Dyno name, TYPE.N.
        #[arg(long)]
        name: String,
        /// Shell command; defaults to the Procfile's entry for the type.
        #[arg(long)]
        command: Option<String>,
        #[arg(long)]
        release: Option<String>,
        /// A label for the scheduler's own use, K=V; repeatable.
        #[arg(long = "label", value_name = "K=V")]
        labels: Vec<String>,
    },
    /// Run a one-off dyno attached to this terminal (a pty when stdin and
    /// stdout are terminals, else streams); exit with its status (125: dynoctl's own error).
    Run {
        #[command(flatten)]
        slug: SlugArgs,
        /// Print the one-off's name and return; its output goes to `logs`.
        #[arg(long)]
        detached: bool,
        /// Streams, never a pty.
        #[arg(long)]
        no_tty: bool,
        /// The command's words.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Run a command inside a live dyno, attached as `run` is.
    Exec {
        #[arg(long)]
        app: String,
        /// TYPE.N
        name: String,
        /// Streams, never a pty.
        #[arg(long)]
        no_tty: bool,
        /// The command's words.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Stop dynos of an app (all, a process type or one dyno), or every dyno.
    Stop {
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        app: Option<String>,
        /// TYPE or TYPE.N.
        target: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Restart dynos of an app (all, a process type or one dyno).
    Restart {
        #[arg(long)]
        app: String,
        target: Option<String>,
    },
    /// Remove a down dyno: its record, run directories and logs.
    Rm {
        #[arg(long)]
        app: String,
        /// TYPE.N
        name: String,
    },
    /// Show dyno logs.
    Logs {
        #[arg(long)]
        app: Option<String>,
        #[arg(long)]
        dyno: Option<String>,
        /// Number of lines.
        #[arg(short = 'n', default_value_t = 100)]
        lines: u32,
        /// Follow new lines.
        #[arg(short = 'f')]
        follow: bool,
    },
    /// Show state changes.
    Events {
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// The series `--after` belongs to: from another one, a snapshot
        /// comes first.
        #[arg(long, default_value = "")]
        series: String,
        #[arg(short = 'f')]
        follow: bool,
    },
    /// Show usage records.
    Usage {
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long)]
        csv: bool,
    },
    /// Show host capacity and use.
    Info,
    /// Show the CPU and memory of running dynos, read from their cgroups now.
    Stats {
        #[arg(long)]
        app: Option<String>,
        /// TYPE or TYPE.N (with --app).
        #[arg(long)]
        dyno: Option<String>,
    },
    /// Refuse new starts on this host (running dynos go on), to drain it.
    Cordon {
        /// Why, shown by `info`.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Take starts again.
    Uncordon,
}
