//! Truncated and corrupt archives, digest mismatches, a slug without `app/`,
//! failing sources and an existing staging directory.

use super::*;

fn header_claims_more(_: &Fixture) -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("app/").raw(b'0', b"app/big", b"", 0o644, MIB, &[7; 100]);
    gz(&t.unfinished())
}

fn truncated_gzip(_: &Fixture) -> Vec<u8> {
    let data: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let whole = Tar::new().dir("app/").file("app/data", &data).gz();
    whole[..whole.len() / 2].to_vec()
}

fn no_end_block(_: &Fixture) -> Vec<u8> {
    gz(&Tar::new().dir("app/").file("app/f", b"data").unfinished())
}

pub(super) fn cases() -> Vec<Case> {
    let d = Limits::default;
    vec![
        (
            "two GNU long names for one entry",
            |_| {
                let long = vec![b'a'; 200];
                let mut t = Tar::new();
                t.dir("app/")
                    .raw(b'L', b"././@LongLink", b"", 0o644, 200, &long)
                    .raw(b'L', b"././@LongLink", b"", 0o644, 200, &long)
                    .file("app/x", b"x");
                t.gz()
            },
            d(),
            None,
            vec!["two GNU long names"],
        ),
        (
            "extension header describing no entry",
            |_| Tar::new().dir("app/").pax(&[("path", b"app/x")]).gz(),
            d(),
            None,
            vec!["describes no entry"],
        ),
        (
            "header checksum mismatch",
            |_| {
                let mut tar = Tar::new().dir("app/").file("app/f", b"x").finish();
                tar[512 + 4] = b'g'; // "app/f" -> "app/g" without a new checksum
                gz(&tar)
            },
            d(),
            None,
            vec!["corrupt slug", "checksum mismatch", "after entry `app/`"],
        ),
        (
            "header claiming more data than exists",
            header_claims_more,
            d(),
            None,
            vec!["truncated", "entry `app/big` claims 1048576 bytes", "ends after 512"],
        ),
        (
            "tar without its end-of-archive block",
            no_end_block,
            d(),
            None,
            vec!["end-of-archive", "after entry `app/f`"],
        ),
        (
            "truncated gzip",
            truncated_gzip,
            d(),
            None,
            vec!["corrupt slug", "truncated or corrupt data"],
        ),
        (
            "truncated gzip trailer",
            |_| {
                let whole = Tar::new().dir("app/").file("app/f", b"x").gz();
                whole[..whole.len() - 3].to_vec()
            },
            d(),
            None,
            vec!["corrupt slug"],
        ),
        (
            "corrupt deflate data",
            |_| {
                let data: Vec<u8> = (0..32 * 1024u32)
                    .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
                    .collect();
                let mut whole = Tar::new().dir("app/").file("app/f", &data).gz();
                let mid = whole.len() / 2;
                for b in &mut whole[mid..mid + 16] {
                    *b ^= 0x5a;
                }
                whole
            },
            d(),
            None,
            vec!["corrupt slug"],
        ),
        (
            "gzip crc mismatch",
            |_| {
                let mut whole = Tar::new().dir("app/").file("app/f", b"x").gz();
                let crc = whole.len() - 8;
                whole[crc] ^= 0xff;
                whole
            },
            d(),
            None,
            vec!["corrupt slug", "checksum"],
        ),
        (
            "garbage, not gzip",
            |_| b"this is not a gzip stream at all, just text".repeat(40),
            d(),
            None,
            vec!["corrupt slug", "at the start of the archive"],
        ),
        (
            "garbage after the gzip stream",
            |_| {
                let mut whole = Tar::new().dir("app/").file("app/f", b"x").gz();
                whole.extend_from_slice(b"trailing garbage");
                whole
            },
            d(),
            None,
            vec!["corrupt slug"],
        ),
        (
            "no app/",
            |_| {
                Tar::new()
                    .dir("./other/")
                    .file("./other/f", b"x")
                    .file("README", b"x")
                    .gz()
            },
            d(),
            None,
            vec!["no app/ directory"],
        ),
        (
            "wrong checksum",
            |_| Tar::new().dir("app/").file("app/f", b"x").gz(),
            d(),
            Some("00000000000000000000000000000000000000000000000000000000000000ff"),
            vec!["sha256 mismatch: expected 00000000000000000000000000000000000000000000000000000000000000ff, got "],
        ),
    ]
}

