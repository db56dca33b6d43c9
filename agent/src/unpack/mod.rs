//! The hardened slug unpacker: one streaming pass from the compressed bytes to
//! `staging/app/...` (read → sha256 → gunzip → untar), with limits and a check
//! of every entry before anything is written.
//!
//! Policy (DESIGN.md §7):
//! - only entries under `./app/` are written; everything else is read through
//!   (so the digest covers it) and counted against the limits, never written;
//! - refused anywhere in the archive, naming the entry: absolute paths, `..`
//!   components, NUL bytes in names, device nodes, FIFOs, GNU sparse files and
//!   unknown entry types, hardlinks whose target is absolute or has `..`;
//! - refused under `app/`: an entry whose parent chain holds a symlink made
//!   from the archive (symlinks are kept verbatim as data and never followed),
//!   an entry whose name already exists (a second file, a file over a symlink
//!   or a directory, a directory over a symlink or a file: duplicates are
//!   refused rather than replaced; only a directory entry repeated on a
//!   directory is accepted), a hardlink to anything but an earlier regular
//!   file of this archive under `app/`, and `app` itself as anything but a
//!   directory;
//! - files get `mode & 0o755` (setuid, setgid, sticky, group and other write
//!   stripped: the cache is shared by every dyno of the digest and must not be
//!   writable by any host user but root) and the archive's mtime; directories
//!   get 0755; owners are never taken from the archive;
//! - limits: compressed bytes read from the source, entry data bytes (file
//!   contents, skipped entries, extension records and decompressed data after
//!   the end of the tar archive all count), entries (skipped ones included),
//!   path depth and path length (entry names and link targets);
//! - the tar must end with its end-of-archive block, the gzip stream(s) must
//!   be complete with matching CRCs (concatenated gzip members are accepted,
//!   anything after the last member that is not gzip is refused as corrupt);
//! - on any error the staging directory is removed; when the error is
//!   corruption and a digest was expected, the rest of the source is read and
//!   a digest mismatch is reported instead (a damaged download says so).
//!
//! Where each part lives:
//! - this file: the entry point [`unpack`], [`Limits`], [`Unpacked`],
//!   [`UnpackError`], and the staging directory's removal on failure;
//! - `pipeline`: the threads and bounded channels of the streaming pass, and
//!   how their outcomes (digest, corruption, limits) become one result;
//! - `walk`: the tar stream in raw mode (extension records read with a size
//!   cap, every data byte counted, stream errors named);
//! - `pax`: pax extended header records;
//! - `policy`: the decision on each entry (type, names, link targets, limits,
//!   where it goes);
//! - `write`: creating directories, files and links under staging without
//!   ever following a symlink.
//!
//! [`unpack`] blocks (run it on a blocking thread).

mod pax;
mod pipeline;
mod policy;
mod walk;
mod write;

#[cfg(test)]
mod tests;

use std::fs::{self, DirBuilder, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Longest entry name shown in an error message.
const SHOW_MAX: usize = 200;

/// Bounds on what one slug may cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes read from the source (the compressed slug).
    pub compressed_bytes: u64,
    /// Entry data bytes in the tar stream (see the module docs for what counts).
    pub unpacked_bytes: u64,
    /// Entries in the archive, skipped ones included (extension headers excluded).
    pub entries: u64,
    /// Components in an entry's path (`app` counts as one).
    pub depth: usize,
    /// Bytes in an entry's path or link target, as in the archive.
    pub path_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            compressed_bytes: 1 << 30,
            unpacked_bytes: 4 << 30,
            entries: 200_000,
            depth: 64,
            path_bytes: 4096,
        }
    }
}

/// What a successful [`unpack`] read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpacked {
    /// Lowercase hex sha256 of every byte read from the source.
    pub sha256: String,
    /// Bytes read from the source.
    pub compressed_bytes: u64,
    /// Entry data bytes counted against [`Limits::unpacked_bytes`].
    pub unpacked_bytes: u64,
    /// Entries in the archive, skipped ones included.
    pub entries: u64,
}

/// Why a slug was refused.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The compressed bytes do not have the expected sha256.
    #[error("sha256 mismatch: expected {expected}, got {actual}")]
    Digest { expected: String, actual: String },
    /// The slug is over one of the [`Limits`].
    #[error("limit exceeded: {what} (limit {limit})")]
    LimitExceeded { what: String, limit: u64 },
    /// Truncated or corrupt gzip or tar data.
    #[error("corrupt slug: {0}")]
    Corrupt(String),
    /// An entry that would escape staging, or that this unpacker refuses.
    #[error("hostile slug entry `{entry}`: {why}")]
    Hostile { entry: String, why: String },
    /// No `app/` directory in the slug.
    #[error("slug has no app/ directory")]
    NoApp,
    /// An I/O error writing under staging; an empty `path` means reading the source.
    #[error("{}: {error}", io_subject(.path))]
    Io {
        path: PathBuf,
        #[source]
        error: io::Error,
    },
}

fn io_subject(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        "reading the slug".to_owned()
    } else {
        path.display().to_string()
    }
}

/// Streams `reader` (the compressed slug) through sha256 and gunzip into `staging/app/...` (`staging` must not
/// exist yet; its parent must; created with 0755).
///
/// Verifies `expected_sha256` (if Some) after the whole stream has been read (the gzip trailer and any bytes after
/// the tar end included: every byte read from `reader` is hashed, and the reader is read to EOF). On ANY error the
/// staging directory is removed entirely (except when it already existed: then it is left alone and the error is
/// [`UnpackError::Io`]) and nothing outside it was ever written.
pub fn unpack(
    reader: impl Read,
    staging: &Path,
    expected_sha256: Option<&str>,
    limits: &Limits,
) -> Result<Unpacked, UnpackError> {
    DirBuilder::new()
        .mode(0o755)
        .create(staging)
        .map_err(|e| io_error(staging, e))?;
    let guard = StagingGuard(Some(staging));
    fs::set_permissions(staging, Permissions::from_mode(0o755)).map_err(|e| io_error(staging, e))?;
    let unpacked = pipeline::run(reader, staging, expected_sha256, limits)?;
    guard.keep();
    Ok(unpacked)
}

/// Removes the staging directory unless kept (on errors and panics alike).
struct StagingGuard<'a>(Option<&'a Path>);

impl StagingGuard<'_> {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for StagingGuard<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.0
            && let Err(e) = fs::remove_dir_all(path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a refused slug's staging directory");
        }
    }
}

fn io_error(path: &Path, error: io::Error) -> UnpackError {
    UnpackError::Io {
        path: path.to_owned(),
        error,
    }
}

/// An entry name for messages: lossy UTF-8, control characters escaped, shortened.
fn show(raw: &[u8]) -> String {
    let mut out = String::new();
    for (i, c) in String::from_utf8_lossy(raw).chars().enumerate() {
        if i == SHOW_MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Lowercase hex of `bytes` (digests in messages and results).
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
