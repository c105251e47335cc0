//! volley for Python: the native half of the `volley` package.
//!
//! The Python half (`python/volley/__init__.py`) gives the API its shape
//! (`fetch_all`, `Engine`, `Job`); this module opens the store, runs jobs on
//! the tokio runtime of pyo3-async-runtimes and hands results back as
//! awaitables. Awaiting never blocks the caller's event loop, and the
//! engine's threads take the GIL only to hand over finished results.
//!
//! A job streams its outcomes in the order they commit: the writer tells
//! the job's observer the task ids of each committed batch, and
//! [`NativeJob::next_batch`] reads those rows back from the store. Outcomes
//! recorded while the input is read (invalid lines, duplicates) never pass
//! the writer; they are read by class when the run has ended.

use std::io::{BufReader, Cursor};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use pyo3::exceptions::{PyException, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use volley::options::{Layer, Source};
use volley::source::{InputSource, LineSource};
use volley::stats::{Observed, Observer};
use volley::store::postgres::{PgOptions, is_postgres_url};
use volley::store::{ExportRow, Job, OutcomeEntry, Store};
use volley::{Class, Control, FetchSpec, RunError, RunReport};
use volley_serve::{Backend, Database};

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

/// What the input of a list job is recorded as: a rerun with the same
/// name must give a list too (and the same lines, which ingest checks).
const LIST_INPUT: &str = "(python list)";

/// The classes recorded while the input is read, not by the writer.
const INGEST_CLASSES: [Class; 3] = [Class::InvalidUrl, Class::InvalidInput, Class::Duplicate];

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
        let text = e.to_string();
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
    Failure::Store(e.to_string()).into_py()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One recorded outcome: the fields `volley export` writes. Frozen.
#[pyclass(frozen, module = "volley", get_all)]
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The input line (from 1), `None` for pages found by pagination.
    line: Option<u64>,
    /// The page of a paginated chain (1 for the input's own URL).
    page: u32,
    /// The URL as given.
    url: String,
    /// The outcome class: `ok`, `not_modified`, `fresh`, or what went
    /// wrong (`not_found`, `connect_refused`, `invalid_url`, …).
    outcome_class: String,
    /// The final HTTP status, if a response came.
    status: Option<u16>,
    /// `HTTP/1.1`, `HTTP/2.0`.
    http_version: Option<String>,
    /// What went wrong, for a person.
    message: Option<String>,
    /// Requests made, retries included.
    attempts: u32,
    /// Decoded body bytes.
    bytes: Option<u64>,
    /// Body bytes on the wire.
    wire_bytes: Option<u64>,
    /// The final attempt, from sending the request to the end of the body
    /// (ms).
    elapsed_ms: Option<u64>,
    /// From sending the request to the response headers (ms).
    ttfb_ms: Option<u64>,
    /// The URL that answered, after redirects.
    final_url: Option<String>,
    /// The response's `Content-Type`.
    content_type: Option<String>,
    /// Hex SHA-256 of the body.
    body_sha256: Option<String>,
    /// Where the body was saved (`save_bodies`).
    body_path: Option<String>,
    /// With `refresh`: whether the body differs from the last one.
    changed: Option<bool>,
    /// The line this one repeats, for `duplicate` outcomes.
    duplicate_of_line: Option<u64>,
    /// When the first attempt started (Unix ms).
    started_at_ms: Option<i64>,
    /// When the outcome was decided (Unix ms).
    finished_at_ms: i64,
    headers_json: Option<String>,
    meta_json: Option<String>,
    extracted_json: Option<String>,
}

