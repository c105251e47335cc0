//! Reading results: outcome and item pages as JSON (keyset: `?after=` the
//! last id seen), the whole result as NDJSON in bounded memory, and a job's
//! live progress as Server-Sent Events.

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use volley::export::ExportError;

use crate::App;
use crate::api::{ApiError, ApiPath, ApiQuery, ApiResult, find_job};
use crate::view::{job_json, job_status};
use volley::database::Export;

/// Default and largest page of a JSON listing.
pub const PAGE_DEFAULT: usize = 100;
/// See [`PAGE_DEFAULT`].
pub const PAGE_MAX: usize = 1000;

/// How often an event stream sends progress.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// NDJSON chunks in flight between the database thread and the socket.
const CHUNKS_QUEUED: usize = 8;

/// Query of the outcome listing; an unknown parameter is a 400.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeQuery {
    /// Only outcomes of this class.
    #[serde(default)]
    class: Option<String>,
    /// The `id` of the last outcome seen (keyset cursor).
    #[serde(default)]
    after: Option<i64>,
    /// Page size, 1 to [`PAGE_MAX`].
    #[serde(default)]
    limit: Option<usize>,
}

fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"))
}

fn page_size(limit: Option<usize>) -> ApiResult<usize> {
    match limit.unwrap_or(PAGE_DEFAULT) {
        n @ 1..=PAGE_MAX => Ok(n),
        _ => Err(ApiError::invalid(
            "limit",
            format!("limit is 1 to {PAGE_MAX}"),
        )),
    }
}

/// `GET /v1/jobs/{name}/outcomes`: a JSON page, or with `Accept:
/// application/x-ndjson` every outcome (of `class`, if given) streamed in
/// input order.
pub async fn outcomes(
    State(app): State<Arc<App>>,
    ApiPath(name): ApiPath,
    ApiQuery(query): ApiQuery<OutcomeQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(class) = &query.class
        && volley::Class::parse(class).is_none()
    {
        return Err(ApiError::invalid(
            "class",
            format!("no outcome class '{class}'"),
        ));
    }
    let job = find_job(&app, &name).await?.summary.job.id;
    if wants_ndjson(&headers) {
        return Ok(ndjson(&app, job, Export::Outcomes(query.class)));
    }
    let limit = page_size(query.limit)?;
    let (after, class) = (query.after.unwrap_or(0), query.class);
    let page = app.backend.outcome_page(job, after, class, limit).await?;
    let next = (page.len() == limit)
        .then(|| page.last().map(|e| e.task_id))
        .flatten();
    let rows: Vec<Value> = page
        .iter()
        .map(|entry| {
            let mut value = volley::export::json_row(&entry.row).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut value {
                map.insert("id".into(), json!(entry.task_id));
            }
            value
        })
        .collect();
    Ok(Json(json!({ "outcomes": rows, "next": next })).into_response())
}

