//! `volley`: the command line over the volley engine.
//!
//! Exit codes: 0 every input got an outcome; 1 the run failed; 2 usage or
//! input error; 130 interrupted (rerun to resume).

mod args;
mod inputs;
mod progress;
mod summary;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use tokio_util::sync::CancellationToken;
use volley::RunError;
use volley::export::{ExportError, Format};
use volley::fetch::ClientError;
use volley::store::sqlite::{SqliteReader, SqliteStore};
use volley::store::{Store as _, StoreError};

use crate::args::{Cli, Command, ExportArgs, ExportFormat, FetchArgs, FileConfig};
use crate::progress::Display;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let db = cli.db();
    let result = runtime.block_on(async {
        match cli.command {
            Command::Fetch(args) => {
                let file = match &args.config {
                    Some(path) => match FileConfig::load(path) {
                        Ok(file) => file,
                        Err(e) => return Ok(usage(e)),
                    },
                    None => FileConfig::default(),
                };
                let db = match (cli.db, args::db_from(&file)) {
                    (Some(flag), _) => flag,
                    (None, Ok(Some(from_file))) => from_file,
                    (None, Ok(None)) => db,
                    (None, Err(e)) => return Ok(usage(e)),
                };
                if let Some(refused) = refuse_postgres(&db) {
                    return Ok(refused);
                }
                fetch(&db, *args, &file).await
            }
            Command::Status => status(&db),
            Command::Export(args) => export(&db, &args),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

/// Writes to stderr, ignoring a closed stderr (`eprintln!` would panic).
fn say(text: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(text);
}

/// A run failure: one line (the error and its causes, each said once), exit 1.
fn fail(e: &anyhow::Error) -> ExitCode {
    let chain = volley::fetch::error_chain(e.as_ref());
    say(format_args!("volley: error: {chain}\n"));
    ExitCode::FAILURE
}

/// A usage or input error: one line saying what to fix, exit 2.
fn usage(message: impl std::fmt::Display) -> ExitCode {
    say(format_args!("volley: error: {message}\n"));
    ExitCode::from(2)
}

/// A usage error for a PostgreSQL URL, which this version cannot open yet
/// (rather than a confusing failure to create `postgres://….lock`).
fn refuse_postgres(db: &Path) -> Option<ExitCode> {
    let text = db.to_str()?;
    (text.starts_with("postgres://") || text.starts_with("postgresql://")).then(|| {
        usage(format_args!(
            "--db {text}: PostgreSQL is not supported by this version yet; give a file path for SQLite"
        ))
    })
}

/// Whether a store error is the user's to fix (exit 2) rather than a failure.
fn is_usage_error(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::JobInputMismatch { .. } | StoreError::NoSuchJob(_) | StoreError::Missing(_)
    )
}

async fn fetch(db: &Path, args: FetchArgs, file: &FileConfig) -> anyhow::Result<ExitCode> {
    let (spec, job, quiet) = match (
        args.spec(file, std::env::vars()),
        args.job(file),
        args.quiet(file),
    ) {
        (Ok(spec), Ok(job), Ok(quiet)) => (spec, job, quiet),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Ok(usage(e)),
    };
    if let Err(e) = spec.validate() {
        return Ok(usage(e));
    }
    let resolved = match args.source(file).and_then(inputs::resolve) {
        Ok(resolved) => resolved,
        Err(e) => return Ok(usage(e)),
    };
    let recorded = resolved.recorded.clone();
    let default_name = resolved.default_name.clone();
    let name = job.unwrap_or(default_name);
    // Nothing to read and nothing to resume: say so before creating a database.
    if resolved.reads_stdin() && std::io::stdin().is_terminal() && !db.exists() {
        return Ok(usage(
            "no input: give a FILE of URLs, or pipe them on stdin",
        ));
    }
    for warning in resolved.warnings() {
        say(format_args!("volley: warning: {warning}\n"));
    }
    let store = Arc::new(SqliteStore::open(db)?);
    let stamp = resolved.stamp();
    let job = match store.open_job(&name, &recorded, stamp.as_deref()).await {
        Ok(job) => job,
        Err(e) if is_usage_error(&e) => return Ok(usage(e)),
        Err(e) => return Err(e.into()),
    };
    let reader = if job.ingest_complete {
        None
    } else {
        if resolved.reads_stdin() && std::io::stdin().is_terminal() {
            return Ok(usage(
                "no input: give a FILE of URLs, or pipe them on stdin",
            ));
        }
        match resolved.open() {
            Ok(source) => Some(source),
            Err(e) => return Ok(usage(e)),
        }
    };

    let control = volley::Control::default();
    let signals = tokio::spawn(watch_signals(control.stop.clone(), spec.grace));
    let shown = CancellationToken::new();
    let display = tokio::spawn(progress::show(
        Display::choose(quiet),
        Arc::clone(&control.progress),
        shown.clone(),
    ));
    let result = volley::fetch_job(store, &job, reader, spec, &control).await;
    shown.cancel();
    let _ = display.await;
    signals.abort();
    match result {
        Ok(report) => {
            if report.counts.total() == 0 {
                say(format_args!(
                    "volley: 0 URLs read from {}\n",
                    recorded.replace('\n', ", ")
                ));
            }
            say(format_args!("{}", summary::run_summary(&job.name, &report)));
            Ok(if report.interrupted {
                ExitCode::from(130)
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(
            e @ (RunError::InputNeeded(_)
            | RunError::InputChanged { .. }
            | RunError::Client(ClientError::CaRead { .. } | ClientError::CaParse { .. })),
        ) => Ok(usage(e)),
        Err(e) => Err(e.into()),
    }
}

/// First Ctrl-C or SIGTERM: stop gracefully. Second: exit at once, leaving
/// unfinished tasks leased for the next run to reclaim.
async fn watch_signals(stop: CancellationToken, grace: std::time::Duration) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut next = async || {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {}
        }
    };
    next().await;
    say(format_args!(
        "\nvolley: stopping: no new requests; requests in flight get {}s to finish (Ctrl-C again to quit at once)\n",
        grace.as_secs_f64()
    ));
    stop.cancel();
    next().await;
    say(format_args!(
        "volley: quitting at once; rerun the same command to resume\n"
    ));
    std::process::exit(130);
}

fn status(db: &Path) -> anyhow::Result<ExitCode> {
    if let Some(refused) = refuse_postgres(db) {
        return Ok(refused);
    }
    let reader = match SqliteReader::open(db) {
        Ok(r) => r,
        Err(e) if is_usage_error(&e) => return Ok(usage(e)),
        Err(e) => return Err(e.into()),
    };
    let jobs = reader.jobs()?;
    let mut out = std::io::stdout().lock();
    out.write_all(summary::status_table(&jobs).as_bytes())
        .context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

fn export(db: &Path, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    if let Some(refused) = refuse_postgres(db) {
        return Ok(refused);
    }
    let reader = match SqliteReader::open(db) {
        Ok(r) => r,
        Err(e) if is_usage_error(&e) => return Ok(usage(e)),
        Err(e) => return Err(e.into()),
    };
    let job = match &args.job {
        Some(name) => match reader.job(name) {
            Ok(job) => job,
            Err(e) if is_usage_error(&e) => return Ok(usage(e)),
            Err(e) => return Err(e.into()),
        },
        None => {
            let mut jobs = reader.jobs()?;
            if jobs.len() != 1 {
                return Ok(usage(format_args!(
                    "{} jobs in {}; choose one with --job NAME (`volley status` lists them)",
                    jobs.len(),
                    db.display()
                )));
            }
            jobs.remove(0).job
        }
    };
    let format = match args.format {
        ExportFormat::Jsonl => Format::Jsonl,
        ExportFormat::Csv => Format::Csv,
    };
    let out = std::io::stdout().lock();
    let written = if args.items {
        volley::export::export_items(&reader, job.id, format, out)
    } else {
        volley::export::export(&reader, job.id, format, out)
    };
    match written {
        Ok(_) => Ok(ExitCode::SUCCESS),
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(ExportError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}
