//! Slugs: where a dyno's `app/` directory comes from, and the cache of
//! unpacked slugs that owns `<state-dir>/slugs/`.
//!
//! A slug is a directory holding `app/`, or a `.tar.gz` whose files live under
//! `./app/`. Sources: an absolute path, a `file://` URL, or an `http(s)://`
//! URL ([`fetch`]: timeouts, retries, a streamed download). A directory is
//! used in place; a tarball goes through the hardened streaming unpacker
//! ([`crate::unpack`]: limits, hostile entries refused, sha256 verified over
//! every byte read) into the cache.
//!
//! The cache ([`SlugCache`]):
//! - one unpacked copy per digest, `<state-dir>/slugs/<sha256>/app/`; a tarball
//!   is unpacked into `.staging-<uuid>/`, synced, and renamed into place only
//!   after the unpacker verified its digest, so an entry is complete or absent;
//! - a start that names the expected sha256 of a cached digest uses the entry
//!   without reading the source; without a sha256 the source is read (a local
//!   file hashed first, a URL downloaded) because its content may have changed;
//! - concurrent resolves of the same source and expected digest share one
//!   fetch and unpack (single flight); the fetch runs in its own task, so a
//!   caller that goes away does not cancel it for the others;
//! - [`SlugCache::gc`] removes an entry no dyno known to the engine references
//!   and that was neither resolved nor seen in use for the grace period
//!   (renamed to `.trash-*` first, then deleted); [`gc_task`] runs it
//!   periodically; entries found at agent start get a full grace period;
//! - `.staging-*` and `.trash-*` directories left by a crash are removed when
//!   the cache is opened (one agent per state directory holds the lock).

pub mod fetch;
#[cfg(test)]
mod tests;
#[cfg(test)]
use crate::testkit as testserver;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::future::Future;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Uri;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::error::Error;
use crate::unpack::{Limits, UnpackError};
use fetch::{Failure, FetchOptions, Fetcher};

/// A slug ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slug {
    /// The `app/` directory the dyno runs in.
    pub app_dir: PathBuf,
    /// Digest of the tarball; `None` for a directory slug.
    pub sha256: Option<String>,
}

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
}

impl From<SlugError> for Error {
    fn from(e: SlugError) -> Error {
        match e {
            SlugError::Invalid { field, message } => Error::invalid(field, message),
            e @ SlugError::Unavailable(_) => Error::Upstream(e.to_string()),
            e @ SlugError::Internal(_) => Error::Internal(e.to_string()),
        }
    }
}

fn invalid(message: impl Into<String>) -> SlugError {
    SlugError::Invalid {
        field: "slug",
        message: message.into(),
    }
}

fn internal(path: &Path, e: impl std::fmt::Display) -> SlugError {
    SlugError::Internal(format!("{}: {e}", path.display()))
}

/// 64 lowercase hex digits.
pub fn valid_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

type Outcome = Result<Slug, SlugError>;
/// Source as given, expected digest.
type FlightKey = (String, Option<String>);

/// The slug cache under `<state-dir>/slugs/`: resolves sources to unpacked
/// `app/` directories; see the module docs.
pub struct SlugCache {
    dir: PathBuf,
    limits: Limits,
    grace: Duration,
    fetcher: Fetcher,
    flights: Mutex<HashMap<FlightKey, watch::Receiver<Option<Outcome>>>>,
    /// When each cached digest was last resolved or seen in use. Taken around
    /// every hit, insertion and GC decision, so GC never removes an entry a
    /// resolve is handing out.
    used: Mutex<HashMap<String, Instant>>,
}

impl SlugCache {
    /// The cache of `cfg.state_dir`, with the configured limits, fetch
    /// options and grace period.
    pub fn from_config(cfg: &Config) -> Result<Arc<SlugCache>, SlugError> {
        SlugCache::open(
            &cfg.state_dir.join("slugs"),
            cfg.slug_limits(),
            FetchOptions::from_config(cfg),
            cfg.slug_cache_grace,
        )
    }