/// Query of the item listing; an unknown parameter is a 400.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemQuery {
    /// The `next` of the previous page (`TASK.INDEX`).
    #[serde(default)]
    after: Option<String>,
    /// Page size, 1 to [`PAGE_MAX`].
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/jobs/{name}/items`: the `--items` elements, as JSON pages or
/// streamed as NDJSON (each element as the API sent it).
pub async fn items(
    State(app): State<Arc<App>>,
    ApiPath(name): ApiPath,
    ApiQuery(query): ApiQuery<ItemQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let job = find_job(&app, &name).await?.summary.job.id;
    if wants_ndjson(&headers) {
        return Ok(ndjson(&app, job, Export::Items));
    }
    let limit = page_size(query.limit)?;
    let after = match query.after.as_deref() {
        None => (0, 0),
        Some(text) => item_cursor(text).ok_or_else(|| {
            ApiError::invalid(
                "after",
                "after is the 'next' of the previous page, TASK.INDEX",
            )
        })?,
    };
    let page = app.backend.item_page(job, after, limit).await?;
    let next = (page.len() == limit)
        .then(|| page.last().map(|(task, row)| format!("{task}.{}", row.idx)))
        .flatten();
    let items: Vec<Value> = page
        .iter()
        .map(|(_, row)| {
            json!({
                "line": row.line,
                "page": row.page,
                "url": row.url,
                "idx": row.idx,
                "item": serde_json::from_str::<Value>(&row.item).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(json!({ "items": items, "next": next })).into_response())
}

/// An item page's cursor, `TASK.INDEX`: 1 to 18 digits, a dot, 1 to 9
/// digits (as the OpenAPI description's pattern says).
fn item_cursor(text: &str) -> Option<(i64, u64)> {
    let (task, index) = text.split_once('.')?;
    let digits = |s: &str, most: usize| {
        (1..=most).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(task, 18) || !digits(index, 9) {
        return None;
    }
    Some((task.parse().ok()?, index.parse().ok()?))
}

/// A writer that hands full chunks to the response body; a closed body
/// (the client left) is a broken pipe, which ends the read.
struct ChunkWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        // A PostgreSQL reader calls this from within its own `block_on`:
        // step out of the runtime's context to wait for room.
        tokio::task::block_in_place(|| self.tx.blocking_send(Ok(chunk)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

/// Streams `what` of `job` as NDJSON, read on a blocking thread by a
/// reader of its own.
fn ndjson(app: &Arc<App>, job: i64, what: Export) -> Response {
    let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
    let backend = Arc::clone(&app.backend);
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        let result = backend
            .export(job, &what, &mut out)
            .and_then(|()| Ok(out.flush()?))
            .map_err(|e| match e {
                ExportError::Write(e) => e,
                e => std::io::Error::other(e.to_string()),
            });
        if let Err(e) = result
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            tracing::warn!("NDJSON stream failed: {e}");
            // The status is sent already: end the body with an error.
            let _ = tx.blocking_send(Err(e));
        }
    });
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

/// `GET /v1/jobs/{name}/events`: Server-Sent Events. `progress` about
/// every second (the job's JSON), `state` when its state changes, and a
/// final `done` once it is done or cancelled, after which the stream ends.
/// Event ids increase; a reconnect with `Last-Event-ID` continues after it.
pub async fn events(
    State(app): State<Arc<App>>,
    ApiPath(name): ApiPath,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    find_job(&app, &name).await?;
    let last_id: u64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    struct Cursor {
        app: Arc<App>,
        name: String,
        id: u64,
        state: Option<String>,
        watch: tokio::sync::watch::Receiver<u64>,
        queued: Vec<Event>,
        ended: bool,
        first: bool,
    }
    let cursor = Cursor {
        watch: app.runs.watch(),
        app,
        name,
        id: last_id,
        state: None,
        queued: Vec::new(),
        ended: false,
        first: true,
    };
    let stream = futures_util::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(event) = (!c.queued.is_empty()).then(|| c.queued.remove(0)) {
                return Some((Ok(event), c));
            }
            if c.ended {
                return None;
            }
            if !c.first {
                tokio::select! {
                    () = c.app.shutdown.cancelled() => return None,
                    () = tokio::time::sleep(PROGRESS_EVERY) => {}
                    _ = c.watch.changed() => {}
                }
            }
            c.first = false;
            let Ok(record) = c.app.backend.job_record(&c.name).await else {
                // The job was deleted, or the database failed: end.
                return None;
            };
            let running = c.app.runs.is_running(&c.name);
            let state = job_status(&record, running).to_owned();
            let body = job_json(&c.app, &record).to_string();
            let mut event = |kind: &str| {
                c.id += 1;
                Event::default()
                    .id(c.id.to_string())
                    .event(kind)
                    .data(body.clone())
            };
            if c.state.as_deref() != Some(state.as_str()) {
                c.queued.push(event("state"));
                c.state = Some(state.clone());
            }
            c.queued.push(event("progress"));
            if matches!(state.as_str(), "done" | "cancelled") && !running {
                c.queued.push(event("done"));
                c.ended = true;
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
