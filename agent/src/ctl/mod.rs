//! `dynoctl`: the ops command line, a thin gRPC client of the agent.
//!
//! Listings print Heroku's formats for people and, with `--json`, arrays of
//! objects with the contract fields for scripts. Errors print one line naming
//! the problem and exit non-zero (see [`exit_code`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use dyno_proto::v1 as pb;
use pb::agent_client::AgentClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

/// Ops command line of dynoagent.
#[derive(Debug, Parser)]
#[command(name = "dynoctl", version, about)]
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
    },
    /// Run a one-off dyno, stream its output, exit with its status.
    Run {
        #[command(flatten)]
        slug: SlugArgs,
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
}

/// A failure of a dynoctl command, with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: i32,
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Failure {
        Failure {
            message: format!("{} ({})", s.message(), code_name(s.code())),
            code: exit_code(s.code()),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        fail(e.to_string())
    }
}

fn fail(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        code: 1,
    }
}

fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        InvalidArgument => "invalid argument",
        NotFound => "not found",
        ResourceExhausted => "resource exhausted",
        Unavailable => "unavailable",
        Unimplemented => "unimplemented",
        Internal => "internal error",
        _ => "error",
    }
}

/// The one place gRPC codes become exit codes.
pub fn exit_code(c: tonic::Code) -> i32 {
    match c {
        tonic::Code::InvalidArgument => 2,
        tonic::Code::NotFound => 3,
        tonic::Code::ResourceExhausted => 4,
        tonic::Code::Unavailable => 5,
        _ => 1,
    }
}

type R<T = ()> = Result<T, Failure>;

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    match dispatch(cli).await {
        Ok(code) => code,
        Err(f) => {
            let _ = std::io::stdout().flush();
            eprintln!("dynoctl: {}", f.message);
            f.code
        }
    }
}

