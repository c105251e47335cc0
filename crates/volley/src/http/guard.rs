//! Address rules: which IP addresses requests may go to (the SSRF guard).
//!
//! A fetch engine behind an API fetches URLs other people chose. Without
//! rules, `http://169.254.169.254/` reads a cloud machine's credentials and
//! `http://127.0.0.1:5432/` probes the server's own services. With
//! [`AddressRules::deny_private`], volley refuses loopback, private
//! (RFC 1918), shared (CGNAT, RFC 6598), link-local (the metadata address
//! among them), multicast, unspecified, reserved and documentation ranges,
//! and their IPv6 equivalents, except ranges opened on purpose
//! (`--allow-private CIDR`).
//!
//! The rules are checked where the address is known for certain, so no
//! name can sneak past them:
//! * the resolver (`dns::Resolver`) fails a name when *any* of its
//!   addresses is refused, so DNS rebinding between a check and the connect
//!   cannot pass (the connection only ever uses addresses the check saw);
//! * IP-literal URLs never reach a resolver, so the scheduler checks them
//!   before a request ([`AddressRules::check_url`]), and the redirect policy
//!   checks every hop's URL the same way;
//! * the client uses no proxy while rules are on (a proxy would resolve the
//!   target itself).
//!
//! IPv4-mapped and IPv4-compatible IPv6 addresses (`::ffff:127.0.0.1`) and
//! NAT64 (`64:ff9b::/96`) are judged by the IPv4 address they carry: std's
//! `is_loopback` says false for `::ffff:127.0.0.1`, so the list here is
//! explicit rather than built on std's predicates.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use url::{Host, Url};

/// Ranges refused by [`AddressRules::deny_private`].
const DENIED: [&str; 24] = [
    "0.0.0.0/8",       // "this network", unspecified
    "10.0.0.0/8",      // private (RFC 1918)
    "100.64.0.0/10",   // shared address space, CGNAT (RFC 6598)
    "127.0.0.0/8",     // loopback
    "169.254.0.0/16",  // link-local, cloud metadata (169.254.169.254)
    "172.16.0.0/12",   // private (RFC 1918)
    "192.0.0.0/24",    // IETF protocol assignments
    "192.0.2.0/24",    // documentation (TEST-NET-1)
    "192.88.99.0/24",  // 6to4 relay anycast
    "192.168.0.0/16",  // private (RFC 1918)
    "198.18.0.0/15",   // benchmarking
    "198.51.100.0/24", // documentation (TEST-NET-2)
    "203.0.113.0/24",  // documentation (TEST-NET-3)
    "224.0.0.0/4",     // multicast
    "240.0.0.0/4",     // reserved, broadcast
    "::/128",          // unspecified
    "::1/128",         // loopback
    "100::/64",        // discard-only
    "2001:db8::/32",   // documentation
    "2002::/16",       // 6to4 (carries an IPv4 address of any kind)
    "fc00::/7",        // unique local
    "fe80::/10",       // link-local
    "fec0::/10",       // site-local (deprecated)
    "ff00::/8",        // multicast
];

/// A request refused by the address rules. It reaches
/// [`crate::http::fetch::classify`] in the error's source chain, which makes the
/// outcome's class `forbidden_address`.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{target} is {address}, a {why} address that volley does not fetch from here \
     (allow it with --allow-private CIDR)"
)]
pub struct Forbidden {
    /// The host or URL asked for.
    pub target: String,
    /// The address refused.
    pub address: IpAddr,
    /// Which kind of address it is (`loopback`, `private`, ...).
    pub why: &'static str,
}

/// A CIDR given to `--allow-private` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--allow-private {given}: not a CIDR range like 127.0.0.0/8 or fd00::/8 ({why})")]
pub struct BadRange {
    /// The text given.
    pub given: String,
    /// What the parser said.
    pub why: String,
}

/// Which addresses requests may go to; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressRules {
    denied: Vec<IpNet>,
    allowed: Vec<IpNet>,
}

impl AddressRules {
    /// No rules: every address may be fetched (the CLI's default).
    pub fn open() -> AddressRules {
        AddressRules::default()
    }

    /// Refuses the private and special ranges, except those in `allowed`
    /// (CIDR texts, `127.0.0.0/8`; a bare address is a single-host range).
    ///
    /// # Errors
    /// [`BadRange`] for a text that is not a CIDR range.
    pub fn deny_private(allowed: &[String]) -> Result<AddressRules, BadRange> {
        let denied = DENIED
            .iter()
            .filter_map(|range| range.parse().ok())
            .collect();
        let allowed = allowed
            .iter()
            .map(|text| parse_range(text))
            .collect::<Result<_, _>>()?;
        Ok(AddressRules { denied, allowed })
    }

    /// Whether any address is refused.
    pub fn is_open(&self) -> bool {
        self.denied.is_empty()
    }

