//! An attached run's caller: the shim serves `attach.sock` (see
//! [`crate::runs::AttachSpec`]). The first connection gets the command's
//! pty master or pipes by `SCM_RIGHTS` and is then the caller's lifeline:
//! when it closes before the command ended (the caller went, or the agent
//! holding it did), the shim hangs the command up — SIGHUP, then SIGTERM to
//! every process of the dyno, then SIGKILL after the grace period. Nobody
//! connecting within [`ATTACH_WAIT`] counts as a caller gone: no one-off is
//! left running unattached. When the command has ended, its status goes to
//! the caller as an init report frame.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use crate::os::report::Report;
use crate::os::{self, ExitStatus};
use crate::runs::AttachSpec;

/// How long the shim waits for its caller, before and after the command ended.
pub(super) const ATTACH_WAIT: Duration = Duration::from_secs(60);

/// Between SIGHUP and SIGTERM, after the caller went.
const HANGUP_GRACE: Duration = Duration::from_secs(1);

/// The caller's side of an attached run, as the shim holds it.
pub(super) struct Caller {
    listener: Option<UnixListener>,
    conn: Option<UnixStream>,
    handover: Option<(u8, Vec<OwnedFd>)>,
    /// Whether the first connection came and went.
    gone: bool,
    since: Instant,
}

impl Caller {
    /// Binds `sock` (0600: the run's directory is the agent's alone anyway).
    pub(super) fn listen(sock: &Path, tag: u8, fds: Vec<OwnedFd>) -> io::Result<Caller> {
        let _ = std::fs::remove_file(sock);
        let listener = UnixListener::bind(sock)
            .map_err(|e| io::Error::new(e.kind(), format!("binding {}: {e}", sock.display())))?;
        std::fs::set_permissions(sock, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Caller {
            listener: Some(listener),
            conn: None,
            handover: Some((tag, fds)),
            gone: false,
            since: Instant::now(),
        })
    }

    /// Accepts the first connection and hands it the fds; closes the
    /// listener (a run is attached once).
    fn accept(&mut self) {
        let Some(listener) = &self.listener else { return };
        let Ok((conn, _)) = listener.accept() else { return };
        if let Some((tag, fds)) = self.handover.take() {
            let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
            if os::tty::send_fds(conn.as_fd(), tag, &borrowed).is_err() {
                self.gone = true;
            }
        }
        let _ = conn.set_nonblocking(true);
        self.conn = Some(conn);
        self.listener = None;
    }

    /// Whether the caller is gone (its connection closed, or it never came).
    fn check_gone(&mut self) -> bool {
        if let Some(conn) = &mut self.conn {
            let mut buf = [0u8; 64];
            match conn.read(&mut buf) {
                Ok(0) => self.gone = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.gone = true,
            }
        } else if self.since.elapsed() >= ATTACH_WAIT {
            self.gone = true;
        }
        self.gone
    }

    /// The fds polled: the listener or the connection.
    fn poll_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.conn
            .as_ref()
            .map(|c| c.as_fd())
            .or_else(|| self.listener.as_ref().map(|l| l.as_fd()))
    }

    /// After the command ended: waits (a while) for a caller that has not
    /// come yet, then sends it the command's status.
    pub(super) fn finish(mut self, status: ExitStatus) {
        let deadline = Instant::now() + ATTACH_WAIT;
        while self.conn.is_none() && !self.gone && Instant::now() < deadline {
            if let Some(fd) = self.poll_fd() {
                let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(1000u16));
            }
            self.accept();
        }
        if let Some(conn) = &mut self.conn {
            let _ = conn.set_nonblocking(false);
            let _ = conn.write_all(&Report::Exited(status).encode());
        }
    }
}

/// Waits for the command (the shim's child `pid`) to exit while serving its
/// caller; hangs it up when the caller goes. `init` is the dyno's init (a
/// jailed run), whose SIGTERM reaches every process of the dyno; without
/// one the command's process group is signalled.
pub(super) fn serve(
    caller: &mut Caller,
    pid: u32,
    command: u32,
    init: Option<u32>,
    spec: &AttachSpec,
    sig: &mut UnixStream,
) -> io::Result<ExitStatus> {
    // (when, signal) still to send once the caller went.
    let mut plan: Vec<(Instant, Signal)> = Vec::new();
    loop {
        let next = plan.first().map(|(at, _)| *at);
        let mut wait = Duration::from_secs(1);
        if let Some(at) = next {
            wait = wait.min(at.saturating_duration_since(Instant::now()));
        }
        {
            let mut fds = vec![PollFd::new(sig.as_fd(), PollFlags::POLLIN)];
            if !caller.gone
                && let Some(fd) = caller.poll_fd()
            {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
            match poll(
                &mut fds,
                PollTimeout::try_from(wait.as_millis() as i32).unwrap_or(PollTimeout::ZERO),
            ) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut sink = [0u8; 64];
        while matches!(sig.read(&mut sink), Ok(n) if n > 0) {}
        if let Some(s) = os::peek_exit(pid)? {
            if init.is_none() {
                let _ = os::kill_group(pid, Signal::SIGKILL as i32);
            }
            os::wait_exit(pid)?;
            return Ok(s);
        }
        if caller.conn.is_none() && !caller.gone {
            caller.accept();
        }
        if !caller.gone && caller.check_gone() {
            // The caller went: SIGHUP now, the stop sequence after.
            let _ = os::kill_group(command, Signal::SIGHUP as i32);
            let now = Instant::now();
            let grace = Duration::from_secs(spec.grace_secs);
            plan = vec![
                (now + HANGUP_GRACE, Signal::SIGTERM),
                (now + HANGUP_GRACE + grace, Signal::SIGKILL),
            ];
        }
        while let Some((at, signal)) = plan.first().copied() {
            if at > Instant::now() {
                break;
            }
            plan.remove(0);
            // The init passes SIGTERM to every process of the dyno; its
            // SIGKILL ends the whole pid namespace.
            let _ = match init {
                Some(init) => os::kill_pid(init, signal as i32),
                None => os::kill_group(command, signal as i32),
            };
        }
    }
}
