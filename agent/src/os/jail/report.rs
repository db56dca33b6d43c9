//! The init→shim wire format: what the dyno's init tells its shim on the
//! report pipe. One message is one fixed-size frame of three native-endian
//! i32s, `[kind, a, b]`:
//!
//! | message | frame |
//! |---|---|
//! | the command was exec'd | `[0, 0, 0]` |
//! | setting up the jail failed | `[1, step, errno]` |
//! | the command exited with a code | `[2, 0, code]` |
//! | the command was killed by a signal | `[2, 1, signal]` |
//!
//! The init only [`Report::encode`]s (into a stack array, so it may do so
//! between fork and exec), the shim only [`Report::decode`]s. The bytes are
//! those of every released version: a shim and its init always come from the
//! same binary today, but keep them stable anyway.

use crate::os::ExitStatus;

/// Bytes of one frame on the wire.
pub const FRAME_LEN: usize = 12;

const STARTED: i32 = 0;
const FAILED: i32 = 1;
const EXITED: i32 = 2;

/// A message from the dyno's init to its shim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// The command was exec'd.
    Started,
    /// Setting up the jail failed at `step` (see [`step_name`]) with `errno`.
    Failed { step: i32, errno: i32 },
    /// The command ended.
    Exited(ExitStatus),
}

/// Why a frame could not be decoded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("report frame of {0} bytes, expected {FRAME_LEN}")]
    Length(usize),
    #[error("report frame of unknown kind {0}")]
    UnknownKind(i32),
    #[error("exit report with flag {0}, expected 0 (code) or 1 (signal)")]
    ExitFlag(i32),
}

impl Report {
    /// The frame of this message. Async-signal-safe: no allocation.
    pub fn encode(self) -> [u8; FRAME_LEN] {
        let words = match self {
            Report::Started => [STARTED, 0, 0],
            Report::Failed { step, errno } => [FAILED, step, errno],
            Report::Exited(ExitStatus::Code(code)) => [EXITED, 0, code],
            Report::Exited(ExitStatus::Signal(sig)) => [EXITED, 1, sig],
        };
        let mut frame = [0u8; FRAME_LEN];
        for (chunk, word) in frame.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        frame
    }

    /// The message in `frame`, which must be exactly one frame long.
    pub fn decode(frame: &[u8]) -> Result<Report, DecodeError> {
        let frame: &[u8; FRAME_LEN] = frame.try_into().map_err(|_| DecodeError::Length(frame.len()))?;
        let word = |i: usize| i32::from_ne_bytes([frame[i * 4], frame[i * 4 + 1], frame[i * 4 + 2], frame[i * 4 + 3]]);
        match (word(0), word(1), word(2)) {
            (STARTED, ..) => Ok(Report::Started),
            (FAILED, step, errno) => Ok(Report::Failed { step, errno }),
            (EXITED, 0, code) => Ok(Report::Exited(ExitStatus::Code(code))),
            (EXITED, 1, sig) => Ok(Report::Exited(ExitStatus::Signal(sig))),
            (EXITED, flag, _) => Err(DecodeError::ExitFlag(flag)),
            (kind, ..) => Err(DecodeError::UnknownKind(kind)),
        }
    }

    /// Every whole frame of `bytes` decoded, in order (a trailing partial
    /// frame is reported as [`DecodeError::Length`]).
    pub fn decode_all(bytes: &[u8]) -> impl Iterator<Item = Result<Report, DecodeError>> + '_ {
        bytes.chunks(FRAME_LEN).map(Report::decode)
    }
}

/// Steps of the jail set-up, named in errors (the `step` of
/// [`Report::Failed`]).
pub fn step_name(step: i32) -> &'static str {
    match step {
        1 => "unshare(mount, uts, ipc)",
        2 => "making / private",
        3 => "mounting the run's tmpfs",
        4 => "preparing the writable layer",
        5 => "bind-mounting the stack read-only",
        6 => "mounting /app (overlayfs)",
        7 => "giving /app to the dyno's uid",
        8 => "mounting /tmp",
        9 => "mounting /proc",
        10 => "masking /proc paths",
        11 => "mounting /dev",
        12 => "setting the hostname",
        13 => "pivot_root",
        14 => "forking the command",
        15 => "joining a fresh session keyring",
        16 => "joining the dyno's network namespace",
        17 => "mounting /etc/resolv.conf",
        18 => "allocating the pty",
        20 => "setsid",
        21 => "setting rlimits",
        22 => "chdir /app",
        23 => "dropping capabilities",
        24 => "switching to the dyno's uid/gid",
        25 => "no_new_privs",
        26 => "redirecting standard streams",
        27 => "closing inherited fds",
        28 => "exec /bin/sh",
        29 => "installing the seccomp filter",
        30 => "taking the pty as controlling terminal",
        _ => "setting up the jail",
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
