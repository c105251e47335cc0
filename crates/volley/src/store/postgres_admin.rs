//! Managing jobs in the PostgreSQL store, for `volley serve`: the same
//! operations as the SQLite store's ([`super::sqlite_admin`]), async, on
//! the worker's pool.
//!
//! Several processes may work on a job while it is managed: cancelling
//! closes its tasks in one transaction (their state leaves `pending`, so an
//! outcome another worker then records for one of them is fenced and
//! dropped, as after a lost lease) and zeroes its hosts' open counts, so no
//! worker claims a host of it again.

use super::counts::{CountChanges, TaskCount, tally};
use super::postgres::{
    Lane, PgStore, add_counts, client, export_row, job_row, update_hosts_in_order,
};
use super::{
    Deleted, EXPORT_COLUMNS, ItemRow, JOB_COLUMNS, Job, JobRecord, JobState, OutcomeEntry,
    StoreError, outcome_page_sql, outcomes_by_id_sql, unfetched_page_sql,
};
use crate::outcome::{Class, now_ms};

impl PgStore {
    /// Creates the job `name` reading `input` (a description, `api`), with
    /// its fetch `options` (JSON) stored for every worker and its
    /// completion webhook `notify`.
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
        let row = client(self.pool())
            .await?
            .query_opt(
                &format!(
                    "INSERT INTO jobs (name, input, created_at_ms, options, notify) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING \
                     RETURNING {JOB_COLUMNS}"
                ),
                &[&name, &input, &now_ms(), &options, &notify],
            )
            .await?;
        match row {
            Some(row) => job_row(&row),
            None => Err(StoreError::JobExists(name.to_owned())),
        }
    }

    /// Sets what the owner of `job` asks for (pause or resume).
    ///
    /// # Errors
    /// Database errors.
    pub async fn set_job_state(&self, job: i64, state: JobState) -> Result<(), StoreError> {
        client(self.pool())
            .await?
            .execute(
                "UPDATE jobs SET state = $2 WHERE id = $1",
                &[&job, &state.as_str()],
            )
            .await?;
        Ok(())
    }

    /// Records how `job`'s completion webhook went (`sent`, or why not).
    ///
    /// # Errors
    /// Database errors.
    pub async fn set_notified(&self, job: i64, result: &str) -> Result<(), StoreError> {
        client(self.pool())
            .await?
            .execute(
                "UPDATE jobs SET notified = $2 WHERE id = $1",
                &[&job, &result],
            )
            .await?;
        Ok(())
    }

    /// Cancels `job`: every task without an outcome gets a `cancelled` one
    /// (so the job still ends with exactly one outcome per input), its
    /// ingest is closed, its hosts have nothing open, and its state becomes
    /// `cancelled`, in one transaction. Outcomes other workers record
    /// later for those tasks are fenced. Returns the tasks cancelled.
    ///
    /// # Errors
    /// Database errors.
    pub async fn cancel_job(&self, job: i64) -> Result<u64, StoreError> {
        let mut conn = client(self.pool()).await?;
        let tx = conn.transaction().await?;
        let now = now_ms();
        // The job's frontier goes, and with it every lease on its tasks.
        let row = tx
            .query_one(
                "WITH open AS ( \
                   DELETE FROM frontier WHERE job_id = $1 \
                   RETURNING task_id, lease_owner IS NOT NULL AS leased), \
                 closed AS ( \
                   UPDATE tasks SET state = 'failed' \
                   FROM open WHERE tasks.id = open.task_id RETURNING tasks.id, open.leased), \
                 cancelled AS ( \
                   INSERT INTO outcomes (task_id, job_id, class, message, attempts, finished_at_ms) \
                   SELECT id, $1, 'cancelled', \
                     'the job was cancelled before this task was fetched', 0, $2 FROM closed) \
                 SELECT count(*), count(*) FILTER (WHERE leased) FROM closed",
                &[&job, &now],
            )
            .await?;
        let (n, leased): (i64, i64) = (row.get(0), row.get(1));
        let mut changes = CountChanges::default();
        changes.moved(TaskCount::Pending, TaskCount::Failed, n - leased);
        changes.moved(TaskCount::Leased, TaskCount::Failed, leased);
        changes.recorded(Class::Cancelled.as_str(), n, now);
        add_counts(&tx, job, self.shard(Lane::Ingest), &changes).await?;
        let n = u64::try_from(n).unwrap_or(0);
        tx.execute(
            update_hosts_in_order!("open = 0, owner = NULL", ""),
            &[&job],
        )
        .await?;
        tx.execute(
            "UPDATE jobs SET state = 'cancelled', ingest_complete = true WHERE id = $1",
            &[&job],
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Deletes `job` and all its rows (tasks, outcomes, attempts, items, links,
    /// hosts), in one transaction; returns how many tasks, outcomes and
    /// items went. No run of the job may be going.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delete_job(&self, job: i64) -> Result<Deleted, StoreError> {
        let mut conn = client(self.pool()).await?;
        let tx = conn.transaction().await?;
        let mut n = [0u64; 11];
        for (i, sql) in [
            "DELETE FROM links WHERE from_task IN (SELECT id FROM tasks WHERE job_id = $1)",
            "DELETE FROM crawl_counts WHERE job_id = $1",
            "DELETE FROM attempts WHERE task_id IN (SELECT id FROM tasks WHERE job_id = $1)",
            "DELETE FROM items WHERE task_id IN (SELECT id FROM tasks WHERE job_id = $1)",
            "DELETE FROM outcomes WHERE job_id = $1",
            "DELETE FROM tasks WHERE job_id = $1",
            "DELETE FROM hosts WHERE job_id = $1",
            "DELETE FROM frontier WHERE job_id = $1",
            "DELETE FROM job_counts WHERE job_id = $1",
            "UPDATE workers SET job_id = NULL WHERE job_id = $1",
            "DELETE FROM jobs WHERE id = $1",
        ]
        .into_iter()
        .enumerate()
        {
            n[i] = tx.execute(sql, &[&job]).await?;
        }
        tx.commit().await?;
        Ok(Deleted {
            items: n[3],
            outcomes: n[4],
            tasks: n[5],
        })
    }

    /// Every job (or only the one named `only`) with its counts, state,
    /// options, webhook and outcome times, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn job_records(&self, only: Option<&str>) -> Result<Vec<JobRecord>, StoreError> {
        // One statement, so one snapshot: each job with its counts summed
        // over the shards, as arrays of (kind, name, n, first, last).
        let rows = client(self.pool())
            .await?
            .query(
                &format!(
                    "SELECT {JOB_COLUMNS}, state, options, created_at_ms, notify, notified, \
                       c.kinds, c.names, c.ns, c.firsts, c.lasts \
                     FROM jobs LEFT JOIN LATERAL ( \
                       SELECT array_agg(kind) AS kinds, array_agg(name) AS names, \
                         array_agg(n) AS ns, array_agg(f) AS firsts, array_agg(l) AS lasts \
                       FROM (SELECT kind, name, sum(n)::int8 AS n, min(first_ms) AS f, \
                               max(last_ms) AS l \
                             FROM job_counts WHERE job_id = jobs.id GROUP BY kind, name) g \
                     ) c ON true \
                     WHERE $1::text IS NULL OR name = $1 ORDER BY id"
                ),
                &[&only],
            )
            .await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let job = job_row(&row)?;
            let kinds: Vec<String> = row.try_get::<_, Option<_>>(11)?.unwrap_or_default();
            let names: Vec<String> = row.try_get::<_, Option<_>>(12)?.unwrap_or_default();
            let ns: Vec<i64> = row.try_get::<_, Option<_>>(13)?.unwrap_or_default();
            let firsts: Vec<Option<i64>> = row.try_get::<_, Option<_>>(14)?.unwrap_or_default();
            let lasts: Vec<Option<i64>> = row.try_get::<_, Option<_>>(15)?.unwrap_or_default();
            let tally = tally(
                kinds
                    .into_iter()
                    .zip(names)
                    .zip(ns)
                    .zip(firsts.into_iter().zip(lasts))
                    .map(|(((k, name), n), (f, l))| (k, name, n, f, l)),
            );
            let state: String = row.try_get(6)?;
            records.push(JobRecord::new(
                job,
                tally,
                JobState::parse(&state),
                row.try_get(7)?,
                row.try_get(8)?,
                row.try_get(9)?,
                row.try_get(10)?,
            ));
        }
        Ok(records)
    }

    /// The job named `name`, as [`PgStore::job_records`] gives it.
    ///
    /// # Errors
    /// [`StoreError::NoSuchJob`]; database errors.
    pub async fn job_record(&self, name: &str) -> Result<JobRecord, StoreError> {
        self.job_records(Some(name))
            .await?
            .pop()
            .ok_or_else(|| StoreError::NoSuchJob(name.to_owned()))
    }

    /// Up to `limit` outcomes of `job` after task id `after`, in task
    /// (input) order, only those of `class` if given: one keyset page.
    ///
    /// # Errors
    /// Database errors.
    pub async fn outcome_page(
        &self,
        job: i64,
        after: i64,
        class: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutcomeEntry>, StoreError> {
        let sql = outcome_page_sql(true);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client(self.pool())
            .await?
            .query(&sql, &[&job, &after, &class, &limit])
            .await?;
        outcome_entries(&rows)
    }

    /// Up to `limit` of `job`'s outcomes recorded while its input was read
    /// ([`super::UNFETCHED`]) after task id `after`, in task order.
    ///
    /// # Errors
    /// Database errors.
    pub async fn unfetched_page(
        &self,
        job: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<OutcomeEntry>, StoreError> {
        let sql = unfetched_page_sql(true);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client(self.pool())
            .await?
            .query(&sql, &[&job, &after, &limit])
            .await?;
        outcome_entries(&rows)
    }

    /// The outcomes of `job`'s tasks among `ids` (those that have one), in
    /// task order.
    ///
    /// # Errors
    /// Database errors.
    pub async fn outcomes_by_id(
        &self,
        job: i64,
        ids: &[i64],
    ) -> Result<Vec<OutcomeEntry>, StoreError> {
        let sql = outcomes_by_id_sql(true);
        let ids = serde_json::to_string(ids).map_err(|e| StoreError::Worker(e.to_string()))?;
        let rows = client(self.pool())
            .await?
            .query(&sql, &[&job, &ids])
            .await?;
        outcome_entries(&rows)
    }

    /// Up to `limit` items of `job` after `(task id, idx)`, page by page.
    ///
    /// # Errors
    /// Database errors.
    pub async fn item_page(
        &self,
        job: i64,
        after: (i64, u64),
        limit: usize,
    ) -> Result<Vec<(i64, ItemRow)>, StoreError> {
        let idx = i32::try_from(after.1).unwrap_or(i32::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client(self.pool())
            .await?
            .query(
                "SELECT t.id, t.line, t.page, t.url, i.idx, i.item FROM tasks t \
                 JOIN items i ON i.task_id = t.id WHERE t.job_id = $1 \
                 AND (t.id, i.idx) > ($2, $3) ORDER BY t.id, i.idx LIMIT $4",
                &[&job, &after.0, &idx, &limit],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    ItemRow {
                        line: r.try_get::<_, Option<i64>>(1)?.map(|l| l as u64),
                        page: r.try_get::<_, i32>(2)? as u32,
                        url: r.try_get(3)?,
                        idx: r.try_get::<_, i32>(4)? as u64,
                        item: r.try_get(5)?,
                    },
                ))
            })
            .collect()
    }

    /// The final-attempt durations (ms) of `job`'s last `n` outcomes that
    /// made a request, newest first (for a recent p50/p95).
    ///
    /// # Errors
    /// Database errors.
    pub async fn recent_latencies(&self, job: i64, n: usize) -> Result<Vec<u64>, StoreError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let rows = client(self.pool())
            .await?
            .query(
                "SELECT elapsed_ms FROM outcomes WHERE job_id = $1 AND elapsed_ms IS NOT NULL \
                 ORDER BY task_id DESC LIMIT $2",
                &[&job, &n],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0))
            .collect())
    }

    /// Whether the database answers (for `/readyz`).
    ///
    /// # Errors
    /// Database errors.
    pub async fn ping(&self) -> Result<(), StoreError> {
        client(self.pool())
            .await?
            .query_one("SELECT 1", &[])
            .await?;
        Ok(())
    }
}

/// Rows of [`outcome_page_sql`] or [`outcomes_by_id_sql`]: the export
/// columns, then the task id.
fn outcome_entries(rows: &[tokio_postgres::Row]) -> Result<Vec<OutcomeEntry>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(OutcomeEntry {
                row: export_row(r)?,
                task_id: r.try_get(EXPORT_COLUMNS)?,
            })
        })
        .collect()
}
