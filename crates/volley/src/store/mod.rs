//! The store: the frontier (tasks) and the record (outcomes), durably.
//!
//! # The durability model
//!
//! A **job** is a named run over one input. Every meaningful input line
//! becomes a **task** row *before* anything is fetched for it, and every task
//! ends with exactly one **outcome** row. A task moves through these states:
//!
//! ```text
//! pending ──lease──▶ leased ──record──▶ done   (class ok or duplicate)
//!    ▲                 │        └─────▶ failed (any other class)
//!    └──reclaim/release┘
//! ```
//!
//! * **Ingest** commits input in batches, each in one transaction together
//!   with the job's ingest cursor (`jobs.ingested_lines`), so a crash
//!   mid-ingest resumes at the first uncommitted line. Lines that need no
//!   fetch (invalid URLs, repeats of an earlier URL) get their outcome in the
//!   same transaction as their task.
//! * **Lease** hands a page of pending tasks to a run. The frontier lives
//!   here, not in memory: the engine holds only the leased page. Where
//!   several processes share a database, a lease is a write that moves the
//!   tasks to `leased`; with SQLite, whose run lock admits one process, the
//!   lease is kept in memory and the tasks stay `pending` until recorded
//!   ([`sqlite::SqliteStore`]).
//! * **Record** inserts an outcome and moves its task from `leased` to `done`
//!   or `failed` in the *same transaction*, together with the page's items
//!   and the task for the next page of its pagination chain. A crash can
//!   therefore never lose a chain's next page, nor create it twice. `outcomes.task_id` is the primary
//!   key, so a second outcome for a task cannot exist, and a task that is
//!   already final cannot be recorded again.
//! * **Reclaim**: a run that stops without recording a leased task (Ctrl-C
//!   after the grace period, kill -9, a crash) leaves it `leased`. The next
//!   run of the job returns such tasks to `pending` before it leases
//!   anything, so they are fetched again; tasks with an outcome never are.
//!
//! With SQLite, one process at a time may run jobs against a database file:
//! [`sqlite::SqliteStore::open`] takes an exclusive lock on `<db>.lock`,
//! which the operating system drops when the process dies, however it dies.
//! That lock is what makes reclaiming every `leased` task safe.

pub mod sqlite;

use std::future::Future;

use crate::outcome::Outcome;
use crate::source::Input;

/// A job row: the named run over one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// `jobs.id`.
    pub id: i64,
    /// The unique name given with `--job` (or derived from the input).
    pub name: String,
    /// What the job was created from (a canonical path, or `-` for stdin).
    pub input: String,
    /// The last input line committed as a task; ingest resumes after it.
    pub ingested_lines: u64,
    /// Whether the whole input has been ingested.
    pub ingest_complete: bool,
    /// Hex SHA-256 over the inputs through `ingested_lines` (see
    /// [`crate::ingest`]); `None` before the first batch.
    pub input_fingerprint: Option<String>,
}

/// A task leased to this run for fetching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedTask {
    /// `tasks.id`.
    pub id: i64,
    /// The input ordinal it came from; `None` for a discovered page.
    pub line: Option<u64>,
    /// The URL to fetch.
    pub url: String,
    /// Its position in its pagination chain (1 for inputs).
    pub page: u32,
}

/// A batch of inputs to commit as tasks, in one transaction.
#[derive(Debug, Clone, Default)]
pub struct IngestBatch {
    /// The inputs, in line order.
    pub inputs: Vec<Input>,
    /// The last input line this batch covers (skipped lines included).
    pub through_line: u64,
    /// Whether this is the end of the input.
    pub complete: bool,
    /// The input fingerprint through `through_line` (see [`crate::ingest`]).
    pub fingerprint: Option<String>,
}

/// What one ingest batch added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// New tasks waiting to be fetched.
    pub pending: u64,
    /// New `invalid_url` outcomes.
    pub invalid_url: u64,
    /// New `invalid_input` outcomes.
    pub invalid_input: u64,
    /// New `duplicate` outcomes.
    pub duplicates: u64,
}

impl IngestReport {
    /// The outcomes recorded at ingest, by the class stored.
    pub fn by_class(&self) -> [(crate::outcome::Class, u64); 3] {
        use crate::outcome::Class;
        [
            (Class::InvalidUrl, self.invalid_url),
            (Class::InvalidInput, self.invalid_input),
            (Class::Duplicate, self.duplicates),
        ]
    }

