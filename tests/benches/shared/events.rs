//! Following one dyno run on a `WatchEvents` stream, for the benchmarks
//! (included with `#[path]`).

use std::time::Duration;

use dyno_proto::v1 as pb;

/// The next event of run `run_id` of dyno `name` in `app`; other events are
/// skipped. Panics when none comes within `timeout` or the stream ends.
pub async fn next_event_of(
    events: &mut tonic::Streaming<pb::WatchEventsResponse>,
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
