//! The `/v1` routes for jobs, their JSON, and the small routes around them
//! (`/healthz`, `/readyz`, `/metrics`, the dashboard page).
//!
//! Errors are JSON, `{"error": "…", "field": "…"}` (the field only where
//! one option or field is to blame), with a 4xx status for anything the
//! request got wrong: 400 unreadable, 404 no such job, 409 a conflict with
//! the job's state, 413 too large, 415 not JSON, 422 a value that does not
//! work. A 5xx means the server or its database failed.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Map, Value, json};
use volley::FetchSpec;
use volley::input::{InputSource, LineSource};
use volley::options::table::{self, Kind, OPTIONS, Opt};
use volley::options::{Layer, Source};
use volley::stats::Observer as _;
use volley::store::{JobRecord, JobState, StoreError};

use crate::App;
use crate::runs::{Failure, InputFault};
use crate::view::{job_json, job_status, stored_by_client};

/// Whether a job may set `opt` through the API: not an option of the
/// server's own ([`Kind::ServerOnly`]: files on the server, its address
/// rules, secrets), and not a proxy, which the address rules every server
/// job runs under rule out ([`Kind::Proxy`]).
pub fn settable(opt: &Opt) -> bool {
    !opt.is(Kind::ServerOnly) && !opt.is(Kind::Proxy)
}

/// Longest job name, in bytes.
pub const MAX_NAME: usize = 100;

/// An error answer; see the module docs.
#[derive(Debug)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
    /// The field or option to blame, if one is.
    pub field: Option<String>,
}

impl ApiError {
    /// An error without a field.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: api_words(message.into()),
            field: None,
        }
    }

    /// A 422 naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: api_words(message.into()),
            field: Some(field.into()),
        }
    }
}

/// An engine message with its options named as fields of the API's JSON
/// (`options.per_host`), not as the command line's flags.
fn api_words(message: String) -> String {
    volley::options::respell(&message, volley::options::Spelling::Api)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = Value::String(field);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NoSuchJob(name) => {
                ApiError::new(StatusCode::NOT_FOUND, format!("no job named '{name}'"))
            }
            StoreError::JobExists(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            e => {
                tracing::error!("store: {}", volley::http::fetch::error_chain(&e));
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the database failed: {e}"),
                )
            }
        }
    }
}

/// A handler's result.
pub type ApiResult<T> = Result<T, ApiError>;

/// axum's [`Query`], answering a query that does not parse with a JSON
/// 400 rather than axum's plain-text one.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// axum's [`Path`] of one name, answering a path that does not decode
/// (invalid UTF-8 after percent-decoding) with a JSON 400.
#[derive(Debug)]
pub struct ApiPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| ApiPath(p))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// A request body, or a JSON error with the rejection's status (413 past
/// the size limit).
///
/// # Errors
/// The rejection as an [`ApiError`].
pub fn body_or_error(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|e| ApiError::new(e.status(), e.body_text()))
}

/// The job's fetch options: the server's layers, then the job's stored
/// options; the address rules are always the server's.
///
/// # Errors
/// A 422 naming the option that does not work.
pub fn job_spec(app: &App, options: Option<&str>) -> ApiResult<FetchSpec> {
    let mut layers = app.layers.clone();
    if let Some(text) = options {
        let values = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(values)) => values,
            _ => {
                return Err(ApiError::invalid(
                    "options",
                    "stored options are not a JSON object",
                ));
            }
        };
        // What the job's creator sent as `options`, named as it sent them.
        let layer = job_layer(stored_by_client(values))?;
        layers.push(layer);
    }
    let mut spec = volley::options::resolve(&layers)
        .map_err(|e| ApiError::invalid("options", e.to_string()))?;
    spec.deny_private = true;
    spec.allow_private.clone_from(&app.allow_private);
    spec.validate()
        .map_err(|e| ApiError::invalid("options", e.to_string()))?;
    Ok(spec)
}

/// What is stored for a job: its options as a layer (kebab-case keys, as
/// `volley work` reads them) and the server's address rules.
fn stored_options(app: &App, layer: &Layer) -> String {
    let mut stored = layer.values.clone();
    // The address rules: deny-private on, allow-private the server's.
    let rules = json!({"deny-private": true, "allow-private": app.allow_private});
    for opt in OPTIONS.iter().filter(|opt| opt.is(Kind::AddressRule)) {
        stored.insert(opt.key.to_owned(), rules[opt.key].clone());
    }
    Value::Object(stored).to_string()
}

