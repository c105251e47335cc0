//! Per-host politeness: one [`Host`] per host name holds everything that
//! decides when that host may receive its next request.
//!
//! # What gates a request
//!
//! [`Hosts::acquire`] returns a [`Slot`] once, in this order:
//!
//! 1. the host is not **paused** (`Retry-After`, a `RateLimit-Reset` with
//!    nothing remaining, or repeated connection failures);
//! 2. a **host permit** is free: at most the host's *allowed* concurrency in
//!    flight (a fair FIFO semaphore, so tasks of a host go in order);
//! 3. the host's **token bucket** has a token (governor's GCRA, burst 1, so
//!    requests are spaced by at least `1 / rate`);
//! 4. the **global** token bucket, if any, has a token;
//! 5. a **global permit** is free (`concurrency`).
//!
//! Waiting at steps 1–4 never holds a global permit, so a slow or paused
//! host does not take slots other hosts could use. Retries pass through the
//! same gate as fresh requests, so a pause stops the whole host.
//!
//! # Adaptive throttling (AIMD)
//!
//! The configured concurrency and rate are ceilings. A 429 or 503 halves the
//! host's allowed concurrency (down to 1) and its rate factor (down to
//! [`MIN_RATE_FACTOR`]): multiplicative decrease. Each success adds
//! `1 / allowed` to a credit that raises the concurrency by one when it
//! reaches 1 (about one step per round of requests), and adds
//! [`RATE_STEP`] to the rate factor: additive increase, never above the
//! ceilings. A host whose connections keep failing
//! ([`CONNECT_FAILURES_BEFORE_PAUSE`] in a row) is paused for a doubling time
//! (1 s, 2 s, … up to [`MAX_CONNECT_PAUSE`]) instead of burning the retry
//! budget of every URL on it.

use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::politeness::robots::Robots;

/// Lowest rate factor adaptive throttling goes down to.
pub const MIN_RATE_FACTOR: f64 = 1.0 / 64.0;
/// Rate factor regained per success.
pub const RATE_STEP: f64 = 0.02;
/// Token buckets space requests by this much more than `1 / rate`, so that
/// up to 20 ms of scheduling and network jitter cannot make a server see
/// more than its rate in any one-second window.
pub const RATE_MARGIN: f64 = 1.02;
/// Consecutive connection failures after which a host is paused.
pub const CONNECT_FAILURES_BEFORE_PAUSE: u32 = 3;
/// Longest pause after connection failures.
pub const MAX_CONNECT_PAUSE: Duration = Duration::from_secs(60);
/// How long a host with no work is remembered after a 429 or 503 lowered
/// its limits; after that it starts again from the configured ceilings.
pub const REMEMBER_THROTTLING: Duration = Duration::from_secs(600);
/// Parsed robots.txt rules kept for hosts whose state was dropped, most
/// recently used first; a host evicted from this cache and seen again
/// fetches its robots.txt again.
pub const ROBOTS_CACHE_HOSTS: usize = 4096;

/// The limits of one host: ceilings for adaptive throttling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostLimits {
    /// Most requests in flight to the host.
    pub concurrency: usize,
    /// Most requests started per second, if limited.
    pub rate: Option<Rate>,
}

/// What a finished attempt tells about its host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Feedback {
    /// A response that is not a throttling signal (2xx–5xx other than 429/503).
    Answered,
    /// 429 or 503: slow down; `pause` is how long the server asked to wait.
    Throttled {
        /// The server's `Retry-After` (or rate-limit reset).
        pause: Option<Duration>,
    },
    /// Any response with a rate-limit reset and nothing remaining.
    Exhausted {
        /// Time until the limit resets.
        pause: Duration,
    },
    /// The connection could not be made.
    ConnectFailed,
    /// Anything else (timeouts mid-response, resets): no signal.
    Neutral,
}

/// Decides the limits of each host: the defaults, overridden by the first
/// matching rule. Exact rules are checked first (`host:port` before `host`),
/// then glob rules in the order given.
///
/// A rule's pattern is a host name or IP address, optionally with a port
/// (`api.example.com`, `127.0.0.1:8080`, `[::1]:8080`), or a glob of either
/// (`*.example.com`, `127.0.0.*:8080`). A rule with a port matches only that
/// port (the scheme's default port counts: `example.com:443` matches
/// `https://example.com/`); a rule without one matches every port.
#[derive(Debug, Clone)]
pub struct Policy {
    default: HostLimits,
    exact: HashMap<String, HostRule>,
    globs: Vec<(Glob, HostRule)>,
}

/// A glob rule, matched against `host` or, when it names a port, `host:port`.
#[derive(Debug, Clone)]
struct Glob {
    pattern: glob::Pattern,
    with_port: bool,
}

/// A rule pattern that can never match a host; the message says why and
/// what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "host rule \"{pattern}\" can never match: {why}; write a host, host:port or a glob \
     (api.example.com, 127.0.0.1:8080, *.example.com)"
)]
pub struct RuleError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub why: String,
}

