//! The clients of a run, and what host rules change about each request.
//!
//! Most runs have one client. A config that marks some hosts
//! `insecure = true` gets a second one that does not verify certificates,
//! used for those hosts only; a host's own `headers` go to that host only.
//! Both are enforced at redirects too: a hop to another origin that would
//! change either (it leaves a host with its own headers, or it crosses
//! between a verified and an unverified host) is not followed by the
//! client but by [`crate::http::fetch::attempt`], with a new request made for
//! the new host ([`Clients::stops`]).

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::header::{ACCEPT_ENCODING, HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::http::guard::AddressRules;

use crate::http::cookies::Jar;
use crate::options::{FetchSpec, SpecError};
use crate::politeness::host::Policy;

/// What one host rule changes about the requests to its hosts, prepared
/// once per rule.
#[derive(Debug, Default)]
pub struct HostAsk {
    /// The rule's own headers (`[hosts."…"] headers`), values marked
    /// sensitive; `None` when it has none.
    pub headers: Option<HeaderMap>,
    /// Whether the hosts' certificates go unverified (`insecure = true`).
    pub insecure: bool,
}

/// The host rules that change requests, looked up by URL.
#[derive(Debug)]
pub struct HostAsks {
    policy: Policy,
    /// By rule pattern; the policy finds the rule.
    asks: HashMap<String, Arc<HostAsk>>,
}

impl HostAsks {
    /// The rules of `spec` that set headers or `insecure`, or `None` when
    /// none does (runs without them then look nothing up per request).
    ///
    /// # Errors
    /// As [`FetchSpec::host_policy`].
    pub fn of(spec: &FetchSpec) -> Result<Option<HostAsks>, SpecError> {
        if !spec
            .hosts
            .iter()
            .any(|rule| rule.insecure || !rule.headers.is_empty())
        {
            return Ok(None);
        }
        let mut asks = HashMap::new();
        for rule in &spec.hosts {
            let headers = (!rule.headers.is_empty()).then(|| {
                // Checked by `FetchSpec::validate`.
                rule.headers
                    .iter()
                    .filter_map(|(n, v)| {
                        let mut value = HeaderValue::from_str(v).ok()?;
                        value.set_sensitive(true);
                        Some((HeaderName::from_bytes(n.as_bytes()).ok()?, value))
                    })
                    .collect()
            });
            asks.entry(rule.pattern.clone()).or_insert_with(|| {
                Arc::new(HostAsk {
                    headers,
                    insecure: rule.insecure,
                })
            });
        }
        Ok(Some(HostAsks {
            policy: spec.host_policy()?,
            asks,
        }))
    }

    /// What the first rule matching `url`'s host changes, if any.
    pub fn for_url(&self, url: &Url) -> Option<&Arc<HostAsk>> {
        let rule = self.policy.rule_for(
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default(),
        )?;
        self.asks.get(&rule.pattern)
    }
}

/// Where a chain of redirects must stop, so that a new request is made for
/// the next host: shared by the clients' redirect policies and
/// [`crate::http::fetch::attempt`], which must agree on it.
#[derive(Debug)]
pub struct Stops {
    asks: Option<HostAsks>,
    /// `--insecure`: every host is unverified, by the one client.
    all_unverified: bool,
    /// `--warc`: every hop is its own exchange, archived as its own pair
    /// of records, so every redirect stops.
    every_hop: bool,
    /// The address rules, checked on each hop [`crate::http::fetch::attempt`]
    /// follows itself (an IP-literal hop never reaches the resolver).
    rules: crate::http::guard::AddressRules,
}

impl Stops {
    /// The stops of `spec`'s host rules.
    ///
    /// # Errors
    /// As [`FetchSpec::host_policy`].
    pub(crate) fn of(spec: &FetchSpec) -> Result<Stops, SpecError> {
        Ok(Stops {
            asks: HostAsks::of(spec)?,
            all_unverified: spec.insecure,
            every_hop: spec.warc.is_some(),
            rules: spec.address_rules()?,
        })
    }

    /// Whether `url`'s host goes unverified.
    pub fn unverified(&self, url: &Url) -> bool {
        self.all_unverified || self.ask(url).is_some_and(|a| a.insecure)
    }

    /// What the host rules change for `url`.
    pub fn ask(&self, url: &Url) -> Option<&Arc<HostAsk>> {
        self.asks.as_ref().and_then(|asks| asks.for_url(url))
    }

    /// Whether `url` may be fetched under the address rules.
    ///
    /// # Errors
    /// [`crate::http::guard::Forbidden`] for a refused IP literal.
    pub fn check(&self, url: &Url) -> Result<(), crate::http::guard::Forbidden> {
        self.rules.check_url(url)
    }

    /// Whether a chain that began at `first`, on a client that verifies or
    /// not (`unverified`), stops before the hop to `next`: every hop does
    /// under `--warc`; otherwise the hop changes origin, and either `first`
    /// has headers of its own or `next` needs the other client.
    pub fn stops(&self, first: &Url, next: &Url, unverified: bool) -> bool {
        self.every_hop
            || self.asks.is_some()
                && first.origin() != next.origin()
                && (self.ask(first).is_some_and(|a| a.headers.is_some())
                    || self.unverified(next) != unverified)
    }
}

/// The clients of a run: one that verifies certificates (or none, with
/// `--insecure`), and one that does not when host rules say
/// `insecure = true`; both share the run's cookie store.
#[derive(Debug, Clone)]
pub struct Clients {
    verified: reqwest::Client,
    unverified: Option<reqwest::Client>,
    stops: Arc<Stops>,
    /// The headers every request carries ([`default_headers`]), for the
    /// archive's request records.
    sent: HeaderMap,
}

impl Clients {
    /// Builds the clients `spec` needs, sharing `jar` (`--cookies`).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn build(spec: &FetchSpec, jar: Option<Arc<Jar>>) -> Result<Clients, ClientError> {
        let stops = Arc::new(Stops::of(spec)?);
        let some_unverified = !spec.insecure
            && stops
                .asks
                .as_ref()
                .is_some_and(|asks| asks.asks.values().any(|a| a.insecure));
        let verified = client_with(spec, jar.clone(), spec.insecure, Arc::clone(&stops))?;
        let unverified = some_unverified
            .then(|| client_with(spec, jar, true, Arc::clone(&stops)))
            .transpose()?;
        Ok(Clients {
            verified,
            unverified,
            stops,
            sent: default_headers(spec),
        })
    }

    /// The client for `url`, and whether it verifies certificates (`false`
    /// when it does).
    pub fn for_url(&self, url: &Url) -> (&reqwest::Client, bool) {
        match &self.unverified {
            Some(client) if self.stops.unverified(url) => (client, true),
            _ => (&self.verified, self.stops.all_unverified),
        }
    }

    /// The redirect stops, and what host rules change per URL.
    pub fn stops(&self) -> &Stops {
        &self.stops
    }

    /// The headers every request of the run carries (`User-Agent`,
    /// `Accept-Encoding`, `--header`).
    pub fn default_headers(&self) -> &HeaderMap {
        &self.sent
    }
}

