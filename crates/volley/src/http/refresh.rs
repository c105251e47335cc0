//! Refresh: what the database remembers of each URL, and the conditional
//! requests and freshness decisions made from it.
//!
//! Every `ok` outcome updates one row per URL in the `resources` table (its
//! validators, body hash and path, when it was checked, how long the server
//! said it stays fresh), across jobs of the same database. A later job with
//! `--refresh` sends `If-None-Match` / `If-Modified-Since` from that row
//! (RFC 9110 §13.1); a `304 Not Modified` becomes the outcome class
//! `not_modified`, which carries the remembered body. `--max-age` and
//! `--respect-cache-control` skip the request altogether while the row is
//! young enough (class `fresh`), the latter by the freshness the server
//! declared (RFC 9111 §4.2).
//!
//! volley is a *private* cache in RFC 9111's terms: `s-maxage` and `public`
//! are for shared caches and are not read; `no-store` keeps the response's
//! validators and freshness out of the row (the body hash, volley's own
//! record, stays); `no-cache` and `max-age=0` make a response stale at once.
//! No heuristic freshness (§4.2.2) is guessed from `Last-Modified`.

use std::time::{Duration, SystemTime};

use reqwest::header::{AGE, CACHE_CONTROL, DATE, ETAG, EXPIRES, HeaderMap, LAST_MODIFIED};

use crate::options::FetchSpec;

/// What the database remembers of a URL: one row of `resources`, keyed by
/// the task's URL (before redirects). Times are Unix epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The URL as requested (normalised, before redirects).
    pub url: String,
    /// The status of the last full response.
    pub status: Option<u16>,
    /// The last `ETag`, exactly as received (a weak `W/"…"` stays weak).
    pub etag: Option<String>,
    /// The last `Last-Modified`, exactly as received.
    pub last_modified: Option<String>,
    /// Hex SHA-256 of the last body.
    pub body_sha256: Option<String>,
    /// Where the last body was saved (`--save-bodies`), if it was.
    pub body_path: Option<String>,
    /// Decoded bytes of the last body.
    pub bytes: Option<u64>,
    /// `Content-Type` of the last body.
    pub content_type: Option<String>,
    /// The next page found on it (pagination), followed again by
    /// `--paginate-always` when the page is `not_modified` or `fresh`.
    pub next_url: Option<String>,
    /// When the server last confirmed this body: a `200` or a `304`.
    pub checked_at_ms: i64,
    /// When the body's hash last changed (first seen, or a different body).
    pub changed_at_ms: i64,
    /// Until when the server declared it fresh (`Cache-Control: max-age`,
    /// `Expires`); `None` for no declared freshness.
    pub fresh_until_ms: Option<i64>,
    /// In a crawl: the links found on the body (a JSON array of URLs),
    /// followed again when the page is `not_modified` or `fresh`.
    pub links: Option<String>,
}

/// The validators and freshness a response declared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheInfo {
    /// `ETag`, as received.
    pub etag: Option<String>,
    /// `Last-Modified`, as received.
    pub last_modified: Option<String>,
    /// Until when it is fresh (Unix ms), from `Cache-Control: max-age` or
    /// `Expires`, less its `Age`; `None` when it declares no freshness or
    /// `no-cache`.
    pub fresh_until_ms: Option<i64>,
    /// `Cache-Control: no-store`: remember no validators nor freshness.
    pub no_store: bool,
}

