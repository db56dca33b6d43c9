//! The hardened slug unpacker: one streaming pass from the compressed bytes to
//! `staging/app/...` (read → sha256 → gunzip → untar), with limits and a check
//! of every entry before anything is written.
//!
//! Policy (DESIGN.md §7):
//! - only entries under `./app/` are written; everything else is read through
//!   (so the digest covers it) and counted against the limits, never written;
//! - refused anywhere in the archive, naming the entry: absolute paths, `..`
//!   components, NUL bytes in names, device nodes, FIFOs, GNU sparse files and
//!   unknown entry types, hardlinks whose target is absolute or has `..`;
//! - refused under `app/`: an entry whose parent chain holds a symlink made
//!   from the archive (symlinks are kept verbatim as data and never followed),
//!   an entry whose name already exists (a second file, a file over a symlink
//!   or a directory, a directory over a symlink or a file: duplicates are
//!   refused rather than replaced; only a directory entry repeated on a
//!   directory is accepted), a hardlink to anything but an earlier regular
//!   file of this archive under `app/`, and `app` itself as anything but a
//!   directory;
//! - files get `mode & 0o755` (setuid, setgid, sticky, group and other write
//!   stripped: the cache is shared by every dyno of the digest and must not be
//!   writable by any host user but root) and the archive's mtime; directories
//!   get 0755; owners are never taken from the archive;
//! - limits: compressed bytes read from the source, entry data bytes (file
//!   contents, skipped entries, extension records and decompressed data after
//!   the end of the tar archive all count), entries (skipped ones included),
//!   path depth and path length (entry names and link targets);
//! - the tar must end with its end-of-archive block, the gzip stream(s) must
//!   be complete with matching CRCs (concatenated gzip members are accepted,
//!   anything after the last member that is not gzip is refused as corrupt);
//! - on any error the staging directory is removed; when the error is
//!   corruption and a digest was expected, the rest of the source is read and
//!   a digest mismatch is reported instead (a damaged download says so).
//!
//! The archive is walked in raw mode (`tar::Entries::raw`): GNU long names,
//! long link names and pax headers are read here with a size cap, so neither
//! can make the tar crate buffer an arbitrarily large record in memory. A pax
//! `size` record must agree with the header's size.
//!
//! Where things are written: every created path is recorded in memory (dir,
//! file, symlink); an entry's ancestors must all be directories recorded as
//! created by this unpack (missing ones are created 0755), which is what keeps
//! writes from going through a symlink; files are opened
//! `O_CREAT|O_EXCL|O_NOFOLLOW`, directories made with `mkdir` and chmod'ed
//! through an `O_NOFOLLOW|O_DIRECTORY` descriptor, symlinks with `symlink(2)`,
//! hardlinks with `linkat(2)` between two paths inside staging. No fsync: the
//! caller syncs and renames.
//!
//! [`unpack`] blocks (run it on a blocking thread). It is a pipeline of scoped
//! threads joined by bounded channels: the calling thread reads the source
//! (256 KiB reads, counted against the compressed limit) and hands each chunk
//! to `slug-sha256`, which hashes it, and to `slug-gunzip`, which inflates
//! into 1 MiB buffers for `slug-untar`, the only thread that parses the tar
//! stream, checks entries and writes under staging. Errors keep their order:
//! a source failure or the compressed limit reaches the walker only where the
//! decoder gets to it, so corruption or a hostile entry before it is reported
//! as before; read-ahead is a few buffers, so a bomb is stopped by the walker's
//! limits as soon as in a single thread.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, BufRead, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::time::{Duration, SystemTime};

use flate2::bufread::MultiGzDecoder;
use sha2::{Digest, Sha256};

/// Copy buffer size (entry data to files).
const BUF_SIZE: usize = 256 * 1024;
/// Bytes asked of the source per read.
const READ_SIZE: usize = 256 * 1024;
/// Decompressed bytes handed from the inflating thread to the walker at once.
const CHUNK_SIZE: usize = 1024 * 1024;
/// Chunks queued between two threads of the pipeline.
const IN_FLIGHT: usize = 4;
/// Compressed chunks queued for the hashing thread.
const HASH_QUEUE: usize = 16;
/// Largest pax extended header (per entry) read into memory.
const PAX_MAX: u64 = 1 << 20;
/// What is kept of an archived file's mode.
const FILE_MODE_MASK: u32 = 0o755;
/// The mode of every unpacked directory.
const DIR_MODE: u32 = 0o755;
/// Longest entry name shown in an error message.
const SHOW_MAX: usize = 200;

/// Bounds on what one slug may cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes read from the source (the compressed slug).
    pub compressed_bytes: u64,
    /// Entry data bytes in the tar stream (see the module docs for what counts).
    pub unpacked_bytes: u64,
    /// Entries in the archive, skipped ones included (extension headers excluded).
    pub entries: u64,
    /// Components in an entry's path (`app` counts as one).
    pub depth: usize,
    /// Bytes in an entry's path or link target, as in the archive.
    pub path_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            compressed_bytes: 1 << 30,
            unpacked_bytes: 4 << 30,
            entries: 200_000,
            depth: 64,
            path_bytes: 4096,
        }
    }
}

/// What a successful [`unpack`] read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpacked {
    /// Lowercase hex sha256 of every byte read from the source.
    pub sha256: String,
    /// Bytes read from the source.
    pub compressed_bytes: u64,
    /// Entry data bytes counted against [`Limits::unpacked_bytes`].
    pub unpacked_bytes: u64,
    /// Entries in the archive, skipped ones included.
    pub entries: u64,
}

/// Why a slug was refused.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The compressed bytes do not have the expected sha256.
    #[error("sha256 mismatch: expected {expected}, got {actual}")]
    Digest { expected: String, actual: String },
    /// The slug is over one of the [`Limits`].
    #[error("limit exceeded: {what} (limit {limit})")]
    LimitExceeded { what: String, limit: u64 },
    /// Truncated or corrupt gzip or tar data.
    #[error("corrupt slug: {0}")]
    Corrupt(String),
    /// An entry that would escape staging, or that this unpacker refuses.
    #[error("hostile slug entry `{entry}`: {why}")]
    Hostile { entry: String, why: String },
    /// No `app/` directory in the slug.
    #[error("slug has no app/ directory")]
    NoApp,
    /// An I/O error writing under staging; an empty `path` means reading the source.
    #[error("{}: {error}", io_subject(.path))]
    Io {
        path: PathBuf,
        #[source]
        error: io::Error,
    },
}

