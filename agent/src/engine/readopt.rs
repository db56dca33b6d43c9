//! Re-adoption after an agent restart: load the dyno records, re-adopt the
//! runs whose shims still live (watched through a pidfd), settle the ones
//! that ended while the agent was away (from their exit records, `lost`
//! without one), then clean up what no dyno owns: cgroups, orphaned shims,
//! run directories and the meters of runs that are no dyno's current run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::time::Duration;

use tracing::{error, info, warn};

use super::actor::{Actor, Entry};
use super::model::{DynoRecord, Owner};
use super::settle::{ended_input, watch_exit};
use super::signal::kill_run;
use super::{Key, Msg};
use crate::os;
use crate::runs::{self, RunDir};
use crate::supervisor::{Input, Run, State, Supervision};

/// Live shims by run id.
type LiveShims = HashMap<String, u32>;

impl Actor {
    /// Loads dyno records and re-adopts or settles their runs.
    pub(super) fn recover(&mut self) -> anyhow::Result<()> {
        let records = self.paths.load_records()?;
        let live: LiveShims = runs::live_shims(&self.paths.runs).into_iter().collect();
        let mut settle = Vec::new();
        for mut rec in records {
            // A record without a valid uid (from an older agent) gets one now:
            // a dyno never runs as root or shares its uid.
            if !self.uid_is_valid(rec.uid) {
                rec.uid = self
                    .allocate_uid()
                    .map_err(|e| anyhow::anyhow!("{}/{}: {e}", rec.spec.app, rec.spec.name))?;
                warn!(app = %rec.spec.app, dyno = %rec.spec.name, uid = rec.uid, "assigned a uid to a dyno record without a valid one");
            }
            if rec.spec.memory_quota_bytes == 0 {
                rec.spec.memory_quota_bytes = self.cfg.sizes.get(&rec.spec.size).map_or(0, |s| s.memory_bytes);
            }
            let key = (rec.spec.app.clone(), rec.spec.name.clone());
            if let Some(run) = rec.sup.run.clone() {
                settle.push((key.clone(), run, rec.spec.port));
            }
            self.dynos.insert(key.clone(), Entry { rec, probe: None });
            let _ = self.persist(&key);
        }
        settle.extend(self.rebuild_unrecorded(&live));
        info!(dynos = self.dynos.len(), live_runs = live.len(), "recovered state");

        for (key, run, port) in settle {
            self.readopt_or_settle(&key, &run, port.is_some(), &live);
        }
        self.clean_up(&live)
    }

