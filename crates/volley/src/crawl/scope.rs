//! Which links a crawl follows, which it only checks, and how it spells
//! them: `--scope`, `--include`, `--exclude`, `--check-external` and
//! `--strip-query`.

use std::fmt;
use std::str::FromStr;

use regex::RegexSet;
use url::Url;

/// Which links a crawl follows, decided against the seed a page descends
/// from (every page of a crawl was admitted the same way, so the seed's
/// host is the page's host under `host`, its registrable domain under
/// `domain`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scope {
    /// Links to the seed's host (any scheme or port): wget's
    /// `--recursive` without `--span-hosts`.
    #[default]
    Host,
    /// Links to any host of the seed's registrable domain (the Public
    /// Suffix List's eTLD+1: `a.example.co.uk` and `b.example.co.uk` share
    /// `example.co.uk`; `a.github.io` and `b.github.io` do not). A host
    /// without one (an IP address, `localhost`) is its own domain.
    Domain,
    /// Links on the seed's host (and port) under the seed's directory: the
    /// seed's path up to its last `/` (wget's `--no-parent`).
    Prefix,
}

impl Scope {
    /// Its text form, as `--scope` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Host => "host",
            Scope::Domain => "domain",
            Scope::Prefix => "prefix",
        }
    }

    /// Whether `link` is in the scope of a crawl seeded at `seed`.
    pub fn admits(self, seed: &Url, link: &Url) -> bool {
        let (Some(seed_host), Some(host)) = (seed.host_str(), link.host_str()) else {
            return false;
        };
        match self {
            Scope::Host => seed_host == host,
            Scope::Domain => seed_host == host || registrable(seed) == registrable(link),
            Scope::Prefix => {
                let dir = match seed.path().rfind('/') {
                    Some(at) => &seed.path()[..=at],
                    None => "/",
                };
                seed_host == host
                    && seed.port_or_known_default() == link.port_or_known_default()
                    && link.path().starts_with(dir)
            }
        }
    }
}

