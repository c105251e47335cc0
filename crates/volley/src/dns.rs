//! Name resolution for the shared client, with failures that say so.
//!
//! The client resolves host names through [`Resolver`] rather than its
//! built-in resolver, so that a failed lookup reaches the classifier as a
//! typed [`DnsError`] in the error's source chain. [`crate::fetch::classify`]
//! finds it there by type: the `dns` class never depends on the words of an
//! error message (which contain the URL, and so user data).
//!
//! Lookups run the system resolver (`getaddrinfo`, which reads
//! `/etc/hosts` and `/etc/resolv.conf`) on tokio's blocking pool. IP-literal
//! URLs never reach a resolver: the client connects to them directly.

use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A host name that did not resolve to any address.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve host name {name}: {reason}")]
pub struct DnsError {
    /// The name looked up.
    pub name: String,
    /// What the resolver said.
    pub reason: String,
}

/// The client's resolver: the system's, with typed failures.
#[derive(Debug, Default, Clone, Copy)]
pub struct Resolver;

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: the client puts the URL's port in.
            let found = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map(Iterator::collect::<Vec<SocketAddr>>);
            let addrs = match found {
                Ok(addrs) => addrs,
                Err(e) => {
                    return Err(Box::new(DnsError {
                        name: host,
                        reason: e.to_string(),
                    })
                        as Box<dyn std::error::Error + Send + Sync>);
                }
            };
            if addrs.is_empty() {
                return Err(Box::new(DnsError {
                    name: host,
                    reason: "no addresses".into(),
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
