//! The text forms of option values, as serde adapters (`#[serde(with)]`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::politeness::host::{HostRule, Rate};

/// A scalar written as text or as a TOML/JSON number or boolean.
enum Scalar {
    Text(String),
    Int(i128),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(t) => t.trim().to_owned(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a number or a boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// One value or a list of them (`header = "A: b"` or `["A: b", "C: d"]`).
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// Parses a whole number of at least 0.
fn number(text: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a whole number"))
}

/// Seconds (`30`, `0.5`) or a duration with units (`500ms`, `2m`, `1h 30m`).
///
/// # Errors
/// A one-line message with examples.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("'{text}' is not a duration of 0 seconds or more"));
    }
    humantime::parse_duration(text).map_err(|e| {
        format!("'{text}' is not a duration ({e}); use seconds or a unit: 500ms, 10s, 2m")
    })
}

/// Bytes, with an optional 1024-based suffix: `1048576`, `512K`, `10M`,
/// `2G`, `10MiB`.
///
/// # Errors
/// A one-line message with examples.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a byte count; use e.g. 1048576, 512K, 10M, 2G"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("'{text}': unknown unit '{unit}'; use K, M, G or T")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// `IP` or `IP:PORT` (port 53 when not given), for `--dns-server`.
///
/// # Errors
/// A one-line message with an example.
pub fn parse_dns_server(text: &str) -> Result<std::net::SocketAddr, String> {
    let text = text.trim();
    text.parse::<std::net::SocketAddr>()
        .or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(|ip| std::net::SocketAddr::new(ip, 53))
        })
        .map_err(|_| format!("'{text}' is not an IP address or IP:PORT, e.g. 127.0.0.1:5353"))
}

/// A duration as text that [`parse_duration`] reads back (`30s`,
/// `500ms`, `0.25`), as options are written and messages show them.
pub fn duration_text(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        format!("{}s", d.as_secs())
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}", d.as_secs_f64())
    }
}

/// Counts: a number, or a string holding one.
pub mod count {
    use super::*;

    /// Writes the number.
    pub fn serialize<S: Serializer, T: Serialize>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    /// Reads a number or a string holding one.
    pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
        let text = Scalar::deserialize(d)?.text();
        let n = number(&text).map_err(de::Error::custom)?;
        T::try_from(n).map_err(|_| de::Error::custom(format!("{n} is too large")))
    }
}

/// Optional counts.
pub mod opt_count {
    use super::*;

    /// Writes the number, or null.
    pub fn serialize<S: Serializer, T: Serialize>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    /// Reads a number, a string holding one, or null.
    pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        match Option::<Scalar>::deserialize(d)? {
            None => Ok(None),
            Some(v) => {
                let n = number(&v.text()).map_err(de::Error::custom)?;
                T::try_from(n)
                    .map(Some)
                    .map_err(|_| de::Error::custom(format!("{n} is too large")))
            }
        }
    }
}

/// Switches: `true`/`false`, as booleans or strings.
pub mod flag {
    use super::*;

    /// Writes the boolean.
    pub fn serialize<S: Serializer>(v: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(*v)
    }

    /// Reads a boolean, or `true`/`false`/`1`/`0` as text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match Scalar::deserialize(d)?.text().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            other => Err(de::Error::custom(format!("'{other}' is not true or false"))),
        }
    }
}

/// Durations: seconds as a number, or text with a unit.
pub mod duration {
    use super::*;

    /// Writes text such as `500ms` or `30s`.
    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&duration_text(*v))
    }

    /// Reads seconds or text with a unit.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parse_duration(&Scalar::deserialize(d)?.text()).map_err(de::Error::custom)
    }
}

/// Optional durations.
pub mod opt_duration {
    use super::*;

    /// Writes text such as `500ms`, or null.
    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_str(&duration_text(*d)),
            None => s.serialize_none(),
        }
    }

    /// Reads seconds, text with a unit, or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<Scalar>::deserialize(d)?
            .map(|v| parse_duration(&v.text()).map_err(de::Error::custom))
            .transpose()
    }
}

/// Optional rates: `N/s`, `N/m`, `N/h`, or a number per second.
pub mod opt_rate {
    use super::*;

    /// Writes `N/s`, or null.
    pub fn serialize<S: Serializer>(v: &Option<Rate>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(r) => s.serialize_str(&format!("{}/s", r.per_sec)),
            None => s.serialize_none(),
        }
    }

    /// Reads a rate, or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Rate>, D::Error> {
        Option::<Scalar>::deserialize(d)?
            .map(|v| v.text().parse::<Rate>().map_err(de::Error::custom))
            .transpose()
    }
}

/// A byte count as written back: the largest 1024-based suffix that
/// divides it (`1G`, `512K`), else the plain number.
pub fn bytes_text(n: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if n > 0 && n.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// Byte counts, with 1024-based suffixes.
pub mod bytes {
    use super::*;

    /// Writes the count with its largest exact suffix ([`bytes_text`]).
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        bytes_text(*v).serialize(s)
    }

    /// Reads a number, or text such as `10M`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        parse_bytes(&Scalar::deserialize(d)?.text()).map_err(de::Error::custom)
    }
}

