//! HTTP(S) slug downloads, streamed straight into the unpacker.
//!
//! One attempt is a single pass: the response body is read on the async side
//! and handed, chunk by chunk, through a bounded channel to the blocking
//! unpacker ([`crate::unpack::unpack`]), which hashes, inflates and untars as
//! the bytes arrive. A slow disk therefore slows the download (the channel is
//! full) instead of buffering the slug in memory.
//!
//! Time limits: connecting (`connect_timeout`), no byte received for
//! `read_timeout` (waiting for the response headers counts), and one deadline
//! for the whole fetch, every attempt and backoff included (`total_timeout`).
//! A `Content-Length` over the compressed limit is refused before the body is
//! read; the unpacker also counts the bytes that stream in.
//!
//! Transient failures are retried with capped exponential backoff plus jitter
//! (a random delay in [half, full]): connection refused or reset, timeouts, a
//! body cut short, HTTP 408, 429 and 5xx (`Retry-After` in seconds is
//! honoured up to the backoff cap). Anything else (a 404, a TLS certificate
//! that does not verify, a malformed response) fails at once. The unpacker
//! removes a failed attempt's staging directory; the retry loop checks it is
//! gone before the next attempt.
//!
//! Client choice: hyper-util's client over hyper-rustls (ring provider, native
//! roots, HTTP/1.1 only) rather than reqwest. hyper, hyper-util and
//! http-body-util are already in the tree under tonic, so the download adds
//! only rustls and its small dependencies; reqwest (even without default
//! features) would add `url` with the `idna`/ICU stack, `serde_urlencoded`
//! and its own middleware, none of which a single streamed GET needs.
//! Redirects (at most [`MAX_REDIRECTS`], never from https to http) and the
//! timeouts are a few lines here.
//!
//! URLs appear in logs and errors without their query string: presigned URLs
//! carry credentials there.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{StatusCode, Uri, header};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::unpack::{Limits, UnpackError, Unpacked};

/// Redirects followed for one request.
pub const MAX_REDIRECTS: usize = 10;
/// Body chunks buffered between the download and the unpacker.
const CHANNEL_CHUNKS: usize = 64;

/// Timeouts and retries of slug downloads (the `slug_*` config keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOptions {
    pub connect_timeout: Duration,
    /// No byte received for this long fails the attempt.
    pub read_timeout: Duration,
    /// The whole fetch: every attempt and every backoff.
    pub total_timeout: Duration,
    /// Attempts after the first one.
    pub retries: u32,
    pub backoff: Duration,
    pub backoff_max: Duration,
}

impl FetchOptions {
    pub fn from_config(cfg: &crate::config::Config) -> FetchOptions {
        FetchOptions {
            connect_timeout: cfg.slug_connect_timeout,
            read_timeout: cfg.slug_read_timeout,
            total_timeout: cfg.slug_fetch_timeout,
            retries: cfg.slug_fetch_retries,
            backoff: cfg.slug_retry_backoff,
            backoff_max: cfg.slug_retry_backoff_max,
        }
    }
}

/// Why one download attempt failed. `url` is the redacted URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: HTTP {status}")]
    Status {
        url: String,
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    #[error("{url}: {what}")]
    Transport { url: String, what: String, transient: bool },
    #[error("{url}: Content-Length {length} is over the compressed slug limit of {limit} bytes")]
    TooLarge { url: String, length: u64, limit: u64 },
    #[error("{url}: {what}")]
    Redirect { url: String, what: String },
    #[error("{url}: not fetched within {} (slug_fetch_timeout)", humantime::format_duration(*.after))]
    Deadline { url: String, after: Duration },
}

impl FetchError {
    /// Worth another attempt.
    pub fn transient(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => {
                *status == StatusCode::REQUEST_TIMEOUT
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || status.is_server_error()
            }
            FetchError::Transport { transient, .. } => *transient,
            FetchError::TooLarge { .. } | FetchError::Redirect { .. } | FetchError::Deadline { .. } => false,
        }
    }

    /// Not the slug's fault: the source may work later.
    pub fn unavailable(&self) -> bool {
        self.transient() || matches!(self, FetchError::Deadline { .. })
    }
}

/// Why a fetch (all its attempts) failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{error}{}", gave_up(*.attempts))]
    Fetch { error: FetchError, attempts: u32 },
    #[error("{0}")]
    Unpack(UnpackError),
    #[error("{0}")]
    Internal(String),
}

