//! Fetching: one shared pooled client and one attempt at one URL.
//!
//! [`crate::http::clients::build_client`] makes the single `reqwest` client every request goes
//! through: HTTP/1.1 and HTTP/2 (chosen by ALPN over TLS), rustls, redirects
//! up to a cap, connect and read timeouts. The whole-attempt timeout is
//! applied here, around [`attempt`], so that volley knows which limit fired.
//!
//! volley decodes bodies itself (gzip, deflate, br, zstd, with
//! async-compression) rather than letting the client do it, because it must
//! see both sides: the bytes on the wire and the bytes they decode to. That
//! is what the decompression-ratio cap (against "zip bombs") and the
//! slow-body guard measure. Bodies without `Content-Encoding` skip the
//! decoder entirely.
//!
//! [`attempt`] sends the request, streams the body into a [`BodySink`], and
//! describes what happened as an [`Attempt`]. Transport errors are sorted
//! into the stable [`Class`] vocabulary by walking the error's source chain.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt as _;
use reqwest::header::{
    AUTHORIZATION, CONNECTION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, RETRY_AFTER, SET_COOKIE,
};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use url::Url;

use crate::http::body::{BodySink, header_text};
use crate::http::clients::{ClientError, Clients, RedirectError};
use crate::http::dns::DnsError;
use crate::http::refresh::{CacheInfo, Plan};
use crate::options::FetchSpec;
use crate::outcome::Class;
use crate::politeness::retry::{
    is_retryable_class, is_retryable_status, parse_retry_after, rate_limit_reset,
};
use crate::warc::capture::{
    self, Capture, Capturing, Exchange, Payload, ResponseCapture, SharedPayload, Truncated,
};

/// Decoded bytes before the decompression ratio is checked: small bodies
/// compress well legitimately.
pub const RATIO_FLOOR_BYTES: u64 = 1 << 20;

/// Most bytes read for one decoded chunk.
const READ_CHUNK: usize = 64 * 1024;

/// The `Authorization` value of `--user` (Basic, RFC 7617) or
/// `--bearer-token-file` (RFC 6750), marked sensitive so that it is never
/// shown; `None` for neither. [`attempt`] sends it with each first request
/// ([`Ask::authorization`]); reqwest drops it on a redirect to another
/// origin.
///
/// # Errors
/// [`ClientError::TokenRead`], [`ClientError::TokenBad`].
pub fn authorization(spec: &FetchSpec) -> Result<Option<HeaderValue>, ClientError> {
    use base64::Engine as _;
    let text = if let Some(user) = &spec.user {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user)
        )
    } else if let Some(path) = &spec.bearer_token_file {
        let shown = || path.display().to_string();
        let token = std::fs::read_to_string(path).map_err(|source| ClientError::TokenRead {
            path: shown(),
            source,
        })?;
        let token = token.trim();
        if token.is_empty() || token.contains(['\r', '\n']) {
            return Err(ClientError::TokenBad { path: shown() });
        }
        format!("Bearer {token}")
    } else {
        return Ok(None);
    };
    let mut value = HeaderValue::from_str(&text).map_err(|_| ClientError::TokenBad {
        path: spec
            .bearer_token_file
            .as_ref()
            .map_or_else(|| "--user".into(), |p| p.display().to_string()),
    })?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// What one attempt produced. Fields are `None` when the attempt failed
/// before reaching them.
#[derive(Debug)]
pub struct Attempt {
    /// `ok`, or what went wrong.
    pub class: Class,
    /// The response status, if headers arrived.
    pub status: Option<u16>,
    /// The HTTP version of the response (`HTTP/1.1`, `HTTP/2.0`).
    pub http_version: Option<String>,
    /// The error chain of a transport failure.
    pub message: Option<String>,
    /// The server's `Retry-After`, on a retryable status.
    pub retry_after: Option<Duration>,
    /// Time until the host's rate limit resets, when the response says
    /// nothing remains (`RateLimit-*`/`X-RateLimit-*`).
    pub rate_limit_reset: Option<Duration>,
    /// Decoded body bytes read.
    pub bytes: Option<u64>,
    /// Body bytes received on the wire (before decoding).
    pub wire_bytes: Option<u64>,
    /// From sending the request to the end of the body, or the failure (ms).
    pub elapsed_ms: u64,
    /// From sending the request to the headers (ms).
    pub ttfb_ms: Option<u64>,
    /// The URL that answered, after redirects.
    pub final_url: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// Headers as a JSON object.
    pub headers: Option<String>,
    /// Hex SHA-256 of the whole body.
    pub body_sha256: Option<String>,
    /// Where the body was saved.
    pub body_path: Option<String>,
    /// The whole decoded body of a 2xx response, kept when the page rules
    /// need it ([`crate::pipeline::process`]).
    pub body: Option<Bytes>,
    /// The `Link` header's `rel="next"` target, as written (RFC 8288).
    pub link_next: Option<String>,
    /// The validators and freshness of a 2xx or 304 response
    /// ([`crate::http::refresh`]).
    pub cache: Option<CacheInfo>,
    /// Answered to a `HEAD` (a link check, [`Ask::head_first`]): no body
    /// was sent, so there is nothing to remember of it.
    pub head: bool,
    /// With `--warc`: every exchange of the attempt as it went over the
    /// wire ([`crate::warc::capture`]).
    pub capture: Option<Capture>,
}

