//! Ingest: the producer stage, streaming input lines into the frontier.
//!
//! A blocking thread reads the input (any [`InputSource`]) and hands batches
//! of up to [`BATCH_LINES`] inputs over a channel of [`BATCH_QUEUE`] batches;
//! an async loop commits each batch with [`Store::ingest`]. At most
//! `BATCH_LINES × (BATCH_QUEUE + 2)` inputs are in memory, whatever the
//! input's size. On a shared store (PostgreSQL), where each transaction
//! costs round trips, the batches that queued while one committed are
//! merged into the next transaction (up to [`MERGED_LINES`] inputs), so a
//! database farther away gets larger batches; then at most
//! `BATCH_LINES × (2 × BATCH_QUEUE + 2)` inputs are in memory. A batch is
//! also handed over once [`BATCH_LINGER`] has passed since the last one, so
//! URLs that trickle in on a pipe are fetched without waiting for a full
//! batch.
//!
//! Resuming: lines up to the job's ingest cursor (`Job::ingested_lines`)
//! were committed by an earlier run and are skipped.
//!
//! # The input fingerprint
//!
//! Each batch is committed with a fingerprint of every input through its
//! last line: a SHA-256 over each input's line number, URL (or raw text)
//! and metadata, in order. Blank and comment lines are not inputs, so they
//! do not count, but they shift the numbers of the lines after them, which
//! do. A rerun recomputes the fingerprint over the lines it skips and, where
//! it differs from the recorded one, refuses the input
//! ([`RunError::InputChanged`]): the tasks already made would no longer
//! match it. Lines appended after the cursor are ingested as usual. The
//! cost is one hash over the input as it is read, well under the cost of
//! parsing it.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::input::{Input, InputSource};
use crate::pipeline::run::Frontier;
use crate::pipeline::run::RunError;
use crate::stats::{Observer, Progress, Tally};
use crate::store::{IngestBatch, Job, Store};

/// Most inputs committed in one ingest transaction.
pub const BATCH_LINES: usize = 2000;

/// Batches read ahead of the database.
pub const BATCH_QUEUE: usize = 2;

/// Most inputs in one ingest transaction on a shared store, where the
/// batches that queued while the last one committed are merged (see the
/// module docs).
pub const MERGED_LINES: usize = BATCH_LINES * (BATCH_QUEUE + 1);

/// Longest time a partial batch waits for more lines.
pub const BATCH_LINGER: Duration = Duration::from_millis(200);

/// Streams all of `source` into `job`'s tasks without fetching anything:
/// for a server that takes a job's input (an upload) before it runs the
/// job. Memory stays bounded as in a run; the job's ingest cursor moves
/// with each batch, so an interrupted upload sent again resumes after the
/// lines already stored. Returns the outcomes recorded at ingest (invalid
/// lines, duplicates) by class.
///
/// # Errors
/// [`RunError::Input`] when reading fails, [`RunError::InputChanged`] when
/// a resumed upload differs from the part already stored; store errors.
pub async fn ingest_only<S: Store>(
    store: Arc<S>,
    job: &Job,
    source: Box<dyn InputSource>,
    stop: CancellationToken,
) -> Result<Tally, RunError> {
    let progress = Arc::new(Progress::default());
    run(store, job, source, progress, Arc::default(), None, stop).await
}

