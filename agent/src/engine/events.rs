//! The event log: every state change, numbered, appended to
//! `<state-dir>/events.jsonl` (so that `seq` survives restarts), the last
//! [`EVENTS_KEPT`] kept in memory for `WatchEvents`, and broadcast live.
//!
//! An event is published (kept, streamed) only once it is durable: appended
//! and `fdatasync`ed. One whose append fails (a full disk) waits, in order,
//! with its `seq`, and is tried again with the next event and every second;
//! nobody has seen it, so if the agent dies meanwhile its `seq` may be handed
//! out again without misleading anyone. A torn tail (a crash mid-append) is
//! cut off when the log is opened, so the next append starts on a line of
//! its own.
//!
//! Every event carries the log's **series**, an id chosen when the log
//! starts empty: a reader that resumes with `after_seq` from another series
//! (the state directory was reset, or events were given up, below) gets a
//! snapshot marked as a gap, never someone else's events under its numbers.

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tracing::{error, info, warn};

use super::model::DynoView;
use crate::runs;
use crate::supervisor::State;
use crate::time::Time;

/// Events kept in memory for `WatchEvents`; older ones need a snapshot.
/// Also the most events that may wait for the disk: past that they are
/// given up and a new series starts.
pub(super) const EVENTS_KEPT: usize = 10_000;

/// A state change, numbered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    /// The log's series (empty in logs written before series existed).
    #[serde(default)]
    pub series: String,
    pub at: Time,
    pub from: State,
    pub to: State,
    pub reason: String,
    pub dyno: DynoView,
    /// The dyno was removed: `dyno` is how it was last.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

/// Every dyno at the moment of an event.
pub struct Snapshot {
    /// The last durable event the snapshot includes.
    pub seq: u64,
    pub dynos: Vec<DynoView>,
    /// The events the reader asked for are not available (too old, from a
    /// future this log never reached, or from another series).
    pub gap: bool,
}

/// The start of a `WatchEvents` stream.
pub struct Watch {
    /// The series the stream's events belong to.
    pub series: String,
    /// Present when `after_seq` was 0, is not kept, or is from another series.
    pub snapshot: Option<Snapshot>,
    pub backlog: Vec<Event>,
    /// Closed when the series changes: the reader starts over.
    pub live: broadcast::Receiver<Event>,
}

/// The persistent, numbered event log.
pub(super) struct EventLog {
    path: PathBuf,
    file: fs::File,
    /// Bytes of whole, durable lines: where a failed append is cut back to.
    len: u64,
    series: String,
    kept: VecDeque<Event>,
    /// The last durable event's seq.
    last_seq: u64,
    /// Numbered but not yet durable, oldest first.
    pending: VecDeque<Event>,
    /// Why the last append failed, while events are pending.
    failing: Option<String>,
    /// Set during a batch of changes ([`EventLog::hold`]): events wait for
    /// the batch's end to be appended and synced together.
    held: bool,
    live: broadcast::Sender<Event>,
}

/// Rewrites the log with the `kept` events only; returns its length.
fn compact(path: &std::path::Path, kept: &VecDeque<Event>) -> std::io::Result<usize> {
    let mut text = String::new();
    for ev in kept {
        text.push_str(&serde_json::to_string(ev).map_err(std::io::Error::other)?);
        text.push('\n');
    }
    runs::write_atomic(path, text.as_bytes())?;
    Ok(text.len())
}

