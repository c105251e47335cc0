//! Numbers about a run: live counters for progress displays, and the final
//! [`RunReport`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::outcome::{Class, Outcome};
use crate::store::JobCounts;

/// Hosts counted individually in a run's report. When more are seen, the
/// half with the fewest outcomes is dropped, so memory stays flat however
/// many hosts a job names, and the busiest hosts keep exact counts (a host
/// dropped and seen again counts again from 1).
pub const MAX_HOSTS_TRACKED: usize = 2048;

/// One recorded outcome as an [`Observer`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// Its task (`tasks.id`), to read the whole row back
    /// ([`crate::store::sqlite::SqliteReader::outcomes_by_id`]).
    pub task_id: i64,
    /// Its class.
    pub class: crate::outcome::Class,
    /// Its final HTTP status, if a response came.
    pub status: Option<u16>,
    /// The final attempt's duration (ms), if a request was made.
    pub elapsed_ms: Option<u64>,
    /// Decoded body bytes.
    pub bytes: Option<u64>,
}

/// Watches a run's commits, for metrics (`volley serve`'s `/metrics`).
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// A batch of outcomes was committed, taking `took` (the store's
    /// transaction, start to commit).
    fn committed(&self, batch: &[Observed], took: std::time::Duration);

    /// `n` outcomes of `class` were committed without a request: at ingest
    /// (invalid lines, duplicates) or by cancelling a job. Nothing by
    /// default.
    fn recorded_unfetched(&self, class: crate::outcome::Class, n: u64) {
        let _ = (class, n);
    }
}

/// Live counters of a run, updated by the engine and read by displays.
/// Counts cover the whole job (earlier runs included) unless noted.
#[derive(Debug, Default)]
pub struct Progress {
    /// Tasks in the job so far; grows while the input is ingested.
    pub total: AtomicU64,
    /// Tasks with a committed outcome.
    pub finished: AtomicU64,
    /// Of those, the outcomes committed before this run began (set once
    /// as it starts): `finished - earlier` is this run's, for its rate.
    pub earlier: AtomicU64,
    /// Of those, tasks that failed.
    pub failed: AtomicU64,
    /// Requests in flight now.
    pub in_flight: AtomicU64,
    /// Retries scheduled in this run.
    pub retries: AtomicU64,
    /// Body bytes committed in this run.
    pub bytes: AtomicU64,
    /// Whether the whole input is ingested (so `total` is final). Set
    /// through [`Progress::set_ingest_complete`], which wakes
    /// [`Progress::ingest_completed`].
    pub ingest_complete: AtomicBool,
    /// Woken when `ingest_complete` is set.
    ingested: tokio::sync::Notify,
    /// Outcomes dropped at commit because this run no longer held their
    /// task (see [`crate::store::Recorded::fenced`]).
    pub fenced: AtomicU64,
}

/// A consistent-enough copy of [`Progress`] for one display refresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgressSnapshot {
    /// See [`Progress::total`].
    pub total: u64,
    /// See [`Progress::finished`].
    pub finished: u64,
    /// See [`Progress::earlier`].
    pub earlier: u64,
    /// See [`Progress::failed`].
    pub failed: u64,
    /// See [`Progress::in_flight`].
    pub in_flight: u64,
    /// See [`Progress::retries`].
    pub retries: u64,
    /// See [`Progress::bytes`].
    pub bytes: u64,
    /// See [`Progress::ingest_complete`].
    pub ingest_complete: bool,
}

impl ProgressSnapshot {
    /// Outcomes committed by this run (earlier runs' left out).
    pub fn this_run(&self) -> u64 {
        self.finished.saturating_sub(self.earlier)
    }
}

impl Progress {
    /// Reads every counter.
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            total: self.total.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
            earlier: self.earlier.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            ingest_complete: self.ingest_complete.load(Ordering::Relaxed),
        }
    }

    /// Marks the whole input ingested and wakes those waiting for it.
    pub fn set_ingest_complete(&self) {
        self.ingest_complete.store(true, Ordering::Release);
        self.ingested.notify_waiters();
    }

    /// Waits until the whole input is ingested (at once if it is). A run
    /// that fails before that never wakes this: wait for its end as well.
    pub async fn ingest_completed(&self) {
        loop {
            let notified = self.ingested.notified();
            tokio::pin!(notified);
            // Registered before the check, so a wake between the two is
            // not lost.
            notified.as_mut().enable();
            if self.ingest_complete.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Tallies of the outcomes recorded in one run.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Outcomes by class.
    pub by_class: BTreeMap<Class, u64>,
    /// Final responses by HTTP status.
    pub by_status: BTreeMap<u16, u64>,
    /// Outcomes of fetched tasks by host (at most [`MAX_HOSTS_TRACKED`] hosts).
    pub by_host: HashMap<Box<str>, u64>,
    /// Duration of final attempts, in ms.
    pub latency_ms: Histogram<u64>,
    /// Tasks fetched (requests made) in this run.
    pub fetched: u64,
    /// Decoded body bytes of final attempts.
    pub bytes: u64,
    /// `--items` elements found in this run's pages.
    pub items: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            by_class: BTreeMap::new(),
            by_status: BTreeMap::new(),
            by_host: HashMap::new(),
            // 1 ms to 1 hour at 3 significant digits: constant bounds that
            // hdrhistogram accepts, so this cannot fail.
            latency_ms: Histogram::new_with_bounds(1, 3_600_000, 3)
                .expect("constant histogram bounds are valid"),
            fetched: 0,
            bytes: 0,
            items: 0,
        }
    }
}

