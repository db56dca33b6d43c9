//! Output of `dynoctl`: Heroku's `ps` format, the contract's JSON form of a
//! dyno, the usage table and the host summary.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use dyno_proto::v1 as pb;
use serde_json::{Value, json};

/// The readable form of `dynoctl usage`: one line per record, then the
/// seconds per app and size.
pub(super) fn usage_table(records: &[pb::UsageRecord]) -> String {
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

/// A streamed listing (logs, events): with `--json`, one array at the end,
/// or one object per line as it comes when following; else a text line per
/// item.
pub(super) struct Listing {
    json: bool,
    follow: bool,
    all: Vec<Value>,
}

impl Listing {
    pub(super) fn new(json: bool, follow: bool) -> Listing {
        Listing {
            json,
            follow,
            all: Vec::new(),
        }
    }

    pub(super) fn item(&mut self, v: Value, text: impl FnOnce() -> String) {
        if self.json && !self.follow {
            self.all.push(v);
        } else if self.json {
            println!("{v}");
        } else {
            println!("{}", text());
        }
    }

    pub(super) fn finish(self) {
        if self.json && !self.follow {
            print_json(&Value::Array(self.all));
        }
    }
}

pub(super) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("json"));
}

pub(super) fn print_dynos(dynos: &[pb::Dyno], json: bool, verb: &str) {
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
        Ok(pb::ExitReason::SpawnFailed) => "spawn_failed",
        _ => "unknown",
    }
}

fn to_time(t: prost_types::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32).unwrap_or_default()
}

/// RFC 3339 UTC.
/// Whole seconds, as usage records have.
pub(super) fn ts_secs(t: prost_types::Timestamp) -> String {
    to_time(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(super) fn ts(t: prost_types::Timestamp) -> String {
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
            "code": x.code, "signal": x.signal, "reason": reason_name(x.reason), "at": x.at.map(ts),
            "message": (!x.message.is_empty()).then_some(&x.message)})),
        "next_restart_at": d.next_restart_at.map(ts),
        "one_off": d.one_off, "stack": d.stack, "slug_sha256": d.slug_sha256, "run_id": d.run_id,
        "address": (!d.address.is_empty()).then_some(&d.address),
        "created_at": d.created_at.map(ts), "memory_quota_bytes": d.memory_quota_bytes,
        "spec_hash": d.spec_hash, "labels": d.labels,
        "last_spawn_error": d.last_spawn_error.as_ref().map(|e| json!({
            "at": e.at.map(ts), "run_id": e.run_id, "message": e.message})),
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
                && x.reason == pb::ExitReason::SpawnFailed as i32
                && d.state == pb::DynoState::Starting as i32
            {
                // Waiting to try again: say why, as on Heroku's `ps`.
                out.push_str(&format!(" (spawn_failed: {})", x.message));
            } else if let Some(x) = &d.last_exit
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

