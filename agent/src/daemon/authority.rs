//! Stock gRPC clients on the Unix socket: their `:authority`, made valid.
//!
//! grpcio (C-core) sends the socket's path, %-encoded (`%2Frun%2F…sock`), as
//! the `:authority` of every request over a Unix socket, and other clients
//! send the raw path or an empty string. None of these is a URI authority,
//! and h2 (under hyper and tonic) answers such a request with
//! `RST_STREAM(PROTOCOL_ERROR)` while it parses the headers, before tonic
//! sees anything; it has no option to accept them. So the agent's Unix
//! connections pass through [`FixAuthority`]: it reads the client's HTTP/2
//! frames, decodes each header block (HPACK, whose dynamic table it keeps as
//! the client fills it), puts `localhost` where `:authority` is not a valid
//! authority, and hands the server the block re-encoded with literals only
//! (so the server's own table stays empty and always agrees). Every other
//! frame, and everything the server writes, passes unchanged.
//!
//! [`Rewriter`] is the byte-level part, without I/O (tested on its own);
//! [`FixAuthority`] wraps an accepted connection with it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What an HTTP/2 client with prior knowledge sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Every HTTP/2 peer accepts frames of this size (the smallest
/// `SETTINGS_MAX_FRAME_SIZE` there is): re-encoded blocks are cut at it.
const MAX_FRAME: usize = 16_384;
/// The most a header block may take on the wire, all its frames together.
const MAX_BLOCK: usize = 1 << 20;
/// The largest HPACK table the client may ask for (the server announces
/// none: 4096 applies; more is let through, the table being ours).
const MAX_TABLE: usize = 64 * 1024;
/// What replaces an `:authority` that is not one.
const LOCALHOST: &[u8] = b"localhost";

/// Where the rewriter is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the connection preface.
    Preface,
    /// At a frame header.
    Frames,
    /// Inside a frame passed as it is: this many bytes left.
    Payload(usize),
    /// Not HTTP/2 with prior knowledge: everything passes untouched.
    Raw,
}

/// A header block being gathered (a HEADERS frame and its CONTINUATIONs).
struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    wire: usize,
}

/// The client → server half of a connection: bytes in, the same bytes out
/// but for header blocks, re-encoded with a valid `:authority`.
pub(crate) struct Rewriter {
    phase: Phase,
    inbox: BytesMut,
    out: BytesMut,
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
}

impl Default for Rewriter {
    fn default() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(MAX_TABLE);
        Rewriter {
            phase: Phase::Preface,
            inbox: BytesMut::new(),
            out: BytesMut::new(),
            block: None,
            decoder,
        }
    }
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("http/2 from the client: {}", what.into()),
    )
}

impl Rewriter {
    /// Takes bytes the client sent; what can be handed on is then in [`Rewriter::output`].
    /// An error means the stream cannot be followed: the connection ends.
    pub(crate) fn feed(&mut self, input: &[u8]) -> io::Result<()> {
        self.inbox.extend_from_slice(input);
        loop {
            match self.phase {
                Phase::Raw => {
                    let all = self.inbox.split();
                    self.out.unsplit(all);
                    return Ok(());
                }
                Phase::Preface => {
                    let n = self.inbox.len().min(PREFACE.len());
                    if self.inbox[..n] != PREFACE[..n] {
                        self.phase = Phase::Raw;
                    } else if n < PREFACE.len() {
                        return Ok(());
                    } else {
                        self.pass(PREFACE.len());
                        self.phase = Phase::Frames;
                    }
                }
                Phase::Payload(left) => {
                    let n = left.min(self.inbox.len());
                    self.pass(n);
                    if n < left {
                        self.phase = Phase::Payload(left - n);
                        return Ok(());
                    }
                    self.phase = Phase::Frames;
                }
                Phase::Frames => {
                    if self.inbox.len() < FRAME_HEADER {
                        return Ok(());
                    }
                    let h = &self.inbox[..FRAME_HEADER];
                    let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    let (kind, flags) = (h[3], h[4]);
                    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                    if kind != HEADERS && kind != CONTINUATION {
                        if self.block.is_some() {
                            return Err(bad("a header block interrupted by another frame"));
                        }
                        self.pass(FRAME_HEADER);
                        self.phase = Phase::Payload(len);
                        continue;
                    }
                    if len > MAX_BLOCK {
                        return Err(bad(format!("a header frame of {len} bytes")));
                    }
                    if self.inbox.len() < FRAME_HEADER + len {
                        return Ok(());
                    }
                    self.inbox.advance(FRAME_HEADER);
                    let payload = self.inbox.split_to(len);
                    self.header_frame(kind, flags, stream, &payload)?;
                }
            }
        }
    }