fn io_subject(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        "reading the slug".to_owned()
    } else {
        path.display().to_string()
    }
}

/// Streams `reader` (the compressed slug) through sha256 and gunzip into `staging/app/...` (`staging` must not
/// exist yet; its parent must; created with 0755).
///
/// Verifies `expected_sha256` (if Some) after the whole stream has been read (the gzip trailer and any bytes after
/// the tar end included: every byte read from `reader` is hashed, and the reader is read to EOF). On ANY error the
/// staging directory is removed entirely (except when it already existed: then it is left alone and the error is
/// [`UnpackError::Io`]) and nothing outside it was ever written.
pub fn unpack(
    reader: impl Read,
    staging: &Path,
    expected_sha256: Option<&str>,
    limits: &Limits,
) -> Result<Unpacked, UnpackError> {
    DirBuilder::new()
        .mode(0o755)
        .create(staging)
        .map_err(|e| io_error(staging, e))?;
    let guard = StagingGuard(Some(staging));
    fs::set_permissions(staging, Permissions::from_mode(0o755)).map_err(|e| io_error(staging, e))?;
    let unpacked = unpack_into(reader, staging, expected_sha256, limits)?;
    guard.keep();
    Ok(unpacked)
}

/// Removes the staging directory unless kept (on errors and panics alike).
struct StagingGuard<'a>(Option<&'a Path>);

impl StagingGuard<'_> {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for StagingGuard<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.0
            && let Err(e) = fs::remove_dir_all(path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a refused slug's staging directory");
        }
    }
}

fn io_error(path: &Path, error: io::Error) -> UnpackError {
    UnpackError::Io {
        path: path.to_owned(),
        error,
    }
}

/// State shared between the threads (see [`unpack_into`]).
#[derive(Default)]
struct Shared {
    /// Set when the inflater is handed the compressed limit error.
    compressed_over: AtomicBool,
    /// Set when the inflater is handed an error reading the source.
    source_failed: AtomicBool,
    /// Set when the tar stream hits EOF (a tar that ends without its
    /// end-of-archive block is truncated).
    tar_eof: AtomicBool,
}

/// Why the source stopped giving bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// More than [`Limits::compressed_bytes`] were read.
    Limit,
    /// The reader failed.
    Source,
}

/// The bottom layer, on the calling thread: reads the source, counts every
/// byte and hands a copy of each chunk to the hashing thread.
struct Source<R> {
    inner: R,
    hasher: SyncSender<Arc<Vec<u8>>>,
    limit: u64,
    /// Bytes read so far.
    seen: u64,
    /// The first failure, if any: no read is tried after one.
    failed: Option<Failure>,
}

impl<R: Read> Source<R> {
    /// One read of the source: `None` at EOF. A read that takes the count over
    /// the limit is hashed but not handed on.
    fn next(&mut self) -> Result<Option<Arc<Vec<u8>>>, (io::Error, Failure)> {
        if let Some(failed) = self.failed {
            return Err((io::Error::other("the slug could not be read to its end"), failed));
        }
        if self.seen > self.limit {
            return Err(self.fail(io::Error::other("compressed size limit exceeded"), Failure::Limit));
        }
        // Never ask for more than one byte past the limit.
        let room = usize::try_from((self.limit - self.seen).saturating_add(1)).unwrap_or(usize::MAX);
        let mut buf = vec![0; READ_SIZE.min(room)];
        let n = loop {
            match self.inner.read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.fail(e, Failure::Source)),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        let chunk = Arc::new(buf);
        // The hashing thread only stops when this sender is dropped.
        let _ = self.hasher.send(chunk.clone());
        self.seen += n as u64;
        if self.seen > self.limit {
            return Err(self.fail(io::Error::other("compressed size limit exceeded"), Failure::Limit));
        }
        Ok(Some(chunk))
    }

    fn fail(&mut self, e: io::Error, failure: Failure) -> (io::Error, Failure) {
        self.failed = Some(failure);
        (e, failure)
    }

    /// Reads the source to EOF (bounded by the compressed limit).
    fn drain(&mut self) -> Result<(), UnpackError> {
        loop {
            match self.next() {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err((_, Failure::Limit)) => {
                    return Err(UnpackError::LimitExceeded {
                        what: "compressed bytes".to_owned(),
                        limit: self.limit,
                    });
                }
                Err((error, Failure::Source)) => {
                    return Err(UnpackError::Io {
                        path: PathBuf::new(),
                        error,
                    });
                }
            }
        }
    }
}

/// What the calling thread hands the inflating thread.
enum Compressed {
    Chunk(Arc<Vec<u8>>),
    /// The source failed (the last message).
    Failed(io::Error, Failure),
}

/// The compressed stream as the inflating thread reads it: the chunks read on
/// the calling thread, then EOF (the sender dropped) or the source's failure.
struct Inflow<'a> {
    chunks: Receiver<Compressed>,
    chunk: Arc<Vec<u8>>,
    pos: usize,
    shared: &'a Shared,
}

impl Read for Inflow<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Inflow<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.chunk.len() {
            match self.chunks.recv() {
                Ok(Compressed::Chunk(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                // The flags are set here, when the decoder gets to the failure,
                // so that corruption found before it is still reported as such.
                Ok(Compressed::Failed(e, Failure::Limit)) => {
                    self.shared.compressed_over.store(true, Ordering::SeqCst);
                    return Err(e);
                }
                Ok(Compressed::Failed(e, Failure::Source)) => {
                    self.shared.source_failed.store(true, Ordering::SeqCst);
                    return Err(e);
                }
                Err(_) => return Ok(&[]),
            }
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.chunk.len());
    }
}

/// What the inflating thread hands the walker.
enum Inflated {
    /// A buffer and how much of it is filled.
    Data(Vec<u8>, usize),
    /// The gzip stream ended cleanly.
    End,
    /// Corrupt data, or the source's failure (the last message).
    Failed(io::Error),
}

