//! The streaming pass as a pipeline of scoped threads joined by bounded
//! channels: the calling thread reads the source (256 KiB reads, counted
//! against the compressed limit) and hands each chunk to `slug-sha256`, which
//! hashes it, and to `slug-gunzip`, which inflates into 1 MiB buffers for
//! `slug-untar`, the only thread that parses the tar stream, checks entries
//! and writes under staging ([`Walker`]).
//!
//! Errors keep their order: a source failure or the compressed limit reaches
//! the walker only where the decoder gets to it, so corruption or a hostile
//! entry before it is reported as before; read-ahead is a few buffers, so a
//! bomb is stopped by the walker's limits as soon as in a single thread.
//! [`run`] then joins the threads and makes one result of what they found:
//! the digest, the walk's outcome, and whether `app/` was made.

use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

use flate2::bufread::MultiGzDecoder;
use sha2::{Digest, Sha256};

use super::walk::Walker;
use super::write::Tree;
use super::{Limits, UnpackError, Unpacked, hex};

/// Bytes asked of the source per read.
const READ_SIZE: usize = 256 * 1024;
/// Decompressed bytes handed from the inflating thread to the walker at once.
const CHUNK_SIZE: usize = 1024 * 1024;
/// Chunks queued between two threads of the pipeline.
const IN_FLIGHT: usize = 4;
/// Compressed chunks queued for the hashing thread.
const HASH_QUEUE: usize = 16;

/// State shared between the threads (see [`run`]).
#[derive(Default)]
pub(super) struct Shared {
    /// Set when the inflater is handed the compressed limit error.
    pub(super) compressed_over: AtomicBool,
    /// Set when the inflater is handed an error reading the source.
    pub(super) source_failed: AtomicBool,
    /// Set when the tar stream hits EOF (a tar that ends without its
    /// end-of-archive block is truncated).
    pub(super) tar_eof: AtomicBool,
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
pub(super) fn run<R: Read>(
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
            let mut walker = Walker::new(Tree::new(root), limits, shared);
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
                if !walker.tree.app_is_dir() {
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
