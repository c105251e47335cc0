//! The router without a port: requests go through `tower::ServiceExt::oneshot`
//! into the real handlers over a real SQLite file.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use volley::options::{Layer, Source};
use volley_serve::{App, Database, ServeConfig, router};

const TOKEN: &str = "s3cret-token";

async fn app(dir: &tempfile::TempDir) -> Arc<App> {
    let config = ServeConfig {
        db: Database::Sqlite(dir.path().join("serve.db")),
        token: Some(TOKEN.into()),
        layers: vec![Layer {
            source: Source::Flags,
            values: serde_json::Map::new(),
        }],
        allow_private: Vec::new(),
    };
    App::open(config).await.expect("the server's state opens")
}

async fn call(
    app: &Arc<App>,
    method: &str,
    uri: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let body = body.map(|value| ("application/json", value.to_string()));
    call_raw(app, method, uri, body, token).await
}

/// A request with `body` as (content type, text); the answer's status and
/// JSON (null if it is not JSON).
async fn call_raw(
    app: &Arc<App>,
    method: &str,
    uri: &str,
    body: Option<(&str, String)>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some((content_type, text)) => {
            request = request.header(header::CONTENT_TYPE, content_type);
            Body::from(text)
        }
        None => Body::empty(),
    };
    let response = router(Arc::clone(app))
        .oneshot(request.body(body).expect("a request"))
        .await
        .expect("the router answers");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

#[tokio::test]
async fn health_is_open_and_the_api_needs_the_token() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let app = app(&dir).await;
    assert_eq!(
        call(&app, "GET", "/healthz", None, None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "GET", "/readyz", None, None).await.0,
        StatusCode::OK
    );
    let (status, body) = call(&app, "GET", "/v1/jobs", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("Bearer")),
        "{body}"
    );
    assert_eq!(
        call(&app, "GET", "/v1/jobs", None, Some("s3cret-tokeN"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, "GET", "/metrics", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = call(&app, "GET", "/v1/jobs", None, Some(TOKEN)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"jobs": []})));
    let (status, body) = call(&app, "GET", "/nowhere", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string(), "a JSON error: {body}");
}

#[tokio::test]
async fn bad_requests_get_4xx_with_json_saying_what_to_fix() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let app = app(&dir).await;
    let t = Some(TOKEN);
    let (status, body) = call(
        &app,
        "POST",
        "/v1/jobs",
        Some(json!({"name": "a", "options": {"timeout": "soon"}})),
        t,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "options", "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("timeout")),
        "{body}"
    );
    let (status, body) = call(
        &app,
        "POST",
        "/v1/jobs",
        Some(json!({"name": "a", "options": {"save_bodies": "/etc"}})),
        t,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "options.save-bodies", "{body}");
    // Options named as the API spells them, not as the command line's flags.
    for (options, named) in [
        (
            json!({"per_host": 0}),
            "options.per_host must be at least 1",
        ),
        (json!({"timeout": "soon"}), "options.timeout"),
        (
            json!({"paginate": "offset=start", "items": "/i"}),
            "needs options.page_size N",
        ),
    ] {
        let (status, body) = call(
            &app,
            "POST",
            "/v1/jobs",
            Some(json!({"name": "a", "options": options})),
            t,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(named) && !error.contains("--"), "{body}");
    }
    let (status, body) = call(&app, "POST", "/v1/jobs", Some(json!({"name": "../x"})), t).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("name"))
    );
    let (status, _) = call(
        &app,
        "POST",
        "/v1/jobs",
        Some(json!({"name": "a", "colour": 1})),
        t,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = call(
        &app,
        "POST",
        "/v1/jobs",
        Some(json!({"name": "a", "urls": ["http://x/\nhttp://y/"]})),
        t,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = call(&app, "GET", "/v1/jobs/a/outcomes?limit=0", None, t).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no job a yet");

    // Not JSON, and not even readable JSON.
    for (content_type, body, expected) in [
        ("text/plain", "name=a", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("application/json", "{\"name\": ", StatusCode::BAD_REQUEST),
    ] {
        let sent = Some((content_type, body.to_owned()));
        let (status, _) = call_raw(&app, "POST", "/v1/jobs", sent, Some(TOKEN)).await;
        assert_eq!(status, expected, "{content_type}: {body}");
    }
}

#[tokio::test]
async fn a_job_waits_for_inputs_and_is_cancelled_and_deleted() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let app = app(&dir).await;
    let t = Some(TOKEN);
    let (status, body) = call(
        &app,
        "POST",
        "/v1/jobs",
        Some(json!({"name": "later", "options": {"retries": 0}})),
        t,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["state"], "waiting");
    assert_eq!(body["options"], json!({"retries": 0}));
    let (status, _) = call(&app, "POST", "/v1/jobs", Some(json!({"name": "later"})), t).await;
    assert_eq!(status, StatusCode::CONFLICT, "a name in use");
    let (status, _) = call(&app, "DELETE", "/v1/jobs/later", None, t).await;
    assert_eq!(status, StatusCode::CONFLICT, "not ended yet");
    let (status, body) = call(&app, "POST", "/v1/jobs/later/cancel", None, t).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{body}"
    );
    let (status, _) = call(&app, "POST", "/v1/jobs/later/resume", None, t).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = call(&app, "DELETE", "/v1/jobs/later", None, t).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&app, "GET", "/v1/jobs/later", None, t).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_operation_of_the_openapi_description_is_routed() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let app = app(&dir).await;
    let spec: Value = serde_json::from_str(&volley_serve::api::OPENAPI).expect("valid JSON");
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for method in ["get", "post", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let uri = path.replace("{name}", "no-such-job");
            let (status, body) = call(&app, &method.to_uppercase(), &uri, None, Some(TOKEN)).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            let declared = item[method]["responses"]
                .as_object()
                .expect("responses")
                .contains_key(status.as_str());
            assert!(declared, "{method} {path} answered {status}: {body}");
            if status == StatusCode::NOT_FOUND {
                assert!(
                    body["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("no-such-job")),
                    "{method} {path} is not routed: {body}"
                );
            }
        }
    }
    assert_eq!(operations, 17, "operations in the description");
    let response = router(Arc::clone(&app))
        .oneshot(
            Request::get("/docs")
                .body(Body::empty())
                .expect("a request"),
        )
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let (status, served) = call(&app, "GET", "/openapi.json", None, None).await;
    assert_eq!(
        (status, served),
        (StatusCode::OK, spec),
        "served as written"
    );
}

