//! The tonic services of `dyno.v1`: request validation, conversions between
//! the engine's types and protobuf, and the log and event streams.
//!
//! Every error leaves through [`crate::error::Error`]'s one mapping to a gRPC
//! code: bad input is `INVALID_ARGUMENT` naming the field, an unknown dyno
//! `NOT_FOUND`; nothing here panics on input.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use dyno_proto::v1 as pb;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::config::Config;
use crate::engine::{DynoSpec, DynoView, Engine, Event, LogSource, Selector, StartRequest};
use crate::error::{Error, Result};
use crate::logs::{self, Follower, Source};
use crate::names;
use crate::slug;
use crate::supervisor::{ExitReason, State, Time};

/// How often followed logs are polled.
const LOG_POLL: Duration = Duration::from_millis(100);

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
        last_exit: v.last_exit.map(|x| pb::LastExit {
            code: x.code,
            signal: x.signal,
            reason: reason_pb(x.reason) as i32,
            at: Some(timestamp(x.at)),
        }),
        next_restart_at: v.next_restart_at.map(timestamp),
        one_off: v.one_off,
        stack: v.stack.clone(),
        slug_sha256: v.slug_sha256.clone().unwrap_or_default(),
        run_id: v.run_id.clone().unwrap_or_default(),
    }
}

