//! `volley serve`: the volley engine behind an HTTP API, with live progress
//! (Server-Sent Events), Prometheus metrics and a dashboard.
//!
//! One long-lived process owns the store, the per-host politeness budget
//! shared by every job ([`volley::Control::budget`]) and the runs
//! ([`runs::Runs`]). Jobs live in the database: a restarted server resumes
//! the unfinished ones by itself.
//!
//! Modules: [`api`] (the `/v1` routes and their JSON), [`auth`] (bearer
//! token and the dashboard's session cookie), [`stream`] (NDJSON and SSE),
//! [`runs`], [`metrics`], [`notify`] (completion webhooks), [`view`] (a
//! job's status and JSON); the store is the engine's
//! [`volley::database::Backend`]. The dashboard,
//! the OpenAPI 3.1 description (`/openapi.json`) and its reader (`/docs`)
//! are embedded files.

#![deny(missing_docs)]
#![deny(unreachable_pub)]

pub mod api;
pub mod auth;
pub mod metrics;
pub mod notify;
pub mod runs;
pub mod stream;
pub mod view;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use volley::options::Layer;
use volley::store::StoreError;

pub use volley::database::{Backend, Database};

/// Largest JSON request body, in bytes (job creation with inline URLs).
pub const MAX_JSON_BYTES: usize = 16 * 1024 * 1024;

/// What `volley serve` was started with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The database: a SQLite file, or PostgreSQL shared with other
    /// servers and `volley work` processes.
    pub db: Database,
    /// The bearer token every `/v1` route requires; `None` only on a
    /// loopback address.
    pub token: Option<String>,
    /// The server's option layers (config file, environment, flags): every
    /// job's options are layered over them. Their `concurrency`,
    /// `per-host`, `rate`, `global-rate` and host rules are also the budget
    /// all jobs share.
    pub layers: Vec<Layer>,
    /// Ranges opened on purpose despite the address rules (CIDR texts).
    pub allow_private: Vec<String>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server's options do not work.
    #[error("{0}")]
    Options(String),
    /// The listener failed.
    #[error("serving HTTP failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What every handler shares.
pub struct App {
    /// The store.
    pub backend: Arc<Backend>,
    /// The runs going.
    pub runs: Arc<runs::Runs>,
    /// The politeness budget shared by all jobs.
    pub budget: Arc<volley::politeness::host::Hosts>,
    /// Prometheus metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// Bearer token and sessions.
    pub auth: auth::Auth,
    /// The server's option layers; see [`ServeConfig::layers`].
    pub layers: Vec<Layer>,
    /// See [`ServeConfig::allow_private`].
    pub allow_private: Vec<String>,
    /// Fired at shutdown: event streams end.
    pub shutdown: CancellationToken,
    /// Completion webhooks.
    pub notifier: notify::Notifier,
    /// Names of jobs whose run ended; taken by [`serve`].
    ended: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>,
    /// Each job's recent latency (`latency_ms` of `GET /v1/jobs/{name}`)
    /// as last computed (see `api::latency`).
    latencies: Mutex<std::collections::HashMap<i64, api::Latency>>,
}

impl App {
    /// Opens the store and builds the shared state; starts nothing.
    ///
    /// # Errors
    /// [`ServeError::Store`] when the database cannot be opened (or another
    /// process holds it); [`ServeError::Options`] when the server's options
    /// do not resolve.
    pub async fn open(config: ServeConfig) -> Result<Arc<App>, ServeError> {
        let spec = volley::options::resolve(&config.layers)
            .map_err(|e| ServeError::Options(e.to_string()))?;
        volley::http::guard::AddressRules::deny_private(&config.allow_private)
            .map_err(|e| ServeError::Options(e.to_string()))?;
        if spec.proxy.is_some() {
            return Err(ServeError::Options(
                "--proxy cannot be used with volley serve: the proxy would make the connections, so the address rules could not be checked".into(),
            ));
        }
        let policy = spec
            .host_policy()
            .map_err(|e| ServeError::Options(e.to_string()))?;
        let budget = Arc::new(volley::politeness::host::Hosts::new(
            policy,
            spec.concurrency,
            spec.global_rate,
        ));
        let backend = Arc::new(Backend::open(&config.db).await?);
        let metrics = Arc::new(metrics::Metrics::new());
        let notifier = notify::Notifier::new(&config.allow_private).map_err(ServeError::Options)?;
        let (runs, ended) = runs::Runs::new(
            Arc::clone(&backend),
            Arc::clone(&budget),
            Arc::clone(&metrics) as Arc<dyn volley::stats::Observer>,
        );
        let runs = Arc::new(runs);
        Ok(Arc::new(App {
            backend,
            runs,
            budget,
            metrics,
            auth: auth::Auth::new(config.token),
            layers: config.layers,
            allow_private: config.allow_private,
            shutdown: CancellationToken::new(),
            notifier,
            ended: Mutex::new(Some(ended)),
            latencies: Mutex::default(),
        }))
    }