/// What a rule pattern matches, once checked and normalised.
enum Pattern {
    /// A normalised host, with `:port` when the rule names one.
    Exact(String),
    /// A glob.
    Glob(Glob),
}

fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Checks and normalises one rule pattern (lower case, IDNs as punycode,
/// IPv6 in brackets).
fn parse_pattern(raw: &str) -> Result<Pattern, RuleError> {
    let fail = |why: &str| RuleError {
        pattern: raw.to_owned(),
        why: why.to_owned(),
    };
    let text = raw.trim().to_ascii_lowercase();
    if text.is_empty() {
        return Err(fail("it is empty"));
    }
    if text.contains("://") {
        return Err(fail("a rule names a host, not a URL with a scheme"));
    }
    if text.contains(['/', '@', ' ', '\t', '#']) {
        return Err(fail("a host has no path, user or spaces"));
    }
    // A bare IPv6 address: URLs write it in brackets.
    if let Ok(v6) = text.parse::<std::net::Ipv6Addr>() {
        return Ok(Pattern::Exact(format!("[{v6}]")));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => (host, Some(port)),
        Some(_) => return Err(fail("write an IPv6 address in brackets, as [::1]:8080")),
        None => (text.as_str(), None),
    };
    let port_is_glob = port.is_some_and(is_glob);
    if let Some(port) = port.filter(|_| !port_is_glob) {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(fail(&format!("'{port}' is not a port number (1-65535)"))),
        }
    }
    let bracketed_v6 = host.starts_with('[') && host.ends_with(']');
    if port_is_glob || (is_glob(host) && !bracketed_v6) {
        let pattern = glob::Pattern::new(&text).map_err(|e| fail(&e.to_string()))?;
        return Ok(Pattern::Glob(Glob {
            pattern,
            with_port: port.is_some(),
        }));
    }
    let host = url::Host::parse(host).map_err(|e| fail(&format!("not a host name ({e})")))?;
    Ok(Pattern::Exact(match port {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }))
}

impl Policy {
    /// A policy with `default` limits and `rules`, checked in the order
    /// given (see [`Policy`] for the pattern forms).
    ///
    /// # Errors
    /// [`RuleError`] for the first rule whose pattern can never match: a
    /// URL, a path, a port that is not a number, an invalid glob.
    pub fn new(default: HostLimits, rules: &[HostRule]) -> Result<Policy, RuleError> {
        let mut exact = HashMap::new();
        let mut globs = Vec::new();
        for rule in rules {
            match parse_pattern(&rule.pattern)? {
                Pattern::Exact(key) => {
                    exact.entry(key).or_insert_with(|| rule.clone());
                }
                Pattern::Glob(glob) => globs.push((glob, rule.clone())),
            }
        }
        Ok(Policy {
            default,
            exact,
            globs,
        })
    }

    /// The first rule matching `host` (as the URL writes it: lower case,
    /// IPv6 in brackets) on `port` (the URL's port, or its scheme's
    /// default): an exact `host:port`, an exact host, then the globs in
    /// order.
    pub fn rule_for(&self, host: &str, port: u16) -> Option<&HostRule> {
        let with_port = format!("{host}:{port}");
        self.exact
            .get(&with_port)
            .or_else(|| self.exact.get(host))
            .or_else(|| {
                self.globs
                    .iter()
                    .find(|(g, _)| {
                        g.pattern
                            .matches(if g.with_port { &with_port } else { host })
                    })
                    .map(|(_, r)| r)
            })
    }

    /// The limits for `host` on `port` (see [`Policy::rule_for`]).
    pub fn limits_for(&self, host: &str, port: u16) -> HostLimits {
        match self.rule_for(host, port) {
            None => self.default,
            Some(rule) => HostLimits {
                concurrency: rule.concurrency.unwrap_or(self.default.concurrency),
                rate: rule.rate.or(self.default.rate),
            },
        }
    }
}

/// The adaptive state of a host.
#[derive(Debug)]
struct State {
    /// Ceiling rate (configured, lowered by robots.txt `Crawl-delay`).
    ceiling_rate: Option<Rate>,
    /// Concurrency allowed now (1..=limits.concurrency).
    allowed: usize,
    /// Permits still to be taken out of circulation when they come back.
    debt: usize,
    /// Successes toward the next concurrency step.
    credit: f64,
    /// Fraction of the ceiling rate allowed now.
    rate_factor: f64,
    /// The rate the current limiter was built for (requests/s).
    limiter_rate: Option<f64>,
    /// No request starts before this.
    paused_until: Option<Instant>,
    /// Connection failures in a row.
    connect_failures: u32,
    /// The last 429 or 503, if any.
    throttled_at: Option<Instant>,
}

