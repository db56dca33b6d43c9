//! Issue 12, items 3 and 4: directory slugs only beneath `slug_dir_root`,
//! resolved without following symlinks out of it, never a path from a request
//! in an overlay option string; and the TCP API without client certificates
//! only when the operator says so, with a warning at every start.
//!
//! The test agent's `slug_dir_root` is its own temporary directory (see the
//! kit's `config`); the host directories these tests attack lie outside it.

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dyno_tests::*;
use tonic::Code;

/// A host directory outside every agent's directory: root's, mode 0700,
/// holding a root-only `secret`. Removed on drop.
fn root_only_dir(tag: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("dyno-e2e-hostdir-{tag}-"))
        .tempdir()
        .expect("host dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "host secret\n").expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    dir
}

/// (uid, gid, mode) of a path, not following it.
fn owner_mode(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// StartDyno of `slug` must be refused with INVALID_ARGUMENT on `slug`, its
/// message holding every one of `needles`; no dyno may be recorded.
async fn refused(a: &TestAgent, what: &str, slug: &Path, needles: &[&str]) {
    let mut c = a.client().await;
    let req = start_req("shop", "worker.1", slug, "cat /app/secret; ls -a /app; exec sleep 600");
    let st = match c.start_dyno(req).await {
        Ok(r) => {
            // What the dyno saw, for the failure message.
            let seen = blocking(|| {
                let logs = || texts(&a.ctl_ok(&["logs", "--app", "shop", "-n", "50"]));
                poll(Duration::from_secs(5), Duration::from_millis(100), || {
                    let l = logs();
                    if l.is_empty() { Err(l) } else { Ok(l) }
                })
                .unwrap_or_else(|l| l)
            });
            panic!(
                "{what}: {} was accepted ({:?}); the dyno saw: {seen:#?}",
                show(slug),
                r.into_inner()
            )
        }
        Err(st) => st,
    };
    assert_eq!(st.code(), Code::InvalidArgument, "{what}: {st:?}");
    assert!(
        st.message().starts_with("slug: "),
        "{what}: the message names the field `slug`: {:?}",
        st.message()
    );
    for n in needles {
        assert!(
            st.message().contains(n),
            "{what}: {n:?} missing from {:?}",
            st.message()
        );
    }
    assert!(
        blocking(|| a.ps()).is_empty(),
        "{what}: a dyno was recorded for a refused start"
    );
}

/// Waits for `line` in the log of `shop/NAME`; returns the dyno's lines.
fn wait_line(a: &TestAgent, name: &str, line: &str) -> Vec<String> {
    poll(DEADLINE, Duration::from_millis(50), || {
        let logs = texts(&a.ctl_ok(&["logs", "--app", "shop", "--dyno", name, "-n", "500"]));
        if logs.iter().any(|l| l == line) {
            Ok(logs)
        } else {
            Err(logs)
        }
    })
    .unwrap_or_else(|logs| panic!("timed out waiting for {line:?} in the log of {name}: {logs:#?}"))
}

/// No mount of the host names the agent's directory or the attacked one.
fn assert_no_mounts_of(dirs: &[&Path]) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for dir in dirs {
        let d = show(dir);
        let leaked: Vec<&str> = info.lines().filter(|l| l.contains(&d)).collect();
        assert!(leaked.is_empty(), "mounts of {d} left: {leaked:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_symlink_to_a_root_only_host_directory_is_refused_and_the_directory_untouched() {
    let a = blocking(|| TestAgent::start(""));
    let host = root_only_dir("app-link");
    let before = (owner_mode(host.path()), owner_mode(&host.path().join("secret")));
    assert_eq!(before.0, (0, 0, 0o700));
    let slug = a.dir.path().join("slugs/linked");
    std::fs::create_dir_all(&slug).expect("slug dir");
    symlink(host.path(), slug.join("app")).expect("app -> host dir");

    refused(&a, "app symlinked to a host directory", &slug, &["app is a symlink"]).await;
    // A symlink inside the root pointing out of it, as the slug itself, too.
    let via = a.dir.path().join("slugs/via");
    symlink(host.path(), &via).expect("slug -> host dir");
    std::fs::create_dir_all(host.path().join("app")).expect("host app");
    refused(
        &a,
        "slug symlinked to a host directory",
        &via,
        &["leaves slug_dir_root"],
    )
    .await;
    std::fs::remove_dir(host.path().join("app")).expect("rmdir");

    let after = (owner_mode(host.path()), owner_mode(&host.path().join("secret")));
    assert_eq!(before, after, "the host directory's owner or mode changed");
    assert_eq!(
        std::fs::read_to_string(host.path().join("secret")).expect("secret"),
        "host secret\n"
    );
    assert_no_mounts_of(&[host.path(), a.dir.path()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slug_path_with_overlay_option_syntax_does_not_change_the_dynos_app() {
    let a = blocking(|| TestAgent::start(""));
    let root = a.dir.path().to_path_buf();
    // `<root>/s,lowerdir=/etc:<root>/real`: spliced into `lowerdir=…/app,…`
    // it would make `/etc` over `<root>/real/app` the dyno's `/app`. Every
    // component is a real directory beneath the root, so it is a valid slug.
    let real = root.join("real");
    std::fs::create_dir_all(real.join("app")).expect("real app");
    // `<root>/s` too: the first `lowerdir=` of the spliced string must exist.
    std::fs::create_dir_all(root.join("s")).expect("s");
    let slug = PathBuf::from(format!("{}/s,lowerdir=/etc:{}", show(&root), show(&real)));
    std::fs::create_dir_all(slug.join("app")).expect("slug app");
    std::fs::write(slug.join("app/slug-marker"), "mine\n").expect("marker");
    assert!(show(&slug.join("app")).contains(",lowerdir=/etc:"));

    let mut c = a.client().await;
    let cmd = "for f in /app/*; do echo \"entry ${f#/app/}\"; done; \
               echo \"owners $(stat -c %u /app) $(stat -c %u /app/slug-marker) $(id -u)\"; \
               echo listed; exec sleep 600";
    let started = c.start_dyno(start_req("shop", "worker.1", &slug, cmd)).await;
    match started {
        Ok(_) => {
            let logs = blocking(|| wait_line(&a, "worker.1", "listed"));
            let entries: Vec<&str> = logs.iter().filter_map(|l| l.strip_prefix("entry ")).collect();
            assert!(
                !entries
                    .iter()
                    .any(|e| ["passwd", "hostname", "hosts", "os-release"].contains(e)),
                "the dyno's /app shows the host's /etc: {entries:?}"
            );
            assert_eq!(entries, ["slug-marker"], "the dyno's /app is the slug's app/");
            // Still chowned to the dyno (the walk by fd), not on the host.
            let owners = logs
                .iter()
                .find_map(|l| l.strip_prefix("owners "))
                .expect("owners line");
            let ids: Vec<&str> = owners.split(' ').collect();
            assert!(ids.len() == 3 && ids[0] == ids[2] && ids[1] == ids[2], "{owners}");
            assert_ne!(ids[2], "0", "{owners}");
            assert_eq!(owner_mode(&slug.join("app/slug-marker")).0, 0, "chowned on the host");
        }
        // Refusing such a path would do too, as long as the field is named.
        Err(st) => {
            assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
            assert!(st.message().starts_with("slug: "), "{st:?}");
        }
    }
    blocking(|| a.ctl_ok(&["stop", "--all"]));
    blocking(|| a.wait_dyno("shop", "worker.1", "stopped", |d| d["pid"].is_null()));
    assert_no_mounts_of(&[a.dir.path()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_slugs_outside_slug_dir_root_are_refused_however_they_get_there() {
    let a = blocking(|| TestAgent::start(""));
    let outside = root_only_dir("outside");
    std::fs::create_dir_all(outside.path().join("sub/app")).expect("outside app");
    std::fs::create_dir_all(outside.path().join("app")).expect("outside app");
    let root = a.dir.path();
    // Lexically outside.
    refused(&a, "outside the root", outside.path(), &["slug_dir_root"]).await;
    // Lexically inside, through `..`.
    let name = outside.path().file_name().expect("name").to_string_lossy().into_owned();
    let up = PathBuf::from(format!("{}/../{name}", show(root)));
    assert!(up.join("app").is_dir(), "{} reaches the outside directory", show(&up));
    refused(&a, "`..` out of the root", &up, &["leaves slug_dir_root"]).await;
    // Through a symlinked parent.
    symlink(outside.path(), root.join("parent")).expect("parent -> outside");
    refused(
        &a,
        "a symlinked parent",
        &root.join("parent/sub"),
        &["leaves slug_dir_root"],
    )
    .await;
    // Inside, a plain directory slug still runs.
    let ok = a.slug("ok", &[("hello", "hi\n")]);
    let mut c = a.client().await;
    c.start_dyno(start_req("shop", "worker.2", &ok, "cat /app/hello; exec sleep 600"))
        .await
        .expect("a directory slug beneath slug_dir_root runs");
    blocking(|| wait_line(&a, "worker.2", "hi"));
    blocking(|| a.ctl_ok(&["stop", "--all"]));
    blocking(|| a.wait_dyno("shop", "worker.2", "stopped", |d| d["pid"].is_null()));
    assert_eq!(owner_mode(outside.path()), (0, 0, 0o700));
    assert_no_mounts_of(&[outside.path(), a.dir.path()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_slug_dir_root_directory_slugs_are_refused_naming_the_key() {
    let mut a = blocking(|| TestAgent::start(""));
    // Served once: the agent's SIGTERM handler is installed by then.
    blocking(|| a.ps());
    blocking(|| assert!(a.sigterm().success()));
    a.unset_config("slug_dir_root");
    blocking(|| a.spawn());
    let slug = a.slug("plain", &[("hello", "hi\n")]);
    refused(&a, "no slug_dir_root", &slug, &["slug_dir_root"]).await;
    // Tarballs are not concerned.
    let tgz = a.tarball("t", &[("hello", "hi\n")]);
    let mut c = a.client().await;
    c.start_dyno(start_req("shop", "worker.2", &tgz, "cat /app/hello; exec sleep 600"))
        .await
        .expect("a tarball slug runs without slug_dir_root");
    blocking(|| wait_line(&a, "worker.2", "hi"));
    blocking(|| a.ctl_ok(&["stop", "--all"]));
    blocking(|| a.wait_dyno("shop", "worker.2", "stopped", |d| d["pid"].is_null()));
}

/// A self-signed certificate for 127.0.0.1 and its key, written into `dir`.
fn server_pem(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("certificate");
    let (c, k) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&c, cert.cert.pem()).expect("cert");
    std::fs::write(&k, cert.signing_key.serialize_pem()).expect("key");
    (c, k)
}

#[test]
fn listen_without_a_client_ca_needs_the_override_and_then_warns_at_every_start() {
    let mut a = TestAgent::start("");
    // Served once: the agent's SIGTERM handler is installed by then.
    a.ps();
    assert!(a.sigterm().success());
    let (cert, key) = server_pem(a.dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    a.set_config("listen", &format!("\"127.0.0.1:{port}\""));
    a.set_config("tls_cert", &format!("\"{}\"", show(&cert)));
    a.set_config("tls_key", &format!("\"{}\"", show(&key)));

    let (status, log) = a.spawn_expect_exit();
    assert_eq!(status.code(), Some(2), "a configuration error: {status}\n{log}");
    assert!(
        log.contains("tls_client_ca") && log.contains("listen_without_client_auth"),
        "the error names both keys: {log}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens"
    );

    a.set_config("listen_without_client_auth", "true");
    let warning = "listen_without_client_auth: the TCP API asks no client certificate";
    for start in 1..=2 {
        a.spawn();
        wait_for("the TCP listener", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        let log = a.agent_log();
        assert_eq!(
            log.matches(warning).count(),
            start,
            "one warning per start (start {start}):\n{log}"
        );
        a.ps();
        assert!(a.sigterm().success());
    }
}
