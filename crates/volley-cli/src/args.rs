//! The command line: each verb's flags, with units in their help.
//!
//! The fetch options themselves are defined once, by the engine's
//! `FetchSpec` and its serde form: here they are taken as text and handed,
//! as one layer, to `volley::options::resolve`, together with the config
//! file's layer (`--config`, TOML, keys are the flags' long names, plus
//! `[hosts."PATTERN"]` tables) and the `VOLLEY_*` environment
//! (`VOLLEY_PER_HOST=4`). Flags win over the environment, the environment
//! over the file, the file over the defaults; every layer goes through the
//! same parsers, so they accept the same forms.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use volley::FetchSpec;
use volley::options::{Layer, Source};

/// Fetch very many URLs concurrently and politely; record one outcome per input.
#[derive(Debug, Parser)]
#[command(name = "volley", version, about, long_about = None)]
pub struct Cli {
    /// Database holding jobs, tasks and outcomes: a SQLite file path, or a postgres://user@host:port/dbname URL (also VOLLEY_DB) [default: volley.db].
    #[arg(long, global = true, value_name = "PATH|URL")]
    pub db: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// `--db`, else `VOLLEY_DB`, else `volley.db` (a config file's `db`
    /// comes between the variable and the default: see `main`).
    pub fn db(&self) -> PathBuf {
        self.db_given()
            .unwrap_or_else(|| PathBuf::from("volley.db"))
    }

    /// `--db` or `VOLLEY_DB`, if either is set.
    pub fn db_given(&self) -> Option<PathBuf> {
        self.db
            .clone()
            .or_else(|| std::env::var_os("VOLLEY_DB").map(PathBuf::from))
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
    /// Delete a job with all its tasks, outcomes and items, and say how
    /// many went. Its name is then free for a new job.
    Delete(DeleteArgs),
    /// PostgreSQL: work on jobs other processes created, alongside any
    /// number of other workers, until they are done.
    Work(Box<WorkArgs>),
    /// Serve the engine over HTTP: a JSON API under /v1 (jobs, outcomes,
    /// live events), /metrics and a dashboard at /. Jobs share one
    /// politeness budget (these options' concurrency, per-host and rate
    /// limits) and are refused private addresses unless --allow-private.
    Serve(Box<ServeArgs>),
}

/// `volley serve`'s flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; a non-loopback address needs a token.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,

    /// File holding the bearer token every /v1 request must send (also VOLLEY_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Print a one-time link to the dashboard that signs the browser in without typing the token (valid for one use, within 5 minutes).
    #[arg(long)]
    pub print_url: bool,

    /// TOML file of option defaults for every job and the shared budget (as fetch's --config).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub options: OptionArgs,
}

/// `volley work`: a worker with no input of its own.
#[derive(Debug, Args)]
pub struct WorkArgs {
    /// The jobs to work on; repeatable [default: every unfinished job].
    #[arg(long, value_name = "NAME")]
    pub job: Vec<String>,

    /// When there is no work, wait for more instead of exiting.
    #[arg(long)]
    pub wait: bool,

    /// TOML file with defaults for the fetch options (politeness keys come from the job).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// No progress bar or progress lines (the summaries are still printed).
    #[arg(short, long)]
    pub quiet: bool,

    /// The fetch options, over the job's own. Per-host limits, rates,
    /// host rules and robots.txt always come from the job.
    #[command(flatten)]
    pub options: OptionArgs,
}

/// `volley fetch`. Fetch options are text here, parsed in one place with
/// those of the config file and the environment (`volley::options`): an
/// option without a value here takes the environment's, then the file's,
/// then the default shown in its help.
#[derive(Debug, Args, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FetchArgs {
    /// Inputs to read, in order: files, or `-` for stdin (nothing reads stdin).
    #[arg(value_name = "FILE|-")]
    #[serde(skip)]
    pub inputs: Vec<PathBuf>,

    /// Expand a URL template instead of reading files: {1..100} ranges (zero-padded as written) and {a,b,c} lists.
    #[arg(long, value_name = "TEMPLATE", conflicts_with = "inputs")]
    #[serde(skip)]
    pub template: Option<String>,

    /// Read CSV (TSV for .tsv files or with --tsv) and take the URL from this column; the other columns are kept as metadata.
    #[arg(long, value_name = "NAME", conflicts_with = "field")]
    #[serde(skip)]
    pub column: Option<String>,

    /// With --column: the input is tab-separated.
    #[arg(long, requires = "column")]
    #[serde(skip)]
    pub tsv: bool,

    /// Read JSON Lines and take the URL at this JSON pointer (e.g. /links/self); the object is kept as metadata.
    #[arg(long, value_name = "POINTER")]
    #[serde(skip)]
    pub field: Option<String>,

    /// TOML file with defaults for these options and per-host limits.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Job name [default: the input's file name, or `stdin`].
    #[arg(long, value_name = "NAME")]
    #[serde(skip)]
    pub job: Option<String>,

    /// No progress bar or progress lines (the summary is still printed).
    #[arg(short, long)]
    #[serde(skip)]
    pub quiet: bool,

    /// The fetch options.
    #[command(flatten)]
    #[serde(flatten)]
    pub options: OptionArgs,
}

