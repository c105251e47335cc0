//! What the fetch stage captures of each exchange for the archive: the
//! request head sent, the response head received and the payload as it
//! came off the wire (de-chunked, still content-encoded), with the digests
//! the records need, computed as the bytes stream.
//!
//! Heads are rewritten as HTTP/1.1 messages (WARC 1.1 §6.3.2 records an
//! HTTP message; an HTTP/2 response has no status line of its own), and
//! `Transfer-Encoding` is left out of the recorded response headers: the
//! payload is recorded without its chunked framing, and a header that
//! promises framing the block lacks breaks replay (webrecorder/pywb#584).
//! Request header values marked sensitive (`--user`, `--bearer-token-file`)
//! are written as [`REDACTED`]: an archive is shared more widely than the
//! credentials that made it.

use std::fs::File;
use std::io::{self, Seek as _, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING};
use url::Url;

use super::{DigestAlgorithm, Hasher};

/// Payload bytes a run holds in memory for the archive, over all captures
/// waiting to be written; past it, payloads go to temporary files.
pub const MEMORY_BUDGET: u64 = 64 << 20;

/// The value written for a request header marked sensitive.
pub const REDACTED: &str = "[redacted by volley]";

/// A run's capture settings and memory budget, shared by its fetches.
#[derive(Debug)]
pub struct Capturing {
    /// The digest of the records.
    pub digest: DigestAlgorithm,
    /// Where payloads past the budget are spilled (unnamed temporary
    /// files, gone when closed).
    pub spill_dir: PathBuf,
    used: AtomicU64,
    budget: u64,
}

impl Capturing {
    /// Captures with `digest`, spilling into `spill_dir` past
    /// [`MEMORY_BUDGET`].
    pub fn new(digest: DigestAlgorithm, spill_dir: PathBuf) -> Capturing {
        Capturing::with_budget(digest, spill_dir, MEMORY_BUDGET)
    }

    /// As [`Capturing::new`], with a budget of `budget` bytes.
    pub fn with_budget(digest: DigestAlgorithm, spill_dir: PathBuf, budget: u64) -> Capturing {
        Capturing {
            digest,
            spill_dir,
            used: AtomicU64::new(0),
            budget,
        }
    }

    fn reserve(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + n <= self.budget).then_some(used + n)
            })
            .is_ok()
    }

    fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Payload bytes held in memory now, over all captures.
    pub fn in_memory(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

/// Every exchange of a task's final attempt, in order: the redirect hops,
/// then the response that ended it (for a link check, the `HEAD` and the
/// `GET` after it).
#[derive(Debug, Default)]
pub struct Capture {
    /// The exchanges.
    pub exchanges: Vec<Exchange>,
}

/// One request and, if one arrived, its response.
#[derive(Debug)]
pub struct Exchange {
    /// When the request was sent (`WARC-Date`).
    pub date: SystemTime,
    /// The URL asked for (`WARC-Target-URI`).
    pub target_uri: String,
    /// The server's address (`WARC-IP-Address`), when known.
    pub ip: Option<IpAddr>,
    /// The request head as an HTTP/1.1 message, blank line included.
    pub request: Vec<u8>,
    /// The response; `None` when none arrived (nothing is archived then).
    pub response: Option<ResponseCapture>,
    /// Whether the request was conditional (`--refresh`): a `304` to it
    /// is archived as a `server-not-modified` revisit.
    pub revalidated: bool,
}

/// A response's head and its payload.
#[derive(Debug)]
pub struct ResponseCapture {
    /// The status line and headers as an HTTP/1.1 message, blank line
    /// included.
    pub head: Vec<u8>,
    /// The status code.
    pub status: u16,
    /// The `Content-Type`, for the index.
    pub mime: Option<String>,
    /// The payload, filled as the body streams (shared with the reader
    /// that tees it).
    pub payload: SharedPayload,
}

/// A payload being filled by the body reader and read by the writer.
pub type SharedPayload = Arc<Mutex<Payload>>;

/// Why a payload ends before the response did (`WARC-Truncated`, WARC 1.1
/// §5.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncated {
    /// A size cap (`--max-body`, the decompression ratio).
    Length,
    /// A time limit (`--timeout`, `--min-speed`).
    Time,
    /// The connection broke.
    Disconnect,
    /// Anything else (a body that did not decode).
    Unspecified,
}