impl Attempt {
    pub(crate) fn new() -> Attempt {
        Attempt {
            class: Class::Other,
            status: None,
            http_version: None,
            message: None,
            retry_after: None,
            rate_limit_reset: None,
            bytes: None,
            wire_bytes: None,
            elapsed_ms: 0,
            ttfb_ms: None,
            final_url: None,
            content_type: None,
            headers: None,
            body_sha256: None,
            body_path: None,
            body: None,
            link_next: None,
            cache: None,
            head: false,
            capture: None,
        }
    }

    /// Clears what one exchange found, for the next hop (or the `GET`
    /// after a link check's `HEAD`), keeping the capture of those before.
    fn restart(&mut self, head: bool) {
        let capture = self.capture.take();
        *self = Attempt::new();
        self.head = head;
        self.capture = capture;
    }

    /// Whether this failure can succeed later (see [`crate::politeness::retry`]).
    pub fn is_retryable(&self) -> bool {
        self.class != Class::Ok
            && (self.status.is_some_and(is_retryable_status) || is_retryable_class(self.class))
    }
}

/// Where to save the body of a final response.
#[derive(Debug, Clone, Copy)]
pub struct SaveTo<'a> {
    /// The bodies directory (prepared with [`crate::http::body::prepare_dir`]).
    pub dir: &'a Path,
    /// A name for the partial file, unique among attempts in flight.
    pub partial_name: &'a str,
}

/// How one attempt asks: the parts that vary by task and host.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// `false` asks for the connection to be closed after the response
    /// (`Connection: close`, RFC 9112 §9.6): for the last task of a host in
    /// the window, whose connection would otherwise sit idle in the pool.
    /// With millions of hosts seen once each, that is what keeps open
    /// sockets bounded by the concurrency rather than by the hosts.
    pub keep_alive: bool,
    /// Whether the request goes through a proxy (its connect failures are
    /// then `proxy`).
    pub via_proxy: bool,
    /// Conditional or not ([`crate::http::refresh`]).
    pub plan: &'a Plan,
    /// The host's own headers (config `[hosts."…"] headers`): sent to it
    /// only. A redirect to another host is followed by a new request
    /// without them (see [`crate::http::clients::build_client`]'s redirect policy).
    pub host_headers: Option<&'a HeaderMap>,
    /// The run's `Authorization` ([`authorization`]), unless the host's
    /// own headers set one.
    pub authorization: Option<&'a HeaderValue>,
    /// A link check (`--check-external`): ask with `HEAD` first, and again
    /// with `GET` when the `HEAD` is answered 4xx or 5xx, as many servers
    /// refuse or mishandle `HEAD` (405, 403, 404) while the page is there.
    pub head_first: bool,
    /// With `--warc`: capture each exchange ([`Attempt::capture`]).
    pub capture: Option<&'a Arc<Capturing>>,
}

