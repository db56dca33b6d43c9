//! Launching a run: its directory and `spec.json` (environment, command,
//! jail, cgroup), the `dynoagent shim` that starts it, and the `$PORT`
//! probe of a starting web run. Old run directories go here too.

use std::fs;
use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tracing::warn;

use super::actor::Actor;
use super::model::{DynoSpec, Owner};
use super::settle::watch_exit;
use super::{Key, Msg};
use crate::cgroup::{self, CgroupsRef};
use crate::logs;
use crate::net::NetworkRef;
use crate::runs::{self, ExecRecord, JailSpec, RunDir, RunSpec};
use crate::supervisor::Input;

/// Sources `.profile.d/*.sh` and `.profile` of the app before its command.
const PROFILE: &str =
    "for f in .profile.d/*.sh; do [ -r \"$f\" ] && . \"./$f\"; done; unset f; [ -r .profile ] && . ./.profile; ";

/// How often a web run's $PORT is probed while it is starting.
const PORT_PROBE: Duration = Duration::from_millis(50);

/// The `sh -c` argument of a run of `command`: the command after the app's
/// profile scripts.
pub fn shell_command(command: &str) -> String {
    format!("{PROFILE}{command}")
}

/// What the shim of run `run_id` of `spec` runs: the app's command after its
/// profile scripts, with its environment rooted at `/app` in a jail and at
/// the slug's `app/` directory without one.
pub(super) fn run_spec(spec: &DynoSpec, run_id: &str, jail: Option<JailSpec>, log: logs::Bounds) -> RunSpec {
    let root = match &jail {
        Some(_) => "/app".to_string(),
        None => spec.app_dir.display().to_string(),
    };
    RunSpec {
        run_id: run_id.to_string(),
        app: spec.app.clone(),
        dyno: spec.name.clone(),
        command: shell_command(&spec.command),
        env: spec.run_env(&root, run_id),
        workdir: spec.app_dir.clone(),
        log_max_bytes: log.max_bytes,
        log_rate_lines: log.rate_lines,
        log_rate_burst: log.burst,
        jail,
        attach: None,
        owner: None,
    }
}

/// The run whose directory goes when `run_id` starts: the one before the
/// previous run (`<prefix>.<n - 2>`), whose logs nobody shows any more.
pub(super) fn stale_run(run_prefix: &str, run_id: &str) -> Option<String> {
    let n = run_id.rsplit_once('.').and_then(|(_, n)| n.parse::<u32>().ok())?;
    (n > 2).then(|| format!("{run_prefix}.{}", n - 2))
}

impl Actor {
    /// Creates the run's directory and cgroup and writes its `spec.json`.
    pub(super) fn prepare_run(&mut self, key: &Key, run_id: &str) -> std::io::Result<()> {
        self.dynos.get_mut(key).expect("present").rec.address = None;
        let rec = &self.dynos[key].rec;
        let dir = RunDir::new(&self.paths.runs, run_id);
        crate::private::create_dir_all(&dir.path)?;
        let size = self
            .cfg
            .sizes
            .get(&rec.spec.size)
            .ok_or_else(|| std::io::Error::other(format!("size {:?} is not configured", rec.spec.size)))?;
        let jail = match self.cfg.stacks.get(&rec.spec.stack) {
            Some(stack) => {
                let cgroup_procs = match &self.cgroups {
                    Some(cgroups) => cgroups
                        .create(run_id, &size.cgroup_limits(crate::host::has_swap()))
                        .map_err(|e| std::io::Error::other(format!("cgroup: {e}")))?
                        .procs_files(),
                    None => Vec::new(),
                };
                let (netns, resolv_conf) = match &self.network {
                    Some(net) => {
                        let claim = net.claim(run_id, rec.spec.port);
                        let paths = (Some(claim.netns.clone()), Some(net.resolv_conf_of(&claim.id)));
                        self.claims.insert(run_id.to_string(), claim);
                        paths
                    }
                    None => (None, None),
                };
                Some(JailSpec {
                    netns,
                    resolv_conf,
                    stack: stack.clone(),
                    uid: rec.uid,
                    gid: rec.uid,
                    hostname: rec.id.clone(),
                    disk_bytes: self.cfg.disk_limit,
                    nofile: size.nofile,
                    cgroup_procs,
                    oom_score_adj: self.cfg.dyno_oom_score_adj,
                })
            }
            None if self.cfg.allow_unjailed => None,
            None => {
                return Err(std::io::Error::other(format!(
                    "stack {:?} is not configured and allow_unjailed is off",
                    rec.spec.stack
                )));
            }
        };
        let mut spec = run_spec(&rec.spec, run_id, jail, self.cfg.log_bounds());
        spec.owner = serde_json::to_value(Owner::of(rec)).ok();
        spec.attach = rec.spec.attach.map(|a| runs::AttachSpec {
            tty: a.tty,
            rows: a.rows,
            cols: a.cols,
            grace_secs: self.cfg.stop_grace.as_secs().max(1),
        });
        // A failure is settled as `spawn_failed`, which abandons the run.
        runs::write_json_atomic(&dir.spec(), &spec)?;
        // Keep the previous run's directory for its logs; drop older ones,
        // but never the last run that ran (runs that failed to spawn since
        // left no directory; the agent's next start removes what is left).
        if let Some(old) = stale_run(&rec.sup.run_prefix, run_id)
            && rec.sup.last_run.as_ref().is_none_or(|r| r.id != old)
        {
            self.remove_run_dir(&old);
        }
        Ok(())
    }

