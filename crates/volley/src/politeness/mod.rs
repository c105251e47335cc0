//! Politeness: how hard volley may press each host.
//!
//! [`host`] holds each host's per-host limit, rate limit and pauses (the
//! gate every request passes); [`retry`] decides what is retried and after
//! how long (exponential backoff with full jitter, `Retry-After` per RFC
//! 9110 §10.2.3); [`robots`] reads robots.txt (RFC 9309) for
//! `--respect-robots`.

pub mod host;
pub mod retry;
pub mod robots;
