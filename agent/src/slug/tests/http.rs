//! HTTP(S) sources against the loopback server: retries, timeouts, size caps,
//! digests, redirects, TLS, URLs shown without secrets, and one download for
//! concurrent resolves.

use super::*;

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
