//! volley for Python: the native half of the `volley` package.
//!
//! The Python half (`python/volley/__init__.py`) gives the API its shape
//! (`fetch_all`, `Engine`, `Job`); this module opens the store, runs jobs on
//! a tokio runtime of its own and hands results back through a `Bridge`:
//! awaiting never blocks the caller's event loop, and the engine's threads
//! never take the GIL (see `bridge`).
//!
//! A job streams its outcomes in the order they commit: the writer tells
//! the job's observer the task ids of each committed batch, and
//! `NativeJob::next_batch` reads those rows back from the store. Outcomes
//! recorded while the input is read (invalid lines, duplicates) never pass
//! the writer; they are read by class when the run has ended.

mod bridge;
mod input;
mod outcome;

use std::io::BufReader;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use pyo3::exceptions::{PyException, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use volley::database::{Backend, Database};
use volley::input::{InputSource, LineSource};
use volley::options::{Layer, Source};
use volley::stats::{Observed, Observer};
use volley::store::postgres::{PgOptions, is_postgres_url};
use volley::store::{Job, OutcomeEntry, Store};
use volley::{Class, Control, FetchSpec, RunError, RunReport};

use crate::bridge::{Bridge, runtime};
use crate::input::Chunk;
use crate::outcome::Outcome;

pyo3::create_exception!(
    _volley,
    VolleyError,
    PyException,
    "A failure of a run itself (failed fetches are outcomes, never exceptions)."
);
pyo3::create_exception!(
    _volley,
    StoreError,
    VolleyError,
    "The database failed, or holds the job with another input."
);
pyo3::create_exception!(
    _volley,
    InputError,
    VolleyError,
    "The input could not be read, or changed since the job read it."
);
pyo3::create_exception!(
    _volley,
    ClientError,
    VolleyError,
    "The HTTP client could not be set up: CA or client certificate files, a proxy, a token or cookie file."
);

/// Rows read from the store per page.
const PAGE: usize = 1000;

/// What the input of a job given an iterable is recorded as: a rerun with
/// the same name must give an iterable too (and the same lines, which
/// ingest checks).
const ITERABLE_INPUT: &str = "(python iterable)";

/// Why a run failed, kept until the Python side asks.
#[derive(Debug, Clone)]
enum Failure {
    Options(String),
    Store(String),
    Input(String),
    Client(String),
    Other(String),
}

impl Failure {
    fn of_run(e: &RunError) -> Failure {
        let text = python_words(&e.to_string());
        match e {
            RunError::Spec(_) => Failure::Options(text),
            RunError::Store(_) => Failure::Store(text),
            RunError::Input(_) | RunError::InputChanged { .. } | RunError::InputNeeded(_) => {
                Failure::Input(text)
            }
            RunError::Client(_) | RunError::Cookies(_) => Failure::Client(text),
            _ => Failure::Other(text),
        }
    }

    fn into_py(self) -> PyErr {
        match self {
            Failure::Options(m) => PyValueError::new_err(m),
            Failure::Store(m) => StoreError::new_err(m),
            Failure::Input(m) => InputError::new_err(m),
            Failure::Client(m) => ClientError::new_err(m),
            Failure::Other(m) => VolleyError::new_err(m),
        }
    }
}

fn store_err(e: volley::store::StoreError) -> PyErr {
    Failure::Store(python_words(&e.to_string())).into_py()
}

/// An engine message with its options named as Python keywords
/// (`per_host`, `job=NEW_NAME`), not as the command line's flags.
fn python_words(message: &str) -> String {
    volley::options::respell(message, volley::options::Spelling::Python)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Tells a job's stream which tasks each committed batch recorded.
#[derive(Debug)]
struct Feed(mpsc::UnboundedSender<Vec<i64>>);

impl Observer for Feed {
    fn committed(&self, batch: &[Observed], _took: Duration) {
        // A stream that was closed no longer listens: nothing to do.
        let _ = self.0.send(batch.iter().map(|o| o.task_id).collect());
    }
}

struct JobState {
    /// The engine's store: the run holds it while it goes on, and the
    /// engine until it is closed (which releases a SQLite file's lock).
    backend: Weak<Backend>,
    job: Job,
    stop: CancellationToken,
    /// Fired when the run has ended and `report` is set.
    ended: CancellationToken,
    report: Mutex<Option<Result<String, Failure>>>,
    /// The stream of committed task ids; `None` once closed (or lent to a
    /// `next_batch` in flight).
    ids: Mutex<Option<mpsc::UnboundedReceiver<Vec<i64>>>>,
    closed: AtomicBool,
    /// Where an iterable input goes; `None` for a file, once the input
    /// has ended, or once the run no longer reads it.
    input: Mutex<Option<mpsc::Sender<Chunk>>>,
    /// Whether this run reads the input (a resumed job whose input was
    /// read to the end does not).
    reads_input: bool,
    /// The last task id of the ingest outcomes read (or recorded before
    /// this run): those above it are this run's and not yet given.
    swept: Mutex<i64>,
}

/// Puts a lent receiver back when the read ends or is cancelled, unless
/// the stream was closed meanwhile.
struct Lent {
    state: Arc<JobState>,
    rx: Option<mpsc::UnboundedReceiver<Vec<i64>>>,
}

impl Drop for Lent {
    fn drop(&mut self) {
        if !self.state.closed.load(Ordering::Acquire) {
            *lock(&self.state.ids) = self.rx.take();
        }
    }
}

/// A running (or finished) job. See the module docs. Methods that take a
/// `bridge` return a ticket whose result arrives through it.
#[pyclass(frozen, module = "volley")]
pub struct NativeJob {
    state: Arc<JobState>,
}

#[pymethods]
impl NativeJob {
    /// The job's name.
    #[getter]
    fn name(&self) -> String {
        self.state.job.name.clone()
    }

    /// Whether the run reads the iterable given to `start` (see `feed`).
    #[getter]
    fn reads_input(&self) -> bool {
        self.state.reads_input
    }

    /// Sends the next URLs of the iterable input, in order (each as
    /// `push_line` writes it); the ticket's result is `False` once the run no
    /// longer reads them (it stopped or failed), so the caller stops
    /// iterating. Waits while ingest is a few
    /// chunks behind (backpressure).
    fn feed(&self, bridge: &Bridge, urls: &Bound<'_, PyList>) -> PyResult<u64> {
        let mut text = String::new();
        for url in urls.iter() {
            input::push_line(&mut text, &url)?;
        }
        self.send(bridge, Ok(text.into_bytes()))
    }

    /// Ends the run's input with a failure (the iterable raised `why`):
    /// the run fails with `InputError`.
    fn fail_input(&self, bridge: &Bridge, why: String) -> PyResult<u64> {
        self.send(bridge, Err(why))
    }

    /// Ends the iterable input: ingest has read every line.
    fn end_input(&self) {
        lock(&self.state.input).take();
    }

    /// Ticket: the next outcomes recorded, in commit order; an empty list
    /// once the run has ended and every outcome was given.
    fn next_batch(&self, bridge: &Bridge) -> PyResult<u64> {
        let state = Arc::clone(&self.state);
        bridge.spawn(async move {
            let mut lent = Lent {
                rx: lock(&state.ids).take(),
                state: Arc::clone(&state),
            };
            loop {
                let ids = match lent.rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None if state.closed.load(Ordering::Acquire) => return Ok(Vec::new()),
                    None => {
                        return Err(PyRuntimeError::new_err(
                            "another read of this job's outcomes is in progress",
                        ));
                    }
                };
                let Some(ids) = ids else { break };
                let rows = state
                    .backend()?
                    .outcomes_by_id(state.job.id, ids)
                    .await
                    .map_err(store_err)?;
                if !rows.is_empty() {
                    return Ok(outcomes(rows));
                }
            }
            // Every sender is gone: the run has ended. Ingest outcomes last.
            sweep(&state).await
        })
    }

    /// Ticket: waits for the run to end; its summary as JSON text, or the
    /// run's failure raised as a typed exception.
    fn wait(&self, bridge: &Bridge) -> PyResult<u64> {
        let state = Arc::clone(&self.state);
        bridge.spawn(async move {
            state.ended.cancelled().await;
            let report = lock(&state.report).clone();
            match report {
                Some(Ok(summary)) => Ok(summary),
                Some(Err(failure)) => Err(failure.into_py()),
                None => Err(VolleyError::new_err("the run ended without a report")),
            }
        })
    }

    /// Whether the run has ended.
    #[getter]
    fn done(&self) -> bool {
        self.state.ended.is_cancelled()
    }

    /// Asks the run to stop as Ctrl-C does: no new requests; those in
    /// flight get the grace period; unfinished tasks stay pending, so the
    /// job can be resumed.
    fn stop(&self) {
        self.state.stop_input();
    }

    /// Stops the run (see `stop`) and the stream: outcomes are no longer
    /// kept for it, so nothing waits on a reader that went away.
    fn close(&self) {
        self.state.stop_input();
        self.state.closed.store(true, Ordering::Release);
        lock(&self.state.ids).take();
    }

    /// Up to `limit` outcomes of the job after task id `after`, in input
    /// order (pages of a paginated input after the inputs), and the task id
    /// to pass as `after` for the next page. Reads the store on the
    /// caller's thread (a few ms a page) with the GIL released.
    fn outcome_page(
        &self,
        py: Python<'_>,
        after: i64,
        limit: usize,
    ) -> PyResult<(Vec<Outcome>, i64)> {
        let backend = self.state.backend()?;
        let job = self.state.job.id;
        let page = py.detach(|| {
            runtime()?
                .block_on(backend.outcome_page(job, after, None, limit))
                .map_err(store_err)
        })?;
        let next = page.last().map_or(after, |e| e.task_id);
        Ok((outcomes(page), next))
    }

    /// Ticket: how many outcomes the job has recorded so far.
    fn outcome_count(&self, bridge: &Bridge) -> PyResult<u64> {
        let state = Arc::clone(&self.state);
        bridge.spawn(async move {
            let record = state
                .backend()?
                .job_record(&state.job.name)
                .await
                .map_err(store_err)?;
            let counts = record.summary.counts;
            Ok(counts.done + counts.failed)
        })
    }
}

impl NativeJob {
    /// Sends one chunk of the input; see `feed`.
    fn send(&self, bridge: &Bridge, chunk: Chunk) -> PyResult<u64> {
        let sender = lock(&self.state.input).clone();
        bridge.spawn(async move {
            Ok(match sender {
                Some(sender) => sender.send(chunk).await.is_ok(),
                None => false,
            })
        })
    }
}

impl JobState {
    /// Stops the run, then ends an iterable input it may be waiting on
    /// (ingest reads nothing more once stopped, so the input's end is not
    /// taken for the end of the list: the job stays resumable).
    fn stop_input(&self) {
        self.stop.cancel();
        lock(&self.input).take();
    }

    /// The store, while the engine is open.
    fn backend(&self) -> PyResult<Arc<Backend>> {
        self.backend.upgrade().ok_or_else(|| {
            PyRuntimeError::new_err(
                "the engine is closed: use a job's outcomes inside its `async with Engine(...)`",
            )
        })
    }
}

fn outcomes(rows: Vec<OutcomeEntry>) -> Vec<Outcome> {
    rows.into_iter().map(|e| Outcome::from(e.row)).collect()
}

/// The next page of this run's ingest outcomes, empty when all are read.
async fn sweep(state: &JobState) -> PyResult<Vec<Outcome>> {
    let after = *lock(&state.swept);
    let page = state
        .backend()?
        .unfetched_page(state.job.id, after, PAGE)
        .await
        .map_err(store_err)?;
    if let Some(last) = page.last() {
        *lock(&state.swept) = last.task_id;
    }
    Ok(outcomes(page))
}

/// The highest task id among `job`'s ingest outcomes now (0 for none).
async fn last_ingest_outcome(backend: &Backend, job: i64) -> PyResult<i64> {
    let mut last = 0;
    loop {
        let page = backend
            .unfetched_page(job, last, PAGE)
            .await
            .map_err(store_err)?;
        match page.last() {
            Some(entry) => last = entry.task_id,
            None => return Ok(last),
        }
    }
}

/// The summary of a finished run, as JSON text.
fn summary(job: &Job, report: &RunReport) -> String {
    let classes: serde_json::Map<String, serde_json::Value> = report
        .tally
        .by_class
        .iter()
        .map(|(class, n)| (class.as_str().to_owned(), (*n).into()))
        .collect();
    serde_json::json!({
        "job": job.name,
        "total": report.counts.total(),
        "done": report.counts.done,
        "failed": report.counts.failed,
        "pending": report.counts.pending + report.counts.leased,
        "interrupted": report.interrupted,
        "fetched": report.tally.fetched,
        "bytes": report.tally.bytes,
        "elapsed_s": report.elapsed.as_secs_f64(),
        "requests_per_s": report.requests_per_sec(),
        "classes": classes,
    })
    .to_string()
}

/// An open database, shared by the jobs run on it.
#[pyclass(frozen, module = "volley")]
pub struct NativeEngine {
    /// `None` once closed.
    backend: Mutex<Option<Arc<Backend>>>,
    /// A PostgreSQL worker's lease, which each job's per-attempt timeout
    /// must be shorter than.
    lease: Option<Duration>,
}

/// The `volley` command line (the wheel's `volley` console script, and
/// `python -m volley`): runs it on `argv` (the program name first) with the
/// GIL released, as the Rust binary would, and returns its exit status (0
/// every input got an outcome, 1 the run failed, 2 a usage or input error,
/// 130 interrupted).
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<std::ffi::OsString>) -> u8 {
    py.detach(|| volley_cli::run(argv).code())
}

