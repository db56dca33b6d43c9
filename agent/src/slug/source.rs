//! What a slug reference is: an `http(s)://` URL (downloaded by [`fetch`]),
//! or a path on this host given as is or as a `file://` URL, which is either
//! a directory holding `app/` (used in place) or a tarball (unpacked into the
//! cache). Also the digest of a tarball on this host.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use hyper::Uri;
use sha2::{Digest, Sha256};

use super::error::{invalid, io_internal, io_invalid};
use super::{Outcome, Slug, SlugError, fetch};
use crate::os::resolve::{self, Kind};

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
        .map_err(|e| io_invalid(path.display(), &e))?;
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

/// A directory under which directory slugs are accepted: as configured
/// (what requests may name) and its real path.
#[derive(Clone, Debug)]
pub(super) struct DirRoot {
    pub given: PathBuf,
    pub real: PathBuf,
}

impl DirRoot {
    pub(super) fn new(given: &Path) -> io::Result<DirRoot> {
        Ok(DirRoot {
            given: given.to_owned(),
            real: given.canonicalize()?,
        })
    }
}

/// A directory slug: used in place, only beneath one of `roots` (the
/// configured `slug_dir_root`). The path is resolved from the root down with
/// `openat2` (no `..`, symlink or magic link may leave the root) and its
/// `app` must be a real directory, not a symlink; the result is the real path
/// of that directory.
pub(super) fn directory_slug(path: &Path, roots: &[DirRoot], has_sha256: bool) -> Outcome {
    if has_sha256 {
        return Err(SlugError::Invalid {
            field: "sha256",
            message: "only a tarball slug has a sha256; this slug is a directory".into(),
        });
    }
    let shown = shown_path(path);
    if roots.is_empty() {
        return Err(invalid(format!(
            "{shown}: is a directory; directory slugs are refused unless the agent's slug_dir_root is \
             configured (give a tarball or URL instead)"
        )));
    }
    let Some((root, rel)) = roots.iter().find_map(|r| {
        path.strip_prefix(&r.given)
            .or_else(|_| path.strip_prefix(&r.real))
            .ok()
            .map(|rel| (r, rel))
    }) else {
        let allowed: Vec<String> = roots.iter().map(|r| r.given.display().to_string()).collect();
        return Err(invalid(format!(
            "{shown}: a directory slug must lie under slug_dir_root (accepted here: {})",
            allowed.join(", ")
        )));
    };
    let outside = |e: io::Error| match e.raw_os_error() {
        Some(errno) if errno == nix::errno::Errno::EXDEV as i32 => invalid(format!(
            "{shown}: leaves slug_dir_root {} (through `..` or a symlink)",
            root.given.display()
        )),
        _ => io_invalid(&shown, &e),
    };
    let root_fd = resolve::open_dir(&root.real).map_err(|e| io_internal(&root.real, &e))?;
    let slug_fd = resolve::open_beneath(root_fd.as_fd(), rel, true).map_err(outside)?;
    if resolve::kind(&slug_fd).map_err(outside)? != Kind::Dir {
        return Err(invalid(format!("{shown}: not a directory")));
    }
    let app_fd = match resolve::open_beneath(slug_fd.as_fd(), Path::new("app"), false) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(invalid(format!("{shown}: has no app/ directory")));
        }
        other => other.map_err(outside)?,
    };
    match resolve::kind(&app_fd).map_err(outside)? {
        Kind::Dir => {}
        Kind::Symlink => {
            return Err(invalid(format!(
                "{shown}: app is a symlink; it must be a directory inside slug_dir_root"
            )));
        }
        Kind::Other => return Err(invalid(format!("{shown}: app is not a directory"))),
    }
    let app_dir = resolve::real_path(&app_fd).map_err(|e| io_invalid(&shown, &e))?;
    // Beneath the root when opened; a rename since then is caught here.
    if !app_dir.starts_with(&root.real) {
        return Err(invalid(format!(
            "{shown}: left slug_dir_root {} while being resolved",
            root.given.display()
        )));
    }
    Ok(Slug { app_dir, sha256: None })
}

/// A path in a message, cut short.
fn shown_path(path: &Path) -> String {
    let s = path.display().to_string();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
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