/// Optional byte counts, with 1024-based suffixes.
pub mod opt_bytes {
    use super::*;

    /// Writes the number of bytes, or null.
    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    /// Reads a number, text such as `10M`, or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<Scalar>::deserialize(d)?
            .map(|v| parse_bytes(&v.text()).map_err(de::Error::custom))
            .transpose()
    }
}

/// Lists of strings: one string, or a list.
pub mod strings {
    use super::*;

    /// Writes the list.
    pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    /// Reads one string or a list.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        list(d)
    }
}

/// Lists of paths: one path, or a list.
pub mod paths {
    use super::*;

    /// Writes the list.
    pub fn serialize<S: Serializer>(v: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    /// Reads one path or a list.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
        Ok(list(d)?.into_iter().map(PathBuf::from).collect())
    }
}

/// Headers as `"Name: value"` strings.
pub mod headers {
    use super::*;

    /// Writes `"Name: value"` strings, leaving out credentials
    /// (`Authorization`, `Proxy-Authorization`, `Cookie`): a stored job
    /// never holds a secret.
    pub fn serialize<S: Serializer>(v: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
        let lines: Vec<String> = v
            .iter()
            .filter(|(n, _)| !is_credential(n))
            .map(|(n, val)| format!("{n}: {val}"))
            .collect();
        lines.serialize(s)
    }

    /// Reads one `"Name: value"` string or a list.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
        list(d)?
            .iter()
            .map(|h| parse_header(h).map_err(de::Error::custom))
            .collect()
    }
}

/// Name servers as `IP` or `IP:PORT`.
pub mod dns_servers {
    use super::*;

    /// Writes `IP:PORT` strings.
    pub fn serialize<S: Serializer>(v: &[std::net::SocketAddr], s: S) -> Result<S::Ok, S::Error> {
        let texts: Vec<String> = v.iter().map(ToString::to_string).collect();
        texts.serialize(s)
    }

    /// Reads one address or a list.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<std::net::SocketAddr>, D::Error> {
        list(d)?
            .iter()
            .map(|a| parse_dns_server(a).map_err(de::Error::custom))
            .collect()
    }
}

/// Host rules as a table of patterns, each with `rate` and
/// `concurrency`, in the order written.
pub mod hosts {
    use super::*;

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Limits {
        #[serde(
            default,
            with = "super::opt_rate",
            skip_serializing_if = "Option::is_none"
        )]
        rate: Option<Rate>,
        #[serde(
            default,
            with = "super::opt_count",
            skip_serializing_if = "Option::is_none"
        )]
        concurrency: Option<usize>,
        /// Never written: per-host headers are secrets, not stored.
        #[serde(default, skip_serializing)]
        headers: std::collections::BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        insecure: bool,
    }

    /// Writes `{pattern: {rate, concurrency}}` (never the headers).
    pub fn serialize<S: Serializer>(v: &[HostRule], s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(v.len()))?;
        for rule in v {
            map.serialize_entry(
                &rule.pattern,
                &Limits {
                    rate: rule.rate,
                    concurrency: rule.concurrency,
                    headers: std::collections::BTreeMap::new(),
                    insecure: rule.insecure,
                },
            )?;
        }
        map.end()
    }

    /// Reads `{pattern: {rate, concurrency}}`, keeping the order.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<HostRule>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<HostRule>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of host patterns, each with rate and concurrency")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<HostRule>, A::Error> {
                let mut rules = Vec::new();
                while let Some((pattern, limits)) = map.next_entry::<String, Limits>()? {
                    rules.push(HostRule {
                        pattern: pattern.to_ascii_lowercase(),
                        concurrency: limits.concurrency,
                        rate: limits.rate,
                        headers: limits.headers.into_iter().collect(),
                        insecure: limits.insecure,
                    });
                }
                Ok(rules)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Vec<HostRule>, A::Error> {
                Err(de::Error::custom(
                    "hosts must be a table: [hosts.\"PATTERN\"] with rate and concurrency",
                ))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Vec<HostRule>, E> {
                Ok(Vec::new())
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether a request header named `name` carries credentials, so that it
/// is never stored with a job (case-insensitive).
pub fn is_credential(name: &str) -> bool {
    ["authorization", "proxy-authorization", "cookie"]
        .iter()
        .any(|c| name.trim().eq_ignore_ascii_case(c))
}

/// Splits a `Name: value` header argument, as curl's `-H` takes it.
///
/// # Errors
/// A one-line message when there is no colon or the name is empty.
pub fn parse_header(arg: &str) -> Result<(String, String), String> {
    match arg.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!(
            "invalid header {arg:?}: expected 'Name: value' with a valid field name and value"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_curl_style_headers() {
        assert_eq!(
            parse_header("Authorization:  Bearer x:y "),
            Ok(("Authorization".into(), "Bearer x:y".into()))
        );
        assert!(parse_header("no-colon").is_err());
        assert!(parse_header(": empty-name").is_err());
    }
}
