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
//! - [`SlugCache::gc`] removes an entry no dyno references (the caller says
//!   which digests are in use) and that was neither resolved nor seen in use
//!   for the grace period (renamed to `.trash-*` first, then deleted);
//!   [`gc_task`] runs it periodically; entries found at agent start get a
//!   full grace period;
//! - `.staging-*` and `.trash-*` directories left by a crash are removed when
//!   the cache is opened (one agent per state directory holds the lock).
//!
//! Files: `source` (what a slug reference is), [`fetch`] (HTTP(S) downloads),
//! `cache` (the cache, single flight, installation), `gc`, `procfile`, and
//! `error` ([`SlugError`] and the mapping of unpack and fetch failures).

mod cache;
mod error;
mod gc;
mod procfile;
mod source;

pub mod fetch;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use cache::SlugCache;
pub use error::SlugError;
pub use gc::gc_task;
pub use procfile::{parse_procfile, procfile_command};
pub use source::sha256_file;

/// A slug ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slug {
    /// The `app/` directory the dyno runs in.
    pub app_dir: PathBuf,
    /// Digest of the tarball; `None` for a directory slug.
    pub sha256: Option<String>,
}

/// 64 lowercase hex digits.
pub fn valid_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

type Outcome = Result<Slug, SlugError>;