impl From<ExportRow> for Outcome {
    fn from(r: ExportRow) -> Outcome {
        Outcome {
            line: r.line,
            page: r.page,
            url: r.url,
            outcome_class: r.class,
            status: r.status,
            http_version: r.http_version,
            message: r.message,
            attempts: r.attempts,
            bytes: r.bytes,
            wire_bytes: r.wire_bytes,
            elapsed_ms: r.elapsed_ms,
            ttfb_ms: r.ttfb_ms,
            final_url: r.final_url,
            content_type: r.content_type,
            body_sha256: r.body_sha256,
            body_path: r.body_path,
            changed: r.changed,
            duplicate_of_line: r.duplicate_of_line,
            started_at_ms: r.started_at_ms,
            finished_at_ms: r.finished_at_ms,
            headers_json: r.headers,
            meta_json: r.meta,
            extracted_json: r.extracted,
        }
    }
}

fn json_loads<'py>(py: Python<'py>, text: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
    match text {
        None => Ok(py.None().into_bound(py)),
        Some(text) => py.import("json")?.call_method1("loads", (text,)),
    }
}

#[pymethods]
impl Outcome {
    /// Whether the outcome is a success (`ok`, `not_modified`, `fresh`).
    #[getter]
    fn ok(&self) -> bool {
        Class::parse(&self.outcome_class).is_some_and(Class::is_success)
    }

    /// The class of a failure, `None` for a success.
    #[getter]
    fn error_class(&self) -> Option<String> {
        (!self.ok()).then(|| self.outcome_class.clone())
    }

    /// The response headers, as a dict of lower-case names to values.
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, self.headers_json.as_deref())
    }

    /// The task's metadata (a CSV row or JSONL record), if any.
    #[getter]
    fn meta<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, self.meta_json.as_deref())
    }

    /// The values `extract` took from the body, if any.
    #[getter]
    fn extracted<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, self.extracted_json.as_deref())
    }

    /// The saved body, as bytes.
    ///
    /// Raises `ValueError` when the body was not saved (run with
    /// `save_bodies=DIR`), `OSError` when the file cannot be read.
    fn read<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let Some(path) = &self.body_path else {
            return Err(PyValueError::new_err(format!(
                "the body of {} was not saved: run with save_bodies=DIR",
                self.url
            )));
        };
        let bytes = py.detach(|| std::fs::read(path))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The saved body parsed as JSON (see `read`).
    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let body = self.read(py)?;
        py.import("json")?.call_method1("loads", (body,))
    }

    fn __repr__(&self) -> String {
        format!(
            "Outcome(line={}, url={:?}, outcome_class={:?}, status={})",
            self.line.map_or("None".into(), |l| l.to_string()),
            self.url,
            self.outcome_class,
            self.status.map_or("None".into(), |s| s.to_string()),
        )
    }
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

/// Where the end-of-run read of ingest outcomes is: the class (index into
/// [`INGEST_CLASSES`]) and the last task id read.
#[derive(Debug, Default)]
struct Sweep {
    class: usize,
    after: i64,
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
    /// Ingest outcomes with task ids above this are this run's.
    ingest_before: i64,
    sweep: Mutex<Sweep>,
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

/// A running (or finished) job. See the module docs.
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

    /// Awaitable: the next outcomes recorded, in commit order; an empty
    /// list once the run has ended and every outcome was given.
    fn next_batch<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = Arc::clone(&self.state);
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
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

    /// Awaitable: waits for the run to end; its summary as JSON text, or
    /// the run's failure raised as a typed exception.
    fn wait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = Arc::clone(&self.state);
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
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
        self.state.stop.cancel();
    }

    /// Stops the run (see `stop`) and the stream: outcomes are no longer
    /// kept for it, so nothing waits on a reader that went away.
    fn close(&self) {
        self.state.stop.cancel();
        self.state.closed.store(true, Ordering::Release);
        lock(&self.state.ids).take();
    }

    /// Awaitable: every outcome of the job, in input order.
    fn all_outcomes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = Arc::clone(&self.state);
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let mut all = Vec::new();
            let mut after = 0;
            loop {
                let page = state
                    .backend()?
                    .outcome_page(state.job.id, after, None, PAGE)
                    .await
                    .map_err(store_err)?;
                let full = page.len() == PAGE;
                if let Some(last) = page.last() {
                    after = last.task_id;
                }
                all.extend(page.into_iter().map(|e| Outcome::from(e.row)));
                if !full {
                    return Ok(all);
                }
            }
        })
    }
}

