//! Which requests go through a proxy: `--proxy` (every scheme), or the
//! usual environment variables (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`,
//! in either case), minus the hosts of `--no-proxy` or `NO_PROXY`.
//!
//! reqwest makes the connections; this is volley's own reading of the same
//! settings, so that a failure to connect through a proxy is recorded as
//! the outcome class `proxy` rather than blamed on the target host (whose
//! politeness state is then left alone).

use url::{Host, Url};

use crate::options::FetchSpec;

/// The proxy settings of a run; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProxyRoute {
    /// Whether `http://` URLs go through a proxy.
    http: bool,
    /// Whether `https://` URLs do.
    https: bool,
    /// The exceptions, one entry each (lower case).
    no_proxy: Vec<String>,
}

impl ProxyRoute {
    /// The route for `spec`, reading the environment through `env`. With
    /// the address rules on, no proxy is used at all.
    pub(crate) fn new(spec: &FetchSpec, env: impl Fn(&str) -> Option<String>) -> ProxyRoute {
        if spec.deny_private {
            return ProxyRoute::default();
        }
        let set = |names: &[&str]| {
            names
                .iter()
                .any(|n| env(n).is_some_and(|v| !v.trim().is_empty()))
        };
        let explicit = spec.proxy.is_some();
        let all = set(&["ALL_PROXY", "all_proxy"]);
        let listed: Vec<String> = if spec.no_proxy.is_empty() {
            env("NO_PROXY")
                .or_else(|| env("no_proxy"))
                .into_iter()
                .collect()
        } else {
            spec.no_proxy.clone()
        };
        ProxyRoute {
            http: explicit || all || set(&["HTTP_PROXY", "http_proxy"]),
            https: explicit || all || set(&["HTTPS_PROXY", "https_proxy"]),
            no_proxy: listed
                .iter()
                .flat_map(|l| l.split(','))
                .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|e| !e.is_empty())
                .collect(),
        }
    }

    /// The list for reqwest's `NoProxy`, comma-separated, if any.
    pub(crate) fn no_proxy_list(&self) -> Option<String> {
        (!self.no_proxy.is_empty()).then(|| self.no_proxy.join(","))
    }

    /// Whether a request for `url` goes through the proxy. Exceptions
    /// match a host name and its subdomains, `*` everything, and an IP
    /// address or CIDR range the host's literal address.
    pub(crate) fn routes(&self, url: &Url) -> bool {
        let scheme_proxied = match url.scheme() {
            "http" => self.http,
            "https" => self.https,
            _ => false,
        };
        if !scheme_proxied {
            return false;
        }
        let Some(host) = url.host() else {
            return false;
        };
        !self.no_proxy.iter().any(|entry| excepts(entry, &host))
    }
}

fn excepts(entry: &str, host: &Host<&str>) -> bool {
    if entry == "*" {
        return true;
    }
    match host {
        Host::Domain(name) => {
            let name = name.to_ascii_lowercase();
            name == entry || name.ends_with(&format!(".{entry}"))
        }
        Host::Ipv4(ip) => in_range(entry, std::net::IpAddr::V4(*ip)),
        Host::Ipv6(ip) => in_range(entry, std::net::IpAddr::V6(*ip)),
    }
}

fn in_range(entry: &str, ip: std::net::IpAddr) -> bool {
    let entry = entry.trim_start_matches('[').trim_end_matches(']');
    if let Ok(exact) = entry.parse::<std::net::IpAddr>() {
        return exact == ip;
    }
    entry
        .parse::<ipnet::IpNet>()
        .is_ok_and(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(spec: &FetchSpec, vars: &[(&str, &str)]) -> ProxyRoute {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ProxyRoute::new(spec, |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn url(text: &str) -> Url {
        Url::parse(text).expect("a URL")
    }

    #[test]
    fn an_explicit_proxy_takes_every_scheme_minus_the_exceptions() {
        let spec = FetchSpec {
            proxy: Some("socks5h://127.0.0.1:1080".into()),
            no_proxy: vec!["internal.example, 10.0.0.0/8".into(), "::1".into()],
            ..FetchSpec::default()
        };
        let r = route(&spec, &[("NO_PROXY", "ignored.example")]);
        assert!(r.routes(&url("http://a.example/")));
        assert!(r.routes(&url("https://ignored.example/")), "the flag wins");
        assert!(!r.routes(&url("https://internal.example/x")));
        assert!(
            !r.routes(&url("https://api.internal.example/x")),
            "subdomains"
        );
        assert!(r.routes(&url("https://notinternal.example/x")));
        assert!(!r.routes(&url("http://10.1.2.3/")));
        assert!(!r.routes(&url("http://[::1]:8080/")));
        assert_eq!(
            r.no_proxy_list().as_deref(),
            Some("internal.example,10.0.0.0/8,::1")
        );
    }

    #[test]
    fn the_environment_proxies_by_scheme_and_the_address_rules_turn_it_off() {
        let spec = FetchSpec::default();
        let r = route(
            &spec,
            &[("https_proxy", "http://p:3128"), ("NO_PROXY", "*")],
        );
        assert!(!r.routes(&url("https://a.example/")), "NO_PROXY=*");
        let r = route(&spec, &[("HTTPS_PROXY", "http://p:3128")]);
        assert!(r.routes(&url("https://a.example/")));
        assert!(!r.routes(&url("http://a.example/")), "only https");
        assert!(!route(&spec, &[]).routes(&url("http://a.example/")));
        let guarded = FetchSpec {
            deny_private: true,
            ..FetchSpec::default()
        };
        assert!(!route(&guarded, &[("ALL_PROXY", "socks5://p:1080")]).routes(&url("http://a/")));
    }
}
