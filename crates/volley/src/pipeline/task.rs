//! One leased task, from its URL to its outcome, in named steps:
//!
//! 1. `admit`: what can be decided without a request. A URL the address
//!    rules refuse is `forbidden_address`; a body the database remembers
//!    as fresh is `fresh` (`--max-age`, `--respect-cache-control`); a URL
//!    robots.txt disallows is `robots_denied` (`--respect-robots`, with the
//!    host's robots.txt fetched by its first task).
//! 2. `fetch_until_final`: gate, attempt, backoff, again: each attempt
//!    waits for its host's and the run's gates ([`crate::politeness::host`]), is made by
//!    [`fetch::attempt`], feeds what it learnt back to the host, and is
//!    retried after its backoff or `Retry-After` ([`crate::politeness::retry`]) until
//!    one is final.
//! 3. `process_page`: with page rules, the final body is parsed off the
//!    async workers for its next page, items and fields ([`crate::pipeline::process`]).
//! 4. `finish`: the one place an [`Outcome`] is built from the final
//!    attempt, what processing found and what the database remembered of
//!    the URL (a `304` carries the remembered body; RFC 9111 §4.3.4).
//!
//! `run_task` runs the steps and sends the outcome to the writer. When
//! the run stops (Ctrl-C), a task waiting at a gate or in a backoff gives
//! up without an outcome; when its deadline passes, it ends with a
//! `deadline` outcome (see [`crate::pipeline::scheduler`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use url::Url;

use crate::http::clients::HostAsk;
use crate::http::fetch::{self, Attempt, SaveTo};
use crate::http::refresh::{self, Plan, Resource};
use crate::options::FetchSpec;
use crate::outcome::{AttemptRecord, Class, NextPage, Outcome, now_ms};
use crate::pipeline::process::{self, Processed};
use crate::pipeline::run::RunError;
use crate::pipeline::run::{Finished, Frontier, Shared};
use crate::politeness::host::{Feedback, Host, HostTask};
use crate::politeness::retry::{Backoff, Decision};
use crate::politeness::robots::{self, Robots};
use crate::stats::Progress;
use crate::store::LeasedTask;

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
pub(crate) struct Target {
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
    pub(crate) fn of(shared: &Shared, url: &str) -> Result<Target, url::ParseError> {
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

/// The key politeness state is kept under: the host, with the port when it
/// is not the scheme's default (`127.0.0.1:8080`). Two ports are two
/// services, each with its own robots.txt (RFC 9309 scopes it to the origin).
pub(crate) fn host_key(url: &Url) -> Box<str> {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}").into(),
        None => host.into(),
    }
}

/// How a step left the task.
enum Step<T> {
    /// Go on to the next step with this.
    Next(T),
    /// The task has its outcome (without the steps that follow).
    Done(Box<Outcome>),
    /// The run stopped: no outcome; the task stays leased, to be given
    /// back.
    Stopped,
}

/// Runs one task through [`admit`], [`fetch_until_final`],
/// [`process_page`] and [`finish`], and sends its outcome; returns without
/// an outcome if the run stops first.
///
/// # Errors
/// A body that could not be written ([`RunError::BodyIo`]), page
/// processing that panicked, or a writer that stopped.
pub(crate) async fn run_task(
    shared: Arc<Shared>,
    frontier: Arc<Frontier>,
    (task, prior): (LeasedTask, Option<Resource>),
    target: Result<Target, url::ParseError>,
    _window: OwnedSemaphorePermit,
) -> Result<(), RunError> {
    let started_at = now_ms();
    let target = match target {
        Ok(target) => target,
        Err(e) => {
            let mut outcome = Outcome::new(task.id, Class::InvalidUrl);
            outcome.message = Some(format!("stored URL does not parse: {e}"));
            return send(&shared, outcome, "".into(), None).await;
        }
    };
    let outcome = async {
        let plan = match admit(&shared, &task, prior.as_ref(), &target, started_at).await {
            Step::Next(plan) => plan,
            Step::Done(outcome) => return Ok(Some((*outcome, None))),
            Step::Stopped => return Ok(None),
        };
        let mut fetched =
            match fetch_until_final(&shared, &task, &target, &plan, started_at).await? {
                Step::Next(fetched) => fetched,
                Step::Done(outcome) => return Ok(Some((*outcome, None))),
                Step::Stopped => return Ok(None),
            };
        let processed = process_page(&shared.spec, &task, &target.url, &mut fetched).await?;
        let capture = fetched.last.capture.take();
        let outcome = finish(
            &shared.spec,
            &task,
            prior.as_ref(),
            fetched,
            processed,
            started_at,
        );
        Ok::<_, RunError>(Some((outcome, capture)))
    };
    let Some((mut outcome, capture)) = outcome.await? else {
        return Ok(());
    };
    let records = match (capture, &shared.encoders) {
        (Some(capture), Some(encoders)) => {
            Some(encoders.encode(capture).await.map_err(|source| {
                RunError::Warc(crate::warc::WarcError::Io {
                    path: "a spilled payload".into(),
                    source,
                })
            })?)
        }
        _ => None,
    };
    if reads_robots_sitemaps(&shared.spec, &task)
        && let Some(robots) = target.host.robots.get()
    {
        add_robots_sitemaps(&shared.spec, &task, &target.url, robots, &mut outcome);
    }
    if outcome.leads_on() {
        // Counted before the task ends, so the scheduler waits for its commit.
        frontier.page_sent();
    }
    send(&shared, outcome, target.host_name, records).await
}

