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

use clap::{Arg, ArgAction, ArgMatches, Args, Parser, Subcommand, ValueEnum};
use volley::FetchSpec;
use volley::options::table::{Form, Kind, OPTIONS, Opt};
use volley::options::{Layer, Source, Spelling};

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

/// What `volley --version` prints after the name: the version, the git
/// commit built from (build.rs), what the binary can write to and read
/// from, and the SQLite compiled in. `-V` prints the version alone.
static LONG_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{}\ncommit:   {}\nfeatures: postgresql, warc, parquet\nsqlite:   {} (bundled)",
        env!("CARGO_PKG_VERSION"),
        env!("VOLLEY_COMMIT"),
        volley::store::sqlite::sqlite_version(),
    )
});

impl Cli {
    /// The command line's definition, as clap reads it, with its long
    /// version; completions and the man page are generated from it.
    pub fn definition() -> clap::Command {
        use clap::CommandFactory;
        Cli::command().long_version(LONG_VERSION.as_str())
    }

    /// Parses `args` (the program name first).
    ///
    /// # Errors
    /// clap's: a usage error, or `--help` / `--version` (status 0).
    pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::FromArgMatches;
        let matches = Cli::definition().try_get_matches_from(args)?;
        Cli::from_arg_matches(&matches)
    }

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
    /// Write a completion script for SHELL to stdout, generated from these
    /// flags. bash: `volley completions bash > ~/.local/share/bash-completion/completions/volley`;
    /// zsh: into a directory of $fpath as `_volley`; fish:
    /// `~/.config/fish/completions/volley.fish`.
    Completions(CompletionsArgs),
    /// Write the manual page (roff, section 1) to stdout, generated from
    /// these flags: `volley man | man -l -`. With --dir, write one page
    /// per verb there (volley.1, volley-fetch.1, …).
    Man(ManArgs),
}

/// `volley completions`' argument.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `volley man`'s flags.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write volley.1 and a page per verb into this directory (made if
    /// missing) instead of volley.1 to stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
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

    /// TOML file with defaults for these options and per-host limits.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Job name [default: the input's file name, or `stdin`].
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,

    /// No progress bar or progress lines (the summary is still printed).
    #[arg(short, long)]
    pub quiet: bool,

    /// The fetch options.
    #[command(flatten)]
    pub options: OptionArgs,
}

/// The fetch options as flags (`volley fetch`, `volley work`, `volley
/// serve`): one flag per option of the engine's table
/// (`volley::options::table::OPTIONS`), generated with its help and its
/// real default, plus the worker's `--lease`. The values stay text, read
/// by `volley::options::resolve` with the other layers.
#[derive(Debug, Clone, Default)]
pub struct OptionArgs {
    /// `--lease`, as given.
    pub lease: Option<String>,
    /// The option flags given, by key: text, `true` for a switch, a list
    /// for a repeatable flag.
    given: serde_json::Map<String, serde_json::Value>,
}

/// The options that have a flag.
fn flagged() -> impl Iterator<Item = &'static Opt> {
    OPTIONS.iter().filter(|opt| !opt.is(Kind::NoFlag))
}

/// The flag of `opt`.
fn flag(opt: &'static Opt) -> Arg {
    let arg = Arg::new(opt.key).long(opt.key).help(
        opt.help_with_default(Spelling::Flag)
            .trim_end_matches('.')
            .to_owned(),
    );
    let arg = match opt.short {
        Some(letter) => arg.short(letter),
        None => arg,
    };
    match opt.form {
        Form::Switch => arg.action(ArgAction::SetTrue),
        Form::Texts => arg.action(ArgAction::Append).value_name(opt.value_name),
        _ => arg.action(ArgAction::Set).value_name(opt.value_name),
    }
}

impl clap::Args for OptionArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let lease = Arg::new("lease")
            .long("lease")
            .value_name("DURATION")
            .help("PostgreSQL only: how long this worker's leases on hosts and tasks outlive its last heartbeat; must exceed --timeout [default: --timeout + 30s]");
        cmd.arg(lease).args(flagged().map(flag))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for OptionArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = OptionArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        use serde_json::Value;
        if let Some(lease) = matches.get_one::<String>("lease") {
            self.lease = Some(lease.clone());
        }
        for opt in flagged() {
            let value = match opt.form {
                Form::Switch => matches.get_flag(opt.key).then_some(Value::Bool(true)),
                Form::Texts => matches
                    .get_many::<String>(opt.key)
                    .map(|values| values.cloned().map(Value::String).collect()),
                _ => matches
                    .get_one::<String>(opt.key)
                    .cloned()
                    .map(Value::String),
            };
            if let Some(value) = value {
                self.given.insert(opt.key.to_owned(), value);
            }
        }
        Ok(())
    }
}

/// Whether a config-file key is not a fetch option but a choice of the
/// command line: one of `volley fetch`'s own flags (where the inputs come
/// from, the job, the display) or the global `--db`. Read off the command
/// line's definition, so a new flag is a key at once.
fn is_command_key(key: &str) -> bool {
    use clap::CommandFactory;
    static KEYS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        let cli = Cli::command();
        let own = cli
            .find_subcommand("fetch")
            .into_iter()
            .flat_map(|fetch| fetch.get_arguments())
            .chain(cli.get_arguments())
            .filter_map(|arg| arg.get_long())
            .filter(|long| !matches!(*long, "config" | "lease" | "help" | "version"));
        own.filter(|long| volley::options::table::find(long).is_none())
            .map(str::to_owned)
            .collect()
    });
    KEYS.iter().any(|own| own == key)
}

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
        let (command, options): (toml::Table, toml::Table) =
            values.into_iter().partition(|(key, _)| is_command_key(key));
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
        layers.push(self.flags());
        Ok(layers)
    }

    /// The PostgreSQL lease: `--lease`, or the per-attempt timeout plus 30 s
    /// (`volley::store::postgres::lease`).
    ///
    /// # Errors
    /// A one-line message when it does not parse or is not longer than
    /// the timeout.
    pub fn lease(&self, spec: &FetchSpec) -> Result<std::time::Duration, String> {
        let given = match &self.lease {
            Some(text) => Some(
                volley::options::text::parse_duration(text)
                    .map_err(|e| format!("--lease {text}: {e}"))?,
            ),
            None => None,
        };
        volley::store::postgres::lease(given, spec.timeout).map_err(|e| e.to_string())
    }

    /// The option flags given, as a layer.
    fn flags(&self) -> Layer {
        Layer {
            source: Source::Flags,
            values: self.given.clone(),
        }
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

    /// Export a crawl's broken links instead of its outcomes: each failed URL (4xx, 5xx, refused, timed out, ...) with the pages that link to it (linked_from).
    #[arg(long, conflicts_with = "items")]
    pub broken: bool,

    /// Export the CDXJ index of the job's WARC records (--warc) instead of its outcomes: one line per response or revisit record, sorted as pywb reads it (its indexes/ folder, with the files in archive/).
    #[arg(long, conflicts_with_all = ["items", "broken", "format"])]
    pub cdxj: bool,

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
    /// Parquet with typed columns, in row groups (redirect stdout to a file).
    Parquet,
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
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = tmp.path().join("volley.toml");
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        FileConfig::load(&path)
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