/// A job's options as a layer: keys with `_` or `-` alike (`per_host` is
/// `per-host`), refusing the server's own.
fn job_layer(values: Map<String, Value>) -> ApiResult<Layer> {
    let mut layer = Map::new();
    for (key, value) in values {
        let key = key.replace('_', "-");
        if table::find(&key).is_some_and(|opt| opt.is(Kind::ServerOnly)) {
            return Err(ApiError::invalid(
                format!("options.{key}"),
                format!("'{key}' is set by the server (volley serve's flags), not per job"),
            ));
        }
        layer.insert(key, value);
    }
    Ok(Layer {
        source: Source::Request,
        values: layer,
    })
}

/// How old a running job's `latency_ms` may be before a status read
/// computes it again.
pub(crate) const LATENCY_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// A job's latency when last computed: when, and at how many outcomes.
pub(crate) struct Latency {
    at: std::time::Instant,
    outcomes: u64,
    value: Value,
}

/// A job's recent latency, from its last 1,000 outcomes with a request.
/// Computed again only when it has new outcomes, and while it runs at most
/// once per [`LATENCY_MAX_AGE`], so that polling a running job's status does
/// not read its last outcomes on every call.
async fn latency(app: &Arc<App>, record: &JobRecord) -> Value {
    let job = record.summary.job.id;
    let counts = record.summary.counts;
    let outcomes = counts.done + counts.failed;
    let now = std::time::Instant::now();
    let cached = app
        .latencies
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&job)
        .filter(|l| {
            l.outcomes == outcomes
                || (counts.unfinished() > 0 && now.duration_since(l.at) < LATENCY_MAX_AGE)
        })
        .map(|l| l.value.clone());
    if let Some(value) = cached {
        return value;
    }
    let mut ms = app
        .backend
        .recent_latencies(job, 1000)
        .await
        .unwrap_or_default();
    let value = if ms.is_empty() {
        Value::Null
    } else {
        ms.sort_unstable();
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        json!({ "p50": at(0.5), "p95": at(0.95), "of_last": ms.len() })
    };
    let mut latencies = app
        .latencies
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Jobs deleted or not asked about for a minute leave no entry behind.
    latencies.retain(|_, l| now.duration_since(l.at) < 60 * LATENCY_MAX_AGE);
    latencies.insert(
        job,
        Latency {
            at: now,
            outcomes,
            value: value.clone(),
        },
    );
    value
}

/// The job named `name`; a 404 if there is none.
pub(crate) async fn find_job(app: &Arc<App>, name: &str) -> ApiResult<JobRecord> {
    Ok(app.backend.job_record(name).await?)
}

/// `GET /v1/jobs`.
pub async fn list_jobs(State(app): State<Arc<App>>) -> ApiResult<Json<Value>> {
    let records = app.backend.job_records(None).await?;
    let jobs: Vec<Value> = records.iter().map(|r| job_json(&app, r)).collect();
    Ok(Json(json!({ "jobs": jobs })))
}

/// `GET /v1/jobs/{name}`.
pub async fn get_job(
    State(app): State<Arc<App>>,
    ApiPath(name): ApiPath,
) -> ApiResult<Json<Value>> {
    let record = find_job(&app, &name).await?;
    let mut body = job_json(&app, &record);
    body["latency_ms"] = latency(&app, &record).await;
    Ok(Json(body))
}

/// The body of `POST /v1/jobs`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewJob {
    name: String,
    #[serde(default)]
    urls: Option<Vec<String>>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    notify: Option<String>,
}

/// Most URLs a `template` of `POST /v1/jobs` may expand to: its ingest
/// runs within the request.
pub const MAX_TEMPLATE_URLS: u64 = 10_000_000;

fn check_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "name",
            format!(
                "a job name is 1 to {MAX_NAME} letters, digits, '-', '_' or '.', not starting with '.'"
            ),
        ))
    }
}

/// The request's media type, lowercased, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

/// Whether the request says its body is JSON.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|v| v == "application/json" || v.ends_with("+json"))
}