/// The fetch options as flags (`volley fetch`, `volley work`). Each is
/// defined by `volley::FetchSpec`; here it is only text.
#[derive(Debug, Args, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct OptionArgs {
    /// PostgreSQL only: how long this worker's leases on hosts and tasks outlive its last heartbeat; must exceed --timeout [default: --timeout + 30s].
    #[arg(long, value_name = "DURATION")]
    #[serde(skip)]
    pub lease: Option<String>,

    /// Follow pagination: link (RFC 8288 Link rel=next), json-next=/ptr, cursor=/ptr (with --cursor-param), page=NAME, offset=NAME (with --page-size).
    #[arg(long, value_name = "STYLE")]
    pub paginate: Option<String>,

    /// The query parameter that carries the cursor for --paginate cursor=/ptr.
    #[arg(long, value_name = "NAME")]
    pub cursor_param: Option<String>,

    /// Items per page: --paginate offset= advances by it; a shorter page ends page=/offset= chains.
    #[arg(long, value_name = "N")]
    pub page_size: Option<String>,

    /// Most pages followed in one chain [default: no limit].
    #[arg(long, value_name = "N")]
    pub max_pages: Option<String>,

    /// Record each element of the JSON array at this pointer as an item (see `volley export --items`); an empty array ends a chain.
    #[arg(long, value_name = "POINTER")]
    pub items: Option<String>,

    /// Keep a field of each JSON page in its outcome, as NAME=/pointer; repeatable.
    #[arg(long, value_name = "NAME=POINTER")]
    pub extract: Vec<String>,

    /// Most requests in flight at once, over all hosts [default: 64].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<String>,

    /// Most requests in flight at once to one host [default: 8].
    #[arg(long, value_name = "N")]
    pub per_host: Option<String>,

    /// Most requests started per second to one host, as N/s, N/m or N/h [default: no limit].
    #[arg(long, value_name = "RATE")]
    pub rate: Option<String>,

    /// Most requests started per second over all hosts, as N/s, N/m or N/h [default: no limit].
    #[arg(long, value_name = "RATE")]
    pub global_rate: Option<String>,

    /// Fetch each host's robots.txt first; disallowed URLs get robots_denied, Crawl-delay caps the rate.
    #[arg(long)]
    pub respect_robots: bool,

    /// Time to establish a connection: seconds, or with a unit (500ms, 2m) [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<String>,

    /// Longest silence while waiting for headers or body data: seconds, or with a unit [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub read_timeout: Option<String>,

    /// Time for one whole attempt (connect, headers, body): seconds, or with a unit [default: 60s].
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,

    /// How long an idle connection is kept open for reuse: seconds, or with a unit [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,

    /// Time for the whole run; tasks without an outcome by then get `deadline` [default: no limit].
    #[arg(long, value_name = "DURATION")]
    pub deadline: Option<String>,

    /// Retries after the first attempt, for connect errors, timeouts, resets and 408/429/500/502/503/504 [default: 3].
    #[arg(long, value_name = "N")]
    pub retries: Option<String>,

    /// First backoff ceiling (doubles per retry, full jitter): seconds, or with a unit [default: 500ms].
    #[arg(long, value_name = "DURATION")]
    pub backoff_base: Option<String>,

    /// Highest backoff ceiling: seconds, or with a unit [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub backoff_max: Option<String>,

    /// Longest Retry-After honoured (and longest host pause); a server asking for more is not retried [default: 120s].
    #[arg(long, value_name = "DURATION")]
    pub max_retry_after: Option<String>,

    /// Redirects followed before the outcome is too_many_redirects [default: 10].
    #[arg(long, value_name = "N")]
    pub max_redirects: Option<String>,

    /// Extra request header, as 'Name: value'; repeatable (replaces the config file's list).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    #[serde(rename = "header")]
    pub headers: Vec<String>,

    /// User-Agent header [default: volley/<version>].
    #[arg(long, value_name = "STRING")]
    pub user_agent: Option<String>,

    /// Extra certificate authority to trust (PEM file), besides the system's; repeatable.
    #[arg(long = "ca-cert", value_name = "FILE")]
    #[serde(rename = "ca-cert")]
    pub ca_certs: Vec<String>,

    /// Name server to ask instead of the system's, as IP or IP:PORT (port 53 by default); repeatable.
    #[arg(long = "dns-server", value_name = "ADDR")]
    #[serde(rename = "dns-server")]
    pub dns_servers: Vec<String>,

    /// Refuse loopback, private, link-local and other special addresses (checked after DNS and on every redirect); such URLs get forbidden_address.
    #[arg(long)]
    pub deny_private: bool,

    /// Where private addresses are refused (with --deny-private, and always in volley serve): a range to allow anyway, as CIDR (127.0.0.0/8); repeatable.
    #[arg(long, value_name = "CIDR")]
    pub allow_private: Vec<String>,

    /// Proxy for every request: http://, https://, socks5:// or socks5h://HOST:PORT [default: HTTP_PROXY, HTTPS_PROXY or ALL_PROXY].
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,

    /// Hosts reached without the proxy, comma-separated (a name covers its subdomains; * for all; IPs, CIDR) [default: NO_PROXY].
    #[arg(long, value_name = "LIST")]
    pub no_proxy: Vec<String>,

    /// Accept any TLS certificate without verifying it, as curl's -k (for internal servers with self-made certificates); a warning says so.
    #[arg(short = 'k', long)]
    pub insecure: bool,

    /// Client certificate (PEM) for servers that require one (mutual TLS); with --client-key.
    #[arg(long, value_name = "FILE")]
    pub client_cert: Option<String>,

    /// Private key (PEM) of --client-cert.
    #[arg(long, value_name = "FILE")]
    pub client_key: Option<String>,

    /// HTTP Basic credentials for every request, as curl's -u; dropped on a redirect to another host, never stored or shown.
    #[arg(short = 'u', long, value_name = "NAME:PASSWORD")]
    pub user: Option<String>,

    /// A file holding a bearer token, sent as Authorization: Bearer …; dropped on a redirect to another host, never stored or shown.
    #[arg(long, value_name = "FILE")]
    pub bearer_token_file: Option<String>,

    /// Keep cookies for the run: Set-Cookie answers are sent back to the hosts they belong to (RFC 6265); values are kept out of the recorded headers.
    #[arg(long)]
    pub cookies: bool,

    /// Load cookies from FILE (Netscape format, as curl -c and wget --save-cookies write it; missing = empty) and save them back when the run ends; implies --cookies.
    #[arg(long, value_name = "FILE")]
    pub cookie_jar: Option<String>,

    /// Save bodies under DIR, named by their SHA-256 (DIR/ab/abcd…); otherwise bodies are hashed and dropped.
    #[arg(long, value_name = "DIR")]
    pub save_bodies: Option<String>,

    /// Largest decoded body, in bytes (suffixes K, M, G = 1024-based); larger is body_too_large [default: no limit].
    #[arg(long, value_name = "BYTES")]
    pub max_body: Option<String>,

    /// Largest ratio of decoded to received bytes (past 1 MiB decoded); larger is decompression_bomb [default: 200].
    #[arg(long, value_name = "N")]
    pub max_decompression_ratio: Option<String>,

    /// Slowest body transfer allowed, in bytes per second over --speed-window; slower is too_slow [default: no limit].
    #[arg(long, value_name = "BYTES")]
    pub min_speed: Option<String>,

    /// The window over which --min-speed is measured: seconds, or with a unit [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub speed_window: Option<String>,

    /// After Ctrl-C, how long requests in flight may finish: seconds, or with a unit [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub grace: Option<String>,

    /// Ask only for what changed: send If-None-Match/If-Modified-Since from the last response the database has for each URL; a 304 is not_modified.
    #[arg(long)]
    pub refresh: bool,

    /// Make no request for a URL checked less than this long ago (outcome fresh): seconds, or with a unit (1h, 7d) [default: always ask].
    #[arg(long, value_name = "DURATION")]
    pub max_age: Option<String>,

    /// Make no request for a URL still fresh by its last response's Cache-Control max-age or Expires (outcome fresh).
    #[arg(long)]
    pub respect_cache_control: bool,

    /// With --paginate and --refresh: follow a chain past pages that are not_modified or fresh, to the next page they named last time.
    #[arg(long)]
    pub paginate_always: bool,
}

