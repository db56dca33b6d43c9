//! The server-streaming pumps: `WatchEvents` (snapshot, backlog, then live
//! events, resuming after a lag) and `StreamLogs` (tail, then follow the
//! runs' log files).

use std::collections::HashMap;
use std::time::Duration;

use dyno_proto::v1 as pb;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use super::convert::{dyno_pb, event_pb, log_pb, watch_msg};
use crate::engine::{Engine, Event, LogSource, Watch};
use crate::logs::Follower;

/// How often followed logs are polled.
const LOG_POLL: Duration = Duration::from_millis(100);

type Tx<T> = mpsc::Sender<std::result::Result<T, Status>>;

/// Sends what `first` holds (a snapshot, the backlog after `after`), then,
/// with `follow`, every new event; falling behind the engine resumes from
/// the last event sent.
pub(super) async fn pump_events(
    engine: Engine,
    first: Watch,
    after: u64,
    follow: bool,
    tx: Tx<pb::WatchEventsResponse>,
) {
    let mut watch = first;
    loop {
        let mut last = after;
        if let Some(snapshot) = watch.snapshot.take() {
            let seq = snapshot.seq;
            let snap = pb::Snapshot {
                seq,
                dynos: snapshot.dynos.iter().map(dyno_pb).collect(),
                gap: snapshot.gap,
                series: watch.series.clone(),
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
            if send_event(&tx, &ev).await.is_err() {
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
                    if send_event(&tx, &ev).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                // The engine stopped, or its log started a new series:
                // the reader comes back with its series for a snapshot.
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
        // Fell behind: resume from the last event sent.
        match engine.watch(last, &watch.series).await {
            Ok(w) => watch = w,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        }
    }
}

async fn send_event(tx: &Tx<pb::WatchEventsResponse>, ev: &Event) -> std::result::Result<(), ()> {
    let msg = watch_msg(pb::watch_events_response::Kind::Event(event_pb(ev)));
    tx.send(Ok(msg)).await.map_err(|_| ())
}

/// Sends the first lines of every source, then (with `follow`) new lines as
/// they are written, each poll's lines sorted by time.
pub(super) async fn follow_logs(
    engine: Engine,
    req: pb::StreamLogsRequest,
    app: Option<String>,
    dyno: Option<String>,
    sources: Vec<LogSource>,
    tx: Tx<pb::LogLine>,
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

async fn send_lines(tx: &Tx<pb::LogLine>, lines: Vec<(String, String)>) -> std::result::Result<(), ()> {
    for (app, line) in lines {
        let mut msg = log_pb(line);
        msg.app = app;
        tx.send(Ok(msg)).await.map_err(|_| ())?;
    }
    Ok(())
}
