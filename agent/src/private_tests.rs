//! Unit tests of the state directory's modes: what is created private and
//! what `tighten` changes (and leaves alone).

use std::os::unix::fs::PermissionsExt;

use super::*;

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn chmod(p: &Path, m: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
}

/// The directories of the state tree the tightening tests lay out.
const STATE_DIRS: [&str; 7] = [
    "",
    "dynos",
    "dynos/shop",
    "runs",
    "runs/r.1",
    "runs/r.1/root",
    "runs/r.1/rw",
];

#[test]
fn files_and_directories_are_created_private() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("parent/state");
    create_state_dir(&state).unwrap();
    create_state_dir(&state).unwrap();
    assert_eq!(mode(&state), 0o700);
    assert_eq!(
        mode(&tmp.path().join("parent")) & 0o055,
        0o055,
        "a parent keeps the usual mode"
    );
    create_dir_all(&state.join("dynos/shop")).unwrap();
    assert_eq!(mode(&state.join("dynos")), 0o700);
    assert_eq!(mode(&state.join("dynos/shop")), 0o700);
    for (name, open) in [
        ("a", create as fn(&Path) -> io::Result<File>),
        ("b", create_new),
        ("c", append),
    ] {
        let p = state.join(name);
        open(&p).unwrap();
        assert_eq!(mode(&p), 0o600, "{name}");
    }
    assert!(
        create_new(&state.join("a")).is_err(),
        "create_new refuses an existing file"
    );
}

#[test]
fn tighten_makes_the_private_trees_private_and_leaves_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let outside = tmp.path().join("outside");
    fs::write(&outside, "x").unwrap();
    chmod(&outside, 0o644);
    let dirs = [
        "dynos/shop",
        "runs/r.1/root/bin",
        "runs/r.1/rw",
        "slugs/abc/app",
        "sample-slug/app",
    ];
    for d in dirs {
        fs::create_dir_all(state.join(d)).unwrap();
    }
    let files = [
        "agent.lock",
        "events.jsonl",
        "ledger.db",
        "ledger.db-wal",
        "dynos/shop/web.1.json",
        "runs/r.1/spec.json",
        "runs/r.1/log",
        "runs/r.1/root/bin/sh",
        "slugs/abc/app/index.html",
        "sample-slug/app/index.html",
    ];
    for f in files {
        fs::write(state.join(f), "{}").unwrap();
        chmod(&state.join(f), 0o644);
    }
    chmod(&state.join("runs/r.1/root/bin/sh"), 0o755);
    std::os::unix::fs::symlink(&outside, state.join("dynos/shop/link.json")).unwrap();
    for d in STATE_DIRS {
        chmod(&state.join(d), 0o755);
    }

    let t = tighten(&state).unwrap();
    for f in [
        "agent.lock",
        "events.jsonl",
        "ledger.db",
        "ledger.db-wal",
        "dynos/shop/web.1.json",
        "runs/r.1/spec.json",
        "runs/r.1/log",
    ] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
    for d in STATE_DIRS {
        assert_eq!(mode(&state.join(d)), 0o700, "{d:?}");
    }
    assert_eq!(t.files, 7);
    assert_eq!(t.dirs, 7);
    assert_eq!(
        t.first.as_ref().map(|(p, m)| (p.as_path(), *m)),
        Some((state.as_path(), 0o755))
    );
    // Not entered: a run's mountpoints, the slug cache, other directories,
    // a symlink's target.
    assert_eq!(mode(&state.join("runs/r.1/root/bin")), 0o755);
    assert_eq!(mode(&state.join("runs/r.1/root/bin/sh")), 0o755);
    assert_eq!(mode(&state.join("slugs/abc/app")), 0o755);
    assert_eq!(mode(&state.join("slugs/abc/app/index.html")), 0o644);
    assert_eq!(mode(&state.join("sample-slug/app/index.html")), 0o644);
    assert_eq!(mode(&outside), 0o644);

    assert_eq!(tighten(&state).unwrap(), Tightened::default(), "nothing left to change");
}

#[test]
fn tighten_of_a_missing_directory_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let e = tighten(&missing).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}

#[test]
fn tighten_makes_net_private_but_for_the_files_dynos_read_through_mounts() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    fs::create_dir_all(state.join("net")).unwrap();
    chmod(&state.join("net"), 0o755);
    for (file, m) in [("dn-1.json", 0o644), ("dn-1.resolv", 0o644), ("dn-1.ns", 0o444)] {
        fs::write(state.join("net").join(file), "x").unwrap();
        chmod(&state.join("net").join(file), m);
    }
    tighten(&state).unwrap();
    assert_eq!(mode(&state.join("net")), 0o700);
    assert_eq!(
        mode(&state.join("net/dn-1.json")),
        0o600,
        "a lease record is root's alone"
    );
    assert_eq!(
        mode(&state.join("net/dn-1.resolv")),
        0o644,
        "the dyno reads it through its bind mount"
    );
    assert_eq!(
        mode(&state.join("net/dn-1.ns")),
        0o444,
        "an nsfs inode's mode is the kernel's"
    );
}
