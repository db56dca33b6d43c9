//! Entries that try to escape staging or that the policy refuses: absolute
//! paths, `..`, symlinks and hardlinks on the way, device nodes, duplicates.
//! [`hostile_archives_are_refused`] runs every table of hostile archives
//! (this file's, [`super::limits`]'s and [`super::corrupt`]'s).

use super::*;

fn symlink_to_root_then_file(fx: &Fixture) -> Vec<u8> {
    let through = format!("app/root{}/canary_dir/pwned", fx.root.display());
    Tar::new()
        .dir("app/")
        .symlink("app/root", "/")
        .file(&through, b"pwned")
        .gz()
}

fn symlink_up_then_dir(_: &Fixture) -> Vec<u8> {
    // app/x -> ../../.. resolves (from staging/app) to the fixture root; the directory entry would chmod it.
    Tar::new()
        .dir("app/")
        .symlink("app/x", "../../..")
        .entry(b'5', "app/x", "", 0o777, b"")
        .gz()
}

fn symlink_up_then_dir_below(_: &Fixture) -> Vec<u8> {
    Tar::new()
        .dir("app/")
        .symlink("app/x", "../../..")
        .entry(b'5', "app/x/sub", "", 0o777, b"")
        .gz()
}

fn file_symlink_file(fx: &Fixture) -> Vec<u8> {
    Tar::new()
        .dir("app/")
        .file("app/f", b"first")
        .symlink("app/f", &fx.abs("canary_file"))
        .file("app/f", b"pwned")
        .gz()
}

fn symlink_chain(fx: &Fixture) -> Vec<u8> {
    Tar::new()
        .dir("app/")
        .symlink("app/a", "b")
        .symlink("app/b", "c")
        .symlink("app/c", &fx.abs("canary_dir"))
        .file("app/a/pwned", b"pwned")
        .gz()
}

fn hardlink_to_passwd(fx: &Fixture) -> Vec<u8> {
    // Like a hardlink to /etc/passwd, aimed at the fixture's canary instead.
    Tar::new()
        .dir("app/")
        .hardlink("app/passwd", &fx.abs("canary_file"))
        .gz()
}