/// Makes one attempt at `url`, bounded by `spec.timeout` as a whole.
///
/// The body is saved only for responses that will not be retried (a status
/// that is not 408/429/5xx-retryable); other bodies are hashed and dropped.
///
/// # Errors
/// Only local failures that must stop the run: the body could not be
/// written to disk. Every network outcome is an `Ok(Attempt)`.
///
/// Cancellation: dropping the future drops the connection and any partial
/// body file.
pub async fn attempt(
    clients: &Clients,
    url: &Url,
    spec: &FetchSpec,
    save: Option<SaveTo<'_>>,
    ask: Ask<'_>,
) -> io::Result<Attempt> {
    let start = Instant::now();
    let mut record = Attempt::new();
    let revalidating = matches!(ask.plan, Plan::Revalidate { .. });
    let request = |client: &reqwest::Client, url: &Url, first: bool, head: bool| {
        let host_headers = ask.host_headers.filter(|_| first);
        let method = if head {
            reqwest::Method::HEAD
        } else {
            reqwest::Method::GET
        };
        let mut request = client.request(method, url.clone());
        if let Some(value) = ask.authorization.filter(|_| first)
            && !host_headers.is_some_and(|h| h.contains_key(AUTHORIZATION))
        {
            request = request.header(AUTHORIZATION, value.clone());
        }
        if !ask.keep_alive {
            request = request.header(CONNECTION, HeaderValue::from_static("close"));
        }
        if let Plan::Revalidate {
            etag,
            last_modified,
        } = ask.plan
        {
            // Sent back exactly as received, a weak `W/"…"` included (RFC
            // 9110 §13.1.2 compares weakly for If-None-Match).
            for (name, value) in [(IF_NONE_MATCH, etag), (IF_MODIFIED_SINCE, last_modified)] {
                if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                    request = request.header(name, value);
                }
            }
        }
        if let Some(headers) = host_headers {
            for (name, value) in headers {
                request = request.header(name, value.clone());
            }
        }
        request
    };
    let exchanges = async {
        let mut head = ask.head_first;
        loop {
            record.restart(head);
            if ask.capture.is_some() && record.capture.is_none() {
                record.capture = Some(Capture::default());
            }
            let mut url = url.clone();
            // The URLs of the hops followed here (the first one included,
            // once there is a hop): most attempts have none.
            let mut visited: Vec<Url> = Vec::new();
            loop {
                let (client, unverified) = clients.for_url(&url);
                let stops = |next: &Url| clients.stops().stops(&url, next, unverified);
                let request = request(client, &url, visited.is_empty(), head);
                // A HEAD has no body to save.
                let save = save.filter(|_| !head);
                let how = Exchanging {
                    via_proxy: ask.via_proxy,
                    revalidating,
                    capture: ask.capture,
                    defaults: clients.default_headers(),
                };
                let hop = exchange(request, spec, save, start, how, stops, &mut record).await?;
                let Some(next) = hop else { break };
                // A hop the client stopped at: followed with a new request made
                // for the next host, without the first host's headers or the
                // run's Authorization.
                record.restart(head);
                if let Err(forbidden) = clients.stops().check(&next) {
                    record.class = Class::ForbiddenAddress;
                    record.message = Some(forbidden.to_string());
                    break;
                }
                if visited.is_empty() {
                    visited.push(url.clone());
                }
                let hops = visited.len();
                let stopped = if visited.contains(&next) {
                    Some(RedirectError::Loop {
                        count: hops - 1,
                        last: next.to_string(),
                    })
                } else if hops > spec.max_redirects {
                    Some(RedirectError::TooMany {
                        count: hops - 1,
                        max: spec.max_redirects,
                        last: next.to_string(),
                    })
                } else {
                    None
                };
                if let Some(stopped) = stopped {
                    record.class = Class::TooManyRedirects;
                    record.message = Some(stopped.to_string());
                    break;
                }
                visited.push(next.clone());
                url = next;
            }
            // A link check's HEAD answered 4xx/5xx: ask again with GET.
            if head && record.status.is_some_and(|s| s >= 400) {
                head = false;
                continue;
            }
            break;
        }
        Ok::<(), Local>(())
    };
    let result = tokio::time::timeout(spec.timeout, exchanges).await;
    record.elapsed_ms = millis(start.elapsed());
    match result {
        Ok(Ok(())) => {}
        Ok(Err(Local(e))) => return Err(e),
        Err(_elapsed) => {
            mark_truncated(&record, Truncated::Time);
            record.class = Class::TotalTimeout;
            record.message = Some(format!(
                "attempt exceeded --timeout of {}",
                crate::options::text::duration_text(spec.timeout)
            ));
        }
    }
    Ok(record)
}

/// A local failure that stops the run.
struct Local(io::Error);

/// How one exchange goes, beyond its request.
struct Exchanging<'a> {
    via_proxy: bool,
    revalidating: bool,
    capture: Option<&'a Arc<Capturing>>,
    /// The client's own headers, for the captured request head.
    defaults: &'a HeaderMap,
}

