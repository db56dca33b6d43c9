//! Why a slug could not be resolved ([`SlugError`], mapped to the agent's
//! [`Error`]), and how the unpacker's and the download's failures become one:
//! the slug's fault (`Invalid`), the source's for now (`Unavailable`), or the
//! cache's own disk (`Internal`).

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::unpack::UnpackError;

use super::fetch::Failure;

/// `unpack_error`'s errno: a name the file system cannot hold.
const ENAMETOOLONG: i32 = nix::errno::Errno::ENAMETOOLONG as i32;

/// Why a slug could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    /// Bad input; `field` is `slug` or `sha256`.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// The source failed in a way that may pass (retries exhausted, timeout).
    #[error("slug: {0}")]
    Unavailable(String),
    /// The cache's own disk.
    #[error("slug cache: {0}")]
    Internal(String),
    /// The agent had no descriptor left (`EMFILE`, `ENFILE`): not the
    /// slug's fault.
    #[error("slug: {0}")]
    NoDescriptors(String),
}

impl From<SlugError> for Error {
    fn from(e: SlugError) -> Error {
        match e {
            SlugError::Invalid { field, message } => Error::invalid(field, message),
            e @ SlugError::Unavailable(_) => Error::Upstream(e.to_string()),
            e @ SlugError::Internal(_) => Error::Internal(e.to_string()),
            e @ SlugError::NoDescriptors(_) => crate::engine::fds::Budget::current().exhausted(e.to_string()),
        }
    }
}

pub(super) fn invalid(message: impl Into<String>) -> SlugError {
    SlugError::Invalid {
        field: "slug",
        message: message.into(),
    }
}

/// The slug's fault (`invalid`), unless `e` says the agent had no
/// descriptor left; `what` says what failed.
pub(super) fn io_invalid(what: impl std::fmt::Display, e: &std::io::Error) -> SlugError {
    if crate::os::fd::is_exhausted(e) {
        SlugError::NoDescriptors(format!("{what}: {e}"))
    } else {
        invalid(format!("{what}: {e}"))
    }
}

/// The cache's own fault (`internal`), unless `e` says the agent had no
/// descriptor left.
pub(super) fn io_internal(path: &Path, e: &std::io::Error) -> SlugError {
    if crate::os::fd::is_exhausted(e) {
        SlugError::NoDescriptors(format!("{}: {e}", path.display()))
    } else {
        internal(path, e)
    }
}

pub(super) fn internal(path: &Path, e: impl std::fmt::Display) -> SlugError {
    SlugError::Internal(format!("{}: {e}", path.display()))
}

pub(super) fn unpack_error(shown: &str, e: UnpackError) -> SlugError {
    match e {
        UnpackError::Digest { .. } => SlugError::Invalid {
            field: "sha256",
            message: format!("{shown}: {e}"),
        },
        // A name the filesystem cannot hold is the archive's fault: name the entry.
        UnpackError::Io { ref error, .. } if crate::os::fd::is_exhausted(error) => {
            SlugError::NoDescriptors(format!("{shown}: {e}"))
        }
        UnpackError::Io { ref path, ref error } if error.raw_os_error() == Some(ENAMETOOLONG) => invalid(format!(
            "{shown}: slug entry `{}`: name too long for the filesystem ({error})",
            entry_of(path)
        )),
        UnpackError::Io { ref path, .. } if !path.as_os_str().is_empty() => SlugError::Internal(e.to_string()),
        e => invalid(format!("{shown}: {e}")),
    }
}

/// The archive entry of a path under a staging directory (shortened for messages).
fn entry_of(path: &Path) -> String {
    let comps: Vec<_> = path.components().collect();
    let start = comps
        .iter()
        .position(|c| c.as_os_str().to_string_lossy().starts_with(".staging-"))
        .map_or(0, |i| i + 1);
    let entry: PathBuf = comps[start..].iter().collect();
    let entry = entry.display().to_string();
    match entry.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &entry[..i]),
        None => entry,
    }
}

pub(super) fn failure_error(shown: &str, f: Failure) -> SlugError {
    match f {
        Failure::Fetch { ref error, .. } if error.unavailable() => SlugError::Unavailable(f.to_string()),
        f @ Failure::Fetch { .. } => invalid(f.to_string()),
        Failure::Unpack(e) => unpack_error(shown, e),
        Failure::Internal(m) => SlugError::Internal(m),
    }
}
