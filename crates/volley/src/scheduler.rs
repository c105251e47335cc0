//! The scheduler: which task goes next, and when.
//!
//! # Window, gates and retries
//!
//! The scheduler leases tasks from the store a page at a time and keeps at
//! most `window` of them in memory (see [`window_for`]); it leases again
//! when a quarter of the window is free. Each leased task runs as a tokio
//! task that loops over attempts:
//!
//! 0. **Robots.** With `--respect-robots`, the first task of a host fetches
//!    its robots.txt ([`crate::robots`]) and every task of the host checks
//!    it; a disallowed URL gets `robots_denied` without a request.
//! 1. **Gate.** Before every attempt, retries included, it waits for a
//!    [`Slot`](crate::host::Slot): its host unpaused, a host permit, the
//!    host's and the global token buckets, then a global permit
//!    ([`crate::host`]). Waiting for a busy host never holds a global slot
//!    that another host could use.
//! 2. **Attempt.** See [`crate::fetch::attempt`]. The slot is released when
//!    the attempt ends, and what the attempt says about the host (throttled,
//!    `Retry-After`, rate limit exhausted, unreachable) is fed back to it.
//! 3. **Backoff.** A retryable failure waits out its backoff or
//!    `Retry-After` ([`crate::retry`]) holding *no* permit, then goes back to
//!    1. The task's lease keeps it out of other runs meanwhile.
//! 4. **Outcome.** The final attempt becomes an [`Outcome`], sent to the
//!    writer; only then does the task leave the window.
//!
//! # Stopping
//!
//! When the run's deadline passes, every task without an outcome, leased
//! or still pending, gets a `deadline` outcome, so the job still ends with
//! one outcome per input.
//!
//! When `stop` fires, no page is leased and tasks waiting at a gate or in a
//! backoff give up at once, leaving no outcome. Requests in flight continue
//! until they finish or `abandon` fires (the grace period). Tasks that gave
//! up stay leased and are returned to pending by the engine, to be fetched
//! by the next run. Nothing is recorded for a task that did not finish.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::HeaderValue;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::RunError;
use crate::clients::{Clients, HostAsk};
use crate::fetch::{self, Attempt, SaveTo};
use crate::host::{Feedback, Host, HostTask, Hosts};
use crate::outcome::{AttemptRecord, Class, NextPage, Outcome, now_ms};
use crate::process;
use crate::refresh::{self, Plan, Resource};
use crate::retry::{Backoff, Decision};
use crate::robots::{self, Robots};
use crate::spec::{FetchSpec, SpecError};
use crate::stats::Progress;
use crate::store::{LeasedTask, Store, Want};
use crate::writer::Finished;

/// Tasks held in memory for a given global concurrency: four per request
/// slot, at least 1024, so that tasks of hosts at their limit do not starve
/// the others of work.
pub fn window_for(concurrency: usize) -> usize {
    concurrency.saturating_mul(4).max(1024)
}

/// How often a run on a shared store looks again for work it cannot be
/// told about: tasks ingested by another process, hosts freed by a worker
/// that left or died.
pub const SHARED_POLL: Duration = Duration::from_millis(250);

/// Most tasks of one host a run holds at once (with host affinity): four
/// per request the host may have in flight, so it never waits for a lease,
/// within `[8, window / 2]` so one host cannot fill the window; and as
/// many again for the fetched tasks whose outcomes are on their way to the
/// store (they have left the window, but stay leased until committed).
fn per_host_hold(spec: &FetchSpec, window: usize) -> usize {
    let most = spec
        .hosts
        .iter()
        .filter_map(|rule| rule.concurrency)
        .fold(spec.per_host, usize::max);
    most.saturating_mul(4).clamp(8, (window / 2).max(8)) * 2
}

