//! The unpacker's tests, by topic; this file is their kit: a tar writer that
//! lets hostile entries through, gzip helpers, and a fixture that puts the
//! staging directory next to canaries and checks that a refusal leaves
//! nothing behind and changes nothing outside staging.

mod corrupt;
mod hostile;
mod limits;
mod pax;
mod unpacks;

use std::collections::BTreeMap;
use std::fs::{self, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use super::{Limits, UnpackError, Unpacked, hex, unpack};

const MIB: u64 = 1 << 20;

// ---- archive building -------------------------------------------------

fn gz(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// A raw header, name and link name written byte for byte (no checks).
fn header(ty: u8, name: &[u8], link: &[u8], mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_mode(mode);
    h.set_size(size);
    h.set_entry_type(tar::EntryType::new(ty));
    h.set_mtime(1_700_000_000);
    h.set_uid(4242);
    h.set_gid(4242);
    h.set_cksum();
    h
}

/// A tar stream written by hand, so that hostile entries survive.
#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    fn new() -> Self {
        Tar::default()
    }

    fn pad(&mut self) {
        let rem = self.0.len() % 512;
        if rem != 0 {
            self.0.resize(self.0.len() + 512 - rem, 0);
        }
    }

    /// One header and `data`; the header claims `size` bytes.
    fn raw(&mut self, ty: u8, name: &[u8], link: &[u8], mode: u32, size: u64, data: &[u8]) -> &mut Self {
        let name = self.field(b'L', name);
        let link = self.field(b'K', link);
        self.0.extend_from_slice(header(ty, name, link, mode, size).as_bytes());
        self.0.extend_from_slice(data);
        self.pad();
        self
    }

    /// A name or link name for a header field: over 100 bytes, a GNU long
    /// record of type `ty` (`L` or `K`) holding it goes first, and the field
    /// keeps its first 100 bytes.
    fn field<'v>(&mut self, ty: u8, value: &'v [u8]) -> &'v [u8] {
        if value.len() <= 100 {
            return value;
        }
        let mut long = value.to_vec();
        long.push(0);
        self.raw(ty, b"././@LongLink", b"", 0o644, long.len() as u64, &long);
        &value[..100]
    }

    fn entry(&mut self, ty: u8, name: &str, link: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.raw(ty, name.as_bytes(), link.as_bytes(), mode, data.len() as u64, data)
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(b'5', name, "", 0o755, b"")
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(b'0', name, "", 0o644, data)
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(b'2', name, target, 0o777, b"")
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(b'1', name, target, 0o644, b"")
    }

    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let body = key.len() + value.len() + 3; // ' ', '=', '\n'
            let mut len = body + 1;
            while len != body + len.to_string().len() {
                len = body + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.raw(b'x', b"PaxHeaders/entry", b"", 0o644, data.len() as u64, &data)
    }

    /// The stream with its end-of-archive blocks.
    fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.0);
        out.resize(out.len() + 1024, 0);
        out
    }

    /// The stream without its end-of-archive blocks.
    fn unfinished(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }

    fn gz(&mut self) -> Vec<u8> {
        gz(&self.finish())
    }
}

/// A gzip member of 1 MiB of zeros (about 1 KiB), for bombs made of concatenated members.
fn zeros_member() -> &'static [u8] {
    static MEMBER: OnceLock<Vec<u8>> = OnceLock::new();
    MEMBER.get_or_init(|| {
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(&vec![0; MIB as usize]).unwrap();
        enc.finish().unwrap()
    })
}

// ---- fixture: staging next to canaries ---------------------------------

