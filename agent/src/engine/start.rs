//! Starting a dyno: `StartDyno`'s path through the actor (admission, a
//! request id's retry, a new spec, a new dyno), every API change answered
//! only once the dyno's record is durable, and one-off names.

use std::collections::VecDeque;

use tracing::{error, info};

use super::Key;
use super::actor::{Actor, Entry, decide};
use super::model::{DynoRecord, DynoView, REQUEST_IDS_KEPT, StartRequest};
use crate::error::{Error, Reason, Result};
use crate::supervisor::{Input, State, Supervision};

impl Actor {
    pub(super) fn start_dyno(&mut self, req: StartRequest) -> Result<DynoView> {
        let key = (req.spec.app.clone(), req.spec.name.clone());
        if let Some(token) = req.pending {
            self.pending.take(token)?;
        }
        if let Some(rid) = &req.request_id
            && let Some(e) = self.holder_of(rid)
        {
            return repeated_request(&e.rec, &req, rid);
        }
        self.refuse_if_cordoned(&key)?;
        // A running dyno asked for the same run again commits nothing new.
        let same_and_running = self
            .dynos
            .get(&key)
            .is_some_and(|e| e.rec.sup.state != State::Down && e.rec.spec.same_run(&req.spec));
        if !same_and_running {
            self.admit(&key, &req.spec.size)?;
            let spec = &req.spec;
            self.admit_fds(&key, spec.ptype == "web", spec.one_off && spec.attach.is_some())?;
        }
        if let Some(entry) = self.dynos.get(&key) {
            let mut spec = req.spec;
            // A running dyno keeps its uid and port; a down one holds none
            // and takes fresh ones.
            let same = entry.rec.spec.same_run(&spec);
            let idle = entry.rec.idle();
            let relabel = entry.rec.spec.labels != spec.labels;
            let (uid, port) = if idle {
                self.fresh_allocation(&key)?
            } else {
                (entry.rec.uid, entry.rec.spec.port)
            };
            spec.port = port;
            let r = if same {
                let labels = spec.labels;
                if idle {
                    self.step_durably(&key, Input::Start, |rec| {
                        rec.uid = uid;
                        rec.spec.port = port;
                        rec.spec.labels = labels;
                    })
                } else if relabel {
                    // New labels only: nothing restarts.
                    self.save_durably(&key, |rec| rec.spec.labels = labels)
                } else {
                    Ok(())
                }
            } else {
                info!(app = %key.0, dyno = %key.1, "new spec: restarting");
                self.step_durably(&key, Input::Restart, |rec| {
                    rec.spec = spec;
                    rec.uid = uid;
                    if let Some(old) = std::mem::replace(&mut rec.request_id, req.request_id) {
                        rec.past_request_ids.push_back(old);
                        if rec.past_request_ids.len() > REQUEST_IDS_KEPT {
                            rec.past_request_ids.pop_front();
                        }
                    }
                })
            };
            if r.is_err() && idle {
                self.unreserve_port(port);
            }
            r?;
            return Ok(self.dynos[&key].rec.view());
        }

        // Everything that can fail comes before the port: a web dyno's port
        // may be a prepared network's, which is then kept for it.
        let uid = self.allocate_uid()?;
        crate::private::create_dir_all(&self.paths.dynos.join(&key.0))
            .map_err(|e| Error::Internal(format!("state dir: {e}")))?;
        let mut spec = req.spec;
        if spec.ptype == "web" {
            spec.port = Some(self.allocate_port()?);
        }
        let id = uuid::Uuid::new_v4().to_string();
        let now = self.clock.now();
        let rec = DynoRecord {
            sup: Supervision::new(id.clone(), now),
            id,
            spec,
            created_at: now,
            request_id: req.request_id,
            past_request_ids: VecDeque::new(),
            uid,
            address: None,
            last_spawn_error: None,
        };
        let port = rec.spec.port;
        self.dynos.insert(key.clone(), Entry { rec, probe: None });
        if let Err(e) = self.step_durably(&key, Input::Start, |_| {}) {
            self.dynos.remove(&key);
            if let (Some(net), Some(port)) = (&self.network, port) {
                net.unreserve(port);
            }
            return Err(e);
        }
        Ok(self.dynos[&key].rec.view())
    }