impl JobState {
    /// The store, while the engine is open.
    fn backend(&self) -> PyResult<Arc<Backend>> {
        self.backend
            .upgrade()
            .ok_or_else(|| PyRuntimeError::new_err("the engine is closed"))
    }
}

fn outcomes(rows: Vec<OutcomeEntry>) -> Vec<Outcome> {
    rows.into_iter().map(|e| Outcome::from(e.row)).collect()
}

/// The next page of this run's ingest outcomes, empty when all are read.
async fn sweep(state: &JobState) -> PyResult<Vec<Outcome>> {
    loop {
        let (class, after) = {
            let sweep = lock(&state.sweep);
            match INGEST_CLASSES.get(sweep.class) {
                Some(class) => (*class, sweep.after.max(state.ingest_before)),
                None => return Ok(Vec::new()),
            }
        };
        let page = state
            .backend()?
            .outcome_page(state.job.id, after, Some(class.as_str().to_owned()), PAGE)
            .await
            .map_err(store_err)?;
        {
            let mut sweep = lock(&state.sweep);
            match page.last() {
                Some(last) if page.len() == PAGE => sweep.after = last.task_id,
                _ => {
                    *sweep = Sweep {
                        class: sweep.class + 1,
                        after: 0,
                    }
                }
            }
        }
        if !page.is_empty() {
            return Ok(outcomes(page));
        }
    }
}

/// The highest task id among `job`'s ingest outcomes now.
async fn last_ingest_outcome(backend: &Backend, job: i64) -> PyResult<i64> {
    let mut last = 0;
    for class in INGEST_CLASSES {
        let mut after = 0;
        loop {
            let page = backend
                .outcome_page(job, after, Some(class.as_str().to_owned()), PAGE)
                .await
                .map_err(store_err)?;
            if let Some(entry) = page.last() {
                after = entry.task_id;
                last = last.max(after);
            }
            if page.len() < PAGE {
                break;
            }
        }
    }
    Ok(last)
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
    /// Longest per-attempt timeout a job may use (PostgreSQL leases).
    max_timeout: Option<Duration>,
}

