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

mod counts;
pub mod postgres;
mod postgres_admin;
pub mod sqlite;
mod sqlite_admin;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::http::refresh::Resource;
use crate::input::Input;
use crate::outcome::{Class, Outcome};

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
    /// [`crate::pipeline::ingest`]); `None` before the first batch.
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
    /// Its position in its pagination chain (1 for inputs); in a crawl,
    /// its depth plus one.
    pub page: u32,
    /// A discovered task's seed (the input task its crawl or chain began
    /// at): its id and URL; `None` for an input, its own seed.
    pub seed: Option<(i64, String)>,
}

impl LeasedTask {
    /// The id of its seed: its own for an input.
    pub fn seed_id(&self) -> i64 {
        self.seed.as_ref().map_or(self.id, |(id, _)| *id)
    }

    /// The URL of its seed: its own for an input.
    pub fn seed_url(&self) -> &str {
        self.seed.as_ref().map_or(&self.url, |(_, url)| url)
    }
}

/// What a [`Store::lease`] call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// Most tasks to hand out.
    pub limit: usize,
    /// Most tasks of one host this run should hold for fetching at once
    /// (leased and not yet fetched, see [`Store::fetched`]), so that one
    /// host cannot fill the window. Stores without host affinity (SQLite)
    /// ignore it.
    pub per_host: usize,
    /// How long after this run gives a host back another worker may start
    /// on it: one interval of the slowest per-host rate limit (zero without
    /// one), so that the host never sees two workers' requests closer
    /// together than its rate allows. Stores without host affinity ignore
    /// it.
    pub handover: Duration,
    /// Whether this run's requests waited for a slot of its global
    /// concurrency since its last lease. Only a busy worker hands hosts
    /// above its fair share to other workers: one whose hosts are held
    /// back by their own limits would gain nothing, and each handover
    /// pauses the host for a moment.
    pub busy: bool,
}

/// What one [`Store::record`] call committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Outcomes committed.
    pub outcomes: u64,
    /// Pages found by pagination or a crawl's links that became new tasks.
    pub pages: u64,
    /// Outcomes dropped because this run no longer held their task: its
    /// lease had expired and another worker claimed it (fencing), or it
    /// already had an outcome.
    pub fenced: u64,
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
    /// The input fingerprint through `through_line` (see [`crate::pipeline::ingest`]).
    pub fingerprint: Option<String>,
}

impl IngestBatch {
    /// Appends `later`, the batch read after this one: its inputs, and its
    /// end (line, completeness and fingerprint), which now cover both.
    pub fn append(&mut self, mut later: IngestBatch) {
        self.inputs.append(&mut later.inputs);
        self.through_line = later.through_line;
        self.complete = later.complete;
        self.fingerprint = later.fingerprint;
    }
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
    /// Of all the tasks above, those a page found (the next pages of
    /// `--paginate`), not read from the input.
    pub pages: u64,
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

    /// Tasks read from the input (each input line that is not blank or a
    /// comment), as opposed to the pages found by pagination.
    pub fn inputs(&self) -> u64 {
        self.total().saturating_sub(self.pages)
    }
}

/// What deleting a job removed (`volley delete`, `DELETE /v1/jobs/{name}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Tasks: input lines and pages found.
    pub tasks: u64,
    /// Outcomes (one per task that had one).
    pub outcomes: u64,
    /// `--items` elements.
    pub items: u64,
}

/// A job's counts at one moment: its tasks by state and its outcomes by
/// class, read together from the counts the store keeps as they change
/// (`job_counts`), in time independent of the job's size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Its tasks by state.
    pub counts: JobCounts,
    /// Its outcomes by class, most frequent first (then by name).
    pub classes: Vec<(String, u64)>,
    /// When its first outcome was recorded (Unix ms), if any.
    pub first_outcome_ms: Option<i64>,
    /// When its last outcome was recorded (Unix ms), if any.
    pub last_outcome_ms: Option<i64>,
}

/// One job as `volley status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    /// The job row.
    pub job: Job,
    /// Its tasks by state.
    pub counts: JobCounts,
    /// Its outcomes by class, most frequent first.
    pub classes: Vec<(String, u64)>,
}

