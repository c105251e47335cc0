//! The command line: every flag defined once, with its unit in its help,
//! and turned into the plain [`FetchSpec`] the engine takes.
//!
//! Every `fetch` flag can also be set in a TOML file (`--config`), under the
//! flag's long name (`per-host = 4`, `rate = "5/s"`, `header = ["A: b"]`),
//! plus `[hosts."PATTERN"]` tables with `rate` and `concurrency` for hosts
//! matching a name or glob. A flag given on the command line wins over the
//! file; the file wins over the defaults. File values go through the same
//! parsers as flags, so they accept the same forms.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use volley::FetchSpec;
use volley::process::{PageRules, Paginate};
use volley::spec::{DEFAULT_USER_AGENT, HostRule, Rate, parse_header};

/// Fetch very many URLs concurrently and politely; record one outcome per input.
#[derive(Debug, Parser)]
#[command(name = "volley", version, about, long_about = None)]
pub struct Cli {
    /// SQLite database holding jobs, tasks and outcomes [default: volley.db].
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The database path (the default when `--db` is not given).
    pub fn db(&self) -> PathBuf {
        self.db
            .clone()
            .unwrap_or_else(|| PathBuf::from("volley.db"))
    }
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch every URL of a list (one per line; blank lines and # comments
    /// skipped) and record an outcome for each. Rerun the same command to
    /// resume an interrupted job.
    Fetch(Box<FetchArgs>),
    /// List jobs with their task counts and outcome classes.
    Status,
    /// Write a job's outcomes to stdout, in input line order.
    Export(ExportArgs),
}

/// `volley fetch`. Options without a value here take the config file's, then
/// the default shown in their help.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Inputs to read, in order: files, or `-` for stdin (nothing reads stdin).
    #[arg(value_name = "FILE|-")]
    pub inputs: Vec<PathBuf>,

    /// Expand a URL template instead of reading files: {1..100} ranges (zero-padded as written) and {a,b,c} lists.
    #[arg(long, value_name = "TEMPLATE", conflicts_with = "inputs")]
    pub template: Option<String>,

    /// Read CSV (TSV for .tsv files or with --tsv) and take the URL from this column; the other columns are kept as metadata.
    #[arg(long, value_name = "NAME", conflicts_with = "field")]
    pub column: Option<String>,

    /// With --column: the input is tab-separated.
    #[arg(long, requires = "column")]
    pub tsv: bool,

    /// Read JSON Lines and take the URL at this JSON pointer (e.g. /links/self); the object is kept as metadata.
    #[arg(long, value_name = "POINTER")]
    pub field: Option<String>,

    /// Follow pagination: link (RFC 8288 Link rel=next), json-next=/ptr, cursor=/ptr (with --cursor-param), page=NAME, offset=NAME (with --page-size).
    #[arg(long, value_name = "STYLE")]
    pub paginate: Option<String>,

    /// The query parameter that carries the cursor for --paginate cursor=/ptr.
    #[arg(long, value_name = "NAME")]
    pub cursor_param: Option<String>,

    /// Items per page: --paginate offset= advances by it; a shorter page ends page=/offset= chains.
    #[arg(long, value_name = "N")]
    pub page_size: Option<u64>,

    /// Most pages followed in one chain [default: no limit].
    #[arg(long, value_name = "N")]
    pub max_pages: Option<u32>,

    /// Record each element of the JSON array at this pointer as an item (see `volley export --items`); an empty array ends a chain.
    #[arg(long, value_name = "POINTER")]
    pub items: Option<String>,

    /// Keep a field of each JSON page in its outcome, as NAME=/pointer; repeatable.
    #[arg(long, value_name = "NAME=POINTER", value_parser = parse_extract)]
    pub extract: Vec<(String, String)>,

    /// TOML file with defaults for these options and per-host limits.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Job name [default: the input's file name, or `stdin`].
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,

    /// Most requests in flight at once, over all hosts [default: 64].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,

    /// Most requests in flight at once to one host [default: 8].
    #[arg(long, value_name = "N")]
    pub per_host: Option<usize>,

