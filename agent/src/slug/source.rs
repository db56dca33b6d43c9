//! What a slug reference is: an `http(s)://` URL (downloaded by [`fetch`]),
//! or a path on this host given as is or as a `file://` URL, which is either
//! a directory holding `app/` (used in place) or a tarball (unpacked into the
//! cache). Also the digest of a tarball on this host.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use hyper::Uri;
use sha2::{Digest, Sha256};

use super::error::invalid;
use super::{Outcome, Slug, SlugError, fetch};

/// A slug reference, checked for its form (not yet for what is there).
pub(super) enum Source {
    /// An `http://` or `https://` URL.
    Url(Uri),
    /// An absolute path on this host.
    Path(PathBuf),
}

impl Source {
    /// Classifies `source`; the error says what is wrong with it.
    pub(super) fn parse(source: &str) -> Result<Source, SlugError> {
        if source.starts_with("http://") || source.starts_with("https://") {
            return fetch::parse_url(source).map(Source::Url).map_err(invalid);
        }
        if source.contains("://") && !source.starts_with("file://") {
            return Err(invalid(format!(
                "{}: unsupported scheme; give a path, a file:// or an http(s):// URL",
                fetch::shown(source)
            )));
        }
        let path = PathBuf::from(source.strip_prefix("file://").unwrap_or(source));
        if !path.is_absolute() {
            return Err(invalid(format!(
                "{source}: must be an absolute path, a file:// or an http(s):// URL"
            )));
        }
        Ok(Source::Path(path))
    }
}

/// What a local source path holds.
pub(super) enum Local {
    /// A directory: a slug used in place.
    Dir,
    /// A regular file within the compressed limit: a tarball to unpack.
    Tarball,
}

/// Looks at a local source path: a directory, or a regular file of at most
/// `compressed_limit` bytes; anything else is refused.
pub(super) async fn inspect(path: &Path, compressed_limit: u64) -> Result<Local, SlugError> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if meta.is_dir() {
        return Ok(Local::Dir);
    }
    if !meta.is_file() {
        return Err(invalid(format!(
            "{}: not a regular file or directory (a device, FIFO or socket is never a slug)",
            path.display()
        )));
    }
    if meta.len() > compressed_limit {
        return Err(invalid(format!(
            "{}: {} bytes is over the compressed slug limit of {} bytes",
            path.display(),
            meta.len(),
            compressed_limit
        )));
    }
    Ok(Local::Tarball)
}

/// A directory slug: used in place.
pub(super) fn directory_slug(path: &Path, has_sha256: bool) -> Outcome {
    if has_sha256 {
        return Err(SlugError::Invalid {
            field: "sha256",
            message: "only a tarball slug has a sha256; this slug is a directory".into(),
        });
    }
    let app_dir = path.join("app");
    if !app_dir.is_dir() {
        return Err(invalid(format!("{}: has no app/ directory", path.display())));
    }
    let app_dir = app_dir
        .canonicalize()
        .map_err(|e| invalid(format!("{}: {e}", app_dir.display())))?;
    Ok(Slug { app_dir, sha256: None })
}

/// sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(crate::unpack::hex(&h.finalize()))
}
