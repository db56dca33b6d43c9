//! `dyno.v1.Agent`: each call validated, handed to the engine, and answered
//! in protobuf; the streaming calls are pumped by [`super::stream`].

use std::pin::Pin;
use std::sync::Arc;

use dyno_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::{cordon_pb, dyno_pb, dyno_stats_pb, opt, state_from_pb};
use super::{launch, session, stream, validate};
use crate::config::Config;
use crate::engine::{Engine, ListFilter, Selector};
use crate::error::{Error, Result};
use crate::names;
use crate::slug::SlugCache;
use crate::supervisor::State;

/// `dyno.v1.Agent`.
pub struct AgentService {
    pub engine: Engine,
    pub cfg: Arc<Config>,
    pub slugs: Arc<SlugCache>,
}

pub(super) type Stream_<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl pb::agent_server::Agent for AgentService {
    async fn start_dyno(
        &self,
        request: Request<pb::StartDynoRequest>,
    ) -> std::result::Result<Response<pb::Dyno>, Status> {
        let view = launch::start(&self.engine, &self.cfg, &self.slugs, request.into_inner()).await?;
        Ok(Response::new(dyno_pb(&view)))
    }

    async fn stop_dyno(
        &self,
        request: Request<pb::StopDynoRequest>,
    ) -> std::result::Result<Response<pb::StopDynoResponse>, Status> {
        let sel = validate::selector(request.into_inner().selector)?;
        let dynos = self.engine.stop(sel).await?;
        Ok(Response::new(pb::StopDynoResponse {
            dynos: dynos.iter().map(dyno_pb).collect(),
        }))
    }

    async fn restart_dyno(
        &self,
        request: Request<pb::RestartDynoRequest>,
    ) -> std::result::Result<Response<pb::RestartDynoResponse>, Status> {
        let sel = validate::selector(request.into_inner().selector)?;
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
        validate::get_request(&req)?;
        Ok(Response::new(dyno_pb(&self.engine.get(&req.app, &req.name).await?)))
    }

    async fn remove_dyno(
        &self,
        request: Request<pb::RemoveDynoRequest>,
    ) -> std::result::Result<Response<pb::RemoveDynoResponse>, Status> {
        let req = request.into_inner();
        validate::dyno(&req.app, &req.name)?;
        let view = self.engine.remove(&req.app, &req.name).await?;
        Ok(Response::new(pb::RemoveDynoResponse {
            dyno: Some(dyno_pb(&view)),
        }))
    }

    async fn list_dynos(
        &self,
        request: Request<pb::ListDynosRequest>,
    ) -> std::result::Result<Response<pb::ListDynosResponse>, Status> {
        let req = request.into_inner();
        let app = opt(&req.app);
        validate::list_request(&app)?;
        let mut states = Vec::new();
        for (i, &n) in req.states.iter().enumerate() {
            let state = state_from_pb(n).ok_or_else(|| {
                Error::invalid(
                    format!("states[{i}]"),
                    format!("{n} is not a dyno state (STARTING, UP, CRASHED or DOWN)"),
                )
            })?;
            states.push(state);
        }
        let listing = self.engine.listing(ListFilter { app, states }).await?;
        Ok(Response::new(pb::ListDynosResponse {
            dynos: listing.dynos.iter().map(dyno_pb).collect(),
            seq: listing.seq,
            series: listing.series,
        }))
    }

    async fn list_dyno_stats(
        &self,
        request: Request<pb::ListDynoStatsRequest>,
    ) -> std::result::Result<Response<pb::ListDynoStatsResponse>, Status> {
        let req = request.into_inner();
        let (app, dyno) = (opt(&req.app), opt(&req.dyno));
        validate::logs_request(&app, &dyno)?;
        let (stats, unreadable) = self.engine.stats(app, dyno).await?;
        Ok(Response::new(pb::ListDynoStatsResponse {
            stats: stats.iter().map(dyno_stats_pb).collect(),
            unreadable,
        }))
    }

    async fn cordon(
        &self,
        request: Request<pb::CordonRequest>,
    ) -> std::result::Result<Response<pb::CordonResponse>, Status> {
        let reason = request.into_inner().reason;
        validate::cordon_reason(&reason)?;
        let reason = if reason.is_empty() {
            "cordoned".to_string()
        } else {
            reason
        };
        Ok(Response::new(cordon_pb(self.engine.cordon(reason).await?)))
    }

    async fn uncordon(
        &self,
        _request: Request<pb::UncordonRequest>,
    ) -> std::result::Result<Response<pb::CordonResponse>, Status> {
        Ok(Response::new(cordon_pb(self.engine.uncordon().await?)))
    }

    type WatchEventsStream = Stream_<pb::WatchEventsResponse>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> std::result::Result<Response<Self::WatchEventsStream>, Status> {
        let req = request.into_inner();
        let first = self.engine.watch(req.after_seq, &req.series).await?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(stream::pump_events(
            self.engine.clone(),
            first,
            req.after_seq,
            req.follow,
            tx,
        ));
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
        validate::logs_request(&app, &dyno)?;
        let sources = self.engine.log_sources(app.clone(), dyno.clone()).await?;
        if req.until_exit && dyno.as_deref().is_none_or(|d| names::parse_dyno_name(d).is_none()) {
            return Err(Error::invalid("until_exit", "needs exactly one dyno, named").into());
        }
        if sources.is_empty()
            && let (Some(a), Some(d)) = (&app, &dyno)
        {
            return Err(Error::NotFound(format!("no dyno {d} in app {a}")).into());
        }
        // Lines in flight are bounded (at most 128, each at most ~10 KiB).
        let (tx, rx) = mpsc::channel(128);
        let engine = self.engine.clone();
        tokio::spawn(stream::follow_logs(engine, req, app, dyno, sources, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type AttachStream = Stream_<pb::SessionOutput>;

    async fn attach(
        &self,
        request: Request<tonic::Streaming<pb::AttachRequest>>,
    ) -> std::result::Result<Response<Self::AttachStream>, Status> {
        session::attach(self, request).await
    }

    type ExecStream = Stream_<pb::SessionOutput>;

    async fn exec(
        &self,
        request: Request<tonic::Streaming<pb::ExecRequest>>,
    ) -> std::result::Result<Response<Self::ExecStream>, Status> {
        session::exec(self, request).await
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
        usage_ledger: meter.ledger.as_str().into(),
        usage_failing_since: meter.failing_since.map(super::convert::timestamp),
        memory_allocatable_bytes: summary.memory_allocatable,
        memory_reserve_bytes: cfg.memory_reserve,
        memory_overcommit: cfg.memory_overcommit,
        state_dir: cfg.state_dir.display().to_string(),
        state_disk_free_bytes: summary.state_disk_free,
        state_disk_full: summary.state_disk_full,
        state_unwritten: summary.state_unwritten,
        cordoned: summary.cordon.is_some(),
        cordon_reason: summary.cordon.as_ref().map(|c| c.reason.clone()).unwrap_or_default(),
        cordoned_since: summary.cordon.as_ref().map(|c| super::convert::timestamp(c.since)),
        descriptors_limit: summary.fds.limit,
        descriptors_open: summary.fds.open,
        descriptors_committed: summary.fds.committed,
        descriptors_available: summary.fds.available,
        descriptors_reserve: summary.fds.reserve,
        descriptors_per_dyno: summary.fds.per_dyno,
    })
}
