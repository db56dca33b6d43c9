//! Slug resolution, the cache and HTTP fetch against a loopback server with
//! injected faults, by topic; this file is their kit: slug tarballs, a cache
//! in a temp dir with short backoffs, and what is in the cache directory.

mod gc;
mod http;
mod procfile;
mod sources;

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::fetch::{self, FetchOptions};
use super::*;
use crate::testkit::{Reply, TestServer};
use crate::unpack::Limits;

/// Generous: the test machine has 2 cores and runs tests in parallel.
const DEADLINE: Duration = Duration::from_secs(30);

/// A gzipped tarball of `files` (mode 0755).
fn tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, name, *body).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// A slug of about `n` compressed bytes (incompressible data) with a Procfile.
fn big_slug(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    tgz(&[("app/Procfile", b"web: x\n"), ("app/blob", &data)])
}

fn small_slug() -> Vec<u8> {
    tgz(&[("app/Procfile", b"web: bin/web\n")])
}

fn hex_sha256(bytes: &[u8]) -> String {
    crate::unpack::hex(&Sha256::digest(bytes))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    File::create(&p).unwrap().write_all(bytes).unwrap();
    p
}

/// Short backoffs so that retries are quick.
fn opts() -> FetchOptions {
    FetchOptions {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(10),
        total_timeout: Duration::from_secs(60),
        retries: 3,
        backoff: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
    }
}

fn cache_with(dir: &Path, limits: Limits, opts: FetchOptions, grace: Duration) -> Arc<SlugCache> {
    SlugCache::open(&dir.join("slugs"), limits, opts, grace).unwrap()
}

fn cache(dir: &Path) -> Arc<SlugCache> {
    cache_with(dir, Limits::default(), opts(), Duration::from_secs(3600))
}

/// Names in the cache directory.
fn listing(c: &SlugCache) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(c.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn message(e: &SlugError) -> String {
    e.to_string()
}
