//! Name resolution for the shared client: asynchronous, cached, bounded,
//! with failures that say so.
//!
//! With many hosts, resolution is on the critical path: a blocking
//! `getaddrinfo` per host ties up a thread of the blocking pool for as long
//! as the name server takes. [`Resolver`] uses hickory-resolver instead: an
//! asynchronous stub resolver reading `/etc/resolv.conf` and `/etc/hosts`
//! (or the name servers given with `--dns-server`), with a cache of at most
//! [`CACHE_ENTRIES`] answers, each kept no longer than its TTL. Where the
//! system configuration cannot be read, it falls back to the system's
//! `getaddrinfo` on tokio's blocking pool.
//!
//! A failed lookup reaches the classifier as a typed [`DnsError`] in the
//! error's source chain, so [`crate::http::fetch::classify`] finds it by type: the
//! `dns` class never depends on the words of an error message (which contain
//! the URL, and so user data). IP-literal URLs never reach a resolver: the
//! client connects to them directly.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::http::guard::AddressRules;

/// Most answers the resolver caches (positive and negative).
pub(crate) const CACHE_ENTRIES: u64 = 4096;

/// A host name that did not resolve to any address.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve host name {name}: {reason}")]
pub(crate) struct DnsError {
    /// The name looked up.
    pub name: String,
    /// What the resolver said.
    pub reason: String,
}

/// The resolver could not be set up from the given name servers.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up DNS resolution: {0}")]
pub struct DnsSetupError(String);

/// The client's resolver; see the module docs.
#[derive(Clone)]
pub(crate) struct Resolver {
    backend: Backend,
    /// Addresses refused (the SSRF guard): a name with any refused address
    /// fails as a whole with [`crate::http::guard::Forbidden`].
    rules: Arc<AddressRules>,
}

#[derive(Clone)]
enum Backend {
    Hickory(Arc<TokioResolver>),
    System,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.backend {
            Backend::Hickory(_) => "Resolver(hickory)",
            Backend::System => "Resolver(getaddrinfo)",
        })
    }
}

impl Resolver {
    /// A resolver asking `servers` (UDP, then TCP for long answers), or the
    /// system's name servers when `servers` is empty.
    ///
    /// # Errors
    /// [`DnsSetupError`] when the resolver cannot be built from `servers`.
    pub(crate) fn new(servers: &[SocketAddr]) -> Result<Resolver, DnsSetupError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if servers.is_empty() {
            match TokioResolver::builder_tokio() {
                Ok(builder) => builder,
                Err(e) => {
                    tracing::warn!(
                        "cannot read the system DNS configuration ({e}); using getaddrinfo"
                    );
                    return Ok(Resolver {
                        backend: Backend::System,
                        rules: Arc::default(),
                    });
                }
            }
        } else {
            let name_servers = servers
                .iter()
                .map(|addr| {
                    let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                    for connection in &mut server.connections {
                        connection.port = addr.port();
                    }
                    server
                })
                .collect();
            let config = ResolverConfig::from_name_servers(name_servers);
            TokioResolver::builder_with_config(config, provider)
        };
        let options = builder.options_mut();
        options.cache_size = CACHE_ENTRIES;
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        let resolver = builder.build().map_err(|e| DnsSetupError(e.to_string()))?;
        Ok(Resolver {
            backend: Backend::Hickory(Arc::new(resolver)),
            rules: Arc::default(),
        })
    }

    /// This resolver, failing every name that resolves to an address
    /// `rules` refuse (see [`crate::http::guard`]).
    pub(crate) fn with_rules(mut self, rules: AddressRules) -> Resolver {
        self.rules = Arc::new(rules);
        self
    }

    /// Resolves `host` to its addresses (port 0).
    ///
    /// # Errors
    /// [`DnsError`] when the name does not resolve, or resolves to nothing.
    pub(crate) async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, DnsError> {
        let fail = |reason: String| DnsError {
            name: host.to_owned(),
            reason,
        };
        let addrs: Vec<SocketAddr> = match &self.backend {
            Backend::Hickory(resolver) => resolver
                .lookup_ip(host)
                .await
                .map_err(|e| fail(e.to_string()))?
                .iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect(),
            Backend::System => tokio::net::lookup_host((host, 0))
                .await
                .map_err(|e| fail(e.to_string()))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(fail("no addresses".into()));
        }
        Ok(addrs)
    }
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolver
                .lookup(&host)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            // Every address, not just the first: the connector may try any.
            resolver
                .rules
                .check_resolved(&host, addrs.iter().map(SocketAddr::ip))
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
