//! The job configuration: everything the engine needs to know about how to
//! fetch, as plain data.
//!
//! The command line (or a config file, or a server) builds a [`FetchSpec`];
//! the engine never sees flags. [`FetchSpec::validate`] rejects values that
//! cannot work, with a message that names what to fix.

use std::path::PathBuf;
use std::time::Duration;

/// How to fetch: limits, timeouts, retries and what to keep.
///
/// This is the one definition of the job options. Its serde form is what
/// the config file, `VOLLEY_*` variables, the command line and a stored job
/// all speak: keys are the options' long names (`per-host`, `max-body`),
/// values their text forms (`"500ms"`, `"5/s"`, `"10M"`, or plain numbers);
/// [`crate::options`] layers them over [`FetchSpec::default`]. Adding an
/// option is adding a field here, with its default and its doc comment.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct FetchSpec {
    /// Global cap on requests in flight at once.
    #[serde(with = "text::count")]
    pub concurrency: usize,
    /// Cap on requests in flight to one host at once. With HTTP/1.1 this also
    /// bounds the connections open to that host.
    #[serde(with = "text::count")]
    pub per_host: usize,
    /// Most requests started per second to one host, if limited.
    #[serde(with = "text::opt_rate")]
    pub rate: Option<Rate>,
    /// Most requests started per second over all hosts, if limited.
    #[serde(with = "text::opt_rate")]
    pub global_rate: Option<Rate>,
    /// Per-host overrides of `per_host` and `rate`, first match wins (exact
    /// names before glob patterns). In text: a table of patterns, each with
    /// `rate` and `concurrency` (`[hosts."*.example.com"] rate = "5/s"`).
    #[serde(with = "text::hosts")]
    pub hosts: Vec<HostRule>,
    /// Fetch each host's robots.txt first and skip what it disallows.
    #[serde(with = "text::flag")]
    pub respect_robots: bool,
    /// Time allowed to establish a connection (TCP and TLS).
    #[serde(with = "text::duration")]
    pub connect_timeout: Duration,
    /// Longest silence allowed while waiting for headers or body data.
    #[serde(with = "text::duration")]
    pub read_timeout: Duration,
    /// Time allowed for one whole attempt: connect, headers and body.
    #[serde(with = "text::duration")]
    pub timeout: Duration,
    /// How long an idle pooled connection is kept for reuse before it is
    /// closed.
    #[serde(with = "text::duration")]
    pub idle_timeout: Duration,
    /// Retries after the first attempt, for failures that can succeed later
    /// (see [`crate::politeness::retry`]).
    #[serde(with = "text::count")]
    pub retries: u32,
    /// The first backoff ceiling; the ceiling doubles with each retry.
    #[serde(with = "text::duration")]
    pub backoff_base: Duration,
    /// The highest backoff ceiling.
    #[serde(with = "text::duration")]
    pub backoff_max: Duration,
    /// The longest `Retry-After` volley waits for. A server that asks for
    /// more gets no retry: the outcome is its last response.
    #[serde(with = "text::duration")]
    pub max_retry_after: Duration,
    /// Redirects followed before giving up with `too_many_redirects`.
    #[serde(with = "text::count")]
    pub max_redirects: usize,
    /// Extra request headers, `(name, value)`, sent with every request. In
    /// text: `"Name: value"` strings, as curl's `-H` takes them.
    #[serde(rename = "header", with = "text::headers")]
    pub headers: Vec<(String, String)>,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// PEM files of extra certificate authorities to trust, besides the
    /// system's (for internal or test servers).
    #[serde(rename = "ca-cert", with = "text::paths")]
    pub ca_certs: Vec<PathBuf>,
    /// Name servers to ask instead of the system's (`/etc/resolv.conf`). In
    /// text: `IP` or `IP:PORT` (port 53 by default).
    #[serde(rename = "dns-server", with = "text::dns_servers")]
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// Refuse requests to loopback, private, link-local and other special
    /// addresses (the SSRF guard, [`crate::http::guard`]); the outcome is
    /// `forbidden_address`. On by default in `volley serve`.
    #[serde(with = "text::flag")]
    pub deny_private: bool,
    /// Ranges opened on purpose when `deny_private` is on (CIDR texts,
    /// `127.0.0.0/8`).
    #[serde(with = "text::strings")]
    pub allow_private: Vec<String>,
    /// The proxy for every request: `http://`, `https://`, `socks5://`
    /// (names resolved here) or `socks5h://` (names resolved by the proxy).
    /// `None` uses `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` if set.
    pub proxy: Option<String>,
    /// Hosts reached without the proxy: names (a name also covers its
    /// subdomains), `*` for all, IPs or CIDR ranges; entries may be comma
    /// lists. Empty uses `NO_PROXY` if set.
    #[serde(with = "text::strings")]
    pub no_proxy: Vec<String>,
    /// Accept any TLS certificate, unverified (curl's `-k`): for internal
    /// servers with self-made certificates. Runs say so on stderr.
    #[serde(with = "text::flag")]
    pub insecure: bool,
    /// A client certificate (PEM) for servers that ask for one (mutual
    /// TLS); needs `client_key`.
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// HTTP Basic credentials, `NAME:PASSWORD` (RFC 7617), sent to every
    /// host as `Authorization` and dropped on a redirect to another host.
    /// A secret: never stored with a job, never shown.
    #[serde(skip_serializing)]
    pub user: Option<String>,
    /// A file holding a bearer token (RFC 6750), sent to every host as
    /// `Authorization: Bearer …` and dropped on a redirect to another host.
    /// The path is stored with a job; the token is read by each run.
    pub bearer_token_file: Option<PathBuf>,
    /// Keep a cookie store for the run: `Set-Cookie` answers are sent back
    /// as `Cookie` to the hosts they belong to (RFC 6265). Without a
    /// `cookie_jar` the store starts empty with each run.
    #[serde(with = "text::flag")]
    pub cookies: bool,
    /// A cookie file in the Netscape format curl and wget write: loaded
    /// before the run (a missing file is an empty store) and written back,
    /// mode 0600, when the run ends. Implies `cookies`.
    pub cookie_jar: Option<PathBuf>,
    /// Where to save bodies, named by SHA-256; `None` hashes and drops them.
    pub save_bodies: Option<PathBuf>,
    /// Archive every exchange as WARC/1.1 records in files named
    /// `PREFIX-<timestamp>-<serial>.warc.gz` ([`crate::warc`]); `None`
    /// archives nothing.
    pub warc: Option<String>,
    /// With `warc`: a new file is begun once one reaches this many bytes
    /// (compressed). In text: a count with an optional 1024-based suffix.
    #[serde(with = "text::bytes")]
    pub warc_max_size: u64,
    /// With `warc`: the algorithm of the records' block and payload
    /// digests, `sha1` or `sha256`.
    pub warc_digest: crate::warc::DigestAlgorithm,
    /// Largest decoded body read, in bytes; past it the outcome is
    /// `body_too_large`. `None` for no limit. In text: a count with an
    /// optional 1024-based suffix (`512K`, `10M`, `2G`).
    #[serde(rename = "max-body", with = "text::opt_bytes")]
    pub max_body_bytes: Option<u64>,
    /// Largest ratio of decoded to received bytes, checked once a body has
    /// decoded to more than 1 MiB; past it the outcome is
    /// `decompression_bomb`.
    #[serde(with = "text::count")]
    pub max_decompression_ratio: u64,
    /// Slowest body transfer allowed: fewer than `min_speed_bytes` bytes per
    /// second over a whole `speed_window` is `too_slow`. `None` for no limit.
    #[serde(rename = "min-speed", with = "text::opt_bytes")]
    pub min_speed_bytes: Option<u64>,
    /// The window over which `min_speed_bytes` is measured.
    #[serde(with = "text::duration")]
    pub speed_window: Duration,
    /// Time allowed for the whole run; tasks without an outcome by then get
    /// `deadline`. `None` for no limit.
    #[serde(with = "text::opt_duration")]
    pub deadline: Option<Duration>,
    /// Pagination, items and extraction for each fetched page (keys
    /// `paginate`, `cursor-param`, `items`, `extract`, `page-size`,
    /// `max-pages`).
    #[serde(flatten)]
    pub pages: crate::pipeline::process::PageRules,
    /// After a graceful stop is asked for, how long requests in flight may
    /// run before they are abandoned (and left for the next run).
    #[serde(with = "text::duration")]
    pub grace: Duration,
    /// Send `If-None-Match` / `If-Modified-Since` from what the database
    /// remembers of each URL ([`crate::http::refresh`]); a `304` is
    /// `not_modified`.
    #[serde(with = "text::flag")]
    pub refresh: bool,
    /// Make no request for a URL whose body the server confirmed less than
    /// this long ago; the outcome is `fresh`. `None` always asks.
    #[serde(with = "text::opt_duration")]
    pub max_age: Option<Duration>,
    /// Make no request for a URL still fresh by the `Cache-Control:
    /// max-age` or `Expires` of its last response (RFC 9111 §4.2); the
    /// outcome is `fresh`.
    #[serde(with = "text::flag")]
    pub respect_cache_control: bool,
    /// With pagination: a page that is `not_modified` or `fresh` still
    /// leads to the next page its last full response named, so the whole
    /// chain is checked. Without it such a page ends its chain.
    #[serde(with = "text::flag")]
    pub paginate_always: bool,
}