/// One exported outcome with its task: a row of `volley export`.
///
/// This is the one definition of the outcome record as readers see it:
/// its fields, in this order, are the export's columns
/// ([`crate::export::columns`]), the API's `Outcome` (with the row's `id`)
/// and the Python `Outcome`'s fields, each held to it by a test.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExportRow {
    /// Input ordinal (line number across inputs); `None` for discovered pages.
    pub line: Option<u64>,
    /// Position in its pagination chain.
    pub page: u32,
    /// The URL as fetched (the raw line for `invalid_url`).
    pub url: String,
    /// Outcome class.
    pub class: String,
    /// Final HTTP status.
    pub status: Option<u16>,
    /// HTTP version of the final response.
    pub http_version: Option<String>,
    /// Failure detail.
    pub message: Option<String>,
    /// Requests made.
    pub attempts: u32,
    /// Decoded body bytes.
    pub bytes: Option<u64>,
    /// Body bytes on the wire.
    pub wire_bytes: Option<u64>,
    /// Final attempt duration (ms).
    pub elapsed_ms: Option<u64>,
    /// Final attempt time to headers (ms).
    pub ttfb_ms: Option<u64>,
    /// URL after redirects.
    pub final_url: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// Hex SHA-256 of the body.
    pub body_sha256: Option<String>,
    /// Saved body path.
    pub body_path: Option<String>,
    /// Whether the body differs from the one the database remembered for
    /// the URL; `None` when the run did not compare (see
    /// [`crate::outcome::Outcome::changed`]).
    pub changed: Option<bool>,
    /// Response headers, a JSON object as text (nested as an object in JSON
    /// Lines exports).
    pub headers: Option<String>,
    /// The input row's other columns or fields, a JSON object as text.
    pub meta: Option<String>,
    /// `--extract` fields, a JSON object as text.
    pub extracted: Option<String>,
    /// Input line of the first occurrence, for duplicates.
    pub duplicate_of_line: Option<u64>,
    /// First attempt start (Unix ms).
    pub started_at_ms: Option<i64>,
    /// Outcome time (Unix ms).
    pub finished_at_ms: i64,
}

/// One `--items` element with its page: a row of `volley export --items`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRow {
    /// The page's input ordinal; `None` for a discovered page.
    pub line: Option<u64>,
    /// The page's position in its chain.
    pub page: u32,
    /// The page's URL.
    pub url: String,
    /// 0-based position in the page's array.
    pub idx: u64,
    /// The element as JSON text.
    pub item: String,
}

/// A broken URL of a crawl with the pages that link to it: a row of
/// `volley export --broken`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BrokenRow {
    /// The URL as its task asked for it.
    pub url: String,
    /// Its outcome class (any but [`NOT_BROKEN_CLASSES`]).
    pub class: String,
    /// Its final HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// The outcome's message.
    pub message: Option<String>,
    /// The pages of the job that link to it, in task order (empty for a
    /// seed no page links to).
    pub linked_from: Vec<String>,
}

/// The outcome classes that are not broken links: successes, and the
/// outcomes of URLs that were never checked (robots.txt, `--deadline`, a
/// cancelled job). Every other class is a broken link.
pub const NOT_BROKEN_CLASSES: &str =
    "('ok', 'not_modified', 'fresh', 'duplicate', 'robots_denied', 'deadline', 'cancelled')";

/// The broken URLs of a job (`(task id, row)` in task order, `linked_from`
/// empty) given their linking pages (`(target task id, page URL)` in page
/// order).
fn merge_broken(broken: Vec<(i64, BrokenRow)>, edges: Vec<(i64, String)>) -> Vec<BrokenRow> {
    let mut by_id: std::collections::BTreeMap<i64, BrokenRow> = broken.into_iter().collect();
    for (to, page) in edges {
        if let Some(row) = by_id.get_mut(&to) {
            row.linked_from.push(page);
        }
    }
    by_id.into_values().collect()
}

/// What a job's owner asked for (`jobs.state`); whether it is running,
/// done or waiting for input follows from its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Fetch it.
    Active,
    /// Hold it: nothing is leased until it is resumed.
    Paused,
    /// Its unfinished tasks got a `cancelled` outcome.
    Cancelled,
}

impl JobState {
    /// The name stored in `jobs.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Active => "active",
            JobState::Paused => "paused",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name; anything unknown reads as `Active`.
    pub fn parse(text: &str) -> JobState {
        match text {
            "paused" => JobState::Paused,
            "cancelled" => JobState::Cancelled,
            _ => JobState::Active,
        }
    }
}