async fn exchange(
    request: reqwest::RequestBuilder,
    spec: &FetchSpec,
    save: Option<SaveTo<'_>>,
    start: Instant,
    how: Exchanging<'_>,
    stops: impl Fn(&Url) -> bool,
    record: &mut Attempt,
) -> Result<Option<Url>, Local> {
    let Exchanging {
        via_proxy,
        revalidating,
        capture,
        defaults,
    } = how;
    let (client, request) = request.build_split();
    let sent = match request {
        Ok(request) => {
            if let Some(c) = record.capture.as_mut().filter(|_| capture.is_some()) {
                c.exchanges.push(Exchange {
                    date: SystemTime::now(),
                    target_uri: request.url().to_string(),
                    ip: None,
                    request: capture::request_head(
                        request.method().as_str(),
                        request.url(),
                        defaults,
                        request.headers(),
                    ),
                    response: None,
                    revalidated: revalidating,
                });
            }
            client.execute(request).await
        }
        Err(e) => Err(e),
    };
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            fail(record, &e);
            // Through a proxy, volley connects only to the proxy: a failure
            // to connect is the proxy's (a name resolved here, socks5://,
            // stays a DNS failure of the target's).
            if via_proxy
                && e.is_connect()
                && !matches!(record.class, Class::Dns | Class::ForbiddenAddress)
            {
                record.class = Class::Proxy;
            }
            return Ok(None);
        }
    };
    record.ttfb_ms = Some(millis(start.elapsed()));
    let status = response.status().as_u16();
    let payload = capture
        .zip(record.capture.as_mut())
        .and_then(|(capturing, c)| {
            let exchange = c.exchanges.last_mut()?;
            let head = capture::response_head(response.version(), status, response.headers());
            let payload = Payload::shared(capturing, &head);
            exchange.ip = response.remote_addr().map(|a| a.ip());
            exchange.response = Some(ResponseCapture {
                head,
                status,
                mime: response.headers().get(CONTENT_TYPE).map(header_text),
                payload: Arc::clone(&payload),
            });
            Some(payload)
        });
    if matches!(status, 301 | 302 | 303 | 307 | 308)
        && let Some(next) = redirect_location(response.url(), response.headers())
        && stops(&next)
    {
        // The redirect policy stopped here ([`Stops::stops`]).
        if let Some(payload) = payload {
            keep_redirect_body(response, &payload)
                .await
                .map_err(Local)?;
        }
        return Ok(Some(next));
    }
    record.status = Some(status);
    record.http_version = Some(format!("{:?}", response.version()));
    record.final_url = Some(response.url().to_string());
    record.content_type = response.headers().get(CONTENT_TYPE).map(header_text);
    record.headers = Some(headers_json(response.headers(), spec.keeps_cookies()));
    let retryable = is_retryable_status(status);
    if retryable {
        record.retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
    }
    record.rate_limit_reset = rate_limit_reset(response.headers(), SystemTime::now());
    if (200..300).contains(&status) || status == 304 {
        record.cache = Some(CacheInfo::of(response.headers(), SystemTime::now()));
    }
    if status == 304 && revalidating {
        // No body to read, and none to save: the remembered one stands.
        if let Some(payload) = &payload {
            capture::lock(payload).complete = true;
        }
        record.class = Class::NotModified;
        record.bytes = Some(0);
        record.wire_bytes = Some(0);
        return Ok(None);
    }
    // Only `--paginate link` reads it: many sites send Link preload hints on
    // every page, and parsing them is not free.
    if spec.pages.paginate == Some(crate::pipeline::process::Paginate::Link) {
        record.link_next = response
            .headers()
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(crate::pipeline::process::link_next);
    }
    // Sized by Content-Length when there is one (the decoded body may be
    // larger): a body grown by doubling holds up to twice its size.
    let page_cap = spec
        .max_body_bytes
        .unwrap_or(crate::pipeline::process::DEFAULT_MAX_PAGE_BYTES);
    let size_hint = response.content_length().map_or(0, |len| len.min(page_cap));
    let mut kept = (spec.pages.keeps(record.content_type.as_deref())
        && (200..300).contains(&status))
    .then(|| BytesMut::with_capacity(usize::try_from(size_hint).unwrap_or(0)));
    let max_body = match &kept {
        Some(_) => Some(
            spec.max_body_bytes
                .unwrap_or(crate::pipeline::process::DEFAULT_MAX_PAGE_BYTES),
        ),
        None => spec.max_body_bytes,
    };
    let mut sink = match save {
        Some(to) if !retryable => BodySink::saving(to.dir, to.partial_name),
        _ => BodySink::hashing(),
    };
    let mut body = BodyReader::new(response, payload.clone());
    let mut speed = spec
        .min_speed_bytes
        .map(|min| SpeedGuard::new(min, spec.speed_window));
    let mut bytes: u64 = 0;
    let verdict = loop {
        let chunk = match body.next_chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break None,
            Err(BodyError::Network(e)) => break Some((classify(&e), error_chain(&e))),
            Err(BodyError::Decode(e)) => {
                break Some((Class::Decode, format!("cannot decode the body: {e}")));
            }
        };
        if let Some(e) = payload.as_ref().and_then(|p| capture::lock(p).take_error()) {
            return Err(Local(e));
        }
        bytes += chunk.len() as u64;
        if let Some(max) = max_body.filter(|max| bytes > *max) {
            break Some((
                Class::BodyTooLarge,
                format!("body exceeds --max-body of {max} bytes"),
            ));
        }
        let wire = body.wire_bytes(bytes);
        if bytes > RATIO_FLOOR_BYTES && bytes > wire.saturating_mul(spec.max_decompression_ratio) {
            break Some((
                Class::DecompressionBomb,
                format!(
                    "{wire} bytes decoded to over {bytes}: more than --max-decompression-ratio {}",
                    spec.max_decompression_ratio
                ),
            ));
        }
        if let Some(Err(slow)) = speed.as_mut().map(|g| g.observe(chunk.len() as u64)) {
            break Some((Class::TooSlow, slow));
        }
        if let Some(kept) = kept.as_mut() {
            kept.extend_from_slice(&chunk);
        }
        sink.write(chunk).await.map_err(Local)?;
    };
    record.bytes = Some(bytes);
    record.wire_bytes = Some(body.wire_bytes(bytes));
    drop(body);
    if let Some(payload) = &payload {
        let mut payload = capture::lock(payload);
        if let Some(e) = payload.take_error() {
            return Err(Local(e));
        }
        match &verdict {
            None => payload.complete = true,
            Some((class, _)) => payload.truncated = Some(truncation(*class)),
        }
    }
    if let Some((class, message)) = verdict {
        record.class = class;
        record.message = Some(message);
        return Ok(None);
    }
    let body = sink.finish().await.map_err(Local)?;
    record.body_sha256 = Some(body.sha256);
    record.body_path = body.path.map(|p| p.display().to_string());
    record.body = kept.map(BytesMut::freeze);
    record.class = Class::from_status(status);
    Ok(None)
}

