//! What happened to one input: the outcome vocabulary.
//!
//! Every input line ends with exactly one [`Outcome`]. Its [`Class`] is a
//! stable, documented word that people query (`SELECT class, count(*) FROM
//! outcomes GROUP BY class`), so the strings returned by [`Class::as_str`]
//! never change meaning once released.

use std::fmt;

use crate::crawl::PageCaps;

/// The class of an outcome: `ok`, `duplicate`, or the cause of a failure.
///
/// A failure that was retried keeps the class of its *last* attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// A final response with a 2xx status, its body read to the end.
    Ok,
    /// `--refresh`: the server answered `304 Not Modified` to the
    /// validators remembered from the last response; the outcome carries
    /// that response's body hash and path, and nothing is rewritten.
    NotModified,
    /// `--max-age` or `--respect-cache-control`: the remembered body was
    /// fresh enough, so no request was made; the outcome carries it.
    Fresh,
    /// The same URL appeared earlier in the job; the outcome points at the
    /// first task through `duplicate_of` and nothing is fetched.
    Duplicate,
    /// The input's URL is not an absolute `http`/`https` URL with a host.
    InvalidUrl,
    /// The input row itself is unreadable: a CSV row without the URL column,
    /// a JSONL line that is not JSON or lacks the field, an overlong line.
    InvalidInput,
    /// The page's body is not JSON, or not of the expected shape, where
    /// `--paginate`, `--items` or `--extract` needed it.
    InvalidJson,
    /// A sitemap (sitemaps.org) that breaks the protocol: over its caps
    /// (50,000 URLs, 50 MB uncompressed), not well-formed XML, `<loc>`
    /// values that are not URLs, or an index nested too deep. The entries
    /// read before the fault became tasks; the message says what was left.
    InvalidSitemap,
    /// The host name did not resolve.
    Dns,
    /// The target actively refused the TCP connection.
    ConnectRefused,
    /// The TCP (or TLS) connection was not established within `--connect-timeout`.
    ConnectTimeout,
    /// Any other failure to connect (unreachable network, proxy, ...).
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// No data arrived for `--read-timeout` while waiting for headers or body.
    ReadTimeout,
    /// The whole attempt (connect, headers, body) exceeded `--timeout`.
    TotalTimeout,
    /// The connection was reset or closed before the response was complete
    /// (including a body shorter than its `Content-Length`).
    Reset,
    /// The response was not valid HTTP (malformed or oversized headers).
    Protocol,
    /// The body arrived slower than `--min-speed` over a whole `--speed-window`.
    TooSlow,
    /// A final 3xx response that could not be followed (for example no `Location`).
    Http3xx,
    /// A final 4xx response.
    Http4xx,
    /// A final 5xx response.
    Http5xx,
    /// More redirects than `--max-redirects`, or a redirect loop.
    TooManyRedirects,
    /// The body grew past `--max-body`; reading stopped there.
    BodyTooLarge,
    /// The body could not be decoded (bad gzip/deflate/br/zstd stream).
    Decode,
    /// The body decoded to more than `--max-decompression-ratio` times its
    /// size on the wire; reading stopped there.
    DecompressionBomb,
    /// The host's robots.txt disallows the URL for our user agent
    /// (`--respect-robots`); nothing was fetched.
    RobotsDenied,
    /// The run's `--deadline` passed before the task finished.
    Deadline,
    /// The URL (or a redirect on its way) leads to an address the address
    /// rules refuse: loopback, private, link-local, ... (`--deny-private`,
    /// on by default in `volley serve`); nothing was sent to it.
    ForbiddenAddress,
    /// The job was cancelled (`POST /v1/jobs/{name}/cancel`) before the task
    /// was fetched.
    Cancelled,
    /// The proxy (`--proxy`, or `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY`)
    /// could not be reached, or refused to connect to the target.
    Proxy,
    /// Any failure that fits no other class; the message says what it was.
    Other,
}