/// A job as the API shows it: its row, counts and classes, with what its
/// owner asked for and its stored options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// The job with its counts by state and by class.
    pub summary: JobSummary,
    /// What its owner asked for.
    pub state: JobState,
    /// Its fetch options (JSON, [`crate::FetchSpec`]'s serde form), if stored.
    pub options: Option<String>,
    /// When it was created (Unix ms).
    pub created_at_ms: i64,
    /// When its first and last outcomes were recorded (Unix ms), if any.
    pub first_outcome_ms: Option<i64>,
    /// See `first_outcome_ms`.
    pub last_outcome_ms: Option<i64>,
    /// The completion webhook's URL, if one was given.
    pub notify: Option<String>,
    /// How the webhook went (`sent`, or why it failed); `None` while owed.
    pub notified: Option<String>,
}

impl JobRecord {
    /// A job's record from its row's parts and its counts.
    pub(crate) fn new(
        job: Job,
        tally: Tally,
        state: JobState,
        options: Option<String>,
        created_at_ms: i64,
        notify: Option<String>,
        notified: Option<String>,
    ) -> JobRecord {
        JobRecord {
            summary: JobSummary {
                job,
                counts: tally.counts,
                classes: tally.classes,
            },
            state,
            options,
            created_at_ms,
            first_outcome_ms: tally.first_outcome_ms,
            last_outcome_ms: tally.last_outcome_ms,
            notify,
            notified,
        }
    }
}

/// One outcome row with the task id that orders it (the keyset cursor of
/// `GET /v1/jobs/{name}/outcomes?after=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeEntry {
    /// `tasks.id`.
    pub task_id: i64,
    /// The row as `volley export` writes it.
    pub row: ExportRow,
}

/// The `jobs` columns both stores read into a [`Job`], in its field order.
pub(crate) const JOB_COLUMNS: &str =
    "id, name, input, ingested_lines, ingest_complete, input_fingerprint";

/// The rows of [`Reader::for_each_outcome`], in [`ExportRow`] order, for the
/// job bound to `$1` (SQLite reads `$1` as its first parameter too).
pub(crate) const EXPORT_OUTCOMES: &str = "SELECT t.line, t.url, o.class, o.status, \
     o.http_version, o.message, o.attempts, o.bytes, o.wire_bytes, o.elapsed_ms, o.ttfb_ms, \
     o.final_url, o.content_type, o.body_sha256, o.body_path, o.headers, d.line, \
     o.started_at_ms, o.finished_at_ms, t.page, t.meta, o.extracted, o.changed \
     FROM tasks t JOIN outcomes o ON o.task_id = t.id \
     LEFT JOIN tasks d ON d.id = o.duplicate_of \
     WHERE t.job_id = $1 ORDER BY t.id";

/// The columns of [`EXPORT_OUTCOMES`]; outcome pages add the task id
/// after them.
pub(crate) const EXPORT_COLUMNS: usize = 23;

/// [`EXPORT_OUTCOMES`] with the task id after its columns and without its
/// order, to add conditions to. SQLite's copy keeps its planner off the
/// `(job_id, line)` index (`+t.job_id`): through it, a page in task order
/// sorted every task of the job (170 ms a page at a million tasks, 5 ms
/// along the primary key).
fn export_with_ids(postgres: bool) -> String {
    let base = EXPORT_OUTCOMES
        .strip_suffix(" ORDER BY t.id")
        .unwrap_or(EXPORT_OUTCOMES)
        .replacen(" FROM tasks t ", ", t.id FROM tasks t ", 1);
    if postgres {
        base
    } else {
        base.replacen("WHERE t.job_id = $1", "WHERE +t.job_id = $1", 1)
    }
}

/// One keyset page of outcomes, in both stores' SQL: [`EXPORT_OUTCOMES`]
/// with the task id after its columns, binding `$1` the job, `$2` the last
/// task id seen, `$3` a class or NULL, `$4` the page size.
pub(crate) fn outcome_page_sql(postgres: bool) -> String {
    let base = export_with_ids(postgres);
    format!(
        "{base} AND t.id > $2 AND (CAST($3 AS TEXT) IS NULL OR o.class = $3) ORDER BY t.id LIMIT $4"
    )
}

/// The classes recorded while the input is read, never fetched: what the
/// partial index `outcomes_unfetched` holds (migration 6, PostgreSQL's 5),
/// in SQL. A query must repeat this term as it is for the index to serve.
const UNFETCHED_TERM: &str = "o.class IN ('invalid_url', 'invalid_input', 'duplicate')";