    /// Dynos rebuilt from runs that no record names (their record could
    /// not be read), from what each run's spec says of its dyno; with the
    /// runs to re-adopt. A dyno with a live run gets it back; one without
    /// (crashed, down) is rebuilt `down` with its newest run as its last, so
    /// that it is neither forgotten nor restarted behind its owner's back
    /// (an event with reason `record_lost` says so). A live run of an older
    /// agent, whose spec does not say whose it is, is left alone: nothing is
    /// killed that cannot be accounted for.
    fn rebuild_unrecorded(&mut self, live: &LiveShims) -> Vec<(Key, Run, Option<u16>)> {
        let referenced = self.referenced_runs();
        let Ok(dirs) = fs::read_dir(&self.paths.runs) else {
            return Vec::new();
        };
        // Per dyno: its live run, else its newest, with the owner it names.
        let mut found: BTreeMap<Key, (u32, String, Owner, bool)> = BTreeMap::new();
        for d in dirs.flatten() {
            let run_id = d.file_name().to_string_lossy().into_owned();
            if referenced.contains(&run_id) {
                continue;
            }
            let is_live = live.contains_key(&run_id);
            let owner = RunDir::new(&self.paths.runs, &run_id)
                .read_spec()
                .ok()
                .flatten()
                .and_then(|s| s.owner)
                .and_then(|o| serde_json::from_value::<Owner>(o).ok());
            let Some(owner) = owner else {
                if is_live {
                    error!(run = %run_id, "A LIVE RUN NO RECORD NAMES, whose spec does not say whose it is: left running, untouched");
                    self.unaccounted.insert(run_id);
                }
                continue;
            };
            let key = (owner.spec.app.clone(), owner.spec.name.clone());
            if self.dynos.contains_key(&key) {
                // An older run of a known dyno: clean_up ends or removes it.
                continue;
            }
            let n = run_id.rsplit_once('.').and_then(|(_, n)| n.parse().ok()).unwrap_or(0);
            let better = found
                .get(&key)
                .is_none_or(|(m, _, _, was_live)| (is_live, n) > (*was_live, *m));
            if better {
                found.insert(key, (n, run_id, owner, is_live));
            }
        }
        let now = self.clock.now();
        let mut rebuilt = Vec::new();
        for (key, (n, run_id, owner, is_live)) in found {
            let dir = RunDir::new(&self.paths.runs, &run_id);
            let started = dir.read_exec().ok().flatten().map_or(now, |e| e.started_at);
            let run = Run {
                id: run_id.clone(),
                spawned_at: started,
                pid: None,
                exec_at: None,
            };
            let mut sup = Supervision::new(owner.id.clone(), now);
            sup.runs = n.max(1);
            let address = match is_live {
                true => {
                    sup.state = State::Starting;
                    sup.run = Some(run.clone());
                    self.network.as_ref().and_then(|net| net.address_of(&run_id))
                }
                false => {
                    sup.last_run = Some(run.clone());
                    None
                }
            };
            let rec = DynoRecord {
                id: owner.id,
                sup,
                created_at: owner.created_at,
                request_id: None,
                past_request_ids: Default::default(),
                uid: owner.uid,
                address,
                spec: owner.spec,
                last_spawn_error: None,
            };
            let port = rec.spec.port;
            self.dynos.insert(key.clone(), Entry { rec, probe: None });
            let _ = self.persist(&key);
            if is_live {
                error!(app = %key.0, dyno = %key.1, run = %run_id,
                    "rebuilt a dyno whose record could not be read from its live run (its restart history is lost)");
                rebuilt.push((key, run, port));
            } else {
                error!(app = %key.0, dyno = %key.1, run = %run_id,
                    "rebuilt a dyno whose record could not be read from its last run: down, not restarted (its state before is unknown)");
                let view = self.dynos[&key].rec.view();
                self.events.publish(now, State::Down, State::Down, "record_lost", view);
            }
        }
        rebuilt
    }

    /// The ids of every dyno's current and last run.
    fn referenced_runs(&self) -> HashSet<String> {
        self.dynos
            .values()
            .flat_map(|e| [&e.rec.sup.run, &e.rec.sup.last_run])
            .flatten()
            .map(|r| r.id.clone())
            .collect()
    }