/// How long another worker must wait before starting on a host this run
/// gives back: one interval of the slowest per-host rate limit, the job's
/// `--rate` or a host rule's (zero when no rate limit is set).
fn handover_gap(spec: &FetchSpec) -> Duration {
    let slowest = spec
        .hosts
        .iter()
        .filter_map(|rule| rule.rate)
        .chain(spec.rate)
        .map(|rate| rate.per_sec)
        .fold(f64::INFINITY, f64::min);
    Duration::try_from_secs_f64(1.0 / slowest).unwrap_or(Duration::ZERO)
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

    fn page_sent(&self) {
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

/// Leases and runs tasks of `job` until none is pending, ingest is done and
/// no discovered page waits to be committed, or `stop` fires.
///
/// On a shared store ([`Store::SHARED`]) other processes ingest and finish
/// tasks too: when a lease comes back short it leases again after
/// [`SHARED_POLL`], and the run ends when the job row says the input is
/// all read and no task of the job is without an outcome.
///
/// # Errors
/// The first store error, or a local failure of a task (a body that could
/// not be written). The scheduler stops taking tasks at the first error and
/// waits for the running ones before returning it.
pub(crate) async fn run<S: Store>(
    store: &S,
    job: i64,
    shared: Arc<Shared>,
    frontier: Arc<Frontier>,
) -> Result<(), RunError> {
    let window_size = window_for(shared.spec.concurrency);
    let per_host = per_host_hold(&shared.spec, window_size);
    let handover = handover_gap(&shared.spec);
    // When the last lease came back short (shared stores only).
    let mut short_at: Option<tokio::time::Instant> = None;
    let window = Arc::new(Semaphore::new(window_size));
    let lease_at = window_size / 4;
    let mut tasks: JoinSet<Result<(), RunError>> = JoinSet::new();
    let mut first_error: Option<RunError> = None;
    // Whether the last lease found fewer tasks than asked: nothing more is
    // pending until the frontier grows (ingest, or pages the writer commits).
    let mut drained = false;
    let mut seen = frontier.version.load(Ordering::Acquire);
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
        let grew = frontier.notify.notified();
        tokio::pin!(grew);
        grew.as_mut().enable();
        // The flags before the version: see `Frontier`.
        let ingest_done = shared.progress.ingest_complete.load(Ordering::Acquire);
        let pages_pending = frontier.pending_pages.load(Ordering::Acquire);
        let version = frontier.version.load(Ordering::Acquire);
        if version != seen {
            seen = version;
            drained = false;
        }
        if S::SHARED && short_at.is_some_and(|at| at.elapsed() >= SHARED_POLL) {
            drained = false;
        }
        let free = window.available_permits();
        if !drained && free >= lease_at.max(1) {
            let want = Want {
                limit: free,
                per_host,
                handover,
                busy: shared.hosts.take_busy(),
            };
            let leased = match store.lease(job, want).await {
                Ok(leased) => leased,
                Err(e) => {
                    note(Ok(Err(e.into())), &shared);
                    break;
                }
            };
            drained = leased.len() < free;
            short_at = drained.then(tokio::time::Instant::now);
            let mut priors = if crate::refresh::wanted(&shared.spec) {
                let urls = leased.iter().map(|t| t.url.clone()).collect();
                match store.resources(urls).await {
                    Ok(found) => found,
                    Err(e) => {
                        note(Ok(Err(e.into())), &shared);
                        break;
                    }
                }
            } else {
                HashMap::new()
            };
            for task in leased {
                let prior = priors.remove(&task.url);
                let Ok(slot) = Arc::clone(&window).try_acquire_owned() else {
                    // Cannot happen: we leased no more than was free.
                    note(
                        Ok(Err(RunError::Internal("scheduler window overflow".into()))),
                        &shared,
                    );
                    break;
                };
                // The task holds its host from now, so the prune below
                // cannot drop the state of a host that just got work.
                let target = Target::of(&shared, &task.url);
                tasks.spawn(run_task(
                    Arc::clone(&shared),
                    Arc::clone(&frontier),
                    (task, prior),
                    target,
                    slot,
                ));
            }
            shared.hosts.prune();
            if let Some(budget) = &shared.budget {
                budget.prune();
            }
            continue;
        }
        if S::SHARED && drained && pages_pending == 0 && tasks.is_empty() {
            // Holding nothing: is the job done, or is there work elsewhere?
            let finished = async {
                if !ingest_done && store.reload_job(job).await?.ingest_complete {
                    shared
                        .progress
                        .ingest_complete
                        .store(true, Ordering::Release);
                    return Ok::<_, RunError>(store.unfinished(job).await? == 0);
                }
                Ok(ingest_done && store.unfinished(job).await? == 0)
            };
            match finished.await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    note(Ok(Err(e)), &shared);
                    break;
                }
            }
        } else if drained && ingest_done && pages_pending == 0 && tasks.is_empty() {
            break;
        }
        let poll = async {
            match short_at {
                Some(at) if S::SHARED => tokio::time::sleep_until(at + SHARED_POLL).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shared.stop.cancelled() => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => note(done, &shared),
            () = &mut grew => {}
            () = poll => {}
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

/// A leased task's parsed URL and the hold on its host (and on the same
/// host in the shared budget, if any).
struct Target {
    url: Url,
    host_name: Box<str>,
    host: HostTask,
    outer: Option<HostTask>,
    /// What the host's rule changes about requests, if anything.
    ask: Option<Arc<HostAsk>>,
}

impl Target {
    /// Parses `url` and takes its host for a task of the window; the error
    /// is the parse failure (only a database edited by hand holds such a URL).
    fn of(shared: &Shared, url: &str) -> Result<Target, url::ParseError> {
        let url = Url::parse(url)?;
        let host_name = host_key(&url);
        let (name, port) = (
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default(),
        );
        let host = shared.hosts.host(&host_name, name, port);
        let outer = shared
            .budget
            .as_ref()
            .map(|budget| budget.host(&host_name, name, port));
        let ask = shared.clients.stops().ask(&url).cloned();
        Ok(Target {
            url,
            host_name,
            host,
            outer,
            ask,
        })
    }
}

/// Runs one task through its attempts and sends its outcome; returns
/// without an outcome if the run stops first.
async fn run_task(
    shared: Arc<Shared>,
    frontier: Arc<Frontier>,
    (task, prior): (LeasedTask, Option<Resource>),
    target: Result<Target, url::ParseError>,
    _window: OwnedSemaphorePermit,
) -> Result<(), RunError> {
    let started_at = now_ms();
    let Target {
        url,
        host_name,
        host,
        outer,
        ask,
    } = match target {
        Ok(target) => target,
        Err(e) => {
            let mut outcome = Outcome::new(task.id, Class::InvalidUrl);
            outcome.message = Some(format!("stored URL does not parse: {e}"));
            return send(&shared, outcome, "".into()).await;
        }
    };
    let deadline_outcome = |attempts: u32, history: Vec<AttemptRecord>| {
        let mut outcome = Outcome::new(task.id, Class::Deadline);
        outcome.attempts = attempts;
        outcome.started_at_ms = (attempts > 0).then_some(started_at);
        outcome.message = Some(format!(
            "the run's --deadline of {}s passed before the task finished",
            shared.spec.deadline.unwrap_or_default().as_secs_f64()
        ));
        outcome.attempt_log = history;
        outcome
    };
    if let Err(forbidden) = shared.rules.check_url(&url) {
        // An IP literal never reaches the resolver's check: refuse it here.
        let mut outcome = Outcome::new(task.id, Class::ForbiddenAddress);
        outcome.message = Some(forbidden.to_string());
        return send(&shared, outcome, host_name).await;
    }
    let plan = refresh::plan(prior.as_ref(), &shared.spec, started_at);
    if let (Plan::Fresh(why), Some(prior)) = (&plan, &prior) {
        let mut outcome = remembered(task.id, Class::Fresh, prior);
        outcome.message = Some(why.clone());
        outcome.next_page = again(&shared.spec, &task, prior);
        if outcome.next_page.is_some() {
            frontier.page_sent();
        }
        return send(&shared, outcome, host_name).await;
    }
    if shared.spec.respect_robots {
        let robots = tokio::select! {
            biased;
            () = shared.stop.cancelled() => return Ok(()),
            () = shared.deadline.cancelled() => {
                return send(&shared, deadline_outcome(0, Vec::new()), host_name).await;
            }
            robots = host.robots.get_or_init(|| fetch_robots(&shared, &host, outer.as_deref(), &url)) => Arc::clone(robots),
        };
        if let Err(why) = robots.check(&url) {
            let mut outcome = Outcome::new(task.id, Class::RobotsDenied);
            outcome.message = Some(why);
            return send(&shared, outcome, host_name).await;
        }
    }
    let save_dir = shared.spec.save_bodies.clone();
    let mut backoff = Backoff::new(&shared.spec);
    let mut attempts: u32 = 0;
    let mut history: Vec<AttemptRecord> = Vec::new();
    let (last, note) = loop {
        let slot = tokio::select! {
            biased;
            () = shared.stop.cancelled() => return Ok(()),
            () = shared.deadline.cancelled() => {
                return send(&shared, deadline_outcome(attempts, history), host_name).await;
            }
            slot = acquire(&shared, &host, outer.as_deref()) => slot,
        };
        let Some(slot) = slot else {
            return Ok(());
        };
        attempts += 1;
        let attempt_started = now_ms();
        let partial_name = save_dir
            .as_ref()
            .map(|_| format!("{}-{}-{attempts}", std::process::id(), task.id));
        let save = save_dir
            .as_deref()
            .zip(partial_name.as_deref())
            .map(|(dir, partial_name)| SaveTo { dir, partial_name });
        let result = {
            let _in_flight = InFlight::new(&shared.progress);
            tokio::select! {
                biased;
                () = shared.abandon.cancelled() => return Ok(()),
                () = shared.deadline.cancelled() => {
                    return send(&shared, deadline_outcome(attempts, history), host_name).await;
                }
                result = fetch::attempt(
                    &shared.clients,
                    &url,
                    &shared.spec,
                    save,
                    fetch::Ask {
                        keep_alive: host.keep_alive(),
                        via_proxy: shared.proxy.routes(&url),
                        plan: &plan,
                        host_headers: ask.as_ref().and_then(|a| a.headers.as_ref()),
                        authorization: shared.authorization.as_ref(),
                    },
                ) => result,
            }
        };
        drop(slot);
        let attempt = result.map_err(RunError::BodyIo)?;
        let feedback = feedback_of(&attempt, shared.spec.max_retry_after);
        host.feedback(feedback);
        if let Some(outer) = &outer {
            outer.feedback(feedback);
        }
        let decision = backoff.decide(attempt.is_retryable(), attempt.retry_after);
        history.push(AttemptRecord {
            attempt: attempts,
            class: attempt.class,
            status: attempt.status,
            message: attempt.message.clone(),
            started_at_ms: attempt_started,
            elapsed_ms: attempt.elapsed_ms,
            retry_delay_ms: match &decision {
                Decision::RetryAfter(d) => Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                Decision::Final { .. } => None,
            },
        });
        match decision {
            Decision::Final { note } => break (attempt, note),
            Decision::RetryAfter(delay) => {
                Progress::add(&shared.progress.retries, 1);
                tracing::debug!(url = %url, attempt = attempts, class = %attempt.class, ?delay, "retrying");
                tokio::select! {
                    biased;
                    () = shared.stop.cancelled() => return Ok(()),
                    () = shared.deadline.cancelled() => {
                        return send(&shared, deadline_outcome(attempts, history), host_name).await;
                    }
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    };
    if attempts < 2 {
        // A task fetched once is fully described by its outcome.
        history.clear();
    }
    let mut last = last;
    let mut message = match (last.message.take(), note) {
        (Some(m), Some(n)) => Some(format!("{m} ({n})")),
        (None, Some(n)) if !last.class.is_success() => Some(n),
        (m, _) => m,
    };
    let mut processed = process::Processed::default();
    if let Some(body) = last.body.take().filter(|_| last.class == Class::Ok) {
        let rules = shared.spec.pages.clone();
        let (page_url, page, link) = (
            last.final_url
                .as_deref()
                .and_then(|u| Url::parse(u).ok())
                .unwrap_or_else(|| url.clone()),
            task.page,
            last.link_next.take(),
        );
        let result = tokio::task::spawn_blocking(move || {
            process::process(&rules, &page_url, page, link.as_deref(), &body)
        })
        .await
        .map_err(|e| RunError::Internal(format!("page processing failed: {e}")))?;
        match result {
            Ok(p) => processed = p,
            Err(why) => {
                last.class = Class::InvalidJson;
                message = Some(why);
            }
        }
        if let Some(note) = processed.note.take() {
            message = Some(note);
        }
    }
    let next_page = processed.next.map(|next| NextPage {
        host: next.host_str().unwrap_or_default().to_owned(),
        url: next.to_string(),
        page: task.page.saturating_add(1),
    });
    if last.class == Class::NotModified
        && let Some(prior) = &prior
    {
        let mut outcome = remembered(task.id, Class::NotModified, prior);
        let cache = last.cache.take().unwrap_or_default();
        let mut resource = prior.clone();
        // RFC 9111 §4.3.4: a 304's validators and freshness replace the
        // stored ones; what it leaves out is kept.
        resource.etag = cache.etag.or(resource.etag);
        resource.last_modified = cache.last_modified.or(resource.last_modified);
        resource.fresh_until_ms = cache.fresh_until_ms;
        if cache.no_store {
            (resource.etag, resource.last_modified) = (None, None);
        }
        resource.checked_at_ms = now_ms();
        outcome.resource = Some(Box::new(resource));
        outcome.next_page = again(&shared.spec, &task, prior);
        outcome.status = last.status;
        outcome.http_version = last.http_version;
        outcome.attempts = attempts;
        (outcome.bytes, outcome.wire_bytes) = (last.bytes, last.wire_bytes);
        (outcome.elapsed_ms, outcome.ttfb_ms) = (Some(last.elapsed_ms), last.ttfb_ms);
        outcome.final_url = last.final_url;
        outcome.headers = last.headers;
        outcome.started_at_ms = Some(started_at);
        outcome.attempt_log = history;
        if outcome.next_page.is_some() {
            frontier.page_sent();
        }
        return send(&shared, outcome, host_name).await;
    }
    let resource = (last.class == Class::Ok)
        .then(|| {
            let cache = last.cache.take().unwrap_or_default();
            let now = now_ms();
            Some(Box::new(Resource {
                body_sha256: Some(last.body_sha256.clone()?),
                url: task.url.clone(),
                status: last.status,
                etag: cache.etag,
                last_modified: cache.last_modified,
                body_path: last.body_path.clone(),
                bytes: last.bytes,
                content_type: last.content_type.clone(),
                next_url: next_page.as_ref().map(|p| p.url.clone()),
                checked_at_ms: now,
                changed_at_ms: now,
                fresh_until_ms: cache.fresh_until_ms,
            }))
        })
        .flatten();
    let changed = match (&resource, refresh::wanted(&shared.spec)) {
        (Some(now), true) => Some(
            prior
                .as_ref()
                .is_none_or(|p| p.body_sha256 != now.body_sha256),
        ),
        _ => None,
    };
    let outcome = Outcome {
        task_id: task.id,
        class: last.class,
        status: last.status,
        http_version: last.http_version,
        message,
        attempts,
        bytes: last.bytes,
        wire_bytes: last.wire_bytes,
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
        attempt_log: history,
        extracted: processed.extracted,
        items: processed.items,
        next_page,
        changed,
        resource,
    };
    if outcome.next_page.is_some() {
        // Counted before the task ends, so the scheduler waits for its commit.
        frontier.page_sent();
    }
    send(&shared, outcome, host_name).await
}

/// An outcome of `class` for a task answered from what the database
/// remembers of its URL: its status, body hash, path, size and type.
fn remembered(task_id: i64, class: Class, prior: &Resource) -> Outcome {
    let mut outcome = Outcome::new(task_id, class);
    outcome.status = prior.status;
    outcome.body_sha256 = prior.body_sha256.clone();
    outcome.body_path = prior.body_path.clone();
    outcome.content_type = prior.content_type.clone();
    outcome.changed = Some(false);
    outcome
}

/// The next page of a chain whose page `task` is unchanged: the one its
/// last full response named, with `--paginate-always`; else none (the
/// chain ends there).
fn again(spec: &FetchSpec, task: &LeasedTask, prior: &Resource) -> Option<NextPage> {
    if !(spec.paginate_always && spec.pages.paginate.is_some()) {
        return None;
    }
    let url = Url::parse(prior.next_url.as_deref()?).ok()?;
    if spec.pages.max_pages.is_some_and(|max| task.page >= max) {
        return None;
    }
    Some(NextPage {
        host: url.host_str().unwrap_or_default().to_owned(),
        url: url.to_string(),
        page: task.page.saturating_add(1),
    })
}

/// The key politeness state is kept under: the host, with the port when it
/// is not the scheme's default (`127.0.0.1:8080`). Two ports are two
/// services, each with its own robots.txt (RFC 9309 scopes it to the origin).
pub fn host_key(url: &Url) -> Box<str> {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}").into(),
        None => host.into(),
    }
}

/// What an attempt tells about its host. Server-requested pauses are capped
/// at `max_pause` (`--max-retry-after`), so one header cannot stall a host
/// for longer than the user allows.
fn feedback_of(attempt: &Attempt, max_pause: Duration) -> Feedback {
    match attempt.status {
        Some(429 | 503) => Feedback::Throttled {
            pause: attempt
                .retry_after
                .or(attempt.rate_limit_reset)
                .map(|p| p.min(max_pause)),
        },
        Some(_) => match attempt.rate_limit_reset {
            Some(pause) => Feedback::Exhausted {
                pause: pause.min(max_pause),
            },
            None => Feedback::Answered,
        },
        None => match attempt.class {
            Class::ConnectRefused | Class::ConnectTimeout | Class::Connect | Class::Dns => {
                Feedback::ConnectFailed
            }
            _ => Feedback::Neutral,
        },
    }
}

/// A slot for a request to `host` (and to `outer`, the same host in the
/// shared budget).
async fn acquire(
    shared: &Shared,
    host: &Arc<Host>,
    outer: Option<&Arc<Host>>,
) -> Option<crate::host::Slot> {
    let within = shared.budget.as_deref().zip(outer);
    shared.hosts.acquire_within(host, within).await
}

/// Fetches `host`'s robots.txt through the host's gate; see [`crate::robots`].
async fn fetch_robots(
    shared: &Shared,
    host: &Arc<Host>,
    outer: Option<&Arc<Host>>,
    url: &Url,
) -> Arc<Robots> {
    let Some(robots_url) = robots::robots_url(url) else {
        return Arc::new(Robots::AllowAll);
    };
    let agent = robots::agent_token(&shared.spec.user_agent);
    let mut last = String::new();
    for attempt in 1..=robots::ATTEMPTS {
        let Some(slot) = acquire(shared, host, outer).await else {
            return Arc::new(Robots::AllowAll);
        };
        let result = fetch::fetch_small(
            shared.clients.for_url(&robots_url).0,
            &robots_url,
            robots::MAX_BYTES,
            shared.spec.timeout,
        )
        .await;
        drop(slot);
        match result {
            Ok((status, body)) if (200..300).contains(&status) => {
                let robots = Robots::parse(agent, &body);
                host.obey_crawl_delay(&robots);
                return Arc::new(robots);
            }
            Ok((status, _)) if (400..500).contains(&status) => return Arc::new(Robots::AllowAll),
            Ok((status, _)) => last = format!("it answered {status}"),
            Err(e) => last = e,
        }
        if attempt < robots::ATTEMPTS {
            tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
        }
    }
    Arc::new(Robots::DisallowAll(format!(
        "robots.txt could not be fetched ({last}); RFC 9309 asks to assume complete disallow"
    )))
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

    #[test]
    fn window_scales_with_concurrency() {
        assert_eq!(window_for(8), 1024);
        assert_eq!(window_for(1000), 4000);
    }
}
