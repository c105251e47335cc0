//! Web archives: every exchange a run makes, written as WARC/1.1 records
//! (ISO 28500:2017; the WARC 1.1 specification at
//! iipc.github.io/warc-specifications) that pywb, replayweb.page and warcio
//! read.
//!
//! The fetch stage *captures* each request and response as they went over
//! the wire ([`capture`]): the request head volley sent, the status line
//! and headers it received (written as an HTTP/1.1 message even when the
//! response came over HTTP/2, without `Transfer-Encoding`, since the
//! payload is recorded de-chunked), and the payload **as received**, still
//! content-encoded. Decoding, hashing and `--save-bodies` work on a decoded
//! copy beside it. The payload is held in memory while a run-wide budget
//! ([`capture::MEMORY_BUDGET`]) lasts, and in an unnamed temporary file
//! past it, so the captures waiting for the writer never grow memory past
//! the budget.
//!
//! One thread per core turns captures into compressed records
//! ([`writer::Encoders`], [`record`]), and the writer stage appends them to
//! the job's files ([`writer::WarcWriter`]): `PREFIX-<timestamp>-<serial>.warc.gz`,
//! each record its own gzip member (so a reader can seek to any record), a
//! `warcinfo` record first in each file, a new file past `--warc-max-size`.
//! Per exchange, a `response` and a `request` record joined by
//! `WARC-Concurrent-To`; each redirect hop is its own pair. A payload
//! already archived in the database (same payload digest) becomes a
//! `revisit` record (profile `identical-payload-digest`, §6.7.2), and so
//! does a `304` of a `--refresh` job (profile `server-not-modified`,
//! §6.7.3), each pointing at the capture it stands for.
//!
//! **Crash safety.** The records of a batch are written before the batch's
//! outcomes commit, and the commit records, per file, where its last
//! committed record ends (`warc_files.committed_end`), with each record's
//! place (`warc_records`) and each outcome's span (`outcomes.warc_*`). A
//! kill -9 can leave a torn record, or whole records whose outcomes never
//! committed, past that end: the next run cuts every file of the job back
//! to its committed end before appending ([`writer::WarcWriter::repair`]),
//! so no reader ever meets a torn or orphan record. A file is locked
//! (`flock`) while a run writes it, so two processes never cut or append
//! to the same file.

pub mod capture;
pub mod cdxj;
pub mod record;
pub mod writer;

use sha1::Digest as _;

/// Where a job's records go, and how (`--warc`, `--warc-max-size`,
/// `--warc-digest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarcOptions {
    /// Files are named `PREFIX-<timestamp>-<serial>.warc.gz`.
    pub prefix: String,
    /// A new file is begun once one reaches this many bytes (compressed).
    pub max_file_bytes: u64,
    /// The digest of `WARC-Block-Digest` and `WARC-Payload-Digest`.
    pub digest: DigestAlgorithm,
}

/// The digest algorithm of the records' digests (WARC 1.1 §5.8, §5.9):
/// `algorithm:base32` of the whole block or payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestAlgorithm {
    /// SHA-1, what most readers and indexes expect (the default).
    #[default]
    Sha1,
    /// SHA-256.
    Sha256,
}

impl DigestAlgorithm {
    /// The label written before the digest: `sha1`, `sha256`.
    pub fn label(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha1 => "sha1",
            DigestAlgorithm::Sha256 => "sha256",
        }
    }

    /// A new running digest.
    pub fn hasher(self) -> Hasher {
        match self {
            DigestAlgorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            DigestAlgorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        }
    }
}

/// A running digest of [`DigestAlgorithm`].
#[derive(Clone)]
pub enum Hasher {
    /// SHA-1.
    Sha1(sha1::Sha1),
    /// SHA-256.
    Sha256(sha2::Sha256),
}

impl Hasher {
    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(bytes),
            Hasher::Sha256(h) => sha2::Digest::update(h, bytes),
        }
    }

    /// The digest as WARC writes it: `sha1:BASE32` (RFC 4648 base32,
    /// upper case, padded as needed; a SHA-1 needs no padding).
    pub fn labelled(self) -> String {
        let (label, bytes) = match self {
            Hasher::Sha1(h) => ("sha1", h.finalize().to_vec()),
            Hasher::Sha256(h) => ("sha256", sha2::Digest::finalize(h).to_vec()),
        };
        format!("{label}:{}", data_encoding::BASE32.encode(&bytes))
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Hasher::Sha1(_) => "Hasher::Sha1",
            Hasher::Sha256(_) => "Hasher::Sha256",
        })
    }
}