#[tokio::test]
async fn templates_and_webhooks_are_checked_before_a_job_is_made() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let app = app(&dir).await;
    let t = Some(TOKEN);
    for (job, field) in [
        (
            json!({"name": "a", "urls": ["http://x/"], "template": "http://x/{1..2}"}),
            "template",
        ),
        (
            json!({"name": "a", "template": "http://x/{1..}"}),
            "template",
        ),
        (
            json!({"name": "a", "template": "http://x/{1..100000000}"}),
            "template",
        ),
        (
            json!({"name": "a", "notify": "ftp://hooks.example/"}),
            "notify",
        ),
        (
            json!({"name": "a", "notify": "http://169.254.169.254/"}),
            "notify",
        ),
    ] {
        let (status, body) = call(&app, "POST", "/v1/jobs", Some(job.clone()), t).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
            "{job}: {body}"
        );
    }
    let (status, _) = call(&app, "GET", "/v1/jobs/a", None, t).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no job was made");
    // Nothing listens on port 9 of 127.0.0.1, and the address rules refuse
    // it before any request anyway.
    let (status, body) = call(
        &app,
        "POST",
        "/v1/jobs",
        Some(json!({"name": "pages", "template": "http://127.0.0.1:9/p{01..12}"})),
        t,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["counts"]["total"], 12, "{body}");
    for query in ["limit=many", "limt=10"] {
        let uri = format!("/v1/jobs/pages/outcomes?{query}");
        let (status, body) = call(&app, "GET", &uri, None, t).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(body["error"].is_string(), "a JSON error: {body}");
    }
}

