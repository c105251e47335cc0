//! robots.txt (RFC 9309), for `--respect-robots`.
//!
//! Each host's `/robots.txt` is fetched once per run, through the host's own
//! gate like any request, before the first URL of that host. What it says:
//!
//! * **2xx**: its rules for our user agent's product token (`volley` for
//!   `volley/0.1.0`, falling back to `*`) decide; `Crawl-delay` lowers the
//!   host's rate to one request per delay.
//! * **4xx** (no robots.txt): everything is allowed (RFC 9309 §2.3.1.3).
//! * **5xx or unreachable**: tried [`ATTEMPTS`] times with a growing wait;
//!   then everything is disallowed (§2.3.1.4), and the outcomes say why.
//!
//! Only the first [`MAX_BYTES`] of the file are read (RFC 9309 asks parsers
//! to handle at least 500 KiB).

use std::time::Duration;

use url::Url;

/// Bytes of robots.txt read at most.
pub const MAX_BYTES: usize = 512 * 1024;

/// Attempts at a robots.txt that answers 5xx or cannot be reached.
pub const ATTEMPTS: u32 = 3;

/// The verdict of a host's robots.txt.
pub enum Robots {
    /// Everything allowed (no robots.txt, or it allows all).
    AllowAll,
    /// Everything disallowed, and why.
    DisallowAll(String),
    /// The parsed rules for our agent.
    Rules(Box<texting_robots::Robot>),
}

impl std::fmt::Debug for Robots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Robots::AllowAll => f.write_str("AllowAll"),
            Robots::DisallowAll(why) => write!(f, "DisallowAll({why:?})"),
            Robots::Rules(robot) => write!(f, "Rules(delay {:?})", robot.delay),
        }
    }
}

impl Robots {
    /// Parses a robots.txt body for `agent` (a product token).
    pub fn parse(agent: &str, body: &[u8]) -> Robots {
        match texting_robots::Robot::new(agent, body) {
            Ok(robot) => Robots::Rules(Box::new(robot)),
            // The parser is forgiving; a file it cannot read at all is
            // treated like no file.
            Err(_) => Robots::AllowAll,
        }
    }

    /// Whether `url` may be fetched; the reason when not.
    pub fn check(&self, url: &Url) -> Result<(), String> {
        match self {
            Robots::AllowAll => Ok(()),
            Robots::DisallowAll(why) => Err(why.clone()),
            Robots::Rules(robot) => {
                if robot.allowed(url.as_str()) {
                    Ok(())
                } else {
                    Err("disallowed by the host's robots.txt".to_owned())
                }
            }
        }
    }

    /// The `Sitemap:` lines of the file (RFC 9309 §2.2.4 leaves them to
    /// other records; sitemaps.org defines them), as written.
    pub fn sitemaps(&self) -> &[String] {
        match self {
            Robots::Rules(robot) => &robot.sitemaps,
            _ => &[],
        }
    }

    /// The `Crawl-delay` for our agent, if any (and above zero).
    pub fn crawl_delay(&self) -> Option<Duration> {
        match self {
            Robots::Rules(robot) => robot
                .delay
                .filter(|d| d.is_finite() && *d > 0.0)
                .map(|d| Duration::from_secs_f32(d.min(86_400.0))),
            _ => None,
        }
    }
}

/// The robots.txt product token of a user agent: `volley` for `volley/0.1.0`.
pub fn agent_token(user_agent: &str) -> &str {
    let token = user_agent
        .split(|c: char| c == '/' || c.is_whitespace())
        .next()
        .unwrap_or(user_agent);
    if token.is_empty() { "*" } else { token }
}

/// The robots.txt URL of `url`'s origin.
pub fn robots_url(url: &Url) -> Option<Url> {
    let mut robots = url.clone();
    robots.set_path("/robots.txt");
    robots.set_query(None);
    robots.set_fragment(None);
    (robots.host_str().is_some()).then_some(robots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("test URL")
    }

    #[test]
    fn rules_for_our_token_win_over_the_wildcard() {
        let txt = b"User-agent: *\nDisallow: /\n\nUser-agent: volley\nDisallow: /private\nCrawl-delay: 2\n";
        let robots = Robots::parse(agent_token("volley/0.1.0"), txt);
        assert!(robots.check(&url("http://h.test/public")).is_ok());
        assert!(robots.check(&url("http://h.test/private/x")).is_err());
        assert_eq!(robots.crawl_delay(), Some(Duration::from_secs(2)));
        let other = Robots::parse("otherbot", txt);
        assert!(other.check(&url("http://h.test/public")).is_err());
    }

    #[test]
    fn robots_url_keeps_the_origin() {
        let u = robots_url(&url("https://h.test:8443/a/b?q=1#f")).expect("has a host");
        assert_eq!(u.as_str(), "https://h.test:8443/robots.txt");
        assert_eq!(agent_token("Mozilla/5.0 (x)"), "Mozilla");
        assert_eq!(agent_token(""), "*");
    }
}