/// Opens the database `db` (a SQLite path or a `postgres://` URL) and
/// migrates its schema; `lease_s` is a PostgreSQL worker's lease.
#[pyfunction]
fn open_engine(py: Python<'_>, db: String, lease_s: f64) -> PyResult<Bound<'_, PyAny>> {
    let lease = Duration::try_from_secs_f64(lease_s)
        .map_err(|_| PyValueError::new_err("lease: a positive number of seconds"))?;
    pyo3_async_runtimes::tokio::future_into_py(py, async move {
        let (database, max_timeout) = if is_postgres_url(&db) {
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
            max_timeout,
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
        source: Source::Named("keyword argument".into()),
        values,
    };
    volley::options::resolve(&[layer]).map_err(|e| PyValueError::new_err(e.to_string()))
}

impl NativeEngine {
    fn backend(&self) -> PyResult<Arc<Backend>> {
        lock(&self.backend)
            .clone()
            .ok_or_else(|| PyRuntimeError::new_err("the engine is closed"))
    }
}

#[pymethods]
impl NativeEngine {
    /// Awaitable: starts (or resumes) job `name` over `urls` (a list) or
    /// the file at `path`, with `options` (JSON of the keyword arguments).
    #[pyo3(signature = (name, urls, path, options))]
    fn start<'py>(
        &self,
        py: Python<'py>,
        name: String,
        urls: Option<Vec<String>>,
        path: Option<String>,
        options: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let spec = resolve(options)?;
        if let Some(max) = self.max_timeout
            && spec.timeout >= max
        {
            return Err(PyValueError::new_err(format!(
                "timeout must be shorter than the engine's lease ({} s)",
                max.as_secs_f64()
            )));
        }
        // The stamp tells a rerun that the input differs from what the job
        // read, so that ingest checks it again (see `Store::open_job`).
        let (recorded, stamp, source): (String, String, Box<dyn InputSource>) = match (urls, path) {
            (Some(urls), None) => {
                // One URL a line: a newline inside one would shift every
                // line number after it.
                let mut text = String::new();
                for url in &urls {
                    text.push_str(&url.replace(['\n', '\r'], " "));
                    text.push('\n');
                }
                let stamp = format!("{}:{}", urls.len(), hex::encode(Sha256::digest(&text)));
                let source = LineSource::new(Cursor::new(text.into_bytes()));
                (LIST_INPUT.to_owned(), stamp, Box::new(source))
            }
            (None, Some(path)) => {
                let file = std::fs::File::open(&path)
                    .map_err(|e| InputError::new_err(format!("cannot read {path}: {e}")))?;
                let meta = file
                    .metadata()
                    .map_err(|e| InputError::new_err(format!("cannot read {path}: {e}")))?;
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                let stamp = format!("{}:{modified}", meta.len());
                let shown = std::fs::canonicalize(&path).map_or(path, |p| p.display().to_string());
                (
                    shown,
                    stamp,
                    Box::new(LineSource::new(BufReader::new(file))),
                )
            }
            _ => return Err(PyValueError::new_err("give a list of URLs or a path")),
        };
        let backend = self.backend()?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let job = open_job(&backend, &name, &recorded, &stamp).await?;
            let ingest_before = last_ingest_outcome(&backend, job.id).await?;
            let input = (!job.ingest_complete).then_some(source);
            let (tx, rx) = mpsc::unbounded_channel();
            let state = Arc::new(JobState {
                backend: Arc::downgrade(&backend),
                job,
                stop: CancellationToken::new(),
                ended: CancellationToken::new(),
                report: Mutex::new(None),
                ids: Mutex::new(Some(rx)),
                closed: AtomicBool::new(false),
                ingest_before,
                sweep: Mutex::new(Sweep::default()),
            });
            let run = Arc::clone(&state);
            tokio::spawn(async move {
                let control = Control {
                    stop: run.stop.clone(),
                    progress: Arc::default(),
                    budget: None,
                    observer: Some(Arc::new(Feed(tx))),
                };
                let result = backend.fetch_job(&run.job, input, spec, &control).await;
                drop(backend);
                // The feed's sender goes with the control: the stream ends.
                drop(control);
                *lock(&run.report) = Some(match result {
                    Ok(report) => Ok(summary(&run.job, &report)),
                    Err(e) => Err(Failure::of_run(&e)),
                });
                run.ended.cancel();
            });
            Ok(NativeJob { state })
        })
    }

    /// Awaitable: up to `limit` items of job `name` after `(task, index)`,
    /// as `(task, index, item as JSON text)`.
    fn item_page<'py>(
        &self,
        py: Python<'py>,
        name: String,
        after: (i64, u64),
        limit: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let backend = self.backend()?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
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

    /// Awaitable: closes the store: ends this engine's registration as a
    /// PostgreSQL worker, releases a SQLite file once its runs have ended.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let backend = lock(&self.backend).take();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            match backend {
                Some(backend) => backend.close().await.map_err(store_err),
                None => Ok(()),
            }
        })
    }
}

/// Opens (or creates) job `name` over `recorded`, as it is now (`stamp`).
async fn open_job(backend: &Backend, name: &str, recorded: &str, stamp: &str) -> PyResult<Job> {
    let stamp = Some(stamp);
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
    m.add_class::<Outcome>()?;
    m.add_class::<NativeJob>()?;
    m.add_class::<NativeEngine>()?;
    m.add_function(wrap_pyfunction!(open_engine, m)?)?;
    m.add("VolleyError", py.get_type::<VolleyError>())?;
    m.add("StoreError", py.get_type::<StoreError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("ClientError", py.get_type::<ClientError>())?;
    m.add(
        "CLASSES",
        Class::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
    )?;
    Ok(())
}
