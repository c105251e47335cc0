//! The writer: the one task that records fetched outcomes.
//!
//! Fetch tasks send each finished outcome into a bounded channel; the writer
//! takes what has arrived, up to [`BATCH_MAX`] outcomes, lingering at most
//! [`LINGER`] for a batch to fill (looking every [`TICK`], so that a busy
//! run wakes the writer once a tick rather than once an outcome), and
//! commits the batch in one transaction ([`Store::record`]). Under load,
//! batches fill at once and commits are few; when outcomes trickle in, each
//! waits at most [`LINGER`]. A batch holding a page that leads on (a next
//! page, a crawl's links) commits as soon as the channel is empty, with what
//! had arrived: its chain or crawl can go on only once those tasks are
//! committed.
//!
//! While a batch commits, new outcomes queue in the channel; when it is full,
//! fetch tasks wait to send, and so stop starting new requests: a slow disk
//! slows the whole pipeline instead of growing memory (backpressure).
//!
//! On a shared store (PostgreSQL) up to [`COMMITS_IN_FLIGHT`] batches commit
//! at once, each in its own transaction on its own connection, so that a
//! database a network away costs round trips in parallel rather than one
//! after another. Each batch is still atomic and fenced task by task;
//! batches do not depend on each other's order. With `--warc`, and on
//! SQLite (one writer connection), one batch commits at a time.
//!
//! Progress counters move only after a commit, so a display never shows an
//! outcome as recorded before it is durable.
//!
//! With `--warc`, each batch's exchanges are archived first ([`archive`]):
//! the records are appended to the job's file and flushed to the operating
//! system, and only then do the outcomes commit, each with where its
//! records are. A crash between the two leaves records past the file's
//! committed end, which the next run cuts ([`crate::warc`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use crate::outcome::{Class, Outcome};
use crate::pipeline::run::{Finished, Frontier, RunError};
use crate::stats::{Observed, Observer, Progress, Tally};
use crate::store::{Recorded, Store, StoreError};
use crate::warc::writer::{Lookup, Slot, WarcWriter};
use crate::warc::{EarlierCaptures, record};

/// Most outcomes committed in one transaction.
pub(crate) const BATCH_MAX: usize = 1024;

/// Longest wait for a batch to fill before committing what is there.
pub(crate) const LINGER: Duration = Duration::from_millis(20);

/// How often the writer looks for more outcomes while a batch lingers. A
/// page that leads on and arrives mid-batch waits at most this long.
const TICK: Duration = Duration::from_millis(2);

/// Most batches committing at once on a shared store (see the module docs).
pub(crate) const COMMITS_IN_FLIGHT: usize = 2;

/// A batch's commit as it returns: what the store recorded, what the writer
/// kept of the batch, and how long the commit took.
type Commit = (Result<Recorded, StoreError>, Committing, Duration);

/// What the writer keeps of a batch until its commit returns.
struct Committing {
    n: u64,
    with_pages: u64,
    failed: u64,
    bytes: u64,
    observed: Vec<Observed>,
}

/// Receives outcomes until every sender is dropped, committing in batches.
///
/// # Errors
/// The first store error, or archive error ([`RunError::Warc`]); the run
/// must stop, since outcomes can no longer be recorded. Outcomes of the
/// failed batch stay unrecorded and their tasks leased, to be fetched
/// again by the next run.
pub(crate) async fn run<S: Store>(
    store: Arc<S>,
    job: i64,
    mut rx: mpsc::Receiver<Finished>,
    progress: Arc<Progress>,
    frontier: Arc<Frontier>,
    observer: Option<Arc<dyn Observer>>,
    mut warc: Option<WarcWriter>,
) -> Result<Tally, RunError> {
    let mut tally = Tally::default();
    let in_flight = if S::SHARED && warc.is_none() {
        COMMITS_IN_FLIGHT
    } else {
        1
    };
    let mut commits: tokio::task::JoinSet<Commit> = tokio::task::JoinSet::new();
    let after = |done: Result<Commit, tokio::task::JoinError>| -> Result<(), RunError> {
        let (recorded, c, took) =
            done.map_err(|e| RunError::Internal(format!("a commit failed: {e}")))?;
        let recorded = recorded?;
        if let Some(observer) = &observer {
            observer.committed(&c.observed, took);
        }
        Progress::add(&progress.total, recorded.pages);
        // New pages are new tasks. On a shared store a commit also ends
        // this worker's hold on its tasks (their hosts got room for claims
        // when they were fetched, see `tell_fetched`): a host where it now
        // holds nothing is given back at the next lease, which may then
        // claim another host within the worker's fair share.
        if recorded.pages > 0 || (S::SHARED && recorded.outcomes > 0) {
            frontier.grew();
        }
        frontier.pages_committed(c.with_pages);
        Progress::add(&progress.finished, c.n - recorded.fenced);
        Progress::add(&progress.fenced, recorded.fenced);
        Progress::add(&progress.failed, c.failed);
        Progress::add(&progress.bytes, c.bytes);
        Ok(())
    };
    loop {
        let first = tokio::select! {
            Some(done) = commits.join_next() => {
                after(done)?;
                continue;
            }
            first = rx.recv() => match first {
                Some(first) => first,
                None => break,
            },
        };
        // A batch commits only once a commit slot is free: what arrives
        // while the commits in flight finish joins it, so that batches stay
        // large. On a shared store it is taken from the channel as it comes
        // (a tick at a time), so that its hosts have room for new claims at
        // once, not when the batch starts.
        let mut batch = vec![first];
        let mut told = 0;
        while commits.len() >= in_flight {
            if !S::SHARED {
                if let Some(done) = commits.join_next().await {
                    after(done)?;
                }
                continue;
            }
            while batch.len() < BATCH_MAX {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            told = tell_fetched(&*store, job, &frontier, &batch, told);
            tokio::select! {
                Some(done) = commits.join_next() => after(done)?,
                () = tokio::time::sleep(TICK) => {}
            }
        }
        // A pagination chain or a crawl waits on this commit: do not
        // linger, but take what has already arrived (a crawl's pages come
        // many at a time: one commit for all of them).
        let mut urgent = batch.iter().any(|f| f.outcome.leads_on());
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH_MAX {
            let next = match rx.try_recv() {
                Ok(next) => next,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) if urgent => break,
                Err(TryRecvError::Empty) => {
                    // Look again a tick later rather than wake for each
                    // outcome as it is sent: one wake-up per tick, not one
                    // per outcome, while the batch fills.
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(deadline.min(now + TICK)).await;
                    continue;
                }
            };
            urgent |= next.outcome.leads_on();
            batch.push(next);
        }
        tell_fetched(&*store, job, &frontier, &batch, told);
        let (mut failed, mut bytes) = (0, 0);
        if warc.is_some() {
            let slots = batch
                .iter_mut()
                .map(|f| f.records.take().map_or(Slot::Empty, Slot::Encoded))
                .collect();
            let placed = archive(&*store, job, &mut warc, slots).await?;
            for (f, slot) in batch.iter_mut().zip(placed) {
                if let Slot::Placed(placement) = slot {
                    f.outcome.warc = Some(placement);
                }
            }
        }
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
        let committing = Committing {
            n,
            with_pages,
            failed,
            bytes,
            observed,
        };
        let store = Arc::clone(&store);
        commits.spawn(async move {
            let started = std::time::Instant::now();
            let recorded = store.record(job, outcomes).await;
            (recorded, committing, started.elapsed())
        });
    }
    while let Some(done) = commits.join_next().await {
        after(done)?;
    }
    if let Some(mut writer) = warc {
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .map_err(|e| RunError::Internal(format!("WARC writer failed: {e}")))??;
    }
    Ok(tally)
}