use super::text;
use crate::politeness::host::{HostRule, Rate};

/// The default `User-Agent`: `volley/<version>`.
pub const DEFAULT_USER_AGENT: &str = concat!("volley/", env!("CARGO_PKG_VERSION"));

impl Default for FetchSpec {
    fn default() -> Self {
        FetchSpec {
            concurrency: 64,
            per_host: 8,
            rate: None,
            global_rate: None,
            hosts: Vec::new(),
            respect_robots: false,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(5),
            retries: 3,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            max_redirects: 10,
            headers: Vec::new(),
            insecure: false,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            ca_certs: Vec::new(),
            dns_servers: Vec::new(),
            deny_private: false,
            allow_private: Vec::new(),
            proxy: None,
            no_proxy: Vec::new(),
            client_cert: None,
            client_key: None,
            user: None,
            bearer_token_file: None,
            cookies: false,
            cookie_jar: None,
            save_bodies: None,
            warc: None,
            warc_max_size: 1 << 30,
            warc_digest: crate::warc::DigestAlgorithm::Sha1,
            max_body_bytes: None,
            max_decompression_ratio: 200,
            min_speed_bytes: None,
            speed_window: Duration::from_secs(30),
            deadline: None,
            pages: crate::pipeline::process::PageRules::default(),
            grace: Duration::from_secs(5),
            refresh: false,
            max_age: None,
            respect_cache_control: false,
            paginate_always: false,
        }
    }
}