    /// Most requests started per second to one host, as N/s, N/m or N/h [default: no limit].
    #[arg(long, value_parser = parse_rate, value_name = "RATE")]
    pub rate: Option<Rate>,

    /// Most requests started per second over all hosts, as N/s, N/m or N/h [default: no limit].
    #[arg(long, value_parser = parse_rate, value_name = "RATE")]
    pub global_rate: Option<Rate>,

    /// Fetch each host's robots.txt first; disallowed URLs get robots_denied, Crawl-delay caps the rate.
    #[arg(long)]
    pub respect_robots: bool,

    /// Time to establish a connection: seconds, or with a unit (500ms, 2m) [default: 10s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Option<Duration>,

    /// Longest silence while waiting for headers or body data: seconds, or with a unit [default: 30s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub read_timeout: Option<Duration>,

    /// Time for one whole attempt (connect, headers, body): seconds, or with a unit [default: 60s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,

    /// How long an idle connection is kept open for reuse: seconds, or with a unit [default: 5s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Option<Duration>,

    /// Time for the whole run; tasks without an outcome by then get `deadline` [default: no limit].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub deadline: Option<Duration>,

    /// Retries after the first attempt, for connect errors, timeouts, resets and 408/429/500/502/503/504 [default: 3].
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,

    /// First backoff ceiling (doubles per retry, full jitter): seconds, or with a unit [default: 500ms].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub backoff_base: Option<Duration>,

    /// Highest backoff ceiling: seconds, or with a unit [default: 30s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub backoff_max: Option<Duration>,

    /// Longest Retry-After honoured (and longest host pause); a server asking for more is not retried [default: 120s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub max_retry_after: Option<Duration>,

    /// Redirects followed before the outcome is too_many_redirects [default: 10].
    #[arg(long, value_name = "N")]
    pub max_redirects: Option<usize>,

    /// Extra request header, as 'Name: value'; repeatable (replaces the config file's list).
    #[arg(short = 'H', long = "header", value_parser = parse_header_arg, value_name = "HEADER")]
    pub headers: Vec<(String, String)>,

    /// User-Agent header [default: volley/<version>].
    #[arg(long, value_name = "STRING")]
    pub user_agent: Option<String>,

    /// Extra certificate authority to trust (PEM file), besides the system's; repeatable.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,

    /// Name server to ask instead of the system's, as IP or IP:PORT (port 53 by default); repeatable.
    #[arg(long = "dns-server", value_parser = parse_dns_server, value_name = "ADDR")]
    pub dns_servers: Vec<std::net::SocketAddr>,

    /// Save bodies under DIR, named by their SHA-256 (DIR/ab/abcd…); otherwise bodies are hashed and dropped.
    #[arg(long, value_name = "DIR")]
    pub save_bodies: Option<PathBuf>,

    /// Largest decoded body, in bytes (suffixes K, M, G = 1024-based); larger is body_too_large [default: no limit].
    #[arg(long, value_parser = parse_bytes, value_name = "BYTES")]
    pub max_body: Option<u64>,

    /// Largest ratio of decoded to received bytes (past 1 MiB decoded); larger is decompression_bomb [default: 200].
    #[arg(long, value_name = "N")]
    pub max_decompression_ratio: Option<u64>,

    /// Slowest body transfer allowed, in bytes per second over --speed-window; slower is too_slow [default: no limit].
    #[arg(long, value_parser = parse_bytes, value_name = "BYTES")]
    pub min_speed: Option<u64>,

    /// The window over which --min-speed is measured: seconds, or with a unit [default: 30s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub speed_window: Option<Duration>,

    /// After Ctrl-C, how long requests in flight may finish: seconds, or with a unit [default: 5s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub grace: Option<Duration>,

    /// No progress bar or progress lines (the summary is still printed).
    #[arg(short, long)]
    pub quiet: bool,
}

