//! The shared store: PostgreSQL, for several workers on one job.
//!
//! Any number of processes (`volley fetch` ingesting and working, `volley
//! work` working) may share a job. Each registers a **worker** row and
//! renews its lease on it by heartbeat ([`PgOptions::lease`]). There is no
//! run lock: leases are the whole story.
//!
//! # Host affinity
//!
//! A worker first leases **hosts** (`hosts.owner`), then claims a few tasks
//! of each host it holds, so a host's tasks are fetched by one worker at a
//! time and the per-host limits, rate limits, robots.txt and `Retry-After`
//! pauses of [`crate::politeness::host`] hold for the whole cluster at no database cost
//! per request. A worker keeps a host while it has work there and gives it
//! back when it has none; a dead worker's hosts are claimable once its
//! lease has expired.
//!
//! A worker claims no more than its fair share of hosts (hosts with work /
//! live workers). When workers join later, a worker above its share that
//! is busy (its requests wait for its global concurrency) hands hosts back:
//! it claims no new tasks there and releases each host once its last task
//! is recorded, with `free_at` one interval of the slowest per-host rate
//! later, so two workers' requests never reach a host closer together than
//! its rate allows.
//!
//! # Claims and fencing
//!
//! A task still to finish has a small **frontier** row beside its `tasks`
//! row (`task_id, job_id, host, lease_owner, claim`), made in the statement
//! that makes the task. A claim sets the frontier row's `lease_owner` and
//! adds one to its `claim` (a per-claim counter, the fencing token): a CTE
//! reads the rows and their claim numbers (`WITH c AS (SELECT … LIMIT n)`),
//! so the subquery runs once and never claims more than asked, and the
//! update is a compare-and-set on the claim number read (`UPDATE … FROM c
//! WHERE claim = c.claim`), so two claims racing for a row (a takeover)
//! cannot both get it. The read takes no row lock: only a host's holder
//! claims its tasks, so races are rare, and a lock is a WAL record and a
//! heap write per task. Neither column is indexed, so a claim is a HOT
//! update of the small row and never writes `tasks`. [`Store::record`]
//! finishes a task by deleting its frontier row where `claim` is still the
//! one this worker got: a worker that stalled past its lease (its task
//! re-claimed by another) has its late outcome dropped and counted, never
//! recorded a second time. The task's own change of `state` is then a HOT
//! update too, since no index of `tasks` reads `state`.
//!
//! A task a claim left out while the host stays held (it lost a race to a
//! stalled worker, which then stopped) is below the host's claim cursor
//! (`HostHold::after`): it is claimed again once this worker holds nothing
//! there, gives the host back, and the next holder reads it from its first.
//!
//! A worker whose heartbeat has not succeeded for a whole lease stops on
//! its own ([`Store::lease_lost`]), and a heartbeat never revives an
//! expired worker row: once expired, its leases stay void.
//!
//! # A database that goes away
//!
//! A restart, a failover or a network break fails the statements in
//! flight. Each statement of a run (a lease, a record, an ingest batch, a
//! count) is tried again with backoff while the failure is one of a
//! connection ([`is_transient`]), and new connections replace the broken
//! ones; meanwhile the run goes on fetching what it holds until its
//! bounded queues fill. The retries end when the worker's lease runs out
//! (its heartbeat could not renew it: [`Store::lease_lost`]), since its
//! tasks may then be other workers'. A transaction is all or nothing, so a
//! try again cannot record twice: an outcome whose first commit did go
//! through (its answer lost with the connection) fails the fencing check
//! the second time and is counted as fenced. A claim whose answer was lost
//! is given back before the next claim (`PgStore::forget_unknown_claims`).
//!
//! # Writes
//!
//! Ingest and record are one transaction per batch, with one statement per
//! table (`unnest` of one array per column). Ingest, and a record that adds
//! pages, hold a per-job advisory lock so that duplicate and pagination-loop
//! checks see every committed task; other records run side by side (their
//! task rows are their own claims). Host counters change by increments
//! taken in host order, so concurrent batches never deadlock.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::TryStreamExt as _;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;
use tokio_util::sync::CancellationToken;

use super::counts::{CountChanges, SHARDS, TALLY, TaskCount, tally};
use super::{
    BrokenRow, EXPORT_ITEMS, EXPORT_OUTCOMES, EXPORT_WARC_RECORDS, ExportRow, IngestBatch,
    IngestReport, ItemRow, JOB_COLUMNS, Job, JobCounts, JobSummary, LeasedTask, NOT_BROKEN_CLASSES,
    RESOURCE_COLUMNS, RESOURCE_CONFLICT, Reader, Recorded, Store, StoreError, Tally, Want,
    WarcRecordRow,
};
use crate::http::refresh::Resource;
use crate::input::Input;
use crate::outcome::{Class, NextPage, Outcome, now_ms};
use crate::warc::{Earlier, EarlierCaptures, WarcFile};

/// The advisory lock (two-key form) held while migrating the schema, so
/// that workers starting together migrate once.
const MIGRATION_LOCK: (i32, i32) = (0x766f_6c6c, 1);

/// Most hosts one lease call claims.
const HOSTS_PER_CLAIM: i64 = 256;

/// How long a worker trusts its count of the fair share of hosts (hosts
/// with work / live workers) before counting again.
const FAIR_SHARE_TTL: Duration = Duration::from_secs(1);

/// Whether `db` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// `url` with its password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Settings of a [`PgStore`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// How long this worker's leases (on hosts and tasks) outlive its last
    /// successful heartbeat. Heartbeats go every third of it. Must exceed
    /// the per-attempt timeout, so a worker that lost its lease is not
    /// still fetching.
    pub lease: Duration,
    /// Connections kept open to the server.
    pub pool_size: usize,
}

impl Default for PgOptions {
    /// The lease [`lease`] gives the default per-attempt timeout, and 4
    /// connections.
    fn default() -> Self {
        let timeout = crate::options::FetchSpec::default().timeout;
        PgOptions {
            lease: timeout + LEASE_MARGIN,
            pool_size: 4,
        }
    }
}

/// How much longer than the per-attempt timeout a worker's lease lasts
/// when none is given: 30 s.
pub const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// A lease that is not longer than the per-attempt timeout: a worker that
/// lost its lease could still be fetching a task another worker took over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "--lease {} must be longer than --timeout {}, so a worker that lost its lease is no longer fetching",
    crate::options::text::duration_text(*lease),
    crate::options::text::duration_text(*timeout)
)]
pub struct LeaseTooShort {
    /// The lease.
    pub lease: Duration,
    /// The per-attempt timeout.
    pub timeout: Duration,
}

/// The lease of a worker whose attempts last at most `timeout`: `given`,
/// or `timeout` + [`LEASE_MARGIN`].
///
/// # Errors
/// [`LeaseTooShort`] when the lease is not longer than `timeout`.
pub fn lease(given: Option<Duration>, timeout: Duration) -> Result<Duration, LeaseTooShort> {
    let lease = given.unwrap_or(timeout + LEASE_MARGIN);
    if lease <= timeout {
        return Err(LeaseTooShort { lease, timeout });
    }
    Ok(lease)
}

/// `UPDATE hosts SET $set` for the hosts of job `$1` that match `$filter`
/// (SQL starting with ` AND`, or empty for all of them), taking their rows
/// in byte order (`COLLATE "C"`). Every statement that changes several
/// `hosts` rows takes them in that order ([`add_open`] sorts its rows the
/// same way), so two transactions never each hold a row the other waits
/// for.
macro_rules! update_hosts_in_order {
    ($set:literal, $filter:literal) => {
        concat!(
            "UPDATE hosts SET ",
            $set,
            " FROM (SELECT host FROM hosts WHERE job_id = $1",
            $filter,
            " ORDER BY host COLLATE \"C\" FOR UPDATE) l \
             WHERE hosts.job_id = $1 AND hosts.host = l.host"
        )
    };
}
pub(super) use update_hosts_in_order;

/// What this worker holds of one job.
#[derive(Debug, Default)]
struct Held {
    /// Task id → its lease.
    tasks: HashMap<i64, Lease>,
    /// The hosts this worker holds.
    hosts: HashMap<Arc<str>, HostHold>,
    /// Host → tasks held there that are fetched, their outcomes on their
    /// way to a commit ([`Store::fetched`]). They hold the host (it is not
    /// handed over before they commit) but not room for new claims there,
    /// so claims do not wait on commits.
    waiting: HashMap<Arc<str>, usize>,
    /// Hosts being handed back (this worker held more than its fair
    /// share): no new tasks are claimed there, and the host is released
    /// once its last task is recorded.
    draining: HashSet<Arc<str>>,
    /// This worker's fair share of the job's hosts, and when it was
    /// counted.
    fair: Option<(Instant, i64)>,
    /// The last [`Want::handover`] asked for.
    handover: Duration,
}

/// What this worker holds of one host.
#[derive(Debug, Default)]
struct HostHold {
    /// Tasks held there (claimed, not yet recorded).
    tasks: usize,
    /// The highest task id claimed there since this worker took the host.
    /// The next claim there starts after it, so it does not read again the
    /// rows this worker holds, nor the finished ones below them whose index
    /// entries are dead until vacuum. Nothing below it becomes claimable
    /// while the host is held: task ids grow in commit order (every insert
    /// of tasks holds the job's advisory lock), and claims whose answers
    /// were lost are given back before the next claim, with ids above it
    /// since this worker never saw them.
    after: i64,
}

/// One task this worker holds.
#[derive(Debug)]
struct Lease {
    host: Arc<str>,
    /// The claim number it was claimed with (the fencing token).
    claim: i64,
    /// Fetched: its outcome is on its way to a commit.
    fetched: bool,
}

impl Held {
    /// Forgets `task` once its outcome is committed (or fenced).
    fn forget(&mut self, task: i64) {
        let Some(lease) = self.tasks.remove(&task) else {
            return;
        };
        if let Some(hold) = self.hosts.get_mut(&lease.host) {
            hold.tasks = hold.tasks.saturating_sub(1);
        }
        if lease.fetched
            && let Some(n) = self.waiting.get_mut(&lease.host)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.waiting.remove(&lease.host);
            }
        }
    }

    /// Tasks claimed on `host` and not fetched yet.
    fn unfetched(&self, host: &str) -> usize {
        let held = self.hosts.get(host).map_or(0, |h| h.tasks);
        held.saturating_sub(self.waiting.get(host).copied().unwrap_or(0))
    }
}

/// Counters the heartbeat publishes in the worker row.
#[derive(Debug, Default)]
struct Counters {
    recorded: AtomicU64,
    fenced: AtomicU64,
}

struct Inner {
    pool: Pool,
    worker: i64,
    options: PgOptions,
    held: Mutex<HashMap<i64, Held>>,
    job: AtomicU64,
    counters: Counters,
    lost: CancellationToken,
    /// Record transactions begun: they take the two record lanes in turn
    /// ([`PgStore::shard`]).
    records: AtomicI64,
}

/// Count shards ([`PgStore::shard`]) each worker has.
const LANES: i64 = 4;

/// What a transaction that changes a job's counts does, which picks its
/// shard ([`PgStore::shard`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum Lane {
    /// Claims, and giving claims back.
    Claim,
    /// Ingest, and an administrator's change of a job (cancel).
    Ingest,
    /// Recording outcomes.
    Record,
}