/// Ticket: opens the database `db` (a SQLite path or a `postgres://` URL)
/// and migrates its schema; `lease_s` is a PostgreSQL worker's lease.
#[pyfunction]
fn open_engine(bridge: &Bridge, db: String, lease_s: f64) -> PyResult<u64> {
    let lease = Duration::try_from_secs_f64(lease_s)
        .map_err(|_| PyValueError::new_err("lease: a positive number of seconds"))?;
    bridge.spawn(async move {
        let (database, lease) = if is_postgres_url(&db) {
            let options = PgOptions {
                lease,
                ..PgOptions::default()
            };
            (Database::Postgres(db, options), Some(lease))
        } else {
            (Database::Sqlite(db.into()), None)
        };
        let backend = Backend::open(&database).await.map_err(store_err)?;
        Ok(NativeEngine {
            backend: Mutex::new(Some(Arc::new(backend))),
            lease,
        })
    })
}

/// The options given as a JSON object of keyword arguments, resolved over
/// the defaults; a `ValueError` names the one at fault.
fn resolve(options: &str) -> PyResult<FetchSpec> {
    let values = match serde_json::from_str(options) {
        Ok(serde_json::Value::Object(values)) => values,
        _ => return Err(PyValueError::new_err("options must be keyword arguments")),
    };
    let layer = Layer {
        source: Source::Keywords,
        values,
    };
    volley::options::resolve(&[layer])
        .map_err(|e| PyValueError::new_err(python_words(&e.to_string())))
}

