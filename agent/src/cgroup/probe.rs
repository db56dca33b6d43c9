//! The usage probe: the CPU counter and memory peak of one cgroup, read from
//! control files kept open (a `pread` per file instead of open/read/close),
//! for the usage ledger's reading of every run at each slice boundary.

use std::fs;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use super::files::{key, parse_keyed, parse_u64};
use super::{Error, Result};

/// What the usage ledger reads from a run's cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used since the cgroup was made.
    pub cpu_ns: u64,
    /// Highest memory charged since the previous reading (since the cgroup
    /// was made, for the first one; see [`UsageProbe`]).
    pub mem_peak_bytes: u64,
}

/// Open control files of one cgroup, for cheap periodic usage readings (a
/// `pread` per file instead of open/read/close).
pub trait UsageProbe: Send {
    /// Cumulative CPU time, and the memory peak since the previous read. Each
    /// read resets the peak: v1 by writing `0` to
    /// `memory.max_usage_in_bytes`; v2 by writing to `memory.peak` through
    /// the probe's own descriptor (Linux 6.12+; older kernels refuse the
    /// write and the peak stays the cgroup's lifetime peak, an upper bound).
    fn read(&mut self) -> Result<Usage>;
}

/// How the CPU counter is written in its file.
#[derive(Clone, Copy, Debug)]
pub(super) enum CpuCounter {
    /// One number in nanoseconds (v1 `cpuacct.usage`).
    Nanoseconds,
    /// The line `key` of a keyed file, in microseconds (v2 `usage_usec` of `cpu.stat`).
    KeyedMicroseconds(&'static str),
}

/// A [`UsageProbe`] over two control files.
pub(super) struct FileProbe {
    cpu: (fs::File, PathBuf),
    cpu_counter: CpuCounter,
    peak: (fs::File, PathBuf),
    /// What resets the peak; `None` once the kernel refused it.
    reset: Option<&'static [u8]>,
    buf: Vec<u8>,
}

impl FileProbe {
    /// Opens the CPU counter `cpu` for reading, and the memory peak `peak`
    /// for reading and for writing `reset` to it.
    pub(super) fn open(
        cpu: PathBuf,
        cpu_counter: CpuCounter,
        peak: PathBuf,
        reset: &'static [u8],
    ) -> Result<FileProbe> {
        let opened = |path: &Path, write: bool| {
            fs::OpenOptions::new()
                .read(true)
                .write(write)
                .open(path)
                .map_err(|error| Error::io("opening", path, error))
        };
        Ok(FileProbe {
            cpu: (opened(&cpu, false)?, cpu),
            cpu_counter,
            peak: (opened(&peak, true)?, peak),
            reset: Some(reset),
            buf: vec![0; 4096],
        })
    }

    fn pread(buf: &mut [u8], (file, path): &(fs::File, PathBuf)) -> Result<String> {
        let n = file
            .read_at(buf, 0)
            .map_err(|error| Error::io("reading", path, error))?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl UsageProbe for FileProbe {
    fn read(&mut self) -> Result<Usage> {
        let text = FileProbe::pread(&mut self.buf, &self.cpu)?;
        let path = &self.cpu.1;
        let cpu_ns = match self.cpu_counter {
            CpuCounter::Nanoseconds => parse_u64(path, &text)?,
            CpuCounter::KeyedMicroseconds(k) => key(&parse_keyed(path, &text)?, k, path)?.saturating_mul(1000),
        };
        let mem_peak_bytes = parse_u64(&self.peak.1, &FileProbe::pread(&mut self.buf, &self.peak)?)?;
        if let Some(reset) = self.reset
            && let Err(e) = self.peak.0.write_at(reset, 0)
        {
            tracing::debug!(path = %self.peak.1.display(), error = %e, "the memory peak cannot be reset: it stays the lifetime peak");
            self.reset = None;
        }
        Ok(Usage { cpu_ns, mem_peak_bytes })
    }
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
