//! `volley`: the command line over the volley engine, as a library so that
//! the `volley` binary and the Python package's `volley` command (the
//! wheel's console script) run the same code: [`run`].
//!
//! Exit codes: 0 every input got an outcome; 1 the run failed; 2 usage or
//! input error; 130 interrupted (rerun to resume).

mod args;
mod inputs;
mod progress;
mod summary;

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use volley::RunError;
use volley::database::{AnyReader, Backend, Database};
use volley::export::{ExportError, Format};
use volley::http::clients::ClientError;
use volley::http::cookies::CookieError;
use volley::options::table::{Kind, OPTIONS};
use volley::store::postgres::{PgOptions, PgStore};
use volley::store::{Job, Reader, StoreError};
use volley::{FetchSpec, options};

use crate::args::{
    Cli, Command, CompletionsArgs, DeleteArgs, ExportArgs, ExportFormat, FetchArgs, FileConfig,
    ManArgs, ServeArgs, WorkArgs,
};
use crate::progress::Display;

/// Allocations of this size or more get pages of their own from the
/// kernel, given back when freed.
const MMAP_THRESHOLD: i32 = 256 * 1024;

/// For runs that keep page bodies in memory (a crawl, pagination): glibc
/// raises its mmap threshold each time a large block is freed (up to 32
/// MiB), after which kept bodies are carved from the heap arenas of the
/// blocking threads that parse them, and the arenas keep the freed space.
/// Measured on the Rust docs crawl (bench/crawl.sh): 176 MB peak RSS with
/// the dynamic threshold, 129–136 MB with a fixed 256 KiB one, at the same
/// speed. Not for plain fetches, whose bodies stream through: there it
/// cost 3% CPU per request (bench/ab.sh, docs). A fixed threshold turns
/// the adjustment off (mallopt(3)).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fix_mmap_threshold() {
    // SAFETY: mallopt only sets an allocator parameter, under glibc's
    // own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fix_mmap_threshold() {}

/// The exit status of one run of the command line: 0 every input got an
/// outcome, 1 the run failed, 2 a usage or input error, 130 interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit(u8);

impl Exit {
    /// Every input has its outcome; nothing asked for was skipped.
    pub const SUCCESS: Exit = Exit(0);
    /// The run failed (the message says why).
    pub const FAILURE: Exit = Exit(1);
    /// A usage or input error: the message says what to fix.
    pub const USAGE: Exit = Exit(2);
    /// Interrupted (Ctrl-C, SIGTERM) after draining: rerun to resume.
    pub const INTERRUPTED: Exit = Exit(130);

    /// The status as the process exits with it (0 to 255).
    pub fn code(self) -> u8 {
        self.0
    }
}