/// Streams `source` into `job`'s tasks. Tells `frontier` after each commit so
/// the scheduler leases the new tasks, and `observer` of the outcomes
/// recorded at ingest, and stops early when `stop` fires (the cursor then
/// says where to resume).
///
/// # Errors
/// [`RunError::Input`] when reading fails; store errors.
pub(crate) async fn run<S: Store>(
    store: Arc<S>,
    job: &Job,
    source: Box<dyn InputSource>,
    progress: Arc<Progress>,
    frontier: Arc<Frontier>,
    observer: Option<Arc<dyn Observer>>,
    stop: CancellationToken,
) -> Result<Tally, RunError> {
    let (tx, mut rx) = mpsc::channel(BATCH_QUEUE);
    let resume = Resume {
        skip: job.ingested_lines,
        fingerprint: job.input_fingerprint.clone(),
    };
    let reading = tokio::task::spawn_blocking(move || read_batches(source, &resume, &tx));
    let mut tally = Tally::default();
    // A batch taken from the channel while merging, to commit next.
    let mut next: Option<Result<IngestBatch, ReadError>> = None;
    loop {
        let batch = match next.take() {
            Some(batch) => Some(batch),
            None => tokio::select! {
                biased;
                () = stop.cancelled() => break,
                batch = rx.recv() => batch,
            },
        };
        let Some(batch) = batch else { break };
        let mut batch = batch.map_err(|e| match e {
            ReadError::Io(e) => RunError::Input(e),
            ReadError::Changed(detail) => RunError::InputChanged {
                job: job.name.clone(),
                detail,
            },
        })?;
        if S::SHARED {
            // The batches read while the last one committed go in one
            // transaction: a database a network away costs round trips per
            // transaction, so the batches grow with the round trip.
            while !batch.complete && batch.inputs.len() < MERGED_LINES {
                match rx.try_recv() {
                    Ok(Ok(more)) => batch.append(more),
                    Ok(Err(e)) => {
                        next = Some(Err(e));
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        let complete = batch.complete;
        let report = store.ingest(job.id, batch).await?;
        for (class, n) in report.by_class() {
            tally.add_unfetched(class, n);
            if let Some(observer) = observer.as_ref().filter(|_| n > 0) {
                observer.recorded_unfetched(class, n);
            }
        }
        let unfetched = report.failed() + report.duplicates;
        Progress::add(&progress.total, report.pending + unfetched);
        Progress::add(&progress.finished, unfetched);
        Progress::add(&progress.failed, report.failed());
        // The flag after the version moves and before the scheduler wakes
        // (see `Frontier`): set before, a scheduler that had drained the
        // frontier could read it with the old version and end the run with
        // this batch's tasks pending.
        frontier.grew_then(|| {
            if complete {
                progress.set_ingest_complete();
            }
        });
        if complete {
            break;
        }
    }
    drop(rx);
    // The reader ends once the channel is closed; its error, if any, was sent.
    let _ = reading.await;
    Ok(tally)
}

/// Where a rerun picks up: the cursor and the fingerprint through it.
struct Resume {
    skip: u64,
    fingerprint: Option<String>,
}

/// Why the reader stopped early.
enum ReadError {
    Io(io::Error),
    /// The part of the input read before is not what it was.
    Changed(String),
}

/// The running fingerprint of the inputs read so far (see the module docs).
#[derive(Clone, Default)]
struct Fingerprint(Sha256);

impl Fingerprint {
    fn add(&mut self, input: &Input) {
        let h = &mut self.0;
        h.update(input.line().to_le_bytes());
        match input {
            Input::Url { url, meta, .. } => {
                h.update(b"u");
                h.update(url.as_str().as_bytes());
                h.update([0]);
                h.update(meta.as_deref().unwrap_or_default().as_bytes());
            }
            Input::Invalid { raw, malformed, .. } => {
                h.update(if *malformed { b"m" } else { b"i" });
                h.update(raw.as_bytes());
            }
        }
        h.update([0]);
    }

    fn hex(&self) -> String {
        hex::encode(self.0.clone().finalize())
    }
}

/// The blocking half: reads lines and sends batches until the input ends,
/// reading fails, the input proves changed, or the receiver is gone.
fn read_batches(
    mut source: Box<dyn InputSource>,
    resume: &Resume,
    tx: &mpsc::Sender<Result<IngestBatch, ReadError>>,
) {
    let skip = resume.skip;
    let mut batch = IngestBatch::default();
    let mut last_sent = Instant::now();
    let mut fingerprint = Fingerprint::default();
    // Checked once, where the lines read before end.
    let mut to_check = resume.fingerprint.as_deref().filter(|_| skip > 0);
    let mut check = |fingerprint: &Fingerprint, read: u64| {
        let Some(expected) = to_check.take() else {
            return true;
        };
        if fingerprint.hex() == expected {
            return true;
        }
        let detail = if read < skip {
            format!("it now ends at line {read}, but {skip} lines were read before")
        } else {
            format!("lines 1-{skip}, read before, are not the same now")
        };
        let _ = tx.blocking_send(Err(ReadError::Changed(detail)));
        false
    };
    for item in source.by_ref() {
        let input = match item {
            Ok(input) => input,
            Err(e) => {
                let _ = tx.blocking_send(Err(ReadError::Io(e)));
                return;
            }
        };
        if input.line() <= skip {
            fingerprint.add(&input);
            continue;
        }
        if !check(&fingerprint, skip) {
            return;
        }
        fingerprint.add(&input);
        batch.through_line = input.line();
        batch.inputs.push(input);
        if batch.inputs.len() >= BATCH_LINES || last_sent.elapsed() >= BATCH_LINGER {
            batch.fingerprint = Some(fingerprint.hex());
            if tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                return;
            }
            last_sent = Instant::now();
        }
    }
    if !check(&fingerprint, source.consumed()) {
        return;
    }
    batch.through_line = source.consumed().max(skip);
    batch.complete = true;
    batch.fingerprint = Some(fingerprint.hex());
    let _ = tx.blocking_send(Ok(batch));
}