async fn dispatch(cli: Cli) -> R<i32> {
    let channel = crate::client::connect(&cli.socket).await.map_err(|e| Failure {
        message: format!("cannot reach the agent at {}: {e}", cli.socket.display()),
        code: 5,
    })?;
    let mut agent = AgentClient::new(channel.clone());
    let json = cli.json;
    match cli.command {
        Command::Ps { app } => ps(&mut agent, app, json).await,
        Command::Start {
            slug,
            name,
            command,
            release,
        } => {
            let mut req = start_request(&slug)?;
            req.name = name;
            req.command = command.unwrap_or_default();
            req.release = release.unwrap_or_default();
            let d = agent.start_dyno(req).await?.into_inner();
            if json {
                print_json(&dyno_json(&d));
            } else {
                println!("{} {}: {}", d.app, d.name, state_name(d.state));
            }
            Ok(0)
        }
        Command::Run { slug, argv } => run_one_off(&mut agent, &slug, &argv, json).await,
        Command::Stop { app, target, all } => {
            let selector = pb::DynoSelector {
                app: app.unwrap_or_default(),
                target: target.unwrap_or_default(),
                all,
            };
            let r = agent
                .stop_dyno(pb::StopDynoRequest {
                    selector: Some(selector),
                })
                .await?;
            print_dynos(&r.into_inner().dynos, json, "stopping");
            Ok(0)
        }
        Command::Restart { app, target } => {
            let selector = pb::DynoSelector {
                app,
                target: target.unwrap_or_default(),
                all: false,
            };
            let r = agent
                .restart_dyno(pb::RestartDynoRequest {
                    selector: Some(selector),
                })
                .await?;
            print_dynos(&r.into_inner().dynos, json, "restarting");
            Ok(0)
        }
        Command::Logs {
            app,
            dyno,
            lines,
            follow,
        } => {
            let req = pb::StreamLogsRequest {
                app: app.unwrap_or_default(),
                dyno: dyno.unwrap_or_default(),
                tail: lines,
                follow,
                ..Default::default()
            };
            let mut stream = agent.stream_logs(req).await?.into_inner();
            let mut all = Vec::new();
            while let Some(line) = stream.message().await? {
                if json && !follow {
                    all.push(json!({"app": line.app, "dyno": line.dyno, "source": line.source, "text": line.text, "line": line.line}));
                } else if json {
                    println!(
                        "{}",
                        json!({"app": line.app, "dyno": line.dyno, "source": line.source, "text": line.text, "line": line.line})
                    );
                } else {
                    println!("{}", line.line);
                }
            }
            if json && !follow {
                print_json(&Value::Array(all));
            }
            Ok(0)
        }
        Command::Events { after, follow } => events(&mut agent, after, follow, json).await,
        Command::Usage { after, csv } => usage(channel, after, csv, json).await,
        Command::Info => {
            let i = agent.host_info(pb::HostInfoRequest {}).await?.into_inner();
            if json {
                print_json(&json!({
                    "host_id": i.host_id, "agent_version": i.agent_version, "cpus": i.cpus,
                    "memory_total_bytes": i.memory_total_bytes, "memory_available_bytes": i.memory_available_bytes,
                    "load": [i.load1, i.load5, i.load15],
                    "dyno_memory_committed_bytes": i.dyno_memory_committed_bytes,
                    "memory_allocatable_bytes": i.memory_allocatable_bytes,
                    "memory_reserve_bytes": i.memory_reserve_bytes,
                    "memory_overcommit": i.memory_overcommit,
                    "dynos": {"starting": i.dynos_starting, "up": i.dynos_up, "crashed": i.dynos_crashed, "down": i.dynos_down},
                    "cgroup_version": i.cgroup_version, "stacks": i.stacks,
                    "usage": {"last_seq": i.usage_last_seq, "open_runs": i.usage_open_runs,
                        "pending_writes": i.usage_pending_writes,
                        "error": (!i.usage_error.is_empty()).then_some(&i.usage_error)},
                }));
            } else {
                let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
                println!("host:      {} (dynoagent {})", i.host_id, i.agent_version);
                println!(
                    "cpus:      {}  load {:.2} {:.2} {:.2}",
                    i.cpus, i.load1, i.load5, i.load15
                );
                println!(
                    "memory:    {:.2} GiB total, {:.2} GiB available, {:.2} GiB committed to dynos",
                    gib(i.memory_total_bytes),
                    gib(i.memory_available_bytes),
                    gib(i.dyno_memory_committed_bytes)
                );
                println!(
                    "allocatable: {:.2} GiB for dynos = (total - {:.2} GiB reserve) x {} overcommit; {:.2} GiB free",
                    gib(i.memory_allocatable_bytes),
                    gib(i.memory_reserve_bytes),
                    i.memory_overcommit,
                    gib(i.memory_allocatable_bytes.saturating_sub(i.dyno_memory_committed_bytes))
                );
                println!(
                    "dynos:     {} up, {} starting, {} crashed, {} down",
                    i.dynos_up, i.dynos_starting, i.dynos_crashed, i.dynos_down
                );
                println!(
                    "stacks:    {}",
                    if i.stacks.is_empty() {
                        "(none)".into()
                    } else {
                        i.stacks.join(", ")
                    }
                );
                println!(
                    "usage:     last seq {}, {} runs metered",
                    i.usage_last_seq, i.usage_open_runs
                );
                if i.usage_pending_writes > 0 || !i.usage_error.is_empty() {
                    println!(
                        "USAGE NOT RECORDED: {} writes waiting for the ledger: {}",
                        i.usage_pending_writes, i.usage_error
                    );
                }
            }
            Ok(0)
        }
    }
}

fn start_request(s: &SlugArgs) -> R<pb::StartDynoRequest> {
    let mut env = std::collections::HashMap::new();
    for kv in &s.env {
        let (k, v) = kv.split_once('=').ok_or_else(|| Failure {
            message: format!("--env {kv:?}: expected K=V"),
            code: 2,
        })?;
        env.insert(k.to_string(), v.to_string());
    }
    Ok(pb::StartDynoRequest {
        app: s.app.clone(),
        size: s.size.clone().unwrap_or_default(),
        env,
        slug: local_slug(&s.slug)?,
        sha256: s.sha256.clone().unwrap_or_default(),
        stack: s.stack.clone().unwrap_or_default(),
        ..Default::default()
    })
}

/// Local paths are made absolute: the agent does not share our directory.
fn local_slug(slug: &str) -> R<String> {
    if slug.contains("://") || slug.starts_with('/') {
        return Ok(slug.to_string());
    }
    let abs = std::env::current_dir()?.join(slug);
    Ok(abs.display().to_string())
}

/// Quotes one word for `/bin/sh`.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

