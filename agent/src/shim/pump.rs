//! The output pump: copies the command's stdout and stderr into the run's
//! log until the command exits, then ends what is left of its process
//! group, reaps it and drains the pipes for a while. It reads at most once
//! per [`GATHER`] while output flows, so its cost does not grow with the
//! number of writes; the log's rate limit drops what is over the rate.

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use crate::logs::LogWriter;
use crate::os::{self, ExitStatus};

/// How long the pipes are drained after the command exited, for output of
/// processes that escaped its process group.
const DRAIN: Duration = Duration::from_secs(2);

/// After a read, the pump lets output gather this long before it reads
/// again: a dyno writing tiny lines as fast as it can then costs the shim
/// (outside the dyno's cgroup) a read per interval, not a wakeup per write.
/// A pipe holds 64 KiB, so a writer blocks only past 6.4 MB/s.
const GATHER: Duration = Duration::from_millis(10);

/// Copies output into the log until the command exits; then ends the rest of
/// its process group, reaps it and drains the pipes. Returns its status.
pub(super) fn pump(
    pid: u32,
    kill_group: bool,
    pipes: [OwnedFd; 2],
    sig: &mut UnixStream,
    log: &mut LogWriter,
) -> io::Result<ExitStatus> {
    let [out, err] = pipes;
    let mut open = [Some(out), Some(err)];
    let mut status = None;
    let mut drain_until: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if status.is_some() && open.iter().all(Option::is_none) {
            break;
        }
        let drain_left = match drain_until {
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                Some(left)
            }
            None => None,
        };
        // Wake up for a due count of dropped lines too.
        let timeout = match [drain_left, log.next_report()].into_iter().flatten().min() {
            Some(left) => PollTimeout::try_from(left.as_millis().min(1000) as i32).unwrap_or(PollTimeout::ZERO),
            None => PollTimeout::NONE,
        };
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(3);
        fds.push(PollFd::new(sig.as_fd(), PollFlags::POLLIN));
        let streams: Vec<usize> = (0..2).filter(|i| open[*i].is_some()).collect();
        for i in &streams {
            fds.push(PollFd::new(open[*i].as_ref().expect("open").as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);

        let mut got_output = false;
        for (slot, i) in streams.iter().enumerate() {
            if !ready[slot + 1] {
                continue;
            }
            let fd = open[*i].as_ref().expect("open");
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => open[*i] = None,
                Ok(n) => {
                    log.feed(*i, &buf[..n])?;
                    got_output = true;
                }
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(_) => open[*i] = None,
            }
        }
        log.tick()?;
        if ready[0] {
            let mut sink = [0u8; 64];
            while matches!(sig.read(&mut sink), Ok(n) if n > 0) {}
        }
        if status.is_none()
            && let Some(s) = os::peek_exit(pid)?
        {
            // The command is gone: the dyno is over. End what is left of its
            // process group while the group id is still reserved by the
            // unreaped command, then reap it.
            if kill_group {
                let _ = os::kill_group(pid, Signal::SIGKILL as i32);
            }
            os::wait_exit(pid)?;
            status = Some(s);
            drain_until = Some(Instant::now() + DRAIN);
        }
        if got_output && status.is_none() {
            std::thread::sleep(GATHER);
        }
    }
    Ok(status.expect("loop ends only after the exit"))
}
