//! HTTP: the clients of a run and one attempt at one URL.
//!
//! [`clients`] builds the pooled clients (TLS, proxies through `proxy`,
//! name resolution through `dns`, the address rules of [`guard`] checked
//! after every lookup); [`fetch`] makes one attempt and classifies what
//! happened; [`body`] counts, hashes and saves a body as it streams;
//! [`cookies`] keeps the run's cookie store; [`refresh`] turns what the
//! database remembers of a URL into conditional requests (RFC 9110 §13)
//! and freshness (RFC 9111 §4.2).

pub mod body;
pub mod clients;
pub mod cookies;
pub(crate) mod dns;
pub mod fetch;
pub mod guard;
pub(crate) mod proxy;
pub mod refresh;
