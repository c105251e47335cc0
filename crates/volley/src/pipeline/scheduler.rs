//! The scheduler: which task goes next, and when.
//!
//! # Window, gates and retries
//!
//! The scheduler leases tasks from the store a page at a time and keeps at
//! most `window` of them in memory (see [`window_for`]); it leases again
//! when a quarter of the window is free. Each leased task runs as a tokio
//! task through the steps of [`crate::pipeline::task`], looping over attempts:
//!
//! 0. **Robots.** With `--respect-robots`, the first task of a host fetches
//!    its robots.txt ([`crate::politeness::robots`]) and every task of the host checks
//!    it; a disallowed URL gets `robots_denied` without a request.
//! 1. **Gate.** Before every attempt, retries included, it waits for a
//!    [`Slot`](crate::politeness::host::Slot): its host unpaused, a host permit, the
//!    host's and the global token buckets, then a global permit
//!    ([`crate::politeness::host`]). Waiting for a busy host never holds a global slot
//!    that another host could use.
//! 2. **Attempt.** See [`crate::http::fetch::attempt`]. The slot is released when
//!    the attempt ends, and what the attempt says about the host (throttled,
//!    `Retry-After`, rate limit exhausted, unreachable) is fed back to it.
//! 3. **Backoff.** A retryable failure waits out its backoff or
//!    `Retry-After` ([`crate::politeness::retry`]) holding *no* permit, then goes back to
//!    1. The task's lease keeps it out of other runs meanwhile.
//! 4. **Outcome.** The final attempt becomes an [`crate::Outcome`], sent to the
//!    writer; only then does the task leave the window.
//!
//! # Stopping
//!
//! When the run's deadline passes, every task without an outcome, leased
//! or still pending, gets a `deadline` outcome, so the job still ends with
//! one outcome per input.
//!
//! When `stop` fires, no page is leased and tasks waiting at a gate or in a
//! backoff give up at once, leaving no outcome. Requests in flight continue
//! until they finish or `abandon` fires (the grace period). Tasks that gave
//! up stay leased and are returned to pending by the engine, to be fetched
//! by the next run. Nothing is recorded for a task that did not finish.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::options::FetchSpec;
use crate::pipeline::run::RunError;
use crate::pipeline::run::{Frontier, Shared};
use crate::pipeline::task::{self, Target};
use crate::store::{Store, Want};

/// Tasks held in memory for a given global concurrency: four per request
/// slot, at least 1024, so that tasks of hosts at their limit do not starve
/// the others of work. On a shared store four times as many: a lease there
/// is several round trips to the database (claiming hosts, then their
/// tasks), and the window must not run dry while one is under way.
pub(crate) fn window_for(concurrency: usize, shared: bool) -> usize {
    let window = concurrency.saturating_mul(4).max(1024);
    if shared {
        window.saturating_mul(SHARED_WINDOW)
    } else {
        window
    }
}

/// How many times the window a shared store's run holds; see [`window_for`].
const SHARED_WINDOW: usize = 4;

/// How often a run on a shared store looks again for work it cannot be
/// told about: tasks ingested by another process, hosts freed by a worker
/// that left or died.
pub(crate) const SHARED_POLL: Duration = Duration::from_millis(250);

/// Most tasks of one host a run holds at once (with host affinity): four
/// per request the host may have in flight, so it never waits for a lease,
/// within `[8, window / 2]` so one host cannot fill the window; and as
/// many again for the fetched tasks whose outcomes are on their way to the
/// store (they have left the window, but stay leased until committed).
/// Not scaled with a shared store's larger window: holding more of a host
/// would leave workers that join later with less to share.
fn per_host_hold(spec: &FetchSpec, window: usize) -> usize {
    let most = spec
        .hosts
        .iter()
        .filter_map(|rule| rule.concurrency)
        .fold(spec.per_host, usize::max);
    most.saturating_mul(4).clamp(8, (window / 2).max(8)) * 2
}

/// How long another worker must wait before starting on a host this run
/// gives back: one interval of the slowest per-host rate limit, the job's
/// `--rate` or a host rule's (zero when no rate limit is set).
fn handover_gap(spec: &FetchSpec) -> Duration {
    let slowest = spec
        .hosts
        .iter()
        .filter_map(|rule| rule.rate)
        .chain(spec.rate)
        .map(|rate| rate.per_sec)
        .fold(f64::INFINITY, f64::min);
    Duration::try_from_secs_f64(1.0 / slowest).unwrap_or(Duration::ZERO)
}