impl CacheInfo {
    /// Reads the caching headers of a response received at `received_at`.
    pub fn of(headers: &HeaderMap, received_at: SystemTime) -> CacheInfo {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut info = CacheInfo {
            etag: text(ETAG),
            last_modified: text(LAST_MODIFIED),
            ..CacheInfo::default()
        };
        let mut max_age: Option<u64> = None;
        let mut no_cache = false;
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',') {
                let (name, arg) = match directive.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (directive.trim(), None),
                };
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => info.no_store = true,
                    "no-cache" => no_cache = true,
                    // RFC 9111 §1.2.2: a delta that does not parse is
                    // invalid; a huge one is capped, not rejected.
                    "max-age" => match arg.map(str::parse::<u64>) {
                        Some(Ok(secs)) => max_age = Some(secs.min(MAX_LIFETIME_SECS)),
                        Some(Err(e)) if matches!(e.kind(), std::num::IntErrorKind::PosOverflow) => {
                            max_age = Some(MAX_LIFETIME_SECS);
                        }
                        _ => no_cache = true,
                    },
                    _ => {}
                }
            }
        }
        if info.no_store {
            return CacheInfo {
                no_store: true,
                ..CacheInfo::default()
            };
        }
        if no_cache {
            return info;
        }
        let date = |name| text(name).and_then(|v| httpdate::parse_http_date(&v).ok());
        let lifetime = match max_age {
            Some(secs) => Duration::from_secs(secs),
            None => match text(EXPIRES) {
                None => return info,
                // An invalid Expires (`0`, `-1`) means already expired (§5.3).
                Some(expires) => match httpdate::parse_http_date(&expires) {
                    Ok(at) => at
                        .duration_since(date(DATE).unwrap_or(received_at))
                        .unwrap_or_default(),
                    Err(_) => return info,
                },
            },
        };
        let age = text(AGE)
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(Duration::ZERO, Duration::from_secs);
        if let Some(left) = lifetime.checked_sub(age).filter(|d| !d.is_zero()) {
            info.fresh_until_ms = Some(epoch_ms(received_at).saturating_add(millis(left)));
        }
        info
    }
}

/// The longest freshness believed, whatever a server declares: one year,
/// as RFC 9111 §1.2.2 suggests for a delta-seconds overflow.
const MAX_LIFETIME_SECS: u64 = 365 * 24 * 3600;

/// What a task does with what the database remembers of its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Fetch it, unconditionally.
    Fetch,
    /// Fetch it with these validators (`--refresh`).
    Revalidate {
        /// For `If-None-Match`.
        etag: Option<String>,
        /// For `If-Modified-Since`.
        last_modified: Option<String>,
    },
    /// Make no request: the remembered body is fresh enough; the text says
    /// why (for the outcome's message).
    Fresh(String),
}

/// Whether the engine needs to read the remembered rows before fetching.
pub fn wanted(spec: &FetchSpec) -> bool {
    spec.refresh || spec.max_age.is_some() || spec.respect_cache_control
}

/// Decides the request for a task whose URL the database remembers as
/// `prior` (if at all), at `now_ms`.
///
/// A row is only trusted when its last response was a success with a body
/// hash: that is all `resources` ever holds.
pub fn plan(prior: Option<&Resource>, spec: &FetchSpec, now_ms: i64) -> Plan {
    let Some(prior) = prior else {
        return Plan::Fetch;
    };
    let age_ms = now_ms.saturating_sub(prior.checked_at_ms).max(0);
    if let Some(max_age) = spec.max_age
        && u128::try_from(age_ms).unwrap_or(0) < max_age.as_millis()
    {
        return Plan::Fresh(format!(
            "checked {} ago, within --max-age {}",
            crate::options::text::duration_text(Duration::from_millis(age_ms.unsigned_abs())),
            crate::options::text::duration_text(max_age)
        ));
    }
    if spec.respect_cache_control
        && let Some(until) = prior.fresh_until_ms.filter(|until| *until > now_ms)
    {
        return Plan::Fresh(format!(
            "fresh for {} more, as the server's Cache-Control or Expires said",
            crate::options::text::duration_text(Duration::from_millis(
                (until - now_ms).unsigned_abs()
            ))
        ));
    }
    if spec.refresh && (prior.etag.is_some() || prior.last_modified.is_some()) {
        return Plan::Revalidate {
            etag: prior.etag.clone(),
            last_modified: prior.last_modified.clone(),
        };
    }
    Plan::Fetch
}