/// The inflating thread: gunzips the chunks into large buffers (recycled
/// through `free`) until the end, an error, or the walker hanging up.
fn inflate(input: Inflow<'_>, out: SyncSender<Inflated>, free: Receiver<Vec<u8>>) {
    let mut decoder = MultiGzDecoder::new(input);
    loop {
        let mut buf = free.try_recv().unwrap_or_else(|_| vec![0; CHUNK_SIZE]);
        let mut filled = 0;
        let mut last = None;
        while filled < buf.len() {
            match decoder.read(&mut buf[filled..]) {
                Ok(0) => {
                    last = Some(Inflated::End);
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    last = Some(Inflated::Failed(e));
                    break;
                }
            }
        }
        if filled > 0 && out.send(Inflated::Data(buf, filled)).is_err() {
            return;
        }
        if let Some(last) = last {
            let _ = out.send(last);
            return;
        }
    }
}

/// The decompressed stream as the walker reads it; buffers it is done with go
/// back to the inflating thread.
struct Outflow {
    chunks: Receiver<Inflated>,
    free: Sender<Vec<u8>>,
    buf: Vec<u8>,
    len: usize,
    pos: usize,
    ended: bool,
    failed: bool,
}

impl Read for Outflow {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.len {
            if self.ended {
                return Ok(0);
            }
            if self.failed {
                return Err(io::Error::other("the compressed stream failed"));
            }
            match self.chunks.recv() {
                Ok(Inflated::Data(buf, len)) => {
                    let done = std::mem::replace(&mut self.buf, buf);
                    if !done.is_empty() {
                        let _ = self.free.send(done);
                    }
                    self.len = len;
                    self.pos = 0;
                }
                Ok(Inflated::End) => self.ended = true,
                Ok(Inflated::Failed(e)) => {
                    self.failed = true;
                    return Err(e);
                }
                Err(_) => {
                    self.failed = true;
                    return Err(io::Error::other("the inflating thread stopped"));
                }
            }
        }
        let n = (self.len - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The decompressed tar stream; notes when it hits EOF.
struct TarInput<'a, R> {
    inner: R,
    shared: &'a Shared,
}

impl<R: Read> Read for TarInput<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.shared.tar_eof.store(true, Ordering::SeqCst);
        }
        Ok(n)
    }
}

/// Spawns a named scoped thread (named for `top` and profilers).
fn spawn<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: &str,
    f: impl FnOnce() -> T + Send + 'scope,
) -> std::thread::ScopedJoinHandle<'scope, T> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn_scoped(scope, f)
        .expect("failed to spawn a slug unpacking thread")
}