impl NativeEngine {
    fn backend(&self) -> PyResult<Arc<Backend>> {
        lock(&self.backend)
            .clone()
            .ok_or_else(|| PyRuntimeError::new_err("the engine is closed"))
    }
}

/// A file input: what it is recorded as, its stamp and its lines.
fn file_input(path: String) -> PyResult<(String, String, Box<dyn InputSource>)> {
    let unreadable = |e: std::io::Error| InputError::new_err(format!("cannot read {path}: {e}"));
    let file = std::fs::File::open(&path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let stamp = format!("{}:{modified}", meta.len());
    let shown = std::fs::canonicalize(&path).map_or(path, |p| p.display().to_string());
    Ok((
        shown,
        stamp,
        Box::new(LineSource::new(BufReader::new(file))),
    ))
}

#[pymethods]
impl NativeEngine {
    /// Ticket: starts (or resumes) job `name` over the file at `path` or,
    /// without one, over URLs sent with `NativeJob.feed`; `stamp` is the
    /// iterable's (see `list_stamp`), `None` when it cannot be known ahead;
    /// `options` is the JSON of the keyword arguments.
    #[pyo3(signature = (bridge, name, path, stamp, options))]
    fn start(
        &self,
        bridge: &Bridge,
        name: String,
        path: Option<String>,
        stamp: Option<String>,
        options: &str,
    ) -> PyResult<u64> {
        let spec = resolve(options)?;
        if let Some(lease) = self.lease
            && let Err(e) = volley::store::postgres::lease(Some(lease), spec.timeout)
        {
            return Err(PyValueError::new_err(python_words(&e.to_string())));
        }
        // The stamp tells a rerun that the input differs from what the job
        // read, so that ingest checks it again (see `Store::open_job`).
        let (recorded, stamp, source, sender): (_, _, Box<dyn InputSource>, _) = match path {
            Some(path) => {
                let (recorded, stamp, source) = file_input(path)?;
                (recorded, Some(stamp), source, None)
            }
            None => {
                let (sender, fed) = input::channel();
                let source = Box::new(LineSource::new(fed));
                (ITERABLE_INPUT.to_owned(), stamp, source, Some(sender))
            }
        };
        let backend = self.backend()?;
        bridge.spawn(async move {
            let job = open_job(&backend, &name, &recorded, stamp.as_deref()).await?;
            let ingest_before = last_ingest_outcome(&backend, job.id).await?;
            let reads_input = !job.ingest_complete;
            let input = reads_input.then_some(source);
            let (tx, rx) = mpsc::unbounded_channel();
            let state = Arc::new(JobState {
                backend: Arc::downgrade(&backend),
                job,
                stop: CancellationToken::new(),
                ended: CancellationToken::new(),
                report: Mutex::new(None),
                ids: Mutex::new(Some(rx)),
                closed: AtomicBool::new(false),
                input: Mutex::new(sender.filter(|_| reads_input)),
                reads_input,
                swept: Mutex::new(ingest_before),
            });
            let run = Arc::clone(&state);
            tokio::spawn(async move {
                let control = Control {
                    stop: run.stop.clone(),
                    progress: Arc::default(),
                    budget: None,
                    observer: Some(Arc::new(Feed(tx))),
                    clients: None,
                };
                let result = backend.fetch_job(&run.job, input, spec, &control).await;
                drop(backend);
                // The feed's sender goes with the control: the stream ends.
                drop(control);
                // An iterable still being sent is no longer read.
                lock(&run.input).take();
                *lock(&run.report) = Some(match result {
                    Ok(report) => Ok(summary(&run.job, &report)),
                    Err(e) => Err(Failure::of_run(&e)),
                });
                run.ended.cancel();
            });
            Ok(NativeJob { state })
        })
    }

    /// Ticket: up to `limit` items of job `name` after `(task, index)`, as
    /// `(task, index, item as JSON text)`.
    fn item_page(
        &self,
        bridge: &Bridge,
        name: String,
        after: (i64, u64),
        limit: usize,
    ) -> PyResult<u64> {
        let backend = self.backend()?;
        bridge.spawn(async move {
            let job = backend.job_record(&name).await.map_err(store_err)?;
            let page = backend
                .item_page(job.summary.job.id, after, limit)
                .await
                .map_err(store_err)?;
            let rows: Vec<(i64, u64, String)> = page
                .into_iter()
                .map(|(task, row)| (task, row.idx, row.item))
                .collect();
            Ok(rows)
        })
    }

    /// Ticket: writes the outcomes (or, with `items`, the items) of job
    /// `name` to a Parquet file at `path`; the ticket's value is the rows
    /// written.
    fn export_parquet(
        &self,
        bridge: &Bridge,
        name: String,
        path: String,
        items: bool,
    ) -> PyResult<u64> {
        let backend = self.backend()?;
        bridge.spawn(async move {
            let job = backend.job_record(&name).await.map_err(store_err)?;
            let id = job.summary.job.id;
            let written = tokio::task::spawn_blocking(move || {
                backend.export_parquet(id, items, std::path::Path::new(&path))
            })
            .await
            .map_err(|e| PyRuntimeError::new_err(format!("export failed: {e}")))?;
            written.map_err(|e| PyOSError::new_err(e.to_string()))
        })
    }

    /// Ticket: closes the store: ends this engine's registration as a
    /// PostgreSQL worker, releases a SQLite file once its runs have ended.
    fn close(&self, bridge: &Bridge) -> PyResult<u64> {
        let backend = lock(&self.backend).take();
        bridge.spawn(async move {
            match backend {
                Some(backend) => backend.close().await.map_err(store_err),
                None => Ok(()),
            }
        })
    }
}

/// Opens (or creates) job `name` over `recorded`, as it is now (`stamp`).
async fn open_job(
    backend: &Backend,
    name: &str,
    recorded: &str,
    stamp: Option<&str>,
) -> PyResult<Job> {
    let opened = match backend {
        Backend::Sqlite { store, .. } => store.open_job(name, recorded, stamp).await,
        Backend::Postgres { store, .. } => store.open_job(name, recorded, stamp).await,
    };
    opened.map_err(store_err)
}

/// The native module, imported as `volley._volley`.
#[pymodule]
fn _volley(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Bridge>()?;
    m.add_class::<Outcome>()?;
    m.add_class::<NativeJob>()?;
    m.add_class::<NativeEngine>()?;
    m.add_function(wrap_pyfunction!(open_engine, m)?)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(input::list_stamp, m)?)?;
    m.add("VolleyError", py.get_type::<VolleyError>())?;
    m.add("StoreError", py.get_type::<StoreError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("ClientError", py.get_type::<ClientError>())?;
    m.add(
        "OPTIONS",
        volley::options::table::OPTIONS
            .iter()
            .map(|opt| {
                (
                    opt.snake(),
                    opt.help_with_default(volley::options::Spelling::Python),
                )
            })
            .collect::<Vec<_>>(),
    )?;
    m.add("EXPORT_COLUMNS", volley::export::columns())?;
    m.add(
        "CLASSES",
        Class::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
    )?;
    Ok(())
}
