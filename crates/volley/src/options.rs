//! Job options in layers: defaults ← config file ← `VOLLEY_*` environment ←
//! command-line flags, merged in one place into one [`FetchSpec`].
//!
//! [`FetchSpec`] is the one definition of the options: its serde form (keys
//! are the options' long names, values their text forms) is what every
//! layer speaks. A layer is a map of keys to JSON values, as a TOML file, a
//! set of environment variables, the flags a user typed or an API's JSON
//! give them; [`resolve`] checks each key of each layer on its own, so an
//! error names the key and where it came from (`volley.toml: 'timeout':
//! 'soon' is not a duration`), then merges them, later layers winning, and
//! validates the result.
//!
//! [`text`] holds the text forms: durations (`30`, `0.5`, `500ms`, `2m`),
//! rates (`5/s`, `300/m`, `1000/h`), byte counts (`10M`), counts given as
//! numbers or strings, and lists given as one string or several.

use serde_json::{Map, Value};

use crate::spec::{FetchSpec, SpecError};

/// One layer of options: where it comes from (for messages) and its values.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Where the values come from: a file's path, `environment`, or
    /// `flags` (then messages name the flag, `--timeout`).
    pub source: Source,
    /// The values by option name (`per-host`), in their text forms.
    pub values: Map<String, Value>,
}

/// How a front end spells an option, for its messages. The engine words
/// its messages with flags (`--per-host must be at least 1`), the spelling
/// of the command line; the other front ends pass every message they show
/// through [`respell`], so that each caller reads the name it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    /// Command-line flags: `--per-host`.
    Flag,
    /// Python keyword arguments: `per_host=`.
    Python,
    /// Fields of the HTTP API's JSON: `options.per_host`.
    Api,
}

/// Names the front ends have beside the options, as (flag key, Python
/// keyword, API field).
const FRONT_END_KEYS: [(&str, &str, &str); 2] = [("job", "job", "name"), ("db", "db", "db")];

/// `message` with each `--key` of an option (or of `FRONT_END_KEYS`)
/// written in `spelling`. A placeholder after a flag (`--page-size N`,
/// `--job NEW_NAME`) goes with it: `page_size=N`. Anything else, an unknown
/// `--word` included, is left as it is.
pub fn respell(message: &str, spelling: Spelling) -> String {
    if spelling == Spelling::Flag || !message.contains("--") {
        return message.to_owned();
    }
    let known = known_keys();
    let mut out = String::with_capacity(message.len() + 16);
    let mut rest = message;
    while let Some(Flag { before, key, after }) = next_flag(rest) {
        out.push_str(before);
        let named = FRONT_END_KEYS.iter().find(|(flag, ..)| *flag == key);
        if named.is_none() && !known.contains_key(key) {
            out.push_str("--");
            out.push_str(key);
            rest = after;
            continue;
        }
        let snake = key.replace('-', "_");
        let name = match (spelling, named) {
            (Spelling::Python, Some((_, python, _))) => format!("{python}="),
            (Spelling::Api, Some((_, _, field))) => (*field).to_owned(),
            (Spelling::Python, None) => format!("{snake}="),
            _ => format!("options.{snake}"),
        };
        out.push_str(&name);
        rest = after;
        // A placeholder value: `N`, `NAME`, `NEW_NAME`, `FILE`.
        if spelling == Spelling::Python
            && let Some(value) = rest.strip_prefix(' ')
        {
            let word = value
                .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                .unwrap_or(value.len());
            if word > 0 && value[..word].chars().any(|c| c.is_ascii_uppercase()) {
                out.push_str(&value[..word]);
                rest = &value[word..];
            } else if name.ends_with('=') {
                out.pop();
            }
        } else if name.ends_with('=') && !rest.starts_with('=') {
            out.pop();
        }
    }
    out.push_str(rest);
    out
}

/// A `--key` in a message, with the text around it.
struct Flag<'a> {
    before: &'a str,
    key: &'a str,
    after: &'a str,
}

/// The next `--key` of `text` that starts a word (`a--b` and `--` alone are
/// not flags: they stay in `before`).
fn next_flag(text: &str) -> Option<Flag<'_>> {
    let mut from = 0;
    loop {
        let at = from + text[from..].find("--")?;
        let body = &text[at + 2..];
        let len = body
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .unwrap_or(body.len());
        let key = body[..len].trim_end_matches('-');
        let starts_word = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric() && c != '-');
        if starts_word && !key.is_empty() {
            return Some(Flag {
                before: &text[..at],
                key,
                after: &body[key.len()..],
            });
        }
        from = at + 2;
    }
}

