//! The option table: every job option defined once, with its key, the form
//! of its value, its help, what no value means, and what kind of option it
//! is. In the manner of ripgrep's flag definitions, everything a front end
//! shows of an option is generated from here: the command line's flags and
//! their `[default: …]` (from [`FetchSpec::default`], never typed), the
//! JSON Schema of the API's `options`, and the Python keywords' docs. The
//! lists that used to be written by hand (politeness keys, server-only
//! keys, secrets, the address rules a server stores) are filters of the
//! table ([`Opt::is`]).
//!
//! The values themselves are parsed by [`FetchSpec`]'s serde form, whose
//! keys are these keys; a test holds the two to the same set.

use serde_json::{Map, Value, json};

use super::spec::FetchSpec;
use super::{Spelling, respell};

/// The form of an option's value: how it is written and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A whole number of 0 or more, as a number or a string holding one.
    Count,
    /// Seconds (`30`, `0.5`) or a duration with a unit (`500ms`, `2m`).
    Duration,
    /// Requests per second: `N/s`, `N/m`, `N/h`, or a number per second.
    Rate,
    /// Bytes, with an optional 1024-based suffix (`512K`, `10M`, `2G`).
    Bytes,
    /// On or off: a flag without a value; `true`/`false` elsewhere.
    Switch,
    /// One string.
    Text,
    /// A list of strings; a flag given again adds one, a config file may
    /// give one string or a list.
    Texts,
    /// A table of host patterns, each with its limits (config file and API
    /// only).
    Hosts,
}

/// What kind of option one is, beyond its value ([`Opt::is`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Sets politeness (per-host limits, rates, host rules, robots.txt): a
    /// job keeps the values it was created with, so that every worker
    /// applies the same ones; `volley work` refuses them.
    Politeness = 1,
    /// A secret: read by each run, never written with a job, never shown.
    Secret = 2,
    /// Set by the server, not per job through the API: it names a file on
    /// the server, loosens the server's address rules, or is a secret a
    /// job cannot keep across a restart.
    ServerOnly = 4,
    /// An address rule (the SSRF guard) that a server stores with each of
    /// its jobs, so that `volley work` processes apply it too.
    AddressRule = 8,
    /// Has no command-line flag: set in a config file or an API request.
    NoFlag = 16,
    /// Routes connections through a proxy: the proxy, not volley, would
    /// connect, so it cannot go with the address rules (`--deny-private`)
    /// that `volley serve` applies to every job.
    Proxy = 32,
}

/// One option's definition.
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    /// The key: the flag's long name, the config file's and `VOLLEY_*`
    /// variable's key (`per-host`, `VOLLEY_PER_HOST`); with `_` for `-`,
    /// the Python keyword and the API field (`per_host`).
    pub key: &'static str,
    /// The form of the value.
    pub form: Form,
    /// The placeholder of the value in help (`N`, `DURATION`); empty for a
    /// switch.
    pub value_name: &'static str,
    /// A one-letter flag, as curl spells it (`-H`, `-k`, `-u`).
    pub short: Option<char>,
    /// What it does, with units, in flag spelling (`--page-size`); other
    /// front ends respell it ([`respell`]).
    pub help: &'static str,
    /// What having no value means, shown as the default when there is
    /// none (`no limit`).
    pub unset: Option<&'static str>,
    kinds: u8,
}

impl Opt {
    const fn new(
        key: &'static str,
        form: Form,
        value_name: &'static str,
        help: &'static str,
    ) -> Opt {
        Opt {
            key,
            form,
            value_name,
            short: None,
            help,
            unset: None,
            kinds: 0,
        }
    }

    const fn short(mut self, letter: char) -> Opt {
        self.short = Some(letter);
        self
    }

    const fn unset(mut self, meaning: &'static str) -> Opt {
        self.unset = Some(meaning);
        self
    }

    const fn kind(mut self, kind: Kind) -> Opt {
        self.kinds |= kind as u8;
        self
    }