async fn run_one_off(agent: &mut AgentClient<Channel>, slug: &SlugArgs, argv: &[String], json: bool) -> R<i32> {
    let mut req = start_request(slug)?;
    req.one_off = true;
    req.command = argv.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" ");
    let d = agent.start_dyno(req).await?.into_inner();
    let mut stream = agent
        .stream_logs(pb::StreamLogsRequest {
            app: d.app.clone(),
            dyno: d.name.clone(),
            follow: true,
            from_run_start: true,
            until_exit: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    while let Some(line) = stream.message().await? {
        if line.source == "app" {
            let _ = writeln!(out, "{}", line.text);
        }
    }
    let _ = out.flush();
    drop(out);
    let d = agent
        .get_dyno(pb::GetDynoRequest {
            app: d.app,
            name: d.name,
        })
        .await?
        .into_inner();
    if json {
        eprintln!("{}", dyno_json(&d));
    }
    let exit = d.last_exit.as_ref();
    let status = exit.and_then(|x| x.code.or(x.signal.map(|s| 128 + s)));
    Ok(status.unwrap_or(1))
}

async fn events(agent: &mut AgentClient<Channel>, after: u64, follow: bool, json: bool) -> R<i32> {
    let mut stream = agent
        .watch_events(pb::WatchEventsRequest {
            after_seq: after,
            follow,
        })
        .await?
        .into_inner();
    let mut all = Vec::new();
    while let Some(msg) = stream.message().await? {
        match msg.kind {
            Some(pb::watch_events_response::Kind::Snapshot(s)) => {
                let v = json!({"snapshot": {"seq": s.seq, "gap": s.gap, "dynos": s.dynos.iter().map(dyno_json).collect::<Vec<_>>()}});
                if json && !follow {
                    all.push(v);
                } else if json {
                    println!("{v}");
                } else {
                    println!(
                        "snapshot at seq {} ({} dynos{})",
                        s.seq,
                        s.dynos.len(),
                        if s.gap { ", events before it are gone" } else { "" }
                    );
                }
            }
            Some(pb::watch_events_response::Kind::Event(e)) => {
                let d = e.dyno.clone().unwrap_or_default();
                let v = json!({"seq": e.seq, "at": e.at.map(ts), "app": d.app, "dyno": d.name,
                    "from": state_name(e.from), "to": state_name(e.to), "reason": e.reason});
                if json && !follow {
                    all.push(v);
                } else if json {
                    println!("{v}");
                } else {
                    println!(
                        "{:>6} {} {} {}: {} -> {} ({})",
                        e.seq,
                        e.at.map(ts).unwrap_or_default(),
                        d.app,
                        d.name,
                        state_name(e.from),
                        state_name(e.to),
                        e.reason
                    );
                }
            }
            None => {}
        }
    }
    if json && !follow {
        print_json(&Value::Array(all));
    }
    Ok(0)
}

async fn usage(channel: Channel, after: u64, csv: bool, json: bool) -> R<i32> {
    let mut usage = pb::usage_client::UsageClient::new(channel);
    let mut records = Vec::new();
    let mut after = after;
    loop {
        let r = usage
            .collect(pb::CollectRequest {
                after_seq: after,
                limit: 1000,
                // Ops see what billing collected too, until it is pruned.
                include_collected: true,
            })
            .await?
            .into_inner();
        after = r.records.last().map_or(after, |x| x.seq);
        records.extend(r.records);
        if !r.more {
            break;
        }
    }
    let rows: Vec<Value> = records
        .iter()
        .map(|u| {
            json!({"seq": u.seq, "id": u.id, "app": u.app, "dyno": u.dyno, "dyno_id": u.dyno_id, "type": u.r#type,
                "size": u.size, "release": u.release, "start": u.start.map(ts_secs), "end": u.end.map(ts_secs),
                "seconds": u.seconds, "cpu_ms": u.cpu_ms, "mem_peak_bytes": u.mem_peak_bytes})
        })
        .collect();
    if json {
        print_json(&Value::Array(rows));
    } else if csv {
        println!("seq,id,app,dyno,dyno_id,type,size,release,start,end,seconds,cpu_ms,mem_peak_bytes");
        for u in &records {
            println!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{}",
                u.seq,
                u.id,
                u.app,
                u.dyno,
                u.dyno_id,
                u.r#type,
                u.size,
                u.release,
                u.start.map(ts_secs).unwrap_or_default(),
                u.end.map(ts_secs).unwrap_or_default(),
                u.seconds,
                u.cpu_ms,
                u.mem_peak_bytes
            );
        }
    } else {
        print!("{}", usage_table(&records));
    }
    Ok(0)
}

