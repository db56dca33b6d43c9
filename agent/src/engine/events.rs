//! The event log: every state change, numbered, appended to
//! `<state-dir>/events.jsonl` (so that `seq` survives restarts), the last
//! [`EVENTS_KEPT`] kept in memory for `WatchEvents`, and broadcast live.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tracing::error;

use super::model::DynoView;
use crate::runs;
use crate::supervisor::State;
use crate::time::Time;

/// Events kept in memory for `WatchEvents`; older ones need a snapshot.
pub(super) const EVENTS_KEPT: usize = 10_000;

/// A state change, numbered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at: Time,
    pub from: State,
    pub to: State,
    pub reason: String,
    pub dyno: DynoView,
}

/// The start of a `WatchEvents` stream.
pub struct Watch {
    /// Present when `after_seq` was 0 or older than the events kept.
    pub snapshot: Option<(u64, Vec<DynoView>, bool)>,
    pub backlog: Vec<Event>,
    pub live: broadcast::Receiver<Event>,
}

/// The persistent, numbered event log.
pub(super) struct EventLog {
    path: PathBuf,
    file: fs::File,
    kept: VecDeque<Event>,
    last_seq: u64,
    live: broadcast::Sender<Event>,
}

impl EventLog {
    pub(super) fn open(path: PathBuf) -> std::io::Result<EventLog> {
        let mut kept = VecDeque::new();
        let mut last_seq = 0;
        let mut lines = 0usize;
        if let Ok(f) = fs::File::open(&path) {
            for line in std::io::BufReader::new(f).lines() {
                lines += 1;
                // A torn last line after a crash is skipped.
                if let Ok(ev) = serde_json::from_str::<Event>(&line?) {
                    last_seq = last_seq.max(ev.seq);
                    kept.push_back(ev);
                    if kept.len() > EVENTS_KEPT {
                        kept.pop_front();
                    }
                }
            }
        }
        if lines > 2 * EVENTS_KEPT {
            // Compact: keep what is kept in memory.
            let mut text = String::new();
            for ev in &kept {
                text.push_str(&serde_json::to_string(ev).map_err(std::io::Error::other)?);
                text.push('\n');
            }
            runs::write_atomic(&path, text.as_bytes())?;
        }
        let file = crate::private::append(&path)?;
        let (live, _) = broadcast::channel(4096);
        Ok(EventLog {
            path,
            file,
            kept,
            last_seq,
            live,
        })
    }

    pub(super) fn publish(&mut self, at: Time, from: State, to: State, reason: &str, dyno: DynoView) {
        self.last_seq += 1;
        let ev = Event {
            seq: self.last_seq,
            at,
            from,
            to,
            reason: reason.to_string(),
            dyno,
        };
        match serde_json::to_string(&ev) {
            Ok(mut line) => {
                line.push('\n');
                if let Err(e) = self.file.write_all(line.as_bytes()) {
                    error!(path = %self.path.display(), error = %e, "cannot append to the event log");
                }
            }
            Err(e) => error!(error = %e, "cannot encode event"),
        }
        self.kept.push_back(ev.clone());
        if self.kept.len() > EVENTS_KEPT {
            self.kept.pop_front();
        }
        let _ = self.live.send(ev);
    }

    /// The start of a stream of the events after `after` (`None`: a snapshot
    /// first); `views` gives every dyno's view when a snapshot is needed.
    pub(super) fn watch(&self, after: Option<u64>, views: impl FnOnce() -> Vec<DynoView>) -> Watch {
        let live = self.live.subscribe();
        let oldest = self.kept.front().map_or(self.last_seq + 1, |e| e.seq);
        // Events after `after` are no longer all kept, or `after` is from a
        // future this agent never reached (its state was reset): snapshot.
        let gap = after.is_some_and(|after| after.saturating_add(1) < oldest || after > self.last_seq);
        if after.is_none() || gap {
            Watch {
                snapshot: Some((self.last_seq, views(), gap)),
                backlog: Vec::new(),
                live,
            }
        } else {
            Watch {
                snapshot: None,
                backlog: self.kept.iter().filter(|e| Some(e.seq) > after).cloned().collect(),
                live,
            }
        }
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
