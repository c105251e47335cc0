//! Managing jobs in the SQLite store, for `volley serve`: creating a job
//! with its options, pausing, cancelling and deleting it (writes, through
//! [`SqliteStore`]'s one connection), and reading jobs and outcome pages
//! (through a [`SqliteReader`], which takes no lock and does not wait for
//! the writer).

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::counts::{CountChanges, TaskCount};
use super::sqlite::{
    SqliteReader, SqliteStore, add_counts, export_row, job_named, job_row, tally_query,
};
use super::{
    Deleted, EXPORT_COLUMNS, ItemRow, JOB_COLUMNS, Job, JobRecord, JobState, OutcomeEntry,
    StoreError, outcome_page_sql, outcomes_by_id_sql, unfetched_page_sql,
};
use crate::outcome::{Class, now_ms};

impl SqliteStore {
    /// Creates the job `name` reading `input` (a description, `api`), with
    /// its fetch `options` (JSON) stored for later runs and its completion
    /// webhook `notify`.
    ///
    /// # Errors
    /// [`StoreError::JobExists`] when the name is taken; database errors.
    pub async fn create_job(
        &self,
        name: &str,
        input: &str,
        options: &str,
        notify: Option<&str>,
    ) -> Result<Job, StoreError> {
        let (name, input, options) = (name.to_owned(), input.to_owned(), options.to_owned());
        let notify = notify.map(str::to_owned);
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let added = tx.execute(
                "INSERT INTO jobs (name, input, created_at_ms, options, notify) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING",
                params![name, input, now_ms(), options, notify],
            )?;
            if added == 0 {
                return Err(StoreError::JobExists(name));
            }
            let job = job_named(&tx, &name)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            tx.commit()?;
            Ok(job)
        })
        .await
    }

    /// Sets what the owner of `job` asks for (pause or resume).
    ///
    /// # Errors
    /// Database errors.
    pub async fn set_job_state(&self, job: i64, state: JobState) -> Result<(), StoreError> {
        self.with_conn(move |c| {
            c.execute(
                "UPDATE jobs SET state = ?2 WHERE id = ?1",
                params![job, state.as_str()],
            )?;
            Ok(())
        })
        .await
    }

    /// Records how `job`'s completion webhook went (`sent`, or why not).
    ///
    /// # Errors
    /// Database errors.
    pub async fn set_notified(&self, job: i64, result: &str) -> Result<(), StoreError> {
        let result = result.to_owned();
        self.with_conn(move |c| {
            c.execute(
                "UPDATE jobs SET notified = ?2 WHERE id = ?1",
                params![job, result],
            )?;
            Ok(())
        })
        .await
    }

    /// Cancels `job`: every task without an outcome gets a `cancelled` one
    /// (so the job still ends with exactly one outcome per input), its
    /// ingest is closed, and its state becomes `cancelled`, in one
    /// transaction. No run of the job may be going. Returns the number of
    /// tasks cancelled.
    ///
    /// # Errors
    /// Database errors.
    pub async fn cancel_job(&self, job: i64) -> Result<u64, StoreError> {
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_ms();
            let n = tx.execute(
                "INSERT INTO outcomes (task_id, job_id, class, message, attempts, finished_at_ms) \
                 SELECT id, job_id, 'cancelled', 'the job was cancelled before this task was fetched', 0, ?2 \
                 FROM tasks WHERE job_id = ?1 AND state IN ('pending', 'leased')",
                params![job, now],
            )?;
            let mut changes = CountChanges::default();
            for (state, counter) in [("pending", TaskCount::Pending), ("leased", TaskCount::Leased)] {
                let moved = tx.execute(
                    "UPDATE tasks SET state = 'failed', lease_owner = NULL \
                     WHERE job_id = ?1 AND state = ?2",
                    params![job, state],
                )?;
                changes.moved(counter, TaskCount::Failed, moved as i64);
            }
            changes.recorded(Class::Cancelled.as_str(), n as i64, now);
            add_counts(&tx, job, &changes)?;
            tx.execute(
                "UPDATE jobs SET state = 'cancelled', ingest_complete = 1 WHERE id = ?1",
                params![job],
            )?;
            tx.commit()?;
            Ok(n as u64)
        })
        .await
    }

    /// Deletes `job` and all its rows (tasks, outcomes, attempts, items, links),
    /// in one transaction; returns how many of each went. No run of the
    /// job may be going.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delete_job(&self, job: i64) -> Result<Deleted, StoreError> {
        self.with_conn(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut n = [0u64; 8];
            for (i, sql) in [
                "DELETE FROM links WHERE from_task IN (SELECT id FROM tasks WHERE job_id = ?1)",
                "DELETE FROM crawl_counts WHERE job_id = ?1",
                "DELETE FROM attempts WHERE task_id IN (SELECT id FROM tasks WHERE job_id = ?1)",
                "DELETE FROM items WHERE task_id IN (SELECT id FROM tasks WHERE job_id = ?1)",
                "DELETE FROM outcomes WHERE job_id = ?1",
                "DELETE FROM tasks WHERE job_id = ?1",
                "DELETE FROM job_counts WHERE job_id = ?1",
                "DELETE FROM jobs WHERE id = ?1",
            ]
            .into_iter()
            .enumerate()
            {
                n[i] = tx.execute(sql, params![job])? as u64;
            }
            tx.commit()?;
            Ok(Deleted {
                items: n[3],
                outcomes: n[4],
                tasks: n[5],
            })
        })
        .await
    }
}

