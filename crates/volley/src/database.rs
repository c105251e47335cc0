//! Either store behind one handle: a SQLite file (one process owns it) or a
//! PostgreSQL database (shared with other processes). Each operation a
//! front end needs (jobs, pages, pause, cancel, delete, runs, exports),
//! async, whichever it is: `volley serve` and the Python package open
//! their database through it.
//!
//! SQLite reads go through one read connection on the blocking pool (it
//! takes no lock and does not wait for writes); PostgreSQL reads and writes
//! go through the worker's connection pool. Exports (NDJSON) read on a
//! blocking thread with a reader of their own.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::export::ExportError;
use crate::input::InputSource;
use crate::options::FetchSpec;
use crate::pipeline::engine::{Control, RunError};
use crate::stats::{RunReport, Tally};
use crate::store::postgres::{PgOptions, PgReader, PgStore};
use crate::store::sqlite::{SqliteReader, SqliteStore};
use crate::store::{
    Deleted, ItemRow, Job, JobRecord, JobState, OutcomeEntry, Reader, Store, StoreError,
};
use tokio_util::sync::CancellationToken;

/// Which database holds the jobs: a SQLite file or a PostgreSQL URL.
#[derive(Debug, Clone)]
pub enum Database {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL, with the worker's lease and pool.
    Postgres(String, PgOptions),
}

impl Database {
    /// The database `given` names: a `postgres://` (or `postgresql://`)
    /// URL, with [`PgOptions::default`], or else a SQLite file's path.
    pub fn named(given: PathBuf) -> Database {
        match given.to_str() {
            Some(text) if crate::store::postgres::is_postgres_url(text) => {
                Database::Postgres(text.to_owned(), PgOptions::default())
            }
            _ => Database::Sqlite(given),
        }
    }

    /// The same database with a PostgreSQL worker's `options` (nothing
    /// changes for SQLite).
    pub fn with_options(self, options: PgOptions) -> Database {
        match self {
            Database::Postgres(url, _) => Database::Postgres(url, options),
            sqlite => sqlite,
        }
    }

    /// The database as it can be shown: the path, or the URL without its
    /// password.
    pub fn shown(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(url, _) => crate::store::postgres::redact(url),
        }
    }

    /// Whether this is a SQLite file that does not exist yet (opening
    /// would create it).
    pub fn is_missing(&self) -> bool {
        matches!(self, Database::Sqlite(path) if !path.exists())
    }

    /// A reader of the jobs and their records that takes no lock: it
    /// reads while a run writes (SQLite's WAL; PostgreSQL's snapshots).
    ///
    /// # Errors
    /// [`StoreError::Missing`] for a SQLite file that does not exist; a
    /// PostgreSQL server that cannot be reached.
    pub async fn reader(&self) -> Result<AnyReader, StoreError> {
        Ok(match self {
            Database::Sqlite(path) => AnyReader::Sqlite(SqliteReader::open(path)?),
            Database::Postgres(url, _) => AnyReader::Postgres(PgReader::connect(url).await?),
        })
    }
}

/// A reader of either database; see [`Database::reader`].
pub enum AnyReader {
    /// SQLite.
    Sqlite(SqliteReader),
    /// PostgreSQL.
    Postgres(PgReader),
}

impl AnyReader {
    /// The workers registered with a PostgreSQL database, and their
    /// leases; none for SQLite, where the run is the only worker.
    ///
    /// # Errors
    /// Store errors.
    pub fn workers(&self) -> Result<Vec<crate::store::postgres::WorkerRow>, StoreError> {
        match self {
            AnyReader::Sqlite(_) => Ok(Vec::new()),
            AnyReader::Postgres(reader) => reader.workers(),
        }
    }
}

impl Reader for AnyReader {
    fn broken(&self, job: i64) -> Result<Vec<crate::store::BrokenRow>, StoreError> {
        match self {
            AnyReader::Sqlite(r) => r.broken(job),
            AnyReader::Postgres(r) => r.broken(job),
        }
    }

    fn jobs(&self) -> Result<Vec<crate::store::JobSummary>, StoreError> {
        match self {
            AnyReader::Sqlite(r) => r.jobs(),
            AnyReader::Postgres(r) => r.jobs(),
        }
    }