#[test]
fn truncated_archive() {
    refuse(
        truncated_gzip,
        Limits::default(),
        &["corrupt slug", "truncated or corrupt data"],
    );
    refuse(no_end_block, Limits::default(), &["end-of-archive"]);
}

#[test]
fn header_claiming_more_data_than_exists() {
    let err = refuse(
        header_claims_more,
        Limits::default(),
        &["entry `app/big` claims 1048576 bytes"],
    );
    assert!(matches!(err, UnpackError::Corrupt(_)), "{err:?}");
}

#[test]
fn digest_mismatch_names_both_digests() {
    let fx = fixture();
    let archive = Tar::new().dir("app/").file("app/f", b"x").gz();
    let want = "ab".repeat(32);
    let err = fx.refused(&archive, &Limits::default(), Some(&want), &["sha256 mismatch"]);
    let actual = sha256_hex(&archive);
    assert!(
        err.to_string().contains(&want) && err.to_string().contains(&actual),
        "{err}"
    );
    assert!(matches!(err, UnpackError::Digest { ref expected, actual: ref a } if *expected == want && *a == actual));
}

#[test]
fn a_damaged_download_is_reported_as_a_digest_mismatch() {
    let fx = fixture();
    let good = truncated_gzip(&fx); // any bytes: say the whole thing was expected
    let mut whole = good.clone();
    whole.extend_from_slice(&[1, 2, 3]);
    let expected = sha256_hex(&whole);
    // Corrupt data whose digest is not the expected one: the digest is what is reported.
    let err = fx.refused(&good, &Limits::default(), Some(&expected), &["sha256 mismatch"]);
    assert!(matches!(err, UnpackError::Digest { .. }));
    // Corrupt data with the expected digest: corruption is reported.
    let fx = fixture();
    fx.refused(&good, &Limits::default(), Some(&sha256_hex(&good)), &["corrupt slug"]);
}

#[test]
fn garbage_and_truncated_gzip_are_corrupt() {
    let fx = fixture();
    let err = fx.refused(b"garbage", &Limits::default(), None, &["corrupt slug"]);
    assert!(matches!(err, UnpackError::Corrupt(_)));
    let fx = fixture();
    fx.refused(b"", &Limits::default(), None, &["corrupt slug"]);
}

#[test]
fn a_slug_without_app_is_refused() {
    let fx = fixture();
    let archive = Tar::new().file("README", b"x").dir("other/").gz();
    let err = fx.refused(&archive, &Limits::default(), None, &["no app/"]);
    assert!(matches!(err, UnpackError::NoApp));
}

#[test]
fn source_errors_are_io_errors() {
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "peer went away"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(0x1f);
            self.0 -= n;
            Ok(n)
        }
    }
    let fx = fixture();
    let err = unpack(Failing(0), &fx.staging, None, &Limits::default()).unwrap_err();
    assert!(
        matches!(err, UnpackError::Io { ref path, .. } if path.as_os_str().is_empty()),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "reading the slug: peer went away");
    assert!(!fx.staging.exists());
}

#[test]
fn an_existing_staging_directory_is_left_alone() {
    let fx = fixture();
    fs::create_dir(&fx.staging).unwrap();
    fs::write(fx.staging.join("keep"), "mine").unwrap();
    let archive = Tar::new().dir("app/").gz();
    let err = fx.unpack(&archive, &Limits::default(), None).unwrap_err();
    assert!(matches!(err, UnpackError::Io { ref error, .. } if error.kind() == io::ErrorKind::AlreadyExists));
    assert_eq!(fs::read(fx.staging.join("keep")).unwrap(), b"mine");
}