impl SqliteReader {
    /// Every job (or the one named `only`) with its counts, classes, state
    /// and options, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub fn job_records(&self, only: Option<&str>) -> Result<Vec<JobRecord>, StoreError> {
        // One read transaction: every job's counts from one moment.
        let tx = self.conn().unchecked_transaction()?;
        let jobs = tx
            .prepare_cached(&format!(
                "SELECT {JOB_COLUMNS}, state, options, created_at_ms, notify, notified FROM jobs \
                 WHERE ?1 IS NULL OR name = ?1 ORDER BY id"
            ))?
            .query_map(params![only], |r| {
                Ok((
                    job_row(r)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, i64>(8)?,
                    r.get::<_, Option<String>>(9)?,
                    r.get::<_, Option<String>>(10)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let records = jobs
            .into_iter()
            .map(|(job, state, options, created_at_ms, notify, notified)| {
                let tally = tally_query(&tx, job.id)?;
                Ok(JobRecord::new(
                    job,
                    tally,
                    JobState::parse(&state),
                    options,
                    created_at_ms,
                    notify,
                    notified,
                ))
            })
            .collect();
        tx.commit()?;
        records
    }

    /// The job named `name` with its counts.
    ///
    /// # Errors
    /// [`StoreError::NoSuchJob`]; database errors.
    pub fn job_record(&self, name: &str) -> Result<JobRecord, StoreError> {
        self.job_records(Some(name))?
            .pop()
            .ok_or_else(|| StoreError::NoSuchJob(name.to_owned()))
    }

    /// Up to `limit` outcomes of `job` after task id `after`, in task
    /// (input) order, only those of `class` if given: one keyset page.
    ///
    /// # Errors
    /// Database errors.
    pub fn outcome_page(
        &self,
        job: i64,
        after: i64,
        class: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutcomeEntry>, StoreError> {
        let sql = outcome_page_sql(false);
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![job, after, class, limit], outcome_entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` of `job`'s outcomes recorded while its input was read
    /// ([`super::UNFETCHED`]) after task id `after`, in task order.
    ///
    /// # Errors
    /// Database errors.
    pub fn unfetched_page(
        &self,
        job: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<OutcomeEntry>, StoreError> {
        let sql = unfetched_page_sql(false);
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![job, after, limit], outcome_entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The outcomes of `job`'s tasks among `ids` (those that have one), in
    /// task order.
    ///
    /// # Errors
    /// Database errors.
    pub fn outcomes_by_id(&self, job: i64, ids: &[i64]) -> Result<Vec<OutcomeEntry>, StoreError> {
        let sql = outcomes_by_id_sql(false);
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let ids = serde_json::to_string(ids).map_err(|e| StoreError::Worker(e.to_string()))?;
        let rows = stmt.query_map(params![job, ids], outcome_entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` items of `job` after `(task id, idx)`, page by page.
    ///
    /// # Errors
    /// Database errors.
    pub fn item_page(
        &self,
        job: i64,
        after: (i64, u64),
        limit: usize,
    ) -> Result<Vec<(i64, ItemRow)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT t.id, t.line, t.page, t.url, i.idx, i.item FROM tasks t \
             JOIN items i ON i.task_id = t.id WHERE t.job_id = ?1 \
             AND (t.id, i.idx) > (?2, ?3) ORDER BY t.id, i.idx LIMIT ?4",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![job, after.0, after.1, limit], |r| {
            Ok((
                r.get(0)?,
                ItemRow {
                    line: r.get(1)?,
                    page: r.get(2)?,
                    url: r.get(3)?,
                    idx: r.get(4)?,
                    item: r.get(5)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether the database answers (for `/readyz`).
    ///
    /// # Errors
    /// Database errors.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn()
            .query_row("SELECT 1", [], |_| Ok(()))
            .optional()?;
        Ok(())
    }
}

impl SqliteReader {
    /// The final-attempt durations (ms) of `job`'s last `n` outcomes that
    /// made a request, newest first (for a recent p50/p95).
    ///
    /// # Errors
    /// Database errors.
    pub fn recent_latencies(&self, job: i64, n: usize) -> Result<Vec<u64>, StoreError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT elapsed_ms FROM outcomes WHERE job_id = ?1 AND elapsed_ms IS NOT NULL \
             ORDER BY task_id DESC LIMIT ?2",
        )?;
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![job, n], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// A row of [`outcome_page_sql`], [`unfetched_page_sql`] or
/// [`outcomes_by_id_sql`]: the export columns, then the task id.
fn outcome_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutcomeEntry> {
    let row = export_row(r)?;
    let task_id: i64 = r.get(EXPORT_COLUMNS)?;
    Ok(OutcomeEntry { task_id, row })
}