fn gave_up(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (gave up after {attempts} attempts)")
    } else {
        String::new()
    }
}

/// `scheme://host[:port]/path`, without user info or query.
pub fn redact(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri.authority().map_or("", |a| a.as_str());
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let query = if uri.query().is_some() { "?…" } else { "" };
    format!("{scheme}://{host}{}{query}", uri.path())
}

/// A slug source fit for logs and messages: a URL without its query string
/// or credentials; anything else as given.
pub fn shown(source: &str) -> String {
    match source.parse::<Uri>() {
        Ok(uri) if uri.scheme().is_some() && uri.authority().is_some() => redact(&uri),
        _ if source.contains("://") => source.split(['?', '#']).next().unwrap_or_default().to_string(),
        _ => source.to_string(),
    }
}

/// Parses an `http(s)://` slug URL; the message says what is wrong.
pub fn parse_url(source: &str) -> Result<Uri, String> {
    let shown = shown(source);
    let uri: Uri = source.parse().map_err(|e| format!("{shown}: not a valid URL ({e})"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{shown}: only http:// and https:// URLs are fetched")),
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("{shown}: the URL has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "{}: credentials in slug URLs are not supported (use a presigned URL)",
            redact(&uri)
        ));
    }
    Ok(uri)
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Downloads slugs; one per agent (its connection pool is shared).
pub struct Fetcher {
    opts: FetchOptions,
    client: OnceLock<HttpClient>,
}

impl Fetcher {
    pub fn new(opts: FetchOptions) -> Fetcher {
        Fetcher {
            opts,
            client: OnceLock::new(),
        }
    }

    /// Built on first use: loading the system's CA roots is not free, and an
    /// agent that only runs local slugs never needs them.
    fn client(&self) -> &HttpClient {
        self.client.get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = || {
                rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .expect("ring supports rustls' default protocol versions")
            };
            let tls = match builder().with_native_roots() {
                Ok(b) => b.with_no_client_auth(),
                Err(e) => {
                    tracing::warn!(error = %e, "no CA certificates found: https slug downloads will fail to verify");
                    builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                }
            };
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_connect_timeout(Some(self.opts.connect_timeout));
            http.set_nodelay(true);
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http);
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(https)
        })
    }

    /// Downloads `uri` into a new staging directory (named by `staging`, one per
    /// attempt) with retries; returns the directory and what the unpacker read.
    /// On error no staging directory is left.
    pub async fn fetch_unpack(
        &self,
        uri: &Uri,
        staging: impl Fn() -> PathBuf,
        expected_sha256: Option<&str>,
        limits: &Limits,
    ) -> Result<(PathBuf, Unpacked), Failure> {
        let deadline = Instant::now() + self.opts.total_timeout;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let dir = staging();
            let result = self.attempt(uri, &dir, expected_sha256, limits, deadline).await;
            let error = match result {
                Ok(unpacked) => return Ok((dir, unpacked)),
                Err(e) => e,
            };
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != io::ErrorKind::NotFound
            {
                return Err(Failure::Internal(format!("{}: {e}", dir.display())));
            }
            let error = match error {
                Failure::Fetch { error, .. } => error,
                other => return Err(other),
            };
            let pause = self.backoff(attempt, &error);
            if !error.transient() || attempt > self.opts.retries {
                return Err(Failure::Fetch {
                    error,
                    attempts: attempt,
                });
            }
            if Instant::now() + pause >= deadline {
                // No time left for another attempt: the last error says why.
                return Err(Failure::Fetch {
                    error,
                    attempts: attempt,
                });
            }
            tracing::warn!(url = %redact(uri), attempt, error = %error, retry_in = ?pause, "slug download failed; retrying");
            tokio::time::sleep(pause).await;
        }
    }

    /// Before attempt `attempt + 1`: `backoff * 2^(attempt-1)`, capped, then a
    /// random point in [half, full]; at least a server's `Retry-After` (capped).
    fn backoff(&self, attempt: u32, error: &FetchError) -> Duration {
        let jittered = crate::time::backoff(
            self.opts.backoff,
            attempt.saturating_sub(1),
            self.opts.backoff_max,
            rand::rng().random(),
        );
        match error {
            FetchError::Status {
                retry_after: Some(ra), ..
            } => jittered.max((*ra).min(self.opts.backoff_max)),
            _ => jittered,
        }
    }

    /// One attempt: GET (following redirects), then the body through the
    /// unpacker into `staging`.
    async fn attempt(
        &self,
        uri: &Uri,
        staging: &Path,
        expected_sha256: Option<&str>,
        limits: &Limits,
        deadline: Instant,
    ) -> Result<Unpacked, Failure> {
        let fetch = |error| Failure::Fetch { error, attempts: 1 };
        let (shown, body) = self.get(uri, limits.compressed_bytes, deadline).await.map_err(fetch)?;
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let failure = Arc::new(Mutex::new(None));
        let reader = ChannelReader {
            rx,
            chunk: Bytes::new(),
            failure: failure.clone(),
        };
        let (dir, want, lim) = (staging.to_owned(), expected_sha256.map(str::to_owned), *limits);
        let unpacking = tokio::task::spawn_blocking(move || crate::unpack::unpack(reader, &dir, want.as_deref(), &lim));
        let mut feed = Feed {
            tx: Some(tx),
            failure: failure.clone(),
        };
        let pumped = pump(
            body,
            &feed,
            self.opts.read_timeout,
            deadline,
            &shown,
            self.opts.total_timeout,
        )
        .await;
        feed.finish(pumped.err());
        let unpacked = unpacking
            .await
            .map_err(|e| Failure::Internal(format!("the unpacking task failed: {e}")))?;
        let failed = failure.lock().expect("failure lock").take();
        match (unpacked, failed) {
            (Ok(u), None) => Ok(u),
            (_, Some(error)) => Err(fetch(error)),
            (Err(e), None) => Err(Failure::Unpack(e)),
        }
    }

    /// Sends the GET, follows redirects, checks status and `Content-Length`.
    /// Returns the redacted final URL and the response body.
    async fn get(&self, uri: &Uri, limit: u64, deadline: Instant) -> Result<(String, Incoming), FetchError> {
        let mut uri = uri.clone();
        for _ in 0..=MAX_REDIRECTS {
            let shown = redact(&uri);
            let request = hyper::Request::get(uri.clone())
                .header(header::USER_AGENT, concat!("dynoagent/", env!("CARGO_PKG_VERSION")))
                .body(Empty::new())
                .map_err(|e| FetchError::Transport {
                    url: shown.clone(),
                    what: format!("cannot build the request: {e}"),
                    transient: false,
                })?;
            let wait = (self.opts.connect_timeout + self.opts.read_timeout)
                .min(deadline.saturating_duration_since(Instant::now()));
            let response = match tokio::time::timeout(wait, self.client().request(request)).await {
                Err(_) if Instant::now() >= deadline => {
                    return Err(FetchError::Deadline {
                        url: shown,
                        after: self.opts.total_timeout,
                    });
                }
                Err(_) => {
                    return Err(FetchError::Transport {
                        url: shown,
                        what: format!("no response within {}", humantime::format_duration(wait)),
                        transient: true,
                    });
                }
                Ok(Err(e)) => return Err(classify(&shown, &e, e.is_connect())),
                Ok(Ok(r)) => r,
            };
            let status = response.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let next = redirect_target(&uri, &response).map_err(|what| FetchError::Redirect {
                    url: shown.clone(),
                    what,
                })?;
                tracing::debug!(from = %shown, to = %redact(&next), %status, "slug download redirected");
                uri = next;
                continue;
            }
            if !status.is_success() {
                let retry_after = response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                return Err(FetchError::Status {
                    url: shown,
                    status,
                    retry_after,
                });
            }
            let length = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
            if let Some(length) = length
                && length > limit
            {
                // Dropping the response closes the connection unread.
                return Err(FetchError::TooLarge {
                    url: shown,
                    length,
                    limit,
                });
            }
            return Ok((shown, response.into_body()));
        }
        Err(FetchError::Redirect {
            url: redact(&uri),
            what: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }
}

