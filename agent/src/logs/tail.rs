//! Reading the end of a run's log without reading the whole of it: the
//! last lines are found backwards from the end, in blocks, within a byte
//! budget; and a whole log is read forwards a line at a time. Either way the
//! reader hands on its open file at the offset where it stopped, so that a
//! [`Follower`](super::Follower) goes on from there without a gap or a
//! line twice.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::FileExt;

/// Bytes read at a time going backwards.
const BLOCK: u64 = 64 * 1024;

/// The end of one file: up to `n` of its last complete lines before `end`,
/// oldest first, and the bytes of an unfinished last line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tail {
    pub lines: Vec<String>,
    /// What follows the last newline before `end` (a line being written).
    pub partial: Vec<u8>,
    /// Whether the lines reach back to the file's start (fewer than `n`
    /// lines, all of it within the budget): an older file may add more.
    pub whole: bool,
    /// Bytes of the file the lines took.
    pub bytes: usize,
}

/// The last `n` complete lines of `file` before offset `end`, read backwards
/// in blocks; at most about `budget` bytes of the file are held at once
/// (lines older than the budget are left out).
pub fn last_lines(file: &File, end: u64, n: usize, budget: usize) -> io::Result<Tail> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut pos = end;
    let mut held = 0usize;
    let mut newlines = 0usize;
    // n lines need n + 1 newlines before `end` to know where the first one
    // starts, unless the file's start is reached first.
    while pos > 0 && newlines <= n && held < budget {
        let start = pos.saturating_sub(BLOCK);
        let mut block = vec![0u8; (pos - start) as usize];
        file.read_exact_at(&mut block, start)?;
        newlines += block.iter().filter(|b| **b == b'\n').count();
        held += block.len();
        chunks.push(block);
        pos = start;
    }
    let mut bytes = Vec::with_capacity(held);
    for chunk in chunks.iter().rev() {
        bytes.extend_from_slice(chunk);
    }
    drop(chunks);
    let partial_at = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |nl| nl + 1);
    let partial = bytes.split_off(partial_at);
    // Before the first newline: a line that starts before what was read.
    let first = if pos == 0 {
        0
    } else {
        bytes.iter().position(|b| *b == b'\n').map_or(bytes.len(), |nl| nl + 1)
    };
    let complete = &bytes[first..];
    let mut lines: Vec<&[u8]> = complete.split(|b| *b == b'\n').collect();
    lines.pop(); // after the last newline: nothing
    let whole = pos == 0 && lines.len() < n;
    let skip = lines.len().saturating_sub(n);
    let lines: Vec<String> = lines[skip..]
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let bytes = lines.iter().map(|l| l.len() + 1).sum();
    Ok(Tail {
        lines,
        partial,
        whole,
        bytes,
    })
}

/// A whole log read forwards one complete line at a time; an unfinished
/// last line is kept for the follower.
pub struct Lines {
    reader: BufReader<File>,
    line: Vec<u8>,
    /// An unfinished line the file ended with.
    pub partial: Vec<u8>,
}

impl Lines {
    /// Reads `file` from its current offset.
    pub fn new(file: File) -> Lines {
        Lines {
            reader: BufReader::with_capacity(64 * 1024, file),
            line: Vec::new(),
            partial: Vec::new(),
        }
    }

    /// The file, at the end of what was read (call once [`Iterator::next`]
    /// gave `None`).
    pub fn into_file(self) -> File {
        self.reader.into_inner()
    }
}

impl Iterator for Lines {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if !self.partial.is_empty() {
            return None;
        }
        self.line.clear();
        match self.reader.read_until(b'\n', &mut self.line) {
            Ok(0) | Err(_) => None,
            Ok(_) if self.line.last() == Some(&b'\n') => {
                self.line.pop();
                Some(String::from_utf8_lossy(&self.line).into_owned())
            }
            Ok(_) => {
                self.partial = std::mem::take(&mut self.line);
                None
            }
        }
    }
}

#[cfg(test)]
#[path = "tail_tests.rs"]
mod tests;