/// Config-file keys that are not fetch options but choices of the command
/// line: where the inputs come from, the job, the database, the display.
const COMMAND_KEYS: [&str; 7] = ["db", "job", "template", "column", "tsv", "field", "quiet"];

/// A parsed `--config` file: the command's own keys, and a layer of fetch
/// options (checked by `volley::options::resolve`).
#[derive(Debug, Default)]
pub struct FileConfig {
    path: String,
    command: toml::Table,
    options: Option<Layer>,
}

impl FileConfig {
    /// Reads `path`.
    ///
    /// # Errors
    /// A one-line message: unreadable, or not TOML.
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let values: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| format!("{shown} is not valid TOML: {}", e.message()))?;
        let (command, options): (toml::Table, toml::Table) = values
            .into_iter()
            .partition(|(key, _)| COMMAND_KEYS.contains(&key.as_str()));
        let options = match serde_json::to_value(options) {
            Ok(serde_json::Value::Object(values)) => values,
            _ => return Err(format!("{shown}: cannot read its values")),
        };
        Ok(FileConfig {
            options: Some(Layer {
                source: Source::File(shown.clone()),
                values: options,
            }),
            path: shown,
            command,
        })
    }

    /// The text of the command key `key`, if set.
    fn get(&self, key: &str) -> Result<Option<String>, String> {
        match self.command.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{}: '{key}' must be a string", self.path)),
        }
    }

    /// `true`/`false` for a command key that takes no value.
    fn flag(&self, key: &str) -> Result<bool, String> {
        match self.command.get(key) {
            None => Ok(false),
            Some(toml::Value::Boolean(b)) => Ok(*b),
            Some(_) => Err(format!("{}: '{key}' must be true or false", self.path)),
        }
    }
}