    fn job(&self, name: &str) -> Result<Job, StoreError> {
        match self {
            AnyReader::Sqlite(r) => r.job(name),
            AnyReader::Postgres(r) => r.job(name),
        }
    }

    fn for_each_outcome<E: From<StoreError>>(
        &self,
        job: i64,
        f: impl FnMut(&crate::store::ExportRow) -> Result<(), E>,
    ) -> Result<(), E> {
        match self {
            AnyReader::Sqlite(r) => r.for_each_outcome(job, f),
            AnyReader::Postgres(r) => r.for_each_outcome(job, f),
        }
    }

    fn for_each_item<E: From<StoreError>>(
        &self,
        job: i64,
        f: impl FnMut(&ItemRow) -> Result<(), E>,
    ) -> Result<(), E> {
        match self {
            AnyReader::Sqlite(r) => r.for_each_item(job, f),
            AnyReader::Postgres(r) => r.for_each_item(job, f),
        }
    }

    fn for_each_warc_record<E: From<StoreError>>(
        &self,
        job: i64,
        f: impl FnMut(&crate::store::WarcRecordRow) -> Result<(), E>,
    ) -> Result<(), E> {
        match self {
            AnyReader::Sqlite(r) => r.for_each_warc_record(job, f),
            AnyReader::Postgres(r) => r.for_each_warc_record(job, f),
        }
    }
}

/// `$body` with `$store` bound to the store `$backend` holds, whichever
/// it is: both implement the same operations, each in its own SQL.
macro_rules! on_store {
    ($backend:expr, $store:ident => $body:expr) => {
        match $backend {
            Backend::Sqlite { store: $store, .. } => $body,
            Backend::Postgres { store: $store, .. } => $body,
        }
    };
}

/// The open store; see the module docs.
pub enum Backend {
    /// SQLite.
    Sqlite {
        /// Writes and runs.
        store: Arc<SqliteStore>,
        /// The API's reads.
        reader: Arc<Mutex<SqliteReader>>,
        /// The file, for exports' own readers.
        path: PathBuf,
        /// The last answer of [`Backend::job_records`] for each question,
        /// with the store's generation it was read at.
        records: Arc<Mutex<RecordCache>>,
    },
    /// PostgreSQL.
    Postgres {
        /// Writes, reads and runs (this server is one worker).
        store: Arc<PgStore>,
        /// The URL, for exports' own readers.
        url: String,
    },
}

/// Answers of [`Backend::job_records`] by question (a job's name, or every
/// job), each with the [`SqliteStore::generation`] it was read at.
type RecordCache = std::collections::HashMap<Option<String>, (u64, Vec<JobRecord>)>;

/// Most questions [`RecordCache`] keeps answers to before it starts over.
const RECORD_CACHE_MAX: usize = 256;

/// What an NDJSON export reads.
#[derive(Debug, Clone)]
pub enum Export {
    /// Outcomes, only those of the class if given.
    Outcomes(Option<String>),
    /// The `--items` elements.
    Items,
}

impl Backend {
    /// Opens `db` (migrating its schema).
    ///
    /// # Errors
    /// Store errors: a SQLite file another process holds, a PostgreSQL
    /// server that cannot be reached.
    pub async fn open(db: &Database) -> Result<Backend, StoreError> {
        Ok(match db {
            Database::Sqlite(path) => Backend::Sqlite {
                store: Arc::new(SqliteStore::open(path)?),
                reader: Arc::new(Mutex::new(SqliteReader::open(path)?)),
                path: path.clone(),
                records: Arc::default(),
            },
            Database::Postgres(url, options) => Backend::Postgres {
                store: Arc::new(PgStore::connect(url, options.clone()).await?),
                url: url.clone(),
            },
        })
    }