/// The keys a config file may hold, besides `[hosts]`.
const FILE_KEYS: [&str; 38] = [
    "db",
    "job",
    "template",
    "column",
    "tsv",
    "field",
    "paginate",
    "cursor-param",
    "page-size",
    "max-pages",
    "items",
    "extract",
    "concurrency",
    "per-host",
    "rate",
    "global-rate",
    "respect-robots",
    "connect-timeout",
    "read-timeout",
    "timeout",
    "idle-timeout",
    "deadline",
    "retries",
    "backoff-base",
    "backoff-max",
    "max-retry-after",
    "max-redirects",
    "header",
    "user-agent",
    "ca-cert",
    "dns-server",
    "save-bodies",
    "max-body",
    "max-decompression-ratio",
    "min-speed",
    "speed-window",
    "grace",
    "quiet",
];

/// A parsed `--config` file.
#[derive(Debug, Default)]
pub struct FileConfig {
    path: String,
    values: toml::Table,
}

impl FileConfig {
    /// Reads and checks `path`.
    ///
    /// # Errors
    /// A one-line message: unreadable, not TOML, or an unknown key.
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let values: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| format!("{shown} is not valid TOML: {}", e.message()))?;
        for key in values.keys() {
            if key != "hosts" && !FILE_KEYS.contains(&key.as_str()) {
                return Err(format!(
                    "{shown}: unknown key '{key}'; keys are the long names of `volley fetch` flags, and [hosts.\"PATTERN\"]"
                ));
            }
        }
        Ok(FileConfig {
            path: shown,
            values,
        })
    }

    /// The value of `key`, parsed as its flag would be.
    fn get<T>(
        &self,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        match self.values.get(key) {
            None => Ok(None),
            Some(value) => {
                let text = scalar(value).ok_or_else(|| {
                    format!("{}: '{key}' must be a string or a number", self.path)
                })?;
                parse(&text)
                    .map(Some)
                    .map_err(|e| format!("{}: '{key}': {e}", self.path))
            }
        }
    }

    /// A list value (`["a", "b"]`, or one string).
    fn list(&self, key: &str) -> Result<Vec<String>, String> {
        match self.values.get(key) {
            None => Ok(Vec::new()),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|v| {
                    scalar(v).ok_or_else(|| format!("{}: '{key}' must hold strings", self.path))
                })
                .collect(),
            Some(v) => scalar(v)
                .map(|s| vec![s])
                .ok_or_else(|| format!("{}: '{key}' must be a list of strings", self.path)),
        }
    }

    /// The `[hosts."PATTERN"]` tables, in file order.
    fn hosts(&self) -> Result<Vec<HostRule>, String> {
        let Some(hosts) = self.values.get("hosts") else {
            return Ok(Vec::new());
        };
        let table = hosts.as_table().ok_or_else(|| {
            format!(
                "{}: 'hosts' must be a table of [hosts.\"PATTERN\"]",
                self.path
            )
        })?;
        table
            .iter()
            .map(|(pattern, limits)| {
                let at = format!("{}: [hosts.\"{pattern}\"]", self.path);
                let limits = limits
                    .as_table()
                    .ok_or_else(|| format!("{at} must be a table with rate and concurrency"))?;
                for key in limits.keys() {
                    if key != "rate" && key != "concurrency" {
                        return Err(format!(
                            "{at}: unknown key '{key}'; use rate and concurrency"
                        ));
                    }
                }
                let field = |key: &str| limits.get(key).and_then(scalar);
                let rate = field("rate")
                    .map(|r| parse_rate(&r))
                    .transpose()
                    .map_err(|e| format!("{at}: rate: {e}"))?;
                let concurrency = field("concurrency")
                    .map(|c| {
                        c.parse::<usize>()
                            .map_err(|_| format!("{at}: concurrency must be a whole number"))
                    })
                    .transpose()?;
                Ok(HostRule {
                    pattern: pattern.to_ascii_lowercase(),
                    concurrency,
                    rate,
                })
            })
            .collect()
    }

    /// `true`/`false` for a flag that takes no value.
    fn flag(&self, key: &str) -> Result<bool, String> {
        match self.values.get(key) {
            None => Ok(false),
            Some(toml::Value::Boolean(b)) => Ok(*b),
            Some(_) => Err(format!("{}: '{key}' must be true or false", self.path)),
        }
    }
}

/// A TOML scalar as the text a flag would take.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a whole number"))
}

