//! The scheduler: which task goes next, and when.
//!
//! # Window, gates and retries
//!
//! The scheduler leases tasks from the store a page at a time and keeps at
//! most `window` of them in memory (see [`window_for`]); it leases again
//! when a quarter of the window is free. Each leased task runs as a tokio
//! task that loops over attempts:
//!
//! 1. **Gate.** Before every attempt, retries included, it takes a permit
//!    from its host's semaphore (`per_host`), *then* one from the global
//!    semaphore (`concurrency`). Waiting for a busy host therefore never
//!    holds a global slot that another host could use. Tokio's semaphores
//!    are fair, so tasks of one host go in lease order.
//! 2. **Attempt.** See [`crate::fetch::attempt`]. Both permits are released
//!    when the attempt ends.
//! 3. **Backoff.** A retryable failure waits out its backoff or
//!    `Retry-After` ([`crate::retry`]) holding *no* permit, then goes back to
//!    1. The task's lease keeps it out of other runs meanwhile.
//! 4. **Outcome.** The final attempt becomes an [`Outcome`], sent to the
//!    writer; only then does the task leave the window.
//!
//! # Stopping
//!
//! When `stop` fires, no page is leased and tasks waiting at a gate or in a
//! backoff give up at once, leaving no outcome. Requests in flight continue
//! until they finish or `abandon` fires (the grace period). Tasks that gave
//! up stay leased and are returned to pending by the engine, to be fetched
//! by the next run. Nothing is recorded for a task that did not finish.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::RunError;
use crate::fetch::{self, SaveTo};
use crate::outcome::{Class, Outcome, now_ms};
use crate::retry::{Backoff, Decision};
use crate::spec::FetchSpec;
use crate::stats::Progress;
use crate::store::{LeasedTask, Store};
use crate::writer::Finished;

/// Tasks held in memory for a given global concurrency: four per request
/// slot, at least 1024, so that tasks of hosts at their limit do not starve
/// the others of work.
pub fn window_for(concurrency: usize) -> usize {
    concurrency.saturating_mul(4).max(1024)
}

/// One semaphore per host, created on first use and dropped when idle.
struct HostGates {
    per_host: usize,
    global: Arc<Semaphore>,
    hosts: Mutex<HashMap<Box<str>, Arc<Semaphore>>>,
}

/// Permits for one attempt; released on drop.
struct Permits {
    _host: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

impl HostGates {
    /// Waits for a slot at `host`, then a global slot.
    ///
    /// Cancellation safe: dropping the future gives back any permit taken.
    async fn acquire(&self, host: &str) -> Option<Permits> {
        let gate = {
            let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
            match hosts.get(host) {
                Some(gate) => Arc::clone(gate),
                None => {
                    let gate = Arc::new(Semaphore::new(self.per_host));
                    hosts.insert(host.into(), Arc::clone(&gate));
                    gate
                }
            }
        };
        let host = gate.acquire_owned().await.ok()?;
        let global = Arc::clone(&self.global).acquire_owned().await.ok()?;
        Some(Permits {
            _host: host,
            _global: global,
        })
    }

    /// Forgets hosts nobody holds or waits for.
    fn prune(&self) {
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        hosts.retain(|_, gate| Arc::strong_count(gate) > 1);
    }
}

/// What every task of a run shares.
pub(crate) struct Shared {
    pub client: reqwest::Client,
    pub spec: FetchSpec,
    pub outcomes: mpsc::Sender<Finished>,
    pub progress: Arc<Progress>,
    pub stop: CancellationToken,
    pub abandon: CancellationToken,
    gates: HostGates,
}

impl Shared {
    pub fn new(
        client: reqwest::Client,
        spec: FetchSpec,
        outcomes: mpsc::Sender<Finished>,
        progress: Arc<Progress>,
        stop: CancellationToken,
        abandon: CancellationToken,
    ) -> Shared {
        let gates = HostGates {
            per_host: spec.per_host,
            global: Arc::new(Semaphore::new(spec.concurrency)),
            hosts: Mutex::new(HashMap::new()),
        };
        Shared {
            client,
            spec,
            outcomes,
            progress,
            stop,
            abandon,
            gates,
        }
    }
}

/// Leases and runs tasks of `job` until none is pending and ingest is done
/// (`ingest_done` turns true), or `stop` fires.
///
/// `ingest_changes` ticks whenever ingest commits new tasks.
///
/// # Errors
/// The first store error, or a local failure of a task (a body that could
/// not be written). The scheduler stops taking tasks at the first error and
/// waits for the running ones before returning it.
pub(crate) async fn run<S: Store>(
    store: &S,
    job: i64,
    owner: &str,
    shared: Arc<Shared>,
    mut ingest_changes: watch::Receiver<u64>,
) -> Result<(), RunError> {
    let window_size = window_for(shared.spec.concurrency);
    let window = Arc::new(Semaphore::new(window_size));
    let lease_at = window_size / 4;
    let mut tasks: JoinSet<Result<(), RunError>> = JoinSet::new();
    let mut first_error: Option<RunError> = None;
    // Whether the last lease found fewer tasks than asked: nothing more is
    // pending until ingest commits more.
    let mut drained = false;
    let mut ingest_open = true;
    let mut ingest_seen = *ingest_changes.borrow();
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
        // Read the flag before the counter: ingest bumps the counter before
        // it sets the flag, so a completed ingest's last batch is never missed.
        let ingest_done = shared.progress.ingest_complete.load(Ordering::Acquire);
        let ingest_now = *ingest_changes.borrow();
        if ingest_now != ingest_seen {
            ingest_seen = ingest_now;
            drained = false;
        }
        let free = window.available_permits();
        if !drained && free >= lease_at.max(1) {
            let leased = match store.lease(job, owner, free).await {
                Ok(leased) => leased,
                Err(e) => {
                    note(Ok(Err(e.into())), &shared);
                    break;
                }
            };
            drained = leased.len() < free;
            for task in leased {
                let Ok(slot) = Arc::clone(&window).try_acquire_owned() else {
                    // Cannot happen: we leased no more than was free.
                    note(
                        Ok(Err(RunError::Internal("scheduler window overflow".into()))),
                        &shared,
                    );
                    break;
                };
                tasks.spawn(run_task(Arc::clone(&shared), task, slot));
            }
            shared.gates.prune();
            continue;
        }
        if drained && ingest_done && tasks.is_empty() {
            break;
        }
        tokio::select! {
            () = shared.stop.cancelled() => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => note(done, &shared),
            changed = ingest_changes.changed(), if ingest_open => ingest_open = changed.is_ok(),
        }
    }
    while let Some(done) = tasks.join_next().await {
        note(done, &shared);
    }
    first_error.map_or(Ok(()), Err)
}

