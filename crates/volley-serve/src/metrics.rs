//! `GET /metrics`: Prometheus text format (prometheus-client's registry).
//!
//! Counters and histograms move as outcomes commit (the server is the
//! [`Observer`] of every run); gauges are read when scraped, from the runs
//! and the shared budget.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use volley::stats::{Observed, Observer};

type Labels = Vec<(&'static str, String)>;

/// The server's metrics; see the module docs.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    outcomes: Family<Labels, Counter>,
    latency: Histogram,
    bytes: Counter,
    commit: Histogram,
    in_flight: Gauge,
    hosts: Gauge,
    job_tasks: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric registered at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("volley");
        let outcomes = Family::<Labels, Counter>::default();
        registry.register(
            "outcomes",
            "Outcomes recorded, by class and final HTTP status (none without a response)",
            outcomes.clone(),
        );
        let latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "request_duration_seconds",
            "Duration of each outcome's final attempt, request to end of body",
            latency.clone(),
        );
        let bytes = Counter::default();
        registry.register(
            "body_bytes",
            "Decoded body bytes of recorded outcomes",
            bytes.clone(),
        );
        let commit = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "store_commit_seconds",
            "Duration of each batch commit of outcomes to the store",
            commit.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests in flight now, over all jobs",
            in_flight.clone(),
        );
        let hosts = Gauge::default();
        registry.register(
            "hosts_held",
            "Hosts whose politeness state the server holds now",
            hosts.clone(),
        );
        let job_tasks = Family::<Labels, Gauge>::default();
        registry.register(
            "job_tasks",
            "Tasks of each running job: total, finished (with an outcome) and failed",
            job_tasks.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            outcomes,
            latency,
            bytes,
            commit,
            in_flight,
            hosts,
            job_tasks,
        }
    }

    /// The text exposition, after setting the gauges: `jobs` gives each
    /// running job's name and counters, `hosts` the hosts held.
    pub fn render(
        &self,
        jobs: &[(String, volley::stats::ProgressSnapshot)],
        hosts: usize,
    ) -> String {
        self.in_flight.set(
            jobs.iter()
                .map(|(_, p)| p.in_flight)
                .sum::<u64>()
                .try_into()
                .unwrap_or(i64::MAX),
        );
        self.hosts.set(hosts.try_into().unwrap_or(i64::MAX));
        self.job_tasks.clear();
        for (name, p) in jobs {
            for (state, n) in [
                ("total", p.total),
                ("finished", p.finished),
                ("failed", p.failed),
            ] {
                self.job_tasks
                    .get_or_create(&vec![("job", name.clone()), ("state", state.to_owned())])
                    .set(n.try_into().unwrap_or(i64::MAX));
            }
        }
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}

impl Observer for Metrics {
    fn committed(&self, batch: &[Observed], took: Duration) {
        self.commit.observe(took.as_secs_f64());
        for o in batch {
            let status = o
                .status
                .map_or_else(|| "none".to_owned(), |s| s.to_string());
            self.outcomes
                .get_or_create(&vec![
                    ("class", o.class.as_str().to_owned()),
                    ("status", status),
                ])
                .inc();
            if let Some(ms) = o.elapsed_ms {
                self.latency.observe(ms as f64 / 1000.0);
            }
            self.bytes.inc_by(o.bytes.unwrap_or(0));
        }
    }

    fn recorded_unfetched(&self, class: volley::Class, n: u64) {
        self.outcomes
            .get_or_create(&vec![
                ("class", class.as_str().to_owned()),
                ("status", "none".to_owned()),
            ])
            .inc_by(n);
    }
}