impl FetchArgs {
    /// The engine's view of these flags over `file` over the defaults.
    ///
    /// # Errors
    /// A one-line message naming the file key that does not parse.
    pub fn spec(&self, file: &FileConfig) -> Result<FetchSpec, String> {
        let d = FetchSpec::default();
        let headers = if self.headers.is_empty() {
            file.list("header")?
                .iter()
                .map(|h| parse_header_arg(h).map_err(|e| format!("{}: header: {e}", file.path)))
                .collect::<Result<_, _>>()?
        } else {
            self.headers.clone()
        };
        let dns_servers = if self.dns_servers.is_empty() {
            file.list("dns-server")?
                .iter()
                .map(|s| parse_dns_server(s).map_err(|e| format!("{}: dns-server: {e}", file.path)))
                .collect::<Result<_, _>>()?
        } else {
            self.dns_servers.clone()
        };
        let ca_certs = if self.ca_certs.is_empty() {
            file.list("ca-cert")?
                .into_iter()
                .map(PathBuf::from)
                .collect()
        } else {
            self.ca_certs.clone()
        };
        Ok(FetchSpec {
            concurrency: pick(
                self.concurrency,
                file.get("concurrency", parse_number)?,
                d.concurrency,
            ),
            per_host: pick(
                self.per_host,
                file.get("per-host", parse_number)?,
                d.per_host,
            ),
            rate: self.rate.or(file.get("rate", parse_rate)?),
            global_rate: self.global_rate.or(file.get("global-rate", parse_rate)?),
            hosts: file.hosts()?,
            respect_robots: self.respect_robots || file.flag("respect-robots")?,
            connect_timeout: pick(
                self.connect_timeout,
                file.get("connect-timeout", parse_duration)?,
                d.connect_timeout,
            ),
            read_timeout: pick(
                self.read_timeout,
                file.get("read-timeout", parse_duration)?,
                d.read_timeout,
            ),
            timeout: pick(
                self.timeout,
                file.get("timeout", parse_duration)?,
                d.timeout,
            ),
            idle_timeout: pick(
                self.idle_timeout,
                file.get("idle-timeout", parse_duration)?,
                d.idle_timeout,
            ),
            retries: pick(self.retries, file.get("retries", parse_number)?, d.retries),
            backoff_base: pick(
                self.backoff_base,
                file.get("backoff-base", parse_duration)?,
                d.backoff_base,
            ),
            backoff_max: pick(
                self.backoff_max,
                file.get("backoff-max", parse_duration)?,
                d.backoff_max,
            ),
            max_retry_after: pick(
                self.max_retry_after,
                file.get("max-retry-after", parse_duration)?,
                d.max_retry_after,
            ),
            max_redirects: pick(
                self.max_redirects,
                file.get("max-redirects", parse_number)?,
                d.max_redirects,
            ),
            headers,
            user_agent: pick(
                self.user_agent.clone(),
                file.get("user-agent", |s| Ok(s.to_owned()))?,
                DEFAULT_USER_AGENT.to_owned(),
            ),
            ca_certs,
            dns_servers,
            save_bodies: self
                .save_bodies
                .clone()
                .or(file.get("save-bodies", |s| Ok(PathBuf::from(s)))?),
            max_body_bytes: self.max_body.or(file.get("max-body", parse_bytes)?),
            max_decompression_ratio: pick(
                self.max_decompression_ratio,
                file.get("max-decompression-ratio", parse_number)?,
                d.max_decompression_ratio,
            ),
            min_speed_bytes: self.min_speed.or(file.get("min-speed", parse_bytes)?),
            speed_window: pick(
                self.speed_window,
                file.get("speed-window", parse_duration)?,
                d.speed_window,
            ),
            deadline: self.deadline.or(file.get("deadline", parse_duration)?),
            pages: self.pages(file)?,
            grace: pick(self.grace, file.get("grace", parse_duration)?, d.grace),
        })
    }

