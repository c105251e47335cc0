//! Retry policy: what is retried, and after how long.
//!
//! Only failures that can succeed later are retried: failures to connect,
//! timeouts, connection resets, and the statuses 408, 429, 500, 502, 503
//! and 504. Everything else (404, TLS errors, bad bodies) is final at once.
//!
//! The wait before retry *n* (1-based) is drawn uniformly from
//! `[0, min(backoff_max, backoff_base × 2^(n-1))]`: exponential backoff with
//! *full jitter*, which spreads retries of many tasks that failed together
//! instead of bringing them back in a wave. When the response carries
//! `Retry-After` (RFC 9110 §10.2.3, as delay-seconds or an HTTP-date), that
//! wait is used instead; if it is longer than `max_retry_after`, volley does
//! not retry at all, since coming back sooner than the server asked is both
//! impolite and likely to fail the same way.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use crate::options::FetchSpec;
use crate::outcome::Class;

/// Whether a final HTTP status is worth retrying.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Whether a transport failure of this class is worth retrying.
pub fn is_retryable_class(class: Class) -> bool {
    matches!(
        class,
        Class::ConnectRefused
            | Class::ConnectTimeout
            | Class::Connect
            | Class::ReadTimeout
            | Class::TotalTimeout
            | Class::Reset
            | Class::Proxy
    )
}

/// Parses a `Retry-After` value: delay-seconds (`"120"`) or an HTTP-date
/// (`"Fri, 31 Dec 1999 23:59:59 GMT"`), per RFC 9110 §10.2.3.
///
/// A date in the past means "now" (zero). Returns `None` for anything else.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// How long until an exhausted rate limit resets, from the response's
/// rate-limit fields, if the server says nothing remains.
///
/// Reads `RateLimit-Remaining`/`RateLimit-Reset`, `X-RateLimit-Remaining`/
/// `X-RateLimit-Reset`, and the combined `RateLimit: remaining=0, reset=30`
/// (IETF httpapi draft). A reset above 10^9 is taken as Unix epoch seconds
/// (as GitHub sends it), anything else as seconds from now.
pub fn rate_limit_reset(headers: &reqwest::header::HeaderMap, now: SystemTime) -> Option<Duration> {
    let field = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let number = |v: &str| {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    let (remaining, reset) = if let Some(remaining) = field("ratelimit-remaining") {
        (number(remaining), field("ratelimit-reset").and_then(number))
    } else if let Some(remaining) = field("x-ratelimit-remaining") {
        (
            number(remaining),
            field("x-ratelimit-reset").and_then(number),
        )
    } else if let Some(combined) = field("ratelimit") {
        let item = |key: &str| {
            combined
                .split([',', ';'])
                .filter_map(|part| part.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
                .and_then(|(_, v)| number(v))
        };
        (item("remaining"), item("reset"))
    } else {
        return None;
    };
    if remaining != Some(0.0) {
        return None;
    }
    let reset = reset?;
    if reset > 1e9 {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(reset);
        return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
    }
    Some(Duration::from_secs_f64(reset))
}

/// The retry budget and backoff schedule of one task.
#[derive(Debug)]
pub struct Backoff {
    ceilings: ExponentialBackoff,
    max_retry_after: Duration,
    retries: u32,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Keep this attempt's result as the outcome; `note` says why, if the
    /// failure was retryable.
    Final {
        /// Why a retryable failure was not retried.
        note: Option<String>,
    },
}

impl Backoff {
    /// A fresh schedule with `spec.retries` retries.
    pub fn new(spec: &FetchSpec) -> Backoff {
        let ceilings = ExponentialBuilder::default()
            .with_min_delay(spec.backoff_base)
            .with_max_delay(spec.backoff_max)
            .with_max_times(spec.retries as usize)
            .build();
        Backoff {
            ceilings,
            max_retry_after: spec.max_retry_after,
            retries: spec.retries,
        }
    }

    /// Decides whether a failed attempt is retried.
    ///
    /// `retryable` says whether the failure can succeed later;
    /// `retry_after` is the server's `Retry-After`, if any.
    pub fn decide(&mut self, retryable: bool, retry_after: Option<Duration>) -> Decision {
        if !retryable {
            return Decision::Final { note: None };
        }
        if let Some(asked) = retry_after.filter(|d| *d > self.max_retry_after) {
            return Decision::Final {
                note: Some(format!(
                    "not retried: Retry-After asks for {}s, more than --max-retry-after {}s",
                    asked.as_secs(),
                    self.max_retry_after.as_secs()
                )),
            };
        }
        match self.ceilings.next() {
            None => Decision::Final {
                note: Some(format!("no retries left (--retries {})", self.retries)),
            },
            Some(ceiling) => {
                Decision::RetryAfter(retry_after.unwrap_or_else(|| full_jitter(ceiling)))
            }
        }
    }
}

/// A uniform random duration in `[0, ceiling]`.
fn full_jitter(ceiling: Duration) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(retries: u32) -> FetchSpec {
        FetchSpec {
            retries,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(350),
            max_retry_after: Duration::from_secs(10),
            ..FetchSpec::default()
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("valid date");
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-3", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn rate_limit_reset_reads_the_common_header_families() {
        use reqwest::header::{HeaderMap, HeaderValue};
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let map = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let draft = map(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "12")]);
        assert_eq!(rate_limit_reset(&draft, now), Some(Duration::from_secs(12)));
        let github = map(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "2000000030"),
        ]);
        assert_eq!(
            rate_limit_reset(&github, now),
            Some(Duration::from_secs(30))
        );
        let combined = map(&[("ratelimit", "limit=100, remaining=0, reset=7")]);
        assert_eq!(
            rate_limit_reset(&combined, now),
            Some(Duration::from_secs(7))
        );
        let left = map(&[("x-ratelimit-remaining", "5"), ("x-ratelimit-reset", "9")]);
        assert_eq!(rate_limit_reset(&left, now), None);
        assert_eq!(rate_limit_reset(&HeaderMap::new(), now), None);
    }

    #[test]
    fn full_jitter_stays_under_the_doubling_capped_ceiling() {
        for _ in 0..200 {
            let mut b = Backoff::new(&spec(4));
            let ceilings = [100, 200, 350, 350];
            for ceiling in ceilings {
                match b.decide(true, None) {
                    Decision::RetryAfter(d) => {
                        assert!(d <= Duration::from_millis(ceiling), "{d:?}")
                    }
                    other => panic!("expected a retry, got {other:?}"),
                }
            }
            assert_eq!(
                b.decide(true, None),
                Decision::Final {
                    note: Some("no retries left (--retries 4)".into())
                }
            );
        }
    }

    #[test]
    fn retry_after_is_obeyed_or_refused_when_too_long() {
        let mut b = Backoff::new(&spec(3));
        assert_eq!(
            b.decide(true, Some(Duration::from_secs(2))),
            Decision::RetryAfter(Duration::from_secs(2))
        );
        assert!(matches!(
            b.decide(true, Some(Duration::from_secs(11))),
            Decision::Final { note: Some(n) } if n.contains("--max-retry-after")
        ));
        assert_eq!(b.decide(false, None), Decision::Final { note: None });
    }

    #[test]
    fn classifies_what_can_succeed_later() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [200, 301, 400, 401, 404, 501, 505] {
            assert!(!is_retryable_status(s), "{s}");
        }
        assert!(is_retryable_class(Class::Reset));
        assert!(!is_retryable_class(Class::Tls));
        assert!(!is_retryable_class(Class::Dns));
    }
}