/// GETs a small resource (robots.txt): its status and at most `max_bytes`
/// of its decoded body, within `timeout`.
///
/// # Errors
/// The transport failure, as a one-line message.
pub async fn fetch_small(
    client: &reqwest::Client,
    url: &Url,
    max_bytes: usize,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let exchange = async {
        let response = client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        let mut body = BodyReader::new(response, None);
        let mut data = Vec::new();
        while data.len() < max_bytes {
            match body.next_chunk().await {
                Ok(Some(chunk)) => {
                    data.extend_from_slice(&chunk[..chunk.len().min(max_bytes - data.len())])
                }
                Ok(None) => break,
                Err(BodyError::Network(e)) => return Err(error_chain(&e)),
                Err(BodyError::Decode(e)) => return Err(format!("cannot decode: {e}")),
            }
        }
        Ok((status, data))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer within {}",
                crate::options::text::duration_text(timeout)
            ))
        })
}

/// A failure while reading a body.
enum BodyError {
    /// The transfer failed.
    Network(reqwest::Error),
    /// The bytes did not decode.
    Decode(io::Error),
}

/// Reads a response body as decoded chunks, counting the bytes on the wire
/// and, with `--warc`, keeping them as received in a payload.
enum BodyReader {
    /// No `Content-Encoding`: chunks as they arrive.
    Plain(reqwest::Response, Option<SharedPayload>),
    /// Decoded through async-compression.
    Decoded {
        reader: Pin<Box<dyn AsyncRead + Send>>,
        wire: Arc<AtomicU64>,
        buf: BytesMut,
    },
}

impl BodyReader {
    fn new(response: reqwest::Response, tee: Option<SharedPayload>) -> BodyReader {
        let encoding = response
            .headers()
            .get(CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        let Some(encoding) = encoding.filter(|e| e != "identity") else {
            return BodyReader::Plain(response, tee);
        };
        let wire = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&wire);
        let stream = response
            .bytes_stream()
            .map_ok(move |chunk| {
                counted.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                if let Some(tee) = &tee {
                    capture::lock(tee).push(&chunk);
                }
                chunk
            })
            .map_err(io::Error::other);
        let raw = tokio_util::io::StreamReader::new(stream);
        let reader: Pin<Box<dyn AsyncRead + Send>> = match encoding.as_str() {
            "gzip" | "x-gzip" => Box::pin(GzipDecoder::new(raw)),
            "deflate" => Box::pin(ZlibDecoder::new(raw)),
            "br" => Box::pin(BrotliDecoder::new(raw)),
            "zstd" => Box::pin(ZstdDecoder::new(raw)),
            // An encoding we did not ask for: keep the bytes as sent.
            _ => Box::pin(raw),
        };
        BodyReader::Decoded {
            reader,
            wire,
            buf: BytesMut::new(),
        }
    }