    /// Re-adopts `run` of dyno `key` if its shim lives, else settles it.
    fn readopt_or_settle(&mut self, key: &Key, run: &Run, has_port: bool, live: &LiveShims) {
        let dir = RunDir::new(&self.paths.runs, &run.id);
        let exec = dir.read_exec().ok().flatten();
        // The agent may have died before the meter committed this run's
        // start: opening again is a no-op for a metered run.
        if let Some(exec) = &exec {
            self.meter_open(key, &run.id, exec.started_at);
        }
        // Prepared but never exec'd: no exec record at all (an unreadable
        // one means it did start).
        let never_started = run.pid.is_none() && matches!(dir.read_exec(), Ok(None));
        if run.pid.is_none()
            && let Some(exec) = exec
        {
            self.step(
                key,
                Input::Spawned {
                    run_id: run.id.clone(),
                    pid: exec.pid,
                    at: exec.started_at,
                },
            );
        }
        if let Some(&shim_pid) = live.get(&run.id) {
            info!(app = %key.0, dyno = %key.1, run = %run.id, shim_pid, "re-adopting live run");
            let cgroups = self.cgroups.clone();
            let clock = self.clock;
            let tx = self.tx.clone();
            let k = key.clone();
            let run_id = run.id.clone();
            let network = self.network.clone();
            let slots = self.run_work.clone();
            tokio::spawn(async move {
                // The shim may still be starting its command.
                let exec = loop {
                    if let Ok(Some(exec)) = dir.read_exec() {
                        break Some(exec);
                    }
                    if os::cmdline(shim_pid).is_none() {
                        break None;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                if let Some(exec) = exec {
                    let _ = tx.send(Msg::Run(
                        k.clone(),
                        Input::Spawned {
                            run_id: run_id.clone(),
                            pid: exec.pid,
                            at: exec.started_at,
                        },
                    ));
                }
                let (input, usage) = watch_exit(shim_pid, dir, run_id, cgroups, network, clock, slots).await;
                let _ = tx.send(Msg::Ended(k, input, usage));
            });
            let state = self.dynos[key].rec.sup.state;
            if state == State::Starting && has_port {
                self.watch_port(key, run.id.clone());
            }
        } else if never_started && dir.read_exit().ok().flatten().is_none() {
            // Prepared (perhaps half) but never exec'd: the host's failure,
            // not the app's crash. Retried on the spawn backoff.
            info!(app = %key.0, dyno = %key.1, run = %run.id, "settling a run that never started");
            self.step(
                key,
                Input::SpawnFailed {
                    run_id: run.id.clone(),
                    error: "the run never started: the agent stopped before it was spawned".into(),
                },
            );
            self.abandon_run(key, &run.id);
        } else {
            let (input, usage) = ended_input(&dir, run.id.clone(), self.clock.now(), self.cgroups.as_deref());
            info!(app = %key.0, dyno = %key.1, run = %run.id, ?input, "settling a run that ended while the agent was away");
            self.meter_close(&input, usage);
            self.step(key, input);
        }
    }

    /// Removes what no dyno owns once every known run is re-adopted or
    /// settled, and lets the meter bill again.
    fn clean_up(&mut self, live: &LiveShims) -> anyhow::Result<()> {
        // Runs of a dyno (settling may have started new ones), and live runs
        // nobody can account for (left alone).
        let mut referenced = self.referenced_runs();
        referenced.extend(self.unaccounted.iter().cloned());
        if let Some(cgroups) = &self.cgroups {
            let mut active = self.current_runs();
            active.extend(self.unaccounted.iter().cloned());
            match cgroups.reap(&|name| active.contains(name)) {
                Ok(reaped) if !reaped.is_empty() => warn!(?reaped, "removed cgroups of runs that no longer exist"),
                Ok(_) => {}
                Err(e) => error!(error = %e, "cannot reap leftover cgroups"),
            }
        }
        // Older runs of known dynos whose shims live on: end them.
        for (run_id, shim_pid) in live {
            if !referenced.contains(run_id) {
                let dir = RunDir::new(&self.paths.runs, run_id);
                warn!(run = %run_id, shim_pid, "ending an orphaned run");
                if let Ok(Some(exec)) = dir.read_exec() {
                    kill_run(&exec);
                }
            }
        }
        // Run directories of no dyno.
        for d in fs::read_dir(&self.paths.runs)?.flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            if !referenced.contains(&name) && !live.contains_key(&name) {
                self.remove_run_dir(&name);
            }
        }
        // Meters of runs that are no dyno's current run any more (the agent
        // died between a run's end and its billing) are closed; the meter
        // bills no slice before this, as every run that ended while the agent
        // was away has been closed above.
        self.meter.reconcile(self.current_runs());
        Ok(())
    }

    /// The ids of every dyno's current run.
    fn current_runs(&self) -> HashSet<String> {
        self.dynos
            .values()
            .filter_map(|e| e.rec.sup.run.as_ref())
            .map(|r| r.id.clone())
            .collect()
    }
}
