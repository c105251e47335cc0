//! The command line: every flag defined once, with its unit in its help,
//! and turned into the plain [`FetchSpec`] the engine takes.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use volley::FetchSpec;
use volley::spec::{DEFAULT_USER_AGENT, parse_header};

/// Fetch very many URLs concurrently and politely; record one outcome per input.
#[derive(Debug, Parser)]
#[command(name = "volley", version, about, long_about = None)]
pub struct Cli {
    /// SQLite database holding jobs, tasks and outcomes.
    #[arg(long, global = true, default_value = "volley.db", value_name = "PATH")]
    pub db: PathBuf,

    #[command(subcommand)]
    pub command: Command,
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

/// `volley fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// URL list to read; `-` or nothing reads stdin.
    #[arg(value_name = "FILE|-")]
    pub input: Option<PathBuf>,

    /// Job name [default: the input's file name, or `stdin`].
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,

    /// Most requests in flight at once, over all hosts.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub concurrency: usize,

    /// Most requests in flight at once to one host.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub per_host: usize,

    /// Time to establish a connection: seconds, or with a unit (500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Duration,

    /// Longest silence while waiting for headers or body data: seconds, or with a unit.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub read_timeout: Duration,

    /// Time for one whole attempt (connect, headers, body): seconds, or with a unit.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// Retries after the first attempt, for connect errors, timeouts, resets and 408/429/500/502/503/504.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub retries: u32,

    /// First backoff ceiling (doubles per retry, full jitter): seconds, or with a unit.
    #[arg(long, default_value = "500ms", value_parser = parse_duration, value_name = "DURATION")]
    pub backoff_base: Duration,

    /// Highest backoff ceiling: seconds, or with a unit.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub backoff_max: Duration,

    /// Longest Retry-After honoured; a server asking for more is not retried: seconds, or with a unit.
    #[arg(long, default_value = "120s", value_parser = parse_duration, value_name = "DURATION")]
    pub max_retry_after: Duration,

    /// Redirects followed before the outcome is too_many_redirects.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub max_redirects: usize,

    /// Extra request header, as 'Name: value'; repeatable.
    #[arg(short = 'H', long = "header", value_parser = parse_header_arg, value_name = "HEADER")]
    pub headers: Vec<(String, String)>,

    /// User-Agent header.
    #[arg(long, default_value = DEFAULT_USER_AGENT, value_name = "STRING")]
    pub user_agent: String,

    /// Extra certificate authority to trust (PEM file), besides the system's; repeatable.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,

    /// Save bodies under DIR, named by their SHA-256 (DIR/ab/abcd…); otherwise bodies are hashed and dropped.
    #[arg(long, value_name = "DIR")]
    pub save_bodies: Option<PathBuf>,

    /// Largest body read, in bytes (suffixes K, M, G = 1024-based); larger is body_too_large.
    #[arg(long, value_parser = parse_bytes, value_name = "BYTES")]
    pub max_body: Option<u64>,

    /// After Ctrl-C, how long requests in flight may finish: seconds, or with a unit.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub grace: Duration,

    /// No progress bar or progress lines (the summary is still printed).
    #[arg(short, long)]
    pub quiet: bool,
}

impl FetchArgs {
    /// The engine's view of these flags.
    pub fn spec(&self) -> FetchSpec {
        FetchSpec {
            concurrency: self.concurrency,
            per_host: self.per_host,
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            timeout: self.timeout,
            retries: self.retries,
            backoff_base: self.backoff_base,
            backoff_max: self.backoff_max,
            max_retry_after: self.max_retry_after,
            max_redirects: self.max_redirects,
            headers: self.headers.clone(),
            user_agent: self.user_agent.clone(),
            ca_certs: self.ca_certs.clone(),
            save_bodies: self.save_bodies.clone(),
            max_body_bytes: self.max_body,
            grace: self.grace,
        }
    }
}

/// `volley export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The job to export [default: the only job, if there is one].
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,

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
}