/// `POST /v1/jobs`: creates a job; with `urls`, ingests them and starts it.
pub async fn create_job(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body_or_error(body)?;
    if !is_json(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the job as JSON (Content-Type: application/json)",
        ));
    }
    let new: NewJob = serde_json::from_slice(&body).map_err(|e| {
        let status = if e.is_data() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(
            status,
            format!("the job is not valid JSON of the expected shape: {e}"),
        )
    })?;
    check_name(&new.name)?;
    if let Some(urls) = &new.urls
        && let Some(i) = urls.iter().position(|u| u.contains(['\n', '\r']))
    {
        return Err(ApiError::invalid(
            format!("urls[{i}]"),
            "a URL may not contain a line break",
        ));
    }
    let template = match (&new.urls, new.template.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "template",
                "give the inputs as urls or as a template, not both",
            ));
        }
        (_, Some(pattern)) => {
            let template = volley::input::Template::parse(pattern)
                .map_err(|e| ApiError::invalid("template", e))?;
            if template.len() > MAX_TEMPLATE_URLS {
                return Err(ApiError::invalid(
                    "template",
                    format!(
                        "the template expands to {} URLs; at most {MAX_TEMPLATE_URLS} through the API (the CLI has no limit)",
                        template.len()
                    ),
                ));
            }
            Some(template)
        }
        (_, None) => None,
    };
    if let Some(url) = &new.notify {
        app.notifier
            .check(url)
            .map_err(|e| ApiError::invalid("notify", e.to_string()))?;
    }
    let layer = job_layer(new.options.unwrap_or_default())?;
    let options_text = stored_options(&app, &layer);
    let spec = job_spec(&app, Some(&options_text))?;
    let job = app
        .backend
        .create_job(&new.name, &options_text, new.notify.as_deref())
        .await?;
    let source: Option<Box<dyn InputSource>> = match (new.urls, template) {
        (Some(urls), _) => Some(Box::new(LineSource::new(std::io::Cursor::new(
            urls.join("\n"),
        )))),
        (None, Some(template)) => Some(Box::new(volley::input::TemplateSource::new(template))),
        (None, None) => None,
    };
    if let Some(source) = source {
        start_with_input(&app, &job, spec, source).await?;
    }
    // Read after ingest: the job's counts and its ingest state.
    let record = find_job(&app, &new.name).await?;
    let location = format!("/v1/jobs/{}", new.name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(job_json(&app, &record)),
    )
        .into_response())
}

/// Starts `job`'s run reading `source` as it fetches (the first requests
/// go out while the input is still arriving), and returns once the whole
/// input is stored.
///
/// # Errors
/// 400 for an input that cannot be read, 409 for one that differs from
/// what an interrupted upload stored or for a job already running, 503
/// when the server stops first, 500 when the run fails otherwise.
async fn start_with_input(
    app: &Arc<App>,
    job: &volley::store::Job,
    spec: FetchSpec,
    source: Box<dyn InputSource>,
) -> ApiResult<()> {
    let stopping = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is stopping; send the inputs again once it is back (stored lines are skipped)",
        )
    };
    let Some(progress) = app.runs.start(job.clone(), spec, Some(source)) else {
        if app.shutdown.is_cancelled() {
            return Err(stopping());
        }
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job '{}' is running or taking inputs already", job.name),
        ));
    };
    tokio::select! {
        biased;
        () = progress.ingest_completed() => return Ok(()),
        () = app.runs.ended(&job.name) => {}
    }
    if progress
        .ingest_complete
        .load(std::sync::atomic::Ordering::Acquire)
    {
        return Ok(());
    }
    match app.runs.failure(&job.name) {
        Some(Failure {
            message,
            input: Some(InputFault::Unreadable),
        }) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("reading the input failed: {message}"),
        )),
        Some(Failure {
            message,
            input: Some(InputFault::Changed),
        }) => Err(ApiError::new(StatusCode::CONFLICT, message)),
        Some(Failure { message, .. }) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the job's run failed: {message}"),
        )),
        None => Err(stopping()),
    }
}

async fn ingest(
    app: &Arc<App>,
    job: &volley::store::Job,
    source: Box<dyn InputSource>,
) -> ApiResult<()> {
    app.backend
        .ingest_only(job, source, app.shutdown.child_token())
        .await
        .map(|tally| {
            for (class, n) in tally.by_class {
                app.metrics.recorded_unfetched(class, n);
            }
        })
        .map_err(|e| match e {
            volley::RunError::Input(e) => ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("reading the input failed: {e}"),
            ),
            e @ volley::RunError::InputChanged { .. } => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            volley::RunError::Store(e) => e.into(),
            e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        })
}