impl Truncated {
    /// The header's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Truncated::Length => "length",
            Truncated::Time => "time",
            Truncated::Disconnect => "disconnect",
            Truncated::Unspecified => "unspecified",
        }
    }
}

/// The bytes of one payload as received, in memory while the run's budget
/// lasts and in a temporary file past it, with the block and payload
/// digests kept as they stream.
pub struct Payload {
    capturing: Arc<Capturing>,
    memory: Vec<Bytes>,
    in_memory: u64,
    spill: Option<File>,
    len: u64,
    payload_digest: Hasher,
    block_digest: Hasher,
    error: Option<io::Error>,
    /// Set when the payload stops short of the response's end.
    pub truncated: Option<Truncated>,
    /// Whether every byte has been received (the body was read to its end).
    pub complete: bool,
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("len", &self.len)
            .field("in_memory", &self.in_memory)
            .field("spilled", &self.spill.is_some())
            .field("truncated", &self.truncated)
            .finish()
    }
}

impl Payload {
    /// An empty payload of a response whose head is `head` (the block
    /// digest covers the head, then the payload).
    pub fn new(capturing: &Arc<Capturing>, head: &[u8]) -> Payload {
        let mut block_digest = capturing.digest.hasher();
        block_digest.update(head);
        Payload {
            capturing: Arc::clone(capturing),
            memory: Vec::new(),
            in_memory: 0,
            spill: None,
            len: 0,
            payload_digest: capturing.digest.hasher(),
            block_digest,
            error: None,
            truncated: None,
            complete: false,
        }
    }

    /// A payload shared between its reader and the writer.
    pub fn shared(capturing: &Arc<Capturing>, head: &[u8]) -> SharedPayload {
        Arc::new(Mutex::new(Payload::new(capturing, head)))
    }

    /// Appends the next bytes received. A failure to spill is kept and
    /// given back by [`Payload::take_error`]; bytes after it are dropped.
    pub fn push(&mut self, chunk: &Bytes) {
        if self.error.is_some() || chunk.is_empty() {
            return;
        }
        let n = chunk.len() as u64;
        self.payload_digest.update(chunk);
        self.block_digest.update(chunk);
        self.len += n;
        // Once spilling, always spill: the bytes stay in order.
        if self.spill.is_none() && self.capturing.reserve(n) {
            self.in_memory += n;
            // A clone of the chunk the client handed over: no copy.
            self.memory.push(chunk.clone());
            return;
        }
        if let Err(e) = self.spill_write(chunk) {
            self.error = Some(e);
        }
    }

    fn spill_write(&mut self, chunk: &[u8]) -> io::Result<()> {
        let file = match &mut self.spill {
            Some(file) => file,
            None => self
                .spill
                .insert(tempfile::tempfile_in(&self.capturing.spill_dir)?),
        };
        file.write_all(chunk)
    }

    /// The error that stopped the payload from being kept (a full disk).
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }

    /// Payload bytes received.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Lets go of the bytes (once compressed): the digests and length stay,
    /// and the memory goes back to the run's budget.
    pub fn release(&mut self) {
        self.memory = Vec::new();
        self.spill = None;
        self.capturing.release(self.in_memory);
        self.in_memory = 0;
    }

    /// Whether part of the payload went to a temporary file.
    pub fn spilled(&self) -> bool {
        self.spill.is_some()
    }

    /// Whether no payload byte was received.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The payload digest, `algorithm:base32` (WARC 1.1 §5.9).
    pub fn payload_digest(&self) -> String {
        self.payload_digest.clone().labelled()
    }

    /// The digest of the response block: head, then payload (§5.8).
    pub fn block_digest(&self) -> String {
        self.block_digest.clone().labelled()
    }

    /// Writes the payload to `out`, in the order it arrived.
    ///
    /// # Errors
    /// Reading the spill file or writing `out`.
    pub fn write_to(&mut self, out: &mut (impl Write + ?Sized)) -> io::Result<()> {
        for chunk in &self.memory {
            out.write_all(chunk)?;
        }
        if let Some(file) = &mut self.spill {
            file.flush()?;
            file.rewind()?;
            io::copy(file, out)?;
        }
        Ok(())
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        self.capturing.release(self.in_memory);
    }
}

