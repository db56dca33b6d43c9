//! Tarball slugs through the real API: a good one runs, hostile ones are
//! refused with INVALID_ARGUMENT naming the cause, nothing is written outside
//! the slug cache's staging, no staging is left, and the agent keeps serving.
//! (The unpacker's full hostile battery is in `agent/src/unpack.rs`.)

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;

/// One raw tar entry: (path, type, link target, data).
type RawEntry<'a> = (&'a str, tar::EntryType, &'a str, &'a [u8]);

/// A gzipped tar built from raw entries.
fn tarball(dir: &Path, name: &str, entries: &[RawEntry<'_>]) -> PathBuf {
    let path = dir.join(name);
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (p, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(if *kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        // Raw name bytes: the builder's own path checks would refuse `..`.
        let name = &mut h.as_old_mut().name;
        name[..p.len()].copy_from_slice(p.as_bytes());
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap().flush().unwrap();
    path
}

fn no_staging_left(a: &TestAgent) {
    let slugs = a.state.join("slugs");
    let leftovers: Vec<_> = std::fs::read_dir(&slugs)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name())
                .filter(|n| n.to_string_lossy().starts_with(".staging"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "staging left in {}: {leftovers:?}",
        slugs.display()
    );
}

#[test]
fn a_good_tarball_slug_with_symlinks_runs() {
    use tar::EntryType::*;
    let a = TestAgent::start("");
    let t = tarball(
        a.dir.path(),
        "good.tgz",
        &[
            ("./app/", Directory, "", b""),
            ("./app/bin/", Directory, "", b""),
            ("./app/bin/hello", Regular, "", b"echo hello from the slug\n"),
            ("./app/rel", Symlink, "bin/hello", b""),
            ("./app/abs", Symlink, "/app/bin/hello", b""),
            (
                "./app/Procfile",
                Regular,
                "",
                b"worker: sh rel; sh abs; exec sleep 600\n",
            ),
        ],
    );
    a.ctl_ok(&["start", "--app", "shop", "--name", "worker.1", "--slug", &show(&t)]);
    a.wait_state("shop", "worker.1", "up");
    let lines = wait_for("both lines", || {
        let l = texts(&a.ctl_ok(&["logs", "--app", "shop"]));
        (l.iter().filter(|t| *t == "hello from the slug").count() == 2).then_some(l)
    });
    assert!(!lines.is_empty());
    no_staging_left(&a);
}

#[test]
fn hostile_tarballs_are_refused_and_leave_nothing_behind() {
    use tar::EntryType::*;
    let a = TestAgent::start("");
    let canary_dir = a.dir.path().join("canary");
    std::fs::create_dir(&canary_dir).unwrap();
    let cases: Vec<(&str, Vec<RawEntry<'_>>, &str)> = vec![
        (
            "dotdot",
            vec![
                ("./app/", Directory, "", b""),
                ("./app/../../../canary/x", Regular, "", b"x"),
            ],
            "..",
        ),
        (
            "through-symlink",
            vec![
                ("./app/", Directory, "", b""),
                ("./app/l", Symlink, "/", b""),
                ("./app/l/tmp/evil", Regular, "", b"x"),
            ],
            "symlink",
        ),
        (
            "hardlink-out",
            vec![("./app/", Directory, "", b""), ("./app/p", Link, "/etc/passwd", b"")],
            "app/p",
        ),
        (
            "device",
            vec![("./app/", Directory, "", b""), ("./app/null", Char, "", b"")],
            "app/null",
        ),
        (
            "no-app",
            vec![("./other/", Directory, "", b""), ("./other/f", Regular, "", b"x")],
            "no app/",
        ),
    ];
    for (name, entries, cause) in cases {
        let t = tarball(a.dir.path(), &format!("{name}.tgz"), &entries);
        let out = a.ctl(&[
            "start",
            "--app",
            "shop",
            "--name",
            "worker.1",
            "--slug",
            &show(&t),
            "--command",
            "true",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: INVALID_ARGUMENT expected: {err}");
        assert!(err.contains("slug") && err.contains(cause), "{name}: {err}");
        no_staging_left(&a);
    }
    // Truncated: half of a good archive.
    let good = tarball(
        a.dir.path(),
        "whole.tgz",
        &[
            ("./app/", Directory, "", b""),
            ("./app/f", Regular, "", &[7u8; 100_000]),
        ],
    );
    let bytes = std::fs::read(&good).unwrap();
    let half = a.dir.path().join("half.tgz");
    std::fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();
    let out = a.ctl(&[
        "start",
        "--app",
        "shop",
        "--name",
        "worker.1",
        "--slug",
        &show(&half),
        "--command",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("corrupt"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(
        std::fs::read_dir(&canary_dir).unwrap().count(),
        0,
        "nothing written outside"
    );
    assert!(!Path::new("/tmp/evil").exists());
    no_staging_left(&a);
    // Nothing was created, and the agent still serves.
    assert!(a.ps().is_empty());
}