/// Whether `task` is only a link check: a crawl's out-of-scope link
/// (`--check-external`), fetched with `HEAD` first and never followed.
fn is_link_check(spec: &FetchSpec, task: &LeasedTask, url: &Url) -> bool {
    spec.pages.follow
        && spec.pages.links.check_external
        && task.seed.is_some()
        && Url::parse(task.seed_url())
            .is_ok_and(|seed| spec.pages.links.reach(&seed, url) == crate::crawl::Reach::Check)
}

/// Whether `task` is a seed of a crawl that reads the `Sitemap:` lines of
/// its host's robots.txt (`--sitemaps`, or `--respect-robots`).
fn reads_robots_sitemaps(spec: &FetchSpec, task: &LeasedTask) -> bool {
    spec.pages.follow && (spec.pages.sitemaps || spec.respect_robots) && task.seed.is_none()
}

/// Adds the `Sitemap:` lines of a seed's robots.txt that the crawl follows
/// or checks to the seed's links, each once.
fn add_robots_sitemaps(
    spec: &FetchSpec,
    task: &LeasedTask,
    seed: &Url,
    robots: &Robots,
    outcome: &mut Outcome,
) {
    for line in robots.sitemaps() {
        let Ok(mut url) = seed.join(line.trim()) else {
            continue;
        };
        spec.pages.links.normalize(&mut url);
        if !matches!(url.scheme(), "http" | "https")
            || spec.pages.links.reach(seed, &url) == crate::crawl::Reach::Skip
            || outcome.links.iter().any(|l| l.url == url.as_str())
        {
            continue;
        }
        outcome.links.push(found_on(task, &url));
    }
}

/// Step 1: decides what needs no request; the freshness plan for the
/// request otherwise.
async fn admit(
    shared: &Shared,
    task: &LeasedTask,
    prior: Option<&Resource>,
    target: &Target,
    started_at: i64,
) -> Step<Plan> {
    if let Err(forbidden) = shared.rules.check_url(&target.url) {
        // An IP literal never reaches the resolver's check: refuse it here.
        let mut outcome = Outcome::new(task.id, Class::ForbiddenAddress);
        outcome.message = Some(forbidden.to_string());
        return Step::Done(Box::new(outcome));
    }
    let plan = refresh::plan(prior, &shared.spec, started_at);
    if let (Plan::Fresh(why), Some(prior)) = (&plan, prior) {
        let mut outcome = remembered(task.id, Class::Fresh, prior);
        outcome.message = Some(why.clone());
        outcome.next_page = again(&shared.spec, task, prior);
        outcome.links = remembered_links(&shared.spec, task, prior);
        return Step::Done(Box::new(outcome));
    }
    if shared.spec.respect_robots || reads_robots_sitemaps(&shared.spec, task) {
        let (host, outer) = (&target.host, target.outer.as_deref());
        let robots = tokio::select! {
            biased;
            () = shared.stop.cancelled() => return Step::Stopped,
            () = shared.deadline.cancelled() => {
                return Step::Done(Box::new(deadline_outcome(&shared.spec, task.id, started_at, 0, Vec::new())));
            }
            robots = host.robots.get_or_init(|| fetch_robots(shared, host, outer, &target.url)) => Arc::clone(robots),
        };
        if let (true, Err(why)) = (shared.spec.respect_robots, robots.check(&target.url)) {
            let mut outcome = Outcome::new(task.id, Class::RobotsDenied);
            outcome.message = Some(why);
            return Step::Done(Box::new(outcome));
        }
    }
    Step::Next(plan)
}

