//! The writer: the one task that records fetched outcomes.
//!
//! Fetch tasks send each finished outcome into a bounded channel; the writer
//! takes what has arrived, up to [`BATCH_MAX`] outcomes, lingering at most
//! [`LINGER`] for a batch to fill, and commits the batch in one transaction
//! ([`Store::record`]). Under load, batches fill at once and commits are
//! few; when outcomes trickle in, each waits at most [`LINGER`]. A batch
//! holding a page that leads on (a next page, a crawl's links) commits as
//! soon as the channel is empty, with what had arrived: its chain or crawl
//! can go on only once those tasks are committed.
//!
//! While a batch commits, new outcomes queue in the channel; when it is full,
//! fetch tasks wait to send, and so stop starting new requests: a slow disk
//! slows the whole pipeline instead of growing memory (backpressure).
//!
//! Progress counters move only after a commit, so a display never shows an
//! outcome as recorded before it is durable.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use crate::outcome::{Class, Outcome};
use crate::pipeline::run::{Finished, Frontier};
use crate::stats::{Observed, Observer, Progress, Tally};
use crate::store::{Store, StoreError};

/// Most outcomes committed in one transaction.
pub(crate) const BATCH_MAX: usize = 1024;

/// Longest wait for a batch to fill before committing what is there.
pub(crate) const LINGER: Duration = Duration::from_millis(20);

/// Receives outcomes until every sender is dropped, committing in batches.
///
/// # Errors
/// The first store error; the run must stop, since outcomes can no longer
/// be recorded. Outcomes of the failed batch stay unrecorded and their tasks
/// leased, to be fetched again by the next run.
pub(crate) async fn run<S: Store>(
    store: Arc<S>,
    job: i64,
    mut rx: mpsc::Receiver<Finished>,
    progress: Arc<Progress>,
    frontier: Arc<Frontier>,
    observer: Option<Arc<dyn Observer>>,
) -> Result<Tally, StoreError> {
    let mut tally = Tally::default();
    while let Some(first) = rx.recv().await {
        // A pagination chain or a crawl waits on this commit: do not
        // linger, but take what has already arrived (a crawl's pages come
        // many at a time: one commit for all of them).
        let mut urgent = first.outcome.leads_on();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH_MAX {
            let next = match rx.try_recv() {
                Ok(next) => next,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) if urgent => break,
                Err(TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(next)) => next,
                        Ok(None) | Err(_) => break,
                    }
                }
            };
            urgent |= next.outcome.leads_on();
            batch.push(next);
        }
        let (mut failed, mut bytes) = (0, 0);
        let outcomes: Vec<Outcome> = batch
            .into_iter()
            .map(|f| {
                if f.outcome.class == Class::Fresh {
                    // No request was made for it.
                    tally.add_unfetched(Class::Fresh, 1);
                } else {
                    tally.add_fetched(&f.outcome, &f.host);
                }
                failed += u64::from(!f.outcome.class.is_success());
                bytes += f.outcome.bytes.unwrap_or(0);
                f.outcome
            })
            .collect();
        let n = outcomes.len() as u64;
        let with_pages = outcomes.iter().filter(|o| o.leads_on()).count() as u64;
        let observed: Vec<Observed> = match &observer {
            Some(_) => outcomes
                .iter()
                .map(|o| Observed {
                    task_id: o.task_id,
                    class: o.class,
                    status: o.status,
                    elapsed_ms: o.elapsed_ms,
                    bytes: o.bytes,
                })
                .collect(),
            None => Vec::new(),
        };
        let started = std::time::Instant::now();
        let recorded = store.record(job, outcomes).await?;
        if let Some(observer) = &observer {
            observer.committed(&observed, started.elapsed());
        }
        Progress::add(&progress.total, recorded.pages);
        // New pages are new tasks. On a shared store a commit also gives
        // back room: a worker holds a few tasks per host (host affinity)
        // until their outcomes commit, so a lease that came back short may
        // find more now.
        if recorded.pages > 0 || (S::SHARED && recorded.outcomes > 0) {
            frontier.grew();
        }
        frontier.pages_committed(with_pages);
        Progress::add(&progress.finished, n - recorded.fenced);
        Progress::add(&progress.fenced, recorded.fenced);
        Progress::add(&progress.failed, failed);
        Progress::add(&progress.bytes, bytes);
    }
    Ok(tally)
}