impl Class {
    /// Every class, in documentation order.
    pub const ALL: [Class; 31] = [
        Class::Ok,
        Class::NotModified,
        Class::Fresh,
        Class::Duplicate,
        Class::InvalidUrl,
        Class::InvalidInput,
        Class::InvalidJson,
        Class::InvalidSitemap,
        Class::Dns,
        Class::ConnectRefused,
        Class::ConnectTimeout,
        Class::Connect,
        Class::Tls,
        Class::ReadTimeout,
        Class::TotalTimeout,
        Class::Reset,
        Class::Protocol,
        Class::TooSlow,
        Class::Http3xx,
        Class::Http4xx,
        Class::Http5xx,
        Class::TooManyRedirects,
        Class::BodyTooLarge,
        Class::Decode,
        Class::DecompressionBomb,
        Class::RobotsDenied,
        Class::Deadline,
        Class::ForbiddenAddress,
        Class::Cancelled,
        Class::Proxy,
        Class::Other,
    ];

    /// The stable name stored in the `outcomes.class` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Ok => "ok",
            Class::NotModified => "not_modified",
            Class::Fresh => "fresh",
            Class::Duplicate => "duplicate",
            Class::InvalidUrl => "invalid_url",
            Class::InvalidInput => "invalid_input",
            Class::InvalidJson => "invalid_json",
            Class::Dns => "dns",
            Class::ConnectRefused => "connect_refused",
            Class::ConnectTimeout => "connect_timeout",
            Class::Connect => "connect",
            Class::Tls => "tls",
            Class::ReadTimeout => "read_timeout",
            Class::TotalTimeout => "total_timeout",
            Class::Reset => "reset",
            Class::Protocol => "protocol",
            Class::TooSlow => "too_slow",
            Class::Http3xx => "http_3xx",
            Class::Http4xx => "http_4xx",
            Class::Http5xx => "http_5xx",
            Class::TooManyRedirects => "too_many_redirects",
            Class::BodyTooLarge => "body_too_large",
            Class::Decode => "decode",
            Class::DecompressionBomb => "decompression_bomb",
            Class::InvalidSitemap => "invalid_sitemap",
            Class::RobotsDenied => "robots_denied",
            Class::Deadline => "deadline",
            Class::ForbiddenAddress => "forbidden_address",
            Class::Cancelled => "cancelled",
            Class::Proxy => "proxy",
            Class::Other => "other",
        }
    }

    /// Parses a name produced by [`Class::as_str`]; `None` for anything else.
    pub fn parse(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Whether a task with this outcome counts as succeeded (`done`) rather
    /// than `failed`.
    pub fn is_success(self) -> bool {
        matches!(
            self,
            Class::Ok | Class::NotModified | Class::Fresh | Class::Duplicate
        )
    }

    /// The class of a final response with this HTTP status code.
    pub fn from_status(status: u16) -> Class {
        match status {
            200..=299 => Class::Ok,
            300..=399 => Class::Http3xx,
            400..=499 => Class::Http4xx,
            500..=599 => Class::Http5xx,
            _ => Class::Other,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one final record of a task, as stored in the `outcomes` table.
///
/// Times are milliseconds; `*_at_ms` fields are Unix epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The task this outcome closes (`tasks.id`).
    pub task_id: i64,
    /// What happened; see [`Class`].
    pub class: Class,
    /// Final HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// HTTP version of the final response (`HTTP/1.1`, `HTTP/2.0`).
    pub http_version: Option<String>,
    /// Human-readable detail of a failure (the error chain), `None` on success.
    pub message: Option<String>,
    /// Requests made for this task, retries included (0 when nothing was fetched).
    pub attempts: u32,
    /// Decoded body bytes read in the final attempt.
    pub bytes: Option<u64>,
    /// Body bytes received on the wire in the final attempt (before decoding).
    pub wire_bytes: Option<u64>,
    /// Duration of the final attempt, from sending the request to the body's end (ms).
    pub elapsed_ms: Option<u64>,
    /// Time to the response headers in the final attempt (ms).
    pub ttfb_ms: Option<u64>,
    /// The URL that answered, after redirects.
    pub final_url: Option<String>,
    /// The response's `Content-Type` header.
    pub content_type: Option<String>,
    /// Lower-case hex SHA-256 of the decoded body, when the body was read to the end.
    pub body_sha256: Option<String>,
    /// Where the body was saved (`--save-bodies`), named by its SHA-256.
    pub body_path: Option<String>,
    /// The final response's headers as a JSON object (`{"name": "value"}`);
    /// repeated fields are joined with `", "` as RFC 9110 §5.3 allows.
    pub headers: Option<String>,
    /// For a [`Class::Duplicate`], the id of the first task with the same URL.
    pub duplicate_of: Option<i64>,
    /// When the first attempt started (Unix ms).
    pub started_at_ms: Option<i64>,
    /// When the outcome was decided (Unix ms).
    pub finished_at_ms: i64,
    /// Every attempt, for a task that took more than one (else empty).
    pub attempt_log: Vec<AttemptRecord>,
    /// `--extract` fields of the body, as a JSON object.
    pub extracted: Option<String>,
    /// `--items` elements of the body, each as JSON.
    pub items: Vec<String>,
    /// The next page of a pagination chain, to become a task in the same
    /// transaction as this outcome.
    pub next_page: Option<NextPage>,
    /// With `--follow`: the page's links a crawl follows, to become tasks
    /// in the same transaction as this outcome (those the job has not
    /// seen).
    pub links: Vec<NextPage>,
    /// The caps under which `links` become tasks (`--max-crawl-pages`,
    /// `--max-host-pages`); links past them are counted in the message.
    pub caps: PageCaps,
    /// Whether the body differs from the one the database remembered for
    /// the URL (`true` for a URL it never had); known only when the run
    /// read what it remembered (`--refresh`, `--max-age`,
    /// `--respect-cache-control`), else `None`.
    pub changed: Option<bool>,
    /// What to remember of the URL now (`resources`), written in the same
    /// transaction as the outcome; `None` leaves the row as it is.
    pub resource: Option<Box<crate::http::refresh::Resource>>,
    /// With `--warc`: where the outcome's records were written, committed
    /// with it (`outcomes.warc_*`, `warc_records`, `warc_files`).
    pub warc: Option<crate::warc::WarcPlacement>,
}

/// A page discovered from the page just fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextPage {
    /// Its URL (absolute, http or https).
    pub url: String,
    /// Its host, for the task row.
    pub host: String,
    /// Its position in the chain (the first page is 1).
    pub page: u32,
    /// The id of the input task its chain or crawl began at (`tasks.seed_id`).
    pub seed_id: i64,
    /// What to keep with the task (`tasks.meta`, a JSON object): a
    /// sitemap entry's `{"lastmod": …}`.
    pub meta: Option<String>,
}

/// One attempt of a task that was retried: a row of the `attempts` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// 1-based attempt number.
    pub attempt: u32,
    /// What this attempt produced.
    pub class: Class,
    /// Its HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// Its failure detail.
    pub message: Option<String>,
    /// When it started (Unix ms).
    pub started_at_ms: i64,
    /// How long it took (ms).
    pub elapsed_ms: u64,
    /// The wait before the next attempt (ms); `None` for the last.
    pub retry_delay_ms: Option<u64>,
}