/// The final attempt of a task, with what led to it.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The attempt that ended the task (a success, or a failure not to be
    /// retried).
    last: Attempt,
    /// Why it was not retried, when that is worth saying (no retries left,
    /// `Retry-After` too long).
    note: Option<String>,
    /// Attempts made, the last included.
    attempts: u32,
    /// Every attempt, for a task fetched more than once.
    history: Vec<AttemptRecord>,
    /// The final attempt's request slot, held while its kept body waits to
    /// be processed.
    _slot: Option<crate::politeness::host::Slot>,
}

/// Step 2: attempts until one is final: each through the host's gates,
/// then fed back to the host, then retried after its backoff if it may be.
async fn fetch_until_final(
    shared: &Shared,
    task: &LeasedTask,
    target: &Target,
    plan: &Plan,
    started_at: i64,
) -> Result<Step<Fetched>, RunError> {
    let Target {
        url,
        host,
        outer,
        ask,
        ..
    } = target;
    let save_dir = shared.spec.save_bodies.as_deref();
    let mut backoff = Backoff::new(&shared.spec);
    let mut attempts: u32 = 0;
    let mut history: Vec<AttemptRecord> = Vec::new();
    let deadline = |attempts, history| {
        Ok(Step::Done(Box::new(deadline_outcome(
            &shared.spec,
            task.id,
            started_at,
            attempts,
            history,
        ))))
    };
    loop {
        let slot = tokio::select! {
            biased;
            () = shared.stop.cancelled() => return Ok(Step::Stopped),
            () = shared.deadline.cancelled() => return deadline(attempts, history),
            slot = acquire(shared, host, outer.as_deref()) => slot,
        };
        let Some(slot) = slot else {
            return Ok(Step::Stopped);
        };
        attempts += 1;
        let attempt_started = now_ms();
        let partial_name =
            save_dir.map(|_| format!("{}-{}-{attempts}", std::process::id(), task.id));
        let save = save_dir
            .zip(partial_name.as_deref())
            .map(|(dir, partial_name)| SaveTo { dir, partial_name });
        let result = {
            let _in_flight = InFlight::new(&shared.progress);
            tokio::select! {
                biased;
                () = shared.abandon.cancelled() => return Ok(Step::Stopped),
                () = shared.deadline.cancelled() => return deadline(attempts, history),
                result = fetch::attempt(
                    &shared.clients,
                    url,
                    &shared.spec,
                    save,
                    fetch::Ask {
                        keep_alive: host.keep_alive(),
                        via_proxy: shared.proxy.routes(url),
                        plan,
                        host_headers: ask.as_ref().and_then(|a| a.headers.as_ref()),
                        authorization: shared.authorization.as_ref(),
                        head_first: is_link_check(&shared.spec, task, url),
                        capture: shared.capturing.as_ref(),
                    },
                ) => result,
            }
        };
        let attempt = result.map_err(RunError::BodyIo)?;
        // A body kept for processing keeps its request slot until it is
        // processed: bodies in memory stay within the concurrency, however
        // far the CPU falls behind the network.
        let slot = attempt.body.is_some().then_some(slot);
        let feedback = feedback_of(&attempt, shared.spec.max_retry_after);
        host.feedback(feedback);
        if let Some(outer) = outer {
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
            Decision::Final { note } => {
                if attempts < 2 {
                    // A task fetched once is fully described by its outcome.
                    history.clear();
                }
                return Ok(Step::Next(Fetched {
                    last: attempt,
                    note,
                    attempts,
                    history,
                    _slot: slot,
                }));
            }
            Decision::RetryAfter(delay) => {
                drop(slot);
                Progress::add(&shared.progress.retries, 1);
                tracing::debug!(url = %url, attempt = attempts, class = %attempt.class, ?delay, "retrying");
                tokio::select! {
                    biased;
                    () = shared.stop.cancelled() => return Ok(Step::Stopped),
                    () = shared.deadline.cancelled() => return deadline(attempts, history),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// What the page rules made of a final body.
#[derive(Debug, Default)]
pub(crate) struct PageResult {
    processed: Processed,
    /// Why the body could not be processed (the outcome becomes
    /// `invalid_json`), or why its chain stopped.
    message: Option<String>,
    /// The body does not have the shape the rules need.
    invalid: bool,
}

/// Step 3: with page rules, processes the final `ok` body (taken out of
/// `fetched`) on the blocking pool.
///
/// # Errors
/// [`RunError::Internal`] when processing panicked.
async fn process_page(
    spec: &FetchSpec,
    task: &LeasedTask,
    url: &Url,
    fetched: &mut Fetched,
) -> Result<PageResult, RunError> {
    let last = &mut fetched.last;
    let Some(body) = last.body.take().filter(|_| last.class == Class::Ok) else {
        return Ok(PageResult::default());
    };
    let rules = spec.pages.clone();
    let page_url = last
        .final_url
        .as_deref()
        .and_then(|u| Url::parse(u).ok())
        .unwrap_or_else(|| url.clone());
    let (page, link) = (task.page, last.link_next.take());
    let (asked, content_type) = (url.clone(), last.content_type.clone());
    let seed = match &task.seed {
        Some((_, seed)) => Url::parse(seed).unwrap_or_else(|_| url.clone()),
        None => url.clone(),
    };
    let respect_robots = spec.respect_robots;
    let result = tokio::task::spawn_blocking(move || {
        let crawl = process::Crawl {
            asked: &asked,
            seed: &seed,
            content_type: content_type.as_deref(),
            respect_robots,
        };
        process::process(&rules, &page_url, page, link.as_deref(), crawl, &body)
    })
    .await
    .map_err(|e| RunError::Internal(format!("page processing failed: {e}")))?;
    Ok(match result {
        Ok(mut processed) => PageResult {
            message: processed.note.take(),
            processed,
            invalid: false,
        },
        Err(why) => PageResult {
            processed: Processed::default(),
            message: Some(why),
            invalid: true,
        },
    })
}

/// Step 4: the task's outcome, from its final attempt, what processing
/// found and what the database remembered of its URL (`prior`, with
/// `--refresh`, `--max-age` or `--respect-cache-control`).
///
/// A `304` with a remembered body is `not_modified`: it carries that body's
/// hash and path, and its validators and freshness replace the remembered
/// ones (RFC 9111 §4.3.4). An `ok` carries the new [`Resource`] and, when
/// the database is read, whether the body `changed`.
pub(crate) fn finish(
    spec: &FetchSpec,
    task: &LeasedTask,
    prior: Option<&Resource>,
    fetched: Fetched,
    page: PageResult,
    started_at: i64,
) -> Outcome {
    let Fetched {
        mut last,
        note,
        attempts,
        history,
        ..
    } = fetched;
    let mut message = match (last.message.take(), note) {
        (Some(m), Some(n)) => Some(format!("{m} ({n})")),
        (None, Some(n)) if !last.class.is_success() => Some(n),
        (m, _) => m,
    };
    if page.invalid {
        last.class = Class::InvalidJson;
    }
    if page.message.is_some() {
        message = page.message;
    }
    let mut processed = page.processed;
    if let Some(fault) = processed.sitemap_fault.take() {
        last.class = Class::InvalidSitemap;
        message = Some(fault);
    }
    if last.class == Class::NotModified
        && let Some(prior) = prior
    {
        let mut outcome = remembered(task.id, Class::NotModified, prior);
        let cache = last.cache.take().unwrap_or_default();
        let mut resource = prior.clone();
        resource.etag = cache.etag.or(resource.etag);
        resource.last_modified = cache.last_modified.or(resource.last_modified);
        resource.fresh_until_ms = cache.fresh_until_ms;
        if cache.no_store {
            (resource.etag, resource.last_modified) = (None, None);
        }
        resource.checked_at_ms = now_ms();
        outcome.resource = Some(Box::new(resource));
        outcome.next_page = again(spec, task, prior);
        outcome.links = remembered_links(spec, task, prior);
        outcome.status = last.status;
        outcome.http_version = last.http_version;
        outcome.attempts = attempts;
        (outcome.bytes, outcome.wire_bytes) = (last.bytes, last.wire_bytes);
        (outcome.elapsed_ms, outcome.ttfb_ms) = (Some(last.elapsed_ms), last.ttfb_ms);
        outcome.final_url = last.final_url;
        outcome.headers = last.headers;
        outcome.started_at_ms = Some(started_at);
        outcome.attempt_log = history;
        return outcome;
    }
    let next_page = processed.next.map(|next| found_on(task, &next));
    let links: Vec<NextPage> = processed
        .links
        .iter()
        .map(|link| NextPage {
            meta: link
                .lastmod
                .as_ref()
                .map(|lastmod| serde_json::json!({ "lastmod": lastmod }).to_string()),
            ..found_on(task, &link.url)
        })
        .collect();
    // A HEAD (a link check) brought no body: nothing to remember.
    let resource = (last.class == Class::Ok && !last.head)
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
                links: spec.pages.follow.then(|| {
                    serde_json::Value::from(
                        links.iter().map(|l| l.url.as_str()).collect::<Vec<_>>(),
                    )
                    .to_string()
                }),
            }))
        })
        .flatten();
    let changed = match (&resource, refresh::wanted(spec)) {
        (Some(now), true) => Some(prior.is_none_or(|p| p.body_sha256 != now.body_sha256)),
        _ => None,
    };
    Outcome {
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
        links,
        caps: spec.pages.caps,
        changed,
        resource,
        warc: None,
    }
}