/// Where a 3xx response points, resolved against `base`.
fn redirect_target(base: &Uri, response: &hyper::Response<Incoming>) -> Result<Uri, String> {
    let location = response
        .headers()
        .get(header::LOCATION)
        .ok_or_else(|| format!("HTTP {} without a Location header", response.status()))?
        .to_str()
        .map_err(|_| "a Location header that is not ASCII".to_string())?;
    let target = if location.contains("://") {
        location.to_string()
    } else {
        let scheme = base.scheme_str().unwrap_or("http");
        let authority = base.authority().map_or("", |a| a.as_str());
        if let Some(rest) = location.strip_prefix("//") {
            format!("{scheme}://{rest}")
        } else if location.starts_with('/') {
            format!("{scheme}://{authority}{location}")
        } else {
            let dir = base.path().rsplit_once('/').map_or("", |(d, _)| d);
            format!("{scheme}://{authority}{dir}/{location}")
        }
    };
    let next = parse_url(&target).map_err(|e| format!("redirected to {e}"))?;
    if base.scheme_str() == Some("https") && next.scheme_str() == Some("http") {
        return Err(format!("refusing a redirect from https to {}", redact(&next)));
    }
    Ok(next)
}

/// A transport error as a [`FetchError`]: TLS and protocol errors are final,
/// connection trouble is transient.
fn classify(url: &str, error: &(dyn std::error::Error + 'static), connecting: bool) -> FetchError {
    let mut parts: Vec<String> = Vec::new();
    let mut tls = false;
    let mut parse = false;
    let mut io_kind = None;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        tls |= e.is::<rustls::Error>();
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            parse |= h.is_parse() || h.is_parse_status() || h.is_user();
        }
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        // An io::Error's source() skips the error it wraps: descend into it.
        next = match e.downcast_ref::<io::Error>() {
            Some(io) => {
                io_kind.get_or_insert(io.kind());
                io.get_ref().map(|i| i as &(dyn std::error::Error + 'static))
            }
            None => e.source(),
        };
    }
    let what = parts.join(": ");
    let transient = !tls
        && !parse
        && (connecting
            || io_kind.is_none_or(|k| {
                !matches!(
                    k,
                    io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::PermissionDenied
                )
            }));
    FetchError::Transport {
        url: url.to_string(),
        what: if tls { format!("TLS: {what}") } else { what },
        transient,
    }
}

/// The sending side of an attempt's channel. Whatever ends the download
/// early is put in `failure` before the channel closes, so the reader sees an
/// error rather than a clean end of stream; that holds when the download is
/// dropped half-way too.
struct Feed {
    tx: Option<mpsc::Sender<Bytes>>,
    failure: Arc<Mutex<Option<FetchError>>>,
}

impl Feed {
    fn finish(&mut self, error: Option<FetchError>) {
        if let Some(e) = error {
            self.failure.lock().expect("failure lock").get_or_insert(e);
        }
        self.tx = None;
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.finish(Some(FetchError::Transport {
                url: String::new(),
                what: "download abandoned".into(),
                transient: false,
            }));
        }
    }
}