pub fn event_pb(e: &Event) -> pb::Event {
    pb::Event {
        seq: e.seq,
        at: Some(timestamp(e.at)),
        from: state_pb(e.from) as i32,
        to: state_pb(e.to) as i32,
        reason: e.reason.clone(),
        dyno: Some(dyno_pb(&e.dyno)),
    }
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Checks a start request field by field; the slug is resolved separately.
pub fn validate_start(req: &pb::StartDynoRequest, cfg: &Config) -> Result<()> {
    if !names::valid_app(&req.app) {
        return Err(Error::invalid(
            "app",
            format!("{:?} must match ^[a-z][a-z0-9-]{{2,29}}$", req.app),
        ));
    }
    if req.name.is_empty() {
        if !req.one_off {
            return Err(Error::invalid(
                "name",
                "required (only a one-off dyno gets a name picked for it)",
            ));
        }
    } else {
        let Some((ptype, _)) = names::parse_dyno_name(&req.name) else {
            return Err(Error::invalid(
                "name",
                format!("{:?} must be <type>.<n>, like web.1", req.name),
            ));
        };
        if req.one_off && ptype != "run" {
            return Err(Error::invalid(
                "name",
                format!("{:?}: a one-off dyno is named run.N", req.name),
            ));
        }
    }
    if req.command.len() > names::MAX_COMMAND || req.command.contains('\0') {
        return Err(Error::invalid(
            "command",
            format!("at most {} bytes, no NUL bytes", names::MAX_COMMAND),
        ));
    }
    if req.one_off && req.command.trim().is_empty() {
        return Err(Error::invalid("command", "a one-off dyno needs a command"));
    }
    if !req.size.is_empty() && !cfg.sizes.contains_key(&req.size) {
        let known: Vec<&str> = cfg.sizes.keys().map(String::as_str).collect();
        return Err(Error::invalid(
            "size",
            format!("unknown size {:?}; known: {}", req.size, known.join(", ")),
        ));
    }
    if !names::valid_release(&req.release) {
        return Err(Error::invalid(
            "release",
            format!(
                "{:?} must be printable ASCII without spaces, at most 64 bytes",
                req.release
            ),
        ));
    }
    if req.env.len() > names::MAX_ENV_VARS {
        return Err(Error::invalid(
            "env",
            format!("at most {} variables", names::MAX_ENV_VARS),
        ));
    }
    for (k, v) in &req.env {
        if !names::valid_env_key(k) {
            return Err(Error::invalid(
                format!("env.{k}"),
                "keys must match ^[A-Za-z_][A-Za-z0-9_]*$",
            ));
        }
        if v.len() > names::MAX_ENV_VALUE || v.contains('\0') {
            return Err(Error::invalid(
                format!("env.{k}"),
                format!("values have at most {} bytes and no NUL", names::MAX_ENV_VALUE),
            ));
        }
    }
    if req.slug.is_empty() {
        return Err(Error::invalid("slug", "required: a path or URL of the slug"));
    }
    if !req.stack.is_empty() && !cfg.stacks.contains_key(&req.stack) {
        let known: Vec<&str> = cfg.stacks.keys().map(String::as_str).collect();
        return Err(Error::invalid(
            "stack",
            format!("unknown stack {:?}; configured: [{}]", req.stack, known.join(", ")),
        ));
    }
    if req.stack.is_empty() && cfg.default_stack().is_none() && !cfg.allow_unjailed {
        return Err(Error::invalid(
            "stack",
            "no stack is configured on this agent (start it with --stack NAME=DIR; rootfs/build.sh builds one)",
        ));
    }
    if let Some(ttl) = &req.time_to_live {
        if !req.one_off {
            return Err(Error::invalid("time_to_live", "only one-off dynos have a time to live"));
        }
        let max = cfg.oneoff_ttl.as_secs() as i64;
        if ttl.seconds <= 0 || ttl.seconds > max || ttl.nanos < 0 {
            return Err(Error::invalid("time_to_live", format!("must be between 1s and {max}s")));
        }
    }
    if req.request_id.len() > 128 {
        return Err(Error::invalid("request_id", "at most 128 bytes"));
    }
    Ok(())
}

fn selector(sel: Option<pb::DynoSelector>) -> Result<Selector> {
    let sel = sel.ok_or_else(|| Error::invalid("selector", "required"))?;
    if sel.all {
        if !sel.app.is_empty() || !sel.target.is_empty() {
            return Err(Error::invalid("selector.all", "cannot be combined with app or target"));
        }
        return Ok(Selector::All);
    }
    if !names::valid_app(&sel.app) {
        return Err(Error::invalid(
            "selector.app",
            format!("{:?} is not a valid app name", sel.app),
        ));
    }
    if sel.target.is_empty() {
        Ok(Selector::App(sel.app))
    } else if names::parse_dyno_name(&sel.target).is_some() {
        Ok(Selector::Dyno(sel.app, sel.target))
    } else if names::valid_type(&sel.target) {
        Ok(Selector::Type(sel.app, sel.target))
    } else {
        Err(Error::invalid(
            "selector.target",
            format!("{:?} is neither a dyno name nor a process type", sel.target),
        ))
    }
}

/// `dyno.v1.Agent`.
pub struct AgentService {
    pub engine: Engine,
    pub cfg: Arc<Config>,
    pub slugs: Arc<slug::SlugCache>,
}

type Stream_<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl pb::agent_server::Agent for AgentService {
    async fn start_dyno(
        &self,
        request: Request<pb::StartDynoRequest>,
    ) -> std::result::Result<Response<pb::Dyno>, Status> {
        let req = request.into_inner();
        validate_start(&req, &self.cfg)?;
        let name = match req.name.as_str() {
            "" => self.engine.next_one_off(&req.app).await?,
            n => n.to_string(),
        };
        let ptype = names::parse_dyno_name(&name)
            .map(|(t, _)| t.to_string())
            .expect("validated");
        let one_off = req.one_off || ptype == "run";
        let slug = self
            .slugs
            .resolve(&req.slug, opt(&req.sha256).as_deref())
            .await
            .map_err(Error::from)?;
        let command = match req.command.trim() {
            "" => {
                let (app_dir, ptype) = (slug.app_dir.clone(), ptype.clone());
                tokio::task::spawn_blocking(move || slug::procfile_command(&app_dir, &ptype))
                    .await
                    .map_err(|e| Error::Internal(format!("procfile task: {e}")))??
            }
            _ => req.command.clone(),
        };
        if let Some(digest) = &slug.sha256 {
            let shown = slug::fetch::shown(&req.slug);
            tracing::info!(app = %req.app, slug = %shown, sha256 = %digest, "slug verified");
        }
        let ttl = req
            .time_to_live
            .map_or(self.cfg.oneoff_ttl.as_secs(), |d| d.seconds as u64);
        let spec = DynoSpec {
            app: req.app,
            name,
            ptype,
            command,
            size: opt(&req.size).unwrap_or_else(|| self.cfg.default_size.clone()),
            release: req.release,
            env: req.env.into_iter().collect::<BTreeMap<_, _>>(),
            slug: req.slug,
            slug_sha256: slug.sha256,
            app_dir: slug.app_dir,
            stack: opt(&req.stack)
                .or_else(|| self.cfg.default_stack().map(str::to_string))
                .unwrap_or_default(),
            one_off,
            time_to_live_secs: if one_off { ttl } else { 0 },
            port: None,
        };
        let view = self
            .engine
            .start(StartRequest {
                spec,
                request_id: opt(&req.request_id),
            })
            .await?;
        Ok(Response::new(dyno_pb(&view)))
    }

    async fn stop_dyno(
        &self,
        request: Request<pb::StopDynoRequest>,
    ) -> std::result::Result<Response<pb::StopDynoResponse>, Status> {
        let sel = selector(request.into_inner().selector)?;
        let dynos = self.engine.stop(sel).await?;
        Ok(Response::new(pb::StopDynoResponse {
            dynos: dynos.iter().map(dyno_pb).collect(),
        }))
    }

    async fn restart_dyno(
        &self,
        request: Request<pb::RestartDynoRequest>,
    ) -> std::result::Result<Response<pb::RestartDynoResponse>, Status> {
        let sel = selector(request.into_inner().selector)?;
        if sel == Selector::All {
            return Err(Error::invalid("selector.all", "restart takes an app").into());
        }
        let dynos = self.engine.restart(sel).await?;
        Ok(Response::new(pb::RestartDynoResponse {
            dynos: dynos.iter().map(dyno_pb).collect(),
        }))
    }

    async fn get_dyno(&self, request: Request<pb::GetDynoRequest>) -> std::result::Result<Response<pb::Dyno>, Status> {
        let req = request.into_inner();
        if !names::valid_app(&req.app) {
            return Err(Error::invalid("app", format!("{:?} is not a valid app name", req.app)).into());
        }
        if names::parse_dyno_name(&req.name).is_none() {
            return Err(Error::invalid("name", format!("{:?} must be <type>.<n>", req.name)).into());
        }
        Ok(Response::new(dyno_pb(&self.engine.get(&req.app, &req.name).await?)))
    }

    async fn list_dynos(
        &self,
        request: Request<pb::ListDynosRequest>,
    ) -> std::result::Result<Response<pb::ListDynosResponse>, Status> {
        let app = opt(&request.into_inner().app);
        if let Some(a) = &app
            && !names::valid_app(a)
        {
            return Err(Error::invalid("app", format!("{a:?} is not a valid app name")).into());
        }
        let dynos = self.engine.list(app).await?;
        Ok(Response::new(pb::ListDynosResponse {
            dynos: dynos.iter().map(dyno_pb).collect(),
        }))
    }

    type WatchEventsStream = Stream_<pb::WatchEventsResponse>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> std::result::Result<Response<Self::WatchEventsStream>, Status> {
        let req = request.into_inner();
        let (after, follow) = (req.after_seq, req.follow);
        let engine = self.engine.clone();
        let first = engine.watch(after).await?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let mut watch = first;
            loop {
                let mut last = after;
                if let Some((seq, dynos, gap)) = watch.snapshot.take() {
                    let snap = pb::Snapshot {
                        seq,
                        dynos: dynos.iter().map(dyno_pb).collect(),
                        gap,
                    };
                    if tx
                        .send(Ok(watch_msg(pb::watch_events_response::Kind::Snapshot(snap))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    last = seq;
                }
                for ev in watch.backlog.drain(..) {
                    last = ev.seq;
                    if tx
                        .send(Ok(watch_msg(pb::watch_events_response::Kind::Event(event_pb(&ev)))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                if !follow {
                    return;
                }
                loop {
                    match watch.live.recv().await {
                        Ok(ev) if ev.seq <= last => {}
                        Ok(ev) => {
                            last = ev.seq;
                            if tx
                                .send(Ok(watch_msg(pb::watch_events_response::Kind::Event(event_pb(&ev)))))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
                // Fell behind: resume from the last event sent.
                match engine.watch(last).await {
                    Ok(w) => watch = w,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type StreamLogsStream = Stream_<pb::LogLine>;

    async fn stream_logs(
        &self,
        request: Request<pb::StreamLogsRequest>,
    ) -> std::result::Result<Response<Self::StreamLogsStream>, Status> {
        let req = request.into_inner();
        let app = opt(&req.app);
        let dyno = opt(&req.dyno);
        if let Some(a) = &app
            && !names::valid_app(a)
        {
            return Err(Error::invalid("app", format!("{a:?} is not a valid app name")).into());
        }
        if let Some(d) = &dyno {
            if names::parse_dyno_name(d).is_none() && !names::valid_type(d) {
                return Err(Error::invalid("dyno", format!("{d:?} is neither a dyno name nor a process type")).into());
            }
            if app.is_none() {
                return Err(Error::invalid("app", "required with dyno").into());
            }
        }
        let sources = self.engine.log_sources(app.clone(), dyno.clone()).await?;
        if req.until_exit && dyno.as_deref().is_none_or(|d| names::parse_dyno_name(d).is_none()) {
            return Err(Error::invalid("until_exit", "needs exactly one dyno, named").into());
        }
        if sources.is_empty()
            && let (Some(a), Some(d)) = (&app, &dyno)
        {
            return Err(Error::NotFound(format!("no dyno {d} in app {a}")).into());
        }
        let (tx, rx) = mpsc::channel(1024);
        let engine = self.engine.clone();
        tokio::spawn(follow_logs(engine, req, app, dyno, sources, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn host_info(
        &self,
        _request: Request<pb::HostInfoRequest>,
    ) -> std::result::Result<Response<pb::HostInfoResponse>, Status> {
        Ok(Response::new(host_info(&self.engine, &self.cfg).await?))
    }
}

/// The host's capacity and use, as `HostInfo`, the scheduler's hello and heartbeats carry it.
pub async fn host_info(engine: &Engine, cfg: &Config) -> Result<pb::HostInfoResponse> {
    let stats = tokio::task::spawn_blocking(crate::host::stats)
        .await
        .map_err(|e| Error::Internal(format!("host stats: {e}")))?;
    let summary = engine.summary().await?;
    let meter = engine.meter().status().await?;
    let count = |s: State| summary.by_state.get(s.as_str()).copied().unwrap_or(0);
    Ok(pb::HostInfoResponse {
        host_id: cfg.host_id.clone(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        cpus: stats.cpus,
        memory_total_bytes: stats.memory_total,
        memory_available_bytes: stats.memory_available,
        load1: stats.load[0],
        load5: stats.load[1],
        load15: stats.load[2],
        dyno_memory_committed_bytes: summary.memory_committed,
        dynos_starting: count(State::Starting),
        dynos_up: count(State::Up),
        dynos_crashed: count(State::Crashed),
        dynos_down: count(State::Down),
        cgroup_version: summary.cgroup_version.unwrap_or_default(),
        stacks: cfg.stacks.keys().cloned().collect(),
        usage_last_seq: meter.last_seq,
        usage_open_runs: meter.open_runs as u32,
        usage_pending_writes: meter.pending_writes as u32,
        usage_error: meter.last_error.unwrap_or_default(),
        memory_allocatable_bytes: summary.memory_allocatable,
        memory_reserve_bytes: cfg.memory_reserve,
        memory_overcommit: cfg.memory_overcommit,
    })
}

fn watch_msg(kind: pb::watch_events_response::Kind) -> pb::WatchEventsResponse {
    pb::WatchEventsResponse { kind: Some(kind) }
}

fn log_pb(line: String) -> pb::LogLine {
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

/// Sends the first lines of every source, then (with `follow`) new lines as
/// they are written, each poll's lines sorted by time.
async fn follow_logs(
    engine: Engine,
    req: pb::StreamLogsRequest,
    app: Option<String>,
    dyno: Option<String>,
    sources: Vec<LogSource>,
    tx: mpsc::Sender<std::result::Result<pb::LogLine, Status>>,
) {
    let watched_run = sources.iter().find(|s| s.current).map(|s| s.run_id.clone());
    let mut followers: HashMap<String, (LogSource, Follower)> = HashMap::new();
    let mut first: Vec<(String, String)> = Vec::new();
    for s in sources {
        if req.from_run_start && !s.current {
            continue;
        }
        let mut f = Follower::new(s.log.clone(), true);
        let mut rotated = s.log.clone().into_os_string();
        rotated.push(".1");
        if let Ok(text) = std::fs::read_to_string(&rotated) {
            first.extend(text.lines().map(|l| (s.app.clone(), l.to_string())));
        }
        first.extend(f.poll().into_iter().map(|l| (s.app.clone(), l)));
        followers.insert(s.run_id.clone(), (s, f));
    }
    sort_by_time(&mut first);
    if !req.from_run_start {
        let skip = first.len().saturating_sub(req.tail as usize);
        first.drain(..skip);
    }
    if send_lines(&tx, first).await.is_err() || !req.follow {
        return;
    }
    loop {
        tokio::time::sleep(LOG_POLL).await;
        let Ok(current) = engine.log_sources(app.clone(), dyno.clone()).await else {
            return;
        };
        let mut lines = Vec::new();
        for (_, (s, f)) in followers.iter_mut() {
            lines.extend(f.poll().into_iter().map(|l| (s.app.clone(), l)));
        }
        // Runs that ended and were replaced: drained above, now dropped.
        followers.retain(|id, _| current.iter().any(|c| c.run_id == *id));
        let mut done = false;
        for c in current {
            if req.until_exit && Some(&c.run_id) == watched_run.as_ref() && !c.active {
                done = true;
            }
            if !followers.contains_key(&c.run_id) {
                if req.until_exit {
                    // A new run of the dyno: the one we watched is over.
                    done |= c.current;
                    continue;
                }
                let mut f = Follower::new(c.log.clone(), true);
                lines.extend(f.poll().into_iter().map(|l| (c.app.clone(), l)));
                followers.insert(c.run_id.clone(), (c, f));
            }
        }
        if done {
            // Everything the run wrote is in its log before it is reported ended.
            for (_, (s, f)) in followers.iter_mut() {
                lines.extend(f.poll().into_iter().map(|l| (s.app.clone(), l)));
            }
        }
        sort_by_time(&mut lines);
        if send_lines(&tx, lines).await.is_err() || done {
            return;
        }
    }
}

/// Orders lines of several logs by their timestamps; stable, so lines of one
/// log with equal timestamps keep their order.
fn sort_by_time(lines: &mut [(String, String)]) {
    lines.sort_by(|a, b| {
        let ts = |l: &str| l.split_once(' ').map_or("", |(t, _)| t).to_string();
        ts(&a.1).cmp(&ts(&b.1))
    });
}

async fn send_lines(
    tx: &mpsc::Sender<std::result::Result<pb::LogLine, Status>>,
    lines: Vec<(String, String)>,
) -> std::result::Result<(), ()> {
    for (app, line) in lines {
        let mut msg = log_pb(line);
        msg.app = app;
        tx.send(Ok(msg)).await.map_err(|_| ())?;
    }
    Ok(())
}

/// Most records one Collect returns.
const COLLECT_MAX: u32 = 10_000;

/// `dyno.v1.Usage`: billing collects the ledger's records ([`crate::meter`]).
pub struct UsageService {
    pub meter: crate::meter::Meter,
}

fn usage_pb(r: crate::ledger::Record) -> pb::UsageRecord {
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
    }
}

#[tonic::async_trait]
impl pb::usage_server::Usage for UsageService {
    async fn collect(
        &self,
        r: Request<pb::CollectRequest>,
    ) -> std::result::Result<Response<pb::CollectResponse>, Status> {
        let r = r.into_inner();
        let limit = match r.limit {
            0 => 1000,
            n if n > COLLECT_MAX => {
                return Err(Error::invalid("limit", format!("{n} is over the maximum of {COLLECT_MAX}")).into());
            }
            n => n,
        };
        let (records, more) = self.meter.collect(r.after_seq, limit, r.include_collected).await?;
        Ok(Response::new(pb::CollectResponse {
            records: records.into_iter().map(usage_pb).collect(),
            more,
        }))
    }

    async fn ack(&self, r: Request<pb::AckRequest>) -> std::result::Result<Response<pb::AckResponse>, Status> {
        let seq = r.into_inner().seq;
        let acked = self.meter.ack(seq).await?;
        tracing::info!(seq, acked, "usage acknowledged");
        Ok(Response::new(pb::AckResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> pb::StartDynoRequest {
        pb::StartDynoRequest {
            app: "shop".into(),
            name: "web.1".into(),
            command: "bin/web".into(),
            slug: "/tmp/slug".into(),
            ..Default::default()
        }
    }

    /// The defaults plus a default stack.
    fn cfg() -> Config {
        let mut c = Config::default();
        c.stacks
            .insert("default".into(), "/var/lib/dynoagent/stacks/busybox".into());
        c
    }

    fn field_of(req: pb::StartDynoRequest) -> String {
        match validate_start(&req, &cfg()) {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_passes() {
        validate_start(&good(), &cfg()).unwrap();
    }

    #[test]
    fn each_bad_field_is_named() {
        type Mutation = Box<dyn Fn(&mut pb::StartDynoRequest)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("app", Box::new(|r| r.app = "Shop!".into())),
            ("name", Box::new(|r| r.name = "web".into())),
            ("name", Box::new(|r| r.name = String::new())),
            ("name", Box::new(|r| r.one_off = true)),
            ("command", Box::new(|r| r.command = "a\0b".into())),
            ("size", Box::new(|r| r.size = "huge".into())),
            ("release", Box::new(|r| r.release = "v 1".into())),
            (
                "env.1BAD",
                Box::new(|r| {
                    r.env.insert("1BAD".into(), "x".into());
                }),
            ),
            ("slug", Box::new(|r| r.slug = String::new())),
            ("stack", Box::new(|r| r.stack = "nope".into())),
            (
                "time_to_live",
                Box::new(|r| r.time_to_live = Some(prost_types::Duration { seconds: 5, nanos: 0 })),
            ),
            ("request_id", Box::new(|r| r.request_id = "x".repeat(200))),
        ];
        for (field, mutate) in cases {
            let mut r = good();
            mutate(&mut r);
            assert_eq!(field_of(r), field);
        }
    }

    #[test]
    fn one_off_needs_a_command_and_a_sane_ttl() {
        let mut r = good();
        r.name = String::new();
        r.one_off = true;
        r.command = " ".into();
        assert_eq!(field_of(r.clone()), "command");
        r.command = "true".into();
        r.time_to_live = Some(prost_types::Duration {
            seconds: 90_000,
            nanos: 0,
        });
        assert_eq!(field_of(r.clone()), "time_to_live");
        r.time_to_live = Some(prost_types::Duration { seconds: 60, nanos: 0 });
        validate_start(&r, &cfg()).unwrap();
    }

    #[test]
    fn without_a_stack_only_an_explicit_development_agent_runs_dynos() {
        let mut c = Config::default();
        match validate_start(&good(), &c) {
            Err(Error::InvalidArgument { field, message }) => {
                assert_eq!(field, "stack");
                assert!(message.contains("--stack"), "{message}");
            }
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
        c.allow_unjailed = true;
        validate_start(&good(), &c).unwrap();
    }

    #[test]
    fn selectors() {
        let s = |app: &str, target: &str, all| {
            selector(Some(pb::DynoSelector {
                app: app.into(),
                target: target.into(),
                all,
            }))
        };
        assert_eq!(s("", "", true).unwrap(), Selector::All);
        assert_eq!(s("shop", "", false).unwrap(), Selector::App("shop".into()));
        assert_eq!(
            s("shop", "web", false).unwrap(),
            Selector::Type("shop".into(), "web".into())
        );
        assert_eq!(
            s("shop", "web.2", false).unwrap(),
            Selector::Dyno("shop".into(), "web.2".into())
        );
        assert!(s("shop", "web.x!", false).is_err());
        assert!(s("shop", "", true).is_err());
        assert!(s("", "", false).is_err());
        assert!(selector(None).is_err());
    }
}