/// Runs the pipeline: the calling thread reads the source (the reader need
/// not be `Send`) and hands every chunk to a hashing thread and an inflating
/// thread; a walking thread parses the tar stream and writes the files. The
/// channels between them are bounded, so a bomb costs at most a few buffers of
/// read-ahead before the walker's limits stop it.
fn unpack_into<R: Read>(
    reader: R,
    root: &Path,
    expected: Option<&str>,
    limits: &Limits,
) -> Result<Unpacked, UnpackError> {
    let shared = Shared::default();
    let shared = &shared;
    std::thread::scope(|scope| {
        let (to_hash, hash_rx) = sync_channel::<Arc<Vec<u8>>>(HASH_QUEUE);
        let hashing = spawn(scope, "slug-sha256", move || {
            let mut hasher = Sha256::new();
            for chunk in hash_rx {
                hasher.update(&chunk[..]);
            }
            hex(&hasher.finalize())
        });
        let (to_inflate, compressed) = sync_channel::<Compressed>(IN_FLIGHT);
        let (to_walk, inflated) = sync_channel::<Inflated>(IN_FLIGHT);
        let (free_tx, free_rx) = channel::<Vec<u8>>();
        let input = Inflow {
            chunks: compressed,
            chunk: Arc::new(Vec::new()),
            pos: 0,
            shared,
        };
        let inflating = spawn(scope, "slug-gunzip", move || inflate(input, to_walk, free_rx));
        let walking = spawn(scope, "slug-untar", move || {
            let mut walker = Walker {
                root,
                limits,
                shared,
                nodes: HashMap::new(),
                buf: vec![0; BUF_SIZE],
                data_bytes: 0,
                entries: 0,
                last: None,
            };
            let stream = TarInput {
                inner: Outflow {
                    chunks: inflated,
                    free: free_tx,
                    buf: Vec::new(),
                    len: 0,
                    pos: 0,
                    ended: false,
                    failed: false,
                },
                shared,
            };
            let mut archive = tar::Archive::new(stream);
            let walked = walker.walk(&mut archive);
            let mut stream = archive.into_inner();
            let walked = walked.and_then(|()| walker.drain_tar(&mut stream));
            (walked, walker)
        });
        let mut source = Source {
            inner: reader,
            hasher: to_hash,
            limit: limits.compressed_bytes,
            seen: 0,
            failed: None,
        };
        // Feed the inflater until EOF, a failure, or it hangs up.
        loop {
            let message = match source.next() {
                Ok(Some(chunk)) => Compressed::Chunk(chunk),
                Ok(None) => break,
                Err((e, failure)) => Compressed::Failed(e, failure),
            };
            let last = matches!(message, Compressed::Failed(..));
            if to_inflate.send(message).is_err() || last {
                break;
            }
        }
        drop(to_inflate);
        let (walked, walker) = match walking.join() {
            Ok(done) => done,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if let Err(panic) = inflating.join() {
            std::panic::resume_unwind(panic);
        }
        // Read the source to EOF: after success (the digest covers every byte), and
        // after corruption when a digest was expected (to tell a bad download).
        let drained = match &walked {
            Ok(()) => Some(source.drain()),
            Err(UnpackError::Corrupt(_)) if expected.is_some() => Some(source.drain()),
            Err(_) => None,
        };
        let compressed_bytes = source.seen;
        drop(source);
        let actual = hashing.join().expect("the hashing thread panicked");
        let digest_error =
            expected
                .filter(|want| !want.eq_ignore_ascii_case(&actual))
                .map(|want| UnpackError::Digest {
                    expected: want.to_owned(),
                    actual: actual.clone(),
                });
        match walked {
            Ok(()) => {
                drained.unwrap_or(Ok(()))?;
                if let Some(e) = digest_error {
                    return Err(e);
                }
                let app_is_dir = walker.nodes.get(b"app".as_slice()) == Some(&Node::Dir)
                    && fs::symlink_metadata(root.join("app")).is_ok_and(|m| m.is_dir());
                if !app_is_dir {
                    return Err(UnpackError::NoApp);
                }
                Ok(Unpacked {
                    sha256: actual,
                    compressed_bytes,
                    unpacked_bytes: walker.data_bytes,
                    entries: walker.entries,
                })
            }
            Err(e @ UnpackError::Corrupt(_)) => match (drained, digest_error) {
                (Some(Ok(())), Some(digest)) => Err(digest),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File,
    Symlink,
}

/// What an entry is, once its type byte is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    /// A pax global header: read through.
    Global,
}

/// Extension records describing the next entry.
#[derive(Default)]
struct Ext {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl Ext {
    fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_none()
    }
}

#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    link_path: Option<Vec<u8>>,
    size: Option<u64>,
    sparse: bool,
}

/// Parses pax records (`<len> <key>=<value>\n`) by their length prefixes.
fn parse_pax(mut data: &[u8]) -> Result<Pax, String> {
    let mut pax = Pax::default();
    // Some writers pad the records with NULs.
    while !data.iter().all(|&b| b == 0) {
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or("malformed pax record: no length")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("malformed pax record: bad length")?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("malformed pax record: bad length".to_owned());
        }
        let record = &data[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("malformed pax record: no `=`")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        // An empty value unsets the keyword (the header's field applies).
        let some = |v: &[u8]| (!v.is_empty()).then(|| v.to_vec());
        match key {
            b"path" => pax.path = some(value),
            b"linkpath" => pax.link_path = some(value),
            b"size" if value.is_empty() => pax.size = None,
            b"size" => {
                pax.size = Some(
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or("malformed pax size record")?,
                );
            }
            k if k.starts_with(b"GNU.sparse.") => pax.sparse = true,
            _ => {}
        }
        data = &data[len..];
    }
    Ok(pax)
}

struct Walker<'a> {
    root: &'a Path,
    limits: &'a Limits,
    shared: &'a Shared,
    /// Everything created under `root`, by normalized relative path.
    nodes: HashMap<Vec<u8>, Node>,
    buf: Vec<u8>,
    data_bytes: u64,
    entries: u64,
    /// The last entry seen, for errors between entries.
    last: Option<String>,
}

impl Walker<'_> {
    fn walk<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<(), UnpackError> {
        let entries = archive.entries().map_err(|e| self.stream_error(e))?.raw(true);
        let mut ext = Ext::default();
        // A long name record holds the name and a NUL.
        let path_cap = (self.limits.path_bytes as u64 + 1, self.limits.path_bytes as u64);
        for entry in entries {
            let mut entry = entry.map_err(|e| self.stream_error(e))?;
            let size = entry.size();
            match entry.header().entry_type().as_byte() {
                b'L' => {
                    let data = self.read_ext(&mut entry, size, "path", path_cap)?;
                    if ext.long_name.replace(data).is_some() {
                        return Err(self.corrupt_here("two GNU long names for one entry"));
                    }
                }
                b'K' => {
                    let data = self.read_ext(&mut entry, size, "link target", path_cap)?;
                    if ext.long_link.replace(data).is_some() {
                        return Err(self.corrupt_here("two GNU long link names for one entry"));
                    }
                }
                b'x' | b'X' => {
                    let data = self.read_ext(&mut entry, size, "pax", (PAX_MAX, PAX_MAX))?;
                    if ext.pax.replace(data).is_some() {
                        return Err(self.corrupt_here("two pax extended headers for one entry"));
                    }
                }
                _ => self.entry(&mut entry, std::mem::take(&mut ext))?,
            }
        }
        if !ext.is_empty() {
            return Err(self.corrupt_here("an extension header describes no entry"));
        }
        if self.shared.tar_eof.load(Ordering::SeqCst) {
            return Err(self.corrupt_here("truncated: the tar archive ends without its end-of-archive block"));
        }
        Ok(())
    }

    /// Reads the decompressed data after the tar end (padding), counted.
    fn drain_tar<R: Read>(&mut self, stream: &mut R) -> Result<(), UnpackError> {
        loop {
            let n = stream.read(&mut self.buf).map_err(|e| self.stream_error(e))?;
            if n == 0 {
                return Ok(());
            }
            self.data_bytes += n as u64;
            if self.data_bytes > self.limits.unpacked_bytes {
                return Err(UnpackError::LimitExceeded {
                    what: "unpacked bytes in data after the end of the tar archive".to_owned(),
                    limit: self.limits.unpacked_bytes,
                });
            }
        }
    }

    /// Maps an error from the reader stack: a limit, the source, or corruption.
    fn stream_error(&self, e: io::Error) -> UnpackError {
        self.stream_error_in(e, None)
    }

    /// [`Self::stream_error`] while reading the data of entry `inside`.
    fn stream_error_in(&self, e: io::Error, inside: Option<&str>) -> UnpackError {
        if self.shared.compressed_over.load(Ordering::SeqCst) {
            UnpackError::LimitExceeded {
                what: "compressed bytes".to_owned(),
                limit: self.limits.compressed_bytes,
            }
        } else if self.shared.source_failed.load(Ordering::SeqCst) {
            UnpackError::Io {
                path: PathBuf::new(),
                error: e,
            }
        } else if let Some(name) = inside {
            UnpackError::Corrupt(format!("truncated or corrupt data: {e} (in entry `{name}`)"))
        } else {
            self.corrupt_here(&format!("truncated or corrupt data: {e}"))
        }
    }

    fn corrupt_here(&self, what: &str) -> UnpackError {
        match &self.last {
            Some(last) => UnpackError::Corrupt(format!("{what} (after entry `{last}`)")),
            None => UnpackError::Corrupt(format!("{what} (at the start of the archive)")),
        }
    }

    /// Reads an extension record (`what`: "path" or "link target" for GNU long
    /// names, "pax") of at most `cap.0` bytes; `cap.1` is the limit to report.
    fn read_ext<R: Read>(
        &mut self,
        entry: &mut R,
        size: u64,
        what: &str,
        cap: (u64, u64),
    ) -> Result<Vec<u8>, UnpackError> {
        if size > cap.0 {
            let after = self
                .last
                .as_deref()
                .map(|l| format!(" after entry `{l}`"))
                .unwrap_or_default();
            if what == "pax" {
                return Err(UnpackError::LimitExceeded {
                    what: format!("size of a pax extended header of {size} bytes{after}"),
                    limit: cap.1,
                });
            }
            // Name the entry by the start of its long name, if there is one to read.
            let mut start = Vec::new();
            let _ = entry.take(SHOW_MAX as u64).read_to_end(&mut start);
            let what = if what == "path" {
                format!(
                    "path length of entry `{}…`: a GNU long name record of {size} bytes{after}",
                    show(&start)
                )
            } else {
                format!(
                    "link target length: a GNU long link record of {size} bytes (`{}…`){after}",
                    show(&start)
                )
            };
            return Err(UnpackError::LimitExceeded { what, limit: cap.1 });
        }
        let mut data = Vec::with_capacity(size as usize);
        let name = if what == "pax" {
            "(pax extended header)"
        } else {
            "(GNU long name)"
        };
        self.copy(entry, size, name, |chunk| {
            data.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(data)
    }

    /// Reads exactly `size` bytes of entry data, counted, into `sink`.
    fn copy<R: Read>(
        &mut self,
        entry: &mut R,
        size: u64,
        name: &str,
        mut sink: impl FnMut(&[u8]) -> Result<(), UnpackError>,
    ) -> Result<(), UnpackError> {
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(self.buf.len());
            let n = match entry.read(&mut self.buf[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.stream_error_in(e, Some(name))),
            };
            if n == 0 {
                return Err(UnpackError::Corrupt(format!(
                    "truncated: entry `{name}` claims {size} bytes of data, the archive ends after {}",
                    size - left
                )));
            }
            self.data_bytes += n as u64;
            if self.data_bytes > self.limits.unpacked_bytes {
                return Err(UnpackError::LimitExceeded {
                    what: format!("unpacked bytes at entry `{name}`"),
                    limit: self.limits.unpacked_bytes,
                });
            }
            sink(&self.buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    fn skip<R: Read>(&mut self, entry: &mut R, size: u64, name: &str) -> Result<(), UnpackError> {
        self.copy(entry, size, name, |_| Ok(()))
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, ext: Ext) -> Result<(), UnpackError> {
        let header = entry.header().clone();
        let size = entry.size();
        let type_byte = header.entry_type().as_byte();
        self.entries += 1;
        let pax = match ext.pax.as_deref().map(parse_pax).transpose() {
            Ok(pax) => pax.unwrap_or_default(),
            Err(why) => return Err(self.corrupt_here(&why)),
        };
        let raw_path: Vec<u8> = match (ext.long_name, pax.path) {
            (Some(mut long), _) => {
                while long.last() == Some(&0) {
                    long.pop();
                }
                long
            }
            (None, Some(path)) => path,
            (None, None) => header.path_bytes().into_owned(),
        };
        let name = show(&raw_path);
        self.last = Some(name.clone());
        let hostile = |why: String| UnpackError::Hostile {
            entry: name.clone(),
            why,
        };
        if self.entries > self.limits.entries {
            return Err(UnpackError::LimitExceeded {
                what: format!("number of entries at entry `{name}`"),
                limit: self.limits.entries,
            });
        }
        if let Some(pax_size) = pax.size
            && pax_size != size
        {
            return Err(hostile(format!(
                "its pax size record ({pax_size}) disagrees with its header size ({size})"
            )));
        }
        let kind = match type_byte {
            b'0' | b'\0' | b'7' if raw_path.ends_with(b"/") => Kind::Dir,
            b'0' | b'\0' | b'7' => Kind::File,
            b'5' => Kind::Dir,
            b'2' => Kind::Symlink,
            b'1' => Kind::Hardlink,
            b'g' => Kind::Global,
            b'3' => return Err(hostile("character device nodes are refused".to_owned())),
            b'4' => return Err(hostile("block device nodes are refused".to_owned())),
            b'6' => return Err(hostile("FIFOs are refused".to_owned())),
            b'S' => return Err(hostile("GNU sparse files are not supported".to_owned())),
            other => {
                return Err(hostile(format!("unsupported entry type {:?}", char::from(other))));
            }
        };
        if pax.sparse {
            return Err(hostile("GNU sparse files are not supported".to_owned()));
        }
        if self.data_bytes.saturating_add(size) > self.limits.unpacked_bytes {
            return Err(UnpackError::LimitExceeded {
                what: format!("unpacked bytes at entry `{name}`, which claims {size} bytes"),
                limit: self.limits.unpacked_bytes,
            });
        }
        if kind == Kind::Global {
            return self.skip(entry, size, &name);
        }
        let comps = self.normalize(&raw_path, &name, "path")?;
        let link: Option<Vec<u8>> = match kind {
            Kind::Symlink | Kind::Hardlink => {
                let mut link = match (ext.long_link, pax.link_path) {
                    (Some(long), _) => long,
                    (None, Some(link)) => link,
                    (None, None) => header.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default(),
                };
                while link.last() == Some(&0) {
                    link.pop();
                }
                if link.is_empty() {
                    return Err(hostile("empty link target".to_owned()));
                }
                if link.len() > self.limits.path_bytes {
                    return Err(UnpackError::LimitExceeded {
                        what: format!("link target length of entry `{name}`: {} bytes", link.len()),
                        limit: self.limits.path_bytes as u64,
                    });
                }
                if link.contains(&0) {
                    return Err(hostile("NUL byte in its link target".to_owned()));
                }
                Some(link)
            }
            _ => None,
        };
        let hardlink_target = match (kind, &link) {
            (Kind::Hardlink, Some(link)) => Some(self.normalize(link, &name, "hardlink target")?),
            _ => None,
        };
        if comps.first().copied() != Some(b"app".as_slice()) {
            return self.skip(entry, size, &name);
        }
        if comps.len() == 1 && kind != Kind::Dir {
            return Err(hostile("`app` must be a directory".to_owned()));
        }
        let rel = comps.join(&b'/');
        let path = self.root.join(OsStr::from_bytes(&rel));
        self.parents(&comps, &name)?;
        match kind {
            Kind::Dir => {
                // Every directory gets DIR_MODE; a corrupt mode field is still refused.
                header
                    .mode()
                    .map_err(|e| UnpackError::Corrupt(format!("entry `{name}`: {e}")))?;
                match self.nodes.get(&rel) {
                    Some(Node::Dir) => {}
                    Some(&node) => return Err(self.exists(&name, &rel, node)),
                    None => self.make_dir(&path, &rel, &name)?,
                }
                set_dir_mode(&path, DIR_MODE)?;
                self.skip(entry, size, &name)
            }
            Kind::File => {
                let mode = header
                    .mode()
                    .map_err(|e| UnpackError::Corrupt(format!("entry `{name}`: {e}")))?;
                if let Some(&node) = self.nodes.get(&rel) {
                    return Err(self.exists(&name, &rel, node));
                }
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(|e| self.create_error(&name, &path, e))?;
                self.nodes.insert(rel, Node::File);
                self.copy(entry, size, &name, |chunk| {
                    file.write_all(chunk).map_err(|e| io_error(&path, e))
                })?;
                file.set_permissions(Permissions::from_mode(mode & FILE_MODE_MASK))
                    .map_err(|e| io_error(&path, e))?;
                if let Ok(secs) = header.mtime()
                    && let Some(mtime) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
                {
                    // Best effort, like the mtime itself.
                    let _ = file.set_modified(mtime);
                }
                Ok(())
            }
            Kind::Symlink => {
                if let Some(&node) = self.nodes.get(&rel) {
                    return Err(self.exists(&name, &rel, node));
                }
                let target = link.unwrap_or_default();
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(|e| self.create_error(&name, &path, e))?;
                self.nodes.insert(rel, Node::Symlink);
                self.skip(entry, size, &name)
            }
            Kind::Hardlink => {
                let target = hardlink_target.unwrap_or_default().join(&b'/');
                if self.nodes.get(&target) != Some(&Node::File) {
                    return Err(hostile(format!(
                        "hardlink target `{}` is not an earlier regular file of this slug's app/",
                        show(&target)
                    )));
                }
                if let Some(&node) = self.nodes.get(&rel) {
                    return Err(self.exists(&name, &rel, node));
                }
                // linkat(2) without AT_SYMLINK_FOLLOW; the target is a regular file we wrote.
                fs::hard_link(self.root.join(OsStr::from_bytes(&target)), &path)
                    .map_err(|e| self.create_error(&name, &path, e))?;
                self.nodes.insert(rel, Node::File);
                self.skip(entry, size, &name)
            }
            Kind::Global => unreachable!("handled above"),
        }
    }

    /// Splits a path into its components: `.` and empty ones dropped; refuses
    /// absolute paths, `..`, NUL bytes; checks length and depth.
    fn normalize<'p>(&self, raw: &'p [u8], name: &str, role: &str) -> Result<Vec<&'p [u8]>, UnpackError> {
        let hostile = |why: String| UnpackError::Hostile {
            entry: name.to_owned(),
            why,
        };
        if raw.len() > self.limits.path_bytes {
            return Err(UnpackError::LimitExceeded {
                what: format!("{role} length of entry `{name}`: {} bytes", raw.len()),
                limit: self.limits.path_bytes as u64,
            });
        }
        if raw.contains(&0) {
            return Err(hostile(format!("NUL byte in its {role}")));
        }
        if raw.starts_with(b"/") {
            return Err(hostile(format!("absolute {role} `{}`", show(raw))));
        }
        let mut comps = Vec::new();
        for comp in raw.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => return Err(hostile(format!("`..` component in its {role} `{}`", show(raw)))),
                _ => comps.push(comp),
            }
        }
        if comps.len() > self.limits.depth {
            return Err(UnpackError::LimitExceeded {
                what: format!("{role} depth of entry `{name}`: {} components", comps.len()),
                limit: self.limits.depth as u64,
            });
        }
        Ok(comps)
    }

    /// Makes sure every ancestor of `comps` is a real directory we created,
    /// creating missing ones; refuses a symlink or a file on the way.
    fn parents(&mut self, comps: &[&[u8]], name: &str) -> Result<(), UnpackError> {
        let Some((_, ancestors)) = comps.split_last() else {
            return Ok(());
        };
        if ancestors.is_empty() {
            return Ok(());
        }
        // A directory in `nodes` had all its ancestors checked when it was made.
        if self.nodes.get(&ancestors.join(&b'/')) == Some(&Node::Dir) {
            return Ok(());
        }
        let mut rel = Vec::new();
        for comp in ancestors {
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(comp);
            match self.nodes.get(&rel) {
                Some(Node::Dir) => {}
                Some(Node::Symlink) => return Err(through_symlink(name, &rel)),
                Some(Node::File) => {
                    return Err(UnpackError::Hostile {
                        entry: name.to_owned(),
                        why: format!("its parent `{}` is not a directory", show(&rel)),
                    });
                }
                None => {
                    let path = self.root.join(OsStr::from_bytes(&rel));
                    self.make_dir(&path, &rel, name)?;
                }
            }
        }
        Ok(())
    }

    /// Creates one directory (its parent is known to be a real directory).
    fn make_dir(&mut self, path: &Path, rel: &[u8], name: &str) -> Result<(), UnpackError> {
        match DirBuilder::new().mode(0o755).create(path) {
            Ok(()) => set_dir_mode(path, 0o755)?,
            // Only through an alias we did not see (a case-insensitive file system): check what is there.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => return Err(through_symlink(name, rel)),
                Ok(m) if m.is_dir() => {}
                _ => {
                    return Err(UnpackError::Hostile {
                        entry: name.to_owned(),
                        why: format!("`{}` already exists and is not a directory", show(rel)),
                    });
                }
            },
            Err(e) => return Err(io_error(path, e)),
        }
        self.nodes.insert(rel.to_vec(), Node::Dir);
        Ok(())
    }

    fn exists(&self, name: &str, rel: &[u8], node: Node) -> UnpackError {
        let what = match node {
            Node::Dir => "a directory",
            Node::File => "a file",
            Node::Symlink => "a symlink (never written through)",
        };
        UnpackError::Hostile {
            entry: name.to_owned(),
            why: format!(
                "`{}` already exists as {what}; duplicate entries are refused",
                show(rel)
            ),
        }
    }

    fn create_error(&self, name: &str, path: &Path, e: io::Error) -> UnpackError {
        match e.raw_os_error() {
            Some(libc::EEXIST) | Some(libc::ELOOP) => UnpackError::Hostile {
                entry: name.to_owned(),
                why: "its path already exists (duplicate entries are refused)".to_owned(),
            },
            _ => io_error(path, e),
        }
    }
}