impl State {
    /// Whether this state must outlive the host's work: a pause not over
    /// yet, or limits lowered by throttling within [`REMEMBER_THROTTLING`].
    /// A token bucket need not be kept: a new one starts "just used", so a
    /// host forgotten and seen again waits a whole period, never less.
    fn worth_keeping(&self, ceiling: usize, now: Instant) -> bool {
        let lowered = self.rate_factor < 1.0 || self.allowed < ceiling;
        self.paused_until.is_some_and(|t| t > now)
            || (lowered
                && self
                    .throttled_at
                    .is_some_and(|t| now.saturating_duration_since(t) < REMEMBER_THROTTLING))
    }

    /// Pauses the host for `d` from now; a longer pause already set stays.
    fn extend_pause(&mut self, d: Duration) {
        let until = Instant::now() + d;
        if self.paused_until.is_none_or(|t| t < until) {
            self.paused_until = Some(until);
        }
    }
}

/// One host's politeness state; see the module docs.
#[derive(Debug)]
pub struct Host {
    name: Box<str>,
    limits: HostLimits,
    gate: Arc<Semaphore>,
    state: Mutex<State>,
    limiter: Mutex<Option<Arc<DefaultDirectRateLimiter>>>,
    /// Tasks of the window on this host (see [`HostTask`]).
    tasks: AtomicUsize,
    /// Tasks that have taken this host since its state was made.
    visits: AtomicUsize,
    /// The host's robots.txt rules, fetched once (`--respect-robots`).
    pub robots: OnceCell<Arc<Robots>>,
}

impl Host {
    fn new(name: &str, limits: HostLimits) -> Host {
        let host = Host {
            name: name.into(),
            limits,
            gate: Arc::new(Semaphore::new(limits.concurrency)),
            state: Mutex::new(State {
                ceiling_rate: limits.rate,
                allowed: limits.concurrency,
                debt: 0,
                credit: 0.0,
                rate_factor: 1.0,
                limiter_rate: None,
                paused_until: None,
                connect_failures: 0,
                throttled_at: None,
            }),
            limiter: Mutex::new(None),
            tasks: AtomicUsize::new(0),
            visits: AtomicUsize::new(0),
            robots: OnceCell::new(),
        };
        host.rebuild_limiter(&mut host.lock());
        host
    }

    /// The host name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Tasks of the window on this host now.
    pub fn tasks(&self) -> usize {
        self.tasks.load(Ordering::Acquire)
    }

    /// Whether a request should leave its connection open for reuse: yes
    /// when another task of the window is on the host, or when the host has
    /// had work before while its state lived (a pagination chain, a host
    /// that keeps coming back). No for a host seen once, its only task in
    /// the window: its connection would idle in the pool, and with millions
    /// of such hosts, idle connections would pile up. A host's state lives
    /// while it has work or something to remember, so "seen before" never
    /// outlasts that.
    pub fn keep_alive(&self) -> bool {
        self.tasks() > 1 || self.visits.load(Ordering::Relaxed) > 1
    }

