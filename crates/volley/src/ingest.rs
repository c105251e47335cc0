//! Ingest: the producer stage, streaming input lines into the frontier.
//!
//! A blocking thread reads the input (any [`InputSource`]) and hands batches
//! of up to [`BATCH_LINES`] inputs over a channel of [`BATCH_QUEUE`] batches;
//! an async loop commits each batch with [`Store::ingest`]. At most
//! `BATCH_LINES × (BATCH_QUEUE + 2)` inputs are in memory, whatever the
//! input's size. A batch is also handed over once [`BATCH_LINGER`] has passed
//! since the last one, so URLs that trickle in on a pipe are fetched
//! without waiting for a full batch.
//!
//! Resuming: lines up to the job's ingest cursor (`Job::ingested_lines`)
//! were committed by an earlier run and are skipped.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::RunError;
use crate::outcome::Class;
use crate::scheduler::Frontier;
use crate::source::InputSource;
use crate::stats::{Progress, Tally};
use crate::store::{IngestBatch, Job, Store};

/// Most inputs committed in one ingest transaction.
pub const BATCH_LINES: usize = 2000;

/// Batches read ahead of the database.
pub const BATCH_QUEUE: usize = 2;

/// Longest time a partial batch waits for more lines.
pub const BATCH_LINGER: Duration = Duration::from_millis(200);

/// Streams `source` into `job`'s tasks. Tells `frontier` after each commit so
/// the scheduler leases the new tasks, and stops early when `stop` fires
/// (the cursor then says where to resume).
///
/// # Errors
/// [`RunError::Input`] when reading fails; store errors.
pub(crate) async fn run<S: Store>(
    store: Arc<S>,
    job: &Job,
    source: Box<dyn InputSource>,
    progress: Arc<Progress>,
    frontier: Arc<Frontier>,
    stop: CancellationToken,
) -> Result<Tally, RunError> {
    let (tx, mut rx) = mpsc::channel(BATCH_QUEUE);
    let skip = job.ingested_lines;
    let reading = tokio::task::spawn_blocking(move || read_batches(source, skip, &tx));
    let mut tally = Tally::default();
    loop {
        let batch = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            batch = rx.recv() => batch,
        };
        let Some(batch) = batch else { break };
        let batch = batch.map_err(RunError::Input)?;
        let complete = batch.complete;
        let report = store.ingest(job.id, batch).await?;
        tally.add_unfetched(Class::InvalidUrl, report.invalid);
        tally.add_unfetched(Class::Duplicate, report.duplicates);
        Progress::add(
            &progress.total,
            report.pending + report.invalid + report.duplicates,
        );
        Progress::add(&progress.finished, report.invalid + report.duplicates);
        Progress::add(&progress.failed, report.invalid);
        if complete {
            // Before the signal wakes the scheduler: see `Frontier`.
            progress.ingest_complete.store(true, Ordering::Release);
        }
        frontier.grew();
        if complete {
            break;
        }
    }
    drop(rx);
    // The reader ends once the channel is closed; its error, if any, was sent.
    let _ = reading.await;
    Ok(tally)
}

/// The blocking half: reads lines and sends batches until the input ends,
/// reading fails, or the receiver is gone.
fn read_batches(
    mut source: Box<dyn InputSource>,
    skip: u64,
    tx: &mpsc::Sender<io::Result<IngestBatch>>,
) {
    let mut batch = IngestBatch::default();
    let mut last_sent = Instant::now();
    for item in source.by_ref() {
        let input = match item {
            Ok(input) => input,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        if input.line() <= skip {
            continue;
        }
        batch.through_line = input.line();
        batch.inputs.push(input);
        if batch.inputs.len() >= BATCH_LINES || last_sent.elapsed() >= BATCH_LINGER {
            if tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                return;
            }
            last_sent = Instant::now();
        }
    }
    batch.through_line = source.consumed().max(skip);
    batch.complete = true;
    let _ = tx.blocking_send(Ok(batch));
}
