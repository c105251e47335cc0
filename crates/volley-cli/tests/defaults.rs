//! Every default the documentation shows is the real one. The real
//! defaults are `FetchSpec::default()` in its text form (what the options
//! are written in); the documents are the README's option table, `volley
//! fetch --help`, the API's OpenAPI description and the Python package's
//! docstrings. A default written by hand drifts (the Python docs once said
//! `timeout` defaults to 30 s; it is 60 s): this test fails when one does.

use std::time::Duration;

use serde_json::Value;
use volley::options::text::parse_duration;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// A default as compared: a count or a duration. Other forms ("no limit",
/// `volley/<version>`, "system's") are prose, not checked here.
#[derive(Debug, PartialEq)]
enum Shown {
    Count(u64),
    Time(Duration),
}

fn shown(text: &str) -> Option<Shown> {
    let text = text.trim().trim_matches('`');
    if let Ok(n) = text.replace(',', "").parse::<u64>() {
        return Some(Shown::Count(n));
    }
    let unit = text.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    if text.len() > unit.len() && matches!(unit, "ms" | "s" | "m" | "h") {
        return parse_duration(text).ok().map(Shown::Time);
    }
    None
}

/// Checks `found` (key, the default shown) against the real defaults;
/// returns the number checked, after failing on any that differs.
fn check(document: &str, found: &[(String, String)]) -> usize {
    let real = match serde_json::to_value(volley::FetchSpec::default()) {
        Ok(Value::Object(map)) => map,
        other => panic!("the defaults serialise to an object: {other:?}"),
    };
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (key, text) in found {
        let Some(said) = shown(text) else { continue };
        let Some(value) = real.get(key) else {
            wrong.push(format!(
                "{key}: shown with a default ({text}), but no such option"
            ));
            continue;
        };
        let actual = match value {
            Value::Number(n) => n.as_u64().map(Shown::Count),
            Value::String(s) => shown(s),
            _ => None,
        };
        if actual.as_ref() != Some(&said) {
            wrong.push(format!("{key}: shown {text}, real {value}"));
        }
        checked += 1;
    }
    assert!(
        wrong.is_empty(),
        "{document} shows wrong defaults: {wrong:#?}"
    );
    checked
}

#[test]
fn the_readme_option_table_shows_the_real_defaults() {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).expect("read the README");
    // | `--per-host N` | 8 | meaning |
    let found: Vec<(String, String)> = readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let flag = cells.get(1)?.strip_prefix("`--")?;
            let key = flag.split([' ', '`', ',']).next()?;
            Some((key.to_owned(), (*cells.get(2)?).to_owned()))
        })
        .collect();
    let checked = check("README.md", &found);
    assert!(
        checked >= 12,
        "only {checked} defaults read from the README's table"
    );
}

#[test]
fn fetch_help_shows_the_real_defaults() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_volley"))
        .args(["fetch", "--help"])
        .output()
        .expect("run volley fetch --help");
    let help = String::from_utf8_lossy(&out.stdout);
    // A flag's line, then its help (on that line or the next ones) ending
    // in "[default: X]".
    let mut found = Vec::new();
    let mut flag: Option<String> = None;
    for line in help.lines() {
        if let Some(at) = line.trim_start().strip_prefix("--").or_else(|| {
            line.trim_start()
                .strip_prefix('-')
                .and_then(|l| l.split_once(", --").map(|(_, f)| f))
        }) {
            flag = at.split([' ', '<', '=']).next().map(str::to_owned);
        }
        if let (Some(key), Some((_, rest))) = (&flag, line.split_once("[default: ")) {
            let value = rest.split(']').next().unwrap_or_default();
            found.push((key.clone(), value.to_owned()));
        }
    }
    let checked = check("volley fetch --help", &found);
    assert!(
        checked >= 12,
        "only {checked} defaults read from --help:\n{help}"
    );
}

#[test]
fn the_openapi_options_show_the_real_defaults() {
    // The document as served, with its generated Options.
    let spec: Value =
        serde_json::from_str(&volley_serve::api::OPENAPI).expect("the document is JSON");
    let properties = spec["components"]["schemas"]["Options"]["properties"]
        .as_object()
        .expect("the Options schema has properties");
    let found: Vec<(String, String)> = properties
        .iter()
        .filter_map(|(name, schema)| {
            let description = schema["description"].as_str()?;
            let (_, rest) = description.split_once("[default: ")?;
            let value = rest.split(']').next()?;
            Some((name.replace('_', "-"), value.to_owned()))
        })
        .collect();
    let checked = check("openapi.json", &found);
    assert!(
        checked >= 8,
        "only {checked} defaults read from openapi.json"
    );
}

#[test]
fn the_python_docs_show_the_real_defaults() {
    let text =
        std::fs::read_to_string(format!("{ROOT}/crates/volley-py/python/volley/__init__.py"))
            .expect("read the Python package");
    // The options' docs are generated from the table (`_volley.OPTIONS`),
    // as the Python tests check; a default typed by hand in prose, as
    // ``per_host`` (per host, default 8), must still be the real one.
    assert!(
        text.contains("_volley.OPTIONS"),
        "the Python docs list the options from the engine's table"
    );
    let mut found = Vec::new();
    for part in text.split("``").collect::<Vec<_>>().windows(2) {
        let (name, after) = (part[0], part[1]);
        if !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') || name.is_empty() {
            continue;
        }
        let Some(paren) = after.trim_start().strip_prefix('(') else {
            continue;
        };
        let inside = paren.split(')').next().unwrap_or_default();
        if let Some((_, value)) = inside.split_once("default ") {
            let value = value.split([',', ' ']).next().unwrap_or_default();
            // Seconds, as the keyword arguments take them.
            let value = if name == "timeout" || name.ends_with("_timeout") {
                format!("{value}s")
            } else {
                value.to_owned()
            };
            found.push((name.replace('_', "-"), value));
        }
    }
    check("the Python docstrings", &found);
}
