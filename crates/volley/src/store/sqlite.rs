//! The embedded store: one SQLite file, zero setup.
//!
//! SQLite allows one writer at a time, so [`SqliteStore`] owns one connection
//! behind a mutex and runs each transaction on tokio's blocking pool. The
//! engine already funnels outcomes through one writer task that commits in
//! batches, so the mutex is rarely contended. The database runs in WAL mode
//! with `synchronous=NORMAL`: a committed transaction survives a crash of
//! the process (kill -9); a power loss may lose the last commits but never
//! corrupts the file or splits a transaction.
//!
//! [`SqliteReader`] serves the read-only commands (`status`, `export`); it
//! takes no lock, so it works while a run is going.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Statement, TransactionBehavior, params};
use rusqlite_migration::{M, Migrations};

use super::counts::{CountChanges, TALLY, TaskCount, tally};
use super::{
    BrokenRow, EXPORT_ITEMS, EXPORT_OUTCOMES, EXPORT_WARC_RECORDS, ExportRow, IngestBatch,
    IngestReport, ItemRow, JOB_COLUMNS, Job, JobCounts, JobSummary, LeasedTask, NOT_BROKEN_CLASSES,
    RESOURCE_COLUMNS, RESOURCE_CONFLICT, Reader, Recorded, Store, StoreError, Tally, Want,
    WarcRecordRow,
};
use crate::crawl::PageCaps;
use crate::http::refresh::Resource;
use crate::input::Input;
use crate::outcome::{Class, Outcome, now_ms};
use crate::warc::{Earlier, EarlierCaptures, WarcFile};

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Past this size (bytes) the write-ahead log is checkpointed and truncated
/// after a write. SQLite's own checkpoints (every 1,000 pages) move pages
/// into the database but only restart the log when no reader is using it;
/// a reader that follows every commit (`serve`, a Python job streaming its
/// outcomes) never leaves such a moment, and the log grew past 600 MB in a
/// run of a million tasks.
const WAL_LIMIT: u64 = 64 << 20;

/// How long that checkpoint waits for readers to move off the log (the
/// writer waits with it). Readers that stay longer (a long `export`) make
/// it give up until the log has grown by another quarter of the limit, so
/// such a reader costs the writer this wait once per 16 MB written.
const WAL_WAIT: Duration = Duration::from_millis(200);

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("migrations/0001_init.sql")),
        M::up(include_str!("migrations/0002_input_fingerprint.sql")),
        M::up(include_str!("migrations/0003_job_state.sql")),
        M::up(include_str!("migrations/0004_job_notify.sql")),
        M::up(include_str!("migrations/0005_resources.sql")),
        M::up(include_str!("migrations/0006_unfetched_index.sql")),
        M::up(include_str!("migrations/0007_crawl.sql")),
        M::up(include_str!("migrations/0008_warc.sql")),
        M::up(include_str!("migrations/0009_job_counts.sql")),
    ])
}

/// Opens `path`, applies the connection settings and brings the schema to
/// the current version.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // 16 MiB of page cache (negative: KiB), so the task indexes of a large
    // job stay in memory while ingest and the writer work on them.
    conn.pragma_update(None, "cache_size", -16384)?;
    migrations().to_latest(&mut conn)?;
    Ok(conn)
}

/// The version of the SQLite library compiled into volley (rusqlite's
/// bundled copy), as `3.x.y`.
pub fn sqlite_version() -> &'static str {
    rusqlite::version()
}

/// The SQLite [`Store`] used by a run. Holds the database's run lock for as
/// long as it lives.
///
/// Leases live in memory: the run lock already makes this process the only
/// one working on the database, so handing a task out needs no write. The
/// store remembers, per job, the last task id handed out; tasks it holds stay
/// `pending` in the table until their outcome makes them `done` or `failed`.
/// A process that dies holds nothing, so there is nothing to reclaim (rows
/// left `leased` by earlier versions are reclaimed when a job is opened).
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    lease_cursor: Mutex<std::collections::HashMap<i64, i64>>,
    wal: Arc<WalBound>,
    /// Moves on after every call on the connection ([`SqliteStore::generation`]).
    generation: Arc<std::sync::atomic::AtomicU64>,
    _lock: File,
}

/// Keeps the write-ahead log under a size (see [`WAL_LIMIT`]).
struct WalBound {
    path: PathBuf,
    limit: u64,
    /// The log's size (bytes) when a checkpoint last gave up waiting for
    /// readers.
    gave_up_at: Mutex<Option<u64>>,
}

impl WalBound {
    fn new(db: &Path, limit: u64) -> WalBound {
        let mut path = db.as_os_str().to_owned();
        path.push("-wal");
        WalBound {
            path: path.into(),
            limit,
            gave_up_at: Mutex::new(None),
        }
    }