/// Query of `POST /v1/jobs/{name}/inputs`; an unknown parameter is a 400
/// (a misspelt `?colum=` must not be ignored).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputQuery {
    /// CSV: the URL column's name.
    #[serde(default)]
    column: Option<String>,
    /// NDJSON: the URL field, as a JSON pointer or a top-level name.
    #[serde(default)]
    field: Option<String>,
}

/// `POST /v1/jobs/{name}/inputs`: streams a body of URLs (text, one per
/// line; `text/csv` with `?column=`; `application/x-ndjson` with
/// `?field=`) into the job, then starts it. The body is read as it
/// arrives, a batch at a time: an upload of any size stays in bounded
/// memory. Sent again after an interruption, lines already stored are
/// skipped.
pub async fn upload_inputs(
    State(app): State<Arc<App>>,
    ApiPath(name): ApiPath,
    ApiQuery(query): ApiQuery<InputQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let record = find_job(&app, &name).await?;
    if record.summary.job.ingest_complete {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job '{name}' has all its inputs; create a new job for more"),
        ));
    }
    if record.state == JobState::Cancelled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job '{name}' is cancelled"),
        ));
    }
    let spec = job_spec(&app, record.options.as_deref())?;
    let kind = media_type(&headers).unwrap_or_else(|| "text/plain".into());
    let stream =
        futures_util::TryStreamExt::map_err(body.into_data_stream(), std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let blocking = std::io::BufReader::new(tokio_util::io::SyncIoBridge::new(reader));
    let reads: fn(&str) -> bool = |kind| {
        matches!(
            kind,
            "text/plain"
                | "application/octet-stream"
                | "text/csv"
                | "application/x-ndjson"
                | "application/jsonl"
        )
    };
    if !reads(&kind) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "inputs are text/plain (one URL per line), text/csv or application/x-ndjson, not {kind}"
            ),
        ));
    }
    // A CSV source reads its header row when made: make it where blocking
    // reads belong, off the async workers.
    let source = tokio::task::spawn_blocking(move || -> ApiResult<Box<dyn InputSource>> {
        Ok(match kind.as_str() {
            "text/csv" => {
                let column = query.column.unwrap_or_else(|| "url".into());
                let csv = volley::input::CsvSource::new(blocking, &column, b',');
                if !csv.has_column() && !csv.headers().is_empty() {
                    return Err(ApiError::invalid(
                        "column",
                        format!(
                            "the CSV header has no column '{column}' (it has: {}); name the URL column with ?column=",
                            csv.headers().join(", ")
                        ),
                    ));
                }
                Box::new(csv)
            }
            "application/x-ndjson" | "application/jsonl" => {
                let field = query.field.unwrap_or_else(|| "url".into());
                let pointer = if field.starts_with('/') {
                    field
                } else {
                    format!("/{field}")
                };
                Box::new(volley::input::JsonlSource::new(blocking, &pointer))
            }
            _ => Box::new(LineSource::new(blocking)),
        })
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    if record.state == JobState::Active {
        start_with_input(&app, &record.summary.job, spec, source).await?;
    } else {
        ingest(&app, &record.summary.job, source).await?;
    }
    let record = find_job(&app, &name).await?;
    Ok((StatusCode::OK, Json(job_json(&app, &record))).into_response())
}

/// `POST /v1/jobs/{name}/pause`: stops fetching (requests in flight get
/// the grace period); the job keeps its place.
pub async fn pause_job(
    State(app): State<Arc<App>>,
    ApiPath(name): ApiPath,
) -> ApiResult<Json<Value>> {
    let record = find_job(&app, &name).await?;
    match job_status(&record, app.runs.is_running(&name)) {
        "done" | "cancelled" => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("job '{name}' has ended"),
            ));
        }
        _ => {}
    }
    app.backend
        .set_job_state(record.summary.job.id, JobState::Paused)
        .await?;
    app.runs.stop(&name).await;
    let record = find_job(&app, &name).await?;
    Ok(Json(job_json(&app, &record)))
}