    /// The next decoded chunk, or `None` at the end.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        match self {
            BodyReader::Plain(response, tee) => {
                let chunk = response.chunk().await.map_err(BodyError::Network)?;
                if let (Some(tee), Some(chunk)) = (tee, &chunk) {
                    capture::lock(tee).push(chunk);
                }
                Ok(chunk)
            }
            BodyReader::Decoded { reader, buf, .. } => {
                buf.reserve(READ_CHUNK);
                match reader.read_buf(buf).await {
                    Ok(0) => Ok(None),
                    Ok(_) => Ok(Some(buf.split().freeze())),
                    Err(e) => Err(body_error(e)),
                }
            }
        }
    }

    /// Bytes received on the wire, given `decoded` bytes read so far.
    fn wire_bytes(&self, decoded: u64) -> u64 {
        match self {
            BodyReader::Plain(..) => decoded,
            BodyReader::Decoded { wire, .. } => wire.load(Ordering::Relaxed),
        }
    }
}

/// Tells a transfer failure (a `reqwest::Error` carried through the
/// decoder's reader) from bytes that did not decode.
fn body_error(e: io::Error) -> BodyError {
    if !e
        .get_ref()
        .is_some_and(|inner| inner.is::<reqwest::Error>())
    {
        return BodyError::Decode(e);
    }
    match e
        .into_inner()
        .map(|inner| inner.downcast::<reqwest::Error>())
    {
        Some(Ok(network)) => BodyError::Network(*network),
        Some(Err(other)) => BodyError::Decode(io::Error::other(other)),
        None => BodyError::Decode(io::Error::other("body stream failed")),
    }
}

/// The slow-body guard: at least `min_bytes_per_sec` over each `window`.
struct SpeedGuard {
    min_bytes_per_sec: u64,
    window: Duration,
    started: Instant,
    bytes: u64,
}

impl SpeedGuard {
    fn new(min_bytes_per_sec: u64, window: Duration) -> SpeedGuard {
        SpeedGuard {
            min_bytes_per_sec,
            window,
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `n` bytes; at the end of each window, fails if too few came.
    fn observe(&mut self, n: u64) -> Result<(), String> {
        self.bytes += n;
        let elapsed = self.started.elapsed();
        if elapsed < self.window {
            return Ok(());
        }
        let rate = self.bytes as f64 / elapsed.as_secs_f64();
        if rate < self.min_bytes_per_sec as f64 {
            return Err(format!(
                "body arrived at {rate:.0} bytes/s over {:.1}s, below --min-speed {} bytes/s",
                elapsed.as_secs_f64(),
                self.min_bytes_per_sec
            ));
        }
        self.started = Instant::now();
        self.bytes = 0;
        Ok(())
    }
}

fn fail(record: &mut Attempt, err: &reqwest::Error) {
    record.class = classify(err);
    let text = error_chain(err);
    let advice = chain(err).find_map(|e| e.downcast_ref::<rustls::Error>().and_then(tls_advice));
    record.message = Some(match advice {
        Some(advice) => format!("{advice} ({text})"),
        None => text,
    });
}

/// What a TLS failure means for a person, and what to do about it; `None`
/// where rustls's own words are as good as any.
pub fn tls_advice(err: &rustls::Error) -> Option<&'static str> {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as Tls};
    Some(match err {
        Tls::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            "the server's certificate has expired: renew it on the server, or fetch anyway with --insecure"
        }
        Tls::InvalidCertificate(Cert::NotValidYet | Cert::NotValidYetContext { .. }) => {
            "the server's certificate is not valid yet: check this machine's clock and the server's"
        }
        Tls::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            "the server's certificate is for another name than the URL's host: use a name it was issued for, or --insecure"
        }
        Tls::InvalidCertificate(Cert::UnknownIssuer) => {
            "the server's certificate is signed by an authority this machine does not trust: add it with --ca-cert FILE (PEM), or use --insecure"
        }
        Tls::InvalidCertificate(Cert::Revoked) => "the server's certificate has been revoked",
        Tls::InvalidCertificate(Cert::BadSignature) => {
            "the server's certificate has a bad signature: it was not signed by the authority it names"
        }
        Tls::InvalidCertificate(Cert::Other(other))
            if other.0.downcast_ref::<webpki::Error>()
                == Some(&webpki::Error::CaUsedAsEndEntity) =>
        {
            "the server presents a CA certificate (CA:TRUE, as `openssl req -x509` makes by default) as its own, which TLS clients refuse even when --ca-cert trusts it: give the server a certificate signed by that CA, or use --insecure"
        }
        Tls::AlertReceived(Alert::CertificateRequired) => {
            "the server asks for a client certificate: give --client-cert FILE and --client-key FILE"
        }
        Tls::AlertReceived(
            Alert::BadCertificate | Alert::UnknownCA | Alert::CertificateUnknown,
        ) => "the server refused this client's certificate (--client-cert)",
        Tls::InvalidMessage(_) => {
            "the server did not answer in TLS: is it plain HTTP (an http:// URL)?"
        }
        _ => return None,
    })
}