/// The classes of `UNFETCHED_TERM`.
pub const UNFETCHED: [Class; 3] = [Class::InvalidUrl, Class::InvalidInput, Class::Duplicate];

/// One keyset page of the outcomes recorded while the input was read
/// ([`UNFETCHED`]), in both stores' SQL: binding `$1` the job, `$2` the
/// last task id seen, `$3` the page size. Read through the partial index,
/// so it costs nothing per fetched outcome.
pub(crate) fn unfetched_page_sql(postgres: bool) -> String {
    let base = export_with_ids(postgres);
    format!("{base} AND o.task_id > $2 AND {UNFETCHED_TERM} ORDER BY o.task_id LIMIT $3")
}

/// The outcomes of the tasks whose ids are given, in both stores' SQL:
/// [`EXPORT_OUTCOMES`] with the task id after its columns, binding `$1`
/// the job and `$2` the ids as a JSON array (text), in task order.
pub(crate) fn outcomes_by_id_sql(postgres: bool) -> String {
    let base = export_with_ids(postgres);
    let ids = if postgres {
        "SELECT jsonb_array_elements_text(CAST($2 AS TEXT)::jsonb)::bigint"
    } else {
        "SELECT value FROM json_each($2)"
    };
    format!("{base} AND t.id IN ({ids}) ORDER BY t.id")
}

/// The columns of `resources`, in [`Resource`] field order.
pub(crate) const RESOURCE_COLUMNS: &str = "url, status, etag, last_modified, body_sha256, \
     body_path, bytes, content_type, next_url, checked_at_ms, changed_at_ms, fresh_until_ms, links";

/// What an upsert of `resources` does to a row it finds: takes the new
/// values, but keeps `changed_at_ms` while the body's hash is the same.
pub(crate) const RESOURCE_CONFLICT: &str = "ON CONFLICT (url) DO UPDATE SET \
     status = excluded.status, etag = excluded.etag, last_modified = excluded.last_modified, \
     body_sha256 = excluded.body_sha256, body_path = excluded.body_path, bytes = excluded.bytes, \
     content_type = excluded.content_type, next_url = excluded.next_url, links = excluded.links, \
     checked_at_ms = excluded.checked_at_ms, fresh_until_ms = excluded.fresh_until_ms, \
     changed_at_ms = CASE WHEN resources.body_sha256 = excluded.body_sha256 \
     THEN resources.changed_at_ms ELSE excluded.changed_at_ms END";

/// The rows of [`Reader::for_each_item`], in [`ItemRow`] order, for the job
/// bound to `$1`.
pub(crate) const EXPORT_ITEMS: &str = "SELECT t.line, t.page, t.url, i.idx, i.item FROM tasks t \
     JOIN items i ON i.task_id = t.id WHERE t.job_id = $1 ORDER BY t.id, i.idx";

/// A row of [`Reader::for_each_warc_record`]: one `response` or `revisit`
/// record, a line of the CDXJ index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarcRecordRow {
    /// The SURT key of its URI.
    pub urlkey: String,
    /// Its `WARC-Date`.
    pub date: String,
    /// Its `WARC-Target-URI`.
    pub target_uri: String,
    /// `response` or `revisit`.
    pub kind: crate::warc::RecordKind,
    /// The response's `Content-Type`.
    pub mime: Option<String>,
    /// The HTTP status.
    pub status: Option<u16>,
    /// Its `WARC-Payload-Digest`.
    pub payload_digest: Option<String>,
    /// Where its gzip member starts in the file, in bytes.
    pub offset: u64,
    /// The member's length, in bytes.
    pub length: u64,
    /// The file's path.
    pub file: String,
}

/// The rows of [`Reader::for_each_warc_record`] for the job bound to `$1`,
/// in index order (by key, then date), before the store's own `ORDER BY`.
pub(crate) const EXPORT_WARC_RECORDS: &str = "SELECT r.urlkey, r.date, r.target_uri, r.kind, \
     r.mime, r.status, r.payload_digest, r.offset_bytes, r.length_bytes, f.path \
     FROM warc_records r JOIN warc_files f ON f.id = r.file_id WHERE f.job_id = $1";

/// Read-only access to a database for `volley status` and `volley export`;
/// takes no lock and works while runs go on.
pub trait Reader {
    /// Every job with its counts, oldest first.
    ///
    /// # Errors
    /// Database errors.
    fn jobs(&self) -> Result<Vec<JobSummary>, StoreError>;