/// A [`FetchSpec`] value that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// A count that must be at least 1 is 0.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A timeout of zero would fail every request.
    #[error("{0} must be longer than 0")]
    ZeroDuration(&'static str),
    /// `backoff_base` is above `backoff_max`.
    #[error("--backoff-base ({base:?}) must not exceed --backoff-max ({max:?})")]
    BackoffOrder {
        /// The configured base.
        base: Duration,
        /// The configured maximum.
        max: Duration,
    },
    /// The pagination or extraction options do not fit together.
    #[error("{0}")]
    Pages(String),
    /// A host rule's pattern can never match a host.
    #[error(transparent)]
    HostRule(#[from] crate::politeness::host::RuleError),
    /// An option that does not parse or does not exist, named with where it
    /// came from (see [`crate::options`]).
    #[error("{0}")]
    Option(String),
    /// An `--allow-private` range that does not parse.
    #[error(transparent)]
    Range(#[from] crate::http::guard::BadRange),
    /// A proxy URL of a scheme volley cannot use.
    #[error("--proxy {0}: give a proxy URL: http://, https://, socks5:// or socks5h://HOST:PORT")]
    Proxy(String),
    /// A proxy with the address rules: the proxy would connect, not
    /// volley, so the rules could not hold.
    #[error(
        "--proxy cannot be used with --deny-private: the proxy makes the connections, so the address rules could not be checked"
    )]
    ProxyWithAddressRules,
    /// A client certificate without its key, or a key without its
    /// certificate.
    #[error("--client-cert and --client-key go together: give both PEM files")]
    ClientIdentity,
    /// A count above its ceiling.
    #[error("{0} must be at most {1}")]
    TooLarge(&'static str, usize),
    /// A duration above [`MAX_DURATION`].
    #[error("{0} must be at most 365 days")]
    TooLong(&'static str),
    /// `--user` without a colon.
    #[error("--user takes NAME:PASSWORD (a colon between them)")]
    User,
    /// `--user` and `--bearer-token-file` together.
    #[error("--user and --bearer-token-file both set Authorization: give one")]
    AuthConflict,
    /// A header name or value HTTP does not allow.
    #[error("invalid header {0:?}: expected 'Name: value' with a valid field name and value")]
    Header(String),
}

/// Largest `concurrency`, `per_host` or host-rule concurrency: far above
/// what one machine's sockets allow, and below what a semaphore can count.
pub const MAX_CONCURRENCY: usize = 1_000_000;

/// Longest duration any option may hold (365 days): a deadline computed
/// from it can never overflow a clock.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

impl FetchSpec {
    /// The address rules these options ask for: open, or the private
    /// ranges refused except the allowed ones.
    ///
    /// # Errors
    /// [`SpecError::Range`] for an allowed range that does not parse.
    pub fn address_rules(&self) -> Result<crate::http::guard::AddressRules, SpecError> {
        if !self.deny_private {
            return Ok(crate::http::guard::AddressRules::open());
        }
        Ok(crate::http::guard::AddressRules::deny_private(
            &self.allow_private,
        )?)
    }

    /// Checks that the values can work together.
    ///
    /// # Errors
    /// The first [`SpecError`] found, worded for a person to fix.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.concurrency == 0 {
            return Err(SpecError::Zero("--concurrency"));
        }
        if self.per_host == 0 {
            return Err(SpecError::Zero("--per-host"));
        }
        for (name, n) in [
            ("--concurrency", self.concurrency),
            ("--per-host", self.per_host),
        ]
        .into_iter()
        .chain(
            self.hosts
                .iter()
                .filter_map(|rule| Some(("a host's concurrency", rule.concurrency?))),
        ) {
            if n > MAX_CONCURRENCY {
                return Err(SpecError::TooLarge(name, MAX_CONCURRENCY));
            }
        }
        for (name, d) in [
            ("--connect-timeout", self.connect_timeout),
            ("--read-timeout", self.read_timeout),
            ("--timeout", self.timeout),
            ("--idle-timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(SpecError::ZeroDuration(name));
            }
        }
        for (name, d) in [
            ("--connect-timeout", Some(self.connect_timeout)),
            ("--read-timeout", Some(self.read_timeout)),
            ("--timeout", Some(self.timeout)),
            ("--idle-timeout", Some(self.idle_timeout)),
            ("--backoff-max", Some(self.backoff_max)),
            ("--max-retry-after", Some(self.max_retry_after)),
            ("--speed-window", Some(self.speed_window)),
            ("--deadline", self.deadline),
            ("--grace", Some(self.grace)),
        ] {
            if d.is_some_and(|d| d > MAX_DURATION) {
                return Err(SpecError::TooLong(name));
            }
        }
        if self.backoff_base > self.backoff_max {
            return Err(SpecError::BackoffOrder {
                base: self.backoff_base,
                max: self.backoff_max,
            });
        }
        if self.hosts.iter().any(|rule| rule.concurrency == Some(0)) {
            return Err(SpecError::Zero("a host's concurrency"));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(SpecError::ClientIdentity);
        }
        if let Some(proxy) = &self.proxy {
            let scheme = proxy.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
            if !matches!(
                scheme.as_deref(),
                Some("http" | "https" | "socks5" | "socks5h")
            ) {
                return Err(SpecError::Proxy(proxy.clone()));
            }
            if self.deny_private {
                return Err(SpecError::ProxyWithAddressRules);
            }
        }
        self.host_policy()?;
        self.address_rules()?;
        self.pages.validate().map_err(SpecError::Pages)?;
        if self.warc.is_none() {
            let defaults = FetchSpec::default();
            let given = [
                (
                    "--warc-max-size",
                    self.warc_max_size != defaults.warc_max_size,
                ),
                ("--warc-digest", self.warc_digest != defaults.warc_digest),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
                return Err(SpecError::Pages(format!(
                    "{flag} shapes an archive: give --warc PREFIX too"
                )));
            }
        } else if self.warc.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err(SpecError::Pages(
                "--warc needs a file prefix, such as archive/crawl".into(),
            ));
        } else if self.warc_max_size == 0 {
            return Err(SpecError::Zero("--warc-max-size"));
        }
        if self.speed_window.is_zero() {
            return Err(SpecError::ZeroDuration("--speed-window"));
        }
        if self.max_decompression_ratio == 0 {
            return Err(SpecError::Zero("--max-decompression-ratio"));
        }
        if self.user.as_deref().is_some_and(|u| !u.contains(':')) {
            return Err(SpecError::User);
        }
        if self.user.is_some() && self.bearer_token_file.is_some() {
            return Err(SpecError::AuthConflict);
        }
        let host_headers = self.hosts.iter().flat_map(|rule| &rule.headers);
        for (name, value) in self.headers.iter().chain(host_headers) {
            let ok = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
                && reqwest::header::HeaderValue::from_str(value).is_ok();
            if !ok {
                return Err(SpecError::Header(format!("{name}: {value}")));
            }
        }
        Ok(())
    }
}

