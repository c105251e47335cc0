//! The router without a port: requests go through `tower::ServiceExt::oneshot`
//! into the real handlers over a real SQLite file.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use volley::options::{Layer, Source};
use volley_serve::{App, ServeConfig, router};

const TOKEN: &str = "s3cret-token";

fn app(dir: &tempfile::TempDir) -> Arc<App> {
    let config = ServeConfig {
        db: dir.path().join("serve.db"),
        token: Some(TOKEN.into()),
        layers: vec![Layer {
            source: Source::Flags,
            values: serde_json::Map::new(),
        }],
        allow_private: Vec::new(),
    };
    App::open(config).expect("the server's state opens")
}

async fn call(
    app: &Arc<App>,
    method: &str,
    uri: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(value) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(value.to_string())
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
    let app = app(&dir);
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
    let app = app(&dir);
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
        let response = router(Arc::clone(&app))
            .oneshot(
                Request::post("/v1/jobs")
                    .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                    .header(header::CONTENT_TYPE, content_type)
                    .body(Body::from(body))
                    .expect("a request"),
            )
            .await
            .expect("an answer");
        assert_eq!(response.status(), expected, "{content_type}: {body}");
    }
}

#[tokio::test]
async fn a_job_waits_for_inputs_and_is_cancelled_and_deleted() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let app = app(&dir);
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
