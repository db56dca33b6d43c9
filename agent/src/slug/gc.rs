//! Garbage collection of the slug cache: an entry no dyno references and
//! that was neither resolved nor seen in use for the grace period is renamed
//! to `.trash-*`, then deleted. Which digests are in use is the caller's to
//! say (the daemon asks the engine), so the cache knows nothing of dynos.

use std::collections::HashSet;
use std::fs;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::cache::{SlugCache, remove_any};
use super::valid_digest;

impl SlugCache {
    /// How often [`gc_task`] runs: half the grace period, within 1 s–5 min.
    pub fn gc_interval(&self) -> Duration {
        (self.grace / 2).clamp(Duration::from_secs(1), Duration::from_secs(300))
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
        self.measure(&names, &doomed.iter().map(|(d, _)| d.clone()).collect());
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

impl SlugCache {
    /// Publishes the cache's size: the digests in `names` that are not
    /// `doomed`, each measured once.
    fn measure(&self, names: &HashSet<String>, doomed: &HashSet<String>) {
        let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        sizes.retain(|d, _| names.contains(d) && !doomed.contains(d));
        for digest in names.iter().filter(|d| !doomed.contains(*d)) {
            if !sizes.contains_key(digest) {
                sizes.insert(digest.clone(), tree_bytes(&self.dir.join(digest)));
            }
        }
        crate::telemetry::slug_cache_bytes(sizes.values().sum());
    }
}

/// Bytes of the regular files under `dir` (symlinks not followed).
fn tree_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

/// Runs [`SlugCache::gc`] every [`SlugCache::gc_interval`] with the digests
/// `in_use` returns (the daemon's: those of every dyno the engine knows),
/// until `shutdown` resolves or `in_use` returns `None` (its source stopped).
pub async fn gc_task<F, Fut>(cache: Arc<SlugCache>, mut in_use: F, shutdown: impl Future<Output = ()> + Send + 'static)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Option<HashSet<String>>> + Send,
{
    tokio::pin!(shutdown);
    let every = cache.gc_interval();
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(every) => {}
        }
        let Some(in_use) = in_use().await else {
            return;
        };
        let c = cache.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || c.gc(&in_use)).await {
            warn!(error = %e, "slug cache: garbage collection failed");
        }
    }
}