/// `POST /v1/jobs/{name}/resume`.
pub async fn resume_job(
    State(app): State<Arc<App>>,
    ApiPath(name): ApiPath,
) -> ApiResult<Json<Value>> {
    let record = find_job(&app, &name).await?;
    if record.state == JobState::Cancelled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job '{name}' is cancelled"),
        ));
    }
    let spec = job_spec(&app, record.options.as_deref())?;
    app.backend
        .set_job_state(record.summary.job.id, JobState::Active)
        .await?;
    if record.summary.job.ingest_complete && record.summary.counts.unfinished() > 0 {
        app.runs.start(record.summary.job.clone(), spec, None);
    }
    let record = find_job(&app, &name).await?;
    Ok(Json(job_json(&app, &record)))
}

/// `POST /v1/jobs/{name}/cancel`: stops the job and gives every task
/// without an outcome a `cancelled` one.
pub async fn cancel_job(
    State(app): State<Arc<App>>,
    ApiPath(name): ApiPath,
) -> ApiResult<Json<Value>> {
    let record = find_job(&app, &name).await?;
    if job_status(&record, app.runs.is_running(&name)) == "done" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job '{name}' is done"),
        ));
    }
    app.backend
        .set_job_state(record.summary.job.id, JobState::Paused)
        .await?;
    app.runs.stop(&name).await;
    let cancelled = app.backend.cancel_job(record.summary.job.id).await?;
    app.metrics
        .recorded_unfetched(volley::Class::Cancelled, cancelled);
    crate::notify::deliver(&app, name.clone());
    let record = find_job(&app, &name).await?;
    let mut body = job_json(&app, &record);
    body["cancelled"] = json!(cancelled);
    Ok(Json(body))
}

/// `DELETE /v1/jobs/{name}`: removes a finished or cancelled job with all
/// its rows.
pub async fn delete_job(
    State(app): State<Arc<App>>,
    ApiPath(name): ApiPath,
) -> ApiResult<StatusCode> {
    let record = find_job(&app, &name).await?;
    if !matches!(
        job_status(&record, app.runs.is_running(&name)),
        "done" | "cancelled"
    ) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job '{name}' has not ended; cancel it first"),
        ));
    }
    app.backend.delete_job(record.summary.job.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Hosts listed by `GET /v1/hosts` as the busiest.
pub const BUSIEST: usize = 10;

/// `GET /v1/hosts`: the hosts the shared budget holds now, and the
/// [`BUSIEST`] with the most requests in flight over all jobs.
pub async fn hosts(State(app): State<Arc<App>>) -> Json<Value> {
    let busiest: Vec<Value> = app
        .budget
        .busiest(BUSIEST)
        .into_iter()
        .map(|(host, in_flight, tasks)| json!({ "host": host, "in_flight": in_flight, "waiting": tasks.saturating_sub(in_flight) }))
        .collect();
    Json(json!({ "held": app.budget.len(), "peak": app.budget.peak(), "busiest": busiest }))
}

/// The OpenAPI 3.1 description of this API, as served: `openapi.json`
/// with its `Options` schema generated from the engine's option table
/// ([`settable`] options, with their forms, help and real defaults).
pub static OPENAPI: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let written = include_str!("openapi.json");
    let Ok(mut document) = serde_json::from_str::<Value>(written) else {
        return written.to_owned();
    };
    let mut options = table::json_schema(settable);
    options["description"] = json!(
        "The `volley fetch` options by their long names (`per_host` or `per-host`), with the same text forms."
    );
    document["components"]["schemas"]["Options"] = options;
    document.to_string()
});

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI.as_str(),
    )
        .into_response()
}

/// `GET /docs`: a reader for [`OPENAPI`], embedded like the dashboard.
pub async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let jobs: Vec<_> = app
        .runs
        .progress()
        .into_iter()
        .map(|(name, p)| (name, p.snapshot()))
        .collect();
    let text = app.metrics.render(&jobs, app.budget.len());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the store answers.
pub async fn readyz(State(app): State<Arc<App>>) -> Response {
    match app.backend.ping().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the database does not answer: {e}"),
        )
        .into_response(),
    }
}

/// Anything else: a JSON 404.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route; the API is under /v1")
}

/// `GET /`: the dashboard.
pub async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}