    /// Opens (creating) the cache directory, removes what a crash left half
    /// written (`.staging-*`, `.trash-*`) and gives every entry found a full
    /// grace period.
    pub fn open(dir: &Path, limits: Limits, fetch: FetchOptions, grace: Duration) -> Result<Arc<SlugCache>, SlugError> {
        fs::create_dir_all(dir).map_err(|e| internal(dir, e))?;
        let now = Instant::now();
        let mut used = HashMap::new();
        for entry in fs::read_dir(dir).map_err(|e| internal(dir, e))? {
            let entry = entry.map_err(|e| internal(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(".staging-") || name.starts_with(".trash-") {
                match remove_any(&path) {
                    Ok(()) => {
                        info!(path = %path.display(), "slug cache: removed a leftover of an interrupted unpack or removal")
                    }
                    Err(e) => warn!(path = %path.display(), error = %e, "slug cache: cannot remove a leftover"),
                }
            } else if valid_digest(&name) {
                used.insert(name, now);
            }
        }
        Ok(Arc::new(SlugCache {
            dir: dir.to_owned(),
            limits,
            grace,
            fetcher: Fetcher::new(fetch),
            flights: Mutex::new(HashMap::new()),
            used: Mutex::new(used),
        }))
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How often [`gc_task`] runs: half the grace period, within 1 s–5 min.
    pub fn gc_interval(&self) -> Duration {
        (self.grace / 2).clamp(Duration::from_secs(1), Duration::from_secs(300))
    }

    /// Resolves `source` (path, `file://` or `http(s)://` URL) to an `app/`
    /// directory, verifying `expected_sha256` when given.
    pub async fn resolve(self: &Arc<Self>, source: &str, expected_sha256: Option<&str>) -> Outcome {
        if let Some(want) = expected_sha256
            && !valid_digest(want)
        {
            return Err(SlugError::Invalid {
                field: "sha256",
                message: format!("{want:?} is not 64 lowercase hex digits"),
            });
        }
        let expected = expected_sha256.map(str::to_owned);
        let key = (source.to_owned(), expected.clone());
        if source.starts_with("http://") || source.starts_with("https://") {
            let uri = fetch::parse_url(source).map_err(invalid)?;
            if let Some(slug) = expected.as_deref().and_then(|d| self.hit(d)) {
                return Ok(slug);
            }
            return self
                .single_flight(key, move |this| this.fetch_http(uri, expected))
                .await;
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
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        if meta.is_dir() {
            return tokio::task::spawn_blocking(move || directory_slug(&path, expected.is_some()))
                .await
                .map_err(|e| SlugError::Internal(format!("directory slug task: {e}")))?;
        }
        if !meta.is_file() {
            return Err(invalid(format!(
                "{}: not a regular file or directory (a device, FIFO or socket is never a slug)",
                path.display()
            )));
        }
        if meta.len() > self.limits.compressed_bytes {
            return Err(invalid(format!(
                "{}: {} bytes is over the compressed slug limit of {} bytes",
                path.display(),
                meta.len(),
                self.limits.compressed_bytes
            )));
        }
        if let Some(slug) = expected.as_deref().and_then(|d| self.hit(d)) {
            return Ok(slug);
        }
        self.single_flight(key, move |this| async move {
            tokio::task::spawn_blocking(move || this.local_tarball(&path, expected.as_deref()))
                .await
                .map_err(|e| SlugError::Internal(format!("unpacking task: {e}")))?
        })
        .await
    }

    /// Runs `work` once for every concurrent resolve of `key`; all of them get
    /// its outcome.
    async fn single_flight<F, Fut>(self: &Arc<Self>, key: FlightKey, work: F) -> Outcome
    where
        F: FnOnce(Arc<SlugCache>) -> Fut,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let mut rx = {
            let mut flights = self.flights.lock().expect("flights lock");
            match flights.get(&key) {
                Some(rx) => {
                    debug!(slug = %fetch::shown(&key.0), "joining a fetch in flight");
                    rx.clone()
                }
                None => {
                    let (tx, rx) = watch::channel(None);
                    flights.insert(key.clone(), rx.clone());
                    let landing = Landing {
                        cache: self.clone(),
                        key,
                    };
                    let work = work(self.clone());
                    tokio::spawn(async move {
                        let outcome = work.await;
                        let _ = tx.send(Some(outcome));
                        drop(landing);
                    });
                    rx
                }
            }
        };
        match rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().expect("waited for Some"),
            Err(_) => Err(SlugError::Internal("the slug fetch task ended without a result".into())),
        }
    }

    async fn fetch_http(self: Arc<Self>, uri: Uri, expected: Option<String>) -> Outcome {
        // Another source with the same digest may have landed meanwhile.
        if let Some(slug) = expected.as_deref().and_then(|d| self.hit(d)) {
            return Ok(slug);
        }
        let shown = fetch::redact(&uri);
        let started = Instant::now();
        let (staging, unpacked) = self
            .fetcher
            .fetch_unpack(&uri, || self.staging_path(), expected.as_deref(), &self.limits)
            .await
            .map_err(|f| failure_error(&shown, f))?;
        let fetched = started.elapsed();
        let this = self.clone();
        let digest = unpacked.sha256.clone();
        let slug = tokio::task::spawn_blocking(move || this.commit(&staging, &digest))
            .await
            .map_err(|e| SlugError::Internal(format!("cache insertion task: {e}")))??;
        info!(
            slug = %shown,
            sha256 = %unpacked.sha256,
            compressed_bytes = unpacked.compressed_bytes,
            unpacked_bytes = unpacked.unpacked_bytes,
            entries = unpacked.entries,
            fetch_and_unpack = ?fetched,
            sync_and_rename = ?started.elapsed() - fetched,
            "slug downloaded, verified and unpacked"
        );
        Ok(slug)
    }

    /// A tarball on this host (blocking).
    fn local_tarball(&self, path: &Path, expected: Option<&str>) -> Outcome {
        let shown = path.display().to_string();
        // Without an expected digest, the digest first (cheap next to
        // unpacking): a cached copy is used as is.
        let digest = match expected {
            Some(d) => d.to_owned(),
            None => sha256_file(path).map_err(|e| invalid(format!("{shown}: {e}")))?,
        };
        if let Some(slug) = self.hit(&digest) {
            return Ok(slug);
        }
        let started = Instant::now();
        let file = File::open(path).map_err(|e| invalid(format!("{shown}: {e}")))?;
        let staging = self.staging_path();
        let unpacked =
            crate::unpack::unpack(file, &staging, Some(&digest), &self.limits).map_err(|e| unpack_error(&shown, e))?;
        let unpacked_in = started.elapsed();
        let slug = self.commit(&staging, &unpacked.sha256)?;
        info!(
            slug = %shown,
            sha256 = %unpacked.sha256,
            unpacked_bytes = unpacked.unpacked_bytes,
            entries = unpacked.entries,
            unpack = ?unpacked_in,
            sync_and_rename = ?started.elapsed() - unpacked_in,
            "slug verified and unpacked"
        );
        Ok(slug)
    }

    fn staging_path(&self) -> PathBuf {
        self.dir.join(format!(".staging-{}", uuid::Uuid::new_v4()))
    }

    fn entry(&self, digest: &str) -> Slug {
        Slug {
            app_dir: self.dir.join(digest).join("app"),
            sha256: Some(digest.to_owned()),
        }
    }

    /// The cached entry of `digest`, marked used.
    fn hit(&self, digest: &str) -> Option<Slug> {
        let mut used = self.used.lock().expect("used lock");
        let slug = self.entry(digest);
        if !slug.app_dir.is_dir() {
            return None;
        }
        used.insert(digest.to_owned(), Instant::now());
        Some(slug)
    }

    /// Makes a verified staging directory the entry of `digest` (blocking):
    /// synced, then renamed. When the entry appeared meanwhile (the same
    /// content under another source), the staging directory is dropped.
    fn commit(&self, staging: &Path, digest: &str) -> Outcome {
        let dest = self.dir.join(digest);
        let synced = File::open(staging).and_then(|d| nix::unistd::syncfs(&d).map_err(io::Error::from));
        if let Err(e) = synced {
            let _ = fs::remove_dir_all(staging);
            return Err(internal(staging, format!("syncing: {e}")));
        }
        let mut used = self.used.lock().expect("used lock");
        let present = dest.join("app").is_dir();
        let renamed = if present {
            Ok(())
        } else {
            (|| {
                // A broken entry (not made by this code) is moved out of the way.
                if fs::symlink_metadata(&dest).is_ok() {
                    let trash = self.trash_path(digest);
                    fs::rename(&dest, &trash)?;
                    remove_any(&trash)?;
                }
                fs::rename(staging, &dest)?;
                File::open(&self.dir)?.sync_all()
            })()
            .map_err(|e| internal(&dest, e))
        };
        if renamed.is_ok() {
            used.insert(digest.to_owned(), Instant::now());
        }
        drop(used);
        if present || renamed.is_err() {
            let _ = fs::remove_dir_all(staging);
        }
        renamed.map(|()| self.entry(digest))
    }

    fn trash_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!(".trash-{digest}-{}", uuid::Uuid::new_v4()))
    }