impl Tally {
    /// Counts an outcome that needed no fetch (invalid input, duplicate).
    pub fn add_unfetched(&mut self, class: Class, n: u64) {
        if n > 0 {
            *self.by_class.entry(class).or_default() += n;
        }
    }

    /// Counts a fetched outcome from `host`.
    pub fn add_fetched(&mut self, outcome: &Outcome, host: &str) {
        self.fetched += 1;
        *self.by_class.entry(outcome.class).or_default() += 1;
        if let Some(status) = outcome.status {
            *self.by_status.entry(status).or_default() += 1;
        }
        if let Some(ms) = outcome.elapsed_ms {
            self.latency_ms.saturating_record(ms.max(1));
        }
        self.bytes += outcome.bytes.unwrap_or(0);
        self.items += outcome.items.len() as u64;
        if let Some(n) = self.by_host.get_mut(host) {
            *n += 1;
            return;
        }
        if self.by_host.len() >= MAX_HOSTS_TRACKED {
            self.keep_busiest_half();
        }
        self.by_host.insert(host.into(), 1);
    }

    /// Drops the half of the hosts with the fewest outcomes (amortised over
    /// the `MAX_HOSTS_TRACKED / 2` new hosts it makes room for).
    fn keep_busiest_half(&mut self) {
        let mut counts: Vec<u64> = self.by_host.values().copied().collect();
        let keep = MAX_HOSTS_TRACKED / 2;
        let (_, cut, _) = counts.select_nth_unstable_by(keep, |a, b| b.cmp(a));
        let cut = *cut;
        let mut room = self.by_host.len() - keep;
        self.by_host.retain(|_, n| {
            let drop = *n <= cut && room > 0;
            room -= usize::from(drop);
            !drop
        });
    }
}

/// What a run did, for the end-of-run summary.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Outcomes recorded by this run.
    pub tally: Tally,
    /// The job's task counts after the run.
    pub counts: JobCounts,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Whether the run was stopped before the job finished.
    pub interrupted: bool,
    /// The most hosts whose politeness state was held at once.
    pub hosts_peak: usize,
    /// Late outcomes dropped because the run's lease on their task had
    /// been lost (shared stores; see [`crate::store::Recorded::fenced`]).
    pub fenced: u64,
    /// Whether TLS certificates went unverified ([`crate::FetchSpec::insecure`]).
    pub insecure: bool,
}

impl RunReport {
    /// Fetched tasks per second of wall time.
    pub fn requests_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.tally.fetched as f64 / secs
        } else {
            0.0
        }
    }

    /// The latency (ms) at quantile `q` in `[0, 1]`, if anything was fetched.
    pub fn latency_ms(&self, q: f64) -> Option<u64> {
        (!self.tally.latency_ms.is_empty()).then(|| self.tally.latency_ms.value_at_quantile(q))
    }

    /// The `n` hosts with the most outcomes, most first.
    pub fn busiest_hosts(&self, n: usize) -> Vec<(&str, u64)> {
        let mut hosts: Vec<(&str, u64)> =
            self.tally.by_host.iter().map(|(h, c)| (&**h, *c)).collect();
        hosts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        hosts.truncate(n);
        hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_ranks_hosts_and_reads_quantiles() {
        let mut tally = Tally::default();
        for (i, host) in ["a", "b", "b", "c", "b", "a"].iter().enumerate() {
            let mut o = Outcome::new(i as i64, Class::Ok);
            o.status = Some(200);
            o.elapsed_ms = Some(10 * (i as u64 + 1));
            tally.add_fetched(&o, host);
        }
        tally.add_unfetched(Class::InvalidUrl, 2);
        let report = RunReport {
            tally,
            counts: JobCounts::default(),
            elapsed: Duration::from_secs(2),
            interrupted: false,
            hosts_peak: 3,
            fenced: 0,
            insecure: false,
        };
        assert_eq!(report.busiest_hosts(2), [("b", 3), ("a", 2)]);
        assert_eq!(report.tally.by_class[&Class::Ok], 6);
        assert_eq!(report.tally.by_class[&Class::InvalidUrl], 2);
        assert!((report.requests_per_sec() - 3.0).abs() < 1e-9);
        let p50 = report.latency_ms(0.5).expect("latencies recorded");
        assert!((30..=31).contains(&p50), "p50 {p50}");
    }

    #[test]
    fn the_host_table_stays_bounded_and_keeps_the_busiest() {
        let mut tally = Tally::default();
        let o = Outcome::new(1, Class::Ok);
        for round in 0..5 {
            for _ in 0..3 {
                tally.add_fetched(&o, "busy");
            }
            for i in 0..100_000 {
                tally.add_fetched(&o, &format!("once-{round}-{i}"));
            }
            assert!(tally.by_host.len() <= MAX_HOSTS_TRACKED);
        }
        assert_eq!(tally.by_host.get("busy"), Some(&15));
        assert_eq!(tally.fetched, 500_015);
    }
}