    /// Removes a run's directory; its exit record goes to the meter first
    /// (closing a meter twice is harmless), so that a run whose end the meter
    /// has not seen yet is still billed to its real end.
    pub(super) fn remove_run_dir(&self, run_id: &str) {
        let dir = RunDir::new(&self.paths.runs, run_id);
        if let Ok(Some(exit)) = dir.read_exit() {
            self.meter
                .close(run_id.to_string(), crate::meter::End::Exited(exit.exited_at), None);
        }
        if let Err(e) = fs::remove_dir_all(&dir.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(path = %dir.path.display(), error = %e, "cannot remove a run directory");
        }
    }

    /// Removes what a run that never exec'd has (it ended `spawn_failed`):
    /// its network, cgroup and run directory, at once rather than at the
    /// next agent start. Whatever of it is already gone is skipped. The
    /// log of a dyno's first run stays when that run is where the failures
    /// are told (the dyno never ran), the rest of its directory goes.
    pub(super) fn abandon_run(&mut self, key: &Key, run_id: &str) {
        self.drop_claim(run_id);
        let keeps_log = self
            .dynos
            .get(key)
            .and_then(|e| e.rec.sup.last_run.as_ref())
            .is_some_and(|r| r.id == run_id);
        if keeps_log {
            let dir = RunDir::new(&self.paths.runs, run_id);
            for file in [dir.spec(), dir.exec()] {
                if let Err(e) = fs::remove_file(&file)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    warn!(path = %file.display(), error = %e, "cannot remove a file of a run that did not start");
                }
            }
        } else {
            self.remove_run_dir(run_id);
        }
        // Off the actor: removing a cgroup may wait for what is left in it.
        if let Some(cgroups) = self.cgroups.clone() {
            let run_id = run_id.to_string();
            let slots = self.run_work.clone();
            tokio::spawn(async move {
                let _slot = slots.acquire_owned().await.ok();
                discard(None, Some(cgroups), &run_id).await
            });
        }
    }

    /// Releases the network picked for a run that will not be spawned.
    pub(super) fn drop_claim(&mut self, run_id: &str) {
        if let (Some(net), Some(_)) = (self.network.clone(), self.claims.remove(run_id)) {
            let run_id = run_id.to_string();
            let slots = self.run_work.clone();
            tokio::spawn(async move {
                let _slot = slots.acquire_owned().await.ok();
                net.release_run(&run_id).await
            });
        }
    }

    /// Starts the shim of a prepared run, off the actor (its network first,
    /// when it has one); reports `Spawned`, then `Ended` when the shim is
    /// gone and its network torn down (or `SpawnFailed`).
    pub(super) fn spawn(&mut self, key: &Key, run_id: String) {
        let cgroups = self.cgroups.clone();
        let clock = self.clock;
        let exe = self.exe.clone();
        let dir = RunDir::new(&self.paths.runs, &run_id);
        let tx = self.tx.clone();
        let key = key.clone();
        let network = self.network.clone().zip(self.claims.remove(&run_id));
        let slots = self.run_work.clone();
        tokio::spawn(async move {
            // The network's setup and the shim's spawn hold descriptors of
            // the reserve's run work slots (see `fds`).
            let slot = slots.clone().acquire_owned().await.ok();
            if let Some((net, claim)) = &network {
                match net.setup(claim).await {
                    Ok(lease) => {
                        if let Some(address) = lease.address() {
                            let _ = tx.send(Msg::Address(key.clone(), run_id.clone(), address));
                        }
                    }
                    Err(e) => {
                        warn!(app = %key.0, dyno = %key.1, %run_id, error = %e, "network setup failed");
                        // setup left nothing of the network behind.
                        discard(None, cgroups, &run_id).await;
                        let error = format!("network: {e}");
                        let _ = tx.send(Msg::Run(key, Input::SpawnFailed { run_id, error }));
                        return;
                    }
                }
            }
            let net = network.map(|(net, _)| net);
            let input = match spawn_shim(&exe, &run_id, &dir).await {
                Ok((shim_pid, exec)) => {
                    drop(slot);
                    let _ = tx.send(Msg::Run(
                        key.clone(),
                        Input::Spawned {
                            run_id: run_id.clone(),
                            pid: exec.pid,
                            at: exec.started_at,
                        },
                    ));
                    let (input, usage) = watch_exit(shim_pid, dir, run_id, cgroups, net, clock, slots).await;
                    Msg::Ended(key, input, usage)
                }
                Err(error) => {
                    warn!(app = %key.0, dyno = %key.1, %run_id, %error, "spawn failed");
                    discard(net.as_ref(), cgroups, &run_id).await;
                    Msg::Run(key, Input::SpawnFailed { run_id, error })
                }
            };
            let _ = tx.send(input);
        });
    }

    /// Probes the dyno's $PORT until it accepts a connection, then reports
    /// `PortBound`; replaces an earlier probe.
    pub(super) fn watch_port(&mut self, key: &Key, run_id: String) {
        let Some(port) = self.dynos[key].rec.spec.port else {
            return;
        };
        let tx = self.tx.clone();
        let k = key.clone();
        let network = self.network.clone();
        let task = tokio::spawn(async move {
            loop {
                // The dyno itself: with an isolated network its own address,
                // never whatever answers on the host's port.
                let host = match &network {
                    Some(net) => match net.address_of(&run_id) {
                        Some(a) => a,
                        None => {
                            tokio::time::sleep(PORT_PROBE).await;
                            continue;
                        }
                    },
                    None => std::net::Ipv4Addr::LOCALHOST,
                };
                let probe = tokio::net::TcpStream::connect((host, port));
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), probe).await {
                    let _ = tx.send(Msg::Run(k, Input::PortBound { run_id }));
                    return;
                }
                tokio::time::sleep(PORT_PROBE).await;
            }
        });
        let entry = self.dynos.get_mut(key).expect("present");
        if let Some(old) = entry.probe.replace(task.abort_handle()) {
            old.abort();
        }
    }
}