/// Where a layer comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A config file (its path).
    File(String),
    /// `VOLLEY_*` environment variables.
    Environment,
    /// Command-line flags.
    Flags,
    /// Anything else, named (a stored job).
    Named(String),
    /// Python keyword arguments: `keyword argument per_host`.
    Keywords,
    /// The `options` object of an HTTP API request: `options.per_host`.
    Request,
}

impl Source {
    /// Where `key` of this layer was set, as a user would look for it
    /// (`--per-host`, `VOLLEY_PER_HOST`, `file.toml: 'per-host'`,
    /// `keyword argument per_host`, `options.per_host`).
    pub fn describe(&self, key: &str) -> String {
        match self {
            Source::File(path) => format!("{path}: '{key}'"),
            Source::Environment => format!("VOLLEY_{}", key.replace('-', "_").to_uppercase()),
            Source::Flags => format!("--{key}"),
            Source::Named(name) => format!("{name}: '{key}'"),
            Source::Keywords => format!("keyword argument {}", key.replace('-', "_")),
            Source::Request => format!("options.{}", key.replace('-', "_")),
        }
    }
}

impl Layer {
    /// The `VOLLEY_*` variables among `vars` that name an option
    /// (`VOLLEY_PER_HOST=4` is `per-host`); others are left alone, since
    /// the namespace is shared with other settings (`VOLLEY_DB`).
    pub fn environment(vars: impl IntoIterator<Item = (String, String)>) -> Layer {
        let known = known_keys();
        let values = vars
            .into_iter()
            .filter_map(|(name, value)| {
                let key = name
                    .strip_prefix("VOLLEY_")?
                    .to_lowercase()
                    .replace('_', "-");
                known
                    .contains_key(&key)
                    .then_some((key, Value::String(value)))
            })
            .collect();
        Layer {
            source: Source::Environment,
            values,
        }
    }
}

/// Options that are read but never written (secrets: a stored job never
/// holds them).
const UNWRITTEN_KEYS: [&str; 1] = ["user"];

/// Every option's name, with its default in text form.
fn known_keys() -> Map<String, Value> {
    let mut keys = match serde_json::to_value(FetchSpec::default()) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    for key in UNWRITTEN_KEYS {
        keys.insert(key.to_owned(), Value::Null);
    }
    keys
}

/// Merges `layers` over the defaults, later layers winning, and validates
/// the result.
///
/// # Errors
/// [`SpecError::Option`] naming the key and its source, for an unknown key
/// or a value that does not parse; any other [`SpecError`] for options that
/// cannot work together.
pub fn resolve(layers: &[Layer]) -> Result<FetchSpec, SpecError> {
    let defaults = known_keys();
    let mut merged = defaults.clone();
    for layer in layers {
        for (key, value) in &layer.values {
            if !defaults.contains_key(key) {
                return Err(SpecError::Option(format!(
                    "{}: unknown option; options are the long names of `volley fetch` flags",
                    layer.source.describe(key)
                )));
            }
            merged.insert(key.clone(), value.clone());
        }
    }
    let spec = match serde_json::from_value::<FetchSpec>(Value::Object(merged)) {
        Ok(spec) => spec,
        Err(e) => {
            return Err(culprit(layers, &defaults).unwrap_or(SpecError::Option(e.to_string())));
        }
    };
    if let Err(e) = spec.validate() {
        // Said with flags; a value from a file or the environment is named
        // where it was set.
        let text = e.to_string();
        let named = name_sources(&text, layers);
        return Err(if named == text {
            e
        } else {
            SpecError::Option(named)
        });
    }
    Ok(spec)
}