    /// After a write on `conn`: truncates the log if it outgrew the limit.
    fn after_write(&self, conn: &Connection) -> Result<(), StoreError> {
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if size <= self.limit {
            return Ok(());
        }
        let mut gave_up_at = self
            .gave_up_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if gave_up_at.is_some_and(|at| size < at.saturating_add(self.limit / 4)) {
            return Ok(());
        }
        conn.busy_timeout(WAL_WAIT)?;
        // (busy, frames in the log, frames checkpointed); busy = 1 when
        // readers held the log past the wait.
        let busy = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        });
        conn.busy_timeout(BUSY_TIMEOUT)?;
        match busy {
            Ok(0) => *gave_up_at = None,
            Ok(_) => {
                tracing::debug!(bytes = size, "WAL checkpoint waited for readers; later");
                *gave_up_at = Some(size);
            }
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                *gave_up_at = Some(size);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` for a run: takes the
    /// exclusive run lock on `<path>.lock` and migrates the schema.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another process holds the lock;
    /// [`StoreError::LockFile`], [`StoreError::Sqlite`] or
    /// [`StoreError::Migration`] when the files cannot be opened or migrated.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StoreError::LockFile {
                path: Path::new(&lock_path).display().to_string(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: path.display().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StoreError::LockFile {
                    path: Path::new(&lock_path).display().to_string(),
                    source,
                });
            }
        }
        let conn = connect(path)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            lease_cursor: Mutex::new(std::collections::HashMap::new()),
            wal: Arc::new(WalBound::new(path, WAL_LIMIT)),
            generation: Arc::default(),
            _lock: lock,
        })
    }

    /// The last task id of `job` handed out by [`Store::lease`] (0 for none).
    fn leased_through(&self, job: i64) -> i64 {
        self.lease_cursor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&job)
            .copied()
            .unwrap_or(0)
    }

    /// Starts handing out `job`'s pending tasks from the first again.
    fn forget_leases(&self, job: i64) {
        self.lease_cursor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&job);
    }

    /// A number that moves on after every transaction this store runs,
    /// committed or not. This store is the file's only writer (its lock
    /// file), so what was read while the number was `n` is still what the
    /// file holds while it is `n`: read the number first, then the rows.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Runs `f` with the connection on the blocking pool.
    pub(super) async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let wal = Arc::clone(&self.wal);
        let generation = Arc::clone(&self.generation);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Worker("a database call panicked earlier".into()))?;
            let value = f(&mut guard);
            // After the commit (or the rollback), before the lock goes.
            generation.fetch_add(1, std::sync::atomic::Ordering::Release);
            let value = value?;
            wal.after_write(&guard)?;
            Ok(value)
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
    }
}

/// Maps a `SELECT {JOB_COLUMNS}` row to a [`Job`].
pub(super) fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        name: r.get(1)?,
        input: r.get(2)?,
        ingested_lines: r.get(3)?,
        ingest_complete: r.get(4)?,
        input_fingerprint: r.get(5)?,
    })
}

const INSERT_OUTCOME: &str = "INSERT INTO outcomes (task_id, job_id, class, status, \
     http_version, message, attempts, bytes, wire_bytes, elapsed_ms, ttfb_ms, final_url, \
     content_type, body_sha256, body_path, headers, extracted, duplicate_of, started_at_ms, \
     finished_at_ms, changed, warc_file, warc_offset, warc_length) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, \
     ?20, ?21, ?22, ?23, ?24)";

/// The first task of a job with a URL (for duplicates and pagination loops).
const FIRST_WITH_URL: &str =
    "SELECT id FROM tasks WHERE job_id = ?1 AND url = ?2 AND host IS NOT NULL ORDER BY id LIMIT 1";

const INSERT_ATTEMPT: &str = "INSERT INTO attempts (task_id, attempt, class, status, message, \
     started_at_ms, elapsed_ms, retry_delay_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

fn insert_outcome(stmt: &mut Statement<'_>, job: i64, o: &Outcome) -> rusqlite::Result<()> {
    stmt.execute(params![
        o.task_id,
        job,
        o.class.as_str(),
        o.status,
        o.http_version,
        o.message,
        o.attempts,
        o.bytes,
        o.wire_bytes,
        o.elapsed_ms,
        o.ttfb_ms,
        o.final_url,
        o.content_type,
        o.body_sha256,
        o.body_path,
        o.headers,
        o.extracted,
        o.duplicate_of,
        o.started_at_ms,
        o.finished_at_ms,
        o.changed,
        o.warc.as_ref().map(|w| &w.file),
        o.warc.as_ref().map(|w| w.offset),
        o.warc.as_ref().map(|w| w.length),
    ])?;
    Ok(())
}

/// Writes what `r` says to remember of its URL (`resources`).
fn upsert_resource(stmt: &mut Statement<'_>, r: &Resource) -> rusqlite::Result<()> {
    stmt.execute(params![
        r.url,
        r.status,
        r.etag,
        r.last_modified,
        r.body_sha256,
        r.body_path,
        r.bytes,
        r.content_type,
        r.next_url,
        r.checked_at_ms,
        r.changed_at_ms,
        r.fresh_until_ms,
        r.links,
    ])?;
    Ok(())
}

/// Reads the `resources` row of each of `urls` that has one.
fn resources_query(
    conn: &Connection,
    urls: &[String],
) -> Result<HashMap<String, Resource>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {RESOURCE_COLUMNS} FROM resources WHERE url = ?1"
    ))?;
    let mut found = HashMap::new();
    for url in urls {
        let row = stmt
            .query_row(params![url], |r| {
                Ok(Resource {
                    url: r.get(0)?,
                    status: r.get(1)?,
                    etag: r.get(2)?,
                    last_modified: r.get(3)?,
                    body_sha256: r.get(4)?,
                    body_path: r.get(5)?,
                    bytes: r.get(6)?,
                    content_type: r.get(7)?,
                    next_url: r.get(8)?,
                    checked_at_ms: r.get(9)?,
                    changed_at_ms: r.get(10)?,
                    fresh_until_ms: r.get(11)?,
                    links: r.get(12)?,
                })
            })
            .optional()?;
        if let Some(resource) = row {
            found.insert(url.clone(), resource);
        }
    }
    Ok(found)
}

fn open_job_tx(
    conn: &mut Connection,
    name: &str,
    input: &str,
    stamp: Option<&str>,
) -> Result<Job, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO jobs (name, input, created_at_ms, input_stamp) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (name) DO NOTHING",
        params![name, input, now_ms(), stamp],
    )?;
    // Inserted above, or there already.
    let mut job = job_named(&tx, name)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    if job.input != input {
        return Err(StoreError::JobInputMismatch {
            job: job.name,
            recorded: job.input,
            given: input.to_owned(),
        });
    }
    // Files changed since the job last read them: read on from the cursor
    // (the fingerprint check then refuses them if the read part changed).
    if let Some(stamp) = stamp {
        let reopened = tx.execute(
            "UPDATE jobs SET input_stamp = ?2, ingest_complete = 0 \
             WHERE id = ?1 AND input_stamp IS NOT ?2",
            params![job.id, stamp],
        )?;
        if reopened > 0 {
            job.ingest_complete = false;
        }
    }
    let reclaimed = release_leased(&tx, job.id)?;
    tx.commit()?;
    if reclaimed > 0 {
        tracing::info!(job = %job.name, reclaimed, "returned tasks leased by an earlier run to pending");
    }
    Ok(job)
}

/// Returns `job`'s tasks left `leased` (by a version that wrote leases)
/// to `pending`, counted, in the caller's transaction; returns how many.
fn release_leased(conn: &Connection, job: i64) -> Result<usize, StoreError> {
    let n = conn.execute(
        "UPDATE tasks SET state = 'pending', lease_owner = NULL \
         WHERE job_id = ?1 AND state = 'leased'",
        params![job],
    )?;
    if n > 0 {
        let mut changes = CountChanges::default();
        changes.moved(TaskCount::Leased, TaskCount::Pending, n as i64);
        add_counts(conn, job, &changes)?;
    }
    Ok(n)
}

fn ingest_tx(
    conn: &mut Connection,
    job: i64,
    batch: &IngestBatch,
) -> Result<IngestReport, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut report = IngestReport::default();
    let mut changes = CountChanges::default();
    {
        let mut insert_task = tx.prepare_cached(
            "INSERT INTO tasks (job_id, line, url, host, state, meta) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (job_id, line) DO NOTHING",
        )?;
        let mut first_with_url = tx.prepare_cached(FIRST_WITH_URL)?;
        let mut outcome = tx.prepare_cached(INSERT_OUTCOME)?;
        for input in &batch.inputs {
            match input {
                Input::Invalid {
                    line, raw, reason, ..
                } => {
                    let added = insert_task.execute(params![
                        job,
                        line,
                        raw,
                        None::<&str>,
                        "failed",
                        None::<&str>
                    ])?;
                    if added == 1 {
                        let class = input.invalid_class().unwrap_or(Class::InvalidUrl);
                        let mut o = Outcome::new(tx.last_insert_rowid(), class);
                        o.message = Some(reason.clone());
                        insert_outcome(&mut outcome, job, &o)?;
                        changes.added("failed", 1, false);
                        changes.recorded(class.as_str(), 1, o.finished_at_ms);
                        match class {
                            Class::InvalidInput => report.invalid_input += 1,
                            _ => report.invalid_url += 1,
                        }
                    }
                }
                Input::Url { line, url, meta } => {
                    let first: Option<i64> = first_with_url
                        .query_row(params![job, url.as_str()], |r| r.get(0))
                        .optional()?;
                    let state = if first.is_some() { "done" } else { "pending" };
                    let added = insert_task.execute(params![
                        job,
                        line,
                        url.as_str(),
                        url.host_str(),
                        state,
                        meta
                    ])?;
                    if added == 0 {
                        continue;
                    }
                    changes.added(state, 1, false);
                    match first {
                        Some(first) => {
                            let mut o = Outcome::new(tx.last_insert_rowid(), Class::Duplicate);
                            o.duplicate_of = Some(first);
                            insert_outcome(&mut outcome, job, &o)?;
                            changes.recorded(Class::Duplicate.as_str(), 1, o.finished_at_ms);
                            report.duplicates += 1;
                        }
                        None => report.pending += 1,
                    }
                }
            }
        }
        tx.execute(
            "UPDATE jobs SET ingested_lines = max(ingested_lines, ?2), \
             ingest_complete = max(ingest_complete, ?3), \
             input_fingerprint = coalesce(?4, input_fingerprint) WHERE id = ?1",
            params![job, batch.through_line, batch.complete, batch.fingerprint],
        )?;
    }
    add_counts(&tx, job, &changes)?;
    tx.commit()?;
    Ok(report)
}

/// Hands out up to `limit` pending tasks of `job` after `after` (a task id),
/// oldest first. With SQLite, the run lock makes this process the only one
/// working on the database, so a lease needs no write: the tasks stay
/// `pending` in the table and the store remembers how far it has handed
/// them out (see [`SqliteStore`]).
fn lease_query(
    conn: &mut Connection,
    job: i64,
    after: i64,
    limit: usize,
) -> Result<Vec<LeasedTask>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.id, t.line, t.url, t.page, t.seed_id, s.url FROM tasks t \
         LEFT JOIN tasks s ON s.id = t.seed_id \
         WHERE t.job_id = ?1 AND t.state = 'pending' AND t.id > ?2 ORDER BY t.id LIMIT ?3",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let tasks = stmt
        .query_map(params![job, after, limit], |r| {
            Ok(LeasedTask {
                id: r.get(0)?,
                line: r.get(1)?,
                url: r.get(2)?,
                page: r.get(3)?,
                seed: r
                    .get::<_, Option<i64>>(4)?
                    .zip(r.get::<_, Option<String>>(5)?),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(tasks)
}

fn record_tx(
    conn: &mut Connection,
    job: i64,
    outcomes: &[Outcome],
) -> Result<Recorded, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut recorded = Recorded::default();
    let mut changes = CountChanges::default();
    {
        let mut insert = tx.prepare_cached(INSERT_OUTCOME)?;
        let mut insert_attempt = tx.prepare_cached(INSERT_ATTEMPT)?;
        let mut insert_item =
            tx.prepare_cached("INSERT INTO items (task_id, idx, item) VALUES (?1, ?2, ?3)")?;
        let mut first_with_url = tx.prepare_cached(FIRST_WITH_URL)?;
        let mut upsert = tx.prepare_cached(&format!(
            "INSERT INTO resources ({RESOURCE_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) {RESOURCE_CONFLICT}"
        ))?;
        let mut insert_page = tx.prepare_cached(
            "INSERT INTO tasks (job_id, line, url, host, state, parent_id, page, seed_id, meta) \
             VALUES (?1, NULL, ?2, ?3, 'pending', ?4, ?5, ?6, ?7)",
        )?;
        let mut insert_link =
            tx.prepare_cached("INSERT OR IGNORE INTO links (from_task, to_task) VALUES (?1, ?2)")?;
        let mut counts = CrawlCounts::default();
        let mut insert_record = tx.prepare_cached(INSERT_WARC_RECORD)?;
        let mut warc_ends: HashMap<i64, u64> = HashMap::new();
        // A task this run holds is still 'pending' (see `lease_query`; the
        // job's opening returned any 'leased' one to 'pending'); one with
        // an outcome is not, so a second outcome is refused here.
        let mut finish = tx.prepare_cached(
            "UPDATE tasks SET state = ?2, lease_owner = NULL \
             WHERE id = ?1 AND job_id = ?3 AND state = 'pending'",
        )?;
        for o in outcomes {
            let (state, counter) = if o.class.is_success() {
                ("done", TaskCount::Done)
            } else {
                ("failed", TaskCount::Failed)
            };
            if finish.execute(params![o.task_id, state, job])? != 1 {
                tracing::warn!(
                    task = o.task_id,
                    "dropped a second outcome for a task already recorded"
                );
                recorded.fenced += 1;
                continue;
            }
            recorded.outcomes += 1;
            changes.moved(TaskCount::Pending, counter, 1);
            changes.recorded(o.class.as_str(), 1, o.finished_at_ms);
            let mut looped = None;
            if let Some(next) = &o.next_page {
                let seen: Option<i64> = first_with_url
                    .query_row(params![job, next.url], |r| r.get(0))
                    .optional()?;
                if seen.is_some() {
                    looped = Some(format!(
                        "pagination stopped: the next page {} was already in this job (a loop)",
                        next.url
                    ));
                } else {
                    insert_page.execute(params![
                        job,
                        next.url,
                        next.host,
                        o.task_id,
                        next.page,
                        next.seed_id,
                        next.meta
                    ])?;
                    recorded.pages += 1;
                    changes.added("pending", 1, true);
                }
            }
            // A crawl's links: each URL once per job, whatever page names
            // it (the first to commit wins; a link already there is no
            // loop), within the page caps, and an edge of the link graph
            // for each.
            let mut skipped = 0u64;
            for link in &o.links {
                let seen: Option<i64> = first_with_url
                    .query_row(params![job, link.url], |r| r.get(0))
                    .optional()?;
                let to = match seen {
                    Some(id) => id,
                    None if o.caps.any() && !counts.admit(&tx, job, o.caps, &link.host)? => {
                        skipped += 1;
                        continue;
                    }
                    None => {
                        insert_page.execute(params![
                            job,
                            link.url,
                            link.host,
                            o.task_id,
                            link.page,
                            link.seed_id,
                            link.meta
                        ])?;
                        recorded.pages += 1;
                        changes.added("pending", 1, true);
                        tx.last_insert_rowid()
                    }
                };
                insert_link.execute(params![o.task_id, to])?;
            }
            if skipped > 0 {
                let note = o.caps.note(skipped);
                looped = Some(match looped {
                    Some(l) => format!("{l}; {note}"),
                    None => note,
                });
            }
            match looped {
                None => insert_outcome(&mut insert, job, o)?,
                Some(note) => {
                    let mut o = o.clone();
                    o.message = Some(match o.message.take() {
                        Some(m) => format!("{m}; {note}"),
                        None => note,
                    });
                    insert_outcome(&mut insert, job, &o)?;
                }
            }
            if let Some(resource) = &o.resource {
                upsert_resource(&mut upsert, resource)?;
            }
            if let Some(w) = &o.warc {
                let end = warc_ends.entry(w.file_id).or_default();
                *end = (*end).max(w.end());
                for r in &w.records {
                    insert_record.execute(params![
                        o.task_id,
                        w.file_id,
                        r.offset,
                        r.length,
                        r.kind.as_str(),
                        r.target_uri,
                        r.urlkey,
                        r.date,
                        r.status,
                        r.mime,
                        r.payload_digest,
                        r.record_id,
                        r.complete,
                    ])?;
                }
            }
            for (idx, item) in o.items.iter().enumerate() {
                insert_item.execute(params![o.task_id, idx as i64, item])?;
            }
            for a in &o.attempt_log {
                insert_attempt.execute(params![
                    o.task_id,
                    a.attempt,
                    a.class.as_str(),
                    a.status,
                    a.message,
                    a.started_at_ms,
                    a.elapsed_ms,
                    a.retry_delay_ms,
                ])?;
            }
        }
        counts.save(&tx, job)?;
        add_counts(&tx, job, &changes)?;
        let mut end_at = tx.prepare_cached(
            "UPDATE warc_files SET committed_end = max(committed_end, ?2) WHERE id = ?1",
        )?;
        for (file, end) in warc_ends {
            end_at.execute(params![file, end])?;
        }
    }
    tx.commit()?;
    Ok(recorded)
}

/// Inserts one row of `warc_records`.
const INSERT_WARC_RECORD: &str = "INSERT INTO warc_records (task_id, file_id, offset_bytes, length_bytes, \
     kind, target_uri, urlkey, date, status, mime, payload_digest, record_id, complete) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

/// The columns of an earlier capture, from `warc_records`.
const EARLIER: &str = "SELECT target_uri, date, record_id, payload_digest FROM warc_records";
/// The first whole response of a payload.
const FIRST: &str = "AND kind = 'response' AND complete = 1 ORDER BY rowid LIMIT 1";

/// The earlier captures of `digests` and `uris`
/// ([`Store::warc_earlier`]).
fn warc_earlier_query(
    conn: &Connection,
    digests: &[String],
    uris: &[String],
) -> Result<EarlierCaptures, StoreError> {
    let mut found = EarlierCaptures::default();
    let earlier = |r: &rusqlite::Row<'_>| {
        Ok(Earlier {
            target_uri: r.get(0)?,
            date: r.get(1)?,
            record_id: r.get(2)?,
            payload_digest: r.get(3)?,
        })
    };
    let mut by_digest =
        conn.prepare_cached(&format!("{EARLIER} WHERE payload_digest = ?1 {FIRST}"))?;
    for digest in digests {
        if let Some(e) = by_digest.query_row(params![digest], earlier).optional()? {
            found.by_digest.insert(digest.clone(), e);
        }
    }
    let mut by_uri = conn.prepare_cached(&format!(
        "{EARLIER} WHERE payload_digest = (SELECT payload_digest FROM warc_records \
         WHERE target_uri = ?1 AND payload_digest IS NOT NULL ORDER BY rowid DESC LIMIT 1) {FIRST}"
    ))?;
    for uri in uris {
        if let Some(e) = by_uri.query_row(params![uri], earlier).optional()? {
            found.by_uri.insert(uri.clone(), e);
        }
    }
    Ok(found)
}

/// The WARC files of `job`, oldest first.
fn warc_files_query(conn: &Connection, job: i64) -> Result<Vec<WarcFile>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, path, committed_end FROM warc_files WHERE job_id = ?1 ORDER BY id",
    )?;
    let files = stmt
        .query_map(params![job], |r| {
            Ok(WarcFile {
                id: r.get(0)?,
                path: r.get(1)?,
                committed_end: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(files)
}

/// The `crawl_counts` of a job read in a transaction as the page caps
/// need them, and written back before it commits.
#[derive(Default)]
struct CrawlCounts {
    /// Pages added per host, `""` for the job; those read or changed.
    counts: HashMap<String, u64>,
    /// Whether anything changed.
    changed: bool,
}

impl CrawlCounts {
    /// Whether one more page on `host` fits `caps`; counts it when so.
    fn admit(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        job: i64,
        caps: PageCaps,
        host: &str,
    ) -> Result<bool, StoreError> {
        for key in ["", host] {
            if !self.counts.contains_key(key) {
                let pages: Option<u64> = tx
                    .prepare_cached(
                        "SELECT pages FROM crawl_counts WHERE job_id = ?1 AND host = ?2",
                    )?
                    .query_row(params![job, key], |r| r.get(0))
                    .optional()?;
                self.counts.insert(key.to_owned(), pages.unwrap_or(0));
            }
        }
        let admitted = caps.admit(&mut self.counts, host);
        self.changed |= admitted;
        Ok(admitted)
    }

    fn save(&self, tx: &rusqlite::Transaction<'_>, job: i64) -> Result<(), StoreError> {
        if !self.changed {
            return Ok(());
        }
        let mut upsert = tx.prepare_cached(
            "INSERT INTO crawl_counts (job_id, host, pages) VALUES (?1, ?2, ?3) \
             ON CONFLICT (job_id, host) DO UPDATE SET pages = excluded.pages",
        )?;
        for (host, pages) in &self.counts {
            upsert.execute(params![job, host, pages])?;
        }
        Ok(())
    }
}

/// `job`'s counts as `job_counts` keeps them: constant time in the job's
/// size.
pub(super) fn tally_query(conn: &Connection, job: i64) -> Result<Tally, StoreError> {
    tally_of(&mut *conn.prepare_cached(TALLY)?, job)
}

/// The [`Tally`] of the `(kind, name, n, first_ms, last_ms)` rows `stmt`
/// gives for `job`.
fn tally_of(stmt: &mut Statement<'_>, job: i64) -> Result<Tally, StoreError> {
    let rows = stmt
        .query_map(params![job], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(tally(rows))
}

/// `job`'s counts from its tasks and outcomes themselves (`GROUP BY`),
/// which [`tally_query`] must always equal.
pub(super) fn recount_query(conn: &Connection, job: i64) -> Result<Tally, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT 'tasks', state, count(*), NULL, NULL FROM tasks WHERE job_id = ?1 GROUP BY state \
         UNION ALL SELECT 'tasks', 'pages', count(*), NULL, NULL FROM tasks \
         WHERE job_id = ?1 AND line IS NULL \
         UNION ALL SELECT 'outcomes', class, count(*), min(finished_at_ms), max(finished_at_ms) \
         FROM outcomes WHERE job_id = ?1 GROUP BY class",
    )?;
    tally_of(&mut stmt, job)
}

/// Adds `changes` to `job`'s counts, in the caller's transaction.
pub(super) fn add_counts(
    conn: &Connection,
    job: i64,
    changes: &CountChanges,
) -> Result<(), StoreError> {
    let rows = changes.rows();
    if rows.is_empty() {
        return Ok(());
    }
    let mut upsert = conn.prepare_cached(
        "INSERT INTO job_counts (job_id, shard, kind, name, n, first_ms, last_ms) \
         VALUES (?1, 0, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (job_id, shard, kind, name) DO UPDATE SET n = n + excluded.n, \
         first_ms = coalesce(min(first_ms, excluded.first_ms), first_ms, excluded.first_ms), \
         last_ms = coalesce(max(last_ms, excluded.last_ms), last_ms, excluded.last_ms)",
    )?;
    for r in rows {
        upsert.execute(params![job, r.kind, r.name, r.n, r.first_ms, r.last_ms])?;
    }
    Ok(())
}

impl Store for SqliteStore {
    async fn find_job(&self, name: &str) -> Result<Option<Job>, StoreError> {
        let name = name.to_owned();
        self.with_conn(move |c| Ok(job_named(c, &name)?)).await
    }

    async fn open_job(
        &self,
        name: &str,
        input: &str,
        stamp: Option<&str>,
    ) -> Result<Job, StoreError> {
        let (name, input) = (name.to_owned(), input.to_owned());
        let stamp = stamp.map(str::to_owned);
        let job = self
            .with_conn(move |c| open_job_tx(c, &name, &input, stamp.as_deref()))
            .await?;
        self.forget_leases(job.id);
        Ok(job)
    }

    async fn ingest(&self, job: i64, batch: IngestBatch) -> Result<IngestReport, StoreError> {
        self.with_conn(move |c| ingest_tx(c, job, &batch)).await
    }

    async fn lease(&self, job: i64, want: Want) -> Result<Vec<LeasedTask>, StoreError> {
        let (after, limit) = (self.leased_through(job), want.limit);
        let tasks = self
            .with_conn(move |c| lease_query(c, job, after, limit))
            .await?;
        if let Some(last) = tasks.last() {
            self.lease_cursor
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(job, last.id);
        }
        Ok(tasks)
    }

    async fn record(&self, job: i64, outcomes: Vec<Outcome>) -> Result<Recorded, StoreError> {
        self.with_conn(move |c| record_tx(c, job, &outcomes)).await
    }

    async fn release(&self, job: i64) -> Result<u64, StoreError> {
        self.forget_leases(job);
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = release_leased(&tx, job)?;
            tx.commit()?;
            Ok(n as u64)
        })
        .await
    }

    async fn counts(&self, job: i64) -> Result<JobCounts, StoreError> {
        self.with_conn(move |c| Ok(tally_query(c, job)?.counts))
            .await
    }

    async fn recount(&self, job: i64) -> Result<(Tally, Tally), StoreError> {
        self.with_conn(move |c| {
            let tx = c.transaction()?;
            let kept = tally_query(&tx, job)?;
            let counted = recount_query(&tx, job)?;
            tx.commit()?;
            Ok((kept, counted))
        })
        .await
    }

    async fn resources(&self, urls: Vec<String>) -> Result<HashMap<String, Resource>, StoreError> {
        self.with_conn(move |c| resources_query(c, &urls)).await
    }

    async fn reload_job(&self, job: i64) -> Result<Job, StoreError> {
        self.with_conn(move |c| {
            Ok(c.query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                params![job],
                job_row,
            )?)
        })
        .await
    }

    async fn warc_files(&self, job: i64) -> Result<Vec<WarcFile>, StoreError> {
        self.with_conn(move |c| warc_files_query(c, job)).await
    }

    async fn add_warc_file(
        &self,
        job: i64,
        prefix: String,
        stamp: String,
    ) -> Result<WarcFile, StoreError> {
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // The serial is the row's id: unique in the database, so files
            // of two runs never share a name.
            tx.execute(
                "INSERT INTO warc_files (job_id, path) VALUES (?1, '')",
                params![job],
            )?;
            let id = tx.last_insert_rowid();
            let path = crate::warc::file_name(&prefix, &stamp, id);
            tx.execute(
                "UPDATE warc_files SET path = ?2 WHERE id = ?1",
                params![id, path],
            )?;
            tx.commit()?;
            Ok(WarcFile {
                id,
                path,
                committed_end: 0,
            })
        })
        .await
    }

    async fn warc_earlier(
        &self,
        digests: Vec<String>,
        uris: Vec<String>,
    ) -> Result<EarlierCaptures, StoreError> {
        self.with_conn(move |c| warc_earlier_query(c, &digests, &uris))
            .await
    }
}

/// Read-only access for `status` and `export`; takes no run lock.
pub struct SqliteReader {
    conn: Connection,
}

impl SqliteReader {
    /// Opens an existing database.
    ///
    /// # Errors
    /// [`StoreError::Missing`] if there is no file at `path`; database errors.
    pub fn open(path: &Path) -> Result<SqliteReader, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        Ok(SqliteReader {
            conn: connect(path)?,
        })
    }

    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }
}

impl Reader for SqliteReader {
    fn broken(&self, job: i64) -> Result<Vec<BrokenRow>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT t.id, t.url, o.class, o.status, o.message FROM outcomes o \
             JOIN tasks t ON t.id = o.task_id \
             WHERE o.job_id = ?1 AND o.class NOT IN {NOT_BROKEN_CLASSES} ORDER BY t.id"
        ))?;
        let broken = stmt
            .query_map(params![job], |r| {
                Ok((
                    r.get(0)?,
                    BrokenRow {
                        url: r.get(1)?,
                        class: r.get(2)?,
                        status: r.get(3)?,
                        message: r.get(4)?,
                        linked_from: Vec::new(),
                    },
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        if broken.is_empty() {
            return Ok(Vec::new());
        }
        // One pass over the link graph (CROSS JOIN keeps SQLite scanning
        // links, not searching them once per broken URL: links has no
        // index by target).
        let mut stmt = self.conn.prepare(&format!(
            "SELECT l.to_task, p.url FROM links l \
             CROSS JOIN outcomes o ON o.task_id = l.to_task \
             CROSS JOIN tasks p ON p.id = l.from_task \
             WHERE o.job_id = ?1 AND o.class NOT IN {NOT_BROKEN_CLASSES} \
             ORDER BY l.to_task, l.from_task"
        ))?;
        let edges = stmt
            .query_map(params![job], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(super::merge_broken(broken, edges))
    }

    fn jobs(&self) -> Result<Vec<JobSummary>, StoreError> {
        // One read transaction: every job's counts from one moment.
        let tx = self.conn.unchecked_transaction()?;
        let jobs = tx
            .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id"))?
            .query_map([], job_row)?
            .collect::<Result<Vec<_>, _>>()?;
        let summaries = jobs
            .into_iter()
            .map(|job| {
                let Tally {
                    counts, classes, ..
                } = tally_query(&tx, job.id)?;
                Ok(JobSummary {
                    job,
                    counts,
                    classes,
                })
            })
            .collect();
        tx.commit()?;
        summaries
    }

    fn job(&self, name: &str) -> Result<Job, StoreError> {
        job_named(&self.conn, name)?.ok_or_else(|| StoreError::NoSuchJob(name.to_owned()))
    }

    fn for_each_outcome<E: From<StoreError>>(
        &self,
        job: i64,
        mut each: impl FnMut(&ExportRow) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut stmt = self
            .conn
            .prepare(EXPORT_OUTCOMES)
            .map_err(StoreError::from)?;
        let mut rows = stmt.query(params![job]).map_err(StoreError::from)?;
        while let Some(r) = rows.next().map_err(StoreError::from)? {
            let row = export_row(r).map_err(StoreError::from)?;
            each(&row)?;
        }
        Ok(())
    }

    fn for_each_warc_record<E: From<StoreError>>(
        &self,
        job: i64,
        mut each: impl FnMut(&WarcRecordRow) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut stmt = self
            .conn
            .prepare(&format!("{EXPORT_WARC_RECORDS} ORDER BY r.urlkey, r.date"))
            .map_err(StoreError::from)?;
        let mut rows = stmt.query(params![job]).map_err(StoreError::from)?;
        while let Some(r) = rows.next().map_err(StoreError::from)? {
            let row = (|| {
                let kind: String = r.get(3)?;
                Ok::<_, rusqlite::Error>(WarcRecordRow {
                    urlkey: r.get(0)?,
                    date: r.get(1)?,
                    target_uri: r.get(2)?,
                    kind: crate::warc::RecordKind::parse(&kind),
                    mime: r.get(4)?,
                    status: r.get(5)?,
                    payload_digest: r.get(6)?,
                    offset: r.get(7)?,
                    length: r.get(8)?,
                    file: r.get(9)?,
                })
            })()
            .map_err(StoreError::from)?;
            each(&row)?;
        }
        Ok(())
    }

    fn for_each_item<E: From<StoreError>>(
        &self,
        job: i64,
        mut each: impl FnMut(&ItemRow) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut stmt = self.conn.prepare(EXPORT_ITEMS).map_err(StoreError::from)?;
        let mut rows = stmt.query(params![job]).map_err(StoreError::from)?;
        while let Some(r) = rows.next().map_err(StoreError::from)? {
            let row = (|| {
                Ok::<_, rusqlite::Error>(ItemRow {
                    line: r.get(0)?,
                    page: r.get(1)?,
                    url: r.get(2)?,
                    idx: r.get(3)?,
                    item: r.get(4)?,
                })
            })()
            .map_err(StoreError::from)?;
            each(&row)?;
        }
        Ok(())
    }
}

/// The job called `name`, if there is one.
pub(super) fn job_named(conn: &Connection, name: &str) -> rusqlite::Result<Option<Job>> {
    conn.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE name = ?1"),
        params![name],
        job_row,
    )
    .optional()
}

pub(super) fn export_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExportRow> {
    Ok(ExportRow {
        line: r.get(0)?,
        url: r.get(1)?,
        class: r.get(2)?,
        status: r.get(3)?,
        http_version: r.get(4)?,
        message: r.get(5)?,
        attempts: r.get(6)?,
        bytes: r.get(7)?,
        wire_bytes: r.get(8)?,
        elapsed_ms: r.get(9)?,
        ttfb_ms: r.get(10)?,
        final_url: r.get(11)?,
        content_type: r.get(12)?,
        body_sha256: r.get(13)?,
        body_path: r.get(14)?,
        headers: r.get(15)?,
        duplicate_of_line: r.get(16)?,
        started_at_ms: r.get(17)?,
        finished_at_ms: r.get(18)?,
        page: r.get(19)?,
        meta: r.get(20)?,
        extracted: r.get(21)?,
        changed: r.get(22)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse_url;

    fn url(line: u64, s: &str) -> Input {
        Input::Url {
            line,
            url: parse_url(s).expect("test URL parses"),
            meta: None,
        }
    }

    /// A reader that follows every write (`serve`, a streamed Python job)
    /// must not let the write-ahead log grow without bound.
    #[tokio::test]
    async fn the_log_stays_bounded_while_a_reader_never_pauses() -> Result<(), StoreError> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let tmp = tempfile::tempdir().map_err(|e| StoreError::Worker(e.to_string()))?;
        let dir = tmp.path();
        let db = dir.join("t.db");
        let mut store = SqliteStore::open(&db)?;
        let limit = 1 << 20;
        store.wal = Arc::new(WalBound::new(&db, limit));
        let job = store.open_job("j", "in.txt", None).await?;

        let reading = Arc::new(AtomicBool::new(true));
        let reader = {
            let reading = Arc::clone(&reading);
            let reader = SqliteReader::open(&db)?;
            std::thread::spawn(move || -> Result<u64, StoreError> {
                let mut reads = 0;
                while reading.load(Ordering::Relaxed) {
                    let _: i64 =
                        reader
                            .conn()
                            .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))?;
                    reads += 1;
                }
                Ok(reads)
            })
        };
        let wal = dir.join("t.db-wal");
        let mut largest = 0;
        let per_batch = 2000;
        for batch in 0..40u64 {
            let first = batch * per_batch + 1;
            let inputs = (first..first + per_batch)
                .map(|line| url(line, &format!("http://a.test/{line}/{}", "p".repeat(60))))
                .collect();
            let batch = IngestBatch {
                inputs,
                through_line: first + per_batch - 1,
                complete: false,
                fingerprint: None,
            };
            store.ingest(job.id, batch).await?;
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        reading.store(false, Ordering::Relaxed);
        let reads = reader
            .join()
            .map_err(|_| StoreError::Worker("the reader panicked".into()))??;
        assert!(reads > 40, "the reader kept reading ({reads} reads)");
        // One write past the limit at most: a batch here is about 1 MB.
        assert!(
            largest < 3 * limit,
            "the log reached {largest} bytes; limit {limit}"
        );
        Ok(())
    }

    #[test]
    fn migrations_are_valid() {
        assert!(migrations().validate().is_ok());
    }

    #[tokio::test]
    async fn the_run_lock_and_input_stamps_hold() -> Result<(), StoreError> {
        let tmp = tempfile::tempdir().map_err(|e| StoreError::Worker(e.to_string()))?;
        let db = tmp.path().join("t.db");
        let store = SqliteStore::open(&db)?;
        assert!(matches!(
            SqliteStore::open(&db),
            Err(StoreError::Locked { .. })
        ));

        let job = store.open_job("j", "in.txt", None).await?;
        let batch = IngestBatch {
            inputs: vec![
                url(1, "http://a.test/x"),
                Input::Invalid {
                    line: 2,
                    raw: "nope".into(),
                    reason: "line 2: not a URL".into(),
                    malformed: false,
                },
                url(3, "http://a.test/x"),
                url(4, "http://b.test/y"),
            ],
            through_line: 4,
            complete: true,
            fingerprint: Some("f4".into()),
        };
        let report = store.ingest(job.id, batch.clone()).await?;
        assert_eq!(
            report,
            IngestReport {
                pending: 2,
                invalid_url: 1,
                invalid_input: 0,
                duplicates: 1
            }
        );
        // Re-ingesting the same lines adds nothing.
        assert_eq!(store.ingest(job.id, batch).await?, IngestReport::default());

        // Reopening keeps the ingest state.
        let again = store.open_job("j", "in.txt", None).await?;
        assert_eq!(again.id, job.id);
        assert_eq!(
            (again.ingest_complete, again.input_fingerprint.as_deref()),
            (true, Some("f4"))
        );
        // Input files that changed reopen the ingest, once per change.
        let changed = store.open_job("j", "in.txt", Some("10:1")).await?;
        assert!(!changed.ingest_complete, "a new stamp reopens the ingest");
        let again = store.open_job("j", "in.txt", Some("10:1")).await?;
        assert!(!again.ingest_complete, "still open until read to the end");
        let done = IngestBatch {
            through_line: 4,
            complete: true,
            ..IngestBatch::default()
        };
        store.ingest(job.id, done).await?;
        let again = store.open_job("j", "in.txt", Some("10:1")).await?;
        assert!(again.ingest_complete, "the same stamp keeps it complete");
        assert_eq!(again.input_fingerprint.as_deref(), Some("f4"));
        assert!(matches!(
            store.open_job("j", "other.txt", None).await,
            Err(StoreError::JobInputMismatch { .. })
        ));
        Ok(())
    }
}
