//! A job's counts kept as they change: its tasks by state and its outcomes
//! by class, in the `job_counts` table, so that a job's status costs the
//! same at ten tasks as at ten million.
//!
//! Every transaction that adds a task, moves one between states or records
//! an outcome also adds its changes to `job_counts`, in the same
//! transaction, as one [`CountChanges`]. So the counts are what
//! `SELECT … GROUP BY` over `tasks` and `outcomes` would say, at every
//! commit, whatever stops the process; [`super::Store::recount`] computes
//! the latter, and the tests hold one to the other.
//!
//! A job's counts are spread over *shards* (`job_counts.shard`): each
//! PostgreSQL worker adds its changes to rows of its own, one lane each for
//! its claims, its ingest and its two record batches in flight, so that
//! neither workers side by side nor one worker's transactions wait on each
//! other's counters (`PgStore::shard`); a count is the sum over the shards
//! (at most [`SHARDS`] rows per counter). SQLite's single writer uses shard
//! 0. A shard's count can be negative: a task one worker ingested can be
//! finished by another.

use std::collections::BTreeMap;

use super::{JobCounts, Tally};

/// How many shards the counts of a job are spread over, at most.
pub(crate) const SHARDS: i32 = 16;

/// The `job_counts.kind` of the task counters.
const TASKS: &str = "tasks";
/// The `job_counts.kind` of the outcome counters (by class).
const OUTCOMES: &str = "outcomes";

/// A task counter of `job_counts` (kind `tasks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskCount {
    /// Waiting to be leased (`state = 'pending'`, no lease holder).
    Pending,
    /// Held by a run and not yet recorded.
    Leased,
    /// Recorded with a successful class.
    Done,
    /// Recorded with any other class.
    Failed,
    /// Tasks a page found, not read from the input (`line IS NULL`), in
    /// any state.
    Pages,
}

impl TaskCount {
    const ALL: [TaskCount; 5] = [
        TaskCount::Pending,
        TaskCount::Leased,
        TaskCount::Done,
        TaskCount::Failed,
        TaskCount::Pages,
    ];

    fn name(self) -> &'static str {
        match self {
            TaskCount::Pending => "pending",
            TaskCount::Leased => "leased",
            TaskCount::Done => "done",
            TaskCount::Failed => "failed",
            TaskCount::Pages => "pages",
        }
    }

    /// The counter of a task inserted in `state` (`pending`, `done` or
    /// `failed`, as the tables spell it).
    pub(crate) fn of_state(state: &str) -> TaskCount {
        match state {
            "pending" => TaskCount::Pending,
            "leased" => TaskCount::Leased,
            "done" => TaskCount::Done,
            _ => TaskCount::Failed,
        }
    }
}

/// One class's outcomes added by a transaction.
#[derive(Debug, Clone, Copy)]
struct ClassChange {
    n: i64,
    first_ms: i64,
    last_ms: i64,
}

/// The changes one transaction makes to a job's counts, added to
/// `job_counts` before it commits ([`CountChanges::rows`]).
#[derive(Debug, Default)]
pub(crate) struct CountChanges {
    tasks: [i64; 5],
    classes: BTreeMap<&'static str, ClassChange>,
}

/// One row to add to `job_counts`: `n` more of counter `name` of `kind`,
/// and for outcomes the first and last times (Unix ms) among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CountRow {
    pub kind: &'static str,
    pub name: &'static str,
    pub n: i64,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
}

impl CountChanges {
    /// `n` tasks added in `state`; `pages` when a page found them.
    pub(crate) fn added(&mut self, state: &str, n: i64, pages: bool) {
        self.tasks[TaskCount::of_state(state) as usize] += n;
        if pages {
            self.tasks[TaskCount::Pages as usize] += n;
        }
    }

    /// `n` tasks moved from `from` to `to`.
    pub(crate) fn moved(&mut self, from: TaskCount, to: TaskCount, n: i64) {
        self.tasks[from as usize] -= n;
        self.tasks[to as usize] += n;
    }

    /// `n` outcomes of `class` recorded at `at_ms` (Unix ms).
    pub(crate) fn recorded(&mut self, class: &'static str, n: i64, at_ms: i64) {
        let c = self.classes.entry(class).or_insert(ClassChange {
            n: 0,
            first_ms: at_ms,
            last_ms: at_ms,
        });
        c.n += n;
        c.first_ms = c.first_ms.min(at_ms);
        c.last_ms = c.last_ms.max(at_ms);
    }