    /// Caps the host's rate at the `Crawl-delay` of its robots.txt rules.
    pub fn obey_crawl_delay(&self, robots: &Robots) {
        if let Some(delay) = robots.crawl_delay() {
            self.cap_rate(Rate {
                per_sec: 1.0 / delay.as_secs_f64(),
            });
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Concurrency allowed now (for tests and displays).
    pub fn allowed(&self) -> usize {
        self.lock().allowed
    }

    /// Requests in flight to the host now: permits of its gate taken. (The
    /// gate holds `allowed` permits plus any cut not yet paid back.)
    pub fn in_flight(&self) -> usize {
        let st = self.lock();
        (st.allowed + st.debt).saturating_sub(self.gate.available_permits())
    }

    /// Requests per second allowed now, if rate-limited.
    pub fn rate_now(&self) -> Option<f64> {
        self.lock().limiter_rate
    }

    /// When the host's pause ends, if it is paused.
    pub fn paused_until(&self) -> Option<Instant> {
        self.lock().paused_until.filter(|t| *t > Instant::now())
    }

    /// Lowers the ceiling rate to at most `rate` (robots.txt `Crawl-delay`).
    pub fn cap_rate(&self, rate: Rate) {
        let mut st = self.lock();
        let capped = match st.ceiling_rate {
            Some(r) if r.per_sec <= rate.per_sec => r,
            _ => rate,
        };
        st.ceiling_rate = Some(capped);
        self.rebuild_limiter(&mut st);
    }

    /// Takes what an attempt's result says about the host.
    pub fn feedback(&self, feedback: Feedback) {
        let mut st = self.lock();
        match feedback {
            Feedback::Answered => {
                st.connect_failures = 0;
                self.increase(&mut st);
            }
            Feedback::Exhausted { pause } => {
                st.connect_failures = 0;
                st.extend_pause(pause);
            }
            Feedback::Throttled { pause } => {
                st.connect_failures = 0;
                st.throttled_at = Some(Instant::now());
                self.decrease(&mut st);
                if let Some(pause) = pause {
                    st.extend_pause(pause);
                }
            }
            Feedback::ConnectFailed => {
                st.connect_failures += 1;
                if st.connect_failures >= CONNECT_FAILURES_BEFORE_PAUSE {
                    let doublings = (st.connect_failures - CONNECT_FAILURES_BEFORE_PAUSE).min(16);
                    st.extend_pause(Duration::from_secs(1u64 << doublings).min(MAX_CONNECT_PAUSE));
                }
            }
            Feedback::Neutral => {}
        }
    }

    fn increase(&self, st: &mut State) {
        if st.allowed < self.limits.concurrency {
            st.credit += 1.0 / st.allowed as f64;
            if st.credit >= 1.0 {
                st.credit = 0.0;
                st.allowed += 1;
                if st.debt > 0 {
                    st.debt -= 1;
                } else {
                    self.gate.add_permits(1);
                }
            }
        }
        if st.rate_factor < 1.0 {
            st.rate_factor = (st.rate_factor + RATE_STEP).min(1.0);
            self.rebuild_limiter(st);
        }
    }

    fn decrease(&self, st: &mut State) {
        let target = (st.allowed / 2).max(1);
        let cut = st.allowed - target;
        st.allowed = target;
        st.credit = 0.0;
        st.debt += cut;
        // Take free permits out now; the rest as they come back.
        let taken = self.gate.forget_permits(st.debt);
        st.debt -= taken;
        st.rate_factor = (st.rate_factor / 2.0).max(MIN_RATE_FACTOR);
        self.rebuild_limiter(st);
    }

    /// Builds the token bucket for the current rate, if it changed by more
    /// than 5 % or reached the ceiling. A new bucket starts "just used", so
    /// the spacing of requests never shrinks below the new rate's period.
    fn rebuild_limiter(&self, st: &mut State) {
        let rate = st.ceiling_rate.map(|r| r.per_sec * st.rate_factor);
        let changed = match (rate, st.limiter_rate) {
            (Some(new), Some(old)) => {
                (new - old).abs() > old * 0.05 || (st.rate_factor >= 1.0 && new != old)
            }
            (None, None) => false,
            _ => true,
        };
        if !changed {
            return;
        }
        st.limiter_rate = rate;
        let limiter = rate.and_then(|r| {
            let limiter = bucket(r)?;
            let _ = limiter.check();
            Some(Arc::new(limiter))
        });
        *self.limiter.lock().unwrap_or_else(PoisonError::into_inner) = limiter;
    }

    fn current_limiter(&self) -> Option<Arc<DefaultDirectRateLimiter>> {
        self.limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Gives back a host permit, or takes it out of circulation if the
    /// allowed concurrency was lowered meanwhile.
    fn release(&self, permit: OwnedSemaphorePermit) {
        let mut st = self.lock();
        if st.debt > 0 {
            st.debt -= 1;
            permit.forget();
        }
    }
}

/// Waits until `host` is unpaused and has a free permit, and its rate
/// allows a request; returns the permit.
async fn host_permit(host: &Arc<Host>) -> Option<OwnedSemaphorePermit> {
    loop {
        if let Some(until) = host.paused_until() {
            tokio::time::sleep_until(until).await;
            continue;
        }
        let permit = Arc::clone(&host.gate).acquire_owned().await.ok()?;
        if host.paused_until().is_some() {
            // Paused while we waited: give the permit back and wait it out.
            host.release(permit);
            continue;
        }
        if let Some(limiter) = host.current_limiter() {
            limiter.until_ready().await;
        }
        return Some(permit);
    }
}

/// A token bucket of `per_sec` requests per second, burst 1, with
/// [`RATE_MARGIN`]; `None` for a rate too small to represent.
fn bucket(per_sec: f64) -> Option<DefaultDirectRateLimiter> {
    let period = Duration::try_from_secs_f64(RATE_MARGIN / per_sec).ok()?;
    Some(RateLimiter::direct(
        Quota::with_period(period)?.allow_burst(NonZeroU32::MIN),
    ))
}

/// Permission to make one request; gives its permits back on drop.
#[derive(Debug)]
pub struct Slot {
    host: Arc<Host>,
    permit: Option<OwnedSemaphorePermit>,
    /// The same host in a shared budget ([`Hosts::acquire_within`]).
    outer: Option<(Arc<Host>, Option<OwnedSemaphorePermit>)>,
    _global: OwnedSemaphorePermit,
    _outer_global: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.host.release(permit);
        }
        if let Some((host, permit)) = &mut self.outer
            && let Some(permit) = permit.take()
        {
            host.release(permit);
        }
    }
}

/// A task's hold on its host: counts the task in [`Host::tasks`] while it
/// lives, so the host's state is kept while it has work in the window.
#[derive(Debug)]
pub struct HostTask(Arc<Host>);

impl std::ops::Deref for HostTask {
    type Target = Arc<Host>;

