//! The walk over the decompressed tar stream, on the `slug-untar` thread.
//!
//! The archive is read in raw mode (`tar::Entries::raw`): GNU long names,
//! long link names and pax headers are read here with a size cap, so neither
//! can make the tar crate buffer an arbitrarily large record in memory. Every
//! byte of entry data is read through [`Walker::copy`], which counts it against
//! the unpacked limit; errors from the reader stack are told apart here (the
//! compressed limit, the source, or corruption) and name the entry they hit.
//! What to do with each entry is [`policy`](super::policy)'s.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::pax::{Ext, PAX_MAX};
use super::pipeline::Shared;
use super::write::Tree;
use super::{Limits, SHOW_MAX, UnpackError, show};

/// Copy buffer size (entry data to files).
const BUF_SIZE: usize = 256 * 1024;

/// The walker's state: what it has counted and what it created.
pub(super) struct Walker<'a> {
    pub(super) limits: &'a Limits,
    shared: &'a Shared,
    /// Everything created under the staging directory.
    pub(super) tree: Tree<'a>,
    buf: Vec<u8>,
    pub(super) data_bytes: u64,
    pub(super) entries: u64,
    /// The last entry seen, for errors between entries.
    pub(super) last: Option<String>,
}

impl<'a> Walker<'a> {
    /// A walker writing under `tree`, before the first entry.
    pub(super) fn new(tree: Tree<'a>, limits: &'a Limits, shared: &'a Shared) -> Self {
        Walker {
            limits,
            shared,
            tree,
            buf: vec![0; BUF_SIZE],
            data_bytes: 0,
            entries: 0,
            last: None,
        }
    }
}