/// Options that set politeness: a job keeps the ones it was created with,
/// so that every worker applies the same ones.
pub const POLITENESS_KEYS: [&str; 5] =
    ["per-host", "rate", "global-rate", "hosts", "respect-robots"];

impl OptionArgs {
    /// The engine's options: these flags over `VOLLEY_*` variables over
    /// `file` over `base` (a stored job's options) over the defaults.
    ///
    /// # Errors
    /// A one-line message naming the option and where it came from.
    pub fn spec(
        &self,
        base: Option<Layer>,
        file: &FileConfig,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<FetchSpec, String> {
        let mut layers: Vec<Layer> = base.into_iter().collect();
        layers.extend(self.layers(file, env)?);
        volley::options::resolve(&layers).map_err(|e| e.to_string())
    }

    /// The layers this command gives: `file`, then `VOLLEY_*` variables,
    /// then these flags.
    ///
    /// # Errors
    /// When the flags cannot be read.
    pub fn layers(
        &self,
        file: &FileConfig,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Vec<Layer>, String> {
        let mut layers: Vec<Layer> = file.options.iter().cloned().collect();
        layers.push(Layer::environment(env));
        layers.push(self.flags()?);
        Ok(layers)
    }

    /// The PostgreSQL lease: `--lease`, or the per-attempt timeout plus 30 s.
    ///
    /// # Errors
    /// A one-line message when it does not parse or is not longer than
    /// the timeout.
    pub fn lease(&self, spec: &FetchSpec) -> Result<std::time::Duration, String> {
        let lease = match &self.lease {
            Some(text) => volley::options::text::parse_duration(text)
                .map_err(|e| format!("--lease {text}: {e}"))?,
            None => spec.timeout + std::time::Duration::from_secs(30),
        };
        if lease <= spec.timeout {
            return Err(format!(
                "--lease {}s must be longer than --timeout {}s, so a worker that lost its lease is no longer fetching",
                lease.as_secs_f64(),
                spec.timeout.as_secs_f64()
            ));
        }
        Ok(lease)
    }

    /// The option flags given, as a layer: the serialised flags without the
    /// ones not given (null, false, empty lists).
    fn flags(&self) -> Result<Layer, String> {
        let values = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(values)) => values,
            _ => return Err("cannot read the flags".into()),
        };
        let values = values
            .into_iter()
            .filter(|(_, v)| match v {
                serde_json::Value::Null | serde_json::Value::Bool(false) => false,
                serde_json::Value::Array(items) => !items.is_empty(),
                _ => true,
            })
            .collect();
        Ok(Layer {
            source: Source::Flags,
            values,
        })
    }
}