#[tokio::test]
async fn csv_and_ndjson_inputs_are_read_off_the_async_workers() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let app = app(&dir).await;
    for (name, content_type, body) in [
        (
            "csv",
            "text/csv",
            "tag,url\na,http://127.0.0.1:9/a\nb,http://127.0.0.1:9/b\n",
        ),
        (
            "ndjson",
            "application/x-ndjson",
            "{\"url\": \"http://127.0.0.1:9/a\"}\n{\"url\": \"http://127.0.0.1:9/b\"}\n",
        ),
    ] {
        let (status, _) = call(
            &app,
            "POST",
            "/v1/jobs",
            Some(json!({ "name": name })),
            Some(TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        // A CSV source reads its header row as it is made: on an async
        // worker, the body's blocking bridge would panic.
        let uri = format!("/v1/jobs/{name}/inputs");
        let sent = Some((content_type, body.to_owned()));
        let (status, job) = call_raw(&app, "POST", &uri, sent, Some(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{name}: {job}");
        assert_eq!(job["counts"]["total"], 2, "{name}: {job}");
    }
    // A CSV without the URL column says which columns it has.
    call(
        &app,
        "POST",
        "/v1/jobs",
        Some(json!({"name": "nocol"})),
        Some(TOKEN),
    )
    .await;
    let sent = Some(("text/csv", "link,tag\nhttp://127.0.0.1:9/a,x\n".to_owned()));
    let (status, body) = call_raw(&app, "POST", "/v1/jobs/nocol/inputs", sent, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "column");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("link, tag")),
        "{body}"
    );
}

#[tokio::test]
async fn a_broken_upload_is_resumed_and_a_changed_one_refused() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let app = app(&dir).await;
    let (status, _) = call(
        &app,
        "POST",
        "/v1/jobs",
        Some(json!({"name": "up"})),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let lines = |from: usize, to: usize, tag: &str| -> String {
        (from..to)
            .map(|i| format!("http://127.0.0.1:9/{tag}{i}\n"))
            .collect()
    };
    let upload = |chunks: Vec<Result<String, std::io::Error>>| {
        let app = Arc::clone(&app);
        async move {
            let stream = futures_util::stream::iter(chunks);
            let response = router(app)
                .oneshot(
                    Request::post("/v1/jobs/up/inputs")
                        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                        .header(header::CONTENT_TYPE, "text/plain")
                        .body(Body::from_stream(stream))
                        .expect("a request"),
                )
                .await
                .expect("an answer");
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("a body")
                .to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    // 2,500 lines, then the connection breaks: a full batch of 2,000 is
    // stored before the error.
    let (status, body) = upload(vec![
        Ok(lines(0, 2500, "p")),
        Err(std::io::Error::other("connection reset")),
    ])
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, job) = call(&app, "GET", "/v1/jobs/up", None, Some(TOKEN)).await;
    assert_eq!(job["state"], "waiting", "{job}");
    let stored = job["counts"]["total"].as_u64().expect("a count");
    assert!(stored >= 2000, "a batch was stored: {job}");
    // Different lines where the stored ones were: refused.
    let (status, body) = upload(vec![Ok(lines(0, 3000, "q"))]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // The same input again: the stored lines are skipped, the rest added.
    let (status, body) = upload(vec![Ok(lines(0, 3000, "p"))]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["counts"]["total"], 3000, "{body}");
}

#[test]
fn the_openapi_options_are_the_options_a_job_may_set() {
    let spec: Value = serde_json::from_str(&volley_serve::api::OPENAPI).expect("valid JSON");
    let documented: std::collections::BTreeSet<String> =
        spec["components"]["schemas"]["Options"]["properties"]
            .as_object()
            .expect("the Options schema has properties")
            .keys()
            .map(|k| k.replace('_', "-"))
            .collect();
    let Ok(Value::Object(all)) = serde_json::to_value(volley::FetchSpec::default()) else {
        panic!("the options serialise to an object");
    };
    // The server makes every connection itself, under its address rules:
    // a job's proxy is refused with a 422, and no-proxy would mean nothing.
    let refused = ["proxy", "no-proxy"];
    let settable: std::collections::BTreeSet<String> = all
        .keys()
        .filter(|k| {
            volley::options::table::find(k)
                .is_some_and(|opt| !opt.is(volley::options::table::Kind::ServerOnly))
        })
        .filter(|k| !refused.contains(&k.as_str()))
        .cloned()
        .collect();
    assert_eq!(
        documented, settable,
        "the Options schema (additionalProperties: false) must list exactly what a job may set"
    );
}

#[test]
fn the_openapi_outcome_is_the_export_row_with_its_id() {
    let spec: Value = serde_json::from_str(&volley_serve::api::OPENAPI).expect("valid JSON");
    let documented: Vec<String> = spec["components"]["schemas"]["Outcome"]["properties"]
        .as_object()
        .expect("the Outcome schema has properties")
        .keys()
        .cloned()
        .collect();
    let mut expected = vec!["id".to_owned()];
    expected.extend(volley::export::columns());
    let (mut a, mut b) = (documented.clone(), expected.clone());
    a.sort();
    b.sort();
    assert_eq!(
        a, b,
        "the API's Outcome must have the export's fields and the row id"
    );
}
