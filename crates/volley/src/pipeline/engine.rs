//! The engine: one run of one job, wiring the stages together.
//!
//! ```text
//! input ─▶ ingest ─▶ store (tasks) ─▶ scheduler ─▶ fetch tasks ─▶ writer ─▶ store (outcomes)
//!          (blocking   lease pages     gates,        attempts,      batched
//!           reader)                    window        bodies         commits
//! ```
//!
//! [`fetch_job`] runs until every task of the job has an outcome, or until
//! [`Control::stop`] fires: then it stops leasing, gives requests in flight
//! the grace period ([`FetchSpec::grace`]), lets the writer commit what
//! finished, returns unfinished tasks to pending, and reports
//! [`RunReport::interrupted`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::http::clients::{ClientCache, Clients};
use crate::http::cookies::Jar;
use crate::http::{body, fetch};
use crate::input::InputSource;
use crate::options::FetchSpec;
use crate::pipeline::ingest;
use crate::pipeline::run::{Frontier, Shared};
use crate::pipeline::scheduler;
use crate::pipeline::writer;
use crate::stats::{Progress, RunReport, Tally};
use crate::store::{Job, Store, StoreError};
use crate::warc::WarcError;
use crate::warc::capture::Capturing;
use crate::warc::writer::{Encoders, WarcWriter};

pub use super::run::RunError;

/// What the caller holds while a run goes: a way to stop it, and its
/// live counters.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Fire to stop gracefully (Ctrl-C). The run returns after the grace
    /// period at most, with [`RunReport::interrupted`] set.
    pub stop: CancellationToken,
    /// Live counters, for progress displays.
    pub progress: Arc<Progress>,
    /// Politeness shared with the other runs of this process, if any: per
    /// host limits and one global concurrency for all of them (`volley
    /// serve` runs many jobs on one budget). The run's own limits apply
    /// too, so a job can be stricter than the budget, never looser.
    pub budget: Option<Arc<crate::politeness::host::Hosts>>,
    /// Told of every committed batch of outcomes (metrics), if set.
    pub observer: Option<Arc<dyn crate::stats::Observer>>,
    /// HTTP clients shared with the other runs of this process, if any
    /// (`volley serve`): a run whose client settings equal an earlier
    /// run's uses its clients, connections and TLS sessions.
    pub clients: Option<Arc<ClientCache>>,
}

/// What a run builds from its options before it starts.
struct Prepared {
    jar: Option<Arc<Jar>>,
    clients: Clients,
    authorization: Option<reqwest::header::HeaderValue>,
}

/// Checks `spec` and reads the files it names (cookie jar, certificates,
/// keys, token), building the clients, or taking them from `cache`.
fn prepare(spec: &FetchSpec, cache: Option<&ClientCache>) -> Result<Prepared, RunError> {
    spec.validate()?;
    let jar = Jar::open(spec.keeps_cookies(), spec.cookie_jar.as_deref())?.map(Arc::new);
    let clients = match cache {
        Some(cache) => cache.clients(spec, jar.clone())?,
        None => Clients::build(spec, jar.clone())?,
    };
    let authorization = fetch::authorization(spec)?;
    Ok(Prepared {
        jar,
        clients,
        authorization,
    })
}