fn through_symlink(name: &str, rel: &[u8]) -> UnpackError {
    UnpackError::Hostile {
        entry: name.to_owned(),
        why: format!(
            "it would be written through the symlink `{}` (symlinks are never followed)",
            show(rel)
        ),
    }
}

/// chmod through a descriptor opened without following symlinks.
fn set_dir_mode(path: &Path, mode: u32) -> Result<(), UnpackError> {
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    dir.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| io_error(path, e))
}

/// An entry name for messages: lossy UTF-8, control characters escaped, shortened.
fn show(raw: &[u8]) -> String {
    let mut out = String::new();
    for (i, c) in String::from_utf8_lossy(raw).chars().enumerate() {
        if i == SHOW_MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;
    use std::sync::OnceLock;

    use flate2::Compression;
    use flate2::write::GzEncoder;

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
            let name = if name.len() > 100 {
                let mut long = name.to_vec();
                long.push(0);
                self.raw(b'L', b"././@LongLink", b"", 0o644, long.len() as u64, &long);
                &name[..100]
            } else {
                name
            };
            let link = if link.len() > 100 {
                let mut long = link.to_vec();
                long.push(0);
                self.raw(b'K', b"././@LongLink", b"", 0o644, long.len() as u64, &long);
                &link[..100]
            } else {
                link
            };
            self.0.extend_from_slice(header(ty, name, link, mode, size).as_bytes());
            self.0.extend_from_slice(data);
            self.pad();
            self
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

    // ---- hostile archives ---------------------------------------------------

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

    fn no_end_block(_: &Fixture) -> Vec<u8> {
        gz(&Tar::new().dir("app/").file("app/f", b"data").unfinished())
    }

    type Build = fn(&Fixture) -> Vec<u8>;

    /// (name, archive, limits, expected digest, what the error must say)
    type Case = (&'static str, Build, Limits, Option<&'static str>, Vec<&'static str>);

    fn hostile_cases() -> Vec<Case> {
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
                |_| {
                    let mut t = Tar::new();
                    t.dir("app/").raw(b'L', b"././@LongLink", b"", 0o644, 1 << 30, b"");
                    gz(&t.unfinished())
                },
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
                |_| {
                    let mut t = Tar::new();
                    t.dir("app/").raw(b'x', b"PaxHeaders/x", b"", 0o644, 1 << 30, b"");
                    gz(&t.unfinished())
                },
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
                vec![
                    "sha256 mismatch: expected 00000000000000000000000000000000000000000000000000000000000000ff, got ",
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
    fn pax_records_are_parsed_by_their_lengths() {
        let data = b"30 mtime=1700000000.123456789\n22 path=app/a\nnewline\n13 size=1234\n16 linkpath=x/y\n\0\0\0";
        let pax = parse_pax(data).unwrap();
        assert_eq!(pax.path.as_deref(), Some(b"app/a\nnewline".as_slice()));
        assert_eq!(pax.link_path.as_deref(), Some(b"x/y".as_slice()));
        assert_eq!(pax.size, Some(1234));
        assert!(!pax.sparse);
        assert!(parse_pax(b"8 path=x\n").is_err(), "length off by one");
        assert!(parse_pax(b"99 path=x\n").is_err(), "length past the end");
        assert!(parse_pax(b"11 size=-1\n").is_err());
        assert!(parse_pax(b"22 GNU.sparse.major=1\n").unwrap().sparse);
        assert_eq!(parse_pax(b"8 path=\n").unwrap().path, None);
    }

    #[test]
    fn hostile_archives_are_refused() {
        let cases = hostile_cases();
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
        assert!(
            matches!(err, UnpackError::Digest { ref expected, actual: ref a } if *expected == want && *a == actual)
        );
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

    // ---- positive controls ------------------------------------------------------

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    /// A slug written with tar::Builder the way a builder would: symlinks, nested dirs, executables,
    /// setuid bits, a hardlink, long and pax names, entries outside app/.
    fn real_slug() -> Vec<u8> {
        let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
        type B = tar::Builder<GzEncoder<Vec<u8>>>;
        fn put(b: &mut B, path: &str, ty: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>) {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(ty);
            h.set_mode(mode);
            h.set_uid(4242);
            h.set_gid(4242);
            h.set_mtime(1_600_000_000);
            h.set_size(data.len() as u64);
            match link {
                Some(target) => b.append_link(&mut h, path, target).unwrap(),
                None => b.append_data(&mut h, path, data).unwrap(),
            }
        }
        let mut add = |path: &str, ty: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
            put(&mut b, path, ty, mode, data, link)
        };
        use tar::EntryType as T;
        add("./", T::Directory, 0o755, b"", None);
        add("./README", T::Regular, 0o644, b"outside app, skipped", None);
        add("./app/", T::Directory, 0o700, b"", None);
        add(
            "./app/Procfile",
            T::Regular,
            0o644,
            b"web: bin/web --port $PORT\nworker: bin/worker\n",
            None,
        );
        add(
            "./app/.profile",
            T::Regular,
            0o644,
            b"export PATH=/app/bin:$PATH\n",
            None,
        );
        add("./app/bin/", T::Directory, 0o2775, b"", None);
        add("./app/bin/web", T::Regular, 0o755, b"#!/bin/sh\necho web\n", None);
        add("./app/bin/suid", T::Regular, 0o4755, b"#!/bin/sh\n", None);
        add("./app/bin/sgid", T::Regular, 0o2711, b"#!/bin/sh\n", None);
        add("./app/bin/sticky", T::Regular, 0o1644, b"x", None);
        add("./app/bin/private", T::Regular, 0o600, b"secret", None);
        add("./app/bin/web-hard", T::Link, 0o755, b"", Some("./app/bin/web"));
        add("./app/lib/a/b/c/deep.txt", T::Regular, 0o644, b"deep", None);
        add("./app/link-rel", T::Symlink, 0o777, b"", Some("bin/web"));
        add("./app/link-abs", T::Symlink, 0o777, b"", Some("/app/bin/web"));
        add("./app/link-up", T::Symlink, 0o777, b"", Some("../../../etc/passwd"));
        add("./app/lib/dangling", T::Symlink, 0o777, b"", Some("/nonexistent/x"));
        let long = format!("./app/lib/{}.txt", "long-name-".repeat(20));
        add(&long, T::Regular, 0o644, b"long", None);
        b.append_pax_extensions([("path", b"app/pax named.txt".as_slice())])
            .unwrap();
        put(&mut b, "./app/pax-short", T::Regular, 0o644, b"pax", None);
        put(&mut b, "./app/empty-dir/", T::Directory, 0o750, b"", None);
        put(&mut b, "./app/big.bin", T::Regular, 0o644, &vec![0xab; 300_000], None);
        b.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn a_real_slug_unpacks() {
        let fx = fixture();
        let archive = real_slug();
        let digest = sha256_hex(&archive);
        let done = fx
            .unpack(&archive, &Limits::default(), Some(&digest.to_uppercase()))
            .unwrap();
        assert_eq!(done.sha256, digest);
        assert_eq!(done.compressed_bytes, archive.len() as u64);
        assert_eq!(done.entries, 21);
        assert!(done.unpacked_bytes >= 300_000, "{done:?}");
        let app = fx.staging.join("app");
        let s = &fx.staging;
        assert_eq!(mode(s), 0o755);
        assert_eq!(mode(&app), 0o755);
        assert!(!s.join("README").exists());
        assert_eq!(
            fs::read_to_string(app.join("Procfile")).unwrap(),
            "web: bin/web --port $PORT\nworker: bin/worker\n"
        );
        assert_eq!(
            fs::read_to_string(app.join(".profile")).unwrap(),
            "export PATH=/app/bin:$PATH\n"
        );
        assert_eq!(
            mode(&app.join("bin")),
            0o755,
            "setgid and group write stripped from a directory"
        );
        assert_eq!(mode(&app.join("bin/web")), 0o755);
        assert_eq!(mode(&app.join("bin/suid")), 0o755, "setuid stripped");
        assert_eq!(mode(&app.join("bin/sgid")), 0o711, "setgid stripped");
        assert_eq!(mode(&app.join("bin/sticky")), 0o644, "sticky stripped");
        assert_eq!(mode(&app.join("bin/private")), 0o600);
        assert_eq!(mode(&app.join("empty-dir")), 0o755);
        let web = fs::metadata(app.join("bin/web")).unwrap();
        assert_eq!(
            fs::metadata(app.join("bin/web-hard")).unwrap().ino(),
            web.ino(),
            "hardlink"
        );
        assert_eq!(web.mtime(), 1_600_000_000);
        let euid = unsafe { libc::geteuid() };
        assert_eq!(web.uid(), euid, "owner not taken from the archive");
        assert_eq!(fs::read(app.join("lib/a/b/c/deep.txt")).unwrap(), b"deep");
        assert_eq!(mode(&app.join("lib/a/b")), 0o755);
        assert_eq!(fs::read_link(app.join("link-rel")).unwrap(), Path::new("bin/web"));
        assert_eq!(fs::read_link(app.join("link-abs")).unwrap(), Path::new("/app/bin/web"));
        assert_eq!(
            fs::read_link(app.join("link-up")).unwrap(),
            Path::new("../../../etc/passwd")
        );
        assert_eq!(
            fs::read_link(app.join("lib/dangling")).unwrap(),
            Path::new("/nonexistent/x")
        );
        assert_eq!(
            fs::read(app.join(format!("lib/{}.txt", "long-name-".repeat(20)))).unwrap(),
            b"long"
        );
        assert_eq!(fs::read(app.join("pax named.txt")).unwrap(), b"pax");
        assert!(!app.join("pax-short").exists());
        assert_eq!(fs::read(app.join("big.bin")).unwrap(), vec![0xab; 300_000]);
        assert_eq!(snapshot(&fx.root, &fx.staging), fx.before, "outside staging changed");
    }

    #[test]
    fn a_slug_read_in_tiny_chunks_and_from_concatenated_members_unpacks() {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(7);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let fx = fixture();
        let tar = Tar::new()
            .dir("app/")
            .file("app/a", b"a")
            .file("app/b", &[9; 5000])
            .finish();
        let mut archive = gz(&tar[..1024]);
        archive.extend_from_slice(&gz(&tar[1024..]));
        let done = unpack(
            Trickle(&archive),
            &fx.staging,
            Some(&sha256_hex(&archive)),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(done.compressed_bytes, archive.len() as u64);
        assert_eq!(fs::read(fx.staging.join("app/b")).unwrap(), vec![9; 5000]);
    }

    #[test]
    fn a_slug_made_by_system_tar_unpacks() {
        let fx = fixture();
        let src = fx.root.join("w/src");
        fs::create_dir_all(src.join("app/bin")).unwrap();
        fs::create_dir_all(src.join("app/vendor/x/y")).unwrap();
        fs::write(src.join("app/Procfile"), "web: bin/web\n").unwrap();
        fs::write(src.join("app/.profile"), "export A=1\n").unwrap();
        fs::write(src.join("app/bin/web"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("app/bin/web"), Permissions::from_mode(0o755)).unwrap();
        fs::write(src.join("app/vendor/x/y/lib.rb"), "puts 1\n".repeat(1000)).unwrap();
        std::os::unix::fs::symlink("bin/web", src.join("app/web")).unwrap();
        std::os::unix::fs::symlink("/app/vendor", src.join("app/v")).unwrap();
        let tgz = fx.root.join("w/slug.tgz");
        let status = match std::process::Command::new("tar")
            .arg("-C")
            .arg(&src)
            .arg("-czf")
            .arg(&tgz)
            .arg(".")
            .status()
        {
            Ok(status) => status,
            Err(e) => {
                eprintln!("no system tar ({e}); skipped");
                return;
            }
        };
        assert!(status.success());
        let archive = fs::read(&tgz).unwrap();
        let done = fx
            .unpack(&archive, &Limits::default(), Some(&sha256_hex(&archive)))
            .unwrap();
        assert!(done.entries >= 10, "{done:?}");
        // Compare type, mode, size and content; mtimes of files to the second (directories' and symlinks' differ).
        let strip = |m: BTreeMap<PathBuf, Seen>| -> BTreeMap<PathBuf, Seen> {
            m.into_iter()
                .map(|(k, mut v)| {
                    v.mtime = v.mtime.filter(|_| v.kind == "file").map(|(secs, _)| (secs, 0));
                    (k, v)
                })
                .collect()
        };
        let want = strip(snapshot(&src.join("app"), Path::new("/nonexistent")));
        let got = strip(snapshot(&fx.staging.join("app"), Path::new("/nonexistent")));
        assert_eq!(got, want);
    }
}