/// `message` with each `--key` whose value came from a config file or the
/// environment (the last layer that set it) named as it was set there:
/// `volley.toml: 'per-host'`, `VOLLEY_PER_HOST`.
fn name_sources(message: &str, layers: &[Layer]) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(Flag { before, key, after }) = next_flag(rest) {
        out.push_str(before);
        let source = layers
            .iter()
            .rev()
            .find(|layer| layer.values.contains_key(key))
            .map(|layer| &layer.source)
            .filter(|source| matches!(source, Source::File(_) | Source::Environment));
        match source {
            Some(source) => out.push_str(&source.describe(key)),
            None => {
                out.push_str("--");
                out.push_str(key);
            }
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The first value that does not parse on its own (over the defaults),
/// named with its key and source; `None` when each parses alone and only
/// their combination fails.
fn culprit(layers: &[Layer], defaults: &Map<String, Value>) -> Option<SpecError> {
    layers.iter().find_map(|layer| {
        layer.values.iter().find_map(|(key, value)| {
            let mut alone = defaults.clone();
            alone.insert(key.clone(), value.clone());
            serde_json::from_value::<FetchSpec>(Value::Object(alone))
                .err()
                .map(|e| SpecError::Option(format!("{}: {e}", layer.source.describe(key))))
        })
    })
}

/// The text forms of option values, as serde adapters (`#[serde(with)]`).
pub mod text {
    use std::fmt;
    use std::path::PathBuf;
    use std::time::Duration;

    use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde::ser::{SerializeMap, Serializer};
    use serde::{Deserialize, Serialize};

    use crate::spec::{HostRule, Rate};

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
        let number: u64 = number.parse().map_err(|_| {
            format!("'{text}' is not a byte count; use e.g. 1048576, 512K, 10M, 2G")
        })?;
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
        pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
            d: D,
        ) -> Result<T, D::Error> {
            let text = Scalar::deserialize(d)?.text();
            let n = number(&text).map_err(de::Error::custom)?;
            T::try_from(n).map_err(|_| de::Error::custom(format!("{n} is too large")))
        }
    }

    /// Optional counts.
    pub mod opt_count {
        use super::*;

        /// Writes the number, or null.
        pub fn serialize<S: Serializer, T: Serialize>(
            v: &Option<T>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
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
                .filter(|(n, _)| !crate::spec::is_credential(n))
                .map(|(n, val)| format!("{n}: {val}"))
                .collect();
            lines.serialize(s)
        }

        /// Reads one `"Name: value"` string or a list.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<(String, String)>, D::Error> {
            list(d)?
                .iter()
                .map(|h| crate::spec::parse_header(h).map_err(de::Error::custom))
                .collect()
        }
    }

    /// Name servers as `IP` or `IP:PORT`.
    pub mod dns_servers {
        use super::*;

        /// Writes `IP:PORT` strings.
        pub fn serialize<S: Serializer>(
            v: &[std::net::SocketAddr],
            s: S,
        ) -> Result<S::Ok, S::Error> {
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
                fn visit_map<A: MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Vec<HostRule>, A::Error> {
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
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_value_that_fails_validation_is_named_where_it_was_set() {
        use super::{Layer, Source, resolve};
        let layer = |source: Source, key: &str, value: serde_json::Value| Layer {
            source,
            values: [(key.to_owned(), value)].into_iter().collect(),
        };
        let file = layer(Source::File("volley.toml".into()), "per-host", 0.into());
        let e = resolve(std::slice::from_ref(&file)).expect_err("0 is refused");
        assert_eq!(e.to_string(), "volley.toml: 'per-host' must be at least 1");
        let env = layer(Source::Environment, "per-host", "0".into());
        let e = resolve(&[file.clone(), env]).expect_err("0 is refused");
        assert_eq!(e.to_string(), "VOLLEY_PER_HOST must be at least 1");
        let flags = layer(Source::Flags, "per-host", "0".into());
        let e = resolve(&[file, flags]).expect_err("0 is refused");
        assert_eq!(
            e.to_string(),
            "--per-host must be at least 1",
            "the flag, as typed"
        );
    }

    #[test]
    fn messages_name_options_as_each_caller_wrote_them() {
        use super::{Spelling, respell};
        let cases = [
            (
                "--per-host must be at least 1",
                "per_host must be at least 1",
                "options.per_host must be at least 1",
            ),
            (
                "--paginate offset=NAME needs --page-size N",
                "paginate offset=NAME needs page_size=N",
                "options.paginate offset=NAME needs options.page_size N",
            ),
            (
                "to fetch it as it is now, pass --job NEW_NAME",
                "to fetch it as it is now, pass job=NEW_NAME",
                "to fetch it as it is now, pass name NEW_NAME",
            ),
            (
                "--backoff-base (1s) must not exceed --backoff-max (500ms)",
                "backoff_base (1s) must not exceed backoff_max (500ms)",
                "options.backoff_base (1s) must not exceed options.backoff_max (500ms)",
            ),
            // Not an option, and not a flag: left alone.
            (
                "--frobnicate and a--b and -- x",
                "--frobnicate and a--b and -- x",
                "--frobnicate and a--b and -- x",
            ),
        ];
        for (flag, python, api) in cases {
            assert_eq!(respell(flag, Spelling::Flag), flag);
            assert_eq!(respell(flag, Spelling::Python), python);
            assert_eq!(respell(flag, Spelling::Api), api);
        }
    }

    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::spec::{HostRule, Rate};

    fn layer(source: Source, values: Value) -> Layer {
        let Value::Object(values) = values else {
            panic!("a JSON object")
        };
        Layer { source, values }
    }

    #[test]
    fn layers_merge_later_winning_over_the_defaults() -> Result<(), SpecError> {
        let file = layer(
            Source::File("volley.toml".into()),
            json!({"per-host": 2, "rate": "120/m", "timeout": "5s", "header": ["X-A: 1"],
                   "hosts": {"*.example.com": {"rate": "5/s", "concurrency": 1}, "a.test": {}}}),
        );
        let env = Layer::environment([
            ("VOLLEY_TIMEOUT".to_owned(), "7".to_owned()),
            ("VOLLEY_DB".to_owned(), "x.db".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ]);
        let flags = layer(Source::Flags, json!({"per-host": "3", "max-body": "10M"}));
        let spec = resolve(&[file, env, flags])?;
        assert_eq!(spec.per_host, 3, "the flag wins");
        assert_eq!(
            spec.timeout,
            Duration::from_secs(7),
            "the environment wins over the file"
        );
        assert_eq!(
            spec.rate,
            Some(Rate { per_sec: 2.0 }),
            "the file wins over the default"
        );
        assert_eq!(spec.concurrency, 64, "the default");
        assert_eq!(spec.max_body_bytes, Some(10 << 20));
        assert_eq!(spec.headers, [("X-A".to_owned(), "1".to_owned())]);
        assert_eq!(
            spec.hosts,
            [
                HostRule {
                    pattern: "*.example.com".into(),
                    concurrency: Some(1),
                    rate: Some(Rate { per_sec: 5.0 }),
                    headers: Vec::new(),
                    insecure: false,
                },
                HostRule {
                    pattern: "a.test".into(),
                    concurrency: None,
                    rate: None,
                    headers: Vec::new(),
                    insecure: false,
                }
            ],
            "rules keep the order written"
        );
        Ok(())
    }

    #[test]
    fn errors_name_the_key_and_where_it_came_from() {
        let err = |values: Value, source: Source| {
            resolve(&[layer(source, values)])
                .expect_err("refused")
                .to_string()
        };
        let e = err(json!({"timeout": "soon"}), Source::File("v.toml".into()));
        assert!(
            e.starts_with("v.toml: 'timeout': 'soon' is not a duration"),
            "{e}"
        );
        let e = err(json!({"concurency": 3}), Source::File("v.toml".into()));
        assert!(e.contains("'concurency': unknown option"), "{e}");
        let e = err(json!({"rate": "fast"}), Source::Flags);
        assert!(e.starts_with("--rate: rate 'fast'"), "{e}");
        let e = err(json!({"hosts": {"a.test": {"rte": "5/s"}}}), Source::Flags);
        assert!(e.contains("unknown field `rte`"), "{e}");
        let e = err(json!({"concurrency": 0}), Source::Flags);
        assert_eq!(e, "--concurrency must be at least 1");
    }

    #[test]
    fn the_text_form_reads_back_as_the_same_options() -> Result<(), SpecError> {
        let spec = resolve(&[layer(
            Source::Flags,
            json!({"rate": "5/s", "deadline": "90s", "backoff-base": "250ms", "paginate": "cursor=/next",
                   "cursor-param": "after", "extract": ["total=/meta/total"], "dns-server": "127.0.0.1"}),
        )])?;
        let text = serde_json::to_value(&spec).map_err(|e| SpecError::Option(e.to_string()))?;
        let Value::Object(values) = text else {
            panic!("an object")
        };
        let again = resolve(&[layer(
            Source::Named("stored job".into()),
            Value::Object(values),
        )])?;
        assert_eq!(format!("{again:?}"), format!("{spec:?}"));
        Ok(())
    }

    #[test]
    fn a_stored_job_keeps_host_insecure_and_cookie_jar_but_no_secret() -> Result<(), SpecError> {
        let spec = resolve(&[layer(
            Source::File("volley.toml".into()),
            json!({"cookie-jar": "jar.txt", "header": ["Cookie: a=1", "X-Ok: 1"],
                   "hosts": {"a.test": {"insecure": true, "headers": {"X-Api-Key": "k"}}}}),
        )])?;
        assert!(spec.hosts[0].insecure && spec.keeps_cookies());
        let text = serde_json::to_string(&spec).map_err(|e| SpecError::Option(e.to_string()))?;
        assert!(
            text.contains(r#""hosts":{"a.test":{"insecure":true}}"#),
            "{text}"
        );
        assert!(text.contains(r#""cookie-jar":"jar.txt""#), "{text}");
        assert!(
            !text.contains("X-Api-Key") && !text.contains("a=1"),
            "{text}"
        );
        Ok(())
    }
}