impl FetchSpec {
    /// The archive these options ask for (`warc`), if any.
    pub fn warc_options(&self) -> Option<crate::warc::WarcOptions> {
        self.warc.as_ref().map(|prefix| crate::warc::WarcOptions {
            prefix: prefix.clone(),
            max_file_bytes: self.warc_max_size,
            digest: self.warc_digest,
        })
    }

    /// Whether the run keeps a cookie store (`cookies`, or a `cookie_jar`).
    pub fn keeps_cookies(&self) -> bool {
        self.cookies || self.cookie_jar.is_some()
    }

    /// The per-host limits: `per_host` and `rate` for every host, overridden
    /// by the first matching rule of `hosts`.
    ///
    /// # Errors
    /// [`SpecError::HostRule`] for a rule that can never match a host.
    pub fn host_policy(&self) -> Result<crate::politeness::host::Policy, SpecError> {
        let limits = crate::politeness::host::HostLimits {
            concurrency: self.per_host,
            rate: self.rate,
        };
        Ok(crate::politeness::host::Policy::new(limits, &self.hosts)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_is_valid() {
        assert_eq!(FetchSpec::default().validate(), Ok(()));
    }

    #[test]
    fn rejects_zero_limits_and_bad_headers() {
        let spec = FetchSpec {
            per_host: 0,
            ..FetchSpec::default()
        };
        assert_eq!(spec.validate(), Err(SpecError::Zero("--per-host")));
        let spec = FetchSpec {
            headers: vec![("Bad Name".into(), "v".into())],
            ..FetchSpec::default()
        };
        assert!(matches!(spec.validate(), Err(SpecError::Header(_))));
    }

    #[test]
    fn rejects_counts_and_durations_beyond_their_ceilings() {
        let spec = FetchSpec {
            concurrency: MAX_CONCURRENCY + 1,
            ..FetchSpec::default()
        };
        assert_eq!(
            spec.validate(),
            Err(SpecError::TooLarge("--concurrency", MAX_CONCURRENCY))
        );
        let spec = FetchSpec {
            deadline: Some(MAX_DURATION + Duration::from_secs(1)),
            ..FetchSpec::default()
        };
        assert_eq!(spec.validate(), Err(SpecError::TooLong("--deadline")));
        let spec = FetchSpec {
            concurrency: MAX_CONCURRENCY,
            deadline: Some(MAX_DURATION),
            ..FetchSpec::default()
        };
        assert_eq!(spec.validate(), Ok(()));
    }
}
