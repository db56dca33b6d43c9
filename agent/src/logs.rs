//! Dyno logs: the line format, the size-bounded writer of the shim, the
//! runtime's own lines, and readers that tail and follow a run's log.
//!
//! Format (contract): `2026-11-22T10:00:00.123456+00:00 app[web.1]: text` for
//! the app's output and `… dyno[web.1]: text` for the runtime's own lines.
//! Timestamps have a fixed width, so lines of several logs sort by time as
//! plain strings.
//!
//! A run's log is `<run-dir>/log`, never larger than `max_bytes`: before a
//! write would cross it, the writer renames it to `log.1` (replacing the
//! previous one) and starts a new `log` ([`bounded`]). The shim writes the
//! app's lines, the agent its runtime lines; both take the run directory's
//! lock for each write, so neither overshoots the bound nor splits a line.
//!
//! The app's lines are rate-limited per run ([`rate`], Heroku's L10): past
//! `rate_lines` a second (after a burst), lines are dropped and counted.

use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

mod bounded;
pub mod rate;
pub mod tail;

/// Longer lines are split (as Heroku's router does at 10 KB).
pub const MAX_LINE: usize = 10 * 1024;

/// Who wrote a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The dyno's own output.
    App,
    /// The runtime (state changes, errors).
    Dyno,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::App => "app",
            Source::Dyno => "dyno",
        }
    }
}

/// `2026-11-22T10:00:00.123456+00:00`
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// One log line, newline included.
pub fn format_line(at: DateTime<Utc>, source: Source, dyno: &str, text: &str) -> String {
    format!("{} {}[{dyno}]: {text}\n", timestamp(at), source.as_str())
}

/// The parts of a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub timestamp: &'a str,
    pub source: Source,
    pub dyno: &'a str,
    pub text: &'a str,
}

/// Splits a line (without its newline) into its parts.
pub fn parse_line(line: &str) -> Option<Parsed<'_>> {
    let (timestamp, rest) = line.split_once(' ')?;
    let (head, text) = rest.split_once("]: ")?;
    let (source, dyno) = head.split_once('[')?;
    let source = match source {
        "app" => Source::App,
        "dyno" => Source::Dyno,
        _ => return None,
    };
    Some(Parsed {
        timestamp,
        source,
        dyno,
        text,
    })
}

/// Appends one runtime line to a run's log, keeping the log within
/// `max_bytes` (see [`bounded`]). `text` may quote a request (a command, an
/// error about a value): it is [escaped](escape_control), so a runtime line
/// is always exactly one line and no request can forge another.
pub fn append_runtime(log: &Path, dyno: &str, text: &str, max_bytes: u64) -> io::Result<()> {
    let line = format_line(Utc::now(), Source::Dyno, dyno, &escape_control(text));
    let _lock = bounded::lock_briefly(log)?;
    bounded::append(log, &mut None, line.as_bytes(), max_bytes)
}

/// `text` with every control character written as an escape: `\n`, `\r`,
/// `\t`, `\xNN` for the other C0 controls and DEL, `\u{NN}` for the C1
/// controls and the Unicode line and paragraph separators. What is left has
/// no line break and no terminal control sequence. Backslashes stay as they
/// are (a command reads as typed); the escape is for safety, not a reversible
/// encoding.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    let needs = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !text.chars().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if needs(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn rotated(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

/// What bounds a run's log: its size, and the rate of the app's lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// `log` never grows past this; one rotated `log.1` is kept.
    pub max_bytes: u64,
    /// Lines a second the app's output may sustain ...
    pub rate_lines: u32,
    /// ... after a burst of this many.
    pub burst: u32,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_bytes: 10 * 1024 * 1024,
            rate_lines: 1000,
            burst: 10_000,
        }
    }
}

/// The shim's writer: turns the dyno's output into lines of the contract
/// format, drops (and counts) what exceeds the rate, and writes the rest in
/// one locked, size-bounded write per batch.
pub struct LogWriter {
    path: PathBuf,
    /// The run directory, for its lock.
    dir: File,
    file: Option<bounded::Current>,
    max_bytes: u64,
    dyno: String,
    /// Bytes of an unfinished line, per stream (stdout, stderr).
    partial: [Vec<u8>; 2],
    out: Vec<u8>,
    rate: rate::Limiter,
    /// `<timestamp> app[<dyno>]: ` of the batch being formatted.
    prefix: String,
    /// Lines dropped because the log could not be written (a full disk),
    /// and the last error then: told in the log once it takes lines again.
    unwritten: u64,
    unwritten_error: String,
}

impl LogWriter {
    pub fn open(path: PathBuf, dyno: &str, bounds: Bounds) -> io::Result<LogWriter> {
        let dir = File::open(bounded::dir_of(&path))?;
        let mut w = LogWriter {
            path,
            dir,
            file: None,
            max_bytes: bounds.max_bytes,
            dyno: dyno.to_string(),
            partial: [Vec::new(), Vec::new()],
            out: Vec::new(),
            rate: rate::Limiter::new(bounds.rate_lines, bounds.burst, Instant::now()),
            prefix: String::new(),
            unwritten: 0,
            unwritten_error: String::new(),
        };
        // Create the log at once, as before the first line.
        w.write(&[])?;
        Ok(w)
    }