    /// Runs `f` with the SQLite read connection on the blocking pool.
    async fn read<T: Send + 'static>(
        reader: &Arc<Mutex<SqliteReader>>,
        f: impl FnOnce(&SqliteReader) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = Arc::clone(reader);
        tokio::task::spawn_blocking(move || {
            let guard = reader
                .lock()
                .map_err(|_| StoreError::Worker("a read panicked earlier".into()))?;
            f(&guard)
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
    }

    /// The job named `name`, if it exists.
    ///
    /// # Errors
    /// Store errors.
    pub async fn find_job(&self, name: &str) -> Result<Option<Job>, StoreError> {
        on_store!(self, store => store.find_job(name).await)
    }

    /// Opens job `name` for a run over the inputs `recorded` (stamped
    /// `stamp`), creating it if new; see [`Store::open_job`].
    ///
    /// # Errors
    /// [`StoreError::JobInputMismatch`] when the job exists with other
    /// inputs; store errors.
    pub async fn open_job(
        &self,
        name: &str,
        recorded: &str,
        stamp: Option<&str>,
    ) -> Result<Job, StoreError> {
        on_store!(self, store => store.open_job(name, recorded, stamp).await)
    }

    /// Keeps `spec` with `job`, so that the other workers of a shared
    /// PostgreSQL database apply the same options; nothing for SQLite,
    /// where the run that created the job is its only worker.
    ///
    /// # Errors
    /// Store errors.
    pub async fn keep_options(&self, job: i64, spec: &FetchSpec) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite { .. } => Ok(()),
            Backend::Postgres { store, .. } => {
                let options = serde_json::to_string(spec)
                    .map_err(|e| StoreError::Worker(format!("writing the job's options: {e}")))?;
                store.keep_options(job, &options).await
            }
        }
    }

    /// Every job (or the one named `only`), oldest first.
    ///
    /// # Errors
    /// Store errors.
    pub async fn job_records(&self, only: Option<String>) -> Result<Vec<JobRecord>, StoreError> {
        match self {
            Backend::Sqlite {
                reader,
                store,
                records,
                ..
            } => {
                // This process's store is the file's only writer: until it
                // runs another transaction, the last answer stands. A
                // polled status costs no read while nothing changes.
                let generation = store.generation();
                let lock = || records.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some((_, hit)) = lock().get(&only).filter(|(at, _)| *at == generation) {
                    return Ok(hit.clone());
                }
                let question = only.clone();
                let fresh = Self::read(reader, move |r| r.job_records(question.as_deref())).await?;
                let mut cache = lock();
                if cache.len() >= RECORD_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(only, (generation, fresh.clone()));
                Ok(fresh)
            }
            Backend::Postgres { store, .. } => store.job_records(only.as_deref()).await,
        }
    }

    /// The job named `name`.
    ///
    /// # Errors
    /// [`StoreError::NoSuchJob`]; store errors.
    pub async fn job_record(&self, name: &str) -> Result<JobRecord, StoreError> {
        self.job_records(Some(name.to_owned()))
            .await?
            .pop()
            .ok_or_else(|| StoreError::NoSuchJob(name.to_owned()))
    }

    /// One keyset page of `job`'s outcomes after task id `after`.
    ///
    /// # Errors
    /// Store errors.
    pub async fn outcome_page(
        &self,
        job: i64,
        after: i64,
        class: Option<String>,
        limit: usize,
    ) -> Result<Vec<OutcomeEntry>, StoreError> {
        match self {
            Backend::Sqlite { reader, .. } => {
                Self::read(reader, move |r| {
                    r.outcome_page(job, after, class.as_deref(), limit)
                })
                .await
            }
            Backend::Postgres { store, .. } => {
                store
                    .outcome_page(job, after, class.as_deref(), limit)
                    .await
            }
        }
    }

    /// Up to `limit` of `job`'s outcomes recorded while its input was read
    /// (invalid lines, duplicates) after task id `after`, in task order.
    ///
    /// # Errors
    /// Store errors.
    pub async fn unfetched_page(
        &self,
        job: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<OutcomeEntry>, StoreError> {
        match self {
            Backend::Sqlite { reader, .. } => {
                Self::read(reader, move |r| r.unfetched_page(job, after, limit)).await
            }
            Backend::Postgres { store, .. } => store.unfetched_page(job, after, limit).await,
        }
    }

    /// The outcomes of `job`'s tasks among `ids`, in task order.
    ///
    /// # Errors
    /// Store errors.
    pub async fn outcomes_by_id(
        &self,
        job: i64,
        ids: Vec<i64>,
    ) -> Result<Vec<OutcomeEntry>, StoreError> {
        match self {
            Backend::Sqlite { reader, .. } => {
                Self::read(reader, move |r| r.outcomes_by_id(job, &ids)).await
            }
            Backend::Postgres { store, .. } => store.outcomes_by_id(job, &ids).await,
        }
    }

    /// One keyset page of `job`'s items after `(task id, index)`.
    ///
    /// # Errors
    /// Store errors.
    pub async fn item_page(
        &self,
        job: i64,
        after: (i64, u64),
        limit: usize,
    ) -> Result<Vec<(i64, ItemRow)>, StoreError> {
        match self {
            Backend::Sqlite { reader, .. } => {
                Self::read(reader, move |r| r.item_page(job, after, limit)).await
            }
            Backend::Postgres { store, .. } => store.item_page(job, after, limit).await,
        }
    }

    /// The durations (ms) of `job`'s last `n` outcomes with a request.
    ///
    /// # Errors
    /// Store errors.
    pub async fn recent_latencies(&self, job: i64, n: usize) -> Result<Vec<u64>, StoreError> {
        match self {
            Backend::Sqlite { reader, .. } => {
                Self::read(reader, move |r| r.recent_latencies(job, n)).await
            }
            Backend::Postgres { store, .. } => store.recent_latencies(job, n).await,
        }
    }

    /// Whether the database answers.
    ///
    /// # Errors
    /// Store errors.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite { reader, .. } => Self::read(reader, |r| r.ping()).await,
            Backend::Postgres { store, .. } => store.ping().await,
        }
    }

    /// Creates a job; see [`SqliteStore::create_job`].
    ///
    /// # Errors
    /// [`StoreError::JobExists`]; store errors.
    pub async fn create_job(
        &self,
        name: &str,
        options: &str,
        notify: Option<&str>,
    ) -> Result<Job, StoreError> {
        on_store!(self, store => store.create_job(name, "api", options, notify).await)
    }

    /// Sets what the job's owner asks for.
    ///
    /// # Errors
    /// Store errors.
    pub async fn set_job_state(&self, job: i64, state: JobState) -> Result<(), StoreError> {
        on_store!(self, store => store.set_job_state(job, state).await)
    }

    /// Records how the job's webhook went.
    ///
    /// # Errors
    /// Store errors.
    pub async fn set_notified(&self, job: i64, result: &str) -> Result<(), StoreError> {
        on_store!(self, store => store.set_notified(job, result).await)
    }

    /// Cancels the job; the tasks cancelled.
    ///
    /// # Errors
    /// Store errors.
    pub async fn cancel_job(&self, job: i64) -> Result<u64, StoreError> {
        on_store!(self, store => store.cancel_job(job).await)
    }

    /// Deletes the job and its rows.
    ///
    /// # Errors
    /// Store errors.
    pub async fn delete_job(&self, job: i64) -> Result<Deleted, StoreError> {
        on_store!(self, store => store.delete_job(job).await)
    }

    /// Stores all of `source` as `job`'s tasks without fetching.
    ///
    /// # Errors
    /// See [`crate::pipeline::ingest::ingest_only`].
    pub async fn ingest_only(
        &self,
        job: &Job,
        source: Box<dyn InputSource>,
        stop: CancellationToken,
    ) -> Result<Tally, RunError> {
        on_store!(self, store => crate::pipeline::ingest::ingest_only(Arc::clone(store), job, source, stop).await)
    }

    /// Runs `job`; see [`crate::fetch_job`].
    ///
    /// # Errors
    /// See [`crate::fetch_job`].
    pub async fn fetch_job(
        &self,
        job: &Job,
        input: Option<Box<dyn InputSource>>,
        spec: FetchSpec,
        control: &Control,
    ) -> Result<RunReport, RunError> {
        on_store!(self, store => crate::pipeline::engine::fetch_job(Arc::clone(store), job, input, spec, control).await)
    }

    /// Writes `what` of `job` to `out` as NDJSON, from a reader of its own.
    /// Call on a blocking thread (of a multi-threaded runtime, for
    /// PostgreSQL).
    ///
    /// # Errors
    /// Store errors; [`ExportError::Write`] when `out` fails.
    pub fn export(&self, job: i64, what: &Export, out: &mut impl Write) -> Result<(), ExportError> {
        let reader = match self {
            Backend::Sqlite { path, .. } => AnyReader::Sqlite(SqliteReader::open(path)?),
            Backend::Postgres { url, .. } => AnyReader::Postgres(
                tokio::runtime::Handle::current().block_on(PgReader::connect(url))?,
            ),
        };
        export(&reader, job, what, out)
    }

    /// Writes the outcomes (or, with `items`, the items) of `job` to a new
    /// Parquet file at `path` ([`crate::export::export_parquet`]), from a
    /// reader of its own; returns the rows written. Call on a blocking
    /// thread (of a multi-threaded runtime, for PostgreSQL).
    ///
    /// # Errors
    /// Store errors; [`ExportError::Write`] when the file cannot be written.
    pub fn export_parquet(
        &self,
        job: i64,
        items: bool,
        path: &std::path::Path,
    ) -> Result<u64, ExportError> {
        let reader = match self {
            Backend::Sqlite { path, .. } => AnyReader::Sqlite(SqliteReader::open(path)?),
            Backend::Postgres { url, .. } => AnyReader::Postgres(
                tokio::runtime::Handle::current().block_on(PgReader::connect(url))?,
            ),
        };
        let out = std::io::BufWriter::new(std::fs::File::create(path)?);
        if items {
            crate::export::export_items_parquet(&reader, job, out)
        } else {
            crate::export::export_parquet(&reader, job, out)
        }
    }

    /// Ends the worker's registration (PostgreSQL); nothing for SQLite.
    ///
    /// # Errors
    /// Store errors.
    pub async fn close(&self) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite { .. } => Ok(()),
            Backend::Postgres { store, .. } => store.close().await,
        }
    }
}