    /// The page rules: pagination, items and extraction.
    fn pages(&self, file: &FileConfig) -> Result<PageRules, String> {
        let text = |s: &str| Ok(s.to_owned());
        let cursor_param = self
            .cursor_param
            .clone()
            .or(file.get("cursor-param", text)?);
        let paginate = match self.paginate.clone().or(file.get("paginate", text)?) {
            Some(style) => Some(Paginate::parse(&style, cursor_param.as_deref())?),
            None => None,
        };
        let extract = if self.extract.is_empty() {
            file.list("extract")?
                .iter()
                .map(|e| parse_extract(e).map_err(|err| format!("{}: extract: {err}", file.path)))
                .collect::<Result<_, _>>()?
        } else {
            self.extract.clone()
        };
        Ok(PageRules {
            paginate,
            items: self.items.clone().or(file.get("items", text)?),
            extract,
            page_size: self.page_size.or(file.get("page-size", parse_number)?),
            max_pages: self.max_pages.or(file.get("max-pages", parse_number)?),
        })
    }

    /// Where the inputs come from, flags over the file.
    pub fn source(&self, file: &FileConfig) -> Result<SourceChoice, String> {
        let text = |s: &str| Ok(s.to_owned());
        if let Some(template) = self.template.clone().or(file.get("template", text)?) {
            if !self.inputs.is_empty() {
                return Err("give either input files or --template, not both".into());
            }
            return Ok(SourceChoice::Template(template));
        }
        let column = self.column.clone().or(file.get("column", text)?);
        let field = self.field.clone().or(file.get("field", text)?);
        let format = match (column, field) {
            (Some(_), Some(_)) => {
                return Err("give either --column (CSV) or --field (JSON Lines), not both".into());
            }
            (Some(column), None) => InputFormat::Csv {
                column,
                tsv: self.tsv || file.flag("tsv")?,
            },
            (None, Some(pointer)) if pointer.starts_with('/') => InputFormat::Jsonl(pointer),
            (None, Some(pointer)) => {
                return Err(format!(
                    "--field '{pointer}' is not a JSON pointer; write it like /url or /links/self"
                ));
            }
            (None, None) => InputFormat::Lines,
        };
        Ok(SourceChoice::Files {
            paths: self.inputs.clone(),
            format,
        })
    }

    /// `--job`, or the config file's `job`.
    pub fn job(&self, file: &FileConfig) -> Result<Option<String>, String> {
        Ok(self.job.clone().or(file.get("job", |s| Ok(s.to_owned()))?))
    }

    /// `--quiet`, or the config file's `quiet`.
    pub fn quiet(&self, file: &FileConfig) -> Result<bool, String> {
        Ok(self.quiet || file.flag("quiet")?)
    }
}

/// Where a run's inputs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceChoice {
    /// Files (`-` is stdin; none means stdin), in one format.
    Files {
        /// The paths.
        paths: Vec<PathBuf>,
        /// How to read them.
        format: InputFormat,
    },
    /// A URL template.
    Template(String),
}

/// How input files are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputFormat {
    /// One URL per line.
    Lines,
    /// CSV or TSV, the URL in `column`.
    Csv {
        /// The URL column's header.
        column: String,
        /// Tab-separated (also implied by a `.tsv` file name).
        tsv: bool,
    },
    /// JSON Lines, the URL at a pointer.
    Jsonl(String),
}

/// The config file's `db`, if the flag is not given.
pub fn db_from(file: &FileConfig) -> Result<Option<PathBuf>, String> {
    file.get("db", |s| Ok(PathBuf::from(s)))
}

/// The flag's value, else the file's, else the default.
fn pick<T>(flag: Option<T>, file: Option<T>, default: T) -> T {
    flag.or(file).unwrap_or(default)
}

/// `volley export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The job to export [default: the only job, if there is one].
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,

    /// Export the job's items (--items elements) instead of its outcomes: JSONL writes each item as the API sent it.
    #[arg(long)]
    pub items: bool,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
}

/// Formats of `volley export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

/// Seconds (`30`, `0.5`) or a duration with units (`500ms`, `2m`, `1h 30m`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("'{text}' is not a duration of 0 seconds or more"));
    }
    humantime::parse_duration(text).map_err(|e| {
        format!("'{text}' is not a duration ({e}); use seconds or a unit: 500ms, 10s, 2m")
    })
}