    /// Takes output of stream 0 (stdout) or 1 (stderr); writes complete lines.
    pub fn feed(&mut self, stream: usize, data: &[u8]) -> io::Result<()> {
        self.feed_at(stream, data, Instant::now(), Utc::now())
    }

    fn feed_at(&mut self, stream: usize, mut data: &[u8], now: Instant, wall: DateTime<Utc>) -> io::Result<()> {
        self.rate.refill(now);
        self.prefix.clear();
        while !data.is_empty() {
            if !self.rate.has_token() {
                // Over the rate: the rest of this chunk only gets counted.
                self.drop_rest(stream, data, now, wall);
                break;
            }
            match data.iter().position(|b| *b == b'\n') {
                Some(nl) => {
                    self.partial[stream].extend_from_slice(&data[..nl]);
                    self.emit(stream, now, wall);
                    data = &data[nl + 1..];
                }
                None => {
                    self.partial[stream].extend_from_slice(data);
                    break;
                }
            }
        }
        while self.partial[stream].len() >= MAX_LINE {
            let rest = self.partial[stream].split_off(MAX_LINE);
            self.emit(stream, now, wall);
            self.partial[stream] = rest;
        }
        self.report(now, wall, false);
        self.flush()
    }

    /// Counts the lines `data` ends as dropped; keeps its unfinished tail.
    fn drop_rest(&mut self, stream: usize, data: &[u8], now: Instant, wall: DateTime<Utc>) {
        let ended = rate::count_lines(data);
        if ended == 0 {
            self.partial[stream].extend_from_slice(data);
            return;
        }
        self.rate.drop_lines(ended, now, wall);
        let tail = data
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(data, |nl| &data[nl + 1..]);
        self.partial[stream].clear();
        self.partial[stream].extend_from_slice(tail);
    }

    /// Writes whatever unfinished lines remain and the last count of dropped
    /// lines (at the end of the run).
    pub fn finish(&mut self) -> io::Result<()> {
        let (now, wall) = (Instant::now(), Utc::now());
        self.rate.refill(now);
        self.prefix.clear();
        for stream in 0..2 {
            if !self.partial[stream].is_empty() {
                self.emit(stream, now, wall);
            }
        }
        self.report(now, wall, true);
        self.flush()
    }

    /// How long until a count of dropped lines is due in the log, if one
    /// waits: the pump calls [`LogWriter::tick`] by then.
    pub fn next_report(&self) -> Option<Duration> {
        self.rate.report_due(Instant::now())
    }

    /// Writes the count of dropped lines if it is due.
    pub fn tick(&mut self) -> io::Result<()> {
        self.report(Instant::now(), Utc::now(), false);
        self.flush()
    }

    fn report(&mut self, now: Instant, wall: DateTime<Utc>, now_anyway: bool) {
        if let Some(text) = self.rate.report(now, now_anyway) {
            self.out
                .extend_from_slice(format_line(wall, Source::Dyno, &self.dyno, &text).as_bytes());
        }
    }

    fn emit(&mut self, stream: usize, now: Instant, wall: DateTime<Utc>) {
        let bytes = std::mem::take(&mut self.partial[stream]);
        if !self.rate.admit(now, wall) {
            self.partial[stream] = bytes;
            self.partial[stream].clear();
            return;
        }
        if self.prefix.is_empty() {
            // Once per batch: the same as format_line's, without its text.
            self.prefix = format_line(wall, Source::App, &self.dyno, "");
            self.prefix.pop();
        }
        {
            let text = String::from_utf8_lossy(&bytes);
            let text = text.strip_suffix('\r').unwrap_or(&text);
            self.out.extend_from_slice(self.prefix.as_bytes());
            self.out.extend_from_slice(text.as_bytes());
            self.out.push(b'\n');
        }
        // Keep the buffer's allocation for the next line.
        self.partial[stream] = bytes;
        self.partial[stream].clear();
    }

    /// Writes the batch. When the log cannot take it (the state disk is
    /// full) its lines are dropped and counted, as over the rate, and the
    /// dyno goes on: its output is never worth the dyno. The count is
    /// written first once the log takes lines again.
    fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let mut out = std::mem::take(&mut self.out);
        if self.unwritten > 0 {
            let note = format!(
                "{} log lines were dropped: the log could not be written ({})",
                self.unwritten, self.unwritten_error
            );
            let mut with_note = format_line(Utc::now(), Source::Dyno, &self.dyno, &note).into_bytes();
            with_note.extend_from_slice(&out);
            out = with_note;
        }
        match self.write(&out) {
            Ok(()) => self.unwritten = 0,
            Err(e) => {
                // The note is not an app line: count the batch's own lines.
                let lines = rate::count_lines(&out) - u64::from(self.unwritten > 0);
                self.unwritten += lines;
                self.unwritten_error = e.to_string();
            }
        }
        self.out = out;
        self.out.clear();
        Ok(())
    }

    /// Lines dropped because the log could not be written, since it last could.
    pub fn unwritten(&self) -> u64 {
        self.unwritten
    }

    fn write(&mut self, lines: &[u8]) -> io::Result<()> {
        let _lock = bounded::lock(&self.dir)?;
        bounded::append(&self.path, &mut self.file, lines, self.max_bytes)
    }
}