    /// The dyno a start's request id belongs to (its current or an earlier one).
    pub(super) fn holder_of(&self, rid: &str) -> Option<&Entry> {
        self.dynos
            .values()
            .find(|e| e.rec.request_id.as_deref() == Some(rid) || e.rec.past_request_ids.iter().any(|r| r == rid))
    }

    /// Feeds an API call's input to a dyno (after `change` to its record)
    /// only if the record that results can be written: the caller is told
    /// only what is durable. On a failure nothing has changed.
    pub(super) fn step_durably(&mut self, key: &Key, input: Input, change: impl FnOnce(&mut DynoRecord)) -> Result<()> {
        let (policy, now) = (self.policy.clone(), self.clock.now());
        let peers = self.peers_for(key, &input);
        let mut actions = Vec::new();
        self.save_durably(key, |rec| {
            change(rec);
            actions = decide(&policy, now, rec, input, &peers);
        })?;
        self.apply(key, actions, true);
        Ok(())
    }

    /// Changes a dyno's record only if the result can be written.
    pub(super) fn save_durably(&mut self, key: &Key, change: impl FnOnce(&mut DynoRecord)) -> Result<()> {
        let mut rec = self.dynos[key].rec.clone();
        change(&mut rec);
        if let Err(e) = self.paths.save_record(&key.0, &key.1, &rec) {
            return Err(unwritten(key, &e));
        }
        self.unsaved.remove(key);
        self.dynos.get_mut(key).expect("present").rec = rec;
        Ok(())
    }
}

/// The refusal of a change to dyno `key` whose record could not be written.
pub(super) fn unwritten(key: &Key, e: &std::io::Error) -> Error {
    error!(app = %key.0, dyno = %key.1, error = %e, "refusing a request whose record cannot be written");
    let message = format!("cannot write the dyno record, nothing was changed: {e}");
    if e.kind() == std::io::ErrorKind::StorageFull {
        Error::ResourceExhausted(Reason::StateDiskFull, format!("the state disk is full: {message}"))
    } else {
        Error::Internal(message)
    }
}

/// The answer to a start whose request id `rid` dyno `rec` already holds:
/// the dyno, unchanged, when the request is the one the id came with (a
/// retry); `FAILED_PRECONDITION` naming the id when it is for another app,
/// dyno or spec. An earlier id of the dyno (its spec replaced since) is
/// checked against the app and dyno only: a late retry changes nothing.
pub(super) fn repeated_request(rec: &DynoRecord, req: &StartRequest, rid: &str) -> Result<DynoView> {
    let (held, asked) = (&rec.spec, &req.spec);
    let same_dyno = held.app == asked.app
        && if req.picked_name {
            held.one_off
        } else {
            held.name == asked.name
        };
    let current = rec.request_id.as_deref() == Some(rid);
    if same_dyno && (!current || held.same_run(asked)) {
        return Ok(rec.view());
    }
    let what = if same_dyno { "another spec" } else { "another dyno" };
    Err(Error::FailedPrecondition(
        Reason::RequestIdReused,
        format!(
            "request_id {} already started {} of app {}: this request asks for {what}; a new request needs a new id",
            crate::names::quote(rid),
            held.name,
            held.app
        ),
    ))
}

/// The next free `run.N` name of `app`, after the highest one its dynos have;
/// past `run.999999`, the lowest number free; none free: `RESOURCE_EXHAUSTED`.
pub(super) fn next_one_off<'a>(keys: impl IntoIterator<Item = &'a Key>, app: &str) -> Result<String> {
    let taken: std::collections::BTreeSet<u32> = keys
        .into_iter()
        .filter(|(a, _)| a == app)
        .filter_map(|(_, name)| crate::names::parse_dyno_name(name))
        .filter(|(t, _)| *t == "run")
        .map(|(_, n)| n)
        .collect();
    let after_highest = taken.last().map_or(1, |n| n + 1);
    let n = if after_highest <= crate::names::MAX_DYNO_NUMBER {
        Some(after_highest)
    } else {
        (1..=crate::names::MAX_DYNO_NUMBER).find(|n| !taken.contains(n))
    };
    n.map(|n| format!("run.{n}")).ok_or_else(|| {
        Error::ResourceExhausted(
            Reason::NoOneOffNumber,
            format!(
                "app {app} has used every one-off number (run.1 to run.{}): remove finished one-offs first",
                crate::names::MAX_DYNO_NUMBER
            ),
        )
    })
}

#[cfg(test)]
#[path = "start_tests.rs"]
mod tests;