    /// One garbage-collection pass (blocking): removes every cached digest
    /// that is not in `in_use` and was neither resolved nor seen in use for
    /// the grace period. Returns the removed digests.
    pub fn gc(&self, in_use: &HashSet<String>) -> Vec<String> {
        let names: HashSet<String> = match fs::read_dir(&self.dir) {
            Ok(dir) => dir
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| valid_digest(n))
                .collect(),
            Err(e) => {
                warn!(dir = %self.dir.display(), error = %e, "slug cache: cannot list");
                return Vec::new();
            }
        };
        let now = Instant::now();
        let mut doomed = Vec::new();
        {
            let mut used = self.used.lock().expect("used lock");
            used.retain(|d, _| names.contains(d));
            for digest in &names {
                if in_use.contains(digest) {
                    used.insert(digest.clone(), now);
                    continue;
                }
                let last = *used.entry(digest.clone()).or_insert(now);
                if now.duration_since(last) < self.grace {
                    continue;
                }
                let trash = self.trash_path(digest);
                match fs::rename(self.dir.join(digest), &trash) {
                    Ok(()) => {
                        used.remove(digest);
                        doomed.push((digest.clone(), trash));
                    }
                    Err(e) => warn!(sha256 = %digest, error = %e, "slug cache: cannot remove an unused slug"),
                }
            }
        }
        let mut removed = Vec::new();
        for (digest, trash) in doomed {
            if let Err(e) = remove_any(&trash) {
                warn!(path = %trash.display(), error = %e, "slug cache: cannot delete a removed slug");
            }
            info!(sha256 = %digest, grace = ?self.grace, "slug cache: removed a slug no dyno uses");
            removed.push(digest);
        }
        removed
    }
}

