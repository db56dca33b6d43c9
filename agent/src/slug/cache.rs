//! The cache of unpacked slugs under `<state-dir>/slugs/` ([`SlugCache`]):
//! resolving a source to an `app/` directory, one fetch and unpack per source
//! and digest however many resolve it at once (single flight), and the atomic
//! installation of a verified staging directory as the entry of its digest.

use std::collections::HashMap;
use std::fs::{self, File};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Uri;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::unpack::Limits;

use super::error::{failure_error, internal, invalid, io_invalid, unpack_error};
use super::fetch::{self, FetchOptions, Fetcher};
use super::source::{DirRoot, Local, Source, directory_slug, sha256_file};
use super::{Outcome, Slug, SlugError, valid_digest};

/// Source as given, expected digest.
type FlightKey = (String, Option<String>);

/// The slug cache under `<state-dir>/slugs/`: resolves sources to unpacked
/// `app/` directories; see the [`slug`](super) module docs.
pub struct SlugCache {
    pub(super) dir: PathBuf,
    limits: Limits,
    pub(super) grace: Duration,
    fetcher: Fetcher,
    /// Where directory slugs are accepted (`slug_dir_root`, the sample's).
    dir_roots: Mutex<Vec<DirRoot>>,
    flights: Mutex<HashMap<FlightKey, watch::Receiver<Option<Outcome>>>>,
    /// When each cached digest was last resolved or seen in use. Taken around
    /// every hit, insertion and GC decision, so GC never removes an entry a
    /// resolve is handing out.
    pub(super) used: Mutex<HashMap<String, Instant>>,
    /// Bytes of each cached digest, measured once (an entry never changes):
    /// their sum is the cache's size for the Prometheus scrape.
    pub(super) sizes: Mutex<HashMap<String, u64>>,
}

impl SlugCache {
    /// The cache of `cfg.state_dir`, with the configured limits, fetch
    /// options and grace period.
    pub fn from_config(cfg: &Config) -> Result<Arc<SlugCache>, SlugError> {
        let cache = SlugCache::open(
            &cfg.state_dir.join("slugs"),
            cfg.slug_limits(),
            FetchOptions::from_config(cfg),
            cfg.slug_cache_grace,
        )?;
        if let Some(root) = &cfg.slug_dir_root {
            cache.allow_dir_root(root)?;
        }
        Ok(cache)
    }

    /// Accepts directory slugs beneath `root` from now on.
    pub fn allow_dir_root(&self, root: &Path) -> Result<(), SlugError> {
        let root =
            DirRoot::new(root).map_err(|e| SlugError::Internal(format!("slug_dir_root {}: {e}", root.display())))?;
        self.dir_roots.lock().unwrap_or_else(|e| e.into_inner()).push(root);
        Ok(())
    }

    /// Opens (creating) the cache directory, removes what a crash left half
    /// written (`.staging-*`, `.trash-*`) and gives every entry found a full
    /// grace period.
    pub fn open(dir: &Path, limits: Limits, fetch: FetchOptions, grace: Duration) -> Result<Arc<SlugCache>, SlugError> {
        fs::create_dir_all(dir).map_err(|e| internal(dir, e))?;
        // Its real path: the dyno's init refuses any symlink on an app's path.
        let dir = &dir.canonicalize().map_err(|e| internal(dir, e))?;
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
            dir_roots: Mutex::new(Vec::new()),
            flights: Mutex::new(HashMap::new()),
            used: Mutex::new(used),
            sizes: Mutex::new(HashMap::new()),
        }))
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
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
        let path = match Source::parse(source)? {
            Source::Url(uri) => {
                if let Some(slug) = expected.as_deref().and_then(|d| self.hit(d)) {
                    return Ok(slug);
                }
                return self
                    .single_flight(key, move |this| this.fetch_http(uri, expected))
                    .await;
            }
            Source::Path(path) => path,
        };
        match super::source::inspect(&path, self.limits.compressed_bytes).await? {
            Local::Dir => {
                let roots = self.dir_roots.lock().unwrap_or_else(|e| e.into_inner()).clone();
                tokio::task::spawn_blocking(move || directory_slug(&path, &roots, expected.is_some()))
                    .await
                    .map_err(|e| SlugError::Internal(format!("directory slug task: {e}")))?
            }
            Local::Tarball => {
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
        }
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
                        // The key goes before the outcome is published: a
                        // resolve that starts once the waiters have woken
                        // must start a new flight, not reuse this one.
                        drop(landing);
                        let _ = tx.send(Some(outcome));
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
            .map_err(|f| {
                crate::telemetry::fetch_failed();
                failure_error(&shown, f)
            })?;
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
            None => sha256_file(path).map_err(|e| io_invalid(&shown, &e))?,
        };
        if let Some(slug) = self.hit(&digest) {
            return Ok(slug);
        }
        let started = Instant::now();
        let file = File::open(path).map_err(|e| io_invalid(&shown, &e))?;
        let staging = self.staging_path();
        let unpacked = crate::unpack::unpack(file, &staging, Some(&digest), &self.limits).map_err(|e| match e {
            // The caller sent no digest: the one computed a moment ago no
            // longer holds, the file changed in between.
            crate::unpack::UnpackError::Digest { .. } if expected.is_none() => invalid(format!(
                "{shown}: changed while the agent read it (its content differs from a moment before): \
                 try again once it is written"
            )),
            e => unpack_error(&shown, e),
        })?;
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

    pub(super) fn trash_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!(".trash-{digest}-{}", uuid::Uuid::new_v4()))
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

pub(super) fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
