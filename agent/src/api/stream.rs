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
use crate::logs::{self, Follower, TAIL_BUDGET};

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
            let next = tokio::select! {
                _ = tx.closed() => return,
                next = watch.live.recv() => next,
            };
            match next {
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

/// Sends the first lines of every source (the last `tail` lines, or with
/// `from_run_start` the current runs' whole logs), then (with `follow`) new
/// lines as they are written, each poll's lines sorted by time. Ends when
/// the client goes away, also while nothing is written.
pub(super) async fn follow_logs(
    engine: Engine,
    req: pb::StreamLogsRequest,
    app: Option<String>,
    dyno: Option<String>,
    sources: Vec<LogSource>,
    tx: Tx<pb::LogLine>,
) {
    let watched_run = sources.iter().find(|s| s.current).map(|s| s.run_id.clone());
    let first = if req.from_run_start {
        let current: Vec<LogSource> = sources.into_iter().filter(|s| s.current).collect();
        let tx = tx.clone();
        tokio::task::spawn_blocking(move || send_whole(current, &tx)).await
    } else {
        let n = req.tail as usize;
        tokio::task::spawn_blocking(move || tails(sources, n)).await
    };
    let Ok(Some((first, mut followers))) = first else {
        return;
    };
    if send_lines(&tx, first).await.is_err() || !req.follow {
        return;
    }
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(LOG_POLL) => {}
        }
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
        sort_by_time(&mut lines);
        if send_lines(&tx, lines).await.is_err() {
            return;
        }
        if done {
            // Everything the run wrote is in its log before it is reported
            // ended: read it to the end, a poll's worth at a time.
            loop {
                let mut lines = Vec::new();
                for (_, (s, f)) in followers.iter_mut() {
                    lines.extend(f.poll().into_iter().map(|l| (s.app.clone(), l)));
                }
                if lines.is_empty() {
                    return;
                }
                sort_by_time(&mut lines);
                if send_lines(&tx, lines).await.is_err() {
                    return;
                }
            }
        }
    }
}

type Followers = HashMap<String, (LogSource, Follower)>;

/// The last `n` lines of all `sources` together, each source's read
/// backwards from its end (never a whole log), within [`TAIL_BUDGET`]
/// bytes for the stream; and a follower of each. Blocking.
fn tails(sources: Vec<LogSource>, n: usize) -> Option<(Vec<(String, String)>, Followers)> {
    let budget = TAIL_BUDGET / sources.len().max(1);
    let mut first = Vec::new();
    let mut followers = HashMap::new();
    for s in sources {
        let (lines, f) = logs::tail_and_follow(&s.log, n, budget);
        first.extend(lines.into_iter().map(|l| (s.app.clone(), l)));
        followers.insert(s.run_id.clone(), (s, f));
    }
    sort_by_time(&mut first);
    let skip = first.len().saturating_sub(n);
    first.drain(..skip);
    Some((first, followers))
}

/// Sends the whole logs of `sources`, merged by time a line at a time (one
/// line of each held), then returns a follower of each; `None` when the
/// client went away. Blocking.
fn send_whole(sources: Vec<LogSource>, tx: &Tx<pb::LogLine>) -> Option<(Vec<(String, String)>, Followers)> {
    let mut readers: Vec<(LogSource, logs::Whole, Option<String>)> = sources
        .into_iter()
        .map(|s| {
            let mut w = logs::Whole::new(&s.log);
            let next = w.next();
            (s, w, next)
        })
        .collect();
    loop {
        let ts = |l: &str| l.split_once(' ').map_or("", |(t, _)| t).to_string();
        let Some(i) = (0..readers.len())
            .filter(|i| readers[*i].2.is_some())
            .min_by_key(|i| readers[*i].2.as_deref().map(ts))
        else {
            break;
        };
        let (s, w, next) = &mut readers[i];
        let Some(line) = std::mem::replace(next, w.next()) else {
            break;
        };
        let mut msg = log_pb(line);
        msg.app = s.app.clone();
        tx.blocking_send(Ok(msg)).ok()?;
    }
    let followers = readers
        .into_iter()
        .map(|(s, w, _)| (s.run_id.clone(), (s, w.into_follower())))
        .collect();
    Some((Vec::new(), followers))
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
