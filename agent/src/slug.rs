//! Slugs: where a dyno's `app/` directory comes from.
//!
//! A slug is a directory holding `app/`, or a `.tar.gz` whose files live under
//! `./app/`, given as an absolute path or a `file://` URL. A tarball is
//! verified against its expected sha256 and unpacked once per digest into
//! `<state-dir>/slugs/<sha256>/` (staging directory, then rename).
//!
//! Tarballs go through the hardened streaming unpacker ([`crate::unpack`]):
//! its limits, and its refusal of hostile entries. Not yet here: HTTP
//! fetch, and garbage collection of the cache.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::unpack::UnpackError;

/// A slug ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slug {
    /// The `app/` directory the dyno runs in.
    pub app_dir: PathBuf,
    /// Digest of the tarball; `None` for a directory slug.
    pub sha256: Option<String>,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid("slug", message)
}

/// Resolves `source` to an unpacked `app/` directory under `cache`.
pub fn resolve(source: &str, expected_sha256: Option<&str>, cache: &Path) -> Result<Slug, Error> {
    if source.starts_with("http://") || source.starts_with("https://") {
        return Err(invalid(format!(
            "{source}: http(s) slugs are not supported by this agent yet; give a local path"
        )));
    }
    let path = Path::new(source.strip_prefix("file://").unwrap_or(source));
    if !path.is_absolute() {
        return Err(invalid(format!("{source}: must be an absolute path or a file:// URL")));
    }
    if let Some(want) = expected_sha256
        && (want.len() != 64 || !want.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        return Err(Error::invalid(
            "sha256",
            format!("{want:?} is not 64 lowercase hex digits"),
        ));
    }
    let meta = fs::metadata(path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if meta.is_dir() {
        if expected_sha256.is_some() {
            return Err(Error::invalid(
                "sha256",
                "only a tarball slug has a sha256; this slug is a directory",
            ));
        }
        let app_dir = path.join("app");
        if !app_dir.is_dir() {
            return Err(invalid(format!("{}: has no app/ directory", path.display())));
        }
        let app_dir = app_dir
            .canonicalize()
            .map_err(|e| invalid(format!("{}: {e}", app_dir.display())))?;
        return Ok(Slug { app_dir, sha256: None });
    }
    // The digest first (cheap next to unpacking): a cached copy is used as is.
    let digest = sha256_file(path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if let Some(want) = expected_sha256
        && want != digest
    {
        return Err(Error::invalid(
            "sha256",
            format!("{}: mismatch: expected {want}, got {digest}", path.display()),
        ));
    }
    let dest = cache.join(&digest);
    if !dest.join("app").is_dir() {
        unpack(path, &digest, cache, &dest)?;
    }
    Ok(Slug {
        app_dir: dest.join("app"),
        sha256: Some(digest),
    })
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
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Unpacks the tarball into `dest` through a staging directory with the
/// hardened unpacker ([`crate::unpack`]), checking it still has `digest`.
fn unpack(tarball: &Path, digest: &str, cache: &Path, dest: &Path) -> Result<(), Error> {
    fs::create_dir_all(cache).map_err(|e| Error::Internal(format!("{}: {e}", cache.display())))?;
    let staging = cache.join(format!(".staging-{}", uuid::Uuid::new_v4()));
    let file = File::open(tarball).map_err(|e| invalid(format!("{}: {e}", tarball.display())))?;
    let unpacked = crate::unpack::unpack(file, &staging, Some(digest), &crate::unpack::Limits::default()).map_err(
        |e| match e {
            // It changed between hashing and unpacking.
            UnpackError::Digest { .. } => Error::invalid("sha256", format!("{}: {e}", tarball.display())),
            UnpackError::Io { ref path, .. } if !path.as_os_str().is_empty() => Error::Internal(e.to_string()),
            e => invalid(format!("{}: {e}", tarball.display())),
        },
    )?;
    tracing::info!(
        slug = %tarball.display(),
        sha256 = %unpacked.sha256,
        entries = unpacked.entries,
        bytes = unpacked.unpacked_bytes,
        "slug unpacked"
    );
    match fs::rename(&staging, dest) {
        Ok(()) => Ok(()),
        // Another start unpacked the same digest first.
        Err(_) if dest.join("app").is_dir() => {
            let _ = fs::remove_dir_all(&staging);
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            Err(Error::Internal(format!("{}: {e}", dest.display())))
        }
    }
}

/// The command of process type `ptype` from `<app_dir>/Procfile`.
pub fn procfile_command(app_dir: &Path, ptype: &str) -> Result<String, Error> {
    let path = app_dir.join("Procfile");
    let text = fs::read_to_string(&path)
        .map_err(|e| Error::invalid("command", format!("no command given and no Procfile in the slug ({e})")))?;
    parse_procfile(&text)
        .into_iter()
        .find(|(t, _)| t == ptype)
        .map(|(_, c)| c)
        .ok_or_else(|| {
            Error::invalid(
                "command",
                format!("no command given and the Procfile has no `{ptype}` process type"),
            )
        })
}

/// `type: command` lines; blank lines and `#` comments skipped.
pub fn parse_procfile(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let (t, c) = l.split_once(':')?;
            let (t, c) = (t.trim(), c.trim());
            (crate::names::valid_type(t) && !c.is_empty()).then(|| (t.to_string(), c.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
        let path = dir.join("slug.tgz");
        let gz = flate2::write::GzEncoder::new(File::create(&path).unwrap(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o755);
            h.set_cksum();
            b.append_data(&mut h, name, body.as_bytes()).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn procfile_lines() {
        let p = parse_procfile("web: bin/web --port $PORT\n# c\n\nworker:  run.sh\nBad: x\nnocolon\n");
        assert_eq!(
            p,
            [
                ("web".into(), "bin/web --port $PORT".into()),
                ("worker".into(), "run.sh".into())
            ]
        );
    }

    #[test]
    fn directory_slug_needs_app() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(dir.path().to_str().unwrap(), None, dir.path()).unwrap_err();
        assert!(err.to_string().contains("no app/ directory"), "{err}");
        fs::create_dir(dir.path().join("app")).unwrap();
        let s = resolve(&format!("file://{}", dir.path().display()), None, dir.path()).unwrap();
        assert!(s.app_dir.ends_with("app") && s.sha256.is_none());
    }

    #[test]
    fn tarball_is_verified_and_unpacked_once() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let t = tarball(dir.path(), &[("app/Procfile", "web: x\n")]);
        let digest = sha256_file(&t).unwrap();
        let bad = "0".repeat(64);
        let err = resolve(t.to_str().unwrap(), Some(&bad), &cache)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&bad) && err.contains(&digest), "{err}");
        assert!(!cache.exists());
        let s = resolve(t.to_str().unwrap(), Some(&digest), &cache).unwrap();
        assert_eq!(s.app_dir, cache.join(&digest).join("app"));
        assert_eq!(procfile_command(&s.app_dir, "web").unwrap(), "x");
        assert!(
            procfile_command(&s.app_dir, "clock")
                .unwrap_err()
                .to_string()
                .contains("clock")
        );
        let entries: Vec<_> = fs::read_dir(&cache).unwrap().collect();
        assert_eq!(entries.len(), 1, "no staging left behind");
    }

    #[test]
    fn tarball_without_app_is_refused_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let t = tarball(dir.path(), &[("other/file", "x")]);
        let err = resolve(t.to_str().unwrap(), None, &cache).unwrap_err().to_string();
        assert!(err.contains("no app/"), "{err}");
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 0);
    }

    #[test]
    fn relative_paths_and_urls_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(resolve("slug.tgz", None, dir.path()).is_err());
        assert!(resolve("http://127.0.0.1/slug.tgz", None, dir.path()).is_err());
        assert!(
            resolve("/nonexistent/slug.tgz", None, dir.path())
                .unwrap_err()
                .to_string()
                .starts_with("slug: ")
        );
    }
}
