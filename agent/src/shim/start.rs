//! Starting the run's command: straight in a session of its own, or jailed
//! under the dyno's init, whose first report says whether the command was
//! exec'd.

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;

use crate::os::report::{FRAME_LEN, Report};
use crate::os::{self, ExecPlan};
use crate::runs::{JailSpec, RunDir, RunSpec};

/// A command that was exec'd.
pub(super) struct Started {
    /// The shim's child: the command, or the dyno's init.
    pub child: u32,
    /// The command's host pid.
    pub pid: u32,
    /// The dyno's init, for a jailed run.
    pub init_pid: Option<u32>,
    /// The read ends of the command's stdout and stderr.
    pub output: [OwnedFd; 2],
    /// The read end of the init's report pipe, for a jailed run.
    pub init_report: Option<OwnedFd>,
}

/// Starts `spec`'s command; returns once it was exec'd (or failed to be).
pub(super) fn start(run: &RunDir, spec: &RunSpec) -> io::Result<Started> {
    let null = OwnedFd::from(std::fs::File::open("/dev/null")?);
    let (out_r, out_w) = os::pipe()?;
    let (err_r, err_w) = os::pipe()?;
    let (child, pid, init_pid, init_report) = match &spec.jail {
        None => {
            let plan = ExecPlan::shell(&spec.command, &spec.env, &spec.workdir)?;
            let pid = os::spawn_command(&plan, &null, &out_w, &err_w)?;
            (pid, pid, None, None)
        }
        Some(j) => {
            let (report_r, report_w) = os::pipe()?;
            let init = start_jailed(run, spec, j, [&null, &out_w, &err_w], report_w, &report_r)?;
            let pid = os::children(init).first().copied().unwrap_or(init);
            (init, pid, Some(init), Some(report_r))
        }
    };
    Ok(Started {
        child,
        pid,
        init_pid,
        output: [out_r, err_r],
        init_report,
    })
}

/// Starts the dyno's init and waits for its first report; returns the
/// init's pid once the command was exec'd.
fn start_jailed(
    run: &RunDir,
    spec: &RunSpec,
    j: &JailSpec,
    streams: [&OwnedFd; 3],
    report_w: OwnedFd,
    report_r: &OwnedFd,
) -> io::Result<u32> {
    let exec = ExecPlan::shell(&spec.command, &spec.env, Path::new("/app"))?;
    for dir in [run.root(), run.rw()] {
        crate::private::create_dir_all(&dir)?;
    }
    let plan = os::JailPlan {
        root: run.root(),
        rw: run.rw(),
        stack: j.stack.clone(),
        app: spec.workdir.clone(),
        disk_bytes: j.disk_bytes,
        hostname: j.hostname.clone(),
        uid: j.uid,
        gid: j.gid,
        nofile: j.nofile,
        netns: j.netns.clone(),
        resolv_conf: j.resolv_conf.clone(),
    };
    let jailed = os::spawn_jailed(&plan, &exec, streams, &report_w, &j.cgroup_procs, j.oom_score_adj)?;
    drop(report_w);
    let mut frame = [0u8; FRAME_LEN];
    let n = (&std::fs::File::from(report_r.try_clone()?)).read(&mut frame)?;
    match Report::decode(&frame[..n]) {
        Ok(Report::Started) => Ok(jailed.init),
        first => {
            let _ = os::wait_exit(jailed.init);
            let why = match first {
                Ok(Report::Failed { step, errno }) => {
                    format!("{}: {}", os::step_name(step), io::Error::from_raw_os_error(errno))
                }
                _ => "the dyno's init ended before starting the command".to_string(),
            };
            Err(io::Error::other(format!("jail: {why}")))
        }
    }
}