/// The current time as Unix epoch milliseconds.
fn epoch_ms(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, millis)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        T0 + Duration::from_secs(secs)
    }

    #[test]
    fn freshness_comes_from_max_age_less_age_then_expires() {
        let info = CacheInfo::of(
            &headers(&[
                ("etag", "W/\"v1\""),
                ("cache-control", "public, max-age=60"),
                ("age", "10"),
                ("expires", "Thu, 01 Jan 1970 10:00:00 GMT"),
            ]),
            at(1000),
        );
        assert_eq!(info.etag.as_deref(), Some("W/\"v1\""));
        assert_eq!(info.fresh_until_ms, Some(1_050_000));
        let info = CacheInfo::of(
            &headers(&[
                ("date", "Thu, 01 Jan 1970 00:16:40 GMT"),
                ("expires", "Thu, 01 Jan 1970 00:17:40 GMT"),
            ]),
            at(1005),
        );
        assert_eq!(info.fresh_until_ms, Some(1_065_000));
        // An invalid Expires is already stale.
        let info = CacheInfo::of(&headers(&[("expires", "0")]), at(1000));
        assert_eq!(info.fresh_until_ms, None);
    }

    #[test]
    fn no_cache_and_no_store_are_respected() {
        let info = CacheInfo::of(
            &headers(&[
                ("cache-control", "no-cache, max-age=600"),
                ("etag", "\"a\""),
            ]),
            at(0),
        );
        assert_eq!(info.fresh_until_ms, None);
        assert_eq!(info.etag.as_deref(), Some("\"a\""));
        let info = CacheInfo::of(
            &headers(&[
                ("cache-control", "max-age=600"),
                ("cache-control", "no-store"),
            ]),
            at(0),
        );
        assert_eq!(
            info,
            CacheInfo {
                no_store: true,
                ..CacheInfo::default()
            }
        );
        let info = CacheInfo::of(&headers(&[("cache-control", "max-age=soon")]), at(0));
        assert_eq!(info.fresh_until_ms, None);
        let info = CacheInfo::of(
            &headers(&[("cache-control", "max-age=99999999999999999999999")]),
            at(0),
        );
        assert_eq!(
            info.fresh_until_ms,
            Some(i64::try_from(MAX_LIFETIME_SECS).unwrap_or(0) * 1000)
        );
    }

    fn prior() -> Resource {
        Resource {
            url: "http://a/".into(),
            status: Some(200),
            etag: Some("W/\"x\"".into()),
            last_modified: None,
            body_sha256: Some("ab".into()),
            body_path: None,
            bytes: Some(1),
            content_type: None,
            next_url: None,
            checked_at_ms: 10_000,
            changed_at_ms: 10_000,
            fresh_until_ms: Some(20_000),
            links: None,
        }
    }

    #[test]
    fn plans_skip_revalidate_or_fetch() {
        let refresh = FetchSpec {
            refresh: true,
            ..FetchSpec::default()
        };
        assert_eq!(plan(None, &refresh, 0), Plan::Fetch);
        assert_eq!(
            plan(Some(&prior()), &refresh, 15_000),
            Plan::Revalidate {
                etag: Some("W/\"x\"".into()),
                last_modified: None
            }
        );
        assert_eq!(
            plan(Some(&prior()), &FetchSpec::default(), 15_000),
            Plan::Fetch
        );
        let max_age = FetchSpec {
            max_age: Some(Duration::from_secs(5)),
            ..refresh.clone()
        };
        assert!(matches!(
            plan(Some(&prior()), &max_age, 14_999),
            Plan::Fresh(_)
        ));
        assert!(matches!(
            plan(Some(&prior()), &max_age, 15_000),
            Plan::Revalidate { .. }
        ));
        let cache_control = FetchSpec {
            respect_cache_control: true,
            ..FetchSpec::default()
        };
        assert!(matches!(
            plan(Some(&prior()), &cache_control, 19_999),
            Plan::Fresh(_)
        ));
        assert_eq!(plan(Some(&prior()), &cache_control, 20_000), Plan::Fetch);
    }
}