/// The outcome of a task whose run's `--deadline` passed before it ended,
/// after `attempts` attempts (begun at `started_at`, if any).
fn deadline_outcome(
    spec: &FetchSpec,
    task_id: i64,
    started_at: i64,
    attempts: u32,
    history: Vec<AttemptRecord>,
) -> Outcome {
    let mut outcome = Outcome::new(task_id, Class::Deadline);
    outcome.attempts = attempts;
    outcome.started_at_ms = (attempts > 0).then_some(started_at);
    outcome.message = Some(format!(
        "the run's --deadline of {}s passed before the task finished",
        spec.deadline.unwrap_or_default().as_secs_f64()
    ));
    outcome.attempt_log = history;
    outcome
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
    Some(found_on(task, &url))
}

/// In a crawl, the links a page had when its body was last read, for a
/// page that is `not_modified` or `fresh` (its body is not read again):
/// those the crawl still follows or checks from `task`'s seed, within
/// the depth.
fn remembered_links(spec: &FetchSpec, task: &LeasedTask, prior: &Resource) -> Vec<NextPage> {
    let rules = &spec.pages;
    let depth = task.page.saturating_sub(1);
    if !rules.follow || rules.max_depth.is_some_and(|max| depth >= max) {
        return Vec::new();
    }
    let (Some(links), Ok(seed)) = (&prior.links, Url::parse(task.seed_url())) else {
        return Vec::new();
    };
    let Ok(urls) = serde_json::from_str::<Vec<String>>(links) else {
        return Vec::new();
    };
    urls.iter()
        .filter_map(|u| Url::parse(u).ok())
        .filter(|u| rules.links.reach(&seed, u) != crate::crawl::Reach::Skip)
        .map(|url| found_on(task, &url))
        .collect()
}

