//! Talking to an agent over gRPC from a test: request builders, the
//! `WatchEvents` stream (open, next message, next event of a run), and
//! [`blocking`] for harness calls made from async tests.

use std::path::Path;
use std::time::Duration;

use dyno_proto::v1 as pb;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::agent::show;

/// Runs a blocking harness helper without stalling the runtime's workers
/// (the tests keep gRPC streams open meanwhile; needs the multi-thread
/// runtime).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A start request with the fields every test sets.
pub fn start_req(app: &str, name: &str, slug: &Path, command: &str) -> pb::StartDynoRequest {
    pb::StartDynoRequest {
        app: app.into(),
        name: name.into(),
        command: command.into(),
        slug: show(slug),
        ..Default::default()
    }
}

/// `GetDyno` of `app`/`name`, which must succeed.
pub async fn get_dyno(client: &mut pb::agent_client::AgentClient<Channel>, app: &str, name: &str) -> pb::Dyno {
    client
        .get_dyno(pb::GetDynoRequest {
            app: app.into(),
            name: name.into(),
        })
        .await
        .expect("get")
        .into_inner()
}

/// The agent's `HostInfo`, its error as text.
pub async fn host_info(client: &mut pb::agent_client::AgentClient<Channel>) -> Result<pb::HostInfoResponse, String> {
    client
        .host_info(pb::HostInfoRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|e| format!("HostInfo: {e}"))
}

/// The selector of `target` (a dyno or a process type) in `app`.
pub fn selector(app: &str, target: &str) -> Option<pb::DynoSelector> {
    Some(pb::DynoSelector {
        app: app.into(),
        target: target.into(),
        all: false,
    })
}

/// `WatchEvents` from after `after_seq`, following (or not) once caught up.
pub async fn watch_events(
    client: &mut pb::agent_client::AgentClient<Channel>,
    after_seq: u64,
    follow: bool,
) -> Streaming<pb::WatchEventsResponse> {
    watch_series(client, after_seq, "", follow).await
}

/// `WatchEvents` from after `after_seq` of `series`.
pub async fn watch_series(
    client: &mut pb::agent_client::AgentClient<Channel>,
    after_seq: u64,
    series: &str,
    follow: bool,
) -> Streaming<pb::WatchEventsResponse> {
    let series = series.to_string();
    client
        .watch_events(pb::WatchEventsRequest {
            after_seq,
            follow,
            series,
        })
        .await
        .unwrap_or_else(|s| panic!("WatchEvents({after_seq}): {s:?}"))
        .into_inner()
}

/// The next message of a stream, or `None` when none arrives within `wait`
/// or the stream ends; panics when it fails.
pub async fn next_within<T>(stream: &mut Streaming<T>, wait: Duration) -> Option<T> {
    match tokio::time::timeout(wait, stream.message()).await {
        Ok(Ok(Some(m))) => Some(m),
        Ok(Ok(None)) => None,
        Ok(Err(s)) => panic!("stream failed: {s:?}"),
        Err(_) => None,
    }
}

/// The next event of run `run_id` of dyno `name` in `app`; other events are
/// skipped. Panics when none comes within `timeout` or the stream ends.
pub async fn next_event_of(
    events: &mut Streaming<pb::WatchEventsResponse>,
    app: &str,
    name: &str,
    run_id: &str,
    timeout: Duration,
) -> pb::Event {
    loop {
        let msg = tokio::time::timeout(timeout, events.message())
            .await
            .unwrap_or_else(|_| panic!("no event for {name} within {timeout:?}"))
            .expect("WatchEvents stream failed")
            .expect("WatchEvents stream ended");
        if let Some(pb::watch_events_response::Kind::Event(ev)) = msg.kind
            && let Some(d) = &ev.dyno
            && d.app == app
            && d.name == name
            && d.run_id == run_id
        {
            return ev;
        }
    }
}

/// `seq app/dyno from->to (reason)` per event, for messages.
pub fn summarize(events: &[pb::Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let d = e.dyno.clone().unwrap_or_default();
            format!("{} {}/{} {}->{} ({})", e.seq, d.app, d.name, e.from, e.to, e.reason)
        })
        .collect()
}

/// Bytes sent as they are and received as they are: requests no generated
/// client would send (bytes that do not decode, messages over the limit).
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawBytes;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;
    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }
    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// A unary call of `path` (`/dyno.v1.Agent/HostInfo`) with `body` as the
/// request message's bytes; the reply's bytes.
pub async fn raw_unary(channel: Channel, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}