    fn deref(&self) -> &Arc<Host> {
        &self.0
    }
}

impl Drop for HostTask {
    fn drop(&mut self) {
        self.0.tasks.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The hosts of a run: those with work in the window, and those whose state
/// must outlive their work (see [`Hosts::prune`]). Their number is bounded
/// by the window and by recent throttling, not by the hosts a job names.
pub struct Hosts {
    policy: Policy,
    global: Arc<Semaphore>,
    global_rate: Option<DefaultDirectRateLimiter>,
    map: Mutex<HashMap<Box<str>, Arc<Host>>>,
    /// robots.txt rules of hosts whose state was dropped.
    robots: Mutex<lru::LruCache<Box<str>, Arc<Robots>>>,
    /// The most hosts held at once.
    peak: AtomicUsize,
    /// Whether a request waited for a free slot of the global concurrency
    /// since [`Hosts::take_busy`] was last called.
    busy: AtomicBool,
}

impl std::fmt::Debug for Hosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosts")
            .field("held", &self.len())
            .field("peak", &self.peak())
            .finish_non_exhaustive()
    }
}

impl Hosts {
    /// Hosts limited by `policy`, `concurrency` requests in flight in all,
    /// and at most `global_rate` requests started per second in all.
    pub fn new(policy: Policy, concurrency: usize, global_rate: Option<Rate>) -> Hosts {
        let global_rate = global_rate.and_then(|r| bucket(r.per_sec));
        Hosts {
            policy,
            global: Arc::new(Semaphore::new(concurrency)),
            global_rate,
            map: Mutex::new(HashMap::new()),
            robots: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(ROBOTS_CACHE_HOSTS).unwrap_or(NonZeroUsize::MIN),
            )),
            peak: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
        }
    }

    /// Whether any request had to wait for a slot of the global
    /// concurrency since the last call: the run is bounded by its own
    /// budget, not by its hosts' limits. Clears the flag.
    pub fn take_busy(&self) -> bool {
        self.busy.swap(false, Ordering::Relaxed)
    }

    /// The state of `key` (host, with its port if not the default), created
    /// with the policy limits of `host_name` on `port` if new, for one task
    /// of the window: the host is held while the returned [`HostTask`] lives.
    pub fn host(&self, key: &str, host_name: &str, port: u16) -> HostTask {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let host = match map.get(key) {
            Some(host) => Arc::clone(host),
            None => {
                let host = Arc::new(Host::new(key, self.policy.limits_for(host_name, port)));
                let remembered = self
                    .robots
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop(key);
                if let Some(robots) = remembered {
                    host.obey_crawl_delay(&robots);
                    let _ = host.robots.set(robots);
                }
                map.insert(key.into(), Arc::clone(&host));
                self.peak.fetch_max(map.len(), Ordering::Relaxed);
                host
            }
        };
        host.tasks.fetch_add(1, Ordering::AcqRel);
        host.visits.fetch_add(1, Ordering::Relaxed);
        HostTask(host)
    }

    /// Waits until `host` may receive a request; see the module docs.
    ///
    /// Cancellation safe: dropping the future gives back any permit taken.
    pub async fn acquire(&self, host: &Arc<Host>) -> Option<Slot> {
        self.acquire_within(host, None).await
    }

    /// [`Hosts::acquire`] within a budget shared with other runs (`volley
    /// serve`): `outer` is the budget and the same host in it. The request
    /// needs both hosts' gates (pause, permit, rate), then this run's global
    /// permit (its own `concurrency`), then the budget's. Waiting for a host
    /// holds no global permit of either, and the budget's global semaphore
    /// is first come, first served, so each run gets a share in proportion
    /// to the requests it has ready, at most its own concurrency: a large
    /// run cannot starve a small one.
    ///
    /// Cancellation safe: dropping the future gives back any permit taken.
    pub async fn acquire_within(
        &self,
        host: &Arc<Host>,
        outer: Option<(&Hosts, &Arc<Host>)>,
    ) -> Option<Slot> {
        let permit = host_permit(host).await?;
        let outer_permit = match outer {
            Some((_, outer_host)) => {
                Some((Arc::clone(outer_host), Some(host_permit(outer_host).await?)))
            }
            None => None,
        };
        let global = self.global_permit().await?;
        let outer_global = match outer {
            Some((budget, _)) => Some(budget.global_permit().await?),
            None => None,
        };
        Some(Slot {
            host: Arc::clone(host),
            permit: Some(permit),
            outer: outer_permit,
            _global: global,
            _outer_global: outer_global,
        })
    }

    /// A slot of the global rate and concurrency.
    async fn global_permit(&self) -> Option<OwnedSemaphorePermit> {
        if let Some(limiter) = &self.global_rate {
            limiter.until_ready().await;
        }
        match Arc::clone(&self.global).try_acquire_owned() {
            Ok(global) => Some(global),
            Err(_) => {
                self.busy.store(true, Ordering::Relaxed);
                Arc::clone(&self.global).acquire_owned().await.ok()
            }
        }
    }

    /// Drops the state of hosts with no work in the window and nothing worth
    /// keeping (no pause to wait out, no limits lowered by recent
    /// throttling). Their robots.txt rules move to a cache of
    /// [`ROBOTS_CACHE_HOSTS`] hosts, so a host seen again obeys them without
    /// fetching robots.txt again.
    pub fn prune(&self) {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let mut robots = self.robots.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|key, host| {
            let keep = host.tasks() > 0
                || Arc::strong_count(host) > 1
                || host.lock().worth_keeping(host.limits.concurrency, now);
            if !keep && let Some(rules) = host.robots.get() {
                robots.put(key.clone(), Arc::clone(rules));
            }
            keep
        });
    }

    /// The most hosts held at once in this run.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Hosts held now.
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Up to `n` hosts with the most requests in flight (then the most
    /// tasks), busiest first, as `(host, in flight, tasks)`; hosts with
    /// neither are left out. Takes the map's lock once: for displays, a
    /// few times a second at most.
    pub fn busiest(&self, n: usize) -> Vec<(String, usize, usize)> {
        let hosts: Vec<Arc<Host>> = self
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut busy: Vec<(String, usize, usize)> = hosts
            .iter()
            .map(|h| (h.name().to_owned(), h.in_flight(), h.tasks()))
            .filter(|(_, in_flight, tasks)| in_flight + tasks > 0)
            .collect();
        busy.sort_unstable_by(|a, b| (b.1, b.2, &a.0).cmp(&(a.1, a.2, &b.0)));
        busy.truncate(n);
        busy
    }

    /// Whether no host is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A request rate: requests per second.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Rate {
    /// Requests per second (above 0).
    pub per_sec: f64,
}