/// Moves the body into the channel; `Ok` when the body ended or the
/// unpacker stopped reading (its own error then says why).
async fn pump(
    mut body: Incoming,
    feed: &Feed,
    idle: Duration,
    deadline: Instant,
    url: &str,
    total: Duration,
) -> Result<(), FetchError> {
    let tx = feed.tx.clone().expect("an open feed");
    let late = || FetchError::Deadline {
        url: url.to_string(),
        after: total,
    };
    loop {
        let wait = idle.min(deadline.saturating_duration_since(Instant::now()));
        let frame = match tokio::time::timeout(wait, body.frame()).await {
            Err(_) if Instant::now() >= deadline => return Err(late()),
            Err(_) => {
                return Err(FetchError::Transport {
                    url: url.to_string(),
                    what: format!(
                        "no data received for {} (slug_read_timeout)",
                        humantime::format_duration(idle)
                    ),
                    transient: true,
                });
            }
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(classify(url, &e, false)),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if data.is_empty() {
            continue;
        }
        match tokio::time::timeout_at(deadline, tx.send(data)).await {
            Err(_) => return Err(late()),
            Ok(Err(_)) => return Ok(()),
            Ok(Ok(())) => {}
        }
    }
}

/// The receiving side, as `std::io::Read` for the blocking unpacker.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    chunk: Bytes,
    failure: Arc<Mutex<Option<FetchError>>>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk,
                None => {
                    return match self.failure.lock().expect("failure lock").as_ref() {
                        Some(e) => Err(io::Error::other(e.to_string())),
                        None => Ok(0),
                    };
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}