    /// What is ready for the server.
    pub(crate) fn output(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    fn pass(&mut self, n: usize) {
        let bytes = self.inbox.split_to(n);
        self.out.unsplit(bytes);
    }

    fn header_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> io::Result<()> {
        if kind == HEADERS {
            if self.block.is_some() {
                return Err(bad("a HEADERS frame inside a header block"));
            }
            let mut rest = payload;
            let mut pad = 0;
            if flags & PADDED != 0 {
                let (&n, tail) = rest.split_first().ok_or_else(|| bad("padding without its length"))?;
                pad = usize::from(n);
                rest = tail;
            }
            let mut priority = None;
            if flags & PRIORITY != 0 {
                let (p, tail) = rest.split_first_chunk::<5>().ok_or_else(|| bad("a short priority"))?;
                priority = Some(*p);
                rest = tail;
            }
            let end = rest
                .len()
                .checked_sub(pad)
                .ok_or_else(|| bad("more padding than frame"))?;
            self.block = Some(Block {
                stream,
                end_stream: flags & END_STREAM != 0,
                priority,
                fragment: rest[..end].to_vec(),
                wire: payload.len(),
            });
        } else {
            let block = self
                .block
                .as_mut()
                .filter(|b| b.stream == stream)
                .ok_or_else(|| bad("a CONTINUATION outside its header block"))?;
            block.wire += payload.len();
            if block.wire > MAX_BLOCK {
                return Err(bad("a header block over 1 MiB"));
            }
            block.fragment.extend_from_slice(payload);
        }
        if flags & END_HEADERS != 0
            && let Some(block) = self.block.take()
        {
            self.finish(block)?;
        }
        Ok(())
    }

    /// Decodes a whole header block and writes it out re-encoded.
    fn finish(&mut self, block: Block) -> io::Result<()> {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                fields.push((name.into_owned(), value.into_owned()));
            })
            .map_err(|e| bad(format!("a header block that does not decode ({e:?})")))?;
        let mut encoded = Vec::with_capacity(block.fragment.len() + 32);
        for (name, value) in &fields {
            let value = if name.as_slice() == b":authority" && !valid_authority(value) {
                LOCALHOST
            } else {
                value.as_slice()
            };
            // A literal without indexing, its name a literal too.
            encoded.push(0);
            put_string(&mut encoded, name);
            put_string(&mut encoded, value);
        }
        let mut chunks = encoded.chunks(MAX_FRAME - 5).peekable();
        let first = chunks.next().unwrap_or_default();
        let mut flags = if block.end_stream { END_STREAM } else { 0 };
        if chunks.peek().is_none() {
            flags |= END_HEADERS;
        }
        let mut payload = Vec::with_capacity(first.len() + 5);
        if let Some(p) = block.priority {
            flags |= PRIORITY;
            payload.extend_from_slice(&p);
        }
        payload.extend_from_slice(first);
        self.frame(HEADERS, flags, block.stream, &payload);
        while let Some(chunk) = chunks.next() {
            let flags = if chunks.peek().is_none() { END_HEADERS } else { 0 };
            self.frame(CONTINUATION, flags, block.stream, chunk);
        }
        Ok(())
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len() as u32;
        self.out.extend_from_slice(&len.to_be_bytes()[1..]);
        self.out.extend_from_slice(&[kind, flags]);
        self.out.extend_from_slice(&stream.to_be_bytes());
        self.out.extend_from_slice(payload);
    }
}

/// Whether h2 takes `value` as an `:authority`.
pub(crate) fn valid_authority(value: &[u8]) -> bool {
    tonic::codegen::http::uri::Authority::try_from(value).is_ok()
}

/// An HPACK string literal, not Huffman-coded: a 7-bit-prefix length, the bytes.
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_int(out, s.len(), 7, 0);
    out.extend_from_slice(s);
}

/// An HPACK integer with an `n`-bit prefix in a first byte that carries `flags`.
fn put_int(out: &mut Vec<u8>, value: usize, n: u32, flags: u8) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// An accepted connection whose requests reach the server with a valid
/// `:authority` (see the module docs).
pub struct FixAuthority<S> {
    io: S,
    rewriter: Rewriter,
    eof: bool,
}

impl<S> FixAuthority<S> {
    pub fn new(io: S) -> Self {
        FixAuthority {
            io,
            rewriter: Rewriter::default(),
            eof: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FixAuthority<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            let out = this.rewriter.output();
            if !out.is_empty() {
                let n = out.len().min(buf.remaining());
                buf.put_slice(&out.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
            } else {
                this.rewriter.feed(read.filled())?;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FixAuthority<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for FixAuthority<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
#[path = "authority_tests.rs"]
mod tests;
