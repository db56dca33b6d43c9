//! Limits: gzip bombs, too many entries, deep and long paths, oversized
//! extension records, the compressed size; each limit is inclusive.

use super::*;

fn gzip_bomb(_: &Fixture) -> Vec<u8> {
    // One entry of 2 GiB of zeros: a gzip member for the header, then 2048 members of 1 MiB of zeros each.
    let mut t = Tar::new();
    t.dir("app/");
    t.0.extend_from_slice(header(b'0', b"app/zeros", b"", 0o644, 2048 * MIB).as_bytes());
    let mut out = gz(&t.unfinished());
    for _ in 0..2048 {
        out.extend_from_slice(zeros_member());
    }
    out.extend_from_slice(&gz(&[0; 1024]));
    out
}

fn bomb_of_small_entries(_: &Fixture) -> Vec<u8> {
    // 64 entries of 1 MiB of zeros, each under the limit, together far over it.
    let mut out = gz(&Tar::new().dir("app/").unfinished());
    for i in 0..64 {
        let h = header(b'0', format!("app/zeros-{i}").as_bytes(), b"", 0o644, MIB);
        out.extend_from_slice(&gz(h.as_bytes()));
        out.extend_from_slice(zeros_member());
    }
    out.extend_from_slice(&gz(&[0; 1024]));
    out
}

fn bomb_after_tar_end(_: &Fixture) -> Vec<u8> {
    let mut out = Tar::new().dir("app/").file("app/ok", b"ok").gz();
    for _ in 0..2048 {
        out.extend_from_slice(zeros_member());
    }
    out
}

/// `n` empty entries outside app/ (skipped, but counted), generated as repeated gzip members.
fn many_empty_entries(n: usize) -> Vec<u8> {
    let mut out = gz(&Tar::new().dir("app/").file("app/Procfile", b"web: x\n").unfinished());
    let block: Vec<u8> = header(b'0', b"junk/empty", b"", 0o644, 0).as_bytes().repeat(1000);
    let member = gz(&block);
    for _ in 0..n / 1000 {
        out.extend_from_slice(&member);
    }
    out.extend_from_slice(&gz(&header(b'0', b"junk/empty", b"", 0o644, 0)
        .as_bytes()
        .repeat(n % 1000)));
    out.extend_from_slice(&gz(&[0; 1024]));
    out
}

/// `app/`, then the header of a 1 GiB extension record of type `ty` named
/// `name`, and nothing after it.
fn huge_record(ty: u8, name: &[u8]) -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("app/").raw(ty, name, b"", 0o644, 1 << 30, b"");
    gz(&t.unfinished())
}

fn eleven_files(_: &Fixture) -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("app/");
    for i in 0..11 {
        t.file(&format!("app/f{i}"), b"x");
    }
    t.gz()
}

fn deep(n: usize) -> String {
    let mut p = "app/".to_owned();
    for _ in 0..n {
        p.push_str("d/");
    }
    p.push('f');
    p
}

fn deep_nesting(_: &Fixture) -> Vec<u8> {
    Tar::new().dir("app/").file(&deep(64), b"deep").gz()
}