impl From<u8> for Exit {
    fn from(code: u8) -> Exit {
        Exit(code)
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> std::process::ExitCode {
        std::process::ExitCode::from(exit.0)
    }
}

/// Runs the command line on `args` (the program name first, as
/// `std::env::args_os` gives them), writing to stdout and stderr, and
/// returns its exit status. Usage errors, `--help` and `--version` print
/// what clap prints and return its status instead of exiting.
pub fn run<I, T>(args: I) -> Exit
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::parse_args(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" with status 0.
            let _ = e.print();
            return u8::try_from(e.exit_code()).map_or(Exit::USAGE, Exit::from);
        }
    };
    // A second run in one process (the Python package) keeps the first
    // run's subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person: not in a file or a pipe, nor with
        // NO_COLOR set (no-color.org).
        .with_ansi(
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .try_init();
    let runtime = match volley::runtime_builder().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let db = Database::named(cli.db());
    let given = cli.db_given();
    let result = runtime.block_on(async {
        match cli.command {
            Command::Fetch(args) => {
                let file = match load_config(args.config.as_deref()) {
                    Ok(file) => file,
                    Err(e) => return Ok(usage(e)),
                };
                let db = match (given, args::db_from(&file)) {
                    (Some(given), _) => Database::named(given),
                    (None, Ok(Some(from_file))) => Database::named(from_file),
                    (None, Ok(None)) => db,
                    (None, Err(e)) => return Ok(usage(e)),
                };
                fetch(db, *args, &file).await
            }
            Command::Work(args) => match &db {
                Database::Postgres(url, _) => work(url, *args).await,
                Database::Sqlite(path) => Ok(usage(format_args!(
                    "volley work needs a shared database: --db postgres://… (with SQLite {} one process runs a job: use volley fetch)",
                    path.display()
                ))),
            },
            Command::Serve(args) => serve(db, *args).await,
            Command::Status => status(&db).await,
            Command::Export(args) => export(&db, &args).await,
            Command::Delete(args) => delete(&db, &args).await,
            Command::Completions(args) => completions(&args),
            Command::Man(args) => man(&args),
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
fn fail(e: &anyhow::Error) -> Exit {
    let chain = volley::http::fetch::error_chain(e.as_ref());
    say(format_args!("volley: error: {chain}\n"));
    Exit::FAILURE
}

/// A usage or input error: one line saying what to fix, exit 2.
fn usage(message: impl std::fmt::Display) -> Exit {
    say(format_args!("volley: error: {message}\n"));
    Exit::USAGE
}

/// The `--config` file, or an empty one.
fn load_config(path: Option<&Path>) -> Result<FileConfig, String> {
    match path {
        Some(path) => FileConfig::load(path),
        None => Ok(FileConfig::default()),
    }
}

/// The option layers of a command with `--config` and option flags: the
/// file, the `VOLLEY_*` environment, the flags.
fn config_layers(
    config: Option<&Path>,
    options: &args::OptionArgs,
) -> Result<Vec<options::Layer>, String> {
    let file = load_config(config)?;
    options.layers(&file, std::env::vars())
}

/// Whether a store error is the user's to fix (exit 2) rather than a failure.
fn is_usage_error(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::JobInputMismatch { .. }
            | StoreError::NoSuchJob(_)
            | StoreError::Missing(_)
            | StoreError::BadUrl { .. }
    )
}

async fn fetch(db: Database, args: FetchArgs, file: &FileConfig) -> anyhow::Result<Exit> {
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
    let name = job.unwrap_or_else(|| resolved.default_name.clone());
    // Nothing to read and nothing to resume: say so before creating a database.
    if resolved.reads_stdin() && std::io::stdin().is_terminal() && db.is_missing() {
        return Ok(usage(
            "no input: give a FILE of URLs, or pipe them on stdin",
        ));
    }
    for warning in resolved.warnings() {
        say(format_args!("volley: warning: {warning}\n"));
    }
    let db = match worker_options(db, &args.options, &spec) {
        Ok(db) => db,
        Err(e) => return Ok(usage(e)),
    };
    let backend = match Backend::open(&db).await {
        Ok(backend) => backend,
        Err(e) if is_usage_error(&e) => return Ok(usage(e)),
        Err(e) => return Err(e.into()),
    };
    let code = fetch_with(&backend, &name, &resolved, spec, quiet).await;
    backend.close().await?;
    code
}

/// `db` with a PostgreSQL worker's lease (`--lease`, checked against the
/// timeout) and pool; SQLite as it is.
fn worker_options(
    db: Database,
    flags: &args::OptionArgs,
    spec: &FetchSpec,
) -> Result<Database, String> {
    if !matches!(db, Database::Postgres(..)) {
        return Ok(db);
    }
    Ok(db.with_options(pg_options(flags.lease(spec)?, spec)))
}

/// The pool and lease of a PostgreSQL worker.
fn pg_options(lease: std::time::Duration, spec: &FetchSpec) -> PgOptions {
    PgOptions {
        lease,
        // Lease, record, ingest and heartbeat each get a connection.
        pool_size: 4 + spec.concurrency / 256,
    }
}

/// What stdin holds for a run that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stdin {
    /// Not read by this run.
    Unused,
    /// A terminal: nothing was piped.
    Terminal,
    /// Piped, and ended before its first byte.
    Empty,
    /// Piped, with data.
    Data,
}

impl Stdin {
    /// Looks at stdin without consuming it (the bytes stay in its buffer
    /// for the source that reads it). Waits for the first byte or the end.
    async fn of(resolved: &inputs::Resolved) -> Stdin {
        use std::io::BufRead as _;
        if !resolved.reads_stdin() {
            return Stdin::Unused;
        }
        if std::io::stdin().is_terminal() {
            return Stdin::Terminal;
        }
        let empty = tokio::task::spawn_blocking(|| {
            std::io::stdin().lock().fill_buf().map(<[u8]>::is_empty)
        })
        .await;
        match empty {
            Ok(Ok(true)) => Stdin::Empty,
            // A read error is for the source to report.
            _ => Stdin::Data,
        }
    }
}

/// `volley fetch` on an open store: checks and opens the inputs, opens the
/// job (calling `opened` with its id), ingests and works on it.
///
/// Everything the user can get wrong is checked before the job row is
/// written (a CSV header is read when its input is opened), so a usage
/// error leaves no job behind. Stdin is read again on every run that pipes
/// something: like a file, what it held before must come first and
/// unchanged (the fingerprint check), and lines after it are appended to the
/// job. An empty or terminal stdin reads nothing and, as the only input,
/// creates no job.
async fn fetch_with(
    backend: &Backend,
    name: &str,
    resolved: &inputs::Resolved,
    spec: FetchSpec,
    quiet: bool,
) -> anyhow::Result<Exit> {
    let recorded = resolved.recorded.clone();
    if let Err(e) = volley::preflight(&spec) {
        return run_failed(e);
    }
    let stdin = Stdin::of(resolved).await;
    let nothing_to_read =
        stdin == Stdin::Terminal || (stdin == Stdin::Empty && resolved.only_stdin());
    if nothing_to_read && backend.find_job(name).await?.is_none() {
        if stdin == Stdin::Terminal {
            return Ok(usage(
                "no input: give a FILE of URLs, or pipe them on stdin",
            ));
        }
        say(format_args!(
            "volley: stdin is empty: nothing to fetch, and no job '{name}' was created\n"
        ));
        return Ok(Exit::SUCCESS);
    }
    let source = if nothing_to_read {
        None
    } else {
        match resolved.clone().open() {
            Ok(source) => Some(source),
            Err(e) => return Ok(usage(e)),
        }
    };
    let job = match backend
        .open_job(name, &recorded, resolved.stamp().as_deref())
        .await
    {
        Ok(job) => job,
        Err(e) if is_usage_error(&e) => return Ok(usage(e)),
        Err(e) => return Err(e.into()),
    };
    backend.keep_options(job.id, &spec).await?;
    // Piped stdin may hold lines the job has not read: read it again.
    let reader = if job.ingest_complete && stdin != Stdin::Data {
        None
    } else if source.is_none() {
        return Ok(usage(format_args!(
            "no input: job '{name}' has not read all of its input yet; give it again (FILE, or pipe it on stdin) to resume"
        )));
    } else {
        source
    };
    let stop = CancellationToken::new();
    let signals = tokio::spawn(watch_signals(stop.clone(), spec.grace));
    let result = run_job(backend, &job, reader, spec, quiet, &stop).await;
    signals.abort();
    match result {
        Ok(report) => {
            if report.counts.total() == 0 {
                say(format_args!(
                    "volley: 0 URLs read from {}\n",
                    recorded.replace('\n', ", ")
                ));
            }
            Ok(finished(&job, &report))
        }
        Err(e) => run_failed(e),
    }
}

/// Runs one job with a progress display.
async fn run_job(
    backend: &Backend,
    job: &Job,
    reader: Option<Box<dyn volley::input::InputSource>>,
    spec: FetchSpec,
    quiet: bool,
    stop: &CancellationToken,
) -> Result<volley::RunReport, RunError> {
    if spec.pages.keeps_bodies() {
        fix_mmap_threshold();
    }
    let control = volley::Control {
        stop: stop.clone(),
        progress: Arc::default(),
        budget: None,
        observer: None,
        clients: None,
    };
    let shown = CancellationToken::new();
    let display = tokio::spawn(progress::show(
        Display::choose(quiet),
        Arc::clone(&control.progress),
        shown.clone(),
    ));
    if spec.insecure {
        // And again in the summary.
        say(format_args!(
            "volley: warning: --insecure: TLS certificates are not verified, so anyone on the path can read and change these responses\n"
        ));
    }
    let result = backend.fetch_job(job, reader, spec, &control).await;
    shown.cancel();
    let _ = display.await;
    result
}

/// Prints a run's summary; exit 0, or 130 if it was interrupted.
fn finished(job: &Job, report: &volley::RunReport) -> Exit {
    say(format_args!("{}", summary::run_summary(&job.name, report)));
    if report.interrupted {
        Exit::INTERRUPTED
    } else {
        Exit::SUCCESS
    }
}

/// A run that failed: a usage error (exit 2) or a failure (exit 1).
fn run_failed(e: RunError) -> anyhow::Result<Exit> {
    match e {
        e @ (RunError::InputNeeded(_)
        | RunError::InputChanged { .. }
        | RunError::Client(
            ClientError::CaRead { .. }
            | ClientError::CaParse { .. }
            | ClientError::IdentityRead { .. }
            | ClientError::IdentityParse { .. }
            | ClientError::Proxy { .. }
            | ClientError::TokenRead { .. }
            | ClientError::TokenBad { .. },
        )
        | RunError::Cookies(CookieError::Read { .. } | CookieError::Line { .. })) => Ok(usage(e)),
        e => Err(e.into()),
    }
}

/// `volley work`: works on unfinished jobs of a PostgreSQL database until
/// they are done (or, with `--wait`, until stopped).
async fn work(url: &str, args: WorkArgs) -> anyhow::Result<Exit> {
    let layers = match config_layers(args.config.as_deref(), &args.options) {
        Ok(layers) => layers,
        Err(e) => return Ok(usage(e)),
    };
    for layer in &layers {
        if let Some(key) = OPTIONS
            .iter()
            .filter(|opt| opt.is(Kind::Politeness))
            .map(|opt| opt.key)
            .find(|key| layer.values.contains_key(*key))
        {
            return Ok(usage(format_args!(
                "{}: politeness options come from the job, so that every worker applies the same ones; give them to the volley fetch that creates the job",
                layer.source.describe(key)
            )));
        }
    }
    // The worker's own view, for its lease (each job's options come later).
    let own = match options::resolve(&layers) {
        Ok(spec) => spec,
        Err(e) => return Ok(usage(e)),
    };
    let lease = match args.options.lease(&own) {
        Ok(lease) => lease,
        Err(e) => return Ok(usage(e)),
    };
    let store = match PgStore::connect(url, pg_options(lease, &own)).await {
        Ok(store) => Arc::new(store),
        Err(e) if is_usage_error(&e) => return Ok(usage(e)),
        Err(e) => return Err(e.into()),
    };
    let backend = Backend::Postgres {
        store: Arc::clone(&store),
        url: url.to_owned(),
    };
    let stop = CancellationToken::new();
    let signals = tokio::spawn(watch_signals(stop.clone(), own.grace));
    let result = work_on(&backend, &store, &args, &layers, &stop).await;
    signals.abort();
    store.close().await?;
    result
}

async fn work_on(
    backend: &Backend,
    store: &PgStore,
    args: &WorkArgs,
    layers: &[options::Layer],
    stop: &CancellationToken,
) -> anyhow::Result<Exit> {
    loop {
        let mut jobs = store.unfinished_jobs().await?;
        if !args.job.is_empty() {
            jobs.retain(|j| args.job.contains(&j.name));
            if !args.wait {
                for name in &args.job {
                    if let Err(e @ StoreError::NoSuchJob(_)) = store.job(name).await {
                        return Ok(usage(e));
                    }
                }
            }
        }
        if jobs.is_empty() {
            if !args.wait {
                say(format_args!("volley: no unfinished jobs left\n"));
                return Ok(Exit::SUCCESS);
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(Exit::INTERRUPTED),
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
            }
        }
        for job in jobs {
            let base = match store.job_options(job.id).await? {
                Some(text) => match serde_json::from_str(&text) {
                    Ok(serde_json::Value::Object(values)) => Some(options::Layer {
                        source: options::Source::Named(format!("job '{}'", job.name)),
                        values,
                    }),
                    _ => anyhow::bail!("job '{}' has unreadable stored options", job.name),
                },
                None => None,
            };
            let mut all: Vec<options::Layer> = base.into_iter().collect();
            all.extend(layers.iter().cloned());
            let spec = match options::resolve(&all) {
                Ok(spec) => spec,
                Err(e) => return Ok(usage(e)),
            };
            match run_job(backend, &job, None, spec, args.quiet, stop).await {
                Ok(report) => {
                    let code = finished(&job, &report);
                    if stop.is_cancelled() {
                        return Ok(code);
                    }
                }
                Err(e) => return run_failed(e),
            }
        }
    }
}

/// `volley serve`: the API over a SQLite or PostgreSQL database until
/// SIGTERM or Ctrl-C, then a drain: exit 0 after SIGTERM, 130 after Ctrl-C.
async fn serve(db: Database, args: ServeArgs) -> anyhow::Result<Exit> {
    let layers = match config_layers(args.config.as_deref(), &args.options) {
        Ok(layers) => layers,
        Err(e) => return Ok(usage(e)),
    };
    let spec = match options::resolve(&layers) {
        Ok(spec) => spec,
        Err(e) => return Ok(usage(e)),
    };
    let token = match (&args.token_file, std::env::var("VOLLEY_TOKEN")) {
        (Some(path), _) => match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
            Ok(_) => {
                return Ok(usage(format_args!(
                    "--token-file {}: the file is empty",
                    path.display()
                )));
            }
            Err(e) => return Ok(usage(format_args!("--token-file {}: {e}", path.display()))),
        },
        (None, Ok(text)) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        (None, _) => None,
    };
    if token.is_none() && !volley_serve::is_loopback(&args.listen) {
        return Ok(usage(format_args!(
            "--listen {} is not a loopback address: give a token (--token-file FILE or VOLLEY_TOKEN) so that only its holders can use the API",
            args.listen
        )));
    }
    let db_shown = db.shown();
    let database = match worker_options(db, &args.options, &spec) {
        Ok(database) => database,
        Err(e) => return Ok(usage(e)),
    };
    let config = volley_serve::ServeConfig {
        db: database,
        token,
        layers,
        allow_private: spec.allow_private.clone(),
    };
    let app = match volley_serve::App::open(config).await {
        Ok(app) => app,
        Err(volley_serve::ServeError::Store(e))
            if is_usage_error(&e) || matches!(e, StoreError::Locked { .. }) =>
        {
            return Ok(usage(e));
        }
        Err(volley_serve::ServeError::Options(e)) => return Ok(usage(e)),
        Err(e) => return Err(e.into()),
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => return Ok(usage(format_args!("--listen {}: {e}", args.listen))),
    };
    let shown = listener.local_addr().unwrap_or(args.listen);
    say(format_args!(
        "volley: serving {db_shown} on http://{shown}/ (API under /v1, dashboard at /)\n"
    ));
    if args.print_url {
        match app.auth.one_time_key() {
            Some(key) => say(format_args!(
                "volley: dashboard: http://{shown}/session/link?key={key} (signs in once, within 5 minutes)\n"
            )),
            None => say(format_args!(
                "volley: warning: --print-url: no random numbers for a link; sign in with the token\n"
            )),
        }
    }
    let shutdown = CancellationToken::new();
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let signals = tokio::spawn({
        let (shutdown, interrupted) = (shutdown.clone(), Arc::clone(&interrupted));
        async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => interrupted.store(true, std::sync::atomic::Ordering::Relaxed),
                Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {}
            }
            say(format_args!(
                "\nvolley: stopping: no new requests or work; runs get their grace period\n"
            ));
            shutdown.cancel();
            let _ = tokio::signal::ctrl_c().await;
            say(format_args!(
                "volley: quitting at once; unfinished jobs resume when the server starts again\n"
            ));
            std::process::exit(130);
        }
    });
    let served = volley_serve::serve(app, listener, shutdown).await;
    signals.abort();
    served?;
    Ok(if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
        Exit::INTERRUPTED
    } else {
        Exit::SUCCESS
    })
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

