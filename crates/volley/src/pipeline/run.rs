//! What the stages of one run share: the [`Frontier`] signal between the
//! producers of tasks (ingest, the writer's next pages) and the scheduler,
//! the state every task reads ([`Shared`]), the envelope an outcome
//! travels to the writer in ([`Finished`]), and why a run fails
//! ([`RunError`]). Kept apart from the stages so
//! that each imports it and none imports another.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::header::HeaderValue;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::http::clients::Clients;
use crate::options::{FetchSpec, SpecError};
use crate::outcome::Outcome;
use crate::politeness::host::Hosts;
use crate::stats::Progress;
use crate::store::StoreError;

/// Why a run failed. Failed fetches are outcomes, not errors: these are
/// failures of the run itself.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration cannot work.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The HTTP client could not be built (CA files, TLS set-up).
    #[error(transparent)]
    Client(#[from] crate::http::clients::ClientError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cookie file could not be loaded or saved.
    #[error(transparent)]
    Cookies(#[from] crate::http::cookies::CookieError),
    /// Reading the input failed.
    #[error("reading the input failed: {0}")]
    Input(std::io::Error),
    /// The part of the input a job read before has changed since (lines
    /// edited, inserted or removed), so its tasks no longer match it.
    #[error(
        "the input of job '{job}' changed since it was read: {detail}; \
         to fetch it as it is now, pass --job NEW_NAME"
    )]
    InputChanged {
        /// The job.
        job: String,
        /// What changed.
        detail: String,
    },
    /// The job's input is not fully ingested, and no input was given.
    #[error("job '{0}' has input not yet read; give its input file again to resume it")]
    InputNeeded(String),
    /// The bodies directory could not be created.
    #[error("cannot create the bodies directory {dir}: {source}")]
    BodiesDir {
        /// The directory.
        dir: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A body could not be written to disk.
    #[error("writing a body to disk failed: {0}")]
    BodyIo(std::io::Error),
    /// The archive could not be written or repaired (`--warc`).
    #[error(transparent)]
    Warc(#[from] crate::warc::WarcError),
    /// An internal task failed (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Tells the scheduler that the frontier grew: ingest committed input, or
/// the writer committed pages found by pagination.
///
/// Producers commit, then bump `version`, then (for pages) lower
/// `pending_pages`, then notify. The scheduler reads `pending_pages` and the
/// ingest flag *before* `version`, so whatever made them final is visible in
/// the version it reads: it cannot decide the job is done while a committed
/// page waits unseen.
#[derive(Debug, Default)]
pub(crate) struct Frontier {
    version: AtomicU64,
    /// Outcomes with a next page, sent but not yet committed.
    pending_pages: AtomicU64,
    notify: Notify,
}

impl Frontier {
    /// New tasks were committed.
    pub(crate) fn grew(&self) {
        self.grew_then(|| {});
    }

    /// New tasks were committed, and `mark` makes something final that the
    /// scheduler reads before the version (the ingest flag): it runs after
    /// the version moves and before the wake-up, so a scheduler that sees
    /// its mark also sees the new version (and leases what it stands for)
    /// and one that does not is woken afterwards.
    pub(crate) fn grew_then(&self, mark: impl FnOnce()) {
        self.version.fetch_add(1, Ordering::Release);
        mark();
        self.notify.notify_waiters();
    }

    /// `n` outcomes with next pages were committed (after [`Frontier::grew`]).
    pub(crate) fn pages_committed(&self, n: u64) {
        if n > 0 {
            self.pending_pages.fetch_sub(n, Ordering::Release);
            self.notify.notify_waiters();
        }
    }

    /// How many times tasks were committed; read after the flags (see
    /// the type's docs).
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Outcomes with a next page sent to the writer and not yet committed.
    pub(crate) fn pending_pages(&self) -> u64 {
        self.pending_pages.load(Ordering::Acquire)
    }

    /// Woken by the next commit; enable it before reading the flags.
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// An outcome with a next page was sent to the writer.
    pub(crate) fn page_sent(&self) {
        self.pending_pages.fetch_add(1, Ordering::Release);
    }
}

/// What every task of a run shares.
pub(crate) struct Shared {
    pub clients: Clients,
    pub spec: FetchSpec,
    pub outcomes: mpsc::Sender<Finished>,
    pub progress: Arc<Progress>,
    pub stop: CancellationToken,
    pub abandon: CancellationToken,
    pub deadline: CancellationToken,
    pub hosts: Hosts,
    /// Politeness shared with other runs of this process (`volley serve`):
    /// every request also passes the budget's host and global gates.
    pub budget: Option<Arc<Hosts>>,
    /// Which addresses may be fetched ([`crate::http::guard`]).
    pub rules: crate::http::guard::AddressRules,
    /// Which requests go through a proxy ([`crate::http::proxy`]).
    pub proxy: crate::http::proxy::ProxyRoute,
    /// The run's `Authorization` (`--user`, `--bearer-token-file`).
    pub authorization: Option<HeaderValue>,
    /// With `--warc`: what each exchange is captured with.
    pub capturing: Option<Arc<crate::warc::capture::Capturing>>,
    /// With `--warc`: the threads that compress each exchange's records.
    pub encoders: Option<crate::warc::writer::Encoders>,
}

impl Shared {
    /// # Errors
    /// A host rule whose pattern is not a valid glob.
    pub(crate) fn new(
        clients: Clients,
        spec: FetchSpec,
        outcomes: mpsc::Sender<Finished>,
        progress: Arc<Progress>,
        stop: CancellationToken,
        abandon: CancellationToken,
        deadline: CancellationToken,
    ) -> Result<Shared, SpecError> {
        let policy = spec.host_policy()?;
        let rules = spec.address_rules()?;
        let hosts = Hosts::new(policy, spec.concurrency, spec.global_rate);
        let proxy = crate::http::proxy::ProxyRoute::new(&spec, |name| std::env::var(name).ok());
        Ok(Shared {
            clients,
            spec,
            outcomes,
            progress,
            stop,
            abandon,
            deadline,
            hosts,
            budget: None,
            rules,
            proxy,
            authorization: None,
            capturing: None,
            encoders: None,
        })
    }
}

/// An outcome on its way to the store, with the host it came from and,
/// with `--warc`, its exchanges' records, to archive before it commits.
#[derive(Debug)]
pub(crate) struct Finished {
    pub outcome: Outcome,
    pub host: Box<str>,
    pub records: Option<Vec<crate::warc::writer::Encoded>>,
}