/// The PostgreSQL [`Store`]: one worker of a possibly shared job.
pub struct PgStore {
    inner: Arc<Inner>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// A pool over `url` (a libpq-style URL).
fn pool(url: &str, size: usize) -> Result<Pool, StoreError> {
    let config = tokio_postgres::Config::from_str(url).map_err(|e| StoreError::BadUrl {
        url: redact(url),
        why: e.to_string(),
    })?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .build()
        .map_err(|e| StoreError::Pool(e.to_string()))
}

pub(super) async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, StoreError> {
    pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(e) => StoreError::Postgres(e),
        other => StoreError::Pool(other.to_string()),
    })
}

/// First wait before a statement is tried again after a connection failure;
/// it doubles up to [`RETRY_MAX`], with jitter.
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// See [`RETRY_FIRST`].
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Whether `e` is a failure of the connection rather than of the statement:
/// the server shutting down or restarting (SQLSTATE `57P01`-`57P03`), a
/// connection exception (class `08`), too many connections (`53300`), a
/// connection closed or refused (no SQLSTATE, an I/O error). The same
/// statement may work on a new connection once the server is back.
pub fn is_transient(e: &StoreError) -> bool {
    let StoreError::Postgres(e) = e else {
        return false;
    };
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
        }
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// Whether `e` rolled its transaction back only because it met another
/// one: a deadlock (SQLSTATE `40P01`) or a serialization failure (`40001`).
/// PostgreSQL undid the whole transaction, so running it again is safe.
/// volley takes the rows several transactions share (`hosts`, by host in
/// byte order) in one order, so a deadlock should not happen; this is the
/// second line of defence.
pub fn is_conflict(e: &StoreError) -> bool {
    let StoreError::Postgres(e) = e else {
        return false;
    };
    e.code()
        .is_some_and(|code| matches!(code.code(), "40P01" | "40001"))
}

/// Brings the schema of the database at `url` to `version` and no
/// further, as an older volley left it: for tests that upgrade a database
/// with work in flight. Workers always migrate to the newest version
/// ([`PgStore::connect`]).
///
/// # Errors
/// As [`PgStore::connect`].
#[doc(hidden)]
pub async fn migrate_to(
    url: &str,
    version: refinery_core::SchemaVersion,
) -> Result<(), StoreError> {
    migrate(&pool(url, 1)?, refinery_core::Target::Version(version)).await
}

/// Brings the schema to `target` (the newest version but in tests), once
/// for workers starting together.
async fn migrate(pool: &Pool, target: refinery_core::Target) -> Result<(), StoreError> {
    let mut conn = client(pool).await?;
    conn.execute(
        "SELECT pg_advisory_lock($1, $2)",
        &[&MIGRATION_LOCK.0, &MIGRATION_LOCK.1],
    )
    .await?;
    let migrations = [
        refinery_core::Migration::unapplied(
            "V1__init",
            include_str!("migrations/postgres/V1__init.sql"),
        )?,
        refinery_core::Migration::unapplied(
            "V2__host_handover",
            include_str!("migrations/postgres/V2__host_handover.sql"),
        )?,
        refinery_core::Migration::unapplied(
            "V3__job_state",
            include_str!("migrations/postgres/V3__job_state.sql"),
        )?,
        refinery_core::Migration::unapplied(
            "V4__resources",
            include_str!("migrations/postgres/V4__resources.sql"),
        )?,
        refinery_core::Migration::unapplied(
            "V5__unfetched_index",
            include_str!("migrations/postgres/V5__unfetched_index.sql"),
        )?,
        refinery_core::Migration::unapplied(
            "V6__crawl",
            include_str!("migrations/postgres/V6__crawl.sql"),
        )?,
        refinery_core::Migration::unapplied(
            "V7__warc",
            include_str!("migrations/postgres/V7__warc.sql"),
        )?,
        refinery_core::Migration::unapplied(
            "V8__job_counts",
            include_str!("migrations/postgres/V8__job_counts.sql"),
        )?,
        refinery_core::Migration::unapplied(
            "V9__task_write_cost",
            include_str!("migrations/postgres/V9__task_write_cost.sql"),
        )?,
        refinery_core::Migration::unapplied(
            "V10__frontier",
            include_str!("migrations/postgres/V10__frontier.sql"),
        )?,
    ];
    let client: &mut tokio_postgres::Client = &mut conn;
    let mut runner = refinery_core::Runner::new(&migrations)
        .set_target(target)
        .set_grouped(true);
    let result = runner
        .set_migration_table_name("volley_schema_history")
        .run_async(client)
        .await;
    conn.execute(
        "SELECT pg_advisory_unlock($1, $2)",
        &[&MIGRATION_LOCK.0, &MIGRATION_LOCK.1],
    )
    .await?;
    result?;
    Ok(())
}