/// Clients shared between the runs of one process whose client settings
/// are equal (`volley serve` runs many jobs at once, often with the same
/// options): their pools of kept-alive connections and TLS sessions then
/// serve every such job, so a stream of small jobs to one host reuses its
/// connections, and the per-host cap on connections holds across jobs.
///
/// Two specs share clients when they are equal in every option but those
/// that never reach a client ([`ClientCache::PER_RUN`]: concurrency, rates,
/// retries, what to keep, …). A run that keeps cookies gets clients of its
/// own, since the jar belongs to it. Files the settings name (`--ca-cert`,
/// `--client-cert`) are read when the clients are first built. At most
/// [`ClientCache::CAPACITY`] settings are kept; the least recently used
/// goes first (its connections close once its last run ends).
#[derive(Debug, Default)]
pub struct ClientCache {
    entries: std::sync::Mutex<HashMap<String, (Clients, std::time::Instant)>>,
}

impl ClientCache {
    /// Most distinct client settings kept at once.
    pub const CAPACITY: usize = 64;

    /// The options (as the serde form of [`FetchSpec`] names them) that
    /// no client reads: runs that differ only in these share clients.
    /// Everything else (headers, timeouts of connect and read, TLS, proxy,
    /// DNS, address rules, redirects, host rules, `--warc`'s redirect
    /// handling, `--per-host` as the idle pool's size) keeps clients apart.
    /// (`--user` is never serialized: its credentials go on each request.)
    pub const PER_RUN: &[&str] = &[
        "concurrency",
        "rate",
        "global-rate",
        "respect-robots",
        "timeout",
        "retries",
        "backoff-base",
        "backoff-max",
        "max-retry-after",
        "bearer-token-file",
        "save-bodies",
        "warc-max-size",
        "warc-digest",
        "max-body",
        "max-decompression-ratio",
        "min-speed",
        "speed-window",
        "deadline",
        "paginate",
        "cursor-param",
        "items",
        "extract",
        "page-size",
        "max-pages",
        "follow",
        "max-depth",
        "scope",
        "include",
        "exclude",
        "strip-query",
        "check-external",
        "sitemaps",
        "max-crawl-pages",
        "max-host-pages",
        "grace",
        "refresh",
        "max-age",
        "respect-cache-control",
        "paginate-always",
    ];