/// With `--warc`: the job's archive writer, its files cut back to what
/// the database committed ([`WarcWriter::repair`]), and what fetches
/// capture with; payloads past the memory budget spill beside the files.
///
/// # Errors
/// [`RunError::Warc`] when a file cannot be repaired or the directory
/// made; [`RunError::Store`].
async fn open_archive<S: Store>(
    store: &S,
    job: &Job,
    spec: &FetchSpec,
) -> Result<(Option<WarcWriter>, Option<Arc<Capturing>>, Option<Encoders>), RunError> {
    let Some(options) = spec.warc_options() else {
        return Ok((None, None, None));
    };
    let dir = match std::path::Path::new(&options.prefix).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|source| WarcError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let capturing = Arc::new(Capturing::new(options.digest, dir.clone()));
    let encoders = Encoders::start(options.digest).map_err(|source| WarcError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let files = store.warc_files(job.id).await?;
    let mut writer = WarcWriter::new(options, warcinfo(job, spec));
    let writer = tokio::task::spawn_blocking(move || writer.repair(&files).map(|()| writer))
        .await
        .map_err(|e| RunError::Internal(format!("WARC repair failed: {e}")))??;
    Ok((Some(writer), Some(capturing), Some(encoders)))
}

/// The `warcinfo` block of a job's files (WARC 1.1 §6.2, `application/warc-fields`):
/// the software, the format, the job, and its options that differ from
/// the defaults, as JSON (secrets are never among them).
fn warcinfo(job: &Job, spec: &FetchSpec) -> String {
    let defaults = crate::options::table::defaults();
    let options: serde_json::Map<String, serde_json::Value> = match serde_json::to_value(spec) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter(|(key, value)| defaults.get(key) != Some(value))
            .collect(),
        _ => serde_json::Map::new(),
    };
    let robots = if spec.respect_robots {
        "obey"
    } else {
        "ignore"
    };
    format!(
        "software: volley/{}\r\nformat: WARC File Format 1.1\r\n\
         conformsTo: http://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/\r\n\
         isPartOf: {}\r\nhttp-header-user-agent: {}\r\nrobots: {robots}\r\n\
         volley-options: {}\r\n",
        env!("CARGO_PKG_VERSION"),
        job.name,
        spec.user_agent,
        serde_json::Value::Object(options)
    )
}

/// Checks everything about `spec` that [`fetch_job`] would refuse before
/// fetching: the options fit together, and the files they name (cookie
/// jar, CA and client certificates, bearer token) read and parse. A front
/// end calls it before it creates a job, so that a usage error leaves no
/// job behind.
///
/// # Errors
/// [`RunError::Spec`] for options, [`RunError::Client`] and
/// [`RunError::Cookies`] for the files, as [`fetch_job`] returns them.
pub fn preflight(spec: &FetchSpec) -> Result<(), RunError> {
    prepare(spec, None).map(|_| ())
}