/// `dynoctl info`: the host's capacity and use.
pub(super) fn print_info(i: &pb::HostInfoResponse, json: bool) {
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
                "error": (!i.usage_error.is_empty()).then_some(&i.usage_error),
                "ledger": i.usage_ledger, "failing_since": i.usage_failing_since.map(ts)},
            "state": {"dir": i.state_dir, "disk_free_bytes": i.state_disk_free_bytes,
                "disk_full": i.state_disk_full, "unwritten": i.state_unwritten},
            "cordoned": i.cordoned,
            "cordon_reason": (!i.cordon_reason.is_empty()).then_some(&i.cordon_reason),
            "cordoned_since": i.cordoned_since.map(ts),
            "descriptors": {"limit": i.descriptors_limit, "open": i.descriptors_open,
                "committed": i.descriptors_committed, "available": i.descriptors_available,
                "reserve": i.descriptors_reserve, "per_dyno": i.descriptors_per_dyno},
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
        println!(
            "state:     {} ({:.2} GiB free)",
            i.state_dir,
            gib(i.state_disk_free_bytes)
        );
        println!(
            "descriptors: {} of {} in use ({} committed: {} reserved for the agent, {} per dyno; {} open now), {} available",
            i.descriptors_committed.max(i.descriptors_open),
            i.descriptors_limit,
            i.descriptors_committed,
            i.descriptors_reserve,
            i.descriptors_per_dyno,
            i.descriptors_open,
            i.descriptors_available
        );
        if i.cordoned {
            println!(
                "CORDONED:  since {}: {} (new starts are refused; `dynoctl uncordon` takes them again)",
                i.cordoned_since.map(ts).unwrap_or_default(),
                i.cordon_reason
            );
        }
        if i.state_disk_full {
            println!(
                "STATE DISK FULL: {}: dynos keep running, their log lines are dropped and counted, new runs wait",
                i.state_dir
            );
        }
        for what in &i.state_unwritten {
            println!("NOT WRITTEN YET: {what}");
        }
        if i.usage_pending_writes > 0
            || !i.usage_error.is_empty()
            || (i.usage_ledger != "ok" && !i.usage_ledger.is_empty())
        {
            println!(
                "USAGE NOT RECORDED YET: ledger {}{}; {} writes and {} runs' usage kept in memory: {}",
                i.usage_ledger,
                i.usage_failing_since
                    .map(|t| format!(" since {}", ts(t)))
                    .unwrap_or_default(),
                i.usage_pending_writes,
                i.usage_open_runs,
                i.usage_error
            );
        }
    }
}

/// `dynoctl stats`: one line per running dyno, or JSON.
pub(super) fn print_stats(r: &pb::ListDynoStatsResponse, json: bool) {
    if json {
        let stats: Vec<Value> = r
            .stats
            .iter()
            .map(|s| {
                json!({"app": s.app, "dyno": s.dyno, "run_id": s.run_id, "at": s.at.map(ts),
                    "cpu_ms": s.cpu_ms, "memory_bytes": s.memory_bytes, "memory_rss_bytes": s.memory_rss_bytes,
                    "memory_cache_bytes": s.memory_cache_bytes, "memory_peak_bytes": s.memory_peak_bytes,
                    "memory_quota_bytes": s.memory_quota_bytes, "oom_kills": s.oom_kills})
            })
            .collect();
        print_json(&json!({"stats": stats, "unreadable": r.unreadable}));
        return;
    }
    if r.stats.is_empty() && r.unreadable.is_empty() {
        println!("No running dynos.");
    }
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    for s in &r.stats {
        let pct = if s.memory_quota_bytes > 0 {
            format!(" ({:.1}%)", 100.0 * s.memory_bytes as f64 / s.memory_quota_bytes as f64)
        } else {
            String::new()
        };
        println!(
            "{} {}: cpu {} ms, memory {:.1} MiB{pct} of {:.0} MiB (rss {:.1}, cache {:.1}, peak {:.1}), {} oom kills",
            s.app,
            s.dyno,
            s.cpu_ms,
            mib(s.memory_bytes),
            mib(s.memory_quota_bytes),
            mib(s.memory_rss_bytes),
            mib(s.memory_cache_bytes),
            mib(s.memory_peak_bytes),
            s.oom_kills
        );
    }
    for u in &r.unreadable {
        println!("UNREADABLE: {u}");
    }
}

/// `dynoctl cordon` / `uncordon`: the host's cordon as it now is.
pub(super) fn print_cordon(c: &pb::CordonResponse, json: bool) {
    if json {
        print_json(&json!({"cordoned": c.cordoned,
            "reason": (!c.reason.is_empty()).then_some(&c.reason), "since": c.since.map(ts)}));
    } else if c.cordoned {
        println!(
            "cordoned since {}: {} (new starts are refused; running dynos go on)",
            c.since.map(ts).unwrap_or_default(),
            c.reason
        );
    } else {
        println!("not cordoned: starts are taken");
    }
}