fn lease_ms(options: &PgOptions) -> i64 {
    i64::try_from(options.lease.as_millis()).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Connects to `url`, migrates the schema and registers this process as
    /// a worker, renewing its lease from now on.
    ///
    /// # Errors
    /// [`StoreError::BadUrl`] for a URL that does not parse;
    /// [`StoreError::Postgres`] when the server cannot be reached;
    /// [`StoreError::PgMigration`] when the schema cannot be migrated.
    pub async fn connect(url: &str, options: PgOptions) -> Result<PgStore, StoreError> {
        let pool = pool(url, options.pool_size)?;
        migrate(&pool, refinery_core::Target::Latest).await?;
        let name = format!(
            "{}:{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into()),
            std::process::id()
        );
        let worker: i64 = client(&pool)
            .await?
            .query_one(
                "INSERT INTO workers (name, lease_expires_at) \
                 VALUES ($1, now() + $2::int8 * interval '1 millisecond') RETURNING id",
                &[&name, &lease_ms(&options)],
            )
            .await?
            .get(0);
        let inner = Arc::new(Inner {
            pool,
            worker,
            options,
            held: Mutex::new(HashMap::new()),
            job: AtomicU64::new(0),
            counters: Counters::default(),
            lost: CancellationToken::new(),
            records: AtomicI64::new(0),
        });
        let heartbeat = tokio::spawn(heartbeat(Arc::clone(&inner)));
        Ok(PgStore { inner, heartbeat })
    }

    /// This worker's id (`workers.id`).
    pub fn worker_id(&self) -> i64 {
        self.inner.worker
    }

    /// Ends this worker: gives back what it holds and marks its row
    /// expired with its final counts, so `volley status` stops listing it
    /// at once and the row tells what it did.
    ///
    /// # Errors
    /// Database errors.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.heartbeat.abort();
        let jobs: Vec<i64> = self.held().keys().copied().collect();
        for job in jobs {
            self.release(job).await?;
        }
        client(&self.inner.pool)
            .await?
            .execute(
                "UPDATE workers SET lease_expires_at = least(lease_expires_at, now()), \
                 heartbeat_at = now(), tasks_held = 0, hosts_held = 0, \
                 recorded = $2, fenced = $3 WHERE id = $1",
                &[
                    &self.inner.worker,
                    &(self.inner.counters.recorded.load(Ordering::Relaxed) as i64),
                    &(self.inner.counters.fenced.load(Ordering::Relaxed) as i64),
                ],
            )
            .await?;
        Ok(())
    }

    /// One try of [`Store::ingest`].
    async fn ingest_once(&self, job: i64, batch: &IngestBatch) -> Result<IngestReport, StoreError> {
        let mut conn = client(&self.inner.pool).await?;
        let tx = conn.transaction().await?;
        execute(&tx, "SELECT pg_advisory_xact_lock($1)", &[&job]).await?;
        let urls: Vec<&str> = batch
            .inputs
            .iter()
            .filter_map(|i| match i {
                Input::Url { url, .. } => Some(url.as_str()),
                Input::Invalid { .. } => None,
            })
            .collect();
        let earlier = first_with_urls(&tx, job, &urls).await?;
        // What each input becomes: (line, url, host, state, meta), and for
        // a repeat, the earlier task (by id) or the earlier line of the batch.
        enum Dup {
            Id(i64),
            Line(i64),
        }
        let mut first_line: HashMap<&str, i64> = HashMap::new();
        let mut dup_of: HashMap<i64, Dup> = HashMap::new();
        let (mut lines, mut texts, mut hosts, mut states, mut metas) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for input in &batch.inputs {
            match input {
                Input::Invalid { line, raw, .. } => {
                    lines.push(*line as i64);
                    texts.push(raw.as_str());
                    hosts.push(None);
                    states.push("failed");
                    metas.push(None);
                }
                Input::Url { line, url, meta } => {
                    let line = *line as i64;
                    let text = url.as_str();
                    let state = if let Some(id) = earlier.get(text) {
                        dup_of.insert(line, Dup::Id(*id));
                        "done"
                    } else if let Some(first) = first_line.get(text) {
                        dup_of.insert(line, Dup::Line(*first));
                        "done"
                    } else {
                        first_line.insert(text, line);
                        "pending"
                    };
                    lines.push(line);
                    texts.push(text);
                    hosts.push(url.host_str());
                    states.push(state);
                    metas.push(meta.as_deref());
                }
            }
        }
        // A task still to fetch gets its frontier row in the same statement.
        // Lines through the job's ingest cursor are tasks already (another
        // process ingesting the same input, or this batch's own commit whose
        // answer was lost): the cursor moves in the transaction that adds
        // its lines, and this statement reads it after taking the job's
        // lock, so it sees every earlier batch. Skipping them here costs
        // less than `ON CONFLICT`, whose speculative insertion probes the
        // unique index and writes a second WAL record for every row; the
        // unique index still refuses a line added twice.
        let rows = query(
            &tx,
            "WITH t AS ( \
               INSERT INTO tasks (job_id, line, url, host, state, meta) \
               SELECT $1, u.* \
               FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[], $6::text[]) \
                 AS u(line, url, host, state, meta) \
               WHERE u.line > (SELECT ingested_lines FROM jobs WHERE id = $1) \
               RETURNING id, line, host, state), \
             f AS ( \
               INSERT INTO frontier (task_id, job_id, host) \
               SELECT id, $1, host FROM t WHERE state = 'pending') \
             SELECT id, line FROM t",
            &[&job, &lines, &texts, &hosts, &states, &metas],
        )
        .await?;
        let added: HashMap<i64, i64> = rows.iter().map(|r| (r.get(1), r.get(0))).collect();
        let mut report = IngestReport::default();
        let mut changes = CountChanges::default();
        let mut outcomes = Vec::new();
        let mut open: HashMap<&str, i64> = HashMap::new();
        for input in &batch.inputs {
            match input {
                Input::Invalid { line, reason, .. } => {
                    let Some(id) = added.get(&(*line as i64)) else {
                        continue;
                    };
                    let class = input.invalid_class().unwrap_or(Class::InvalidUrl);
                    let mut o = Outcome::new(*id, class);
                    o.message = Some(reason.clone());
                    match class {
                        Class::InvalidInput => report.invalid_input += 1,
                        _ => report.invalid_url += 1,
                    }
                    changes.added("failed", 1, false);
                    changes.recorded(class.as_str(), 1, o.finished_at_ms);
                    outcomes.push(o);
                }
                Input::Url { line, url, .. } => {
                    let line = *line as i64;
                    let Some(id) = added.get(&line) else {
                        continue;
                    };
                    match dup_of.get(&line) {
                        None => {
                            report.pending += 1;
                            changes.added("pending", 1, false);
                            *open.entry(url.host_str().unwrap_or_default()).or_default() += 1;
                        }
                        Some(dup) => {
                            let first = match dup {
                                Dup::Id(id) => Some(*id),
                                Dup::Line(l) => added.get(l).copied(),
                            };
                            let mut o = Outcome::new(*id, Class::Duplicate);
                            o.duplicate_of = first;
                            changes.added("done", 1, false);
                            changes.recorded(Class::Duplicate.as_str(), 1, o.finished_at_ms);
                            outcomes.push(o);
                            report.duplicates += 1;
                        }
                    }
                }
            }
        }
        let refs: Vec<&Outcome> = outcomes.iter().collect();
        let through = batch.through_line as i64;
        let cursor: [&(dyn ToSql + Sync); 4] =
            [&job, &through, &batch.complete, &batch.fingerprint];
        // Sent together, answered in one round trip (see `execute`).
        prepare_ahead(&tx).await?;
        tokio::try_join!(
            insert_outcomes(&tx, job, &refs),
            add_open(&tx, job, open),
            add_counts(&tx, job, self.shard(Lane::Ingest), &changes),
            execute(
                &tx,
                "UPDATE jobs SET ingested_lines = greatest(ingested_lines, $2), \
                 ingest_complete = ingest_complete OR $3, \
                 input_fingerprint = coalesce($4, input_fingerprint) WHERE id = $1",
                &cursor,
            ),
        )?;
        tx.commit().await?;
        Ok(report)
    }

    /// One try of [`Store::record`]: one transaction.
    async fn record_once(&self, job: i64, outcomes: &[Outcome]) -> Result<Recorded, StoreError> {
        let started = Instant::now();
        let mut recorded = Recorded::default();
        // Each outcome with the claim this worker holds on its task.
        let (mut mine, mut hosts_of) = (Vec::with_capacity(outcomes.len()), HashMap::new());
        {
            let held = self.held();
            let held = held.get(&job);
            for o in outcomes {
                match held.and_then(|h| h.tasks.get(&o.task_id)) {
                    Some(lease) => {
                        hosts_of.insert(o.task_id, Arc::clone(&lease.host));
                        mine.push((o, lease.claim));
                    }
                    None => recorded.fenced += 1,
                }
            }
        }
        let mut conn = client(&self.inner.pool).await?;
        let tx = conn.transaction().await?;
        // Only a batch that adds pages needs the job's lock (its loop check
        // must see every committed task). Without pages, workers commit
        // side by side, and their commits share WAL flushes: the task rows
        // are this worker's claims, and host counters change by atomic
        // increments taken in host order.
        if mine.iter().any(|(o, _)| o.leads_on()) {
            execute(&tx, "SELECT pg_advisory_xact_lock($1)", &[&job]).await?;
        }
        let ids: Vec<i64> = mine.iter().map(|(o, _)| o.task_id).collect();
        let claims: Vec<i64> = mine.iter().map(|(_, c)| *c).collect();
        let states: Vec<&str> = mine
            .iter()
            .map(|(o, _)| {
                if o.class.is_success() {
                    "done"
                } else {
                    "failed"
                }
            })
            .collect();
        // The fence: a task is finished only by the claim that leased it,
        // whose frontier row this deletes. `task_id = ANY($1)` repeats the
        // join's condition as one the primary key answers: without it the
        // planner, seeing a few hundred ids beside thousands of frontier
        // rows, read the whole frontier into a hash join for every batch
        // (12 ms of 15 at 50,000 rows, and growing with the job).
        let rows = query(
            &tx,
            "WITH f AS ( \
               DELETE FROM frontier f \
               USING unnest($1::int8[], $2::int8[], $3::text[]) AS u(id, claim, state) \
               WHERE f.task_id = ANY($1) AND f.task_id = u.id AND f.claim = u.claim \
               RETURNING f.task_id, u.state) \
             UPDATE tasks t SET state = f.state FROM f WHERE t.id = f.task_id RETURNING t.id",
            &[&ids, &claims, &states],
        )
        .await?;
        let accepted: HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
        recorded.fenced += (mine.len() - accepted.len()) as u64;
        let accepted: Vec<&Outcome> = mine
            .iter()
            .map(|(o, _)| *o)
            .filter(|o| accepted.contains(&o.task_id))
            .collect();
        // Pagination: next pages not yet in the job become tasks; one that
        // is already there is a loop and ends its chain.
        let next_urls: Vec<&str> = accepted
            .iter()
            .flat_map(|o| o.next_page.iter().chain(&o.links))
            .map(|n| n.url.as_str())
            .collect();
        let seen = first_with_urls(&tx, job, &next_urls).await?;
        let mut open: HashMap<&str, i64> = HashMap::new();
        let mut added = NewTasks::default();
        let mut noted: Vec<Outcome> = Vec::new();
        let mut plain: Vec<&Outcome> = Vec::new();
        let mut counts = if accepted.iter().any(|o| o.caps.any() && !o.links.is_empty()) {
            crawl_counts(&tx, job, &accepted).await?
        } else {
            HashMap::new()
        };
        let mut counted = false;
        for o in &accepted {
            if let Some(host) = hosts_of.get(&o.task_id) {
                *open.entry(host).or_default() -= 1;
            }
            let mut notes: Vec<String> = Vec::new();
            // A crawl's links: each URL once per job, whatever page names
            // it (the first to commit wins; a link already there is no
            // loop), within the page caps.
            let mut skipped = 0u64;
            for link in &o.links {
                let fresh =
                    !seen.contains_key(&link.url) && !added.urls.contains(link.url.as_str());
                if fresh && o.caps.any() {
                    if !o.caps.admit(&mut counts, &link.host) {
                        skipped += 1;
                        continue;
                    }
                    counted = true;
                }
                added.add(link, o.task_id, &seen, &mut open);
            }
            if skipped > 0 {
                notes.push(o.caps.note(skipped));
            }
            if let Some(next) = &o.next_page
                && !added.add(next, o.task_id, &seen, &mut open)
            {
                notes.push(format!(
                    "pagination stopped: the next page {} was already in this job (a loop)",
                    next.url
                ));
            }
            if notes.is_empty() {
                plain.push(o);
                continue;
            }
            let note = notes.join("; ");
            let mut o = (*o).clone();
            o.message = Some(match o.message.take() {
                Some(m) => format!("{m}; {note}"),
                None => note,
            });
            noted.push(o);
        }
        if counted {
            let (hosts, pages): (Vec<&str>, Vec<i64>) = counts
                .iter()
                .map(|(h, n)| (h.as_str(), i64::try_from(*n).unwrap_or(i64::MAX)))
                .unzip();
            execute(
                &tx,
                "INSERT INTO crawl_counts (job_id, host, pages) \
                 SELECT $1, * FROM unnest($2::text[], $3::int8[]) \
                 ON CONFLICT (job_id, host) DO UPDATE SET pages = excluded.pages",
                &[&job, &hosts, &pages],
            )
            .await?;
        }
        let mut ids: HashMap<String, i64> = HashMap::new();
        if !added.url.is_empty() {
            let rows = query(
                &tx,
                "WITH t AS ( \
                   INSERT INTO tasks (job_id, url, host, parent_id, page, seed_id, meta) \
                   SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int8[], $5::int4[], \
                                            $6::int8[], $7::text[]) \
                   RETURNING id, url, host), \
                 f AS (INSERT INTO frontier (task_id, job_id, host) SELECT id, $1, host FROM t) \
                 SELECT id, url FROM t",
                &[
                    &job,
                    &added.url,
                    &added.host,
                    &added.parent,
                    &added.page,
                    &added.seed,
                    &added.meta,
                ],
            )
            .await?;
            ids = rows.into_iter().map(|r| (r.get(1), r.get(0))).collect();
        }
        // The link graph: an edge for each link of each page.
        let (mut from, mut to): (Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new());
        for o in &accepted {
            for link in &o.links {
                if let Some(id) = seen.get(&link.url).or_else(|| ids.get(&link.url)) {
                    from.push(o.task_id);
                    to.push(*id);
                }
            }
        }
        if !from.is_empty() {
            execute(
                &tx,
                "INSERT INTO links (from_task, to_task) \
                 SELECT * FROM unnest($1::int8[], $2::int8[]) ON CONFLICT DO NOTHING",
                &[&from, &to],
            )
            .await?;
        }
        plain.extend(noted.iter());
        // Each accepted task was leased: its claim matched, and only a
        // claim sets the claim number with an owner (giving a task back
        // moves its claim on).
        let mut changes = CountChanges::default();
        for o in &accepted {
            let to = if o.class.is_success() {
                TaskCount::Done
            } else {
                TaskCount::Failed
            };
            changes.moved(TaskCount::Leased, to, 1);
            changes.recorded(o.class.as_str(), 1, o.finished_at_ms);
        }
        changes.added("pending", added.url.len() as i64, true);
        // Sent together, answered in one round trip (see `execute`).
        prepare_ahead(&tx).await?;
        tokio::try_join!(
            insert_outcomes(&tx, job, &plain),
            upsert_resources(&tx, &plain),
            add_open(&tx, job, open),
            add_counts(&tx, job, self.shard(Lane::Record), &changes),
        )?;
        tx.commit().await?;
        recorded.outcomes = accepted.len() as u64;
        recorded.pages = added.url.len() as u64;
        {
            let mut held = self.held();
            let held = held.entry(job).or_default();
            for o in outcomes {
                held.forget(o.task_id);
            }
        }
        tracing::debug!(outcomes = outcomes.len(), elapsed = ?started.elapsed(), "record");
        let counters = &self.inner.counters;
        counters
            .recorded
            .fetch_add(recorded.outcomes, Ordering::Relaxed);
        counters
            .fenced
            .fetch_add(recorded.fenced, Ordering::Relaxed);
        if recorded.fenced > 0 {
            tracing::warn!(
                fenced = recorded.fenced,
                "dropped outcomes of tasks this worker no longer held (its lease had expired and another worker claimed them)"
            );
        }
        Ok(recorded)
    }

    /// Runs `op` (one statement or transaction) and, while it fails for
    /// the connection ([`is_transient`]), runs it again after a backoff,
    /// until it works or this worker's lease is lost. `op` gets the number
    /// of failed tries so far.
    ///
    /// # Errors
    /// The first error that is not transient; the last one once the lease
    /// is lost.
    async fn retrying<T, F>(
        &self,
        what: &'static str,
        mut op: impl FnMut(u32) -> F,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        let mut failed = 0u32;
        let mut since = None;
        let mut delay = RETRY_FIRST;
        loop {
            match op(failed).await {
                Err(e) if is_conflict(&e) && !self.inner.lost.is_cancelled() => {
                    failed += 1;
                    tracing::info!(what, error = %e, "rolled back by a conflict with another transaction; trying again");
                }
                Err(e) if is_transient(&e) && !self.inner.lost.is_cancelled() => {
                    let first: Instant = *since.get_or_insert_with(Instant::now);
                    if failed == 0 {
                        tracing::warn!(what, error = %e, "PostgreSQL unreachable; trying again until it is back or this worker's lease runs out");
                    }
                    failed += 1;
                    let wait = delay.mul_f64(0.5 + fastrand::f64() / 2.0);
                    tokio::select! {
                        () = self.inner.lost.cancelled() => return Err(e),
                        () = tokio::time::sleep(wait) => {}
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                    tracing::debug!(what, failed, since = ?first.elapsed(), "trying again");
                }
                Ok(value) => {
                    if let Some(first) = since {
                        tracing::warn!(what, after = ?first.elapsed(), failed, "PostgreSQL is back");
                    }
                    return Ok(value);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The rows of one statement, tried again as [`PgStore::retrying`] does.
    async fn rows_retrying(
        &self,
        what: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.retrying(what, |_| async {
            Ok(client(&self.inner.pool).await?.query(sql, params).await?)
        })
        .await
    }

    /// The one row of one statement, tried again as [`PgStore::retrying`]
    /// does.
    async fn row_retrying(
        &self,
        what: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, StoreError> {
        self.retrying(what, |_| async {
            Ok(client(&self.inner.pool)
                .await?
                .query_one(sql, params)
                .await?)
        })
        .await
    }

    /// Gives back the claims the database says this worker holds on `job`
    /// but that it does not know of: those of a claim statement that
    /// committed while its answer was lost with the connection. Unknown,
    /// they would be neither fetched nor given back until this worker ends.
    async fn forget_unknown_claims(&self, job: i64) -> Result<(), StoreError> {
        let (tasks, hosts): (Vec<i64>, Vec<String>) = {
            let held = self.held();
            held.get(&job).map_or_else(Default::default, |h| {
                (
                    h.tasks.keys().copied().collect(),
                    h.hosts.keys().map(|h| h.to_string()).collect(),
                )
            })
        };
        let mut conn = client(&self.inner.pool).await?;
        let tx = conn.transaction().await?;
        let tasks_back = execute(
            &tx,
            "UPDATE frontier SET lease_owner = NULL, claim = claim + 1 \
                 WHERE job_id = $1 AND lease_owner = $2 AND NOT (task_id = ANY($3))",
            &[&job, &self.inner.worker, &tasks],
        )
        .await?;
        let mut changes = CountChanges::default();
        changes.moved(TaskCount::Leased, TaskCount::Pending, tasks_back as i64);
        add_counts(&tx, job, self.shard(Lane::Claim), &changes).await?;
        tx.commit().await?;
        let hosts_back = conn
            .execute(
                update_hosts_in_order!("owner = NULL", " AND owner = $2 AND NOT (host = ANY($3))"),
                &[&job, &self.inner.worker, &hosts],
            )
            .await?;
        if tasks_back + hosts_back > 0 {
            tracing::info!(
                tasks_back,
                hosts_back,
                "gave back claims whose answers were lost with the connection"
            );
        }
        Ok(())
    }

    /// Active jobs (not paused or cancelled through `volley serve`) with
    /// tasks still to fetch, or input still to ingest, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn unfinished_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let rows = client(&self.inner.pool)
            .await?
            .query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs j WHERE j.state = 'active' \
                     AND (NOT j.ingest_complete \
                       OR EXISTS (SELECT 1 FROM hosts h WHERE h.job_id = j.id AND h.open > 0)) \
                     ORDER BY id"
                ),
                &[],
            )
            .await?;
        rows.iter().map(job_row).collect()
    }

    /// The connection pool (for [`super::postgres_admin`]).
    pub(super) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The job called `name`.
    ///
    /// # Errors
    /// [`StoreError::NoSuchJob`]; database errors.
    pub async fn job(&self, name: &str) -> Result<Job, StoreError> {
        find_job(&self.inner.pool, name).await
    }

    /// Stores `options` (the JSON of a [`crate::FetchSpec`]) as `job`'s
    /// options, unless it has some already: a job keeps the options it was
    /// created with, so every worker applies the same ones.
    ///
    /// # Errors
    /// Database errors.
    pub async fn keep_options(&self, job: i64, options: &str) -> Result<(), StoreError> {
        client(&self.inner.pool)
            .await?
            .execute(
                "UPDATE jobs SET options = $2 WHERE id = $1 AND options IS NULL",
                &[&job, &options],
            )
            .await?;
        Ok(())
    }

    /// The options `job` was created with (see [`PgStore::keep_options`]).
    ///
    /// # Errors
    /// Database errors.
    pub async fn job_options(&self, job: i64) -> Result<Option<String>, StoreError> {
        Ok(client(&self.inner.pool)
            .await?
            .query_one("SELECT options FROM jobs WHERE id = $1", &[&job])
            .await?
            .get(0))
    }

    /// The shard of the jobs' counts (`job_counts.shard`) that a
    /// transaction of this worker adds to: one of [`LANES`] of the
    /// worker's own, by what the transaction does, so that its
    /// transactions in flight together (a claim, an ingest batch, two
    /// record batches) never wait on each other's counter rows, which each
    /// would hold until its commit came back, a round trip later. Workers
    /// side by side take other lanes (up to `SHARDS / LANES` workers
    /// without sharing one).
    pub(super) fn shard(&self, lane: Lane) -> i32 {
        let lane = match lane {
            Lane::Claim => 0,
            Lane::Ingest => 1,
            Lane::Record => 2 + self.inner.records.fetch_add(1, Ordering::Relaxed) % 2,
        };
        // In 0..SHARDS, so the cast cannot truncate.
        (self.inner.worker * LANES + lane).rem_euclid(i64::from(SHARDS)) as i32
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Held>> {
        self.inner
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims tasks of `job` on `hosts`, as many as each host has room for,
    /// `limit` in all; none while the job is paused or cancelled (`volley
    /// serve`), so a pause reaches every worker.
    async fn claim_tasks(
        &self,
        job: i64,
        hosts: &[(Arc<str>, i64)],
        limit: usize,
    ) -> Result<Vec<LeasedTask>, StoreError> {
        if hosts.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = hosts.iter().map(|(h, _)| &**h).collect();
        let rooms: Vec<i64> = hosts.iter().map(|(_, r)| *r).collect();
        let after: Vec<i64> = {
            let held = self.held();
            let held = held.get(&job);
            hosts
                .iter()
                .map(|(h, _)| {
                    held.and_then(|held| held.hosts.get(h))
                        .map_or(0, |h| h.after)
                })
                .collect()
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .retrying("claim tasks", |failed| {
                self.claim_tasks_once(job, (&names, &rooms, &after), limit, failed)
            })
            .await?;
        let mut tasks = Vec::with_capacity(rows.len());
        let mut held = self.held();
        let held = held.entry(job).or_default();
        for row in rows {
            let id: i64 = row.get(0);
            let host: String = row.get(4);
            let host: Arc<str> = match held.hosts.get_key_value(host.as_str()) {
                Some((k, _)) => Arc::clone(k),
                None => host.into(),
            };
            let hold = held.hosts.entry(Arc::clone(&host)).or_default();
            hold.tasks += 1;
            hold.after = hold.after.max(id);
            held.tasks.insert(
                id,
                Lease {
                    host,
                    claim: row.get(5),
                    fetched: false,
                },
            );
            tasks.push(LeasedTask {
                id,
                line: row.get::<_, Option<i64>>(1).map(|l| l as u64),
                url: row.get(2),
                page: u32::try_from(row.get::<_, i32>(3)).unwrap_or(1),
                seed: row
                    .get::<_, Option<i64>>(6)
                    .zip(row.get::<_, Option<String>>(7)),
            });
        }
        tasks.sort_by_key(|t| t.id);
        Ok(tasks)
    }

    /// One try of the claim statement of [`PgStore::claim_tasks`] on
    /// `(hosts, rooms, after)`: each host's room, and the task id its claim
    /// starts after ([`HostHold::after`]). After a failed try, first gives back
    /// claims whose answers were lost.
    async fn claim_tasks_once(
        &self,
        job: i64,
        (names, rooms, after): (&[&str], &[i64], &[i64]),
        limit: i64,
        failed: u32,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        if failed > 0 {
            self.forget_unknown_claims(job).await?;
        }
        let conn = client(&self.inner.pool).await?;
        let stmt = conn
            .prepare_cached(
                // Tasks of a dead worker are taken over (its leased count
                // moves to no one); fresh ones move from pending to leased,
                // counted in this statement's own transaction. The update
                // is a compare-and-set on the claim number read: a row
                // another claim changed in between (a takeover racing this
                // worker) fails it and is left out, so each claim number
                // goes to one claimer and each move is counted once. Only
                // the host's holder claims there, so such races are rare,
                // and the read takes no row lock: a lock costs a WAL record
                // and a heap write per task.
                "WITH c AS ( \
                   SELECT f.task_id, f.claim, f.fresh \
                   FROM unnest($2::text[], $3::int8[], $7::int8[]) AS h(host, room, after) \
                   CROSS JOIN LATERAL ( \
                     SELECT task_id, claim, lease_owner IS NULL AS fresh FROM frontier \
                     WHERE job_id = $1 AND host = h.host AND task_id > h.after \
                       AND lease_owner IS DISTINCT FROM $4 \
                     ORDER BY task_id LIMIT h.room) f \
                   WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND state = 'active') \
                   LIMIT $5), \
                 u AS ( \
                   UPDATE frontier SET lease_owner = $4, claim = frontier.claim + 1 \
                   FROM c WHERE frontier.task_id = c.task_id AND frontier.claim = c.claim \
                   RETURNING frontier.task_id AS id, frontier.host, frontier.claim, c.fresh), \
                 k AS ( \
                   INSERT INTO job_counts (job_id, shard, kind, name, n) \
                   SELECT $1, $6, 'tasks', m.name, m.n FROM ( \
                     SELECT 'leased', count(*) FILTER (WHERE fresh) FROM u \
                     UNION ALL SELECT 'pending', -count(*) FILTER (WHERE fresh) FROM u) \
                     AS m(name, n) \
                   WHERE m.n <> 0 ORDER BY m.name \
                   ON CONFLICT (job_id, shard, kind, name) \
                   DO UPDATE SET n = job_counts.n + excluded.n) \
                 SELECT u.id, t.line, t.url, t.page, u.host, u.claim, t.seed_id, \
                   (SELECT s.url FROM tasks s WHERE s.id = t.seed_id) \
                 FROM u JOIN tasks t ON t.id = u.id",
            )
            .await?;
        Ok(conn
            .query(
                &stmt,
                &[
                    &job,
                    &names,
                    &rooms,
                    &self.inner.worker,
                    &limit,
                    &self.shard(Lane::Claim),
                    &after,
                ],
            )
            .await?)
    }

    /// This worker's fair share of `job`'s hosts: the hosts with open
    /// tasks divided among the live workers, rounded up, so that workers
    /// joining later find hosts to work on. Counted again after
    /// [`FAIR_SHARE_TTL`].
    async fn fair_share(&self, job: i64) -> Result<i64, StoreError> {
        if let Some((at, fair)) = self.held().get(&job).and_then(|h| h.fair)
            && at.elapsed() < FAIR_SHARE_TTL
        {
            return Ok(fair);
        }
        let share = self
            .row_retrying(
                "count the fair share",
                "SELECT (SELECT count(*) FROM hosts WHERE job_id = $1 AND open > 0), \
                        (SELECT count(*) FROM workers WHERE lease_expires_at > now())",
                &[&job],
            )
            .await?;
        let (open_hosts, live): (i64, i64) = (share.get(0), share.get(1));
        // Alone, a worker may hold every host, including hosts whose
        // first tasks are still being ingested.
        let fair = if live <= 1 {
            i64::MAX
        } else {
            (open_hosts + live - 1) / live
        };
        self.held().entry(job).or_default().fair = Some((Instant::now(), fair.max(1)));
        Ok(fair.max(1))
    }

    /// Claims up to `n` hosts of `job` with open tasks that no live worker
    /// holds and that their last holder has handed over (`free_at`), and no
    /// more than this worker's [`fair share`](Self::fair_share).
    async fn claim_hosts(&self, job: i64, n: i64, fair: i64) -> Result<Vec<Arc<str>>, StoreError> {
        let holding = self.held().get(&job).map_or(0, |h| h.hosts.len()) as i64;
        let n = n.min(fair - holding);
        if n <= 0 {
            return Ok(Vec::new());
        }
        let rows = self
            .retrying("claim hosts", |failed| async move {
                if failed > 0 {
                    self.forget_unknown_claims(job).await?;
                }
                let conn = client(&self.inner.pool).await?;
                let stmt = conn
                    .prepare_cached(
                        "WITH c AS ( \
                       SELECT h.host FROM hosts h \
                       WHERE h.job_id = $1 AND h.open > 0 \
                         AND EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND state = 'active') \
                         AND (h.free_at IS NULL OR h.free_at <= now()) \
                         AND (h.owner IS NULL OR NOT EXISTS ( \
                           SELECT 1 FROM workers w \
                           WHERE w.id = h.owner AND w.lease_expires_at > now())) \
                       LIMIT $3 FOR UPDATE SKIP LOCKED) \
                     UPDATE hosts SET owner = $2, free_at = NULL FROM c \
                     WHERE hosts.job_id = $1 AND hosts.host = c.host RETURNING hosts.host",
                    )
                    .await?;
                Ok(conn.query(&stmt, &[&job, &self.inner.worker, &n]).await?)
            })
            .await?;
        let hosts: Vec<Arc<str>> = rows
            .iter()
            .map(|r| Arc::from(r.get::<_, &str>(0)))
            .collect();
        let mut held = self.held();
        let held = held.entry(job).or_default();
        for host in &hosts {
            held.hosts.entry(Arc::clone(host)).or_default().after = 0;
        }
        Ok(hosts)
    }

    /// Gives back hosts of `job` where this worker holds no task; another
    /// worker may claim them once the last [`Want::handover`] has passed.
    async fn release_hosts(&self, job: i64, hosts: Vec<Arc<str>>) -> Result<(), StoreError> {
        if hosts.is_empty() {
            return Ok(());
        }
        let handover = {
            let mut held = self.held();
            let held = held.entry(job).or_default();
            for host in &hosts {
                held.hosts.remove(host);
                held.draining.remove(host);
            }
            held.handover
        };
        let names: Vec<&str> = hosts.iter().map(|h| &**h).collect();
        self.retrying("release hosts", |_| async {
            client(&self.inner.pool)
                .await?
                .execute(
                    update_hosts_in_order!(
                        "owner = NULL, free_at = now() + $4::int8 * interval '1 microsecond'",
                        " AND host = ANY($2) AND owner = $3"
                    ),
                    &[&job, &names, &self.inner.worker, &micros(handover)],
                )
                .await?;
            Ok(())
        })
        .await
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Renews this worker's lease every third of it; cancels
/// [`Inner::lost`] once the lease has run out without a renewal (the
/// database unreachable, or the process stalled), and never renews an
/// expired lease.
async fn heartbeat(inner: Arc<Inner>) {
    let every = inner.options.lease / 3;
    let mut last_ok = Instant::now();
    let mut last_recorded = 0;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let since = last_ok.elapsed();
        if since >= inner.options.lease {
            tracing::error!(
                worker = inner.worker,
                ?since,
                "this worker's lease ran out before it could be renewed; stopping"
            );
            inner.lost.cancel();
            return;
        }
        let (tasks, hosts) = {
            let held = inner
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            held.values().fold((0i32, 0i32), |(t, h), j| {
                (t + j.tasks.len() as i32, h + j.hosts.len() as i32)
            })
        };
        let recorded = inner.counters.recorded.load(Ordering::Relaxed);
        let rate = (recorded - last_recorded) as f32 / since.as_secs_f32().max(0.001);
        let job = inner.job.load(Ordering::Relaxed) as i64;
        let renewed = async {
            client(&inner.pool)
                .await?
                .execute(
                    "UPDATE workers SET heartbeat_at = now(), \
                     lease_expires_at = now() + $2::int8 * interval '1 millisecond', \
                     tasks_held = $3, hosts_held = $4, recorded = $5, fenced = $6, \
                     requests_per_s = $7, job_id = nullif($8::int8, 0) \
                     WHERE id = $1 AND lease_expires_at > now()",
                    &[
                        &inner.worker,
                        &lease_ms(&inner.options),
                        &tasks,
                        &hosts,
                        &(recorded as i64),
                        &(inner.counters.fenced.load(Ordering::Relaxed) as i64),
                        &rate,
                        &job,
                    ],
                )
                .await
                .map_err(StoreError::from)
        };
        match tokio::time::timeout(every, renewed).await {
            Ok(Ok(1)) => {
                last_ok = Instant::now();
                last_recorded = recorded;
            }
            Ok(Ok(_)) => {
                tracing::error!(
                    worker = inner.worker,
                    "this worker's lease expired before it was renewed; stopping"
                );
                inner.lost.cancel();
                return;
            }
            Ok(Err(e)) => tracing::warn!(worker = inner.worker, "heartbeat failed: {e}"),
            Err(_) => tracing::warn!(worker = inner.worker, "heartbeat timed out"),
        }
    }
}

pub(super) fn job_row(r: &tokio_postgres::Row) -> Result<Job, StoreError> {
    Ok(Job {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        input: r.try_get(2)?,
        ingested_lines: u64::try_from(r.try_get::<_, i64>(3)?).unwrap_or(0),
        ingest_complete: r.try_get(4)?,
        input_fingerprint: r.try_get(5)?,
    })
}

async fn find_job(pool: &Pool, name: &str) -> Result<Job, StoreError> {
    let row = client(pool)
        .await?
        .query_opt(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE name = $1"),
            &[&name],
        )
        .await?;
    match row {
        Some(row) => job_row(&row),
        None => Err(StoreError::NoSuchJob(name.to_owned())),
    }
}

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// Inserts `outcomes` of `job` with one statement (one array per column).
async fn insert_outcomes(tx: &Tx<'_>, job: i64, outcomes: &[&Outcome]) -> Result<(), StoreError> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn for<'o> Fn(&'o Outcome) -> Option<&'o str>| -> Vec<Option<&str>> {
        outcomes.iter().map(|o| f(o)).collect()
    };
    let task_id: Vec<i64> = outcomes.iter().map(|o| o.task_id).collect();
    let class: Vec<&str> = outcomes.iter().map(|o| o.class.as_str()).collect();
    let status: Vec<Option<i32>> = outcomes.iter().map(|o| o.status.map(i32::from)).collect();
    let http_version = col(&|o| o.http_version.as_deref());
    let message = col(&|o| o.message.as_deref());
    let attempts: Vec<i32> = outcomes
        .iter()
        .map(|o| i32::try_from(o.attempts).unwrap_or(i32::MAX))
        .collect();
    let bytes: Vec<Option<i64>> = outcomes.iter().map(|o| opt_i64(o.bytes)).collect();
    let wire: Vec<Option<i64>> = outcomes.iter().map(|o| opt_i64(o.wire_bytes)).collect();
    let elapsed: Vec<Option<i64>> = outcomes.iter().map(|o| opt_i64(o.elapsed_ms)).collect();
    let ttfb: Vec<Option<i64>> = outcomes.iter().map(|o| opt_i64(o.ttfb_ms)).collect();
    let final_url = col(&|o| o.final_url.as_deref());
    let content_type = col(&|o| o.content_type.as_deref());
    let sha = col(&|o| o.body_sha256.as_deref());
    let path = col(&|o| o.body_path.as_deref());
    let headers = col(&|o| o.headers.as_deref());
    let extracted = col(&|o| o.extracted.as_deref());
    let duplicate_of: Vec<Option<i64>> = outcomes.iter().map(|o| o.duplicate_of).collect();
    let started: Vec<Option<i64>> = outcomes.iter().map(|o| o.started_at_ms).collect();
    let finished: Vec<i64> = outcomes.iter().map(|o| o.finished_at_ms).collect();
    let changed: Vec<Option<i32>> = outcomes.iter().map(|o| o.changed.map(i32::from)).collect();
    let warc_file: Vec<Option<&str>> = outcomes
        .iter()
        .map(|o| o.warc.as_ref().map(|w| w.file.as_str()))
        .collect();
    let warc_offset: Vec<Option<i64>> = outcomes
        .iter()
        .map(|o| opt_i64(o.warc.as_ref().map(|w| w.offset)))
        .collect();
    let warc_length: Vec<Option<i64>> = outcomes
        .iter()
        .map(|o| opt_i64(o.warc.as_ref().map(|w| w.length)))
        .collect();
    let params: [&(dyn ToSql + Sync); 24] = [
        &job,
        &task_id,
        &class,
        &status,
        &http_version,
        &message,
        &attempts,
        &bytes,
        &wire,
        &elapsed,
        &ttfb,
        &final_url,
        &content_type,
        &sha,
        &path,
        &headers,
        &extracted,
        &duplicate_of,
        &started,
        &finished,
        &changed,
        &warc_file,
        &warc_offset,
        &warc_length,
    ];
    execute(
        tx,
        "INSERT INTO outcomes (job_id, task_id, class, status, http_version, message, attempts, \
         bytes, wire_bytes, elapsed_ms, ttfb_ms, final_url, content_type, body_sha256, body_path, \
         headers, extracted, duplicate_of, started_at_ms, finished_at_ms, changed, warc_file, \
         warc_offset, warc_length) \
         SELECT $1, * FROM unnest($2::int8[], $3::text[], $4::int4[], $5::text[], $6::text[], \
         $7::int4[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::text[], $13::text[], \
         $14::text[], $15::text[], $16::text[], $17::text[], $18::int8[], $19::int8[], $20::int8[], \
         $21::int4[], $22::text[], $23::int8[], $24::int8[])",
        &params,
    )
    .await?;
    insert_warc_records(tx, outcomes).await?;
    let (mut item_task, mut item_idx, mut item) = (Vec::new(), Vec::new(), Vec::new());
    let (mut a_task, mut a_attempt, mut a_class, mut a_status, mut a_message) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut a_started, mut a_elapsed, mut a_delay) = (Vec::new(), Vec::new(), Vec::new());
    for o in outcomes {
        for (idx, it) in o.items.iter().enumerate() {
            item_task.push(o.task_id);
            item_idx.push(i32::try_from(idx).unwrap_or(i32::MAX));
            item.push(it.as_str());
        }
        for r in &o.attempt_log {
            a_task.push(o.task_id);
            a_attempt.push(i32::try_from(r.attempt).unwrap_or(i32::MAX));
            a_class.push(r.class.as_str());
            a_status.push(r.status.map(i32::from));
            a_message.push(r.message.as_deref());
            a_started.push(r.started_at_ms);
            a_elapsed.push(i64::try_from(r.elapsed_ms).unwrap_or(i64::MAX));
            a_delay.push(opt_i64(r.retry_delay_ms));
        }
    }
    if !item.is_empty() {
        execute(
            tx,
            "INSERT INTO items (task_id, idx, item) \
             SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[])",
            &[&item_task, &item_idx, &item],
        )
        .await?;
    }
    if !a_task.is_empty() {
        execute(
            tx,
            "INSERT INTO attempts (task_id, attempt, class, status, message, started_at_ms, \
             elapsed_ms, retry_delay_ms) SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], \
             $4::int4[], $5::text[], $6::int8[], $7::int8[], $8::int8[])",
            &[
                &a_task, &a_attempt, &a_class, &a_status, &a_message, &a_started, &a_elapsed,
                &a_delay,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Inserts the `warc_records` of `outcomes` and moves each file's
/// committed end past them.
async fn insert_warc_records(tx: &Tx<'_>, outcomes: &[&Outcome]) -> Result<(), StoreError> {
    let placed: Vec<(&Outcome, &crate::warc::WarcPlacement)> = outcomes
        .iter()
        .filter_map(|o| o.warc.as_ref().map(|w| (*o, w)))
        .collect();
    if placed.is_empty() {
        return Ok(());
    }
    let mut ends: HashMap<i64, i64> = HashMap::new();
    let (mut task, mut file, mut offset, mut length) = (vec![], vec![], vec![], vec![]);
    let (mut kind, mut uri, mut key, mut date) = (vec![], vec![], vec![], vec![]);
    let (mut status, mut mime, mut digest, mut id, mut complete) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (o, w) in placed {
        let end = ends.entry(w.file_id).or_default();
        *end = (*end).max(i64::try_from(w.end()).unwrap_or(i64::MAX));
        for r in &w.records {
            task.push(o.task_id);
            file.push(w.file_id);
            offset.push(i64::try_from(r.offset).unwrap_or(i64::MAX));
            length.push(i64::try_from(r.length).unwrap_or(i64::MAX));
            kind.push(r.kind.as_str());
            uri.push(r.target_uri.as_str());
            key.push(r.urlkey.as_str());
            date.push(r.date.as_str());
            status.push(i32::from(r.status));
            mime.push(r.mime.as_deref());
            digest.push(r.payload_digest.as_deref());
            id.push(r.record_id.as_str());
            complete.push(r.complete);
        }
    }
    execute(
        tx,
        "INSERT INTO warc_records (task_id, file_id, offset_bytes, length_bytes, kind, target_uri, urlkey, \
         date, status, mime, payload_digest, record_id, complete) \
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::text[], \
         $6::text[], $7::text[], $8::text[], $9::int4[], $10::text[], $11::text[], $12::text[], \
         $13::bool[])",
        &[
            &task, &file, &offset, &length, &kind, &uri, &key, &date, &status, &mime, &digest,
            &id, &complete,
        ],
    )
    .await?;
    let mut pairs: Vec<(i64, i64)> = ends.into_iter().collect();
    pairs.sort_unstable();
    let (files, ends): (Vec<i64>, Vec<i64>) = pairs.into_iter().unzip();
    execute(
        tx,
        "UPDATE warc_files f SET committed_end = greatest(f.committed_end, e.end_at) \
         FROM unnest($1::int8[], $2::int8[]) AS e(id, end_at) WHERE f.id = e.id",
        &[&files, &ends],
    )
    .await?;
    Ok(())
}

/// Writes what `outcomes` say to remember of their URLs (`resources`), one
/// row per URL (the last outcome's, should a URL come twice).
async fn upsert_resources(tx: &Tx<'_>, outcomes: &[&Outcome]) -> Result<(), StoreError> {
    let mut latest: HashMap<&str, &Resource> = HashMap::new();
    for r in outcomes.iter().filter_map(|o| o.resource.as_deref()) {
        latest.insert(r.url.as_str(), r);
    }
    if latest.is_empty() {
        return Ok(());
    }
    let rows: Vec<&Resource> = latest.into_values().collect();
    let text = |f: &dyn Fn(&Resource) -> Option<&str>| -> Vec<Option<&str>> {
        rows.iter().map(|r| f(r)).collect()
    };
    let url: Vec<&str> = rows.iter().map(|r| r.url.as_str()).collect();
    let status: Vec<Option<i32>> = rows.iter().map(|r| r.status.map(i32::from)).collect();
    let etag = text(&|r| r.etag.as_deref());
    let last_modified = text(&|r| r.last_modified.as_deref());
    let sha = text(&|r| r.body_sha256.as_deref());
    let path = text(&|r| r.body_path.as_deref());
    let bytes: Vec<Option<i64>> = rows.iter().map(|r| opt_i64(r.bytes)).collect();
    let content_type = text(&|r| r.content_type.as_deref());
    let next_url = text(&|r| r.next_url.as_deref());
    let checked: Vec<i64> = rows.iter().map(|r| r.checked_at_ms).collect();
    let changed: Vec<i64> = rows.iter().map(|r| r.changed_at_ms).collect();
    let fresh: Vec<Option<i64>> = rows.iter().map(|r| r.fresh_until_ms).collect();
    let links = text(&|r| r.links.as_deref());
    execute(
        tx,
        &format!(
            "INSERT INTO resources ({RESOURCE_COLUMNS}) \
             SELECT * FROM unnest($1::text[], $2::int4[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::int8[], $8::text[], $9::text[], $10::int8[], $11::int8[], $12::int8[], \
             $13::text[]) \
             {RESOURCE_CONFLICT}"
        ),
        &[
            &url,
            &status,
            &etag,
            &last_modified,
            &sha,
            &path,
            &bytes,
            &content_type,
            &next_url,
            &checked,
            &changed,
            &fresh,
            &links,
        ],
    )
    .await?;
    Ok(())
}

/// Adds `deltas` to the open-task counts of hosts of `job`, creating rows.
async fn add_open(tx: &Tx<'_>, job: i64, deltas: HashMap<&str, i64>) -> Result<(), StoreError> {
    if deltas.is_empty() {
        return Ok(());
    }
    let mut pairs: Vec<(&str, i64)> = deltas.into_iter().filter(|(_, d)| *d != 0).collect();
    pairs.sort_unstable();
    let (hosts, counts): (Vec<&str>, Vec<i64>) = pairs.into_iter().unzip();
    execute(tx, ADD_OPEN, &[&job, &hosts, &counts]).await?;
    Ok(())
}

/// See [`add_open`].
const ADD_OPEN: &str = "INSERT INTO hosts (job_id, host, open) \
     SELECT $1, * FROM unnest($2::text[], $3::int8[]) \
     ON CONFLICT (job_id, host) DO UPDATE SET open = hosts.open + excluded.open";

/// The tasks a batch of outcomes adds (next pages, a crawl's links), each
/// URL once, column by column for one `INSERT … unnest`.
#[derive(Default)]
struct NewTasks<'a> {
    urls: HashSet<&'a str>,
    url: Vec<&'a str>,
    host: Vec<&'a str>,
    parent: Vec<i64>,
    page: Vec<i32>,
    seed: Vec<i64>,
    meta: Vec<Option<&'a str>>,
}

impl<'a> NewTasks<'a> {
    /// Adds `next`, found on task `parent`, unless the job (`seen`) or
    /// this batch already has its URL, counting it open on its host;
    /// whether it was added.
    fn add(
        &mut self,
        next: &'a NextPage,
        parent: i64,
        seen: &HashMap<String, i64>,
        open: &mut HashMap<&'a str, i64>,
    ) -> bool {
        if seen.contains_key(&next.url) || !self.urls.insert(next.url.as_str()) {
            return false;
        }
        self.url.push(next.url.as_str());
        self.host.push(next.host.as_str());
        self.parent.push(parent);
        self.page.push(i32::try_from(next.page).unwrap_or(i32::MAX));
        self.seed.push(next.seed_id);
        self.meta.push(next.meta.as_deref());
        *open.entry(next.host.as_str()).or_default() += 1;
        true
    }
}

/// The pages a crawl of `job` has added, per host of the links of
/// `outcomes` and (`""`) in all, for the page caps.
async fn crawl_counts(
    tx: &Tx<'_>,
    job: i64,
    outcomes: &[&Outcome],
) -> Result<HashMap<String, u64>, StoreError> {
    let mut hosts: Vec<&str> = outcomes
        .iter()
        .flat_map(|o| o.links.iter().map(|l| l.host.as_str()))
        .collect();
    hosts.push("");
    hosts.sort_unstable();
    hosts.dedup();
    let rows = query(
        tx,
        "SELECT host, pages FROM crawl_counts WHERE job_id = $1 AND host = ANY($2)",
        &[&job, &hosts],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
            )
        })
        .collect())
}

/// A transaction on a pooled connection.
type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// A read-only transaction that sees one moment of the database
/// (`REPEATABLE READ`): counts read in it agree with each other.
async fn snapshot(conn: &mut deadpool_postgres::Object) -> Result<Tx<'_>, StoreError> {
    Ok(conn
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

/// Runs `sql` in `tx` as a statement prepared once per connection and kept:
/// one round trip, where an unprepared statement takes two (it is parsed
/// and described first). A worker a network away from the database waits
/// for each round trip.
///
/// # Pipelined
/// Statements of one transaction whose parameters do not depend on each
/// other are run with `try_join!`: tokio-postgres sends each as its future
/// is first polled, in the order written (their statements are prepared by
/// then), and the server runs them in that order, so they cost one round
/// trip together. The order is the same everywhere rows are shared
/// (`hosts` before `job_counts`), so no two transactions take the same locks
/// in opposite orders.
async fn execute(
    tx: &Tx<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let stmt = tx.prepare_cached(sql).await?;
    Ok(tx.execute(&stmt, params).await?)
}

/// Prepares the statements a pipelined group shares rows through
/// ([`ADD_OPEN`], [`ADD_COUNTS`]) before the group is sent, so that they are
/// sent in the order written even on a connection that has not prepared
/// them yet (see [`execute`]).
async fn prepare_ahead(tx: &Tx<'_>) -> Result<(), StoreError> {
    tokio::try_join!(tx.prepare_cached(ADD_OPEN), tx.prepare_cached(ADD_COUNTS))?;
    Ok(())
}

/// Like [`execute`], returning the rows.
async fn query(
    tx: &Tx<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let stmt = tx.prepare_cached(sql).await?;
    Ok(tx.query(&stmt, params).await?)
}

/// The first task of `job` for each of `urls` (for duplicates and loops).
async fn first_with_urls(
    tx: &Tx<'_>,
    job: i64,
    urls: &[&str],
) -> Result<HashMap<String, i64>, StoreError> {
    if urls.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = query(
        tx,
        "SELECT url, min(id) FROM tasks \
             WHERE job_id = $1 AND host IS NOT NULL AND url = ANY($2) GROUP BY url",
        &[&job, &urls],
    )
    .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

impl Store for PgStore {
    async fn find_job(&self, name: &str) -> Result<Option<Job>, StoreError> {
        match self
            .retrying("find the job", |_| find_job(&self.inner.pool, name))
            .await
        {
            Ok(job) => Ok(Some(job)),
            Err(StoreError::NoSuchJob(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    const SHARED: bool = true;

    async fn resources(&self, urls: Vec<String>) -> Result<HashMap<String, Resource>, StoreError> {
        let sql = format!("SELECT {RESOURCE_COLUMNS} FROM resources WHERE url = ANY($1)");
        let rows = self.rows_retrying("read resources", &sql, &[&urls]).await?;
        rows.iter()
            .map(|r| {
                let resource = Resource {
                    url: r.try_get(0)?,
                    status: r
                        .try_get::<_, Option<i32>>(1)?
                        .and_then(|s| u16::try_from(s).ok()),
                    etag: r.try_get(2)?,
                    last_modified: r.try_get(3)?,
                    body_sha256: r.try_get(4)?,
                    body_path: r.try_get(5)?,
                    bytes: r
                        .try_get::<_, Option<i64>>(6)?
                        .and_then(|b| u64::try_from(b).ok()),
                    content_type: r.try_get(7)?,
                    next_url: r.try_get(8)?,
                    checked_at_ms: r.try_get(9)?,
                    changed_at_ms: r.try_get(10)?,
                    fresh_until_ms: r.try_get(11)?,
                    links: r.try_get(12)?,
                };
                Ok((resource.url.clone(), resource))
            })
            .collect()
    }

    async fn open_job(
        &self,
        name: &str,
        input: &str,
        stamp: Option<&str>,
    ) -> Result<Job, StoreError> {
        let mut conn = client(&self.inner.pool).await?;
        let tx = conn.transaction().await?;
        execute(
            &tx,
            "INSERT INTO jobs (name, input, created_at_ms, input_stamp) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
            &[&name, &input, &now_ms(), &stamp],
        )
        .await?;
        let row = tx
            .query_one(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE name = $1 FOR UPDATE"),
                &[&name],
            )
            .await?;
        let mut job = job_row(&row)?;
        if job.input != input {
            return Err(StoreError::JobInputMismatch {
                job: job.name,
                recorded: job.input,
                given: input.to_owned(),
            });
        }
        if let Some(stamp) = stamp {
            let reopened = execute(
                &tx,
                "UPDATE jobs SET input_stamp = $2, ingest_complete = false \
                     WHERE id = $1 AND input_stamp IS DISTINCT FROM $2",
                &[&job.id, &stamp],
            )
            .await?;
            if reopened > 0 {
                job.ingest_complete = false;
            }
        }
        tx.commit().await?;
        self.inner.job.store(job.id as u64, Ordering::Relaxed);
        Ok(job)
    }

    async fn ingest(&self, job: i64, batch: IngestBatch) -> Result<IngestReport, StoreError> {
        // Idempotent: a batch committed before its answer was lost adds
        // nothing the second time (`ON CONFLICT DO NOTHING`).
        let started = Instant::now();
        let report = self
            .retrying("ingest", |_| self.ingest_once(job, &batch))
            .await?;
        tracing::debug!(inputs = batch.inputs.len(), elapsed = ?started.elapsed(), "ingest");
        Ok(report)
    }

    async fn lease(&self, job: i64, want: Want) -> Result<Vec<LeasedTask>, StoreError> {
        if self.inner.lost.is_cancelled() {
            return Err(StoreError::LeaseLost);
        }
        self.inner.job.store(job as u64, Ordering::Relaxed);
        let started = Instant::now();
        let per_host = want.per_host.max(1);
        let fair = self.fair_share(job).await?;
        let rooms: Vec<(Arc<str>, i64)> = {
            let mut held = self.held();
            let held = held.entry(job).or_default();
            held.handover = want.handover;
            // Busy and above the fair share (workers joined since these
            // hosts were claimed): hand back the hosts with the fewest
            // tasks here.
            let keeping = held.hosts.len() - held.draining.len();
            let excess = keeping.saturating_sub(usize::try_from(fair).unwrap_or(usize::MAX));
            if want.busy && excess > 0 {
                let mut by_load: Vec<(&Arc<str>, usize)> = held
                    .hosts
                    .iter()
                    .filter(|(h, _)| !held.draining.contains(*h))
                    .map(|(h, hold)| (h, hold.tasks))
                    .collect();
                by_load.sort_by_key(|(_, n)| *n);
                let give: Vec<Arc<str>> = by_load
                    .into_iter()
                    .take(excess)
                    .map(|(h, _)| Arc::clone(h))
                    .collect();
                held.draining.extend(give);
            }
            held.hosts
                .keys()
                .map(|h| (h, held.unfetched(h)))
                .filter(|(h, n)| *n < per_host && !held.draining.contains(*h))
                .map(|(h, n)| (Arc::clone(h), (per_host - n) as i64))
                .collect()
        };
        let mut tasks = self.claim_tasks(job, &rooms, want.limit).await?;
        let mut tried: HashSet<Arc<str>> = rooms.into_iter().map(|(h, _)| h).collect();
        if tasks.len() < want.limit {
            let missing = want.limit - tasks.len();
            let n = (missing.div_ceil(per_host) as i64).clamp(1, HOSTS_PER_CLAIM);
            let hosts = self.claim_hosts(job, n, fair).await?;
            let rooms: Vec<(Arc<str>, i64)> =
                hosts.into_iter().map(|h| (h, per_host as i64)).collect();
            tasks.extend(self.claim_tasks(job, &rooms, missing).await?);
            tried.extend(rooms.into_iter().map(|(h, _)| h));
        }
        // Hosts where this worker now holds nothing had nothing to give, or
        // are being handed back: let them go, for whoever works there next.
        let idle: Vec<Arc<str>> = {
            let mut held = self.held();
            let held = held.entry(job).or_default();
            held.hosts
                .iter()
                .filter(|(h, hold)| {
                    hold.tasks == 0 && (tried.contains(*h) || held.draining.contains(*h))
                })
                .map(|(h, _)| Arc::clone(h))
                .collect()
        };
        self.release_hosts(job, idle).await?;
        tracing::debug!(asked = want.limit, got = tasks.len(), elapsed = ?started.elapsed(), "lease");
        Ok(tasks)
    }

    fn fetched(&self, job: i64, tasks: &[i64]) {
        let mut held = self.held();
        let Some(held) = held.get_mut(&job) else {
            return;
        };
        for task in tasks {
            if let Some(lease) = held.tasks.get_mut(task)
                && !lease.fetched
            {
                lease.fetched = true;
                *held.waiting.entry(Arc::clone(&lease.host)).or_default() += 1;
            }
        }
    }

    async fn record(&self, job: i64, outcomes: Vec<Outcome>) -> Result<Recorded, StoreError> {
        self.retrying("record", |_| self.record_once(job, &outcomes))
            .await
    }

    async fn release(&self, job: i64) -> Result<u64, StoreError> {
        let held = self.held().remove(&job).unwrap_or_default();
        let ids: Vec<i64> = held.tasks.keys().copied().collect();
        let handover = micros(held.handover);
        self.retrying("release", |_| async {
            let mut conn = client(&self.inner.pool).await?;
            let tx = conn.transaction().await?;
            // The claim moves on, so that no outcome of this lease is
            // accepted once the task is given back.
            let n = execute(
                &tx,
                "UPDATE frontier SET lease_owner = NULL, claim = claim + 1 \
                     WHERE task_id = ANY($1) AND lease_owner = $2",
                &[&ids, &self.inner.worker],
            )
            .await?;
            let mut changes = CountChanges::default();
            changes.moved(TaskCount::Leased, TaskCount::Pending, n as i64);
            add_counts(&tx, job, self.shard(Lane::Claim), &changes).await?;
            execute(
                &tx,
                update_hosts_in_order!(
                    "owner = NULL, free_at = now() + $3::int8 * interval '1 microsecond'",
                    " AND owner = $2"
                ),
                &[&job, &self.inner.worker, &handover],
            )
            .await?;
            tx.commit().await?;
            Ok(n)
        })
        .await
    }

    async fn counts(&self, job: i64) -> Result<JobCounts, StoreError> {
        self.retrying("count tasks", |_| async {
            Ok(tally_query(&client(&self.inner.pool).await?, job)
                .await?
                .counts)
        })
        .await
    }

    async fn recount(&self, job: i64) -> Result<(Tally, Tally), StoreError> {
        self.retrying("recount tasks", |_| async {
            let mut conn = client(&self.inner.pool).await?;
            let tx = snapshot(&mut conn).await?;
            let kept = tally_query(&tx, job).await?;
            let counted = recount_query(&tx, job).await?;
            tx.commit().await?;
            Ok((kept, counted))
        })
        .await
    }

    async fn unfinished(&self, job: i64) -> Result<u64, StoreError> {
        let row = self
            .row_retrying(
                "count unfinished tasks",
                "SELECT coalesce(sum(open), 0)::int8 FROM hosts WHERE job_id = $1 AND open > 0",
                &[&job],
            )
            .await?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    async fn warc_files(&self, job: i64) -> Result<Vec<WarcFile>, StoreError> {
        let rows = client(&self.inner.pool)
            .await?
            .query(
                "SELECT id, path, committed_end FROM warc_files WHERE job_id = $1 ORDER BY id",
                &[&job],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(WarcFile {
                    id: r.try_get(0)?,
                    path: r.try_get(1)?,
                    committed_end: u64::try_from(r.try_get::<_, i64>(2)?).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn add_warc_file(
        &self,
        job: i64,
        prefix: String,
        stamp: String,
    ) -> Result<WarcFile, StoreError> {
        let conn = client(&self.inner.pool).await?;
        // The serial is the row's id: unique in the database, so files of
        // two workers never share a name.
        let id: i64 = conn
            .query_one(
                "SELECT nextval(pg_get_serial_sequence('warc_files', 'id'))",
                &[],
            )
            .await?
            .try_get(0)?;
        let path = crate::warc::file_name(&prefix, &stamp, id);
        conn.execute(
            "INSERT INTO warc_files (id, job_id, path) VALUES ($1, $2, $3)",
            &[&id, &job, &path],
        )
        .await?;
        Ok(WarcFile {
            id,
            path,
            committed_end: 0,
        })
    }

    async fn warc_earlier(
        &self,
        digests: Vec<String>,
        uris: Vec<String>,
    ) -> Result<EarlierCaptures, StoreError> {
        let conn = client(&self.inner.pool).await?;
        let mut found = EarlierCaptures::default();
        let earlier = |r: &tokio_postgres::Row| -> Result<(String, Earlier), StoreError> {
            Ok((
                r.try_get(0)?,
                Earlier {
                    target_uri: r.try_get(1)?,
                    date: r.try_get(2)?,
                    record_id: r.try_get(3)?,
                    payload_digest: r.try_get(4)?,
                },
            ))
        };
        if !digests.is_empty() {
            let rows = conn
                .query(
                    "SELECT DISTINCT ON (payload_digest) payload_digest, target_uri, date, \
                     record_id, payload_digest FROM warc_records WHERE payload_digest = ANY($1) \
                     AND kind = 'response' AND complete ORDER BY payload_digest, id",
                    &[&digests],
                )
                .await?;
            for r in &rows {
                let (digest, e) = earlier(r)?;
                found.by_digest.insert(digest, e);
            }
        }
        if !uris.is_empty() {
            let rows = conn
                .query(
                    "SELECT l.target_uri, f.target_uri, f.date, f.record_id, f.payload_digest \
                     FROM (SELECT DISTINCT ON (target_uri) target_uri, payload_digest \
                           FROM warc_records WHERE target_uri = ANY($1) \
                           AND payload_digest IS NOT NULL ORDER BY target_uri, id DESC) l \
                     CROSS JOIN LATERAL (SELECT target_uri, date, record_id, payload_digest \
                           FROM warc_records r WHERE r.payload_digest = l.payload_digest \
                           AND r.kind = 'response' AND r.complete ORDER BY r.id LIMIT 1) f",
                    &[&uris],
                )
                .await?;
            for r in &rows {
                let (uri, e) = earlier(r)?;
                found.by_uri.insert(uri, e);
            }
        }
        Ok(found)
    }

    async fn reload_job(&self, job: i64) -> Result<Job, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        job_row(&self.row_retrying("read the job", &sql, &[&job]).await?)
    }

    fn lease_lost(&self) -> CancellationToken {
        self.inner.lost.clone()
    }
}

/// `job`'s counts as `job_counts` keeps them: constant time in the job's
/// size (a few rows per shard).
pub(super) async fn tally_query(
    conn: &impl deadpool_postgres::GenericClient,
    job: i64,
) -> Result<Tally, StoreError> {
    Ok(tally_of(&conn.query(TALLY, &[&job]).await?))
}

/// The [`Tally`] of `(kind, name, n, first_ms, last_ms)` rows.
fn tally_of(rows: &[tokio_postgres::Row]) -> Tally {
    tally(
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))),
    )
}

/// `job`'s counts from its tasks and outcomes themselves (`GROUP BY`),
/// which [`tally_query`] must always equal. A task whose frontier row has
/// an owner is leased.
pub(super) async fn recount_query(
    conn: &impl deadpool_postgres::GenericClient,
    job: i64,
) -> Result<Tally, StoreError> {
    let rows = conn
        .query(
            "SELECT 'tasks', CASE WHEN f.lease_owner IS NOT NULL THEN 'leased' ELSE t.state END, \
                    count(*), NULL::int8, NULL::int8 \
             FROM tasks t LEFT JOIN frontier f ON f.task_id = t.id WHERE t.job_id = $1 GROUP BY 2 \
             UNION ALL SELECT 'tasks', 'pages', count(*), NULL, NULL FROM tasks \
             WHERE job_id = $1 AND line IS NULL \
             UNION ALL SELECT 'outcomes', class, count(*), min(finished_at_ms), max(finished_at_ms) \
             FROM outcomes WHERE job_id = $1 GROUP BY class",
            &[&job],
        )
        .await?;
    Ok(tally_of(&rows))
}

/// Adds `changes` to `job`'s counts in `shard`, in the caller's
/// transaction: one statement, its rows in [`CountChanges::rows`]' order.
pub(super) async fn add_counts(
    tx: &Tx<'_>,
    job: i64,
    shard: i32,
    changes: &CountChanges,
) -> Result<(), StoreError> {
    let rows = changes.rows();
    if rows.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.name).collect();
    let ns: Vec<i64> = rows.iter().map(|r| r.n).collect();
    let firsts: Vec<Option<i64>> = rows.iter().map(|r| r.first_ms).collect();
    let lasts: Vec<Option<i64>> = rows.iter().map(|r| r.last_ms).collect();
    execute(
        tx,
        ADD_COUNTS,
        &[&job, &shard, &kinds, &names, &ns, &firsts, &lasts],
    )
    .await?;
    Ok(())
}

/// See [`add_counts`].
const ADD_COUNTS: &str = "INSERT INTO job_counts (job_id, shard, kind, name, n, first_ms, last_ms) \
         SELECT $1, $2, u.kind, u.name, u.n, u.first_ms, u.last_ms \
         FROM unnest($3::text[], $4::text[], $5::int8[], $6::int8[], $7::int8[]) \
         WITH ORDINALITY AS u(kind, name, n, first_ms, last_ms, i) ORDER BY u.i \
         ON CONFLICT (job_id, shard, kind, name) DO UPDATE SET n = job_counts.n + excluded.n, \
         first_ms = least(job_counts.first_ms, excluded.first_ms), \
         last_ms = greatest(job_counts.last_ms, excluded.last_ms)";

/// A live worker as `volley status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
    /// `workers.id`.
    pub id: i64,
    /// `hostname:pid`.
    pub name: String,
    /// The job it works on, by name.
    pub job: Option<String>,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_s: f64,
    /// Tasks it holds (leased, without an outcome yet).
    pub tasks_held: i32,
    /// Hosts it holds.
    pub hosts_held: i32,
    /// Outcomes it has committed.
    pub recorded: i64,
    /// Late outcomes it dropped (fenced).
    pub fenced: i64,
    /// Outcomes committed per second over its last heartbeat interval.
    pub requests_per_s: f32,
}

/// Read-only access for `volley status` and `volley export`.
///
/// Its methods block the calling thread (they run the queries on the
/// current tokio runtime with `block_in_place`), so they must be called
/// from a multi-threaded runtime's worker thread.
pub struct PgReader {
    pool: Pool,
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

impl PgReader {
    /// Connects to `url` (no migration: a database volley never wrote has
    /// no jobs).
    ///
    /// # Errors
    /// [`StoreError::BadUrl`]; [`StoreError::Postgres`] when the server
    /// cannot be reached.
    pub async fn connect(url: &str) -> Result<PgReader, StoreError> {
        let pool = pool(url, 2)?;
        let conn = client(&pool).await?;
        let exists: bool = conn
            .query_one("SELECT to_regclass('jobs') IS NOT NULL", &[])
            .await?
            .get(0);
        drop(conn);
        if !exists {
            return Err(StoreError::Missing(redact(url)));
        }
        Ok(PgReader { pool })
    }

    /// The live workers: those whose lease has not expired.
    ///
    /// # Errors
    /// Database errors.
    pub fn workers(&self) -> Result<Vec<WorkerRow>, StoreError> {
        block(async {
            let rows = client(&self.pool)
                .await?
                .query(
                    "SELECT w.id, w.name, j.name, \
                     extract(epoch FROM now() - w.heartbeat_at)::float8, w.tasks_held, \
                     w.hosts_held, w.recorded, w.fenced, w.requests_per_s \
                     FROM workers w LEFT JOIN jobs j ON j.id = w.job_id \
                     WHERE w.lease_expires_at > now() ORDER BY w.id",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| WorkerRow {
                    id: r.get(0),
                    name: r.get(1),
                    job: r.get(2),
                    heartbeat_age_s: r.get(3),
                    tasks_held: r.get(4),
                    hosts_held: r.get(5),
                    recorded: r.get(6),
                    fenced: r.get(7),
                    requests_per_s: r.get(8),
                })
                .collect())
        })
    }
}

impl Reader for PgReader {
    fn broken(&self, job: i64) -> Result<Vec<BrokenRow>, StoreError> {
        block(async {
            let conn = client(&self.pool).await?;
            let rows = conn
                .query(
                    &format!(
                        "SELECT t.id, t.url, o.class, o.status, o.message FROM outcomes o \
                         JOIN tasks t ON t.id = o.task_id \
                         WHERE o.job_id = $1 AND o.class NOT IN {NOT_BROKEN_CLASSES} \
                         ORDER BY t.id"
                    ),
                    &[&job],
                )
                .await?;
            let broken = rows
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get::<_, i64>(0)?,
                        BrokenRow {
                            url: r.try_get(1)?,
                            class: r.try_get(2)?,
                            status: r
                                .try_get::<_, Option<i32>>(3)?
                                .and_then(|s| u16::try_from(s).ok()),
                            message: r.try_get(4)?,
                            linked_from: Vec::new(),
                        },
                    ))
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
            if broken.is_empty() {
                return Ok(Vec::new());
            }
            let rows = conn
                .query(
                    &format!(
                        "SELECT l.to_task, p.url FROM links l \
                         JOIN outcomes o ON o.task_id = l.to_task \
                         JOIN tasks p ON p.id = l.from_task \
                         WHERE o.job_id = $1 AND o.class NOT IN {NOT_BROKEN_CLASSES} \
                         ORDER BY l.to_task, l.from_task"
                    ),
                    &[&job],
                )
                .await?;
            let edges = rows
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
            Ok(super::merge_broken(broken, edges))
        })
    }

    fn jobs(&self) -> Result<Vec<JobSummary>, StoreError> {
        block(async {
            let mut conn = client(&self.pool).await?;
            // One snapshot: every job's counts from one moment.
            let tx = snapshot(&mut conn).await?;
            let rows = query(
                &tx,
                &format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id"),
                &[],
            )
            .await?;
            let mut jobs = Vec::with_capacity(rows.len());
            for row in rows {
                let job = job_row(&row)?;
                let Tally {
                    counts, classes, ..
                } = tally_query(&tx, job.id).await?;
                jobs.push(JobSummary {
                    job,
                    counts,
                    classes,
                });
            }
            tx.commit().await?;
            Ok(jobs)
        })
    }

    fn job(&self, name: &str) -> Result<Job, StoreError> {
        block(find_job(&self.pool, name))
    }

    fn for_each_outcome<E: From<StoreError>>(
        &self,
        job: i64,
        mut each: impl FnMut(&ExportRow) -> Result<(), E>,
    ) -> Result<(), E> {
        block(async {
            let conn = client(&self.pool).await?;
            let stream = conn
                .query_raw(EXPORT_OUTCOMES, [job])
                .await
                .map_err(StoreError::from)?;
            futures_util::pin_mut!(stream);
            while let Some(r) = stream.try_next().await.map_err(StoreError::from)? {
                let row = export_row(&r).map_err(StoreError::from)?;
                each(&row)?;
            }
            Ok(())
        })
    }

    fn for_each_warc_record<E: From<StoreError>>(
        &self,
        job: i64,
        mut each: impl FnMut(&WarcRecordRow) -> Result<(), E>,
    ) -> Result<(), E> {
        block(async {
            let conn = client(&self.pool).await?;
            // Byte order, whatever the database's collation.
            let sql = format!(
                "{EXPORT_WARC_RECORDS} ORDER BY r.urlkey COLLATE \"C\", r.date COLLATE \"C\""
            );
            let stream = conn
                .query_raw(&sql, [job])
                .await
                .map_err(StoreError::from)?;
            futures_util::pin_mut!(stream);
            while let Some(r) = stream.try_next().await.map_err(StoreError::from)? {
                let row = (|| {
                    let kind: String = r.try_get(3)?;
                    let n = |v: i64| u64::try_from(v).unwrap_or(0);
                    Ok::<_, tokio_postgres::Error>(WarcRecordRow {
                        urlkey: r.try_get(0)?,
                        date: r.try_get(1)?,
                        target_uri: r.try_get(2)?,
                        kind: crate::warc::RecordKind::parse(&kind),
                        mime: r.try_get(4)?,
                        status: r
                            .try_get::<_, Option<i32>>(5)?
                            .and_then(|s| u16::try_from(s).ok()),
                        payload_digest: r.try_get(6)?,
                        offset: n(r.try_get(7)?),
                        length: n(r.try_get(8)?),
                        file: r.try_get(9)?,
                    })
                })()
                .map_err(StoreError::from)?;
                each(&row)?;
            }
            Ok(())
        })
    }

    fn for_each_item<E: From<StoreError>>(
        &self,
        job: i64,
        mut each: impl FnMut(&ItemRow) -> Result<(), E>,
    ) -> Result<(), E> {
        block(async {
            let conn = client(&self.pool).await?;
            let stream = conn
                .query_raw(EXPORT_ITEMS, [job])
                .await
                .map_err(StoreError::from)?;
            futures_util::pin_mut!(stream);
            while let Some(r) = stream.try_next().await.map_err(StoreError::from)? {
                let row = ItemRow {
                    line: r
                        .try_get::<_, Option<i64>>(0)
                        .map_err(StoreError::from)?
                        .map(|l| l as u64),
                    page: r.try_get::<_, i32>(1).map_err(StoreError::from)? as u32,
                    url: r.try_get(2).map_err(StoreError::from)?,
                    idx: r.try_get::<_, i32>(3).map_err(StoreError::from)? as u64,
                    item: r.try_get(4).map_err(StoreError::from)?,
                };
                each(&row)?;
            }
            Ok(())
        })
    }
}

pub(super) fn export_row(r: &tokio_postgres::Row) -> Result<ExportRow, tokio_postgres::Error> {
    let u = |v: Option<i64>| v.map(|v| v as u64);
    Ok(ExportRow {
        line: u(r.try_get(0)?),
        url: r.try_get(1)?,
        class: r.try_get(2)?,
        status: r.try_get::<_, Option<i32>>(3)?.map(|s| s as u16),
        http_version: r.try_get(4)?,
        message: r.try_get(5)?,
        attempts: r.try_get::<_, i32>(6)? as u32,
        bytes: u(r.try_get(7)?),
        wire_bytes: u(r.try_get(8)?),
        elapsed_ms: u(r.try_get(9)?),
        ttfb_ms: u(r.try_get(10)?),
        final_url: r.try_get(11)?,
        content_type: r.try_get(12)?,
        body_sha256: r.try_get(13)?,
        body_path: r.try_get(14)?,
        headers: r.try_get(15)?,
        duplicate_of_line: u(r.try_get(16)?),
        started_at_ms: r.try_get(17)?,
        finished_at_ms: r.try_get(18)?,
        page: r.try_get::<_, i32>(19)? as u32,
        meta: r.try_get(20)?,
        extracted: r.try_get(21)?,
        changed: r.try_get::<_, Option<i32>>(22)?.map(|c| c != 0),
    })
}