impl Outcome {
    /// An outcome of `class` for `task_id`, finished now, with every optional
    /// field empty and no attempts.
    pub fn new(task_id: i64, class: Class) -> Outcome {
        Outcome {
            task_id,
            class,
            status: None,
            http_version: None,
            message: None,
            attempts: 0,
            bytes: None,
            wire_bytes: None,
            elapsed_ms: None,
            ttfb_ms: None,
            final_url: None,
            content_type: None,
            body_sha256: None,
            body_path: None,
            headers: None,
            duplicate_of: None,
            started_at_ms: None,
            finished_at_ms: now_ms(),
            attempt_log: Vec::new(),
            extracted: None,
            items: Vec::new(),
            next_page: None,
            links: Vec::new(),
            caps: PageCaps::default(),
            changed: None,
            resource: None,
            warc: None,
        }
    }

    /// Whether this outcome may add tasks to its job (a next page, or a
    /// crawl's links): its commit is awaited before the job can end.
    pub fn leads_on(&self) -> bool {
        self.next_page.is_some() || !self.links.is_empty()
    }
}

/// The current time as Unix epoch milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for class in Class::ALL {
            assert!(seen.insert(class.as_str()), "duplicate name {class}");
            assert_eq!(Class::parse(class.as_str()), Some(class));
        }
        assert_eq!(Class::parse("nope"), None);
    }

    #[test]
    fn status_maps_to_class() {
        assert_eq!(Class::from_status(204), Class::Ok);
        assert_eq!(Class::from_status(301), Class::Http3xx);
        assert_eq!(Class::from_status(404), Class::Http4xx);
        assert_eq!(Class::from_status(503), Class::Http5xx);
        assert_eq!(Class::from_status(99), Class::Other);
    }
}