/// The readable form of `dynoctl usage`: one line per record, then the
/// seconds per app and size.
fn usage_table(records: &[pb::UsageRecord]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if records.is_empty() {
        out.push_str("no usage records\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:>8}  {:<20} {:<10} {:<12} {:<20} {:<20} {:>8} {:>9} {:>10}",
        "SEQ", "APP", "DYNO", "SIZE", "START", "END", "SECONDS", "CPU_MS", "MEM_PEAK"
    );
    let mut totals: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for u in records {
        let _ = writeln!(
            out,
            "{:>8}  {:<20} {:<10} {:<12} {:<20} {:<20} {:>8} {:>9} {:>9.1}M",
            u.seq,
            u.app,
            u.dyno,
            u.size,
            u.start.map(ts_secs).unwrap_or_default(),
            u.end.map(ts_secs).unwrap_or_default(),
            u.seconds,
            u.cpu_ms,
            u.mem_peak_bytes as f64 / (1024.0 * 1024.0)
        );
        let t = totals.entry((u.app.clone(), u.size.clone())).or_default();
        t.0 += u.seconds;
        t.1 += u.cpu_ms;
    }
    out.push('\n');
    for ((app, size), (secs, cpu)) in totals {
        let _ = writeln!(
            out,
            "total {app} {size}: {secs} s ({:.2} dyno-hours), cpu {cpu} ms",
            secs as f64 / 3600.0
        );
    }
    out
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("json"));
}

fn print_dynos(dynos: &[pb::Dyno], json: bool, verb: &str) {
    if json {
        print_json(&Value::Array(dynos.iter().map(dyno_json).collect()));
    } else {
        for d in dynos {
            println!("{} {}: {verb} ({})", d.app, d.name, state_name(d.state));
        }
    }
}

pub fn state_name(s: i32) -> &'static str {
    match pb::DynoState::try_from(s) {
        Ok(pb::DynoState::Starting) => "starting",
        Ok(pb::DynoState::Up) => "up",
        Ok(pb::DynoState::Crashed) => "crashed",
        Ok(pb::DynoState::Down) => "down",
        _ => "unknown",
    }
}

fn reason_name(r: i32) -> &'static str {
    match pb::ExitReason::try_from(r) {
        Ok(pb::ExitReason::Exit) => "exit",
        Ok(pb::ExitReason::Signal) => "signal",
        Ok(pb::ExitReason::Oom) => "oom",
        Ok(pb::ExitReason::BootTimeout) => "boot_timeout",
        Ok(pb::ExitReason::Lost) => "lost",
        Ok(pb::ExitReason::Stopped) => "stopped",
        Ok(pb::ExitReason::StopTimeout) => "stop_timeout",
        _ => "unknown",
    }
}

fn to_time(t: prost_types::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32).unwrap_or_default()
}