async fn status(db: &Database) -> anyhow::Result<Exit> {
    let reader = match db.reader().await {
        Ok(reader) => reader,
        Err(e) if is_usage_error(&e) => return Ok(usage(e)),
        Err(e) => return Err(e.into()),
    };
    let mut text = summary::status_table(&reader.jobs()?);
    if let AnyReader::Postgres(_) = reader {
        text.push_str(&summary::workers_table(&reader.workers()?));
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .context("writing to stdout")?;
    Ok(Exit::SUCCESS)
}

/// `volley delete --job NAME`: removes the job and its rows in one
/// transaction. Refused while a run holds the job: with SQLite the running
/// process holds the database's lock; with PostgreSQL, leased tasks mean a
/// worker is on it.
async fn delete(db: &Database, args: &DeleteArgs) -> anyhow::Result<Exit> {
    let name = &args.job;
    if db.is_missing() {
        return Ok(usage(StoreError::NoSuchJob(name.clone())));
    }
    let backend = match Backend::open(db).await {
        Ok(backend) => backend,
        Err(e) if is_usage_error(&e) || matches!(e, StoreError::Locked { .. }) => {
            return Ok(usage(e));
        }
        Err(e) => return Err(e.into()),
    };
    let deleted = async {
        let record = backend.job_record(name).await?;
        let leased = record.summary.counts.leased;
        if leased > 0 {
            return Ok(Err(format!(
                "job '{name}' is being worked on ({leased} tasks leased); stop its workers first (or wait for the leases of workers that died to expire)"
            )));
        }
        Ok::<_, StoreError>(Ok(backend.delete_job(record.summary.job.id).await?))
    }
    .await;
    backend.close().await?;
    let deleted = match deleted {
        Ok(Ok(deleted)) => deleted,
        Ok(Err(refused)) => return Ok(usage(refused)),
        Err(e) if is_usage_error(&e) => return Ok(usage(e)),
        Err(e) => return Err(e.into()),
    };
    say(format_args!(
        "volley: deleted job '{name}': {} tasks, {} outcomes, {} items\n",
        deleted.tasks, deleted.outcomes, deleted.items
    ));
    Ok(Exit::SUCCESS)
}

async fn export(db: &Database, args: &ExportArgs) -> anyhow::Result<Exit> {
    match db.reader().await {
        Ok(reader) => export_from(&reader, &db.shown(), args),
        Err(e) if is_usage_error(&e) => Ok(usage(e)),
        Err(e) => Err(e.into()),
    }
}

fn export_from(reader: &impl Reader, db: &str, args: &ExportArgs) -> anyhow::Result<Exit> {
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
                    "{} jobs in {db}; choose one with --job NAME (`volley status` lists them)",
                    jobs.len(),
                )));
            }
            jobs.remove(0).job
        }
    };
    let format = match args.format {
        ExportFormat::Jsonl => Format::Jsonl,
        ExportFormat::Csv => Format::Csv,
        ExportFormat::Parquet => {
            use std::io::IsTerminal as _;
            if args.broken {
                return Ok(usage(
                    "--broken writes JSON Lines or CSV: use --format jsonl or --format csv",
                ));
            }
            if std::io::stdout().is_terminal() {
                return Ok(usage(
                    "--format parquet writes a binary file: redirect stdout to one (> outcomes.parquet)",
                ));
            }
            Format::Jsonl
        }
    };
    let out = std::io::stdout().lock();
    let parquet = args.format == ExportFormat::Parquet;
    let written = if parquet && args.items {
        volley::export::export_items_parquet(
            reader,
            job.id,
            std::io::BufWriter::new(std::io::stdout()),
        )
    } else if parquet {
        volley::export::export_parquet(reader, job.id, std::io::BufWriter::new(std::io::stdout()))
    } else if args.items {
        volley::export::export_items(reader, job.id, format, out)
    } else if args.broken {
        volley::export::export_broken(reader, job.id, format, out)
    } else if args.cdxj {
        volley::export::export_cdxj(reader, job.id, out)
    } else {
        volley::export::export(reader, job.id, format, out)
    };
    match written {
        Ok(0) if args.items => {
            say(format_args!(
                "volley: job '{}' has no items: they are recorded by a fetch with --items /POINTER (the array of each page)\n",
                job.name
            ));
            Ok(Exit::SUCCESS)
        }
        Ok(0) if args.cdxj => {
            say(format_args!(
                "volley: job '{}' archived no records: they are written by a fetch with --warc PREFIX\n",
                job.name
            ));
            Ok(Exit::SUCCESS)
        }
        Ok(_) => Ok(Exit::SUCCESS),
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(ExportError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(Exit::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}

/// `volley completions SHELL`: the script on stdout.
fn completions(args: &CompletionsArgs) -> anyhow::Result<Exit> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::definition(), "volley", &mut out);
    write_stdout(&out)?;
    Ok(Exit::SUCCESS)
}

/// `volley man [--dir DIR]`: volley.1 on stdout, or every page in DIR.
fn man(args: &ManArgs) -> anyhow::Result<Exit> {
    let cli = Cli::definition();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot make the directory {}", dir.display()))?;
            clap_mangen::generate_to(cli, dir)
                .with_context(|| format!("cannot write the pages into {}", dir.display()))?;
            say(format_args!(
                "volley: wrote the manual pages into {}\n",
                dir.display()
            ));
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cli).render(&mut out)?;
            write_stdout(&out)?;
        }
    }
    Ok(Exit::SUCCESS)
}

/// Writes `bytes` to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}
