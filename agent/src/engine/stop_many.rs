//! Stopping many dynos at once (`stop --all`, an app, a process type): the
//! same steps as one stop each, with the disk's work batched. Each dyno's
//! record is still written durably before its stop is carried out or
//! answered, but the writes go in parallel (a disk takes many fsyncs at
//! once far faster than one after another), and the events of the batch
//! are appended and synced together.

use super::Key;
use super::actor::{Actor, decide};
use super::model::DynoRecord;
use crate::error::Error;
use crate::supervisor::{Input, Peers};

/// Threads writing records at once.
const WRITERS: usize = 16;

impl Actor {
    /// Stops `keys`; returns the dynos whose record could not be written
    /// (left as they were), with why.
    pub(super) fn stop_many<'k>(&mut self, keys: &'k [Key]) -> Vec<(&'k Key, Error)> {
        let (policy, now) = (self.policy.clone(), self.clock.now());
        // A stop reads no peers (only a run's exec and a due cycle do).
        let peers = Peers::default();
        let planned: Vec<(&Key, DynoRecord, Vec<crate::supervisor::Action>)> = keys
            .iter()
            .map(|k| {
                let mut rec = self.dynos[k].rec.clone();
                let actions = decide(&policy, now, &mut rec, Input::Stop, &peers);
                (k, rec, actions)
            })
            .collect();
        // A record the stop does not change (a dyno already down) is not
        // written again: what is on disk is what it would write.
        let changed: Vec<usize> = (0..planned.len())
            .filter(|&i| planned[i].1 != self.dynos[planned[i].0].rec)
            .collect();
        let mut written: Vec<std::io::Result<()>> = (0..planned.len()).map(|_| Ok(())).collect();
        let paths = &self.paths;
        let parts: Vec<&[usize]> = changed.chunks(changed.len().div_ceil(WRITERS).max(1)).collect();
        std::thread::scope(|s| {
            let planned = &planned;
            let writers: Vec<_> = parts
                .iter()
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|&i| paths.save_record(&planned[i].0.0, &planned[i].0.1, &planned[i].1))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for (part, writer) in parts.iter().zip(writers) {
                match writer.join() {
                    Ok(results) => part.iter().zip(results).for_each(|(&i, r)| written[i] = r),
                    // Not known to be written: refused.
                    Err(_) => part
                        .iter()
                        .for_each(|&i| written[i] = Err(std::io::Error::other("a record writer panicked"))),
                }
            }
        });
        let mut refused = Vec::new();
        self.events.hold();
        for ((key, rec, actions), result) in planned.into_iter().zip(written) {
            match result {
                Ok(()) => {
                    self.unsaved.remove(key);
                    self.dynos.get_mut(key).expect("present").rec = rec;
                    self.apply(key, actions, true);
                }
                Err(e) => refused.push((key, super::start::unwritten(key, &e))),
            }
        }
        self.events.release();
        refused
    }
}