/// RFC 3339 UTC.
/// Whole seconds, as usage records have.
fn ts_secs(t: prost_types::Timestamp) -> String {
    to_time(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn ts(t: prost_types::Timestamp) -> String {
    to_time(t).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The contract's JSON form of a dyno.
pub fn dyno_json(d: &pb::Dyno) -> Value {
    json!({
        "id": d.id, "app": d.app, "name": d.name, "type": d.r#type, "state": state_name(d.state),
        "size": d.size, "command": d.command, "release": d.release,
        "pid": (d.pid != 0).then_some(d.pid), "port": (d.port != 0).then_some(d.port),
        "started_at": d.started_at.map(ts), "updated_at": d.updated_at.map(ts), "restarts": d.restarts,
        "last_exit": d.last_exit.as_ref().map(|x| json!({
            "code": x.code, "signal": x.signal, "reason": reason_name(x.reason), "at": x.at.map(ts)})),
        "next_restart_at": d.next_restart_at.map(ts),
        "one_off": d.one_off, "stack": d.stack, "slug_sha256": d.slug_sha256, "run_id": d.run_id,
    })
}

/// `~ 5m`, `~ 2h`, `~ 3d`.
fn approx(secs: i64) -> String {
    let s = secs.max(0);
    if s < 60 {
        format!("~ {s}s")
    } else if s < 3600 {
        format!("~ {}m", s / 60)
    } else if s < 86400 {
        format!("~ {}h", s / 3600)
    } else {
        format!("~ {}d", s / 86400)
    }
}

/// Heroku's `ps` format, grouped by app and process type.
pub fn format_ps(dynos: &[pb::Dyno], now: DateTime<Utc>) -> String {
    let mut groups: BTreeMap<(String, String, String, String), Vec<&pb::Dyno>> = BTreeMap::new();
    for d in dynos {
        groups
            .entry((d.app.clone(), d.r#type.clone(), d.size.clone(), d.command.clone()))
            .or_default()
            .push(d);
    }
    let mut out = String::new();
    for ((app, ptype, size, command), mut ds) in groups {
        ds.sort_by_key(|d| names_n(&d.name));
        out.push_str(&format!("=== {app} {ptype} ({size}): {command} ({})\n", ds.len()));
        for d in ds {
            let since = d.updated_at.map(to_time).unwrap_or(now);
            out.push_str(&format!(
                "{}: {} {} ({} ago)",
                d.name,
                state_name(d.state),
                since.format("%Y/%m/%d %H:%M:%S +0000"),
                approx((now - since).num_seconds())
            ));
            if let Some(x) = &d.last_exit
                && d.state != pb::DynoState::Up as i32
                && d.state != pb::DynoState::Starting as i32
            {
                match (x.code, x.signal) {
                    (Some(c), _) => out.push_str(&format!(", exit {c}")),
                    (None, Some(s)) => out.push_str(&format!(", signal {s}")),
                    _ => {}
                }
                let reason = reason_name(x.reason);
                if !matches!(reason, "exit" | "signal") {
                    out.push_str(&format!(" ({reason})"));
                }
            }
            if let Some(at) = d.next_restart_at {
                out.push_str(&format!(", restart in {}", approx((to_time(at) - now).num_seconds())));
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

fn names_n(name: &str) -> u32 {
    crate::names::parse_dyno_name(name).map_or(0, |(_, n)| n)
}

async fn ps(agent: &mut AgentClient<Channel>, app: Option<String>, json: bool) -> R<i32> {
    let r = agent
        .list_dynos(pb::ListDynosRequest {
            app: app.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if json {
        print_json(&Value::Array(r.dynos.iter().map(dyno_json).collect()));
    } else if r.dynos.is_empty() {
        println!("No dynos on this host.");
    } else {
        print!("{}", format_ps(&r.dynos, Utc::now()));
    }
    Ok(0)
}

/// The whole `dynoctl` binary; returns its exit code.
pub fn main() -> i32 {
    let cli = <Cli as clap::Parser>::parse();
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => {
            eprintln!("dynoctl: starting the runtime: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> prost_types::Timestamp {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, h, m, 0).unwrap();
        prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: 0,
        }
    }

    #[test]
    fn ps_is_heroku_shaped() {
        let web = |name: &str, state, updated, exit: Option<i32>, next| pb::Dyno {
            app: "shop".into(),
            name: name.into(),
            r#type: "web".into(),
            size: "standard-1x".into(),
            command: "bin/web".into(),
            state: state as i32,
            updated_at: Some(updated),
            last_exit: exit.map(|c| pb::LastExit {
                code: Some(c),
                signal: None,
                reason: pb::ExitReason::Exit as i32,
                at: Some(updated),
            }),
            next_restart_at: next,
            ..Default::default()
        };
        let dynos = [
            web("web.2", pb::DynoState::Crashed, at(10, 4), Some(1), Some(at(10, 23))),
            web("web.1", pb::DynoState::Up, at(10, 0), None, None),
        ];
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 5, 0).unwrap();
        assert_eq!(
            format_ps(&dynos, now),
            "=== shop web (standard-1x): bin/web (2)\n\
             web.1: up 2026/11/22 10:00:00 +0000 (~ 5m ago)\n\
             web.2: crashed 2026/11/22 10:04:00 +0000 (~ 1m ago), exit 1, restart in ~ 18m\n\n"
        );
    }

    #[test]
    fn words_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("sh"), "sh");
        assert_eq!(shell_quote("echo hi; exit 7"), "'echo hi; exit 7'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn json_has_the_contract_fields() {
        let d = pb::Dyno {
            state: pb::DynoState::Up as i32,
            pid: 42,
            ..Default::default()
        };
        let v = dyno_json(&d);
        for k in [
            "id",
            "app",
            "name",
            "type",
            "state",
            "size",
            "command",
            "release",
            "pid",
            "port",
            "started_at",
            "updated_at",
            "restarts",
            "last_exit",
            "next_restart_at",
        ] {
            assert!(v.get(k).is_some(), "{k} missing");
        }
        assert_eq!(v["state"], "up");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["port"], Value::Null);
    }

    #[test]
    fn grpc_codes_map_to_distinct_exit_codes() {
        assert_eq!(exit_code(tonic::Code::InvalidArgument), 2);
        assert_eq!(exit_code(tonic::Code::NotFound), 3);
        assert_ne!(exit_code(tonic::Code::Internal), 0);
    }

    #[test]
    fn slug_paths_are_made_absolute_and_urls_pass_through() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(local_slug("s.tgz").unwrap(), cwd.join("s.tgz").display().to_string());
        for given in [
            "/abs/s.tgz",
            "file:///abs/s.tgz",
            "http://127.0.0.1:8080/s.tgz",
            "https://slugs.example/s.tgz?sig=x",
        ] {
            assert_eq!(local_slug(given).unwrap(), given);
        }
    }
}