    /// The rows to add, in one fixed order (kind, then name): transactions
    /// that take the same counters' row locks take them in the same order.
    pub(crate) fn rows(&self) -> Vec<CountRow> {
        let mut rows: Vec<CountRow> = self
            .classes
            .iter()
            .filter(|(_, c)| c.n != 0)
            .map(|(class, c)| CountRow {
                kind: OUTCOMES,
                name: class,
                n: c.n,
                first_ms: Some(c.first_ms),
                last_ms: Some(c.last_ms),
            })
            .collect();
        let mut tasks: Vec<CountRow> = TaskCount::ALL
            .iter()
            .filter(|t| self.tasks[**t as usize] != 0)
            .map(|t| CountRow {
                kind: TASKS,
                name: t.name(),
                n: self.tasks[*t as usize],
                first_ms: None,
                last_ms: None,
            })
            .collect();
        tasks.sort_by_key(|r| r.name);
        rows.extend(tasks);
        rows
    }
}

/// Reads a job's counts from the sums of its `job_counts` rows, each
/// `(kind, name, n, first_ms, last_ms)`.
pub(crate) fn tally(
    rows: impl IntoIterator<Item = (String, String, i64, Option<i64>, Option<i64>)>,
) -> Tally {
    let mut tally = Tally::default();
    let n = |n: i64| u64::try_from(n).unwrap_or(0);
    for (kind, name, sum, first, last) in rows {
        if kind == TASKS {
            let counts: &mut JobCounts = &mut tally.counts;
            match name.as_str() {
                "pending" => counts.pending = n(sum),
                "leased" => counts.leased = n(sum),
                "done" => counts.done = n(sum),
                "failed" => counts.failed = n(sum),
                "pages" => counts.pages = n(sum),
                _ => {}
            }
        } else if sum != 0 {
            tally.classes.push((name, n(sum)));
            tally.first_outcome_ms = min_some(tally.first_outcome_ms, first);
            tally.last_outcome_ms = max_some(tally.last_outcome_ms, last);
        }
    }
    tally
        .classes
        .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    tally
}

fn min_some(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_some(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// A job's counts summed over its shards, for the job bound to `$1`; the
/// same text for both databases (PostgreSQL's `sum` of `bigint` is
/// `numeric`, hence the cast).
pub(crate) const TALLY: &str = "SELECT kind, name, CAST(sum(n) AS BIGINT), min(first_ms), \
     max(last_ms) FROM job_counts WHERE job_id = $1 GROUP BY kind, name";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_come_out_in_one_order_without_zeros() {
        let mut c = CountChanges::default();
        c.added("pending", 3, false);
        c.moved(TaskCount::Pending, TaskCount::Done, 2);
        c.moved(TaskCount::Pending, TaskCount::Failed, 1);
        c.added("pending", 1, true);
        c.recorded("ok", 2, 20);
        c.recorded("ok", 1, 10);
        c.recorded("http_404", 1, 15);
        let rows = c.rows();
        let names: Vec<_> = rows.iter().map(|r| (r.kind, r.name, r.n)).collect();
        assert_eq!(
            names,
            [
                ("outcomes", "http_404", 1),
                ("outcomes", "ok", 3),
                ("tasks", "done", 2),
                ("tasks", "failed", 1),
                ("tasks", "pages", 1),
                ("tasks", "pending", 1),
            ]
        );
        assert_eq!((rows[1].first_ms, rows[1].last_ms), (Some(10), Some(20)));
    }

    #[test]
    fn a_tally_sums_and_orders_classes_by_count() {
        let t = tally([
            ("tasks".into(), "pending".into(), 5, None, None),
            ("tasks".into(), "done".into(), 7, None, None),
            ("outcomes".into(), "ok".into(), 6, Some(3), Some(9)),
            ("outcomes".into(), "duplicate".into(), 1, Some(2), Some(4)),
            ("outcomes".into(), "gone".into(), 0, Some(1), Some(1)),
        ]);
        assert_eq!((t.counts.pending, t.counts.done), (5, 7));
        assert_eq!(
            t.classes,
            [("ok".to_owned(), 6), ("duplicate".to_owned(), 1)]
        );
        assert_eq!((t.first_outcome_ms, t.last_outcome_ms), (Some(2), Some(9)));
    }
}