/// Counts a request in flight for as long as it lives.
struct InFlight<'a>(&'a Progress);

impl<'a> InFlight<'a> {
    fn new(progress: &'a Progress) -> Self {
        Progress::add(&progress.in_flight, 1);
        InFlight(progress)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs one task through its attempts and sends its outcome; returns
/// without an outcome if the run stops first.
async fn run_task(
    shared: Arc<Shared>,
    task: LeasedTask,
    _slot: OwnedSemaphorePermit,
) -> Result<(), RunError> {
    let started_at = now_ms();
    let url = match Url::parse(&task.url) {
        Ok(url) => url,
        Err(e) => {
            // Only a database edited by hand can hold such a URL.
            let mut outcome = Outcome::new(task.id, Class::InvalidUrl);
            outcome.message = Some(format!(
                "line {}: stored URL does not parse: {e}",
                task.line
            ));
            return send(&shared, outcome, "".into()).await;
        }
    };
    let host: Box<str> = url.host_str().unwrap_or_default().into();
    let save_dir = shared.spec.save_bodies.clone();
    let mut backoff = Backoff::new(&shared.spec);
    let mut attempts: u32 = 0;
    let (last, note) = loop {
        let permits = tokio::select! {
            biased;
            () = shared.stop.cancelled() => return Ok(()),
            permits = shared.gates.acquire(&host) => permits,
        };
        let Some(permits) = permits else {
            return Ok(());
        };
        attempts += 1;
        let partial_name = format!("{}-{}-{attempts}", std::process::id(), task.id);
        let save = save_dir.as_deref().map(|dir| SaveTo {
            dir,
            partial_name: &partial_name,
        });
        let result = {
            let _in_flight = InFlight::new(&shared.progress);
            tokio::select! {
                biased;
                () = shared.abandon.cancelled() => return Ok(()),
                result = fetch::attempt(&shared.client, &url, &shared.spec, save) => result,
            }
        };
        drop(permits);
        let attempt = result.map_err(RunError::BodyIo)?;
        match backoff.decide(attempt.is_retryable(), attempt.retry_after) {
            Decision::Final { note } => break (attempt, note),
            Decision::RetryAfter(delay) => {
                Progress::add(&shared.progress.retries, 1);
                tracing::debug!(url = %url, attempt = attempts, class = %attempt.class, ?delay, "retrying");
                tokio::select! {
                    biased;
                    () = shared.stop.cancelled() => return Ok(()),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    };
    let message = match (last.message, note) {
        (Some(m), Some(n)) => Some(format!("{m} ({n})")),
        (None, Some(n)) if !last.class.is_success() => Some(n),
        (m, _) => m,
    };
    let outcome = Outcome {
        task_id: task.id,
        class: last.class,
        status: last.status,
        http_version: last.http_version,
        message,
        attempts,
        bytes: last.bytes,
        elapsed_ms: Some(last.elapsed_ms),
        ttfb_ms: last.ttfb_ms,
        final_url: last.final_url,
        content_type: last.content_type,
        body_sha256: last.body_sha256,
        body_path: last.body_path,
        headers: last.headers,
        duplicate_of: None,
        started_at_ms: Some(started_at),
        finished_at_ms: now_ms(),
    };
    send(&shared, outcome, host).await
}

async fn send(shared: &Shared, outcome: Outcome, host: Box<str>) -> Result<(), RunError> {
    shared
        .outcomes
        .send(Finished { outcome, host })
        .await
        .map_err(|_| RunError::Internal("the writer stopped; outcome not recorded".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn host_gates_cap_each_host_and_forget_idle_ones() {
        let gates = HostGates {
            per_host: 2,
            global: Arc::new(Semaphore::new(3)),
            hosts: Mutex::new(HashMap::new()),
        };
        let a1 = gates.acquire("a").await.expect("permit");
        let _a2 = gates.acquire("a").await.expect("permit");
        // A third permit for host a must wait even though a global slot is free.
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), gates.acquire("a"));
        assert!(third.await.is_err(), "host limit not enforced");
        // Another host still gets the free global slot.
        let b = gates.acquire("b").await.expect("permit");
        drop(a1);
        drop(b);
        gates.prune();
        let hosts = gates.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(hosts.contains_key("a") && !hosts.contains_key("b"));
    }

    #[test]
    fn window_scales_with_concurrency() {
        assert_eq!(window_for(8), 1024);
        assert_eq!(window_for(1000), 4000);
    }
}