    /// Whether this option is of `kind`.
    pub fn is(&self, kind: Kind) -> bool {
        self.kinds & kind as u8 != 0
    }

    /// The Python keyword and API field: `per_host`.
    pub fn snake(&self) -> String {
        self.key.replace('-', "_")
    }

    /// The default as shown to people (`8`, `30s`, `no limit`), from
    /// [`FetchSpec::default`]; `None` for an option whose default is
    /// nothing to speak of (a switch that is off, an empty list).
    pub fn default_text(&self) -> Option<String> {
        match defaults().get(self.key) {
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Bool(true)) => Some("on".to_owned()),
            _ => self.unset.map(str::to_owned),
        }
    }

    /// The help with its default, as `volley fetch --help` shows it:
    /// `Most requests in flight at once to one host [default: 8].`
    pub fn help_with_default(&self, spelling: Spelling) -> String {
        let help = respell(self.help, spelling);
        match self.default_text() {
            None => help,
            Some(default) => {
                let (text, stop) = match help.strip_suffix('.') {
                    Some(text) => (text, "."),
                    None => (help.as_str(), ""),
                };
                format!("{text} [default: {default}]{stop}")
            }
        }
    }

    /// The JSON Schema of this option's value in the API's `options`
    /// (what [`FetchSpec`]'s serde form reads), with its help as the
    /// description.
    pub fn json_schema(&self) -> Value {
        let nullable = matches!(defaults().get(self.key), Some(Value::Null) | None);
        let mut types: Vec<&str> = match self.form {
            Form::Count | Form::Bytes => vec!["integer", "string"],
            Form::Duration => vec!["number", "string"],
            Form::Rate => vec!["string", "number"],
            Form::Switch => vec!["boolean", "string"],
            Form::Text => vec!["string"],
            Form::Texts => vec!["string", "array"],
            Form::Hosts => vec!["object"],
        };
        if nullable {
            types.push("null");
        }
        let mut schema = json!({
            "type": types,
            "description": self.help_with_default(Spelling::Api),
        });
        if self.form == Form::Texts {
            schema["items"] = json!({"type": "string"});
        }
        if self.form == Form::Hosts {
            schema["additionalProperties"] = json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "rate": {"type": ["string", "number"]},
                    "concurrency": {"type": ["integer", "string"]},
                    "insecure": {"type": ["boolean", "string"]},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            });
        }
        schema
    }
}

/// The JSON Schema of an `options` object holding the options `admit`
/// lets in, keyed by their API names (`per_host`); unknown keys refused.
pub fn json_schema(admit: impl Fn(&Opt) -> bool) -> Value {
    let properties: Map<String, Value> = OPTIONS
        .iter()
        .filter(|opt| admit(opt))
        .map(|opt| (opt.snake(), opt.json_schema()))
        .collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
    })
}

/// The option named `key` (`per-host`; `per_host` is the same option).
pub fn find(key: &str) -> Option<&'static Opt> {
    let key = key.replace('_', "-");
    OPTIONS.iter().find(|opt| opt.key == key)
}

/// Every option's default, keyed as the table is, in [`FetchSpec`]'s text
/// form (`"30s"`, `8`, `null`); secrets, which are never written, are
/// `null`.
pub fn defaults() -> &'static Map<String, Value> {
    static DEFAULTS: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(|| {
        let mut values = match serde_json::to_value(FetchSpec::default()) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        for opt in OPTIONS.iter().filter(|opt| opt.is(Kind::Secret)) {
            values.insert(opt.key.to_owned(), Value::Null);
        }
        values
    });
    &DEFAULTS
}

use Form::{Bytes, Count, Duration, Hosts, Rate, Switch, Text, Texts};
use Kind::{AddressRule, NoFlag, Politeness, Proxy, Secret, ServerOnly};

