//! Slug resolution, the cache and HTTP fetch against a loopback server with
//! injected faults.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::fetch::FetchOptions;
use super::testserver::{Reply, TestServer};
use super::*;

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
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
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

#[tokio::test]
async fn directory_slug_needs_app() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path());
    let root = dir.path().join("dirslug");
    fs::create_dir(&root).unwrap();
    let err = c.resolve(root.to_str().unwrap(), None).await.unwrap_err();
    assert!(message(&err).contains("no app/ directory"), "{err}");
    fs::create_dir(root.join("app")).unwrap();
    let s = c.resolve(&format!("file://{}", root.display()), None).await.unwrap();
    assert!(s.app_dir.ends_with("app") && s.sha256.is_none());
    let err = c
        .resolve(root.to_str().unwrap(), Some(&"a".repeat(64)))
        .await
        .unwrap_err();
    assert!(matches!(err, SlugError::Invalid { field: "sha256", .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_tarball_is_verified_and_unpacked_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path());
    let bytes = small_slug();
    let t = write(dir.path(), "slug.tgz", &bytes);
    let digest = hex_sha256(&bytes);
    let bad = "0".repeat(64);
    let err = c.resolve(t.to_str().unwrap(), Some(&bad)).await.unwrap_err();
    assert!(matches!(err, SlugError::Invalid { field: "sha256", .. }), "{err}");
    assert!(message(&err).contains(&bad) && message(&err).contains(&digest), "{err}");
    assert!(listing(&c).is_empty(), "{:?}", listing(&c));
    let s = c.resolve(t.to_str().unwrap(), Some(&digest)).await.unwrap();
    assert_eq!(s.app_dir, c.dir().join(&digest).join("app"));
    assert_eq!(procfile_command(&s.app_dir, "web").unwrap(), "bin/web");
    assert!(
        procfile_command(&s.app_dir, "clock")
            .unwrap_err()
            .to_string()
            .contains("clock")
    );
    // Without a digest: hashed, found in the cache.
    let again = c.resolve(t.to_str().unwrap(), None).await.unwrap();
    assert_eq!(again, s);
    assert_eq!(listing(&c), vec![digest.clone()], "one entry, no staging left behind");
    // With the digest of a cached entry, the source is not even read.
    fs::write(&t, b"not a tarball any more").unwrap();
    assert_eq!(c.resolve(t.to_str().unwrap(), Some(&digest)).await.unwrap(), s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_tarball_without_app_is_refused_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path());
    let t = write(dir.path(), "slug.tgz", &tgz(&[("other/file", b"x")]));
    let err = c.resolve(t.to_str().unwrap(), None).await.unwrap_err();
    assert!(
        message(&err).starts_with("slug: ") && message(&err).contains("no app/"),
        "{err}"
    );
    assert!(listing(&c).is_empty(), "{:?}", listing(&c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_limits_apply() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        entries: 2,
        ..Limits::default()
    };
    let c = cache_with(dir.path(), limits, opts(), Duration::from_secs(3600));
    let t = write(
        dir.path(),
        "many.tgz",
        &tgz(&[("app/a", b"1"), ("app/b", b"2"), ("app/c", b"3")]),
    );
    let err = c.resolve(t.to_str().unwrap(), None).await.unwrap_err();
    assert!(message(&err).contains("limit exceeded: number of entries"), "{err}");
    let limits = Limits {
        compressed_bytes: 1024,
        ..Limits::default()
    };
    let c = cache_with(dir.path(), limits, opts(), Duration::from_secs(3600));
    let t = write(dir.path(), "big.tgz", &big_slug(10_000));
    let err = c.resolve(t.to_str().unwrap(), None).await.unwrap_err();
    assert!(
        message(&err).contains("over the compressed slug limit of 1024 bytes"),
        "{err}"
    );
    assert!(listing(&c).is_empty(), "{:?}", listing(&c));
}

#[tokio::test]
async fn bad_sources_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path());
    for (source, needle) in [
        ("slug.tgz", "absolute path"),
        ("ftp://example.com/slug.tgz", "unsupported scheme"),
        ("http://", "not a valid URL"),
        ("http://user:pw@127.0.0.1/s.tgz", "credentials"),
        ("gopher://host/s.tgz?pw=1", "unsupported scheme"),
        ("/nonexistent/slug.tgz", "/nonexistent/slug.tgz"),
    ] {
        let err = c.resolve(source, None).await.unwrap_err();
        assert!(
            matches!(err, SlugError::Invalid { field: "slug", .. }) && message(&err).contains(needle),
            "{source}: {err}"
        );
        assert!(!message(&err).contains("pw"), "credentials never shown: {err}");
    }
    let err = c.resolve("/x.tgz", Some("ABC")).await.unwrap_err();
    assert!(matches!(err, SlugError::Invalid { field: "sha256", .. }), "{err}");
}

