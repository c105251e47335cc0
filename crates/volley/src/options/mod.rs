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

mod spec;
pub mod table;
pub mod text;

pub use spec::{DEFAULT_USER_AGENT, FetchSpec, MAX_CONCURRENCY, MAX_DURATION, SpecError};

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
const FRONT_END_KEYS: [(&str, &str, &str); 3] = [
    ("job", "job", "name"),
    ("db", "db", "db"),
    ("lease", "lease", "lease"),
];

/// `message` with each `--key` of an option (or of `FRONT_END_KEYS`)
/// written in `spelling`. A placeholder after a flag (`--page-size N`,
/// `--job NEW_NAME`) goes with it: `page_size=N`. Anything else, an unknown
/// `--word` included, is left as it is.
pub fn respell(message: &str, spelling: Spelling) -> String {
    if spelling == Spelling::Flag || !message.contains("--") {
        return message.to_owned();
    }
    let known = table::defaults();
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
        let known = table::defaults();
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

/// Merges `layers` over the defaults, later layers winning, and validates
/// the result.
///
/// # Errors
/// [`SpecError::Option`] naming the key and its source, for an unknown key
/// or a value that does not parse; any other [`SpecError`] for options that
/// cannot work together.
pub fn resolve(layers: &[Layer]) -> Result<FetchSpec, SpecError> {
    let defaults = table::defaults();
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
            return Err(culprit(layers, defaults).unwrap_or(SpecError::Option(e.to_string())));
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
    use crate::politeness::host::{HostRule, Rate};

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
