//! Writes that keep a run's log within `max_bytes`, whoever writes.
//!
//! Two processes append to a run's log: the shim (the app's lines) and the
//! agent (the runtime's lines). Each takes the run directory's `flock`,
//! finds the current `log` (the other one may have rotated it), and writes
//! whole lines: when the next line would take the file past `max_bytes` it
//! first renames `log` to `log.1` (replacing it) and starts a new `log`. A
//! single line longer than `max_bytes` is cut to fit, never written whole.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use super::rotated;

/// How long the agent waits for the lock before it gives up on a line (the
/// shim holds it for one write at a time).
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// The run directory's lock, held while it lives.
pub(super) struct Lock {
    _held: Flock<File>,
}

/// The directory a log lives in (its lock's target).
pub(super) fn dir_of(log: &Path) -> &Path {
    match log.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Takes the lock on `dir` (an open run directory), waiting for it.
pub(super) fn lock(dir: &File) -> io::Result<Lock> {
    Flock::lock(dir.try_clone()?, FlockArg::LockExclusive)
        .map(|held| Lock { _held: held })
        .map_err(|(_, e)| io::Error::other(format!("locking the run directory: {e}")))
}

/// Takes the lock on the directory of `log`, waiting up to [`LOCK_WAIT`].
pub(super) fn lock_briefly(log: &Path) -> io::Result<Lock> {
    let dir = File::open(dir_of(log))?;
    let deadline = Instant::now() + LOCK_WAIT;
    let mut file = dir;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => return Ok(Lock { _held: held }),
            Err((f, nix::errno::Errno::EWOULDBLOCK | nix::errno::Errno::EINTR)) if Instant::now() < deadline => {
                file = f;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((_, e)) => {
                return Err(io::Error::other(format!("locking {}: {e}", dir_of(log).display())));
            }
        }
    }
}

/// A writer's open `log` and its inode, to notice a rotation by the other
/// writer.
pub(super) struct Current {
    file: File,
    ino: u64,
}

/// Opens (creating it root-only, see [`crate::private`]) the run's `log`.
fn open(log: &Path) -> io::Result<Current> {
    let file = crate::private::append(log)?;
    let ino = file.metadata()?.ino();
    Ok(Current { file, ino })
}

/// `cur` if it is still the file at `log`, else the file there now (created
/// if there is none).
fn current<'a>(log: &Path, cur: &'a mut Option<Current>) -> io::Result<&'a mut Current> {
    let stale = match (&*cur, fs::metadata(log)) {
        (Some(c), Ok(m)) => m.ino() != c.ino,
        _ => true,
    };
    if stale {
        *cur = Some(open(log)?);
    }
    Ok(cur.as_mut().expect("just opened"))
}

/// The length of the first line of `data`, its newline included.
fn first_line(data: &[u8]) -> usize {
    data.iter().position(|b| *b == b'\n').map_or(data.len(), |nl| nl + 1)
}

/// The bytes of whole lines at the start of `data` that fit in `room`.
fn whole_lines_within(data: &[u8], room: usize) -> usize {
    if data.len() <= room {
        return data.len();
    }
    data[..room].iter().rposition(|b| *b == b'\n').map_or(0, |nl| nl + 1)
}

/// `line` cut to `max` bytes, newline included, at a UTF-8 boundary.
fn cut(line: &[u8], max: usize) -> Vec<u8> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let mut end = max.saturating_sub(1).min(body.len());
    while end > 0 && body.get(end).is_some_and(|b| b & 0xC0 == 0x80) {
        end -= 1;
    }
    let mut out = body[..end].to_vec();
    out.push(b'\n');
    out
}

/// Appends `lines` (whole lines) to `log`, keeping it within `max` bytes.
/// The caller holds the run directory's lock; `cur` is its open `log`.
pub(super) fn append(log: &Path, cur: &mut Option<Current>, mut lines: &[u8], max: u64) -> io::Result<()> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let mut c = current(log, cur)?;
    let mut len = usize::try_from(c.file.metadata()?.len()).unwrap_or(usize::MAX);
    while !lines.is_empty() {
        let fit = whole_lines_within(lines, max.saturating_sub(len));
        if fit > 0 {
            if let Err(e) = c.file.write_all(&lines[..fit]) {
                // A full disk may take part of a write: cut it off, so that
                // the log holds whole lines only.
                let _ = c.file.set_len(len as u64);
                return Err(e);
            }
            len += fit;
            lines = &lines[fit..];
        } else if len > 0 {
            // The next line would cross the bound: rotate first.
            fs::rename(log, rotated(log))?;
            *cur = Some(open(log)?);
            c = cur.as_mut().expect("just opened");
            len = 0;
        } else {
            // Longer than the bound on its own: cut.
            let n = first_line(lines);
            let short = cut(&lines[..n], max);
            if let Err(e) = c.file.write_all(&short) {
                let _ = c.file.set_len(0);
                return Err(e);
            }
            len = short.len();
            lines = &lines[n..];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_fit_or_none_does() {
        assert_eq!(whole_lines_within(b"ab\ncd\n", 10), 6);
        assert_eq!(whole_lines_within(b"ab\ncd\n", 5), 3);
        assert_eq!(whole_lines_within(b"ab\ncd\n", 2), 0);
        assert_eq!(first_line(b"ab\ncd\n"), 3);
    }

    #[test]
    fn a_cut_line_keeps_utf8_whole_and_ends_in_a_newline() {
        assert_eq!(cut("aé\n".as_bytes(), 3), b"a\n");
        assert_eq!(cut(b"abcdef\n", 4), b"abc\n");
        assert_eq!(cut(b"ab\n", 10), b"ab\n");
    }

    #[test]
    fn the_log_never_passes_the_bound_and_rotates_before_it_would() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut cur = None;
        // One batch four times the bound, then a line longer than it.
        let batch: Vec<u8> = (0..400).flat_map(|i| format!("line {i:04}\n").into_bytes()).collect();
        append(&log, &mut cur, &batch, 1000).unwrap();
        assert!(fs::metadata(&log).unwrap().len() <= 1000);
        assert_eq!(fs::metadata(rotated(&log)).unwrap().len(), 1000);
        let text = fs::read_to_string(&log).unwrap();
        assert!(text.ends_with("line 0399\n"), "{text}");
        append(&log, &mut cur, &[b'z'; 3000], 1000).unwrap();
        assert_eq!(fs::read(&log).unwrap().len(), 1000);
        assert!(fs::read(&log).unwrap().ends_with(b"zz\n"));
    }

    #[test]
    fn a_writer_follows_a_rotation_by_the_other_writer() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let (mut shim, mut agent) = (None, None);
        append(&log, &mut shim, b"a\n", 4).unwrap();
        append(&log, &mut agent, b"b\n", 4).unwrap();
        append(&log, &mut agent, b"c\n", 4).unwrap(); // rotates
        append(&log, &mut shim, b"d\n", 4).unwrap();
        assert_eq!(fs::read_to_string(rotated(&log)).unwrap(), "a\nb\n");
        assert_eq!(fs::read_to_string(&log).unwrap(), "c\nd\n");
    }
}