    /// The clients for `spec`: those of an earlier run with equal client
    /// settings, or new ones (kept for the next run). A run with a cookie
    /// `jar` gets clients of its own, sharing that jar, never kept.
    ///
    /// # Errors
    /// As [`Clients::build`].
    pub fn clients(&self, spec: &FetchSpec, jar: Option<Arc<Jar>>) -> Result<Clients, ClientError> {
        let (None, Some(key)) = (&jar, Self::key(spec)) else {
            return Clients::build(spec, jar);
        };
        let now = std::time::Instant::now();
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((clients, used)) = entries.get_mut(&key) {
            *used = now;
            return Ok(clients.clone());
        }
        let clients = Clients::build(spec, None)?;
        if entries.len() >= Self::CAPACITY
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(key, (clients.clone(), now));
        Ok(clients)
    }

    /// The client settings of `spec` as text (`None` if it does not
    /// serialize to an object, which a spec always does).
    fn key(spec: &FetchSpec) -> Option<String> {
        let serde_json::Value::Object(mut map) = serde_json::to_value(spec).ok()? else {
            return None;
        };
        for name in Self::PER_RUN {
            map.remove(*name);
        }
        Some(serde_json::Value::Object(map).to_string())
    }
}

/// The encodings volley decodes, as sent in `Accept-Encoding`.
pub const ACCEPTED_ENCODINGS: &str = "gzip, deflate, br, zstd";

/// Largest response header block accepted over HTTP/2, in bytes (HTTP/1.1
/// responses are held to hyper's limit of about 400 KiB and 100 fields).
pub const MAX_HEADER_BYTES: u32 = 256 * 1024;

