//! The clients of a run, and what host rules change about each request.
//!
//! Most runs have one client. A config that marks some hosts
//! `insecure = true` gets a second one that does not verify certificates,
//! used for those hosts only; a host's own `headers` go to that host only.
//! Both are enforced at redirects too: a hop to another origin that would
//! change either (it leaves a host with its own headers, or it crosses
//! between a verified and an unverified host) is not followed by the
//! client but by [`crate::fetch::attempt`], with a new request made for
//! the new host ([`Clients::stops`]).

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::cookies::Jar;
use crate::fetch::ClientError;
use crate::host::Policy;
use crate::spec::{FetchSpec, SpecError};

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
/// [`crate::fetch::attempt`], which must agree on it.
#[derive(Debug)]
pub struct Stops {
    asks: Option<HostAsks>,
    /// `--insecure`: every host is unverified, by the one client.
    all_unverified: bool,
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

    /// Whether a chain that began at `first`, on a client that verifies or
    /// not (`unverified`), stops before the hop to `next`: the hop changes
    /// origin, and either `first` has headers of its own or `next` needs
    /// the other client.
    pub fn stops(&self, first: &Url, next: &Url, unverified: bool) -> bool {
        self.asks.is_some()
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
        let verified =
            crate::fetch::client_with(spec, jar.clone(), spec.insecure, Arc::clone(&stops))?;
        let unverified = some_unverified
            .then(|| crate::fetch::client_with(spec, jar, true, Arc::clone(&stops)))
            .transpose()?;
        Ok(Clients {
            verified,
            unverified,
            stops,
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
}
