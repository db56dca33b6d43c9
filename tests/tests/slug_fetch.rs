//! Slugs fetched over HTTP by the real agent: a web dyno from a URL serves,
//! concurrent starts of one URL download it once, the cache survives a
//! restart, crash leftovers are removed at start, and unused slugs are
//! garbage-collected while used ones stay. The slug server is the kit's
//! loopback HTTP/1.1 server, counting the GETs it answers per path.

use std::path::Path;
use std::time::Duration;

use dyno_proto::v1 as pb;
use dyno_tests::*;

fn sha256(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, bytes).unwrap();
    dyno_agent::slug::sha256_file(&p).unwrap()
}

fn web_slug(text: &str) -> Vec<u8> {
    tarball::slug_tgz(&[
        ("Procfile", "web: exec busybox httpd -f -p $PORT -h public\n"),
        ("public/index.html", text),
    ])
}

fn worker_slug(tag: &str) -> Vec<u8> {
    tarball::slug_tgz(&[("Procfile", "worker: exec sleep 600\n"), ("tag", tag)])
}

/// Digest entries in the agent's slug cache (hidden names excluded).
fn cached(a: &TestAgent) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(a.state.join("slugs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn hidden(a: &TestAgent) -> Vec<String> {
    std::fs::read_dir(a.state.join("slugs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_http_slug_runs_a_web_dyno_that_serves() {
    let a = TestAgent::start("");
    let slug = web_slug("hello from an http slug\n");
    let digest = sha256(&slug);
    let server = TestServer::paths(vec![("/web.tgz", Reply::Body(slug))]);
    let url = server.url("/web.tgz");
    a.ctl_ok(&start_args("shop", "web.1", &url, &["--sha256", &digest]));
    let d = a.wait_state("shop", "web.1", "up");
    assert_eq!(d["slug_sha256"], digest.as_str());
    assert_eq!(
        d["command"], "exec busybox httpd -f -p $PORT -h public",
        "from the Procfile"
    );
    let port = d["port"].as_u64().expect("port");
    assert!(http_get(port, "/index.html").contains("hello from an http slug"));
    assert_eq!(server.gets_of("/web.tgz"), 1);
    assert_eq!(cached(&a), vec![digest.clone()]);
    assert!(hidden(&a).is_empty(), "no staging left: {:?}", hidden(&a));
    assert!(
        a.agent_log().contains(&digest),
        "the digest is logged:\n{}",
        a.agent_log()
    );

    // dynoctl run takes the URL too; with the digest, from the cache.
    let out = a.ctl(&run_args(
        "shop",
        &url,
        &["--sha256", &digest, "--", "cat", "public/index.html"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from an http slug\n");
    assert_eq!(server.gets_of("/web.tgz"), 1, "a cached digest is not fetched again");

    // A 404: INVALID_ARGUMENT naming the URL and the status, nothing cached.
    let missing = server.url("/missing.tgz");
    let out = a.ctl(&start_args("shop", "web.2", &missing, &["--command", "true"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&missing) && err.contains("HTTP 404"), "{err}");
    assert_eq!(server.gets_of("/missing.tgz"), 1, "a 404 is not retried");
    assert_eq!(cached(&a), [digest]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_of_one_http_slug_download_it_once() {
    let a = TestAgent::start("");
    let slug = worker_slug("one");
    let digest = sha256(&slug);
    let server = TestServer::paths(vec![("/w.tgz", Reply::Body(slug))]);
    // The download waits until the second start has joined it (the agent
    // logs that at debug level); with one download per start the second
    // GET would be held too and the join never logged.
    server.hold(true);
    let req = |name: &str| pb::StartDynoRequest {
        app: "shop".into(),
        name: name.into(),
        slug: server.url("/w.tgz"),
        ..Default::default()
    };
    let (mut c1, mut c2) = (a.client().await, a.client().await);
    let (r1, r2) = (req("worker.1"), req("worker.2"));
    let starts = tokio::spawn(async move { tokio::join!(c1.start_dyno(r1), c2.start_dyno(r2)) });
    let a = tokio::task::spawn_blocking(move || {
        wait_for("the second start to join the download", || {
            a.agent_log().contains("joining a fetch in flight").then_some(())
        });
        a
    })
    .await
    .unwrap();
    server.hold(false);
    let (r1, r2) = starts.await.unwrap();
    let (d1, d2) = (r1.expect("worker.1").into_inner(), r2.expect("worker.2").into_inner());
    assert_eq!(d1.slug_sha256, digest);
    assert_eq!(d2.slug_sha256, digest);
    assert_eq!(server.gets_of("/w.tgz"), 1, "one download for both starts");
    assert_eq!(cached(&a), [digest]);
    assert!(hidden(&a).is_empty(), "{:?}", hidden(&a));
    tokio::task::spawn_blocking(move || {
        a.wait_state("shop", "worker.1", "up");
        a.wait_state("shop", "worker.2", "up");
    })
    .await
    .unwrap();
}

#[test]
fn the_cache_survives_a_restart_and_crash_leftovers_are_removed() {
    let mut a = TestAgent::start("");
    let slug = worker_slug("kept");
    let digest = sha256(&slug);
    let server = TestServer::paths(vec![("/w.tgz", Reply::Body(slug))]);
    let url = server.url("/w.tgz");
    a.ctl_ok(&start_args("shop", "worker.1", &url, &["--sha256", &digest]));
    a.wait_state("shop", "worker.1", "up");

    // A crash in the middle of an unpack and of a removal, as left on disk.
    a.kill9();
    let slugs = a.state.join("slugs");
    std::fs::create_dir_all(slugs.join(".staging-x/app/bin")).unwrap();
    std::fs::write(slugs.join(".staging-x/app/bin/half"), b"half written").unwrap();
    std::fs::create_dir_all(slugs.join(format!(".trash-{digest}-y/app"))).unwrap();
    a.spawn();
    assert!(hidden(&a).is_empty(), "leftovers removed at start: {:?}", hidden(&a));
    assert_eq!(cached(&a), vec![digest.clone()], "the cache survived");

    // Served from the cache: no second download.
    a.ctl_ok(&start_args("shop", "worker.2", &url, &["--sha256", &digest]));
    a.wait_state("shop", "worker.2", "up");
    assert_eq!(server.gets_of("/w.tgz"), 1);
    a.wait_state("shop", "worker.1", "up");
}

#[test]
fn gc_removes_an_unused_slug_after_the_grace_period_and_keeps_a_used_one() {
    let a = TestAgent::start("slug_cache_grace = \"2s\"");
    let (one, two) = (worker_slug("one"), worker_slug("two"));
    let (d1, d2) = (sha256(&one), sha256(&two));
    let server = TestServer::paths(vec![("/1.tgz", Reply::Body(one)), ("/2.tgz", Reply::Body(two))]);
    let (u1, u2) = (server.url("/1.tgz"), server.url("/2.tgz"));
    a.ctl_ok(&start_args("shop", "worker.1", &u1, &["--sha256", &d1]));
    let two_resolved_after = std::time::Instant::now();
    a.ctl_ok(&start_args("shop", "worker.2", &u2, &["--sha256", &d2]));
    a.wait_state("shop", "worker.1", "up");
    a.wait_state("shop", "worker.2", "up");
    assert_eq!(cached(&a), sorted(&[&d1, &d2]));

    // worker.2 moves to slug one: nothing uses slug two any more.
    a.ctl_ok(&start_args("shop", "worker.2", &u1, &["--sha256", &d1]));
    a.wait_dyno("shop", "worker.2", "on slug one", |d| d["slug_sha256"] == d1.as_str());
    wait_for("slug two to be collected", || (!cached(&a).contains(&d2)).then_some(()));
    // The collector samples use once a second; what it guarantees is a whole
    // grace period after the last resolve or sighting.
    assert!(
        two_resolved_after.elapsed() >= Duration::from_secs(2),
        "not before the grace period: {:?}",
        two_resolved_after.elapsed()
    );
    // Renamed to .trash-* first, logged once deleted.
    wait_for("the removal to be logged", || {
        a.agent_log().contains("removed a slug no dyno uses").then_some(())
    });
    // Slug one, in use all along, stays through more collections.
    nothing_happens_for(Duration::from_secs(3));
    assert_eq!(cached(&a), vec![d1.clone()]);
    assert!(hidden(&a).is_empty(), "{:?}", hidden(&a));
    a.wait_state("shop", "worker.1", "up");
    a.wait_state("shop", "worker.2", "up");
    assert!(Path::new(&a.state.join("slugs").join(&d1).join("app/tag")).exists());
}

fn sorted(v: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}