    /// Starts every active job with work left (a restart resumes them),
    /// and sends the completion webhooks still owed.
    ///
    /// # Errors
    /// Store errors.
    pub async fn resume_jobs(self: &Arc<Self>) -> Result<usize, StoreError> {
        let records = self.backend.job_records(None).await?;
        let mut started = 0;
        for record in records {
            let job = &record.summary.job;
            if record.notify.is_some() && record.notified.is_none() {
                notify::deliver(self, job.name.clone());
            }
            let pending = record.summary.counts.unfinished() > 0;
            if record.state == volley::store::JobState::Active && job.ingest_complete && pending {
                match api::job_spec(self, record.options.as_deref()) {
                    Ok(spec) => {
                        self.runs.start(job.clone(), spec, None);
                        started += 1;
                    }
                    Err(e) => tracing::warn!(job = %job.name, "cannot resume: {}", e.message),
                }
            }
        }
        Ok(started)
    }
}

/// The whole HTTP surface over `app`.
pub fn router(app: Arc<App>) -> Router {
    let v1 = Router::new()
        .route("/jobs", get(api::list_jobs).post(api::create_job))
        .route("/jobs/{name}", get(api::get_job).delete(api::delete_job))
        .route(
            "/jobs/{name}/inputs",
            post(api::upload_inputs).layer(DefaultBodyLimit::disable()),
        )
        .route("/jobs/{name}/outcomes", get(stream::outcomes))
        .route("/jobs/{name}/items", get(stream::items))
        .route("/jobs/{name}/events", get(stream::events))
        .route("/jobs/{name}/pause", post(api::pause_job))
        .route("/jobs/{name}/resume", post(api::resume_job))
        .route("/jobs/{name}/cancel", post(api::cancel_job))
        .route("/hosts", get(api::hosts))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            auth::require,
        ));
    let metrics = Router::new()
        .route("/metrics", get(api::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            auth::require,
        ));
    Router::new()
        .nest("/v1", v1)
        .merge(metrics)
        .route("/", get(api::dashboard))
        .route("/session", post(auth::open_session))
        .route("/session/link", get(auth::open_by_link))
        .route("/healthz", get(api::healthz))
        .route("/openapi.json", get(api::openapi))
        .route("/docs", get(api::docs))
        .route("/readyz", get(api::readyz))
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .with_state(app)
}

/// Whether `addr` is a loopback address (where a token is optional).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Serves `app` on `listener` until `shutdown` fires, then drains: stops
/// taking requests and new work, gives runs their grace period, and
/// returns once every run has stopped (unfinished tasks stay pending for
/// the next start).
///
/// # Errors
/// [`ServeError::Io`] when serving fails; store errors when resuming jobs.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let resumed = app.resume_jobs().await?;
    if resumed > 0 {
        tracing::info!("resumed {resumed} unfinished jobs");
    }
    let ended = app
        .ended
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(mut ended) = ended {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = app.shutdown.cancelled() => break,
                    job = ended.recv() => match job {
                        Some(job) => notify::deliver(&app, job),
                        None => break,
                    },
                }
            }
        });
    }
    let router = router(Arc::clone(&app));
    let closing = {
        let (shutdown, app) = (shutdown.clone(), Arc::clone(&app));
        async move {
            shutdown.cancelled().await;
            app.shutdown.cancel();
        }
    };
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(closing)
        .await;
    app.runs.stop_all().await;
    if let Err(e) = app.backend.close().await {
        tracing::warn!("closing the store: {e}");
    }
    served.map_err(ServeError::Io)
}
