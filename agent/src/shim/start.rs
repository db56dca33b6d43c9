//! Starting the run's command: straight in a session of its own, or jailed
//! under the dyno's init, whose first report says whether the command was
//! exec'd.

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
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
    /// Where the command's output goes.
    pub output: Output,
    /// The read end of the init's report pipe, for a jailed run.
    pub init_report: Option<OwnedFd>,
}

/// The command's output: pipes read into the log, or (an attached run)
/// the fds its caller gets.
pub(super) enum Output {
    Log([OwnedFd; 2]),
    /// The tag and fds handed over on `attach.sock` (see
    /// [`crate::runs::AttachSpec`]): `t` and the pty's master, or `p` and
    /// stdin's write end, stdout's and stderr's read ends.
    Attached(u8, Vec<OwnedFd>),
}

/// Starts `spec`'s command; returns once it was exec'd (or failed to be).
pub(super) fn start(run: &RunDir, spec: &RunSpec) -> io::Result<Started> {
    let null = OwnedFd::from(std::fs::File::open("/dev/null")?);
    let tty = spec.attach.filter(|a| a.tty);
    // An unjailed run's pty comes from the host's devpts; a jailed run's
    // init allocates it in the dyno's own and sends its master on `console`.
    let host_pty = match (tty, &spec.jail) {
        (Some(a), None) => Some(os::tty::open_pty(
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
            a.rows,
            a.cols,
        )?),
        _ => None,
    };
    let console = match (tty, &spec.jail) {
        (Some(_), Some(_)) => Some(os::tty::socketpair()?),
        _ => None,
    };
    let (in_r, in_w) = os::pipe()?;
    let (out_r, out_w) = os::pipe()?;
    let (err_r, err_w) = os::pipe()?;
    let stdin = if spec.attach.is_some() { &in_r } else { &null };
    let (child, pid, init_pid, init_report) = match &spec.jail {
        None => {
            let mut plan = ExecPlan::shell(&spec.command, &spec.env, &spec.workdir)?;
            let pid = match &host_pty {
                Some((_, slave)) => {
                    plan = plan.with_controlling_tty();
                    os::spawn_command(&plan, slave, slave, slave)?
                }
                None => os::spawn_command(&plan, stdin, &out_w, &err_w)?,
            };
            (pid, pid, None, None)
        }
        Some(j) => {
            let (report_r, report_w) = os::pipe()?;
            let console = console.as_ref().zip(tty).map(|((_, init_end), a)| os::Console {
                sock: init_end.as_fd(),
                rows: a.rows,
                cols: a.cols,
            });
            let streams = match console {
                Some(_) => [&null, &null, &null],
                None => [stdin, &out_w, &err_w],
            };
            let shim_ends = [&in_w, &out_r, &err_r];
            let io = os::JailIo {
                streams,
                shim_ends: &shim_ends,
                console,
            };
            let init = start_jailed(run, spec, j, io, report_w, &report_r)?;
            let pid = os::children(init).first().copied().unwrap_or(init);
            (init, pid, Some(init), Some(report_r))
        }
    };
    let output = match (spec.attach, host_pty, console) {
        (None, ..) => Output::Log([out_r, err_r]),
        (Some(_), Some((master, _)), _) => Output::Attached(b't', vec![master]),
        (Some(_), None, Some((shim_end, init_end))) => {
            drop(init_end);
            match os::tty::recv_fds(shim_end.as_fd())? {
                Some((b't', mut fds)) if fds.len() == 1 => Output::Attached(b't', vec![fds.remove(0)]),
                _ => return Err(io::Error::other("the dyno's init sent no pty")),
            }
        }
        (Some(_), None, None) => Output::Attached(b'p', vec![in_w, out_r, err_r]),
    };
    Ok(Started {
        child,
        pid,
        init_pid,
        output,
        init_report,
    })
}

/// Starts the dyno's init and waits for its first report; returns the
/// init's pid once the command was exec'd.
fn start_jailed(
    run: &RunDir,
    spec: &RunSpec,
    j: &JailSpec,
    io: os::JailIo<'_>,
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
    let jailed = os::spawn_jailed(&plan, &exec, io, &report_w, &j.cgroup_procs, j.oom_score_adj)?;
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