pub(super) fn cases() -> Vec<Case> {
    let d = Limits::default;
    vec![
        (
            "gzip bomb",
            gzip_bomb,
            small(|l| l.unpacked_bytes = 64 * MIB),
            None,
            vec!["unpacked bytes at entry `app/zeros`", "67108864"],
        ),
        (
            "bomb of small entries",
            bomb_of_small_entries,
            small(|l| l.unpacked_bytes = 4 * MIB),
            None,
            vec!["unpacked bytes at entry `app/zeros-4`"],
        ),
        (
            "bomb after the tar end",
            bomb_after_tar_end,
            small(|l| l.unpacked_bytes = 4 * MIB),
            None,
            vec!["after the end of the tar archive", "4194304"],
        ),
        (
            "too many entries",
            eleven_files,
            small(|l| l.entries = 10),
            None,
            vec!["number of entries at entry `app/f9`", "(limit 10)"],
        ),
        (
            "deep nesting",
            deep_nesting,
            d(),
            None,
            vec!["path depth", "app/d/d/d/", "(limit 64)"],
        ),
        (
            "path too long",
            |_| {
                Tar::new()
                    .dir("app/")
                    .file(&format!("app/{}", "p".repeat(5000)), b"x")
                    .gz()
            },
            d(),
            None,
            vec![
                "path length of entry `app/pppp",
                "a GNU long name record of 5005 bytes",
                "(limit 4096)",
            ],
        ),
        (
            "GNU long name record over the path limit",
            |_| huge_record(b'L', b"././@LongLink"),
            d(),
            None,
            vec![
                "path length of entry `…`: a GNU long name record of 1073741824 bytes",
                "after entry `app/`",
                "(limit 4096)",
            ],
        ),
        (
            "pax header over its cap",
            |_| huge_record(b'x', b"PaxHeaders/x"),
            d(),
            None,
            vec!["pax extended header", "1048576"],
        ),
        (
            "symlink target too long",
            |_| Tar::new().dir("app/").symlink("app/l", &"t".repeat(5000)).gz(),
            d(),
            None,
            vec![
                "link target length: a GNU long link record of 5001 bytes (`tttt",
                "after entry `app/`",
            ],
        ),
        (
            "over the compressed limit",
            |_| {
                let data: Vec<u8> = (0..64 * 1024u32)
                    .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                    .collect();
                Tar::new().dir("app/").file("app/data", &data).gz()
            },
            small(|l| l.compressed_bytes = 4096),
            None,
            vec!["compressed bytes", "(limit 4096)"],
        ),
    ]
}

#[test]
fn gzip_bomb_is_stopped_at_the_unpacked_limit() {
    let fx = fixture();
    let archive = gzip_bomb(&fx);
    assert!(archive.len() < 4 << 20, "bomb is {} bytes", archive.len());
    let limits = small(|l| l.unpacked_bytes = 64 * MIB);
    fx.refused(&archive, &limits, None, &["unpacked bytes at entry `app/zeros`"]);
    // Entries under the limit one by one, and zeros after the tar end, are counted as they are read.
    refuse(
        bomb_of_small_entries,
        small(|l| l.unpacked_bytes = 4 * MIB),
        &["unpacked bytes"],
    );
    refuse(
        bomb_after_tar_end,
        small(|l| l.unpacked_bytes = 4 * MIB),
        &["after the end of the tar"],
    );
}

#[test]
fn too_many_entries_against_a_small_limit() {
    let err = refuse(
        eleven_files,
        small(|l| l.entries = 10),
        &["number of entries at entry `app/f9`"],
    );
    assert!(matches!(err, UnpackError::LimitExceeded { limit: 10, .. }), "{err:?}");
}

#[test]
fn hundreds_of_thousands_of_empty_entries() {
    let started = std::time::Instant::now();
    let archive = many_empty_entries(300_000);
    eprintln!(
        "300 000 entries: {} bytes, made in {:?}",
        archive.len(),
        started.elapsed()
    );
    let fx = fixture();
    fx.refused(
        &archive,
        &Limits::default(),
        None,
        &["number of entries at entry `junk/empty`", "(limit 200000)"],
    );
    eprintln!("refused in {:?}", started.elapsed());
}

#[test]
fn many_empty_entries_under_the_limit_pass() {
    let fx = fixture();
    let archive = many_empty_entries(2_500);
    let done = fx.unpack(&archive, &Limits::default(), None).unwrap();
    assert_eq!(done.entries, 2 + 2_500);
    assert_eq!(done.sha256, sha256_hex(&archive));
}

#[test]
fn deep_nesting_is_refused_and_the_limit_is_inclusive() {
    refuse(deep_nesting, Limits::default(), &["path depth", "(limit 64)"]);
    let fx = fixture();
    let archive = Tar::new().dir("app/").file(&deep(62), b"deep").gz();
    fx.unpack(&archive, &Limits::default(), None).unwrap();
    assert_eq!(fs::read(fx.staging.join(deep(62))).unwrap(), b"deep");
}

#[test]
fn path_length_limit_is_inclusive() {
    let fx = fixture();
    let name = format!("app/{}", "p".repeat(96));
    let archive = Tar::new().dir("app/").file(&name, b"x").gz();
    let limits = small(|l| l.path_bytes = 100);
    fx.unpack(&archive, &limits, None).unwrap();
    let fx = fixture();
    let archive = Tar::new().dir("app/").file(&format!("{name}q"), b"x").gz();
    fx.refused(&archive, &limits, None, &["path length", "(limit 100)"]);
}