fn export<R: Reader>(
    reader: &R,
    job: i64,
    what: &Export,
    out: &mut impl Write,
) -> Result<(), ExportError> {
    match what {
        Export::Outcomes(class) => reader.for_each_outcome(job, |row| {
            if class.as_deref().is_some_and(|c| c != row.class) {
                return Ok(());
            }
            let value = crate::export::json_row(row)?;
            serde_json::to_writer(&mut *out, &value).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
            Ok::<(), ExportError>(())
        }),
        Export::Items => reader.for_each_item(job, |row: &ItemRow| {
            out.write_all(row.item.as_bytes())?;
            out.write_all(b"\n")?;
            Ok::<(), ExportError>(())
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{Input, parse_url};
    use crate::store::IngestBatch;

    fn pending(records: &[JobRecord]) -> Vec<(String, u64)> {
        records
            .iter()
            .map(|r| (r.summary.job.name.clone(), r.summary.counts.pending))
            .collect()
    }

    /// The cached answers of `job_records` (SQLite) never outlive a write.
    #[tokio::test]
    async fn job_records_see_every_write_of_the_store() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let backend = Backend::open(&Database::Sqlite(dir.path().join("v.db")))
            .await
            .expect("open");
        let Backend::Sqlite { store, .. } = &backend else {
            panic!("a SQLite backend");
        };
        assert!(backend.job_records(None).await.expect("read").is_empty());
        let job = store
            .open_job("a", "in.txt", None)
            .await
            .expect("open a job");
        assert_eq!(
            pending(&backend.job_records(None).await.expect("read")),
            [("a".to_owned(), 0)]
        );
        let url = parse_url("http://a.test/").expect("a URL");
        let batch = IngestBatch {
            inputs: vec![Input::Url {
                line: 1,
                url,
                meta: None,
            }],
            through_line: 1,
            complete: true,
            fingerprint: None,
        };
        store.ingest(job.id, batch).await.expect("ingest");
        for only in [None, Some("a".to_owned())] {
            assert_eq!(
                pending(&backend.job_records(only).await.expect("read")),
                [("a".to_owned(), 1)]
            );
        }
    }
}