#[test]
fn urls_are_shown_without_credentials_or_query() {
    assert_eq!(
        fetch::shown("https://u:p@host:8443/a/s.tgz?X-Sig=pw"),
        "https://host:8443/a/s.tgz?…"
    );
    assert_eq!(fetch::shown("http://host/s.tgz"), "http://host/s.tgz");
    assert_eq!(fetch::shown("/srv/s.tgz"), "/srv/s.tgz");
    assert_eq!(fetch::shown("weird://x y?pw"), "weird://x y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_503_then_200_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path());
    let bytes = small_slug();
    let server = TestServer::start(vec![Reply::Status(503), Reply::Body(bytes.clone())]);
    let s = c.resolve(&server.url("/slug.tgz"), None).await.unwrap();
    assert_eq!(server.gets(), 2);
    assert_eq!(s.sha256.as_deref(), Some(hex_sha256(&bytes).as_str()));
    assert_eq!(procfile_command(&s.app_dir, "web").unwrap(), "bin/web");
    assert_eq!(listing(&c), [hex_sha256(&bytes)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_body_cut_short_then_200_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path());
    let bytes = big_slug(2 << 20);
    let digest = hex_sha256(&bytes);
    let server = TestServer::start(vec![Reply::Cut(bytes.clone(), bytes.len() / 2), Reply::Body(bytes)]);
    let s = c.resolve(&server.url("/slug.tgz"), Some(&digest)).await.unwrap();
    assert_eq!(server.gets(), 2);
    assert_eq!(fs::metadata(s.app_dir.join("blob")).unwrap().len(), 2 << 20);
    assert_eq!(listing(&c), [digest], "the cut attempt's staging is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_404_fails_at_once_naming_the_url_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path());
    let server = TestServer::start(vec![Reply::Status(404)]);
    let url = server.url("/missing.tgz?X-Signature=secret");
    let err = c.resolve(&url, None).await.unwrap_err();
    assert_eq!(server.gets(), 1, "not retried");
    let text = message(&err);
    assert!(matches!(err, SlugError::Invalid { field: "slug", .. }), "{err}");
    assert!(
        text.contains(&server.url("/missing.tgz")) && text.contains("HTTP 404"),
        "{text}"
    );
    assert!(!text.contains("secret"), "the query string is not shown: {text}");
    assert!(listing(&c).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_transient_errors_give_up_after_the_configured_retries() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache_with(
        dir.path(),
        Limits::default(),
        FetchOptions { retries: 2, ..opts() },
        Duration::from_secs(3600),
    );
    let server = TestServer::start(vec![Reply::Status(502)]);
    let err = c.resolve(&server.url("/slug.tgz"), None).await.unwrap_err();
    assert_eq!(server.gets(), 3);
    assert!(matches!(err, SlugError::Unavailable(_)), "{err}");
    assert!(
        message(&err).contains("HTTP 502") && message(&err).contains("after 3 attempts"),
        "{err}"
    );
    assert!(listing(&c).is_empty());
    // Nobody listening: connection refused, retried, then UNAVAILABLE.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = c
        .resolve(&format!("http://127.0.0.1:{port}/slug.tgz"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, SlugError::Unavailable(_)), "{err}");
    assert!(message(&err).contains("after 3 attempts"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_stalled_body_hits_the_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let read_timeout = Duration::from_millis(300);
    let c = cache_with(
        dir.path(),
        Limits::default(),
        FetchOptions {
            read_timeout,
            retries: 1,
            ..opts()
        },
        Duration::from_secs(3600),
    );
    let bytes = big_slug(1 << 20);
    let server = TestServer::start(vec![Reply::Stall(bytes.clone(), 100_000)]);
    let started = Instant::now();
    let err = c.resolve(&server.url("/slug.tgz"), None).await.unwrap_err();
    assert!(started.elapsed() < DEADLINE, "took {:?}", started.elapsed());
    assert_eq!(server.gets(), 2, "a stall is retried");
    assert!(matches!(err, SlugError::Unavailable(_)), "{err}");
    assert!(message(&err).contains("no data received for 300ms"), "{err}");
    assert!(listing(&c).is_empty(), "{:?}", listing(&c));
    // A stall, then a good response: retried and done.
    let server = TestServer::start(vec![Reply::Stall(bytes.clone(), 100_000), Reply::Body(bytes)]);
    c.resolve(&server.url("/slug.tgz"), None).await.unwrap();
    assert_eq!(server.gets(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_content_length_over_the_cap_is_refused_before_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        compressed_bytes: 1 << 20,
        ..Limits::default()
    };
    // A client that read the body would wait for the read timeout: much
    // longer than the refusal takes.
    let c = cache_with(
        dir.path(),
        limits,
        FetchOptions {
            read_timeout: Duration::from_secs(120),
            ..opts()
        },
        Duration::from_secs(3600),
    );
    let server = TestServer::start(vec![Reply::Huge(10 << 30)]);
    let started = Instant::now();
    let err = c.resolve(&server.url("/huge.tgz"), None).await.unwrap_err();
    assert!(started.elapsed() < DEADLINE, "took {:?}", started.elapsed());
    assert_eq!(server.gets(), 1, "not retried");
    assert!(matches!(err, SlugError::Invalid { field: "slug", .. }), "{err}");
    assert!(
        message(&err).contains("Content-Length 10737418240 is over the compressed slug limit of 1048576 bytes"),
        "{err}"
    );
    assert!(listing(&c).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_streamed_body_over_the_cap_is_stopped_by_the_unpacker() {
    // Content-Length under the cap is not trusted: the bytes are counted.
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        compressed_bytes: 64 << 10,
        ..Limits::default()
    };
    let c = cache_with(dir.path(), limits, opts(), Duration::from_secs(3600));
    let bytes = big_slug(1 << 20);
    // Announces the real length, which is over the cap: refused up front.
    let server = TestServer::start(vec![Reply::Body(bytes.clone())]);
    let err = c.resolve(&server.url("/a.tgz"), None).await.unwrap_err();
    assert!(message(&err).contains("Content-Length"), "{err}");
    assert!(listing(&c).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_wrong_sha256_names_both_digests_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path());
    let bytes = big_slug(256 << 10);
    let server = TestServer::start(vec![Reply::Body(bytes.clone())]);
    let bad = "e".repeat(64);
    let err = c.resolve(&server.url("/slug.tgz"), Some(&bad)).await.unwrap_err();
    assert!(matches!(err, SlugError::Invalid { field: "sha256", .. }), "{err}");
    assert!(
        message(&err).contains(&bad) && message(&err).contains(&hex_sha256(&bytes)),
        "{err}"
    );
    assert_eq!(server.gets(), 1, "a mismatch is not retried");
    assert!(listing(&c).is_empty(), "nothing cached, no staging: {:?}", listing(&c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_redirects_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path());
    let server = TestServer::start(vec![
        Reply::Redirect("/elsewhere/slug.tgz".into()),
        Reply::Body(small_slug()),
    ]);
    c.resolve(&server.url("/slug.tgz"), None).await.unwrap();
    assert_eq!(server.gets(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_plain_http_server_is_a_tls_error_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path());
    let server = TestServer::start(vec![Reply::Body(small_slug())]);
    let url = format!("https://{}/slug.tgz", server.addr);
    let err = c.resolve(&url, None).await.unwrap_err();
    assert!(matches!(err, SlugError::Invalid { field: "slug", .. }), "{err}");
    assert!(
        message(&err).contains("TLS") && !message(&err).contains("attempts"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_resolves_of_one_url_fetch_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path());
    let bytes = big_slug(512 << 10);
    let server = TestServer::start(vec![Reply::Slow(Duration::from_millis(100), bytes.clone())]);
    let url = server.url("/slug.tgz");
    // join! polls each resolve once before any of them waits: an http resolve
    // joins or starts its flight on that first poll, so all four overlap.
    let (r1, r2, r3, r4) = tokio::join!(
        c.resolve(&url, None),
        c.resolve(&url, None),
        c.resolve(&url, None),
        c.resolve(&url, None)
    );
    let slugs = [r1.unwrap(), r2.unwrap(), r3.unwrap(), r4.unwrap()];
    assert!(slugs.iter().all(|s| *s == slugs[0]));
    assert_eq!(server.gets(), 1, "one download for every concurrent resolve");
    assert_eq!(listing(&c), [hex_sha256(&bytes)]);
    // Once cached, a start naming the digest does not fetch again; one
    // without it does (the URL's content may have changed).
    c.resolve(&url, Some(&hex_sha256(&bytes))).await.unwrap();
    assert_eq!(server.gets(), 1);
    c.resolve(&url, None).await.unwrap();
    assert_eq!(server.gets(), 2);
    assert_eq!(listing(&c), [hex_sha256(&bytes)]);
}

/// Polls `check` until it holds; panics after `DEADLINE`.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_unused_slugs_after_the_grace_period_only() {
    let dir = tempfile::tempdir().unwrap();
    let grace = Duration::from_millis(400);
    let c = cache_with(dir.path(), Limits::default(), opts(), grace);
    let a = write(dir.path(), "a.tgz", &tgz(&[("app/a", b"a")]));
    let b = write(dir.path(), "b.tgz", &tgz(&[("app/b", b"b")]));
    let a = c.resolve(a.to_str().unwrap(), None).await.unwrap().sha256.unwrap();
    let b_resolved = Instant::now();
    let b = c.resolve(b.to_str().unwrap(), None).await.unwrap().sha256.unwrap();
    let in_use = HashSet::from([a.clone()]);
    // Just resolved: kept, in use or not.
    assert!(c.gc(&in_use).is_empty());
    let mut removed = Vec::new();
    wait_until("b to be collected", || {
        removed.extend(c.gc(&in_use));
        !removed.is_empty()
    });
    assert!(b_resolved.elapsed() >= grace);
    assert_eq!(removed, vec![b.clone()]);
    assert_eq!(listing(&c), vec![a.clone()], "a kept, b gone, no trash left");
    // `a` stops being used: it lives one more grace period from then.
    let last_seen = Instant::now();
    assert!(c.gc(&in_use).is_empty());
    assert!(c.gc(&HashSet::new()).is_empty());
    wait_until("a to be collected", || !c.gc(&HashSet::new()).is_empty());
    assert!(last_seen.elapsed() >= grace);
    assert!(listing(&c).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolve_keeps_an_entry_alive() {
    let dir = tempfile::tempdir().unwrap();
    let grace = Duration::from_millis(300);
    let c = cache_with(dir.path(), Limits::default(), opts(), grace);
    let bytes = small_slug();
    let t = write(dir.path(), "a.tgz", &bytes);
    let digest = hex_sha256(&bytes);
    c.resolve(t.to_str().unwrap(), Some(&digest)).await.unwrap();
    // Resolved again and again (a cache hit each time): never collected.
    let until = Instant::now() + grace * 4;
    while Instant::now() < until {
        let s = c.resolve(t.to_str().unwrap(), Some(&digest)).await.unwrap();
        assert!(c.gc(&HashSet::new()).is_empty());
        assert!(s.app_dir.is_dir());
        tokio::time::sleep(grace / 6).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_removes_what_a_crash_left_and_keeps_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = small_slug();
    let t = write(dir.path(), "a.tgz", &bytes);
    let digest = hex_sha256(&bytes);
    {
        let c = cache(dir.path());
        c.resolve(t.to_str().unwrap(), None).await.unwrap();
    }
    let slugs = dir.path().join("slugs");
    fs::create_dir_all(slugs.join(".staging-x/app/bin")).unwrap();
    fs::write(slugs.join(".staging-x/app/bin/half"), b"half").unwrap();
    fs::create_dir_all(slugs.join(format!(".trash-{digest}-y/app"))).unwrap();
    fs::write(slugs.join(".staging-file"), b"").unwrap();
    let c = cache_with(dir.path(), Limits::default(), opts(), Duration::from_millis(200));
    assert_eq!(listing(&c), vec![digest.clone()]);
    // A survivor of the restart gets a full grace period.
    assert!(c.gc(&HashSet::new()).is_empty());
    fs::write(&t, b"not a tarball any more").unwrap();
    c.resolve(t.to_str().unwrap(), Some(&digest)).await.unwrap();
}
