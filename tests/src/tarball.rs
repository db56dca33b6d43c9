//! The one tar.gz builder of the tests: slugs written entry by entry, good
//! ones and hostile ones alike.
//!
//! [`Tar`] writes the tar stream itself, block by block, straight into any
//! writer (a gzip encoder over a buffer or a file), so that archives of any
//! size are generated without holding them, and names, link targets, modes
//! and entry types are written byte for byte, also where the tar crate's own
//! setters refuse what a hostile archive needs. Every entry claims the owner
//! [`ARCHIVE_OWNER`] and the mtime [`MTIME`]. [`slug_tgz`] is the common
//! case: a slug holding `app/<path>` for each file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;

/// The owner every archive entry claims (named `mallory`); the slug cache
/// must not take it.
pub const ARCHIVE_OWNER: u64 = 4242;

/// The mtime every archive entry has.
pub const MTIME: u64 = 1_600_000_000;

/// One tar header block with the name and link target copied byte for byte
/// (the tar crate's own setters refuse what hostile archives need).
pub fn block(ty: u8, name: &[u8], link: &[u8], mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(tar::EntryType::new(ty));
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(MTIME);
    h.set_uid(ARCHIVE_OWNER);
    h.set_gid(ARCHIVE_OWNER);
    h.set_username("mallory").expect("username");
    h.set_groupname("mallory").expect("groupname");
    h.set_cksum();
    h
}

/// A tar stream written straight to `w`.
pub struct Tar<W: Write> {
    w: W,
    at: u64,
}

impl<W: Write> Tar<W> {
    pub fn new(w: W) -> Self {
        Tar { w, at: 0 }
    }

    /// What was written so far (for a `Tar<Vec<u8>>`: the bytes).
    pub fn get_ref(&self) -> &W {
        &self.w
    }

    /// The writer, after the caller's last entry (and end marker, if any).
    pub fn into_inner(self) -> W {
        self.w
    }

    /// Raw bytes, as they are.
    pub fn put(&mut self, bytes: &[u8]) -> &mut Self {
        self.w.write_all(bytes).expect("write the archive");
        self.at += bytes.len() as u64;
        self
    }

    /// Zeros up to the next 512-byte block.
    pub fn pad(&mut self) -> &mut Self {
        let rem = (self.at % 512) as usize;
        if rem != 0 {
            self.put(&[0; 512][..512 - rem]);
        }
        self
    }

    /// A GNU long name (`L`) or long link (`K`) record.
    pub fn long(&mut self, ty: u8, value: &[u8]) -> &mut Self {
        let mut data = value.to_vec();
        data.push(0);
        let h = block(ty, b"././@LongLink", b"", 0o644, data.len() as u64);
        self.put(h.as_bytes()).put(&data).pad()
    }

    /// A header claiming `size` bytes of data (none written); names and link
    /// targets over 100 bytes go into GNU long records before it.
    pub fn header(&mut self, ty: u8, name: &[u8], link: &[u8], mode: u32, size: u64) -> &mut Self {
        if name.len() > 100 {
            self.long(b'L', name);
        }
        if link.len() > 100 {
            self.long(b'K', link);
        }
        let h = block(
            ty,
            &name[..name.len().min(100)],
            &link[..link.len().min(100)],
            mode,
            size,
        );
        self.put(h.as_bytes())
    }

    /// A whole entry: its header, its data, the padding.
    pub fn entry(&mut self, ty: u8, name: &str, link: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.header(ty, name.as_bytes(), link.as_bytes(), mode, data.len() as u64)
            .put(data)
            .pad()
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(b'5', name, "", 0o755, b"")
    }

    pub fn dir_mode(&mut self, name: &str, mode: u32) -> &mut Self {
        self.entry(b'5', name, "", mode, b"")
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(b'0', name, "", 0o644, data)
    }

    pub fn file_mode(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.entry(b'0', name, "", mode, data)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(b'2', name, target, 0o777, b"")
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(b'1', name, target, 0o644, b"")
    }

    /// A device node or FIFO entry (`3` char, `4` block, `6` FIFO).
    pub fn node(&mut self, ty: u8, name: &str, major: u32, minor: u32) -> &mut Self {
        let mut h = block(ty, name.as_bytes(), b"", 0o666, 0);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        h.set_cksum();
        self.put(h.as_bytes())
    }

    /// A pax extended header for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            // `<len> <key>=<value>\n`, where <len> counts its own digits.
            let rest = key.len() + value.len() + 3;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.header(b'x', b"PaxHeaders/entry", b"", 0o644, data.len() as u64)
            .put(&data)
            .pad()
    }

    /// The end-of-archive marker: two zero blocks.
    pub fn end(&mut self) -> &mut Self {
        self.put(&[0; 1024])
    }
}

/// A gzipped archive in memory at `level` (`build` writes the entries and,
/// if it wants one, the end-of-archive marker).
pub fn tgz_with(level: Compression, build: impl FnOnce(&mut Tar<GzEncoder<Vec<u8>>>)) -> Vec<u8> {
    let mut t = Tar::new(GzEncoder::new(Vec::new(), level));
    build(&mut t);
    t.into_inner().finish().expect("gzip")
}

/// A gzipped archive in memory, compressed fast.
pub fn tgz(build: impl FnOnce(&mut Tar<GzEncoder<Vec<u8>>>)) -> Vec<u8> {
    tgz_with(Compression::fast(), build)
}

/// A gzipped archive streamed into `path`.
pub fn tgz_file(path: &Path, level: Compression, build: impl FnOnce(&mut Tar<GzEncoder<BufWriter<File>>>)) {
    let file = BufWriter::with_capacity(1 << 20, File::create(path).expect("create archive"));
    let mut t = Tar::new(GzEncoder::new(file, level));
    build(&mut t);
    let mut file = t.into_inner().finish().expect("gzip");
    file.flush().expect("flush archive");
}

/// A gzipped slug holding `app/<path>` for each file (mode 0755; parent
/// directories implied).
pub fn slug_tgz<P: AsRef<str>, B: AsRef<[u8]>>(files: &[(P, B)]) -> Vec<u8> {
    tgz(|t| {
        for (path, body) in files {
            t.file_mode(&format!("app/{}", path.as_ref()), 0o755, body.as_ref());
        }
        t.end();
    })
}
