//! What the stages of one run share: the [`Frontier`] signal between the
//! producers of tasks (ingest, the writer's next pages) and the scheduler,
//! the state every task reads ([`Shared`]), and the envelope an outcome
//! travels to the writer in ([`Finished`]). Kept apart from the stages so
//! that each imports it and none imports another.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::header::HeaderValue;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::clients::Clients;
use crate::host::Hosts;
use crate::options::{FetchSpec, SpecError};
use crate::outcome::Outcome;
use crate::stats::Progress;

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
    pub fn grew(&self) {
        self.grew_then(|| {});
    }

    /// New tasks were committed, and `mark` makes something final that the
    /// scheduler reads before the version (the ingest flag): it runs after
    /// the version moves and before the wake-up, so a scheduler that sees
    /// its mark also sees the new version (and leases what it stands for)
    /// and one that does not is woken afterwards.
    pub fn grew_then(&self, mark: impl FnOnce()) {
        self.version.fetch_add(1, Ordering::Release);
        mark();
        self.notify.notify_waiters();
    }

    /// `n` outcomes with next pages were committed (after [`Frontier::grew`]).
    pub fn pages_committed(&self, n: u64) {
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
    /// Which addresses may be fetched ([`crate::guard`]).
    pub rules: crate::guard::AddressRules,
    /// Which requests go through a proxy ([`crate::proxy`]).
    pub proxy: crate::proxy::ProxyRoute,
    /// The run's `Authorization` (`--user`, `--bearer-token-file`).
    pub authorization: Option<HeaderValue>,
}

impl Shared {
    /// # Errors
    /// A host rule whose pattern is not a valid glob.
    pub fn new(
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
        let proxy = crate::proxy::ProxyRoute::new(&spec, |name| std::env::var(name).ok());
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
        })
    }
}

/// An outcome on its way to the store, with the host it came from.
#[derive(Debug)]
pub(crate) struct Finished {
    pub outcome: Outcome,
    pub host: Box<str>,
}