/// Runs `job` to completion (or until stopped), fetching with `spec`.
///
/// `input` is read from the job's ingest cursor on, even when the job has
/// read all of its input before: lines appended since become tasks (what
/// was read before must come first, unchanged: see the `ingest` stage). It
/// may be `None` only if the job's input is already fully ingested (or, on
/// a shared store, another process ingests it).
///
/// # Errors
/// See [`RunError`]. On error, outcomes committed so far stay committed and
/// unfinished tasks return to pending, so running the job again resumes it.
pub async fn fetch_job<S: Store>(
    store: Arc<S>,
    job: &Job,
    input: Option<Box<dyn InputSource>>,
    spec: FetchSpec,
    control: &Control,
) -> Result<RunReport, RunError> {
    let Prepared {
        jar,
        clients,
        authorization,
    } = prepare(&spec, control.clients.as_deref())?;
    let insecure = spec.insecure;
    if let Some(dir) = &spec.save_bodies {
        body::prepare_dir(dir).map_err(|source| RunError::BodiesDir {
            dir: dir.display().to_string(),
            source,
        })?;
    }
    let (warc, capturing, encoders) = open_archive(&*store, job, &spec).await?;
    let started = Instant::now();
    let progress = Arc::clone(&control.progress);
    let stop = control.stop.clone();
    let counts = store.counts(job.id).await?;
    progress.total.store(counts.total(), Ordering::Relaxed);
    progress
        .earlier
        .store(counts.done + counts.failed, Ordering::Relaxed);
    progress
        .finished
        .store(counts.done + counts.failed, Ordering::Relaxed);
    progress.failed.store(counts.failed, Ordering::Relaxed);

    let frontier = Arc::new(Frontier::default());
    let ingesting = if let Some(reader) = input {
        // Read from the cursor on, also for a job whose input was all read:
        // lines appended since (stdin given again) become its tasks.
        let (store, job, progress, stop, frontier, observer) = (
            Arc::clone(&store),
            job.clone(),
            Arc::clone(&progress),
            stop.clone(),
            Arc::clone(&frontier),
            control.observer.clone(),
        );
        Some(tokio::spawn(async move {
            let result = ingest::run(
                store,
                &job,
                reader,
                progress,
                frontier,
                observer,
                stop.clone(),
            )
            .await;
            if result.is_err() {
                stop.cancel();
            }
            result
        }))
    } else if job.ingest_complete {
        progress.set_ingest_complete();
        None
    } else if S::SHARED {
        // Another process ingests; the scheduler watches the job row.
        None
    } else {
        return Err(RunError::InputNeeded(job.name.clone()));
    };

    let (outcomes, outcomes_rx) = mpsc::channel(writer::BATCH_MAX * 2);
    let writing = tokio::spawn(writer::run(
        Arc::clone(&store),
        job.id,
        outcomes_rx,
        Arc::clone(&progress),
        Arc::clone(&frontier),
        control.observer.clone(),
        warc,
    ));
    let deadline = CancellationToken::new();
    let deadline_timer = spec.deadline.map(|after| {
        let deadline = deadline.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            deadline.cancel();
        })
    });
    let abandon = CancellationToken::new();
    let grace = spec.grace;
    let grace_timer = tokio::spawn({
        let (stop, abandon) = (stop.clone(), abandon.clone());
        async move {
            stop.cancelled().await;
            tokio::time::sleep(grace).await;
            abandon.cancel();
        }
    });
    let shared = match Shared::new(
        clients,
        spec,
        outcomes,
        Arc::clone(&progress),
        stop.clone(),
        abandon,
        deadline,
    ) {
        Ok(shared) => Arc::new(Shared {
            budget: control.budget.clone(),
            authorization,
            capturing,
            encoders,
            ..shared
        }),
        Err(e) => {
            stop.cancel();
            return Err(e.into());
        }
    };
    // A lost lease (shared stores) stops the run at once: other workers
    // may already hold its tasks, so nothing in flight may go on.
    let lost = store.lease_lost();
    let lost_watch = tokio::spawn({
        let (lost, stop, abandon) = (lost.clone(), stop.clone(), shared.abandon.clone());
        async move {
            lost.cancelled().await;
            stop.cancel();
            abandon.cancel();
        }
    });
    let scheduled = scheduler::run(&*store, job.id, Arc::clone(&shared), frontier).await;
    lost_watch.abort();
    let hosts_peak = shared.hosts.peak();
    // Shared holds an outcome sender: drop it, or the writer never ends.
    drop(shared);
    // Every fetch task has ended, so every outcome sender is gone and the
    // writer drains its channel and ends.
    grace_timer.abort();
    if let Some(timer) = deadline_timer {
        timer.abort();
    }
    let written = writing
        .await
        .map_err(|e| RunError::Internal(format!("writer task failed: {e}")))
        .and_then(|r| r);
    let ingested = match ingesting {
        Some(handle) => handle
            .await
            .map_err(|e| RunError::Internal(format!("ingest task failed: {e}")))
            .and_then(|r| r),
        None => Ok(Tally::default()),
    };
    // Saved whatever happened: the cookies a run collected are worth
    // keeping even when it failed.
    let saved = jar.as_ref().map_or(Ok(()), |jar| jar.save());
    store.release(job.id).await?;
    if lost.is_cancelled() {
        return Err(StoreError::LeaseLost.into());
    }
    // The cause comes first: a store failure explains the rest.
    let mut tally = written?;
    let from_ingest = ingested?;
    scheduled?;
    saved?;
    for (class, n) in from_ingest.by_class {
        tally.add_unfetched(class, n);
    }
    let counts = store.counts(job.id).await?;
    Ok(RunReport {
        tally,
        interrupted: counts.unfinished() > 0 || !progress.ingest_complete.load(Ordering::Acquire),
        counts,
        elapsed: started.elapsed(),
        hosts_peak,
        fenced: progress.fenced.load(Ordering::Relaxed),
        insecure,
    })
}
