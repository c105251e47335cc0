//! The runs the server has going: at most one per job, each a
//! [`volley::fetch_job`] on the server's store, all under one politeness
//! budget ([`volley::Control::budget`]).
//!
//! Jobs live in the database, not here: this map only says which of them
//! this process is fetching now. A job is started when it is created with
//! its inputs, when it is resumed, and when the server starts (every
//! active job with work left), so a restarted or killed server picks its
//! jobs up again by itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use volley::input::InputSource;
use volley::store::Job;
use volley::{Control, FetchSpec, Progress};

/// A job being fetched by this process.
struct Running {
    control: Control,
    /// Taken by the first [`Runs::stop`] that waits for it.
    handle: Option<JoinHandle<()>>,
    /// When the run was first seen with its counts loaded, and its
    /// outcomes then (requests/s counts from there).
    baseline: Option<(Instant, u64)>,
}

/// What the API shows of a running job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Live {
    /// Requests in flight now.
    pub in_flight: u64,
    /// Outcomes recorded per second since this run started.
    pub per_sec: f64,
}

/// Why a job's last run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The error chain, for a person.
    pub message: String,
    /// Whether the job's input was to blame (unreadable, or changed since
    /// an interrupted upload), not the server.
    pub input: Option<InputFault>,
}

/// How a job's input failed its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFault {
    /// It could not be read.
    Unreadable,
    /// It differs from the part stored by an earlier upload.
    Changed,
}

/// The server's runs; see the module docs.
pub struct Runs {
    backend: Arc<crate::Backend>,
    budget: Arc<volley::politeness::host::Hosts>,
    observer: Arc<dyn volley::stats::Observer>,
    running: Mutex<HashMap<String, Running>>,
    /// Errors of runs that failed, by job (shown by the API until the next
    /// run of the job).
    failures: Mutex<HashMap<String, Failure>>,
    /// Bumped whenever a run starts or ends: wakes event streams.
    changed: watch::Sender<u64>,
    /// Fired at shutdown: no new run starts.
    closing: CancellationToken,
    /// Names of jobs whose run ended (their webhook may be owed).
    ended: mpsc::UnboundedSender<String>,
    /// HTTP clients shared by the jobs whose client settings are equal.
    clients: Arc<volley::http::clients::ClientCache>,
}

impl Runs {
    /// Runs on `backend`, sharing `budget`, reporting commits to `observer`;
    /// the receiver gets the name of each job whose run ends.
    pub fn new(
        backend: Arc<crate::Backend>,
        budget: Arc<volley::politeness::host::Hosts>,
        observer: Arc<dyn volley::stats::Observer>,
    ) -> (Runs, mpsc::UnboundedReceiver<String>) {
        let (ended, ended_rx) = mpsc::unbounded_channel();
        let runs = Runs {
            backend,
            budget,
            observer,
            running: Mutex::default(),
            failures: Mutex::default(),
            changed: watch::Sender::new(0),
            closing: CancellationToken::new(),
            ended,
            clients: Arc::default(),
        };
        (runs, ended_rx)
    }

    /// A receiver that sees a new value whenever a run starts or ends.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Wakes event streams: something about a job changed.
    pub fn changed(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `job` is being fetched now.
    pub fn is_running(&self, job: &str) -> bool {
        self.map().contains_key(job)
    }

    /// Live figures of `job`, if it is running.
    pub fn live(&self, job: &str) -> Option<Live> {
        let mut map = self.map();
        let run = map.get_mut(job)?;
        let p = run.control.progress.snapshot();
        if run.baseline.is_none() && p.total > 0 {
            run.baseline = Some((Instant::now(), p.finished));
        }
        let (since, before) = run.baseline.unwrap_or((Instant::now(), p.finished));
        let secs = since.elapsed().as_secs_f64();
        let done_now = p.finished.saturating_sub(before);
        Some(Live {
            in_flight: p.in_flight,
            per_sec: if secs > 0.0 {
                done_now as f64 / secs
            } else {
                0.0
            },
        })
    }

    /// The live progress counters of every running job, by name.
    pub fn progress(&self) -> Vec<(String, Arc<Progress>)> {
        self.map()
            .iter()
            .map(|(name, run)| (name.clone(), Arc::clone(&run.control.progress)))
            .collect()
    }

    /// The last failure of `job`'s runs, if its last run failed.
    pub fn failure(&self, job: &str) -> Option<Failure> {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(job)
            .cloned()
    }

    /// Starts fetching `job` with `spec`, unless it is running already or
    /// the server is closing; with `input`, the run ingests it as it
    /// fetches (a job whose input is not all stored needs one). Returns the
    /// run's progress if it started.
    pub fn start(
        self: &Arc<Self>,
        job: Job,
        spec: FetchSpec,
        input: Option<Box<dyn InputSource>>,
    ) -> Option<Arc<Progress>> {
        if self.closing.is_cancelled() {
            return None;
        }
        let mut map = self.map();
        if map.contains_key(&job.name) {
            return None;
        }
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&job.name);
        let progress = Arc::new(Progress::default());
        let control = Control {
            stop: CancellationToken::new(),
            progress: Arc::clone(&progress),
            budget: Some(Arc::clone(&self.budget)),
            observer: Some(Arc::clone(&self.observer)),
            clients: Some(Arc::clone(&self.clients)),
        };
        let (runs, backend, name) = (
            Arc::clone(self),
            Arc::clone(&self.backend),
            job.name.clone(),
        );
        let run_control = control.clone();
        let handle = tokio::spawn(async move {
            let result = backend.fetch_job(&job, input, spec, &run_control).await;
            match result {
                Ok(report) => tracing::info!(
                    job = %job.name,
                    interrupted = report.interrupted,
                    fetched = report.tally.fetched,
                    "run ended"
                ),
                Err(e) => {
                    let message = volley::http::fetch::error_chain(&e);
                    tracing::warn!(job = %job.name, "run failed: {message}");
                    let input = match e {
                        volley::RunError::Input(_) => Some(InputFault::Unreadable),
                        volley::RunError::InputChanged { .. } => Some(InputFault::Changed),
                        _ => None,
                    };
                    runs.failures
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(job.name.clone(), Failure { message, input });
                }
            }
            runs.map().remove(&job.name);
            runs.changed();
            let _ = runs.ended.send(job.name.clone());
        });
        map.insert(
            name,
            Running {
                control,
                handle: Some(handle),
                baseline: None,
            },
        );
        drop(map);
        self.changed();
        Some(progress)
    }

    /// Waits until `job` has no run (at once if it has none).
    pub async fn ended(&self, job: &str) {
        let mut watch = self.watch();
        while self.is_running(job) {
            if watch.changed().await.is_err() {
                return;
            }
        }
    }

    /// Stops `job`'s run, if any, and waits until it has ended (its
    /// requests in flight get the job's grace period).
    pub async fn stop(&self, job: &str) {
        let handle = {
            let mut map = self.map();
            map.get_mut(job).and_then(|run| {
                run.control.stop.cancel();
                run.handle.take()
            })
        };
        if let Some(handle) = handle {
            let _ = handle.await;
        }
        // The run removes itself; make sure, even if its task panicked.
        self.map().remove(job);
        self.changed();
    }

    /// Stops every run (shutdown) and waits for them; starts no more.
    pub async fn stop_all(&self) {
        self.closing.cancel();
        let names: Vec<String> = self.map().keys().cloned().collect();
        for name in &names {
            if let Some(run) = self.map().get(name) {
                run.control.stop.cancel();
            }
        }
        for name in names {
            self.stop(&name).await;
        }
    }
}