impl Walker<'_> {
    pub(super) fn walk<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<(), UnpackError> {
        let entries = archive.entries().map_err(|e| self.stream_error(e))?.raw(true);
        let mut ext = Ext::default();
        // A long name record holds the name and a NUL.
        let path_cap = (self.limits.path_bytes as u64 + 1, self.limits.path_bytes as u64);
        for entry in entries {
            let mut entry = entry.map_err(|e| self.stream_error(e))?;
            let size = entry.size();
            match entry.header().entry_type().as_byte() {
                b'L' => {
                    let data = self.read_ext(&mut entry, size, "path", path_cap)?;
                    if ext.long_name.replace(data).is_some() {
                        return Err(self.corrupt_here("two GNU long names for one entry"));
                    }
                }
                b'K' => {
                    let data = self.read_ext(&mut entry, size, "link target", path_cap)?;
                    if ext.long_link.replace(data).is_some() {
                        return Err(self.corrupt_here("two GNU long link names for one entry"));
                    }
                }
                b'x' | b'X' => {
                    let data = self.read_ext(&mut entry, size, "pax", (PAX_MAX, PAX_MAX))?;
                    if ext.pax.replace(data).is_some() {
                        return Err(self.corrupt_here("two pax extended headers for one entry"));
                    }
                }
                _ => self.entry(&mut entry, std::mem::take(&mut ext))?,
            }
        }
        if !ext.is_empty() {
            return Err(self.corrupt_here("an extension header describes no entry"));
        }
        if self.shared.tar_eof.load(Ordering::SeqCst) {
            return Err(self.corrupt_here("truncated: the tar archive ends without its end-of-archive block"));
        }
        Ok(())
    }

    /// Reads the decompressed data after the tar end (padding), counted.
    pub(super) fn drain_tar<R: Read>(&mut self, stream: &mut R) -> Result<(), UnpackError> {
        loop {
            let n = stream.read(&mut self.buf).map_err(|e| self.stream_error(e))?;
            if n == 0 {
                return Ok(());
            }
            self.data_bytes += n as u64;
            if self.data_bytes > self.limits.unpacked_bytes {
                return Err(UnpackError::LimitExceeded {
                    what: "unpacked bytes in data after the end of the tar archive".to_owned(),
                    limit: self.limits.unpacked_bytes,
                });
            }
        }
    }

    /// Maps an error from the reader stack: a limit, the source, or corruption.
    fn stream_error(&self, e: io::Error) -> UnpackError {
        self.stream_error_in(e, None)
    }

    /// [`Self::stream_error`] while reading the data of entry `inside`.
    fn stream_error_in(&self, e: io::Error, inside: Option<&str>) -> UnpackError {
        if self.shared.compressed_over.load(Ordering::SeqCst) {
            UnpackError::LimitExceeded {
                what: "compressed bytes".to_owned(),
                limit: self.limits.compressed_bytes,
            }
        } else if self.shared.source_failed.load(Ordering::SeqCst) {
            UnpackError::Io {
                path: PathBuf::new(),
                error: e,
            }
        } else if let Some(name) = inside {
            UnpackError::Corrupt(format!("truncated or corrupt data: {e} (in entry `{name}`)"))
        } else {
            self.corrupt_here(&format!("truncated or corrupt data: {e}"))
        }
    }

    pub(super) fn corrupt_here(&self, what: &str) -> UnpackError {
        match &self.last {
            Some(last) => UnpackError::Corrupt(format!("{what} (after entry `{last}`)")),
            None => UnpackError::Corrupt(format!("{what} (at the start of the archive)")),
        }
    }

    /// Reads an extension record (`what`: "path" or "link target" for GNU long
    /// names, "pax") of at most `cap.0` bytes; `cap.1` is the limit to report.
    fn read_ext<R: Read>(
        &mut self,
        entry: &mut R,
        size: u64,
        what: &str,
        cap: (u64, u64),
    ) -> Result<Vec<u8>, UnpackError> {
        if size > cap.0 {
            let after = self
                .last
                .as_deref()
                .map(|l| format!(" after entry `{l}`"))
                .unwrap_or_default();
            if what == "pax" {
                return Err(UnpackError::LimitExceeded {
                    what: format!("size of a pax extended header of {size} bytes{after}"),
                    limit: cap.1,
                });
            }
            // Name the entry by the start of its long name, if there is one to read.
            let mut start = Vec::new();
            let _ = entry.take(SHOW_MAX as u64).read_to_end(&mut start);
            let what = if what == "path" {
                format!(
                    "path length of entry `{}…`: a GNU long name record of {size} bytes{after}",
                    show(&start)
                )
            } else {
                format!(
                    "link target length: a GNU long link record of {size} bytes (`{}…`){after}",
                    show(&start)
                )
            };
            return Err(UnpackError::LimitExceeded { what, limit: cap.1 });
        }
        let mut data = Vec::with_capacity(size as usize);
        let name = if what == "pax" {
            "(pax extended header)"
        } else {
            "(GNU long name)"
        };
        self.copy(entry, size, name, |chunk| {
            data.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(data)
    }

    /// Reads exactly `size` bytes of entry data, counted, into `sink`.
    pub(super) fn copy<R: Read>(
        &mut self,
        entry: &mut R,
        size: u64,
        name: &str,
        mut sink: impl FnMut(&[u8]) -> Result<(), UnpackError>,
    ) -> Result<(), UnpackError> {
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(self.buf.len());
            let n = match entry.read(&mut self.buf[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.stream_error_in(e, Some(name))),
            };
            if n == 0 {
                return Err(UnpackError::Corrupt(format!(
                    "truncated: entry `{name}` claims {size} bytes of data, the archive ends after {}",
                    size - left
                )));
            }
            self.data_bytes += n as u64;
            if self.data_bytes > self.limits.unpacked_bytes {
                return Err(UnpackError::LimitExceeded {
                    what: format!("unpacked bytes at entry `{name}`"),
                    limit: self.limits.unpacked_bytes,
                });
            }
            sink(&self.buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    pub(super) fn skip<R: Read>(&mut self, entry: &mut R, size: u64, name: &str) -> Result<(), UnpackError> {
        self.copy(entry, size, name, |_| Ok(()))
    }
}