/// A temp dir holding canaries and `w/`, the staging directory's parent.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    staging: PathBuf,
    before: BTreeMap<PathBuf, Seen>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    fs::set_permissions(&root, Permissions::from_mode(0o711)).unwrap();
    fs::write(root.join("canary_file"), "canary\n").unwrap();
    fs::set_permissions(root.join("canary_file"), Permissions::from_mode(0o640)).unwrap();
    fs::create_dir(root.join("canary_dir")).unwrap();
    fs::write(root.join("canary_dir/inner"), "inner\n").unwrap();
    fs::set_permissions(root.join("canary_dir/inner"), Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(root.join("canary_dir"), Permissions::from_mode(0o750)).unwrap();
    fs::create_dir(root.join("w")).unwrap();
    fs::set_permissions(root.join("w"), Permissions::from_mode(0o755)).unwrap();
    let staging = root.join("w/staging");
    let before = snapshot(&root, &staging);
    Fixture {
        _dir: dir,
        root,
        staging,
        before,
    }
}

/// One file system object as seen by [`snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    kind: &'static str,
    mode: u32,
    owner: (u32, u32),
    size: u64,
    /// `None` for the staging directory's parent (staging comes and goes in it).
    mtime: Option<(i64, i64)>,
    /// sha256 of a file's content, or a symlink's target.
    detail: String,
}

/// Everything under `root` but `skip`.
fn snapshot(root: &Path, skip: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_owned()];
    while let Some(path) = todo.pop() {
        if path == skip {
            continue;
        }
        let m = fs::symlink_metadata(&path).unwrap();
        let (kind, detail) = if m.file_type().is_symlink() {
            ("symlink", fs::read_link(&path).unwrap().display().to_string())
        } else if m.is_file() {
            ("file", sha256_hex(&fs::read(&path).unwrap()))
        } else if m.is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                todo.push(e.unwrap().path());
            }
            ("dir", String::new())
        } else {
            ("other", String::new())
        };
        let seen = Seen {
            kind,
            mode: m.mode(),
            owner: (m.uid(), m.gid()),
            size: if m.is_dir() { 0 } else { m.len() },
            mtime: (Some(path.as_path()) != skip.parent()).then(|| (m.mtime(), m.mtime_nsec())),
            detail,
        };
        out.insert(path.strip_prefix(root).unwrap().to_owned(), seen);
    }
    out
}

impl Fixture {
    /// An absolute path inside the fixture (never the real /etc).
    fn abs(&self, rel: &str) -> String {
        format!("{}/{rel}", self.root.display())
    }

    fn unpack(&self, archive: &[u8], limits: &Limits, expected: Option<&str>) -> Result<Unpacked, UnpackError> {
        unpack(archive, &self.staging, expected, limits)
    }

    /// Unpacks `archive`, expects a refusal mentioning every `want`, no staging left and the canaries unchanged.
    fn refused(&self, archive: &[u8], limits: &Limits, expected: Option<&str>, want: &[&str]) -> UnpackError {
        let err = self
            .unpack(archive, limits, expected)
            .expect_err("the slug must be refused");
        let msg = err.to_string();
        for w in want {
            assert!(msg.contains(w), "error {msg:?} does not mention {w:?}");
        }
        assert!(msg.starts_with(|c: char| c.is_ascii_lowercase()), "{msg:?}");
        assert!(
            fs::symlink_metadata(&self.staging).is_err(),
            "staging left behind after: {msg}"
        );
        assert_eq!(
            snapshot(&self.root, &self.staging),
            self.before,
            "outside staging changed after: {msg}"
        );
        err
    }
}

/// Runs a hostile case in a fresh fixture.
fn refuse(build: fn(&Fixture) -> Vec<u8>, limits: Limits, want: &[&str]) -> UnpackError {
    let fx = fixture();
    let archive = build(&fx);
    fx.refused(&archive, &limits, None, want)
}

fn small(f: impl FnOnce(&mut Limits)) -> Limits {
    let mut l = Limits::default();
    f(&mut l);
    l
}

type Build = fn(&Fixture) -> Vec<u8>;

/// (name, archive, limits, expected digest, what the error must say)
type Case = (&'static str, Build, Limits, Option<&'static str>, Vec<&'static str>);