/// Sorts a transport error into a [`Class`] by its structure: reqwest's own
/// kind (`is_timeout`, `is_connect`, `is_redirect`), then the types in its
/// source chain (our `DnsError` and [`RedirectError`], `rustls::Error`,
/// `h2::Error`, `hyper::Error`) and `io::ErrorKind`s.
///
/// Never by the words of a message: those include the URL, so the class
/// (and with it whether the request is retried) would depend on user data.
pub fn classify(err: &reqwest::Error) -> Class {
    if chain(err).any(|e| e.is::<crate::http::guard::Forbidden>()) {
        return Class::ForbiddenAddress;
    }
    if err.is_redirect() || chain(err).any(|e| e.is::<RedirectError>()) {
        return Class::TooManyRedirects;
    }
    let connecting = err.is_connect();
    if err.is_timeout() {
        return if connecting {
            Class::ConnectTimeout
        } else {
            Class::ReadTimeout
        };
    }
    let mut io_kind = None;
    let mut found = None;
    for e in chain(err) {
        if e.is::<DnsError>() {
            return Class::Dns;
        }
        if e.is::<crate::http::guard::Forbidden>() {
            return Class::ForbiddenAddress;
        }
        if e.is::<rustls::Error>() {
            return Class::Tls;
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        if found.is_none() {
            found = e
                .downcast_ref::<h2::Error>()
                .and_then(h2_class)
                .or_else(|| e.downcast_ref::<hyper::Error>().and_then(hyper_class));
        }
    }
    if connecting {
        return match io_kind {
            Some(io::ErrorKind::ConnectionRefused) => Class::ConnectRefused,
            Some(io::ErrorKind::TimedOut) => Class::ConnectTimeout,
            _ => Class::Connect,
        };
    }
    if let Some(class) = found {
        return class;
    }
    match io_kind {
        Some(
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof,
        ) => Class::Reset,
        Some(io::ErrorKind::TimedOut) => Class::ReadTimeout,
        _ => Class::Other,
    }
}

/// The class of an HTTP/2 failure: a peer that broke the protocol, or a
/// stream or connection that ended early.
fn h2_class(e: &h2::Error) -> Option<Class> {
    if e.is_io() {
        return None;
    }
    let reason = e.reason()?;
    Some(
        if [
            h2::Reason::PROTOCOL_ERROR,
            h2::Reason::FRAME_SIZE_ERROR,
            h2::Reason::COMPRESSION_ERROR,
            h2::Reason::FLOW_CONTROL_ERROR,
        ]
        .contains(&reason)
        {
            Class::Protocol
        } else {
            Class::Reset
        },
    )
}

/// The class of an HTTP/1.1 failure hyper reports.
fn hyper_class(e: &hyper::Error) -> Option<Class> {
    if e.is_parse() || e.is_parse_status() {
        Some(Class::Protocol)
    } else if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        Some(Class::Reset)
    } else {
        None
    }
}

/// `err` and its sources, outermost first. An `io::Error`'s `source()`
/// skips the error it wraps (it returns that error's source), so the walk
/// steps into `get_ref()` instead, which is where rustls puts itself.
fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| match e.downcast_ref::<io::Error>() {
        Some(io) => io
            .get_ref()
            .map(|inner| inner as &(dyn std::error::Error + 'static)),
        None => (*e).source(),
    })
}

/// The target of a redirect response from `from` when it is on another
/// origin (scheme, host or port).
fn redirect_location(from: &Url, headers: &HeaderMap) -> Option<Url> {
    let location = headers.get(reqwest::header::LOCATION)?.to_str().ok()?;
    from.join(location).ok()
}

/// Most bytes of a redirect's body kept for the archive.
const MAX_REDIRECT_BODY: u64 = 1 << 20;

