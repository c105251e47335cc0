//! Completion webhooks: a job created with `"notify": URL` has its JSON
//! POSTed there once when it is done or cancelled.
//!
//! The request goes through a client with the server's address rules (the
//! same resolver guard and literal-IP checks as the jobs' requests) and
//! follows no redirects. It is retried with exponential backoff and
//! jitter ([`ATTEMPTS`] in all) on connection failures, timeouts, 408,
//! 429 and 5xx. How it went is stored in `jobs.notified` (`sent`, or the
//! last failure), so it is sent once, and a server restarted before
//! sending it sends it then.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use volley::FetchSpec;

use crate::App;
use crate::view::{job_json, job_status};

/// Requests made at most for one webhook.
pub const ATTEMPTS: usize = 5;

/// Time for one webhook request, connecting included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// First backoff ceiling between attempts (doubling, with jitter, at
/// most 30 s).
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);

/// The webhook client and the deliveries under way.
pub struct Notifier {
    client: reqwest::Client,
    rules: volley::http::guard::AddressRules,
    sending: Mutex<HashSet<String>>,
}

/// Why a webhook URL is refused when the job is created.
#[derive(Debug, thiserror::Error)]
pub enum BadNotify {
    /// Not an absolute http(s) URL.
    #[error("'{0}' is not an http:// or https:// URL")]
    NotHttp(String),
    /// An address the server's rules refuse.
    #[error("{0}")]
    Forbidden(String),
}

impl Notifier {
    /// A notifier under the address rules that refuse private ranges
    /// except `allow_private` (CIDR texts).
    ///
    /// # Errors
    /// A range that does not parse, or a client that cannot be built.
    pub fn new(allow_private: &[String]) -> Result<Notifier, String> {
        let spec = FetchSpec {
            deny_private: true,
            allow_private: allow_private.to_vec(),
            max_redirects: 0,
            connect_timeout: TIMEOUT,
            read_timeout: TIMEOUT,
            ..FetchSpec::default()
        };
        let rules = spec.address_rules().map_err(|e| e.to_string())?;
        let client = volley::http::clients::build_client(&spec).map_err(|e| e.to_string())?;
        Ok(Notifier {
            client,
            rules,
            sending: Mutex::default(),
        })
    }

    /// Checks a webhook URL before a job is created with it: http(s), and
    /// not an IP literal the rules refuse (names are checked when sent,
    /// after DNS).
    ///
    /// # Errors
    /// [`BadNotify`].
    pub fn check(&self, text: &str) -> Result<(), BadNotify> {
        let url = url::Url::parse(text).map_err(|_| BadNotify::NotHttp(text.to_owned()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(BadNotify::NotHttp(text.to_owned()));
        }
        self.rules
            .check_url(&url)
            .map_err(|e| BadNotify::Forbidden(e.to_string()))
    }
}

/// Sends `job`'s webhook if it is owed: the job has ended, has a URL and
/// no result yet. Runs in its own task; a delivery of the same job
/// already under way is not doubled.
pub fn deliver(app: &Arc<App>, job: String) {
    {
        let mut sending = app
            .notifier
            .sending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !sending.insert(job.clone()) {
            return;
        }
    }
    let app = Arc::clone(app);
    tokio::spawn(async move {
        if let Err(e) = deliver_owed(&app, &job).await {
            tracing::warn!(job = %job, "webhook: {e}");
        }
        app.notifier
            .sending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&job);
    });
}

async fn deliver_owed(app: &Arc<App>, name: &str) -> Result<(), volley::store::StoreError> {
    let record = match app.backend.job_record(name).await {
        Ok(record) => record,
        // Deleted since: nothing is owed.
        Err(volley::store::StoreError::NoSuchJob(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let status = job_status(&record, app.runs.is_running(name));
    let (Some(url), None) = (&record.notify, &record.notified) else {
        return Ok(());
    };
    if !matches!(status, "done" | "cancelled") {
        return Ok(());
    }
    let mut body = job_json(app, &record);
    body["event"] = serde_json::Value::String(format!("job.{status}"));
    let result = match send(&app.notifier.client, url, &body).await {
        Ok(()) => "sent".to_owned(),
        Err(e) => e,
    };
    tracing::info!(job = %name, url = %url, "webhook: {result}");
    app.backend
        .set_notified(record.summary.job.id, &result)
        .await?;
    app.runs.changed();
    Ok(())
}

/// POSTs `body` to `url` with retries; the last failure as text.
async fn send(client: &reqwest::Client, url: &str, body: &serde_json::Value) -> Result<(), String> {
    let attempt = || async {
        let response = client
            .post(url)
            .timeout(TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| (true, volley::http::fetch::error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
        Err((retry, format!("the webhook answered {status}")))
    };
    attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(BACKOFF_BASE)
                .with_max_delay(Duration::from_secs(30))
                .with_max_times(ATTEMPTS - 1)
                .with_jitter(),
        )
        .when(|(retry, _)| *retry)
        .await
        .map_err(|(_, why)| why)
}