fn new_series() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl EventLog {
    pub(super) fn open(path: PathBuf) -> std::io::Result<EventLog> {
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut kept = VecDeque::new();
        let mut last_seq = 0;
        let mut series = None;
        let mut lines = 0usize;
        // The end of the last whole line that parses: a torn tail is cut there.
        let mut good = 0usize;
        let mut at = 0usize;
        while at < bytes.len() {
            let Some(nl) = bytes[at..].iter().position(|&b| b == b'\n') else {
                warn!(path = %path.display(), bytes = bytes.len() - at, "cutting off a torn last event");
                break;
            };
            let line = &bytes[at..at + nl];
            at += nl + 1;
            lines += 1;
            match serde_json::from_slice::<Event>(line) {
                Ok(ev) => {
                    if !ev.series.is_empty() && series.as_ref() != Some(&ev.series) {
                        // A new series starts: what came before is not its
                        // (events from before series existed are the first
                        // series').
                        if series.is_some() {
                            kept.clear();
                        }
                        series = Some(ev.series.clone());
                    }
                    last_seq = last_seq.max(ev.seq);
                    kept.push_back(ev);
                    if kept.len() > EVENTS_KEPT {
                        kept.pop_front();
                    }
                    good = at;
                }
                Err(e) if at >= bytes.len() => {
                    warn!(path = %path.display(), error = %e, "cutting off a torn last event");
                }
                Err(e) => {
                    error!(path = %path.display(), line = lines, error = %e, "skipping an unreadable event");
                    good = at;
                }
            }
        }
        // Events from before series existed are this log's first series.
        let series = series.unwrap_or_else(new_series);
        for ev in &mut kept {
            ev.series.clone_from(&series);
        }
        // Compact (keep what is kept in memory) when the log has grown; a
        // compaction that fails (a full disk: it writes a copy first) waits
        // for the next start.
        let compacted = lines > 2 * EVENTS_KEPT
            && match compact(&path, &kept) {
                Ok(len) => {
                    good = len;
                    true
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "cannot compact the event log: left as it is");
                    false
                }
            };
        if !compacted && good < bytes.len() {
            // Cutting needs no room.
            let f = fs::OpenOptions::new().write(true).open(&path)?;
            f.set_len(good as u64)?;
            f.sync_all()?;
        }
        let file = crate::private::append(&path)?;
        let (live, _) = broadcast::channel(4096);
        Ok(EventLog {
            path,
            file,
            len: good as u64,
            series,
            kept,
            last_seq,
            pending: VecDeque::new(),
            failing: None,
            held: false,
            live,
        })
    }

    /// Numbers a state change and publishes it once it is durable (now, or
    /// when the disk takes it: see [`EventLog::flush`]).
    pub(super) fn publish(&mut self, at: Time, from: State, to: State, reason: &str, dyno: DynoView) {
        self.push(at, from, to, reason, dyno, false);
    }

    /// Publishes the removal of a `down` dyno (`removed = true`).
    pub(super) fn publish_removal(&mut self, at: Time, reason: &str, dyno: DynoView) {
        self.push(at, State::Down, State::Down, reason, dyno, true);
    }

    fn push(&mut self, at: Time, from: State, to: State, reason: &str, dyno: DynoView, removed: bool) {
        if self.pending.len() >= EVENTS_KEPT {
            self.give_up_pending();
        }
        let seq = self.last_seq + self.pending.len() as u64 + 1;
        self.pending.push_back(Event {
            seq,
            series: self.series.clone(),
            at,
            from,
            to,
            reason: reason.to_string(),
            dyno,
            removed,
        });
        // While appends fail, the housekeeping tick tries again, not every
        // event (each try writes everything pending); during a batch, its
        // end does.
        if self.failing.is_none() && !self.held {
            self.flush();
        }
    }

    /// Starts a batch of changes (a stop of many dynos): their events are
    /// numbered as they come but appended, synced and published together by
    /// [`EventLog::release`], one `fdatasync` for the batch instead of one
    /// an event. Nobody sees an event before it is durable, as before.
    pub(super) fn hold(&mut self) {
        self.held = true;
    }

    /// Ends a batch: appends and publishes what it numbered.
    pub(super) fn release(&mut self) {
        self.held = false;
        if self.failing.is_none() {
            self.flush();
        }
    }

    /// Appends what is pending, makes it durable and publishes it; on a
    /// failure cuts the log back to its last whole line and keeps the events
    /// for the next try. True when nothing is pending.
    pub(super) fn flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let mut text = String::new();
        for ev in &self.pending {
            match serde_json::to_string(ev) {
                Ok(line) => text.push_str(&line),
                // Cannot happen for these types; never worth an event's seq.
                Err(e) => error!(seq = ev.seq, error = %e, "cannot encode an event"),
            }
            text.push('\n');
        }
        let written = self
            .file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            if let Err(cut) = self.file.set_len(self.len) {
                error!(path = %self.path.display(), error = %cut, "cannot cut a failed append back");
            }
            let why = e.to_string();
            if self.failing.as_deref() != Some(why.as_str()) {
                error!(path = %self.path.display(), error = %why, pending = self.pending.len(),
                    "cannot append to the event log: events wait until it can");
            }
            self.failing = Some(why);
            return false;
        }
        self.len += text.len() as u64;
        if self.failing.take().is_some() {
            info!(path = %self.path.display(), events = self.pending.len(), "the event log takes appends again");
        }
        for ev in self.pending.drain(..) {
            self.last_seq = ev.seq;
            self.kept.push_back(ev.clone());
            if self.kept.len() > EVENTS_KEPT {
                self.kept.pop_front();
            }
            let _ = self.live.send(ev);
        }
        true
    }

    /// Too many events waited for the disk: they are dropped, and a new
    /// series tells every reader to start over from a snapshot.
    fn give_up_pending(&mut self) {
        error!(path = %self.path.display(), events = self.pending.len(),
            "the event log could not be written for too long: giving up the waiting events and starting a new series");
        self.pending.clear();
        self.kept.clear();
        self.series = new_series();
        // Live readers see their channel close and come back for a snapshot.
        self.live = broadcast::channel(4096).0;
    }

    /// The last durable event's seq, and the series: where a reader that
    /// has seen the dynos as they are now starts watching.
    pub(super) fn position(&self) -> (u64, String) {
        (self.last_seq, self.series.clone())
    }

    /// Why events are waiting for the disk, and how many.
    pub(super) fn trouble(&self) -> Option<(usize, String)> {
        self.failing.as_ref().map(|why| (self.pending.len(), why.clone()))
    }

    /// The start of a stream of the events after `after` (`None`: a snapshot
    /// first) of `series` (empty: whatever this log's series is); `views`
    /// gives every dyno's view when a snapshot is needed.
    pub(super) fn watch(&self, after: Option<u64>, series: &str, views: impl FnOnce() -> Vec<DynoView>) -> Watch {
        let live = self.live.subscribe();
        let oldest = self.kept.front().map_or(self.last_seq + 1, |e| e.seq);
        // Events after `after` are no longer all kept, `after` is from a
        // future this log never reached, or from another series: snapshot.
        let gap = after.is_some_and(|after| {
            after.saturating_add(1) < oldest || after > self.last_seq || (!series.is_empty() && series != self.series)
        });
        let (snapshot, backlog) = if after.is_none() || gap {
            let snapshot = Snapshot {
                seq: self.last_seq,
                dynos: views(),
                gap,
            };
            (Some(snapshot), Vec::new())
        } else {
            let backlog = self.kept.iter().filter(|e| Some(e.seq) > after).cloned().collect();
            (None, backlog)
        };
        Watch {
            series: self.series.clone(),
            snapshot,
            backlog,
            live,
        }
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