    /// `Ok` if `address` may be fetched; else what kind of address it is.
    pub fn check(&self, address: IpAddr) -> Result<(), &'static str> {
        if self.is_open() {
            return Ok(());
        }
        let address = canonical(address);
        if self.allowed.iter().any(|net| net.contains(&address)) {
            return Ok(());
        }
        match self.denied.iter().find(|net| net.contains(&address)) {
            Some(_) => Err(kind(address)),
            None => Ok(()),
        }
    }

    /// Checks the addresses `target` (a host name) resolved to: all must be
    /// allowed, or the name is refused as a whole.
    ///
    /// # Errors
    /// [`Forbidden`] naming the first refused address.
    pub fn check_resolved(
        &self,
        target: &str,
        addresses: impl IntoIterator<Item = IpAddr>,
    ) -> Result<(), Forbidden> {
        for address in addresses {
            self.check(address).map_err(|why| Forbidden {
                target: target.to_owned(),
                address,
                why,
            })?;
        }
        Ok(())
    }

    /// Checks a URL whose host is an IP literal (`http://169.254.169.254/`,
    /// `http://[::ffff:127.0.0.1]/`): those never reach a resolver. Host
    /// names pass here; the resolver checks them.
    ///
    /// # Errors
    /// [`Forbidden`] when the literal address is refused.
    pub fn check_url(&self, url: &Url) -> Result<(), Forbidden> {
        let address = match url.host() {
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(Host::Domain(_)) | None => return Ok(()),
        };
        self.check(address).map_err(|why| Forbidden {
            target: url.as_str().to_owned(),
            address,
            why,
        })
    }
}

fn parse_range(text: &str) -> Result<IpNet, BadRange> {
    let bad = |why: String| BadRange {
        given: text.to_owned(),
        why,
    };
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(address));
    }
    text.parse::<IpNet>()
        .map(|net| net.trunc())
        .map_err(|e| bad(e.to_string()))
}

/// The address an IPv6 address stands for when it carries an IPv4 one
/// (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d`); others as they are.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0];
    // IPv4-compatible (deprecated): ::a.b.c.d, but not :: and ::1.
    let compatible = s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1);
    (nat64 || compatible).then_some(tail)
}

/// What kind of refused address `address` (canonical) is, for messages.
fn kind(address: IpAddr) -> &'static str {
    match address {
        IpAddr::V4(v4) if v4.is_loopback() => "loopback",
        IpAddr::V4(v4) if v4.is_private() => "private",
        IpAddr::V4(v4) if v4.is_link_local() => "link-local",
        IpAddr::V4(v4) if v4.is_multicast() => "multicast",
        IpAddr::V4(v4) if v4.octets()[0] == 100 => "shared (CGNAT)",
        IpAddr::V6(v6) if v6.is_loopback() => "loopback",
        IpAddr::V6(v6) if v6.is_unicast_link_local() => "link-local",
        IpAddr::V6(v6) if v6.is_unique_local() => "private",
        IpAddr::V6(v6) if v6.is_multicast() => "multicast",
        _ => "reserved",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn refuses_the_private_and_special_ranges() {
        let rules = AddressRules::deny_private(&[]).unwrap();
        for (address, why) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("224.0.0.1", "multicast"),
            ("0.0.0.0", "reserved"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "reserved"),
            ("fd00::1", "private"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("::127.0.0.1", "loopback"),
        ] {
            assert_eq!(rules.check(ip(address)), Err(why), "{address}");
        }
        for public in [
            "93.184.215.14",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(rules.check(ip(public)), Ok(()), "{public}");
        }
    }

    #[test]
    fn allowed_ranges_open_on_purpose() {
        let rules = AddressRules::deny_private(&["127.0.0.0/8".into(), "fd00::5".into()]).unwrap();
        assert_eq!(rules.check(ip("127.0.0.2")), Ok(()));
        assert_eq!(rules.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(rules.check(ip("fd00::5")), Ok(()));
        assert_eq!(rules.check(ip("fd00::6")), Err("private"));
        assert_eq!(rules.check(ip("10.0.0.1")), Err("private"));
        assert!(AddressRules::deny_private(&["127.0.0.1/33".into()]).is_err());
        assert!(AddressRules::deny_private(&["localhost".into()]).is_err());
    }

    #[test]
    fn a_name_is_refused_if_any_address_is() {
        let rules = AddressRules::deny_private(&[]).unwrap();
        let err = rules
            .check_resolved("rebind.example", [ip("93.184.215.14"), ip("127.0.0.1")])
            .unwrap_err();
        assert_eq!(err.address, ip("127.0.0.1"));
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    #[test]
    fn ip_literal_urls_are_checked_and_names_pass() {
        let rules = AddressRules::deny_private(&[]).unwrap();
        for bad in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:7f00:1]:8080/",
            "http://0x7f000001/",
            "http://2130706433/",
        ] {
            assert!(rules.check_url(&Url::parse(bad).unwrap()).is_err(), "{bad}");
        }
        assert!(
            rules
                .check_url(&Url::parse("http://example.com/").unwrap())
                .is_ok()
        );
        assert!(
            AddressRules::open()
                .check_url(&Url::parse("http://127.0.0.1/").unwrap())
                .is_ok()
        );
    }
}