/// The task `url` becomes when page `task` names it (a next page, a
/// crawl's link): one page further down the chain, of the same seed.
fn found_on(task: &LeasedTask, url: &Url) -> NextPage {
    NextPage {
        host: url.host_str().unwrap_or_default().to_owned(),
        url: url.to_string(),
        page: task.page.saturating_add(1),
        seed_id: task.seed_id(),
        meta: None,
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
) -> Option<crate::politeness::host::Slot> {
    let within = shared.budget.as_deref().zip(outer);
    shared.hosts.acquire_within(host, within).await
}

/// Fetches `host`'s robots.txt through the host's gate; see [`crate::politeness::robots`].
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

/// Hands `outcome` to the writer.
async fn send(
    shared: &Shared,
    outcome: Outcome,
    host: Box<str>,
    records: Option<Vec<crate::warc::writer::Encoded>>,
) -> Result<(), RunError> {
    shared
        .outcomes
        .send(Finished {
            outcome,
            host,
            records,
        })
        .await
        .map_err(|_| RunError::Internal("the writer stopped; outcome not recorded".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::refresh::CacheInfo;

    fn task(page: u32) -> LeasedTask {
        LeasedTask {
            id: 7,
            line: Some(3),
            url: "http://h.test/a".into(),
            page,
            seed: None,
        }
    }

    fn ok_attempt() -> Attempt {
        let mut a = Attempt::new();
        a.class = Class::Ok;
        a.status = Some(200);
        a.bytes = Some(5);
        a.elapsed_ms = 12;
        a.body_sha256 = Some("new".into());
        a.cache = Some(CacheInfo {
            etag: Some("\"v2\"".into()),
            ..CacheInfo::default()
        });
        a
    }

    fn fetched(last: Attempt, attempts: u32) -> Fetched {
        Fetched {
            last,
            note: None,
            attempts,
            history: Vec::new(),
            _slot: None,
        }
    }

    fn prior() -> Resource {
        Resource {
            url: "http://h.test/a".into(),
            status: Some(200),
            etag: Some("\"v1\"".into()),
            last_modified: Some("Mon, 02 Nov 2026 10:00:00 GMT".into()),
            body_sha256: Some("old".into()),
            body_path: Some("bodies/ol/old".into()),
            bytes: Some(3),
            content_type: Some("text/plain".into()),
            next_url: Some("http://h.test/a?page=2".into()),
            checked_at_ms: 1,
            changed_at_ms: 1,
            fresh_until_ms: None,
            links: None,
        }
    }

    #[test]
    fn an_ok_attempt_becomes_an_outcome_with_its_resource() {
        let spec = FetchSpec::default();
        let o = finish(
            &spec,
            &task(1),
            None,
            fetched(ok_attempt(), 1),
            PageResult::default(),
            100,
        );
        assert_eq!(
            (o.task_id, o.class, o.status, o.attempts),
            (7, Class::Ok, Some(200), 1)
        );
        assert_eq!(
            (o.bytes, o.elapsed_ms, o.started_at_ms),
            (Some(5), Some(12), Some(100))
        );
        let resource = o.resource.expect("an ok outcome carries its resource");
        assert_eq!(resource.etag.as_deref(), Some("\"v2\""));
        assert_eq!(resource.body_sha256.as_deref(), Some("new"));
        assert_eq!(o.changed, None, "without --refresh nothing is compared");
        assert_eq!(o.next_page, None);
    }

    #[test]
    fn with_refresh_changed_compares_the_body_with_the_remembered_one() {
        let spec = FetchSpec {
            refresh: true,
            ..FetchSpec::default()
        };
        let prior = prior();
        let o = finish(
            &spec,
            &task(1),
            Some(&prior),
            fetched(ok_attempt(), 1),
            PageResult::default(),
            0,
        );
        assert_eq!(o.changed, Some(true));
        let mut same = ok_attempt();
        same.body_sha256 = Some("old".into());
        let o = finish(
            &spec,
            &task(1),
            Some(&prior),
            fetched(same, 1),
            PageResult::default(),
            0,
        );
        assert_eq!(o.changed, Some(false));
        let o = finish(
            &spec,
            &task(1),
            None,
            fetched(ok_attempt(), 1),
            PageResult::default(),
            0,
        );
        assert_eq!(o.changed, Some(true), "a URL the database never had is new");
    }

    #[test]
    fn a_304_carries_the_remembered_body_and_merges_its_validators() {
        let spec = FetchSpec {
            refresh: true,
            ..FetchSpec::default()
        };
        let mut not_modified = Attempt::new();
        not_modified.class = Class::NotModified;
        not_modified.status = Some(304);
        not_modified.cache = Some(CacheInfo {
            etag: Some("\"v1b\"".into()),
            fresh_until_ms: Some(99),
            ..CacheInfo::default()
        });
        let prior = prior();
        let o = finish(
            &spec,
            &task(1),
            Some(&prior),
            fetched(not_modified, 2),
            PageResult::default(),
            5,
        );
        assert_eq!(
            (o.class, o.status, o.attempts),
            (Class::NotModified, Some(304), 2)
        );
        assert_eq!(o.body_sha256.as_deref(), Some("old"));
        assert_eq!(o.body_path.as_deref(), Some("bodies/ol/old"));
        assert_eq!(o.changed, Some(false));
        let resource = o.resource.expect("the merged resource");
        // RFC 9111 §4.3.4: what the 304 sends replaces; what it leaves out stays.
        assert_eq!(resource.etag.as_deref(), Some("\"v1b\""));
        assert_eq!(resource.last_modified, prior.last_modified);
        assert_eq!(resource.fresh_until_ms, Some(99));
        assert_eq!(
            o.next_page, None,
            "without --paginate-always the chain ends"
        );
    }

    #[test]
    fn a_body_the_page_rules_refuse_is_invalid_json_with_the_reason() {
        let spec = FetchSpec::default();
        let page = PageResult {
            message: Some("the body is not JSON".into()),
            invalid: true,
            ..PageResult::default()
        };
        let o = finish(&spec, &task(1), None, fetched(ok_attempt(), 1), page, 0);
        assert_eq!(o.class, Class::InvalidJson);
        assert_eq!(o.message.as_deref(), Some("the body is not JSON"));
        assert!(o.resource.is_none(), "only an ok body is remembered");
    }

    #[test]
    fn a_failure_keeps_its_message_and_why_it_was_not_retried() {
        let spec = FetchSpec::default();
        let mut failed = Attempt::new();
        failed.class = Class::Http5xx;
        failed.status = Some(503);
        let mut f = fetched(failed, 4);
        f.note = Some("no retries left (--retries 3)".into());
        let o = finish(&spec, &task(1), None, f, PageResult::default(), 0);
        assert_eq!(o.message.as_deref(), Some("no retries left (--retries 3)"));
        let mut reset = Attempt::new();
        reset.class = Class::Reset;
        reset.message = Some("connection reset".into());
        let mut f = fetched(reset, 4);
        f.note = Some("no retries left (--retries 3)".into());
        let o = finish(&spec, &task(1), None, f, PageResult::default(), 0);
        assert_eq!(
            o.message.as_deref(),
            Some("connection reset (no retries left (--retries 3))")
        );
    }

    #[test]
    fn a_next_page_found_in_the_body_goes_with_the_outcome() {
        let spec = FetchSpec::default();
        let page = PageResult {
            processed: Processed {
                next: Some(Url::parse("http://other.test/p?page=3").expect("URL")),
                items: vec!["1".into()],
                ..Processed::default()
            },
            ..PageResult::default()
        };
        let o = finish(&spec, &task(2), None, fetched(ok_attempt(), 1), page, 0);
        let next = o.next_page.expect("a next page");
        assert_eq!((next.host.as_str(), next.page), ("other.test", 3));
        assert_eq!(o.items, ["1"]);
        let resource = o.resource.expect("resource");
        assert_eq!(
            resource.next_url.as_deref(),
            Some("http://other.test/p?page=3")
        );
    }

    #[test]
    fn an_unchanged_page_goes_on_only_with_paginate_always() {
        let mut spec = FetchSpec::default();
        spec.pages.paginate = Some(process::Paginate::Link);
        assert_eq!(again(&spec, &task(1), &prior()), None);
        spec.paginate_always = true;
        let next = again(&spec, &task(1), &prior()).expect("the remembered next page");
        assert_eq!(
            (next.url.as_str(), next.page),
            ("http://h.test/a?page=2", 2)
        );
        spec.pages.max_pages = Some(1);
        assert_eq!(
            again(&spec, &task(1), &prior()),
            None,
            "--max-pages still holds"
        );
    }

    #[test]
    fn what_an_attempt_tells_its_host() {
        let max = Duration::from_secs(60);
        let mut a = Attempt::new();
        a.status = Some(429);
        a.retry_after = Some(Duration::from_secs(600));
        assert_eq!(
            feedback_of(&a, max),
            Feedback::Throttled { pause: Some(max) },
            "a server's pause is capped at --max-retry-after"
        );
        a.status = Some(200);
        a.retry_after = None;
        assert_eq!(feedback_of(&a, max), Feedback::Answered);
        a.rate_limit_reset = Some(Duration::from_secs(2));
        assert_eq!(
            feedback_of(&a, max),
            Feedback::Exhausted {
                pause: Duration::from_secs(2)
            }
        );
        let mut refused = Attempt::new();
        refused.class = Class::ConnectRefused;
        assert_eq!(feedback_of(&refused, max), Feedback::ConnectFailed);
        refused.class = Class::ReadTimeout;
        assert_eq!(feedback_of(&refused, max), Feedback::Neutral);
    }

    #[test]
    fn a_deadline_outcome_has_a_start_only_if_an_attempt_was_made() {
        let spec = FetchSpec {
            deadline: Some(Duration::from_secs(30)),
            ..FetchSpec::default()
        };
        let none = deadline_outcome(&spec, 1, 50, 0, Vec::new());
        assert_eq!((none.class, none.started_at_ms), (Class::Deadline, None));
        let some = deadline_outcome(&spec, 1, 50, 2, Vec::new());
        assert_eq!(some.started_at_ms, Some(50));
        assert!(some.message.is_some_and(|m| m.contains("30s")));
    }
}