/// Leases and runs tasks of `job` until none is pending, ingest is done and
/// no discovered page waits to be committed, or `stop` fires.
///
/// On a shared store ([`Store::SHARED`]) other processes ingest and finish
/// tasks too: when a lease comes back short it leases again after
/// [`SHARED_POLL`], and the run ends when the job row says the input is
/// all read and no task of the job is without an outcome.
///
/// # Errors
/// The first store error, or a local failure of a task (a body that could
/// not be written). The scheduler stops taking tasks at the first error and
/// waits for the running ones before returning it.
pub(crate) async fn run<S: Store>(
    store: &S,
    job: i64,
    shared: Arc<Shared>,
    frontier: Arc<Frontier>,
) -> Result<(), RunError> {
    let window_size = window_for(shared.spec.concurrency, S::SHARED);
    let per_host = per_host_hold(&shared.spec, window_size);
    let handover = handover_gap(&shared.spec);
    // When the last lease came back short (shared stores only).
    let mut short_at: Option<tokio::time::Instant> = None;
    let window = Arc::new(Semaphore::new(window_size));
    let lease_at = window_size / 4;
    let mut tasks: JoinSet<Result<(), RunError>> = JoinSet::new();
    let mut first_error: Option<RunError> = None;
    // Whether the last lease found fewer tasks than asked: nothing more is
    // pending until the frontier grows (ingest, or pages the writer commits).
    let mut drained = false;
    let mut seen = frontier.version();
    let mut note = |result: Result<Result<(), RunError>, tokio::task::JoinError>,
                    shared: &Shared| {
        let error = match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(e) => RunError::Internal(format!("fetch task failed: {e}")),
        };
        shared.stop.cancel();
        first_error.get_or_insert(error);
    };
    loop {
        while let Some(done) = tasks.try_join_next() {
            note(done, &shared);
        }
        if shared.stop.is_cancelled() {
            break;
        }
        let grew = frontier.notified();
        tokio::pin!(grew);
        grew.as_mut().enable();
        // The flags before the version: see `Frontier`.
        let ingest_done = shared.progress.ingest_complete.load(Ordering::Acquire);
        let pages_pending = frontier.pending_pages();
        let version = frontier.version();
        if version != seen {
            seen = version;
            drained = false;
        }
        if S::SHARED && short_at.is_some_and(|at| at.elapsed() >= SHARED_POLL) {
            drained = false;
        }
        let free = window.available_permits();
        if !drained && free >= lease_at.max(1) {
            let want = Want {
                limit: free,
                per_host,
                handover,
                busy: shared.hosts.take_busy(),
            };
            let leased = match store.lease(job, want).await {
                Ok(leased) => leased,
                Err(e) => {
                    note(Ok(Err(e.into())), &shared);
                    break;
                }
            };
            drained = leased.len() < free;
            short_at = drained.then(tokio::time::Instant::now);
            let mut priors = if crate::http::refresh::wanted(&shared.spec) {
                let urls = leased.iter().map(|t| t.url.clone()).collect();
                match store.resources(urls).await {
                    Ok(found) => found,
                    Err(e) => {
                        note(Ok(Err(e.into())), &shared);
                        break;
                    }
                }
            } else {
                HashMap::new()
            };
            for task in leased {
                let prior = priors.remove(&task.url);
                let Ok(slot) = Arc::clone(&window).try_acquire_owned() else {
                    // Cannot happen: we leased no more than was free.
                    note(
                        Ok(Err(RunError::Internal("scheduler window overflow".into()))),
                        &shared,
                    );
                    break;
                };
                // The task holds its host from now, so the prune below
                // cannot drop the state of a host that just got work.
                let target = Target::of(&shared, &task.url);
                // Boxed: the future is kilobytes, which the runtime would
                // otherwise copy as it stores, polls out and drops the task.
                let fetch = Box::pin(task::run_task(
                    Arc::clone(&shared),
                    Arc::clone(&frontier),
                    (task, prior),
                    target,
                    slot,
                ));
                let stop = shared.stop.clone();
                tasks.spawn(async move {
                    // The loop below does not wait on each task: a failed
                    // one stops the run itself, and is noted when joined.
                    let done = fetch.await;
                    if done.is_err() {
                        stop.cancel();
                    }
                    done
                });
            }
            shared.hosts.prune();
            if let Some(budget) = &shared.budget {
                budget.prune();
            }
            continue;
        }
        if S::SHARED && drained && pages_pending == 0 && tasks.is_empty() {
            // Holding nothing: is the job done, or is there work elsewhere?
            let finished = async {
                if !ingest_done && store.reload_job(job).await?.ingest_complete {
                    shared
                        .progress
                        .ingest_complete
                        .store(true, Ordering::Release);
                    return Ok::<_, RunError>(store.unfinished(job).await? == 0);
                }
                Ok(ingest_done && store.unfinished(job).await? == 0)
            };
            match finished.await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    note(Ok(Err(e)), &shared);
                    break;
                }
            }
        } else if drained && ingest_done && pages_pending == 0 && tasks.is_empty() {
            break;
        }
        let poll = async {
            match short_at {
                Some(at) if S::SHARED => tokio::time::sleep_until(at + SHARED_POLL).await,
                _ => std::future::pending().await,
            }
        };
        // While there is more to lease, wake when a quarter of the window
        // is free again, not at each task's end: one wake-up per many
        // tasks. Once drained, each end matters (the last one ends the run).
        let room = async {
            if drained {
                std::future::pending::<()>().await;
            }
            let want = u32::try_from(lease_at.max(1)).unwrap_or(u32::MAX);
            // Taken and given straight back: only the count matters.
            drop(window.acquire_many(want).await);
        };
        tokio::select! {
            () = shared.stop.cancelled() => break,
            Some(done) = tasks.join_next(), if drained && !tasks.is_empty() => note(done, &shared),
            () = room => {}
            () = &mut grew => {}
            () = poll => {}
        }
    }
    while let Some(done) = tasks.join_next().await {
        note(done, &shared);
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_scales_with_concurrency() {
        assert_eq!(window_for(8, false), 1024);
        assert_eq!(window_for(1000, false), 4000);
        assert_eq!(window_for(8, true), 4096);
    }
}
