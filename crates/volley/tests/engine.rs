//! The engine without a front end: jobs run by [`volley::fetch_job`] against
//! a real HTTP server on loopback, recorded in a real SQLite file.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use volley::input::LineSource;
use volley::stats::{Observed, Observer};
use volley::store::sqlite::{SqliteReader, SqliteStore};
use volley::store::{ExportRow, Reader, Store};
use volley::{Control, FetchSpec};

/// Requests seen, by path.
type Hits = Arc<Mutex<HashMap<String, u64>>>;

/// A server on 127.0.0.1: `/ok/{n}`, `/status/{code}`, `/flaky/{key}` (503
/// the first time, then 200) and `/slow/{n}` (200 after 20 ms). Returns its
/// base URL and the requests it saw.
async fn server() -> (String, Hits) {
    async fn count(hits: &Hits, path: String) -> u64 {
        let mut hits = hits.lock().expect("hits lock");
        let n = hits.entry(path).or_default();
        *n += 1;
        *n
    }
    let hits: Hits = Arc::default();
    let app = Router::new()
        .route(
            "/ok/{n}",
            get(|State(h): State<Hits>, Path(n): Path<String>| async move {
                count(&h, format!("/ok/{n}")).await;
                format!("ok {n}")
            }),
        )
        .route(
            "/status/{code}",
            get(|State(h): State<Hits>, Path(code): Path<u16>| async move {
                count(&h, format!("/status/{code}")).await;
                StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT)
            }),
        )
        .route(
            "/flaky/{key}",
            get(
                |State(h): State<Hits>, Path(key): Path<String>| async move {
                    if count(&h, format!("/flaky/{key}")).await == 1 {
                        return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
                    }
                    "recovered".into_response()
                },
            ),
        )
        .route(
            "/slow/{n}",
            get(|State(h): State<Hits>, Path(n): Path<String>| async move {
                count(&h, format!("/slow/{n}")).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                "slow"
            }),
        )
        .with_state(Arc::clone(&hits));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), hits)
}

/// Fast retries, so the tests do not wait on backoff.
fn spec() -> FetchSpec {
    FetchSpec {
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..FetchSpec::default()
    }
}

/// Every outcome of the only job, in input order.
fn outcomes(db: &std::path::Path, job: i64) -> Vec<ExportRow> {
    let reader = SqliteReader::open(db).expect("open the database to read");
    let mut rows = Vec::new();
    reader
        .for_each_outcome(job, |row: &ExportRow| {
            rows.push(row.clone());
            Ok::<(), volley::store::StoreError>(())
        })
        .expect("read the outcomes");
    rows
}

/// A new SQLite database in a temporary directory (`v.db`), with job `t`.
async fn new_job() -> (tempfile::TempDir, Arc<SqliteStore>, volley::store::Job) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Arc::new(SqliteStore::open(&dir.path().join("v.db")).expect("open the store"));
    let job = store
        .open_job("t", "an input", None)
        .await
        .expect("open the job");
    (dir, store, job)
}

fn lines(text: String) -> Option<Box<dyn volley::input::InputSource>> {
    Some(Box::new(LineSource::new(Cursor::new(text.into_bytes()))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_gets_one_outcome_per_input_line() {
    let (base, hits) = server().await;
    let (dir, store, job) = new_job().await;
    let db = dir.path().join("v.db");
    let text = format!(
        "{base}/ok/1\n\n# a comment\nnot a url\n{base}/status/404\n{base}/flaky/a\n{base}/ok/1\n"
    );
    let report = volley::fetch_job(
        Arc::clone(&store),
        &job,
        lines(text),
        spec(),
        &Control::default(),
    )
    .await
    .expect("the run");
    assert!(!report.interrupted);
    assert_eq!(report.counts.total(), 5);
    assert_eq!(report.tally.fetched, 3, "the duplicate is not fetched");
    let got: Vec<(Option<u64>, String, u32)> = outcomes(&db, job.id)
        .into_iter()
        .map(|r| (r.line, r.class, r.attempts))
        .collect();
    assert_eq!(
        got,
        [
            (Some(1), "ok".to_owned(), 1),
            (Some(4), "invalid_url".to_owned(), 0),
            (Some(5), "http_4xx".to_owned(), 1),
            (Some(6), "ok".to_owned(), 2),
            (Some(7), "duplicate".to_owned(), 0),
        ]
    );
    let hits = hits.lock().expect("hits lock").clone();
    assert_eq!(hits.get("/ok/1"), Some(&1));
    assert_eq!(hits.get("/flaky/a"), Some(&2), "503 then 200");
}

/// Stops the run once `after` outcomes are committed.
#[derive(Debug)]
struct StopAfter {
    after: u64,
    seen: Mutex<u64>,
    stop: CancellationToken,
}

impl Observer for StopAfter {
    fn committed(&self, batch: &[Observed], _took: Duration) {
        let mut seen = self.seen.lock().expect("seen lock");
        *seen += batch.len() as u64;
        if *seen >= self.after {
            self.stop.cancel();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_run_resumes_and_fetches_nothing_twice() {
    let (base, hits) = server().await;
    // The directory lives until the end of the test.
    let (_dir, store, job) = new_job().await;
    let text: String = (0..200).map(|i| format!("{base}/slow/{i}\n")).collect();
    let stop = CancellationToken::new();
    let control = Control {
        stop: stop.clone(),
        observer: Some(Arc::new(StopAfter {
            after: 20,
            seen: Mutex::new(0),
            stop,
        })),
        ..Control::default()
    };
    let spec = FetchSpec {
        concurrency: 4,
        ..spec()
    };
    let first = volley::fetch_job(
        Arc::clone(&store),
        &job,
        lines(text.clone()),
        spec.clone(),
        &control,
    )
    .await
    .expect("the first run");
    assert!(first.interrupted, "stopped early");
    let done = first.counts.done;
    assert!((20..200).contains(&done), "{:?}", first.counts);

    let job = store
        .open_job("t", "an input", None)
        .await
        .expect("open the job again");
    let second = volley::fetch_job(
        Arc::clone(&store),
        &job,
        lines(text),
        spec,
        &Control::default(),
    )
    .await
    .expect("the second run");
    assert!(!second.interrupted);
    assert_eq!(second.counts.done, 200);
    assert_eq!(second.tally.fetched, 200 - done, "only what was left");
    let hits = hits.lock().expect("hits lock").clone();
    let twice: Vec<_> = hits.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "a request made again for a recorded outcome: {twice:?}"
    );
    assert_eq!(hits.len(), 200);
}