impl FetchArgs {
    /// See [`OptionArgs::spec`] (a new job has no stored options).
    ///
    /// # Errors
    /// A one-line message naming the option and where it came from.
    pub fn spec(
        &self,
        file: &FileConfig,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<FetchSpec, String> {
        self.options.spec(None, file, env)
    }

    /// Where the inputs come from, flags over the file.
    pub fn source(&self, file: &FileConfig) -> Result<SourceChoice, String> {
        if let Some(template) = self.template.clone().or(file.get("template")?) {
            if !self.inputs.is_empty() {
                return Err("give either input files or --template, not both".into());
            }
            return Ok(SourceChoice::Template(template));
        }
        let column = self.column.clone().or(file.get("column")?);
        let field = self.field.clone().or(file.get("field")?);
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
        Ok(self.job.clone().or(file.get("job")?))
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
    Ok(file.get("db")?.map(PathBuf::from))
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

/// `volley delete`'s flags.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The job to delete (`volley status` lists them).
    #[arg(long, value_name = "NAME")]
    pub job: String,
}

/// Formats of `volley export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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

    fn fetch_args(flags: &[&str]) -> Result<FetchArgs, String> {
        let cli = Cli::try_parse_from(["volley", "fetch", "-"].iter().chain(flags))
            .map_err(|e| e.to_string())?;
        match cli.command {
            Command::Fetch(args) => Ok(*args),
            _ => Err("expected fetch".into()),
        }
    }

    #[test]
    fn flags_become_the_top_layer_over_the_environment_and_the_file() -> Result<(), String> {
        // The merge itself is tested in volley::options; this pins what the
        // command line adds: its flags as a layer, lists replacing the
        // file's, switches, and the file's own command keys set apart.
        let cfg = file(
            "per-host = 2\ntimeout = \"5s\"\nheader = [\"X-A: 1\"]\njob = \"j\"\nquiet = true\n",
        )?;
        let args = fetch_args(&["--per-host", "3", "-H", "X-B: 2", "--respect-robots"])?;
        let env = [("VOLLEY_TIMEOUT".to_owned(), "9s".to_owned())];
        let spec = args.spec(&cfg, env)?;
        assert_eq!(spec.per_host, 3, "the flag wins");
        assert_eq!(
            spec.timeout,
            Duration::from_secs(9),
            "the environment wins over the file"
        );
        assert_eq!(
            spec.headers,
            [("X-B".to_owned(), "2".to_owned())],
            "-H replaces the file's list"
        );
        assert!(spec.respect_robots);
        assert_eq!(
            args.job(&cfg)?,
            Some("j".to_owned()),
            "a command key of the file"
        );
        assert!(args.quiet(&cfg)?);
        Ok(())
    }

    #[test]
    fn bad_options_say_what_to_fix_and_where() -> Result<(), String> {
        let args = fetch_args(&[])?;
        let unknown = args
            .spec(&file("concurency = 3\n")?, [])
            .expect_err("unknown key");
        assert!(
            unknown.contains("'concurency': unknown option"),
            "{unknown}"
        );
        let err = args
            .spec(&file("timeout = \"soon\"\n")?, [])
            .expect_err("bad duration");
        assert!(err.contains("'timeout'") && err.contains("soon"), "{err}");
        let bad_host = args
            .spec(&file("[hosts.\"a.test\"]\nrte = \"5/s\"\n")?, [])
            .expect_err("unknown host key");
        assert!(bad_host.contains("rte"), "{bad_host}");
        let flag = fetch_args(&["--timeout", "soon"])?
            .spec(&FileConfig::default(), [])
            .expect_err("bad flag");
        assert!(
            flag.starts_with("--timeout: 'soon' is not a duration"),
            "{flag}"
        );
        let env = fetch_args(&[])?
            .spec(
                &FileConfig::default(),
                [("VOLLEY_RETRIES".to_owned(), "many".to_owned())],
            )
            .expect_err("bad environment variable");
        assert!(env.starts_with("VOLLEY_RETRIES: 'many'"), "{env}");
        Ok(())
    }
}