    /// Finds a job by name.
    ///
    /// # Errors
    /// [`StoreError::NoSuchJob`]; database errors.
    fn job(&self, name: &str) -> Result<Job, StoreError>;

    /// Calls `each` for every outcome of `job`, in task order, streaming
    /// (one row in memory at a time).
    ///
    /// # Errors
    /// Database errors, or the first error `each` returns.
    fn for_each_outcome<E: From<StoreError>>(
        &self,
        job: i64,
        each: impl FnMut(&ExportRow) -> Result<(), E>,
    ) -> Result<(), E>;

    /// Calls `each` for every item of `job`, page by page in task order,
    /// streaming.
    ///
    /// # Errors
    /// Database errors, or the first error `each` returns.
    fn for_each_item<E: From<StoreError>>(
        &self,
        job: i64,
        each: impl FnMut(&ItemRow) -> Result<(), E>,
    ) -> Result<(), E>;

    /// Calls `each` for every `response` and `revisit` record `job` archived
    /// (`--warc`), sorted by key, then date (byte order, as CDXJ readers
    /// binary-search it), streaming.
    ///
    /// # Errors
    /// Database errors, or the first error `each` returns.
    fn for_each_warc_record<E: From<StoreError>>(
        &self,
        job: i64,
        each: impl FnMut(&WarcRecordRow) -> Result<(), E>,
    ) -> Result<(), E>;

    /// The broken URLs of `job` (every failed outcome but those of
    /// [`NOT_BROKEN_CLASSES`]), each with the pages linking to it, in task
    /// order. Reads the job's link graph once; holds the broken URLs and
    /// their edges in memory.
    ///
    /// # Errors
    /// Database errors.
    fn broken(&self, job: i64) -> Result<Vec<BrokenRow>, StoreError>;
}