/// The registrable domain of `url`'s host (eTLD+1 by the Public Suffix
/// List); the host itself when it has none (an IP address, a bare suffix).
fn registrable(url: &Url) -> Option<&str> {
    match url.host()? {
        url::Host::Domain(name) => Some(psl::domain_str(name).unwrap_or(name)),
        url::Host::Ipv4(_) | url::Host::Ipv6(_) => url.host_str(),
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(text: &str) -> Result<Scope, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "host" => Ok(Scope::Host),
            "domain" => Ok(Scope::Domain),
            "prefix" => Ok(Scope::Prefix),
            other => Err(format!("--scope '{other}': write host, domain or prefix")),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a crawl does with one link of a page ([`LinkRules::reach`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// A page of the crawl: fetched, and its links followed in turn.
    Follow,
    /// Out of scope under `--check-external`: fetched once to check it,
    /// its links never followed.
    Check,
    /// Neither: out of scope, or refused by `--include`/`--exclude`.
    Skip,
}

/// The crawl's rules for links, compiled: scope, URL filters, the query
/// parameters dropped before dedupe, and whether out-of-scope links are
/// checked.
#[derive(Debug, Clone, Default)]
pub struct LinkRules {
    /// Which links are pages of the crawl.
    pub scope: Scope,
    /// A link is followed only if one of these matches its URL (none: all).
    include: Option<RegexSet>,
    /// A link none of whose patterns match is refused.
    exclude: Option<RegexSet>,
    /// Query parameters whose names match one of these are dropped.
    strip_query: Vec<glob::Pattern>,
    /// Out-of-scope links are fetched once (never followed).
    pub check_external: bool,
}

/// A crawl option that does not compile.
#[derive(Debug, thiserror::Error)]
pub enum LinkRulesError {
    /// An `--include`/`--exclude` pattern is not a regular expression.
    #[error("--{option} '{pattern}' is not a regular expression: {reason}")]
    Regex {
        /// `include` or `exclude`.
        option: &'static str,
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it (the regex crate's first line).
        reason: String,
    },
    /// A `--strip-query` pattern is not a glob.
    #[error(
        "--strip-query '{pattern}' is not a glob (write a name, or * and ? for any characters): {reason}"
    )]
    Glob {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn regex_set(
    option: &'static str,
    patterns: &[String],
) -> Result<Option<RegexSet>, LinkRulesError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    for pattern in patterns {
        if let Err(e) = regex::Regex::new(pattern) {
            return Err(LinkRulesError::Regex {
                option,
                pattern: pattern.clone(),
                reason: e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            });
        }
    }
    RegexSet::new(patterns)
        .map(Some)
        .map_err(|e| LinkRulesError::Regex {
            option,
            pattern: patterns.join(" "),
            reason: e.to_string(),
        })
}

impl LinkRules {
    /// Compiles the crawl's options: `include`/`exclude` regular
    /// expressions (matched anywhere in the URL unless anchored) and
    /// `strip_query` globs of query parameter names.
    ///
    /// # Errors
    /// [`LinkRulesError`] naming the first pattern that does not compile.
    pub fn new(
        scope: Scope,
        include: &[String],
        exclude: &[String],
        strip_query: &[String],
        check_external: bool,
    ) -> Result<LinkRules, LinkRulesError> {
        let strip_query = strip_query
            .iter()
            .map(|p| {
                glob::Pattern::new(p).map_err(|e| LinkRulesError::Glob {
                    pattern: p.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(LinkRules {
            scope,
            include: regex_set("include", include)?,
            exclude: regex_set("exclude", exclude)?,
            strip_query,
            check_external,
        })
    }

    /// The `--include` patterns, as given.
    pub fn include(&self) -> Vec<String> {
        self.include
            .as_ref()
            .map(|s| s.patterns().to_vec())
            .unwrap_or_default()
    }

    /// The `--exclude` patterns, as given.
    pub fn exclude(&self) -> Vec<String> {
        self.exclude
            .as_ref()
            .map(|s| s.patterns().to_vec())
            .unwrap_or_default()
    }

    /// Whether `--strip-query` drops any parameter.
    pub fn strips_query(&self) -> bool {
        !self.strip_query.is_empty()
    }

    /// The `--strip-query` globs, as given.
    pub fn strip_query(&self) -> Vec<String> {
        self.strip_query
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect()
    }

    /// What the crawl does with `link` (normalised, see [`LinkRules::normalize`])
    /// found on a page of the crawl seeded at `seed`.
    pub fn reach(&self, seed: &Url, link: &Url) -> Reach {
        let text = link.as_str();
        if self.exclude.as_ref().is_some_and(|s| s.is_match(text))
            || self.include.as_ref().is_some_and(|s| !s.is_match(text))
        {
            return Reach::Skip;
        }
        if self.scope.admits(seed, link) {
            Reach::Follow
        } else if self.check_external {
            Reach::Check
        } else {
            Reach::Skip
        }
    }

    /// Gives `url` the one spelling the crawl compares: [`super::normalize`],
    /// then the query parameters `--strip-query` names dropped (the query
    /// itself when none is left).
    pub fn normalize(&self, url: &mut Url) {
        super::normalize(url);
        if self.strip_query.is_empty() || url.query().is_none() {
            return;
        }
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(name, _)| !self.strip_query.iter().any(|p| p.matches(name)))
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        let before = url.query_pairs().count();
        if kept.len() == before {
            return;
        }
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
            super::normalize(url);
        }
    }
}

impl PartialEq for LinkRules {
    fn eq(&self, other: &LinkRules) -> bool {
        self.scope == other.scope
            && self.check_external == other.check_external
            && self.include() == other.include()
            && self.exclude() == other.exclude()
            && self.strip_query == other.strip_query
    }
}

impl Eq for LinkRules {}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("a URL")
    }

    #[test]
    fn host_scope_follows_links_to_the_seeds_host_only() {
        let seed = url("https://docs.example/guide/");
        let admits = |link: &str| Scope::Host.admits(&seed, &url(link));
        assert!(admits("https://docs.example/api/"));
        assert!(
            admits("http://docs.example:8080/other"),
            "any scheme or port"
        );
        assert!(!admits("https://example/"));
        assert!(!admits("https://www.docs.example/"));
    }

    #[test]
    fn domain_scope_follows_the_registrable_domain_by_the_public_suffix_list() {
        let seed = url("https://a.example.co.uk/");
        let admits = |link: &str| Scope::Domain.admits(&seed, &url(link));
        assert!(admits("https://b.example.co.uk/x"));
        assert!(admits("https://example.co.uk/"));
        assert!(!admits("https://other.co.uk/"), "co.uk is a public suffix");
        let pages = url("https://a.github.io/");
        assert!(
            !Scope::Domain.admits(&pages, &url("https://b.github.io/")),
            "github.io is a public suffix: each user's site is its own domain"
        );
        let ip = url("http://127.0.0.1:8080/");
        assert!(Scope::Domain.admits(&ip, &url("http://127.0.0.1:9/")));
        assert!(
            !Scope::Domain.admits(&ip, &url("http://10.0.0.1/")),
            "not 0.1 of TLD 1"
        );
    }

    #[test]
    fn prefix_scope_stays_under_the_seeds_directory() {
        let seed = url("https://h.test/docs/guide/index.html");
        let admits = |link: &str| Scope::Prefix.admits(&seed, &url(link));
        assert!(admits("https://h.test/docs/guide/"));
        assert!(admits("https://h.test/docs/guide/ch1/a.html"));
        assert!(!admits("https://h.test/docs/"), "the parent");
        assert!(
            !admits("https://h.test/docs/guidebook/"),
            "a sibling sharing letters"
        );
        assert!(!admits("https://h.test:8443/docs/guide/x"), "another port");
    }

    #[test]
    fn include_and_exclude_decide_before_scope_and_external_links_are_checked() {
        let seed = url("https://h.test/");
        let frontier = LinkRules::new(
            Scope::Host,
            &["/docs/".into(), "/api/".into()],
            &[r"\.pdf$".into()],
            &[],
            true,
        )
        .expect("compiles");
        let reach = |link: &str| frontier.reach(&seed, &url(link));
        assert_eq!(reach("https://h.test/docs/a"), Reach::Follow);
        assert_eq!(reach("https://h.test/docs/a.pdf"), Reach::Skip);
        assert_eq!(reach("https://h.test/blog/"), Reach::Skip, "not included");
        assert_eq!(reach("https://other.test/docs/"), Reach::Check);
        let err =
            LinkRules::new(Scope::Host, &["(".into()], &[], &[], false).expect_err("a bad regex");
        assert!(
            err.to_string()
                .starts_with("--include '(' is not a regular expression"),
            "{err}"
        );
    }

    #[test]
    fn strip_query_drops_the_named_parameters_before_dedupe() {
        let frontier = LinkRules::new(
            Scope::Host,
            &[],
            &[],
            &["utm_*".into(), "sid".into()],
            false,
        )
        .expect("compiles");
        let spelled = |text: &str| {
            let mut u = url(text);
            frontier.normalize(&mut u);
            u.to_string()
        };
        assert_eq!(
            spelled("https://h.test/a?utm_source=x&id=3&sid=9#top"),
            "https://h.test/a?id=3"
        );
        assert_eq!(spelled("https://h.test/a?utm_medium=y"), "https://h.test/a");
        assert_eq!(spelled("https://h.test/a?b=%7e"), "https://h.test/a?b=~");
    }
}
