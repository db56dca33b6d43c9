//! Dyno logs: the line format, the size-bounded writer of the shim, the
//! runtime's own lines, and readers that tail and follow a run's log.
//!
//! Format (contract): `2026-11-22T10:00:00.123456+00:00 app[web.1]: text` for
//! the app's output and `… dyno[web.1]: text` for the runtime's own lines.
//! Timestamps have a fixed width, so lines of several logs sort by time as
//! plain strings.
//!
//! A run's log is `<run-dir>/log`; past `max_bytes` the shim renames it to
//! `log.1` (replacing the previous one) and starts a new `log`. The agent
//! appends its runtime lines with one `O_APPEND` write per line, so lines of
//! the two writers never interleave within a line.

use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

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

/// Appends one runtime line to a run's log. `text` may quote a request (a
/// command, an error about a value): it is [escaped](escape_control), so a
/// runtime line is always exactly one line and no request can forge another.
pub fn append_runtime(log: &Path, dyno: &str, text: &str) -> io::Result<()> {
    let line = format_line(Utc::now(), Source::Dyno, dyno, &escape_control(text));
    let mut f = crate::private::append(log)?;
    f.write_all(line.as_bytes())
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

/// The shim's writer: turns the dyno's output into lines of the contract
/// format and keeps the log under `max_bytes` by rotation.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    max_bytes: u64,
    dyno: String,
    /// Bytes of an unfinished line, per stream (stdout, stderr).
    partial: [Vec<u8>; 2],
    out: String,
}

impl LogWriter {
    pub fn open(path: PathBuf, dyno: &str, max_bytes: u64) -> io::Result<LogWriter> {
        let file = crate::private::append(&path)?;
        Ok(LogWriter {
            path,
            file,
            max_bytes,
            dyno: dyno.to_string(),
            partial: [Vec::new(), Vec::new()],
            out: String::new(),
        })
    }

    /// Takes output of stream 0 (stdout) or 1 (stderr); writes complete lines.
    pub fn feed(&mut self, stream: usize, mut data: &[u8]) -> io::Result<()> {
        let now = Utc::now();
        while let Some(nl) = data.iter().position(|b| *b == b'\n') {
            self.partial[stream].extend_from_slice(&data[..nl]);
            self.emit(stream, now);
            data = &data[nl + 1..];
        }
        self.partial[stream].extend_from_slice(data);
        while self.partial[stream].len() >= MAX_LINE {
            let rest = self.partial[stream].split_off(MAX_LINE);
            self.emit(stream, now);
            self.partial[stream] = rest;
        }
        self.flush()
    }

    /// Writes whatever unfinished lines remain (at the end of the run).
    pub fn finish(&mut self) -> io::Result<()> {
        let now = Utc::now();
        for stream in 0..2 {
            if !self.partial[stream].is_empty() {
                self.emit(stream, now);
            }
        }
        self.flush()
    }

    fn emit(&mut self, stream: usize, now: DateTime<Utc>) {
        let bytes = std::mem::take(&mut self.partial[stream]);
        let text = String::from_utf8_lossy(&bytes);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        self.out.push_str(&format_line(now, Source::App, &self.dyno, text));
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        if self.file.metadata()?.len() + self.out.len() as u64 > self.max_bytes {
            fs::rename(&self.path, rotated(&self.path))?;
            self.file = crate::private::append(&self.path)?;
        }
        let result = self.file.write_all(self.out.as_bytes());
        self.out.clear();
        result
    }
}

/// The last `n` lines of a run's log (rotated part included), oldest first.
pub fn tail(log: &Path, n: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for path in [rotated(log), log.to_path_buf()] {
        if let Ok(text) = fs::read_to_string(&path) {
            lines.extend(text.lines().map(str::to_string));
        }
    }
    let skip = lines.len().saturating_sub(n);
    lines.split_off(skip)
}

/// Follows one run's log across rotations: each [`Follower::poll`] returns the
/// complete lines written since the last one.
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    ino: u64,
    pending: Vec<u8>,
}

impl Follower {
    /// Starts at the end of the log (only new lines), or at its beginning.
    pub fn new(path: PathBuf, from_start: bool) -> Follower {
        let mut f = Follower {
            path,
            file: None,
            ino: 0,
            pending: Vec::new(),
        };
        if let Ok(mut file) = File::open(&f.path) {
            if !from_start {
                let _ = file.seek(SeekFrom::End(0));
            }
            f.ino = file.metadata().map(|m| m.ino()).unwrap_or(0);
            f.file = Some(file);
        }
        f
    }

    /// New complete lines, without their newlines.
    pub fn poll(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            if let Some(file) = &mut self.file {
                let _ = file.read_to_end(&mut self.pending);
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