/// Errors of the store. Every one of them stops the run: an outcome that
/// cannot be recorded must not be reported as recorded.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL reported an error, or the connection failed.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had from the pool.
    #[error("PostgreSQL connection pool: {0}")]
    Pool(String),
    /// The PostgreSQL schema could not be brought to the current version.
    #[error("PostgreSQL migration failed: {0}")]
    PgMigration(#[from] refinery_core::Error),
    /// The `--db` URL is not a PostgreSQL URL that can be used.
    #[error("--db {url}: {why}")]
    BadUrl {
        /// The URL given, with any password removed.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// This worker's leases expired (it could not renew them in time, or
    /// it stalled): other workers may now hold its tasks, so it stops.
    #[error(
        "this worker's leases expired (no heartbeat for longer than the lease); its tasks went back to the others"
    )]
    LeaseLost,
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
    /// A job of that name exists already.
    #[error("a job named '{0}' exists already; choose another name")]
    JobExists(String),
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
    /// Whether other processes may work on the same job at the same time
    /// (PostgreSQL). The scheduler then polls for work it cannot see
    /// coming: tasks ingested or freed by other processes.
    const SHARED: bool = false;

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

    /// The job called `name`, if there is one; creates nothing.
    ///
    /// # Errors
    /// Database errors.
    fn find_job(&self, name: &str) -> impl Future<Output = Result<Option<Job>, StoreError>> + Send;

    /// Commits a batch of inputs as tasks, with outcomes for those that need
    /// no fetch, and advances the job's ingest cursor.
    fn ingest(
        &self,
        job: i64,
        batch: IngestBatch,
    ) -> impl Future<Output = Result<IngestReport, StoreError>> + Send;

    /// Leases up to `want.limit` pending tasks of `job` to this run, oldest
    /// first (by host first, where the store has host affinity).
    fn lease(
        &self,
        job: i64,
        want: Want,
    ) -> impl Future<Output = Result<Vec<LeasedTask>, StoreError>> + Send;

    /// Records outcomes of leased tasks of `job` and marks them final, with
    /// their items and, in the same transaction, their next pages as pending
    /// tasks (unless a next page's URL is already in the job: then the chain
    /// stops and the outcome's message says so).
    ///
    /// An outcome for a task this run does not hold (its lease was lost and
    /// the task claimed again, or it already has an outcome) is dropped and
    /// counted in [`Recorded::fenced`]: exactly one outcome per task holds
    /// whatever the timing.
    fn record(
        &self,
        job: i64,
        outcomes: Vec<Outcome>,
    ) -> impl Future<Output = Result<Recorded, StoreError>> + Send;

    /// Says that `tasks` of `job` are fetched and their outcomes on their
    /// way to [`Store::record`]. A store that limits the tasks it holds per
    /// host for fetching (PostgreSQL) may claim more there from now, not
    /// from the commit; the tasks stay held, and fenced, until they are
    /// recorded. The default does nothing.
    fn fetched(&self, job: i64, tasks: &[i64]) {
        let _ = (job, tasks);
    }

    /// Returns every task of `job` this run holds to `pending` (and, with
    /// host affinity, the hosts it holds); returns how many tasks.
    fn release(&self, job: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Counts the tasks of `job` by state.
    fn counts(&self, job: i64) -> impl Future<Output = Result<JobCounts, StoreError>> + Send;

    /// `job`'s counts twice, read in one transaction: as the store keeps
    /// them (`job_counts`, what status reads) and as its tasks and outcomes
    /// say (`GROUP BY`, a scan of the whole job). The two are equal at
    /// every commit; a difference is a bug in the store.
    ///
    /// # Errors
    /// Database errors.
    fn recount(&self, job: i64) -> impl Future<Output = Result<(Tally, Tally), StoreError>> + Send;

    /// Tasks of `job` without an outcome. Cheaper than [`Store::counts`]
    /// where the store keeps a running count.
    fn unfinished(&self, job: i64) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move { Ok(self.counts(job).await?.unfinished()) }
    }

    /// What the database remembers of each of `urls` (rows of
    /// `resources`, see [`crate::http::refresh`]), by URL; URLs it never had are
    /// absent from the map.
    fn resources(
        &self,
        urls: Vec<String>,
    ) -> impl Future<Output = Result<HashMap<String, Resource>, StoreError>> + Send;

    /// Reads the job row again (another process may have ingested more).
    fn reload_job(&self, job: i64) -> impl Future<Output = Result<Job, StoreError>> + Send;

    /// The WARC files of `job` (`--warc`), oldest first, with where each
    /// one's last committed record ends.
    fn warc_files(
        &self,
        job: i64,
    ) -> impl Future<Output = Result<Vec<crate::warc::WarcFile>, StoreError>> + Send;

    /// Registers a new WARC file of `job`, named by
    /// [`crate::warc::file_name`] from `prefix`, `stamp` and a serial unique
    /// in the database (its id); its committed end is 0.
    fn add_warc_file(
        &self,
        job: i64,
        prefix: String,
        stamp: String,
    ) -> impl Future<Output = Result<crate::warc::WarcFile, StoreError>> + Send;

    /// The earlier captures, in any job of the database, that revisit
    /// records may point at: the first whole `response` of each payload
    /// digest in `digests`, and the latest `response` of each URI in `uris`.
    fn warc_earlier(
        &self,
        digests: Vec<String>,
        uris: Vec<String>,
    ) -> impl Future<Output = Result<crate::warc::EarlierCaptures, StoreError>> + Send;

    /// Fires when this run's leases are lost (a shared store whose
    /// heartbeat failed for longer than the lease): the run must stop at
    /// once. Never fires for a store with no leases to lose.
    fn lease_lost(&self) -> CancellationToken {
        CancellationToken::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_appended_batch_ends_where_the_later_one_does() {
        let input = |line: u64| Input::Invalid {
            line,
            raw: format!("line {line}"),
            reason: String::new(),
            malformed: false,
        };
        let mut batch = IngestBatch {
            inputs: vec![input(1), input(2)],
            through_line: 3,
            complete: false,
            fingerprint: Some("through 3".into()),
        };
        batch.append(IngestBatch {
            inputs: vec![input(5)],
            through_line: 6,
            complete: true,
            fingerprint: Some("through 6".into()),
        });
        let lines: Vec<u64> = batch.inputs.iter().map(Input::line).collect();
        assert_eq!(lines, [1, 2, 5]);
        assert_eq!(batch.through_line, 6);
        assert!(batch.complete);
        assert_eq!(batch.fingerprint.as_deref(), Some("through 6"));
    }

    #[test]
    fn the_unfetched_term_is_the_partial_index_condition() {
        let classes: Vec<String> = UNFETCHED
            .iter()
            .map(|c| format!("'{}'", c.as_str()))
            .collect();
        let list = format!("class IN ({})", classes.join(", "));
        assert_eq!(UNFETCHED_TERM, format!("o.{list}"));
        for migration in [
            include_str!("migrations/0006_unfetched_index.sql"),
            include_str!("migrations/postgres/V5__unfetched_index.sql"),
        ] {
            assert!(migration.contains(&list), "{list} in {migration}");
        }
    }
}