/// Tells the store that the tasks of `batch[from..]` are fetched, so that
/// their hosts have room for new claims from now rather than from their
/// commit ([`Store::fetched`]), and on a shared store wakes the scheduler
/// to claim there. Returns the batch's length: where to start next time.
fn tell_fetched<S: Store>(
    store: &S,
    job: i64,
    frontier: &Frontier,
    batch: &[Finished],
    from: usize,
) -> usize {
    if let Some(new) = batch.get(from..).filter(|new| !new.is_empty()) {
        let ids: Vec<i64> = new.iter().map(|f| f.outcome.task_id).collect();
        store.fetched(job, &ids);
        if S::SHARED {
            frontier.grew();
        }
    }
    batch.len()
}

/// Writes the records of a batch's `captures` (see the module docs),
/// beginning new files as the writer fills them; returns each capture's
/// placement. Payloads the database archived before, or an earlier
/// capture of the batch did, become revisits.
///
/// # Errors
/// [`RunError::Warc`] when a file cannot be written, [`RunError::Store`]
/// when the database cannot be asked.
async fn archive<S: Store>(
    store: &S,
    job: i64,
    warc: &mut Option<WarcWriter>,
    mut captures: Vec<Slot>,
) -> Result<Vec<Slot>, RunError> {
    let (digests, uris) = lookups(&captures);
    let earlier = if digests.is_empty() && uris.is_empty() {
        EarlierCaptures::default()
    } else {
        store.warc_earlier(digests, uris).await?
    };
    let mut writer = warc
        .take()
        .ok_or_else(|| RunError::Internal("the WARC writer was lost".into()))?;
    writer.begin_batch();
    let earlier = Arc::new(earlier);
    let mut from = 0;
    while from < captures.len() {
        let file = if writer.needs_file() {
            let stamp = record::index_timestamp(&record::warc_date(std::time::SystemTime::now()));
            Some(
                store
                    .add_warc_file(job, writer.prefix().to_owned(), stamp)
                    .await?,
            )
        } else {
            None
        };
        let earlier = Arc::clone(&earlier);
        let (back, rest, written) = tokio::task::spawn_blocking(move || {
            let written = (|| {
                if let Some(file) = file {
                    writer.begin_file(file.id, &file.path)?;
                }
                writer.write(&mut captures[from..], &earlier)
            })();
            (writer, captures, written)
        })
        .await
        .map_err(|e| RunError::Internal(format!("WARC writer failed: {e}")))?;
        writer = back;
        captures = rest;
        from += written?;
    }
    *warc = Some(writer);
    Ok(captures)
}

/// What to ask the database before archiving a batch: the digests of its
/// whole, non-empty payloads, and the URIs of its `304`s to conditional
/// requests.
fn lookups(captures: &[Slot]) -> (Vec<String>, Vec<String>) {
    let (mut digests, mut uris) = (Vec::new(), Vec::new());
    let exchanges = captures
        .iter()
        .filter_map(|slot| match slot {
            Slot::Encoded(records) => Some(records),
            _ => None,
        })
        .flatten();
    for encoded in exchanges {
        match encoded.lookup() {
            Lookup::Digest(digest) => digests.push(digest.to_owned()),
            Lookup::Uri(uri) => uris.push(uri.to_owned()),
            Lookup::Nothing => {}
        }
    }
    digests.sort_unstable();
    digests.dedup();
    uris.sort_unstable();
    uris.dedup();
    (digests, uris)
}
