//! Conversions between the agent's domain types (engine views, events,
//! ledger records, log lines) and their `dyno.v1` protobuf messages.

use dyno_proto::v1 as pb;

use crate::engine::{DynoView, Event};
use crate::logs::{self, Source};
use crate::supervisor::{ExitReason, State, Time};

pub fn timestamp(t: Time) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn state_pb(s: State) -> pb::DynoState {
    match s {
        State::Starting => pb::DynoState::Starting,
        State::Up => pb::DynoState::Up,
        State::Crashed => pb::DynoState::Crashed,
        State::Down => pb::DynoState::Down,
    }
}

fn reason_pb(r: ExitReason) -> pb::ExitReason {
    match r {
        ExitReason::Exit => pb::ExitReason::Exit,
        ExitReason::Signal => pb::ExitReason::Signal,
        ExitReason::Oom => pb::ExitReason::Oom,
        ExitReason::BootTimeout => pb::ExitReason::BootTimeout,
        ExitReason::Lost => pb::ExitReason::Lost,
        ExitReason::Stopped => pb::ExitReason::Stopped,
        ExitReason::StopTimeout => pb::ExitReason::StopTimeout,
        ExitReason::SpawnFailed => pb::ExitReason::SpawnFailed,
    }
}

pub fn dyno_pb(v: &DynoView) -> pb::Dyno {
    pb::Dyno {
        id: v.id.clone(),
        app: v.app.clone(),
        name: v.name.clone(),
        r#type: v.ptype.clone(),
        state: state_pb(v.state) as i32,
        size: v.size.clone(),
        command: v.command.clone(),
        release: v.release.clone(),
        pid: v.pid.unwrap_or(0),
        port: v.port.map_or(0, u32::from),
        started_at: v.started_at.map(timestamp),
        updated_at: Some(timestamp(v.updated_at)),
        restarts: v.restarts,
        last_exit: v.last_exit.as_ref().map(|x| pb::LastExit {
            code: x.code,
            signal: x.signal,
            reason: reason_pb(x.reason) as i32,
            at: Some(timestamp(x.at)),
            message: x.message.clone().unwrap_or_default(),
        }),
        next_restart_at: v.next_restart_at.map(timestamp),
        one_off: v.one_off,
        stack: v.stack.clone(),
        slug_sha256: v.slug_sha256.clone().unwrap_or_default(),
        address: v.address.clone().unwrap_or_default(),
        run_id: v.run_id.clone().unwrap_or_default(),
        created_at: v.created_at.map(timestamp),
        memory_quota_bytes: v.memory_quota_bytes,
        spec_hash: v.spec_hash.clone(),
        labels: v.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        last_spawn_error: v.last_spawn_error.as_ref().map(|e| pb::SpawnError {
            at: Some(timestamp(e.at)),
            run_id: e.run_id.clone(),
            message: e.message.clone(),
        }),
    }
}

/// A state of the API as the engine's; `None` for UNSPECIFIED or a number
/// the enum does not have.
pub fn state_from_pb(n: i32) -> Option<State> {
    match pb::DynoState::try_from(n).ok()? {
        pb::DynoState::Starting => Some(State::Starting),
        pb::DynoState::Up => Some(State::Up),
        pb::DynoState::Crashed => Some(State::Crashed),
        pb::DynoState::Down => Some(State::Down),
        pb::DynoState::Unspecified => None,
    }
}

pub fn dyno_stats_pb(s: &crate::engine::DynoStats) -> pb::DynoStats {
    pb::DynoStats {
        app: s.app.clone(),
        dyno: s.dyno.clone(),
        run_id: s.run_id.clone(),
        at: Some(timestamp(s.at)),
        cpu_ms: s.stats.cpu_usage_ns / 1_000_000,
        memory_bytes: s.stats.memory_current,
        memory_rss_bytes: s.stats.memory_rss,
        memory_cache_bytes: s.stats.memory_cache,
        memory_peak_bytes: s.stats.memory_peak.unwrap_or(0),
        memory_quota_bytes: s.memory_quota,
        oom_kills: s.stats.oom_kills,
    }
}

pub fn cordon_pb(c: Option<crate::engine::Cordon>) -> pb::CordonResponse {
    match c {
        Some(c) => pb::CordonResponse {
            cordoned: true,
            reason: c.reason,
            since: Some(timestamp(c.since)),
        },
        None => pb::CordonResponse::default(),
    }
}

pub fn event_pb(e: &Event) -> pb::Event {
    pb::Event {
        seq: e.seq,
        series: e.series.clone(),
        at: Some(timestamp(e.at)),
        from: state_pb(e.from) as i32,
        to: state_pb(e.to) as i32,
        reason: e.reason.clone(),
        dyno: Some(dyno_pb(&e.dyno)),
        removed: e.removed,
    }
}

/// An optional string field of a request: empty means absent.
pub(super) fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

pub(super) fn watch_msg(kind: pb::watch_events_response::Kind) -> pb::WatchEventsResponse {
    pb::WatchEventsResponse { kind: Some(kind) }
}

/// One line of a dyno's log, split into its parts when it has the log format.
pub(super) fn log_pb(line: String) -> pb::LogLine {
    let (app_source, dyno, text) = match logs::parse_line(&line) {
        Some(p) => (p.source, p.dyno.to_string(), p.text.to_string()),
        None => (Source::App, String::new(), line.clone()),
    };
    pb::LogLine {
        app: String::new(),
        dyno,
        source: app_source.as_str().into(),
        text,
        line,
    }
}

pub(super) fn usage_pb(r: crate::ledger::Record) -> pb::UsageRecord {
    let at = |s: i64| prost_types::Timestamp { seconds: s, nanos: 0 };
    pb::UsageRecord {
        seq: r.seq,
        id: r.id,
        app: r.app,
        dyno: r.dyno,
        dyno_id: r.dyno_id,
        r#type: r.ptype,
        size: r.size,
        release: r.release,
        start: Some(at(r.start)),
        end: Some(at(r.end)),
        seconds: r.seconds,
        cpu_ms: r.cpu_ms,
        mem_peak_bytes: r.mem_peak_bytes,
        run_id: r.run_id,
        r#final: r.is_final,
    }
}