/// Locks a shared payload; a panic elsewhere while it was held leaves it
/// usable (its bytes are appended whole or not at all).
pub fn lock(payload: &SharedPayload) -> std::sync::MutexGuard<'_, Payload> {
    payload.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The request head as an HTTP/1.1 message: request line, `Host`, the
/// client's default headers not overridden by the request's own, then the
/// request's own; sensitive values as [`REDACTED`].
pub fn request_head(method: &str, url: &Url, defaults: &HeaderMap, own: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    out.extend_from_slice(format!("{method} {target} HTTP/1.1\r\n").as_bytes());
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => String::new(),
    };
    out.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
    let defaults = defaults.iter().filter(|(name, _)| !own.contains_key(*name));
    for (name, value) in defaults.chain(own.iter()) {
        header_line(&mut out, name, value, true);
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The response head as an HTTP/1.1 message (an HTTP/1.0 response keeps
/// its version), without `Transfer-Encoding`.
pub fn response_head(version: reqwest::Version, status: u16, headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let version = if version == reqwest::Version::HTTP_10 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    out.extend_from_slice(format!("{version} {status} {reason}\r\n").as_bytes());
    for (name, value) in headers {
        if name != TRANSFER_ENCODING {
            header_line(&mut out, name, value, false);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn header_line(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue, redact: bool) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    if redact && value.is_sensitive() {
        out.extend_from_slice(REDACTED.as_bytes());
    } else {
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capturing(budget: u64) -> Arc<Capturing> {
        Arc::new(Capturing::with_budget(
            DigestAlgorithm::Sha1,
            std::env::temp_dir(),
            budget,
        ))
    }

    #[test]
    fn a_payload_past_the_budget_spills_and_reads_back_in_order() {
        let capturing = capturing(8);
        let mut payload = Payload::new(&capturing, b"HTTP/1.1 200 OK\r\n\r\n");
        for part in ["hello", " wide", " world"] {
            payload.push(&Bytes::from(part));
        }
        assert_eq!(capturing.in_memory(), 5, "only what fit stays in memory");
        let mut out = Vec::new();
        payload.write_to(&mut out).unwrap();
        assert_eq!(out, b"hello wide world");
        assert_eq!(payload.len(), 16);
        drop(payload);
        assert_eq!(capturing.in_memory(), 0, "the budget comes back");
    }

    #[test]
    fn digests_are_base32_sha1_of_the_payload_and_of_head_and_payload() {
        let capturing = capturing(1 << 20);
        let mut payload = Payload::new(&capturing, b"");
        payload.push(&Bytes::from_static(b"abc"));
        // SHA-1("abc") = a9993e36…, in base32:
        assert_eq!(
            payload.payload_digest(),
            "sha1:VGMT4NSHA2AWVOR6EVYXQUGCNSONBWE5"
        );
        assert_eq!(payload.block_digest(), payload.payload_digest());
    }

    #[test]
    fn heads_are_http_1_1_without_transfer_encoding_and_without_secrets() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/html"));
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        let head = response_head(reqwest::Version::HTTP_2, 200, &headers);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n\r\n"
        );
        let mut own = HeaderMap::new();
        let mut secret = HeaderValue::from_static("Bearer s3cret");
        secret.set_sensitive(true);
        own.insert("authorization", secret);
        let mut defaults = HeaderMap::new();
        defaults.insert("user-agent", HeaderValue::from_static("volley/0"));
        let url = Url::parse("http://h.test:8080/a/b?x=1").unwrap();
        let head = String::from_utf8(request_head("GET", &url, &defaults, &own)).unwrap();
        assert_eq!(
            head,
            format!(
                "GET /a/b?x=1 HTTP/1.1\r\nHost: h.test:8080\r\nuser-agent: volley/0\r\nauthorization: {REDACTED}\r\n\r\n"
            )
        );
    }
}