/// Reads a redirect's body (as received) into its payload for the archive,
/// up to [`MAX_REDIRECT_BODY`]; a failure to read it only marks it
/// truncated, since the redirect is followed anyway.
async fn keep_redirect_body(
    mut response: reqwest::Response,
    payload: &SharedPayload,
) -> io::Result<()> {
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let mut payload = capture::lock(payload);
                payload.push(&chunk);
                if let Some(e) = payload.take_error() {
                    return Err(e);
                }
                if payload.len() > MAX_REDIRECT_BODY {
                    payload.truncated = Some(Truncated::Length);
                    return Ok(());
                }
            }
            Ok(None) => {
                capture::lock(payload).complete = true;
                return Ok(());
            }
            Err(_) => {
                capture::lock(payload).truncated = Some(Truncated::Disconnect);
                return Ok(());
            }
        }
    }
}

/// Why a payload that ended with `class` stops short (`WARC-Truncated`).
fn truncation(class: Class) -> Truncated {
    match class {
        Class::BodyTooLarge | Class::DecompressionBomb => Truncated::Length,
        Class::TooSlow | Class::ReadTimeout | Class::TotalTimeout => Truncated::Time,
        Class::Reset | Class::Protocol | Class::Connect => Truncated::Disconnect,
        _ => Truncated::Unspecified,
    }
}

/// Marks the payload being read when the attempt was cut short as
/// truncated by `why`.
fn mark_truncated(record: &Attempt, why: Truncated) {
    let last = record
        .capture
        .as_ref()
        .and_then(|c| c.exchanges.last())
        .and_then(|e| e.response.as_ref());
    if let Some(response) = last {
        let mut payload = capture::lock(&response.payload);
        if !payload.complete && payload.truncated.is_none() {
            payload.truncated = Some(why);
        }
    }
}

/// The error and its sources, joined by `": "`, repeats dropped.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// The headers as a JSON object; repeated fields joined with `", "`.
///
/// With `hide_cookies` (the run sends cookies back, so they are its
/// credentials), each `Set-Cookie` keeps its name and attributes but not
/// its value.
fn headers_json(headers: &HeaderMap, hide_cookies: bool) -> String {
    // Written straight into one string (serde_json escapes each part): this
    // runs for every response, and a map of owned strings cost 3 % of the
    // CPU of a run of tiny responses.
    let mut out = String::with_capacity(64 * headers.keys_len().max(1));
    out.push('{');
    for (i, name) in headers.keys().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(&mut out, name.as_str());
        out.push(':');
        let mut values = headers.get_all(name).iter();
        let text = |value: &HeaderValue| {
            let text = header_text(value);
            if hide_cookies && name == SET_COOKIE {
                hide_cookie_value(&text)
            } else {
                text
            }
        };
        match (values.next(), values.next()) {
            (Some(only), None) => push_json_string(&mut out, &text(only)),
            _ => {
                let joined: Vec<String> = headers.get_all(name).iter().map(text).collect();
                push_json_string(&mut out, &joined.join(", "));
            }
        }
    }
    out.push('}');
    out
}

/// `name=value; attributes` with the value replaced by `(hidden)`.
fn hide_cookie_value(set_cookie: &str) -> String {
    let (pair, attributes) = set_cookie
        .split_once(';')
        .map_or((set_cookie, None), |(p, a)| (p, Some(a)));
    let name = pair.split_once('=').map_or(pair, |(n, _)| n);
    match attributes {
        Some(attributes) => format!("{name}=(hidden);{attributes}"),
        None => format!("{name}=(hidden)"),
    }
}

/// Appends `text` as a JSON string literal.
fn push_json_string(out: &mut String, text: &str) {
    // Serialising a &str cannot fail.
    if let Ok(quoted) = serde_json::to_string(text) {
        out.push_str(&quoted);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_are_joined() {
        let mut h = HeaderMap::new();
        h.append("vary", HeaderValue::from_static("accept"));
        h.append("vary", HeaderValue::from_static("origin"));
        h.append("etag", HeaderValue::from_static("\"x\""));
        let v: serde_json::Value =
            serde_json::from_str(&headers_json(&h, false)).expect("valid JSON");
        assert_eq!(v["vary"], "accept, origin");
        assert_eq!(v["etag"], "\"x\"");
    }

    #[test]
    fn only_failures_that_can_heal_are_retryable() {
        let mut a = Attempt::new();
        a.class = Class::Http5xx;
        a.status = Some(503);
        assert!(a.is_retryable());
        a.status = Some(501);
        assert!(!a.is_retryable());
        a.class = Class::Ok;
        a.status = Some(200);
        assert!(!a.is_retryable());
        a.status = None;
        a.class = Class::ConnectRefused;
        assert!(a.is_retryable());
        a.class = Class::BodyTooLarge;
        a.status = Some(200);
        assert!(!a.is_retryable());
    }
}