/// Bytes, with an optional 1024-based suffix: `1048576`, `512K`, `10M`, `2G`, `10MiB`.
fn parse_bytes(text: &str) -> Result<u64, String> {
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

fn parse_rate(text: &str) -> Result<Rate, String> {
    text.parse()
}

/// `NAME=/pointer` for `--extract`.
fn parse_extract(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, pointer)) if !name.trim().is_empty() && pointer.trim().starts_with('/') => {
            Ok((name.trim().to_owned(), pointer.trim().to_owned()))
        }
        _ => Err(format!(
            "--extract '{text}': write NAME=/json/pointer, e.g. total=/meta/total"
        )),
    }
}

/// `IP` or `IP:PORT` (port 53 when not given) for `--dns-server`.
fn parse_dns_server(text: &str) -> Result<std::net::SocketAddr, String> {
    let text = text.trim();
    text.parse::<std::net::SocketAddr>()
        .or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(|ip| std::net::SocketAddr::new(ip, 53))
        })
        .map_err(|_| format!("'{text}' is not an IP address or IP:PORT, e.g. 127.0.0.1:5353"))
}

fn parse_header_arg(text: &str) -> Result<(String, String), String> {
    parse_header(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_or_units() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn byte_counts_take_binary_suffixes() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("512K"), Ok(512 * 1024));
        assert_eq!(parse_bytes("10MiB"), Ok(10 << 20));
        assert_eq!(parse_bytes("2g"), Ok(2 << 30));
        assert!(parse_bytes("10X").is_err());
        assert!(parse_bytes("M").is_err());
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    fn file(text: &str) -> Result<FileConfig, String> {
        let dir =
            std::env::temp_dir().join(format!("volley-args-{}-{}", std::process::id(), text.len()));
        std::fs::write(&dir, text).map_err(|e| e.to_string())?;
        let loaded = FileConfig::load(&dir);
        let _ = std::fs::remove_file(&dir);
        loaded
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() -> Result<(), String> {
        let cfg = file(
            "per-host = 2\nrate = \"120/m\"\ntimeout = \"5s\"\nheader = [\"X-A: 1\"]\n\
             [hosts.\"*.example.com\"]\nrate = \"5/s\"\nconcurrency = 1\n",
        )?;
        let cli = Cli::try_parse_from(["volley", "fetch", "-", "--per-host", "3"])
            .map_err(|e| e.to_string())?;
        let Command::Fetch(args) = cli.command else {
            return Err("expected fetch".into());
        };
        let spec = args.spec(&cfg)?;
        assert_eq!(spec.per_host, 3, "the flag wins");
        assert_eq!(
            spec.rate,
            Some(Rate { per_sec: 2.0 }),
            "the file wins over the default"
        );
        assert_eq!(spec.timeout, Duration::from_secs(5));
        assert_eq!(spec.concurrency, 64, "the default");
        assert_eq!(spec.headers, [("X-A".to_owned(), "1".to_owned())]);
        assert_eq!(
            spec.hosts,
            [HostRule {
                pattern: "*.example.com".into(),
                concurrency: Some(1),
                rate: Some(Rate { per_sec: 5.0 })
            }]
        );
        Ok(())
    }

    #[test]
    fn bad_config_files_say_what_to_fix() {
        let unknown = file("concurency = 3\n").expect_err("unknown key");
        assert!(unknown.contains("unknown key 'concurency'"), "{unknown}");
        let cfg = file("timeout = \"soon\"\n").expect("valid TOML");
        let cli = Cli::try_parse_from(["volley", "fetch", "-"]).expect("valid flags");
        let Command::Fetch(args) = cli.command else {
            panic!("expected fetch");
        };
        let err = args.spec(&cfg).expect_err("bad duration");
        assert!(err.contains("'timeout'") && err.contains("soon"), "{err}");
        let bad_host = file("[hosts.\"a.test\"]\nrte = \"5/s\"\n").expect("valid TOML");
        let err = args.spec(&bad_host).expect_err("unknown host key");
        assert!(err.contains("unknown key 'rte'"), "{err}");
    }
}