pub(super) fn cases() -> Vec<Case> {
    let d = Limits::default;
    vec![
        (
            "absolute file path",
            |fx| Tar::new().dir("app/").file(&fx.abs("canary_dir/pwned"), b"x").gz(),
            d(),
            None,
            vec!["absolute path", "canary_dir/pwned"],
        ),
        (
            "absolute directory outside app",
            |fx| Tar::new().dir("app/").dir(&fx.abs("newdir/")).gz(),
            d(),
            None,
            vec!["absolute path", "newdir"],
        ),
        (
            "`..` in a file path",
            |_| Tar::new().dir("app/").file("./app/../../canary_dir/pwned", b"x").gz(),
            d(),
            None,
            vec!["`..` component", "`./app/../../canary_dir/pwned`"],
        ),
        (
            "`..` in a GNU long name",
            |_| {
                let name = format!("app/{}/../../../../canary_dir/pwned", "a".repeat(120));
                Tar::new().dir("app/").file(&name, b"x").gz()
            },
            d(),
            None,
            vec!["`..` component", "aaaa/../../"],
        ),
        (
            "absolute pax path",
            |fx| {
                let path = fx.abs("canary_dir/pwned");
                Tar::new()
                    .dir("app/")
                    .pax(&[("path", path.as_bytes())])
                    .file("app/innocent", b"x")
                    .gz()
            },
            d(),
            None,
            vec!["absolute path", "canary_dir/pwned"],
        ),
        (
            "symlink to / then a file through it",
            symlink_to_root_then_file,
            d(),
            None,
            vec!["through the symlink `app/root`", "app/root/"],
        ),
        (
            "symlink up then a directory entry of its name",
            symlink_up_then_dir,
            d(),
            None,
            vec!["`app/x`", "already exists as a symlink"],
        ),
        (
            "symlink up then a directory below it",
            symlink_up_then_dir_below,
            d(),
            None,
            vec!["`app/x/sub`", "through the symlink `app/x`"],
        ),
        (
            "file, symlink of its name, file again",
            file_symlink_file,
            d(),
            None,
            vec!["`app/f`", "already exists as a file"],
        ),
        (
            "chain of symlinks",
            symlink_chain,
            d(),
            None,
            vec!["`app/a/pwned`", "through the symlink `app/a`"],
        ),
        (
            "symlink then a symlink through it",
            |fx| {
                Tar::new()
                    .dir("app/")
                    .symlink("app/l", &fx.abs("canary_dir"))
                    .symlink("app/l/s", "/")
                    .gz()
            },
            d(),
            None,
            vec!["`app/l/s`", "through the symlink `app/l`"],
        ),
        (
            "symlink then a hardlink through it",
            |fx| {
                Tar::new()
                    .dir("app/")
                    .file("app/f", b"x")
                    .symlink("app/l", &fx.abs("canary_dir"))
                    .hardlink("app/l/h", "app/f")
                    .gz()
            },
            d(),
            None,
            vec!["`app/l/h`", "through the symlink `app/l`"],
        ),
        (
            "hardlink to an absolute path",
            hardlink_to_passwd,
            d(),
            None,
            vec!["`app/passwd`", "absolute hardlink target", "canary_file"],
        ),
        (
            "hardlink with `..`",
            |_| Tar::new().dir("app/").hardlink("app/h", "app/../../canary_file").gz(),
            d(),
            None,
            vec!["`app/h`", "`..` component in its hardlink target"],
        ),
        (
            "hardlink to a symlink",
            |fx| {
                Tar::new()
                    .dir("app/")
                    .symlink("app/s", &fx.abs("canary_file"))
                    .hardlink("app/h", "app/s")
                    .gz()
            },
            d(),
            None,
            vec!["`app/h`", "hardlink target `app/s` is not an earlier regular file"],
        ),
        (
            "hardlink to a later file",
            |_| {
                Tar::new()
                    .dir("app/")
                    .hardlink("app/h", "app/later")
                    .file("app/later", b"x")
                    .gz()
            },
            d(),
            None,
            vec!["`app/h`", "not an earlier regular file"],
        ),
        (
            "hardlink to a directory",
            |_| Tar::new().dir("app/").dir("app/d/").hardlink("app/h", "app/d").gz(),
            d(),
            None,
            vec!["`app/h`", "not an earlier regular file"],
        ),
        (
            "hardlink to a file outside app",
            |_| {
                Tar::new()
                    .dir("app/")
                    .file("other/f", b"x")
                    .hardlink("app/h", "other/f")
                    .gz()
            },
            d(),
            None,
            vec!["`app/h`", "not an earlier regular file"],
        ),
        (
            "character device",
            |_| Tar::new().dir("app/").entry(b'3', "app/null", "", 0o666, b"").gz(),
            d(),
            None,
            vec!["`app/null`", "character device"],
        ),
        (
            "block device",
            |_| Tar::new().dir("app/").entry(b'4', "app/sda", "", 0o660, b"").gz(),
            d(),
            None,
            vec!["`app/sda`", "block device"],
        ),
        (
            "FIFO",
            |_| Tar::new().dir("app/").entry(b'6', "app/fifo", "", 0o644, b"").gz(),
            d(),
            None,
            vec!["`app/fifo`", "FIFO"],
        ),
        (
            "device outside app",
            |_| Tar::new().dir("app/").entry(b'3', "dev/null", "", 0o666, b"").gz(),
            d(),
            None,
            vec!["`dev/null`", "character device"],
        ),
        (
            "GNU sparse file",
            |_| Tar::new().dir("app/").entry(b'S', "app/sparse", "", 0o644, b"").gz(),
            d(),
            None,
            vec!["`app/sparse`", "sparse"],
        ),
        (
            "unknown entry type",
            |_| Tar::new().dir("app/").entry(b'Z', "app/z", "", 0o644, b"").gz(),
            d(),
            None,
            vec!["`app/z`", "unsupported entry type 'Z'"],
        ),
        (
            "app is a symlink",
            |fx| {
                Tar::new()
                    .symlink("app", &fx.abs("canary_dir"))
                    .file("app/pwned", b"x")
                    .gz()
            },
            d(),
            None,
            vec!["`app`", "must be a directory"],
        ),
        (
            "app is a file",
            |_| Tar::new().file("./app", b"x").gz(),
            d(),
            None,
            vec!["`./app`", "must be a directory"],
        ),
        (
            "a file over a directory",
            |_| Tar::new().dir("app/").dir("app/d/").file("app/d", b"x").gz(),
            d(),
            None,
            vec!["`app/d`", "already exists as a directory"],
        ),
        (
            "a file below a file",
            |_| Tar::new().dir("app/").file("app/f", b"x").file("app/f/g", b"x").gz(),
            d(),
            None,
            vec!["`app/f/g`", "parent `app/f` is not a directory"],
        ),
        (
            "NUL in a long name",
            |_| {
                let name = format!("app/{}\0/../../pwned", "n".repeat(120));
                Tar::new().dir("app/").file(&name, b"x").gz()
            },
            d(),
            None,
            vec!["nnnn\\u{0}/../../pwned`", "NUL byte"],
        ),
        (
            "pax size disagreeing with the header",
            |_| {
                Tar::new()
                    .dir("app/")
                    .pax(&[("size", b"5")])
                    .file("app/f", b"0123456789")
                    .gz()
            },
            d(),
            None,
            vec!["`app/f`", "pax size record (5) disagrees with its header size (10)"],
        ),
    ]
}

#[test]
fn hostile_archives_are_refused() {
    let cases = [cases(), super::limits::cases(), super::corrupt::cases()].concat();
    assert!(cases.len() >= 20);
    for (name, build, limits, expected, want) in cases {
        let fx = fixture();
        let archive = build(&fx);
        let err = fx.refused(&archive, &limits, expected, &want);
        eprintln!("{name}: {err}");
    }
}

#[test]
fn symlink_to_root_then_a_file_through_it() {
    refuse(
        symlink_to_root_then_file,
        Limits::default(),
        &["through the symlink `app/root`"],
    );
}

#[test]
fn symlink_up_then_a_directory_entry_of_its_name() {
    // The fixture root (what app/x points to) keeps its mode 0711: checked by the snapshot.
    let err = refuse(symlink_up_then_dir, Limits::default(), &["`app/x`", "symlink"]);
    assert!(
        matches!(err, UnpackError::Hostile { ref entry, .. } if entry == "app/x"),
        "{err:?}"
    );
    refuse(
        symlink_up_then_dir_below,
        Limits::default(),
        &["`app/x/sub`", "symlink `app/x`"],
    );
}

#[test]
fn file_then_symlink_of_its_name_then_file_again() {
    refuse(file_symlink_file, Limits::default(), &["`app/f`", "already exists"]);
}

#[test]
fn chain_of_symlinks() {
    refuse(symlink_chain, Limits::default(), &["`app/a/pwned`", "symlink `app/a`"]);
}

#[test]
fn hardlink_to_etc_passwd() {
    refuse(
        hardlink_to_passwd,
        Limits::default(),
        &["`app/passwd`", "absolute hardlink target"],
    );
}