/// Why the shared client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A `--ca-cert` file could not be read.
    #[error("cannot read CA certificate {path}: {source}")]
    CaRead {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `--ca-cert` file holds no usable PEM certificate.
    #[error("{path} is not a PEM certificate: {source}")]
    CaParse {
        /// The file.
        path: String,
        /// The parse error.
        source: reqwest::Error,
    },
    /// The DNS resolver could not be set up.
    #[error(transparent)]
    Dns(#[from] crate::http::dns::DnsSetupError),
    /// The TLS or connection set-up failed.
    #[error("cannot build the HTTP client: {0}")]
    Build(reqwest::Error),
    /// The `--proxy` URL does not make a proxy.
    #[error("--proxy {url}: {source}")]
    Proxy {
        /// The URL given.
        url: String,
        /// The underlying error.
        source: reqwest::Error,
    },
    /// A `--client-cert` or `--client-key` file could not be read.
    #[error("cannot read {path}: {source}")]
    IdentityRead {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The client certificate and key do not make an identity.
    #[error(
        "--client-cert {cert} with its --client-key is not a PEM certificate and private key: {source}"
    )]
    IdentityParse {
        /// The certificate file.
        cert: String,
        /// The underlying error.
        source: reqwest::Error,
    },
    /// The `--bearer-token-file` could not be read.
    #[error("cannot read --bearer-token-file {path}: {source}")]
    TokenRead {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The token (or `--user`) is empty or not a valid header value.
    #[error("{path}: the token must be one line of visible characters")]
    TokenBad {
        /// The file (or `--user`).
        path: String,
    },
    /// An `--allow-private` range does not parse.
    #[error(transparent)]
    Range(#[from] crate::options::SpecError),
}

/// The headers every request of `spec` carries: `User-Agent`,
/// `Accept-Encoding` ([`ACCEPTED_ENCODINGS`]) and the `--header` list,
/// which may replace `Accept-Encoding`.
fn default_headers(spec: &FetchSpec) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(agent) = HeaderValue::from_str(&spec.user_agent) {
        headers.insert(reqwest::header::USER_AGENT, agent);
    }
    headers.insert(
        ACCEPT_ENCODING,
        HeaderValue::from_static(ACCEPTED_ENCODINGS),
    );
    for (name, value) in &spec.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            if n == ACCEPT_ENCODING || n == reqwest::header::USER_AGENT {
                headers.remove(&n);
            }
            headers.append(n, v);
        }
    }
    headers
}

/// Builds a client from `spec`, verifying certificates unless `--insecure`,
/// without cookies; a run's clients come from [`Clients::build`].
///
/// # Errors
/// See [`ClientError`].
pub fn build_client(spec: &FetchSpec) -> Result<reqwest::Client, ClientError> {
    client_with(spec, None, spec.insecure, Arc::new(Stops::of(spec)?))
}

/// Builds one client of a run from `spec`: sharing `jar`, verifying
/// certificates unless `unverified`, and stopping redirects where `stops`
/// says.
///
/// # Errors
/// See [`ClientError`].
pub(crate) fn client_with(
    spec: &FetchSpec,
    jar: Option<Arc<Jar>>,
    unverified: bool,
    stops: Arc<Stops>,
) -> Result<reqwest::Client, ClientError> {
    let headers = default_headers(spec);
    let mut builder = reqwest::Client::builder();
    for path in &spec.ca_certs {
        let shown = || path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| ClientError::CaRead {
            path: shown(),
            source,
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| ClientError::CaParse {
                path: shown(),
                source,
            })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&spec.client_cert, &spec.client_key) {
        let mut pem = Vec::new();
        for path in [cert, key] {
            let mut text = std::fs::read(path).map_err(|source| ClientError::IdentityRead {
                path: path.display().to_string(),
                source,
            })?;
            pem.append(&mut text);
            pem.push(b'\n');
        }
        let identity =
            reqwest::Identity::from_pem(&pem).map_err(|source| ClientError::IdentityParse {
                cert: cert.display().to_string(),
                source,
            })?;
        builder = builder.identity(identity);
    }
    if unverified {
        builder = builder.danger_accept_invalid_certs(true);
    }
    if let Some(jar) = jar {
        builder = builder.cookie_provider(jar);
    }
    if let Some(url) = &spec.proxy {
        let route = crate::http::proxy::ProxyRoute::new(spec, |name| std::env::var(name).ok());
        let mut proxy = reqwest::Proxy::all(url).map_err(|source| ClientError::Proxy {
            url: url.clone(),
            source,
        })?;
        if let Some(list) = route.no_proxy_list() {
            proxy = proxy.no_proxy(reqwest::NoProxy::from_string(&list));
        }
        builder = builder.proxy(proxy);
    }
    let rules = spec.address_rules()?;
    if !rules.is_open() {
        // A proxy resolves and connects on its own: no rule would hold.
        builder = builder.no_proxy();
    }
    let resolver = crate::http::dns::Resolver::new(&spec.dns_servers)?.with_rules(rules.clone());
    builder
        .default_headers(headers)
        .connect_timeout(spec.connect_timeout)
        .read_timeout(spec.read_timeout)
        .redirect(redirect_policy(
            spec.max_redirects,
            rules,
            move |first: &Url, next: &Url| stops.stops(first, next, unverified),
        ))
        .dns_resolver(Arc::new(resolver))
        .pool_max_idle_per_host(spec.per_host)
        .pool_idle_timeout(spec.idle_timeout)
        .http2_max_header_list_size(MAX_HEADER_BYTES)
        .tcp_nodelay(true)
        .build()
        .map_err(ClientError::Build)
}