/// Removes the key of a finished flight (also when its task panicked).
struct Landing {
    cache: Arc<SlugCache>,
    key: FlightKey,
}

impl Drop for Landing {
    fn drop(&mut self) {
        if let Ok(mut flights) = self.cache.flights.lock() {
            flights.remove(&self.key);
        }
    }
}

/// Runs [`SlugCache::gc`] every [`SlugCache::gc_interval`] with the digests
/// of every dyno the engine knows, until `shutdown` resolves or the engine
/// stops.
pub async fn gc_task(
    cache: Arc<SlugCache>,
    engine: crate::engine::Engine,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(shutdown);
    let every = cache.gc_interval();
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(every) => {}
        }
        let Ok(dynos) = engine.list(None).await else {
            return;
        };
        let in_use: HashSet<String> = dynos.into_iter().filter_map(|d| d.slug_sha256).collect();
        let c = cache.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || c.gc(&in_use)).await {
            warn!(error = %e, "slug cache: garbage collection failed");
        }
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A directory slug: used in place.
fn directory_slug(path: &Path, has_sha256: bool) -> Outcome {
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

fn unpack_error(shown: &str, e: UnpackError) -> SlugError {
    match e {
        UnpackError::Digest { .. } => SlugError::Invalid {
            field: "sha256",
            message: format!("{shown}: {e}"),
        },
        // A name the filesystem cannot hold is the archive's fault: name the entry.
        UnpackError::Io { ref path, ref error } if error.raw_os_error() == Some(libc::ENAMETOOLONG) => {
            invalid(format!(
                "{shown}: slug entry `{}`: name too long for the filesystem ({error})",
                entry_of(path)
            ))
        }
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

fn failure_error(shown: &str, f: Failure) -> SlugError {
    match f {
        Failure::Fetch { ref error, .. } if error.unavailable() => SlugError::Unavailable(f.to_string()),
        f @ Failure::Fetch { .. } => invalid(f.to_string()),
        Failure::Unpack(e) => unpack_error(shown, e),
        Failure::Internal(m) => SlugError::Internal(m),
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
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The command of process type `ptype` from `<app_dir>/Procfile`.
pub fn procfile_command(app_dir: &Path, ptype: &str) -> Result<String, Error> {
    let text = read_procfile(app_dir)?;
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

/// Largest Procfile read.
const PROCFILE_MAX: u64 = 1 << 20;

/// The slug's Procfile, read on the host: it may be a symlink, but only to a
/// regular file inside the slug's `app/` (never to a host file or a device).
fn read_procfile(app_dir: &Path) -> Result<String, Error> {
    let bad = |why: String| Error::invalid("command", format!("no command given and {why}"));
    let path = app_dir.join("Procfile");
    if fs::symlink_metadata(&path).is_err() {
        return Err(bad("no Procfile in the slug".into()));
    }
    let root = app_dir
        .canonicalize()
        .map_err(|e| Error::Internal(format!("{}: {e}", app_dir.display())))?;
    let real = path
        .canonicalize()
        .map_err(|e| bad(format!("the slug's Procfile cannot be resolved ({e})")))?;
    if !real.starts_with(&root) {
        return Err(bad(
            "the slug's Procfile is a symlink that points outside the slug".into()
        ));
    }
    let meta = fs::metadata(&real).map_err(|e| bad(format!("the slug's Procfile is unreadable ({e})")))?;
    if !meta.is_file() {
        return Err(bad("the slug's Procfile is not a regular file".into()));
    }
    if meta.len() > PROCFILE_MAX {
        return Err(bad(format!("the slug's Procfile is over {PROCFILE_MAX} bytes")));
    }
    fs::read_to_string(&real).map_err(|e| bad(format!("the slug's Procfile is unreadable ({e})")))
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