/// Why records could not be written or a file could not be repaired.
#[derive(Debug, thiserror::Error)]
pub enum WarcError {
    /// Reading, writing, cutting or locking a file failed.
    #[error("WARC file {path}: {source}")]
    Io {
        /// The file (or the prefix's directory).
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file holds fewer bytes than its committed records need: it was cut
    /// or replaced since.
    #[error(
        "WARC file {path} is {len} bytes, but the database records {committed} bytes of records in it: it was cut or replaced since; restore it, or start a new job"
    )]
    Shrunk {
        /// The file.
        path: String,
        /// Its length now.
        len: u64,
        /// The end of its last committed record.
        committed: u64,
    },
}

/// A WARC file of a job, as the database knows it (`warc_files`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarcFile {
    /// Its id, also the serial in its name.
    pub id: i64,
    /// Its path, as the run that made it named it.
    pub path: String,
    /// Where its last committed record ends, in bytes.
    pub committed_end: u64,
}

/// An earlier capture a revisit record points at (`WARC-Refers-To*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earlier {
    /// Its `WARC-Target-URI`.
    pub target_uri: String,
    /// Its `WARC-Date`.
    pub date: String,
    /// Its `WARC-Record-ID`.
    pub record_id: String,
    /// Its `WARC-Payload-Digest`.
    pub payload_digest: Option<String>,
}

/// Earlier captures in the database, found for a batch's payloads.
#[derive(Debug, Clone, Default)]
pub struct EarlierCaptures {
    /// The first `response` record of each payload digest asked for.
    pub by_digest: std::collections::HashMap<String, Earlier>,
    /// For each target URI asked for, the first `response` holding the
    /// payload its latest record (response or revisit) had: what a `304`
    /// revisits.
    pub by_uri: std::collections::HashMap<String, Earlier>,
}

/// The kind of an indexed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A `response` record.
    Response,
    /// A `revisit` record.
    Revisit,
}

impl RecordKind {
    /// Its `WARC-Type`, as stored in `warc_records.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Response => "response",
            RecordKind::Revisit => "revisit",
        }
    }

    /// Reads [`RecordKind::as_str`] back; anything but `revisit` is a
    /// response.
    pub fn parse(text: &str) -> RecordKind {
        if text == "revisit" {
            RecordKind::Revisit
        } else {
            RecordKind::Response
        }
    }
}

/// A `response` or `revisit` record written for an outcome: a row of
/// `warc_records`, and a line of the CDXJ index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedRecord {
    /// Response or revisit.
    pub kind: RecordKind,
    /// Where its gzip member starts in the file, in bytes.
    pub offset: u64,
    /// The member's length, in bytes.
    pub length: u64,
    /// `WARC-Target-URI`.
    pub target_uri: String,
    /// The index key of the URI ([`cdxj::urlkey`]).
    pub urlkey: String,
    /// `WARC-Date`.
    pub date: String,
    /// The HTTP status.
    pub status: u16,
    /// The response's `Content-Type`.
    pub mime: Option<String>,
    /// `WARC-Payload-Digest`, when the record has one.
    pub payload_digest: Option<String>,
    /// `WARC-Record-ID`.
    pub record_id: String,
    /// Whether the payload is whole: only whole payloads are revisited.
    pub complete: bool,
}

/// Where an outcome's records went: one span of one file, from its first
/// record to the end of its last (a redirect chain's pairs are written
/// together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarcPlacement {
    /// The file's id (`warc_files.id`).
    pub file_id: i64,
    /// The file's path.
    pub file: String,
    /// Where the outcome's first record starts, in bytes.
    pub offset: u64,
    /// Bytes from there to the end of its last record.
    pub length: u64,
    /// Its response and revisit records.
    pub records: Vec<IndexedRecord>,
}

impl WarcPlacement {
    /// Where the outcome's last record ends.
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
}

/// The name of a job's file number `serial`, begun at `stamp` (14 digits,
/// UTC): `PREFIX-<stamp>-<serial>.warc.gz`, the serial 5 digits or more.
pub fn file_name(prefix: &str, stamp: &str, serial: i64) -> String {
    format!("{prefix}-{stamp}-{serial:05}.warc.gz")
}