/// Why a redirect was not followed: more than `--max-redirects`, or a URL
/// already visited in the same chain.
#[derive(Debug, thiserror::Error)]
pub enum RedirectError {
    /// More redirects than allowed.
    #[error("stopped after {count} redirects (--max-redirects {max}); the last pointed to {last}")]
    TooMany {
        /// Redirects followed.
        count: usize,
        /// The limit.
        max: usize,
        /// The redirect not followed.
        last: String,
    },
    /// A redirect back to a URL of the same chain.
    #[error("redirect loop after {count} redirects: {last} was already visited")]
    Loop {
        /// Redirects followed.
        count: usize,
        /// The URL seen twice.
        last: String,
    },
}

/// The redirect policy: follow up to `max` redirects, refusing loops, with
/// errors that say how many and where to ([`RedirectError`]). A chain
/// stops where `stops(first, next)` says ([`Stops::stops`]: a hop to
/// another origin from a host with its own headers, or between a verified
/// and an unverified host), and [`attempt`] follows it with a new request
/// made for the next host: reqwest drops only `Authorization`, `Cookie` and
/// their kind on such a hop, and a host's headers may be any.
fn redirect_policy(
    max: usize,
    rules: AddressRules,
    stops: impl Fn(&Url, &Url) -> bool + Send + Sync + 'static,
) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        // IP-literal hops never reach the resolver's check.
        if let Err(forbidden) = rules.check_url(attempt.url()) {
            return attempt.error(forbidden);
        }
        if let Some(first) = attempt.previous().first()
            && stops(first, attempt.url())
        {
            return attempt.stop();
        }
        // `previous` holds every URL requested so far, the first included.
        let followed = attempt.previous().len().saturating_sub(1);
        let last = || attempt.url().to_string();
        if attempt.previous().contains(attempt.url()) {
            let last = last();
            return attempt.error(RedirectError::Loop {
                count: followed,
                last,
            });
        }
        if followed >= max {
            let last = last();
            return attempt.error(RedirectError::TooMany {
                count: followed,
                max,
                last,
            });
        }
        attempt.follow()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(cache: &ClientCache) -> usize {
        cache
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    #[test]
    fn runs_share_clients_unless_a_client_setting_differs() -> Result<(), ClientError> {
        let cache = ClientCache::default();
        let spec = FetchSpec::default();
        cache.clients(&spec, None)?;
        cache.clients(
            &FetchSpec {
                concurrency: spec.concurrency + 1,
                retries: spec.retries + 1,
                ..spec.clone()
            },
            None,
        )?;
        assert_eq!(entries(&cache), 1, "options no client reads are shared");
        cache.clients(
            &FetchSpec {
                user_agent: "another".into(),
                ..spec.clone()
            },
            None,
        )?;
        assert_eq!(entries(&cache), 2, "another User-Agent is another client");
        let cookies = FetchSpec {
            cookies: true,
            ..spec.clone()
        };
        cache.clients(&cookies, Some(Arc::new(Jar::default())))?;
        assert_eq!(entries(&cache), 2, "a run keeping cookies has its own");
        Ok(())
    }

    #[test]
    fn every_per_run_option_is_an_option() -> Result<(), serde_json::Error> {
        let serde_json::Value::Object(spec) = serde_json::to_value(FetchSpec::default())? else {
            panic!("a spec serializes to an object");
        };
        for name in ClientCache::PER_RUN {
            assert!(spec.contains_key(*name), "{name} is not an option");
        }
        Ok(())
    }
}