/// Most bytes of log lines a tail holds by default (see [`tail_and_follow`]).
pub const TAIL_BUDGET: usize = 4 << 20;

/// The last `n` lines of a run's log (rotated part included), oldest first.
pub fn tail(log: &Path, n: usize) -> Vec<String> {
    tail_and_follow(log, n, TAIL_BUDGET).0
}

/// The last `n` lines of a run's log (rotated part included), oldest first,
/// read backwards from the end within about `budget` bytes (older lines are
/// left out); and a [`Follower`] that goes on right after them.
pub fn tail_and_follow(log: &Path, n: usize, budget: usize) -> (Vec<String>, Follower) {
    let mut follower = Follower::empty(log.to_path_buf());
    let mut lines = Vec::new();
    let mut left = budget;
    let mut older = true;
    if let Ok(mut file) = File::open(log) {
        let meta = file.metadata().ok();
        let end = meta.as_ref().map_or(0, |m| m.len());
        if let Ok(t) = tail::last_lines(&file, end, n, budget) {
            older = t.whole;
            left = left.saturating_sub(t.bytes);
            lines = t.lines;
            follower.pending = t.partial;
        }
        let _ = file.seek(SeekFrom::Start(end));
        follower.ino = meta.map_or(0, |m| m.ino());
        follower.file = Some(file);
    }
    if older
        && lines.len() < n
        && left > 0
        && let Ok(file) = File::open(rotated(log))
        && let Ok(meta) = file.metadata()
        && let Ok(mut t) = tail::last_lines(&file, meta.len(), n - lines.len(), left)
    {
        t.lines.append(&mut lines);
        lines = t.lines;
    }
    (lines, follower)
}

/// A run's whole log, oldest first, a line at a time (rotated part first);
/// [`Whole::into_follower`] goes on after the last line.
pub struct Whole {
    path: PathBuf,
    rotated: Option<tail::Lines>,
    current: Option<(tail::Lines, u64)>,
}

impl Whole {
    pub fn new(log: &Path) -> Whole {
        let current = File::open(log).ok().map(|f| {
            let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
            (tail::Lines::new(f), ino)
        });
        Whole {
            path: log.to_path_buf(),
            rotated: File::open(rotated(log)).ok().map(tail::Lines::new),
            current,
        }
    }

    /// Follows the log after the lines read.
    pub fn into_follower(self) -> Follower {
        let mut f = Follower::empty(self.path);
        if let Some((lines, ino)) = self.current {
            f.pending = lines.partial.clone();
            f.file = Some(lines.into_file());
            f.ino = ino;
        }
        f
    }
}

impl Iterator for Whole {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if let Some(r) = &mut self.rotated {
            match r.next() {
                Some(l) => return Some(l),
                None => self.rotated = None,
            }
        }
        self.current.as_mut().and_then(|(c, _)| c.next())
    }
}

/// Most bytes of a log one [`Follower::poll`] reads.
pub const POLL_MAX: u64 = 1 << 20;

/// Follows one run's log across rotations: each [`Follower::poll`] returns the
/// complete lines written since the last one.
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    ino: u64,
    pending: Vec<u8>,
}

impl Follower {
    fn empty(path: PathBuf) -> Follower {
        Follower {
            path,
            file: None,
            ino: 0,
            pending: Vec::new(),
        }
    }

    /// Starts at the end of the log (only new lines), or at its beginning.
    pub fn new(path: PathBuf, from_start: bool) -> Follower {
        let mut f = Follower::empty(path);
        if let Ok(mut file) = File::open(&f.path) {
            if !from_start {
                let _ = file.seek(SeekFrom::End(0));
            }
            f.ino = file.metadata().map(|m| m.ino()).unwrap_or(0);
            f.file = Some(file);
        }
        f
    }

    /// New complete lines, without their newlines; at most [`POLL_MAX`]
    /// bytes of them (a reader that fell behind catches up over several
    /// polls, never holding a whole log at once).
    pub fn poll(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut budget = POLL_MAX;
        loop {
            if let Some(file) = &mut self.file {
                let n = file.by_ref().take(budget).read_to_end(&mut self.pending).unwrap_or(0);
                budget -= n as u64;
                if budget == 0 {
                    // More may follow in this file: the next poll goes on.
                    break;
                }
            }
            // Rotated (or created) since we opened it: finish the old file,
            // then continue with the new one from its start.
            match fs::metadata(&self.path) {
                Ok(m) if m.ino() != self.ino => {
                    if let Ok(file) = File::open(&self.path) {
                        self.ino = m.ino();
                        self.file = Some(file);
                        continue;
                    }
                }
                _ => {}
            }
            break;
        }
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|b| *b == b'\n') {
            lines.push(String::from_utf8_lossy(&self.pending[start..start + nl]).into_owned());
            start += nl + 1;
        }
        self.pending.drain(..start);
        lines
    }
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;