/// Removes what a run that never started has: its network and its cgroup
/// (killing whatever a half-started shim left in it).
async fn discard(net: Option<&NetworkRef>, cgroups: Option<CgroupsRef>, run_id: &str) {
    if let Some(net) = net {
        net.release_run(run_id).await;
    }
    if let Some(cgroups) = cgroups {
        let id = run_id.to_string();
        let removed = tokio::task::spawn_blocking(move || remove_run_cgroup(cgroups.as_ref(), &id)).await;
        if let Ok(Err(e)) = removed {
            warn!(run = %run_id, error = %e, "cannot remove the cgroup of a run that did not start");
        }
    }
}

/// Removes a run's cgroup, if it has one (killing what is left in it). Blocking.
fn remove_run_cgroup(cgroups: &dyn cgroup::Cgroups, run_id: &str) -> Result<(), String> {
    match cgroups.open(run_id) {
        Ok(Some(cg)) => cg.remove().map_err(|e| e.to_string()),
        Ok(None) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Starts `dynoagent shim` for a prepared run directory and waits for its
/// report. Returns the shim's pid and the exec record.
async fn spawn_shim(exe: &Path, run_id: &str, dir: &RunDir) -> std::result::Result<(u32, ExecRecord), String> {
    let shim_log = crate::private::create(&dir.shim_log()).map_err(|e| format!("{}: {e}", dir.shim_log().display()))?;
    let mut child = tokio::process::Command::new(exe)
        .arg("shim")
        .arg(run_id)
        .arg(&dir.path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(shim_log)
        .env_clear()
        .spawn()
        .map_err(|e| format!("starting the shim: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(stdout);
    let result = tokio::time::timeout(Duration::from_secs(30), reader.read_line(&mut line)).await;
    // The first shim process exits right after forking the real one.
    let _ = child.wait().await;
    match result {
        Err(_) => return Err("the shim did not report within 30s".into()),
        Ok(Err(e)) => return Err(format!("reading the shim's report: {e}")),
        Ok(Ok(_)) => {}
    }
    let line = line.trim();
    if let Some(msg) = line.strip_prefix("err ") {
        return Err(msg.to_string());
    }
    let mut parts = line.strip_prefix("ok ").unwrap_or("").split(' ');
    let shim_pid: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(|| {
        let diag = fs::read_to_string(dir.shim_log()).unwrap_or_default();
        format!("the shim ended without a report: {}", diag.trim())
    })?;
    let exec = dir
        .read_exec()
        .map_err(|e| e.to_string())?
        .ok_or("the shim reported success without an exec record")?;
    Ok((shim_pid, exec))
}

#[cfg(test)]
#[path = "launch_tests.rs"]
mod tests;