/// Every job option, in the order `--help` lists them.
pub static OPTIONS: &[Opt] = &[
    Opt::new("paginate", Text, "STYLE", "Follow pagination: link (RFC 8288 Link rel=next), json-next=/ptr, cursor=/ptr (with --cursor-param), page=NAME, offset=NAME (with --page-size)."),
    Opt::new("cursor-param", Text, "NAME", "The query parameter that carries the cursor for --paginate cursor=/ptr."),
    Opt::new("page-size", Count, "N", "Items per page: --paginate offset= advances by it; a shorter page ends page=/offset= chains."),
    Opt::new("max-pages", Count, "N", "Most pages followed in one chain.").unset("no limit"),
    Opt::new("items", Text, "POINTER", "Record each element of the JSON array at this pointer as an item (see `volley export --items`); an empty array ends a chain."),
    Opt::new("extract", Texts, "NAME=POINTER", "Keep a field of each JSON page in its outcome, as NAME=/pointer; repeatable."),
    Opt::new("follow", Switch, "", "Crawl: the links of each fetched HTML page (a, area, iframe, frame, link rel=alternate/canonical/next/prev) that are in --scope become tasks of the job, each URL once, with the page's outcome; the inputs are the seeds."),
    Opt::new("max-depth", Count, "N", "With --follow: most links followed from a seed (the pages a seed links to are depth 1).").unset("no limit"),
    Opt::new("max-crawl-pages", Count, "N", "With --follow: most pages the crawl adds to the job, seeds not counted; links past it are not added, and the page naming them says how many.").unset("no limit"),
    Opt::new("max-host-pages", Count, "N", "With --follow: most pages the crawl adds on one host, seeds not counted.").unset("no limit"),
    Opt::new("scope", Text, "SCOPE", "With --follow: the links followed, against each page's seed: host (the seed's host), domain (its registrable domain, by the Public Suffix List) or prefix (its host, under its directory, as wget --no-parent).").unset("host"),
    Opt::new("include", Texts, "REGEX", "With --follow: follow (or check) only links whose URL matches one of these regular expressions; repeatable."),
    Opt::new("exclude", Texts, "REGEX", "With --follow: never fetch links whose URL matches one of these regular expressions; repeatable."),
    Opt::new("check-external", Switch, "", "With --follow: check each out-of-scope link once, with HEAD (then GET when the HEAD is answered 4xx or 5xx), never following its links (a link check)."),
    Opt::new("sitemaps", Switch, "", "With --follow: the Sitemap: lines of each seed's robots.txt become links of the seed (as under --respect-robots); a seed that is a sitemap is read as one anyway."),
    Opt::new("strip-query", Texts, "NAME_GLOB", "With --follow: drop the query parameters whose names match this glob (utm_*, sessionid) from links before dedupe; repeatable."),
    Opt::new("concurrency", Count, "N", "Most requests in flight at once, over all hosts."),
    Opt::new("per-host", Count, "N", "Most requests in flight at once to one host.").kind(Politeness),
    Opt::new("rate", Rate, "RATE", "Most requests started per second to one host, as N/s, N/m or N/h.").unset("no limit").kind(Politeness),
    Opt::new("global-rate", Rate, "RATE", "Most requests started per second over all hosts, as N/s, N/m or N/h.").unset("no limit").kind(Politeness),
    Opt::new("hosts", Hosts, "", "Per-host rules, first match wins (exact names before glob patterns): a table of patterns (a host, host:port, or a glob of either), each with rate, concurrency, insecure and headers; headers are never stored.").kind(Politeness).kind(NoFlag),
    Opt::new("respect-robots", Switch, "", "Fetch each host's robots.txt first; disallowed URLs get robots_denied, Crawl-delay caps the rate.").kind(Politeness),
    Opt::new("connect-timeout", Duration, "DURATION", "Time to establish a connection: seconds, or with a unit (500ms, 2m)."),
    Opt::new("read-timeout", Duration, "DURATION", "Longest silence while waiting for headers or body data: seconds, or with a unit."),
    Opt::new("timeout", Duration, "DURATION", "Time for one whole attempt (connect, headers, body): seconds, or with a unit."),
    Opt::new("idle-timeout", Duration, "DURATION", "How long an idle connection is kept open for reuse: seconds, or with a unit."),
    Opt::new("deadline", Duration, "DURATION", "Time for the whole run; tasks without an outcome by then get `deadline`.").unset("no limit"),
    Opt::new("retries", Count, "N", "Retries after the first attempt, for connect errors, timeouts, resets and 408/429/500/502/503/504."),
    Opt::new("backoff-base", Duration, "DURATION", "First backoff ceiling (doubles per retry, full jitter): seconds, or with a unit."),
    Opt::new("backoff-max", Duration, "DURATION", "Highest backoff ceiling: seconds, or with a unit."),
    Opt::new("max-retry-after", Duration, "DURATION", "Longest Retry-After honoured (and longest host pause); a server asking for more is not retried."),
    Opt::new("max-redirects", Count, "N", "Redirects followed before the outcome is too_many_redirects."),
    Opt::new("header", Texts, "HEADER", "Extra request header, as 'Name: value'; repeatable (replaces the config file's list).").short('H'),
    Opt::new("user-agent", Text, "STRING", "User-Agent header."),
    Opt::new("ca-cert", Texts, "FILE", "Extra certificate authority to trust (PEM file), besides the system's; repeatable.").kind(ServerOnly),
    Opt::new("dns-server", Texts, "ADDR", "Name server to ask instead of the system's, as IP or IP:PORT (port 53 by default); repeatable.").kind(ServerOnly),
    Opt::new("deny-private", Switch, "", "Refuse loopback, private, link-local and other special addresses (checked after DNS and on every redirect); such URLs get forbidden_address.").kind(ServerOnly).kind(AddressRule),
    Opt::new("allow-private", Texts, "CIDR", "Where private addresses are refused (with --deny-private, and always in volley serve): a range to allow anyway, as CIDR (127.0.0.0/8); repeatable.").kind(ServerOnly).kind(AddressRule),
    Opt::new("proxy", Text, "URL", "Proxy for every request: http://, https://, socks5:// or socks5h://HOST:PORT.").unset("HTTP_PROXY, HTTPS_PROXY or ALL_PROXY")
    .kind(Proxy),
    Opt::new("no-proxy", Texts, "LIST", "Hosts reached without the proxy, comma-separated (a name covers its subdomains; * for all; IPs, CIDR).").unset("NO_PROXY")
    .kind(Proxy),
    Opt::new("insecure", Switch, "", "Accept any TLS certificate without verifying it, as curl's -k (for internal servers with self-made certificates); a warning says so.").short('k'),
    Opt::new("client-cert", Text, "FILE", "Client certificate (PEM) for servers that require one (mutual TLS); with --client-key.").kind(ServerOnly),
    Opt::new("client-key", Text, "FILE", "Private key (PEM) of --client-cert.").kind(ServerOnly),
    Opt::new("user", Text, "NAME:PASSWORD", "HTTP Basic credentials for every request, as curl's -u; dropped on a redirect to another host, never stored or shown.").short('u').kind(Secret).kind(ServerOnly),
    Opt::new("bearer-token-file", Text, "FILE", "A file holding a bearer token, sent as Authorization: Bearer …; dropped on a redirect to another host, never stored or shown.").kind(ServerOnly),
    Opt::new("cookies", Switch, "", "Keep cookies for the run: Set-Cookie answers are sent back to the hosts they belong to (RFC 6265); values are kept out of the recorded headers."),
    Opt::new("cookie-jar", Text, "FILE", "Load cookies from FILE (Netscape format, as curl -c and wget --save-cookies write it; missing = empty) and save them back when the run ends; implies --cookies.").kind(ServerOnly),
    Opt::new("save-bodies", Text, "DIR", "Save bodies under DIR, named by their SHA-256 (DIR/ab/abcd…); otherwise bodies are hashed and dropped.").kind(ServerOnly),
    Opt::new("warc", Text, "PREFIX", "Archive every exchange as WARC/1.1 (ISO 28500) in PREFIX-<timestamp>-<serial>.warc.gz: request and response records with the payload as received, each redirect hop its own pair, revisit records for payloads already archived and for 304s of --refresh; see `volley export --cdxj`.").kind(ServerOnly),
    Opt::new("warc-max-size", Bytes, "BYTES", "With --warc: begin a new file once one reaches this size, compressed (suffixes K, M, G = 1024-based)."),
    Opt::new("warc-digest", Text, "ALGORITHM", "With --warc: the digest of WARC-Block-Digest and WARC-Payload-Digest: sha1 (what most readers expect) or sha256."),
    Opt::new("max-body", Bytes, "BYTES", "Largest decoded body, in bytes (suffixes K, M, G = 1024-based); larger is body_too_large.").unset("no limit"),
    Opt::new("max-decompression-ratio", Count, "N", "Largest ratio of decoded to received bytes (past 1 MiB decoded); larger is decompression_bomb."),
    Opt::new("min-speed", Bytes, "BYTES", "Slowest body transfer allowed, in bytes per second over --speed-window; slower is too_slow.").unset("no limit"),
    Opt::new("speed-window", Duration, "DURATION", "The window over which --min-speed is measured: seconds, or with a unit."),
    Opt::new("grace", Duration, "DURATION", "After Ctrl-C, how long requests in flight may finish: seconds, or with a unit."),
    Opt::new("refresh", Switch, "", "Ask only for what changed: send If-None-Match/If-Modified-Since from the last response the database has for each URL; a 304 is not_modified."),
    Opt::new("max-age", Duration, "DURATION", "Make no request for a URL checked less than this long ago (outcome fresh): seconds, or with a unit (1h, 7d).").unset("always ask"),
    Opt::new("respect-cache-control", Switch, "", "Make no request for a URL still fresh by its last response's Cache-Control max-age or Expires (outcome fresh)."),
    Opt::new("paginate-always", Switch, "", "With --paginate and --refresh: follow a chain past pages that are not_modified or fresh, to the next page they named last time."),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_every_option_the_spec_reads_and_no_other() {
        let mut table: Vec<&str> = OPTIONS.iter().map(|opt| opt.key).collect();
        let mut spec: Vec<&str> = defaults().keys().map(String::as_str).collect();
        table.sort_unstable();
        spec.sort_unstable();
        assert_eq!(table, spec);
    }

    #[test]
    fn defaults_are_shown_from_the_real_values() {
        let shown = |key: &str| find(key).and_then(Opt::default_text);
        assert_eq!(shown("per-host").as_deref(), Some("8"));
        assert_eq!(shown("timeout").as_deref(), Some("60s"));
        assert_eq!(shown("backoff-base").as_deref(), Some("500ms"));
        assert_eq!(shown("rate").as_deref(), Some("no limit"));
        assert_eq!(shown("insecure"), None, "a switch that is off");
        assert_eq!(
            find("per_host").map(|opt| opt.help_with_default(Spelling::Flag)),
            Some("Most requests in flight at once to one host [default: 8].".to_owned())
        );
    }

    #[test]
    fn the_kinds_are_filters() {
        let of = |kind| -> Vec<&str> {
            OPTIONS
                .iter()
                .filter(|o| o.is(kind))
                .map(|o| o.key)
                .collect()
        };
        assert_eq!(
            of(Politeness),
            ["per-host", "rate", "global-rate", "hosts", "respect-robots"]
        );
        assert_eq!(of(Secret), ["user"]);
        assert_eq!(of(AddressRule), ["deny-private", "allow-private"]);
        assert_eq!(of(NoFlag), ["hosts"]);
    }
}