    /// Inputs that failed at ingest (invalid URLs and rows).
    pub fn failed(&self) -> u64 {
        self.invalid_url + self.invalid_input
    }
}

/// Task counts of a job by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Waiting to be leased.
    pub pending: u64,
    /// Leased by a run and not yet recorded.
    pub leased: u64,
    /// Recorded with class `ok` or `duplicate`.
    pub done: u64,
    /// Recorded with any other class.
    pub failed: u64,
}

impl JobCounts {
    /// All tasks of the job.
    pub fn total(&self) -> u64 {
        self.pending + self.leased + self.done + self.failed
    }

    /// Tasks that have no outcome yet.
    pub fn unfinished(&self) -> u64 {
        self.pending + self.leased
    }
}

/// Errors of the store. Every one of them stops the run: an outcome that
/// cannot be recorded must not be reported as recorded.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The schema could not be brought to the current version.
    #[error("database migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    /// Another process is running a job on this database.
    #[error(
        "another volley run is using {path} (lock held on {path}.lock); wait for it or use another --db"
    )]
    Locked {
        /// The database path.
        path: String,
    },
    /// The database file does not exist (for read-only commands).
    #[error("no database at {0}; run `volley fetch` first or pass --db")]
    Missing(String),
    /// The lock file could not be opened.
    #[error("cannot open lock file {path}: {source}")]
    LockFile {
        /// The lock file path.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The job exists but was created from another input.
    #[error(
        "job '{job}' was created from {recorded}, not {given}; pass --job NAME to start a new job"
    )]
    JobInputMismatch {
        /// The job name.
        job: String,
        /// The input recorded when the job was created.
        recorded: String,
        /// The input given now.
        given: String,
    },
    /// No job of that name exists.
    #[error("no job named '{0}'; `volley status` lists the jobs")]
    NoSuchJob(String),
    /// An outcome was offered for a task this run does not hold.
    #[error("task {0} is not leased; refusing to record a second outcome")]
    NotLeased(i64),
    /// A database worker thread panicked or was cancelled.
    #[error("database worker failed: {0}")]
    Worker(String),
}

/// The operations the engine needs from a database.
///
/// Each method is one transaction. Implementations serialise writes as their
/// database requires. Cancellation: dropping a returned future does not
/// cancel the transaction, which still commits or rolls back as a whole.
pub trait Store: Send + Sync + 'static {
    /// Opens (or creates) the job `name` over `input`, and reclaims tasks a
    /// previous run left leased.
    ///
    /// `stamp` describes the input files now (sizes and modification times);
    /// when it differs from the one recorded, the job's ingest is reopened
    /// so that lines added since are read. `None` (stdin, a template) keeps
    /// the recorded state.
    ///
    /// # Errors
    /// [`StoreError::JobInputMismatch`] when the job exists with another input.
    fn open_job(
        &self,
        name: &str,
        input: &str,
        stamp: Option<&str>,
    ) -> impl Future<Output = Result<Job, StoreError>> + Send;

    /// Commits a batch of inputs as tasks, with outcomes for those that need
    /// no fetch, and advances the job's ingest cursor.
    fn ingest(
        &self,
        job: i64,
        batch: IngestBatch,
    ) -> impl Future<Output = Result<IngestReport, StoreError>> + Send;

    /// Leases up to `limit` pending tasks of `job` to `owner`, oldest first.
    fn lease(
        &self,
        job: i64,
        owner: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LeasedTask>, StoreError>> + Send;

    /// Records outcomes of leased tasks of `job` and marks them final, with
    /// their items and, in the same transaction, their next pages as pending
    /// tasks (unless a next page's URL is already in the job: then the chain
    /// stops and the outcome's message says so). Returns the pages added.
    ///
    /// # Errors
    /// [`StoreError::NotLeased`] if any task is not leased; nothing of the
    /// batch is recorded then.
    fn record(
        &self,
        job: i64,
        outcomes: Vec<Outcome>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Returns every leased task of `job` to `pending`; returns how many.
    fn release(&self, job: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Counts the tasks of `job` by state.
    fn counts(&self, job: i64) -> impl Future<Output = Result<JobCounts, StoreError>> + Send;
}
