//! Sources on this host (directories and tarballs), bad references, and the
//! configured limits.

use super::*;

#[tokio::test]
async fn directory_slug_needs_app() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path());
    c.allow_dir_root(dir.path()).unwrap();
    let root = dir.path().join("dirslug");
    fs::create_dir(&root).unwrap();
    let err = c.resolve(root.to_str().unwrap(), None).await.unwrap_err();
    assert!(message(&err).contains("no app/ directory"), "{err}");
    fs::create_dir(root.join("app")).unwrap();
    let s = c.resolve(&format!("file://{}", root.display()), None).await.unwrap();
    assert_eq!(s.app_dir, root.canonicalize().unwrap().join("app"));
    assert!(s.sha256.is_none());
    let err = c
        .resolve(root.to_str().unwrap(), Some(&"a".repeat(64)))
        .await
        .unwrap_err();
    assert!(matches!(err, SlugError::Invalid { field: "sha256", .. }), "{err}");
}

#[tokio::test]
async fn directory_slugs_need_a_root_and_stay_beneath_it() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path());
    let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
    for d in [root.join("ok/app"), root.join("linked"), outside.join("app")] {
        fs::create_dir_all(d).unwrap();
    }
    let slug_field = |e: &SlugError| matches!(e, SlugError::Invalid { field: "slug", .. });
    // No root configured: refused, naming the key.
    let err = c.resolve(root.join("ok").to_str().unwrap(), None).await.unwrap_err();
    assert!(slug_field(&err) && message(&err).contains("slug_dir_root"), "{err}");
    c.allow_dir_root(&root).unwrap();
    assert!(c.resolve(root.join("ok").to_str().unwrap(), None).await.is_ok());
    // Outside the root, lexically, through `..`, through a symlinked parent.
    symlink(&outside, root.join("out")).unwrap();
    symlink(&outside, root.join("linked/app")).unwrap();
    symlink("ok", root.join("alias")).unwrap();
    for (path, needle) in [
        (outside.clone(), "must lie under slug_dir_root"),
        (root.join("../outside"), "leaves slug_dir_root"),
        (root.join("out"), "leaves slug_dir_root"),
        (root.join("linked"), "app is a symlink"),
    ] {
        let err = c.resolve(path.to_str().unwrap(), None).await.unwrap_err();
        assert!(
            slug_field(&err) && message(&err).contains(needle),
            "{}: {err}",
            path.display()
        );
    }
    // A symlink that stays inside is fine; the result is the real path.
    let s = c.resolve(root.join("alias").to_str().unwrap(), None).await.unwrap();
    assert_eq!(s.app_dir, root.canonicalize().unwrap().join("ok/app"));
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
fn no_descriptor_left_is_resource_exhausted_never_the_slugs_fault() {
    use crate::error::{Error, Reason};
    let emfile = || std::io::Error::from_raw_os_error(libc::EMFILE);
    let errors = [
        super::super::error::io_invalid("/slugs/shop.tgz", &emfile()),
        super::super::error::io_internal(Path::new("/slugs"), &emfile()),
        super::super::error::unpack_error(
            "/slugs/shop.tgz",
            crate::unpack::UnpackError::Io {
                path: PathBuf::new(),
                error: emfile(),
            },
        ),
    ];
    for e in errors {
        let shown = e.to_string();
        match Error::from(e) {
            Error::ResourceExhausted(Reason::NoFreeDescriptors, m) => {
                assert!(m.contains("Too many open files") && m.contains("RLIMIT_NOFILE"), "{m}");
            }
            other => panic!("{shown}: {other:?}"),
        }
    }
    let enoent = std::io::Error::from_raw_os_error(libc::ENOENT);
    assert!(matches!(
        Error::from(super::super::error::io_invalid("/slugs/x.tgz", &enoent)),
        Error::InvalidArgument { .. }
    ));
}