impl std::str::FromStr for Rate {
    type Err = String;

    /// Parses `N/s`, `N/m` or `N/h` (N may have a fraction), or a bare `N`
    /// meaning per second.
    fn from_str(text: &str) -> Result<Rate, String> {
        let text = text.trim();
        let (number, per) = match text.split_once('/') {
            Some((n, unit)) => (n.trim(), unit.trim()),
            None => (text, "s"),
        };
        let seconds = match per {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            _ => return Err(format!("rate '{text}': use N/s, N/m or N/h, e.g. 5/s")),
        };
        match number.parse::<f64>() {
            Ok(n) if n > 0.0 && n.is_finite() => Ok(Rate {
                per_sec: n / seconds,
            }),
            _ => Err(format!(
                "rate '{text}': use a number above 0, e.g. 5/s or 300/m"
            )),
        }
    }
}

/// Limits for the hosts matching `pattern`: a host, `host:port`, or a glob of
/// either (`*.example.com`, `127.0.0.*:8080`); see [`crate::politeness::host::Policy`].
/// Unset fields keep the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRule {
    /// Host name or glob pattern (lower case).
    pub pattern: String,
    /// Most requests in flight to one matching host.
    pub concurrency: Option<usize>,
    /// Most requests per second to one matching host.
    pub rate: Option<Rate>,
    /// Headers sent only to matching hosts (`headers = {Authorization =
    /// "…"}`), never on a redirect to another host, and never stored with
    /// a job (they are usually secrets).
    pub headers: Vec<(String, String)>,
    /// Accept any TLS certificate from matching hosts, unverified (as
    /// `insecure`, for these hosts only). A redirect to another host is
    /// followed with verification again.
    pub insecure: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(concurrency: usize, rate: Option<f64>, rules: &[HostRule]) -> Hosts {
        let limits = HostLimits {
            concurrency,
            rate: rate.map(|per_sec| Rate { per_sec }),
        };
        let policy = Policy::new(limits, rules).expect("valid rules");
        Hosts::new(policy, 100, None)
    }

    #[test]
    fn rules_match_exact_names_before_globs() {
        let rules = [
            HostRule {
                pattern: "*.example.com".into(),
                concurrency: Some(2),
                rate: None,
                headers: Vec::new(),
                insecure: false,
            },
            HostRule {
                pattern: "api.example.com".into(),
                concurrency: None,
                rate: Some(Rate { per_sec: 5.0 }),
                headers: Vec::new(),
                insecure: false,
            },
        ];
        let h = hosts(8, None, &rules);
        assert_eq!(
            h.policy.limits_for("api.example.com", 443).rate,
            Some(Rate { per_sec: 5.0 })
        );
        assert_eq!(h.policy.limits_for("api.example.com", 443).concurrency, 8);
        assert_eq!(h.policy.limits_for("www.example.com", 443).concurrency, 2);
        assert_eq!(h.policy.limits_for("other.test", 443).concurrency, 8);
    }

    fn rule(pattern: &str, concurrency: usize) -> HostRule {
        HostRule {
            pattern: pattern.into(),
            concurrency: Some(concurrency),
            rate: None,
            headers: Vec::new(),
            insecure: false,
        }
    }

    #[test]
    fn rules_may_name_a_port_and_match_only_it() {
        let rules = [
            rule("127.0.0.1:8080", 1),
            rule("127.0.0.*:9090", 2),
            rule("example.com:443", 3),
            rule("[::1]:8080", 4),
            rule("::1", 5),
            rule("BÜCHER.example", 6),
        ];
        let h = hosts(8, None, &rules);
        let c = |host: &str, port: u16| h.policy.limits_for(host, port).concurrency;
        assert_eq!(c("127.0.0.1", 8080), 1, "exact host:port");
        assert_eq!(c("127.0.0.1", 8081), 8, "another port is another service");
        assert_eq!(c("127.0.0.7", 9090), 2, "a glob with a port");
        assert_eq!(c("127.0.0.7", 80), 8);
        assert_eq!(c("example.com", 443), 3, "the scheme's default port counts");
        assert_eq!(c("example.com", 80), 8);
        assert_eq!(c("[::1]", 8080), 4, "IPv6 with a port");
        assert_eq!(c("[::1]", 80), 5, "a bare IPv6 address matches every port");
        assert_eq!(
            c("xn--bcher-kva.example", 443),
            6,
            "IDN rules match punycode hosts"
        );
    }

    #[test]
    fn rules_that_can_never_match_are_refused() {
        for bad in [
            "http://example.com",
            "example.com/path",
            "user@example.com",
            "example.com:http",
            "example.com:0",
            "example.com:99999",
            "",
            "exa mple.com",
            "1::2::3",
        ] {
            let err = Policy::new(
                HostLimits {
                    concurrency: 1,
                    rate: None,
                },
                &[rule(bad, 1)],
            )
            .expect_err(bad);
            assert!(err.to_string().contains("can never match"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn throttling_halves_concurrency_and_successes_win_it_back() {
        let h = hosts(8, Some(100.0), &[]);
        let host = h.host("a", "a", 80);
        host.feedback(Feedback::Throttled { pause: None });
        assert_eq!(host.allowed(), 4);
        assert_eq!(host.rate_now(), Some(50.0));
        host.feedback(Feedback::Throttled { pause: None });
        assert_eq!(host.allowed(), 2);
        // Only 2 permits can be held now.
        let a = h.acquire(&host).await.expect("slot");
        let b = h.acquire(&host).await.expect("slot");
        let third = tokio::time::timeout(Duration::from_millis(100), h.acquire(&host));
        assert!(third.await.is_err(), "allowed concurrency not enforced");
        drop((a, b));
        for _ in 0..200 {
            host.feedback(Feedback::Answered);
        }
        assert_eq!(
            host.allowed(),
            8,
            "additive increase up to the ceiling, not past it"
        );
        assert_eq!(host.rate_now(), Some(100.0));
        let slots: Vec<Slot> = {
            let mut v = Vec::new();
            for _ in 0..8 {
                v.push(h.acquire(&host).await.expect("slot"));
            }
            v
        };
        assert_eq!(slots.len(), 8);
    }

    #[tokio::test]
    async fn busiest_lists_hosts_by_requests_in_flight_even_when_throttled() {
        let h = hosts(8, None, &[]);
        let a = h.host("a", "a", 80);
        let b = h.host("b", "b", 80);
        let _idle = h.host("c", "c", 80);
        let held = vec![
            h.acquire(&a).await.expect("slot"),
            h.acquire(&a).await.expect("slot"),
            h.acquire(&b).await.expect("slot"),
        ];
        // A cut while both of a's requests are out: still 2 in flight.
        a.feedback(Feedback::Throttled { pause: None });
        let busiest = h.busiest(10);
        assert_eq!(busiest[0], ("a".to_owned(), 2, 1));
        assert_eq!(busiest[1], ("b".to_owned(), 1, 1));
        assert_eq!(busiest[2], ("c".to_owned(), 0, 1), "a task, none in flight");
        assert_eq!(h.busiest(1).len(), 1);
        drop(held);
        assert_eq!(a.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_stops_the_host_but_not_others() {
        let h = hosts(4, None, &[]);
        let a = h.host("a", "a", 80);
        let b = h.host("b", "b", 80);
        a.feedback(Feedback::Throttled {
            pause: Some(Duration::from_secs(30)),
        });
        let start = Instant::now();
        drop(h.acquire(&b).await.expect("slot"));
        assert_eq!(start.elapsed(), Duration::ZERO, "host b is not paused");
        drop(h.acquire(&a).await.expect("slot"));
        assert!(
            start.elapsed() >= Duration::from_secs(30),
            "host a waited out its pause"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_connection_failures_pause_with_growing_backoff() {
        let h = hosts(4, None, &[]);
        let a = h.host("a", "a", 80);
        a.feedback(Feedback::ConnectFailed);
        a.feedback(Feedback::ConnectFailed);
        assert!(a.paused_until().is_none());
        a.feedback(Feedback::ConnectFailed);
        let first = a.paused_until().expect("paused") - Instant::now();
        a.feedback(Feedback::ConnectFailed);
        let second = a.paused_until().expect("paused") - Instant::now();
        assert_eq!(
            (first, second),
            (Duration::from_secs(1), Duration::from_secs(2))
        );
        a.feedback(Feedback::Answered);
        a.feedback(Feedback::ConnectFailed);
        assert_eq!(
            a.paused_until().expect("old pause stays") - Instant::now(),
            second
        );
    }

    #[test]
    fn prune_keeps_hosts_with_work_or_state_and_drops_the_rest() {
        let h = hosts(4, None, &[]);
        let busy = h.host("busy", "busy", 80);
        h.host("idle", "idle", 80);
        h.host("throttled", "throttled", 80)
            .feedback(Feedback::Throttled { pause: None });
        h.host("failing", "failing", 80)
            .feedback(Feedback::ConnectFailed);
        h.prune();
        assert_eq!(h.len(), 2, "busy (a task) and throttled (lowered limits)");
        assert_eq!(busy.tasks(), 1);
        drop(busy);
        h.prune();
        assert_eq!(h.len(), 1, "only the throttled host is remembered");
        assert_eq!(h.peak(), 4);
    }

    #[test]
    fn only_a_host_seen_once_closes_its_connection() {
        let h = hosts(4, None, &[]);
        let once = h.host("once", "once", 80);
        assert!(!once.keep_alive(), "its only task, first visit: close");
        let first = h.host("busy", "busy", 80);
        let second = h.host("busy", "busy", 80);
        assert!(
            first.keep_alive() && second.keep_alive(),
            "two tasks in the window"
        );
        drop(second);
        assert!(
            first.keep_alive(),
            "seen before: a chain's next page reuses it"
        );
    }

    #[test]
    fn a_forgotten_host_seen_again_waits_out_its_rate() {
        let h = hosts(4, Some(10.0), &[]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let first = h.host("a", "a", 80);
            drop(h.acquire(&first).await.expect("slot"));
            let started = std::time::Instant::now();
            drop(first);
            h.prune();
            assert_eq!(h.len(), 0, "nothing to remember: dropped");
            let again = h.host("a", "a", 80);
            drop(h.acquire(&again).await.expect("slot"));
            // 10/s with the margin: 102 ms after the new bucket was made,
            // which was after the first request.
            let gap = started.elapsed();
            assert!(gap >= Duration::from_millis(100), "{gap:?}");
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_forgotten_host_seen_again_keeps_its_retry_after_pause() {
        let h = hosts(4, None, &[]);
        let a = h.host("a", "a", 80);
        a.feedback(Feedback::Throttled {
            pause: Some(Duration::from_secs(30)),
        });
        let until = a.paused_until().expect("paused");
        drop(a);
        h.prune();
        let again = h.host("a", "a", 80);
        assert_eq!(
            again.paused_until(),
            Some(until),
            "the pause outlives the work"
        );
        let start = Instant::now();
        drop(h.acquire(&again).await.expect("slot"));
        assert!(start.elapsed() >= Duration::from_secs(29));
        drop(again);
        // Once the pause is over and the throttling old, it is forgotten.
        tokio::time::advance(REMEMBER_THROTTLING).await;
        h.prune();
        assert_eq!(h.len(), 0);
    }

    #[test]
    fn a_forgotten_host_seen_again_obeys_its_robots_txt() {
        let h = hosts(4, None, &[]);
        let a = h.host("a", "a", 80);
        let rules = Arc::new(Robots::parse(
            "volley",
            b"User-agent: *\nDisallow: /private\nCrawl-delay: 2\n",
        ));
        a.obey_crawl_delay(&rules);
        assert!(a.robots.set(rules).is_ok());
        drop(a);
        h.prune();
        assert_eq!(h.len(), 0, "the state goes, the rules stay in the cache");
        let again = h.host("a", "a", 80);
        let robots = again.robots.get().expect("rules remembered");
        let private = url::Url::parse("http://a/private/x").expect("url");
        assert!(robots.check(&private).is_err());
        assert_eq!(again.rate_now(), Some(0.5), "Crawl-delay 2 s caps the rate");
    }

    #[test]
    fn parses_rates_per_second_minute_and_hour() {
        assert_eq!("5/s".parse(), Ok(Rate { per_sec: 5.0 }));
        assert_eq!("120/m".parse(), Ok(Rate { per_sec: 2.0 }));
        assert_eq!("0.5".parse(), Ok(Rate { per_sec: 0.5 }));
        assert!("0/s".parse::<Rate>().is_err());
        assert!("5/d".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
    }
}
