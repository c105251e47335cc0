//! Refresh jobs: conditional requests from what the database remembers of
//! each URL, against nginx (ETag and Last-Modified on static files) and an
//! axum server for the cases nginx does not make (a weak ETag, a server
//! that ignores validators, a body that changes, Cache-Control).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::Value;
use support::{Nginx, Volley, stderr};

/// Runs `volley fetch` over `urls` as job `job` with `extra`; returns the
/// job's exported rows.
async fn job(v: &Volley, job: &str, urls: &[String], extra: &[&str]) -> Vec<Value> {
    let list = v.write_lines(&format!("{job}.txt"), urls);
    let list = list.to_str().expect("utf-8 path");
    let mut args = vec!["fetch", list, "--quiet", "--job", job];
    args.extend_from_slice(extra);
    let out = v.run(&args).await;
    assert!(out.status.success(), "{job}: {}", stderr(&out));
    let out = v.run(&["export", "--job", job]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("export lines are JSON"))
        .collect()
}

fn classes(rows: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for row in rows {
        *counts
            .entry(row["class"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    counts
}

fn by_url<'a>(rows: &'a [Value], url: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["url"] == url)
        .unwrap_or_else(|| panic!("no outcome for {url}: {rows:?}"))
}

/// Rewrites `path` with `text`, and moves its modification time on, so
/// that nginx's ETag (mtime and size) and Last-Modified both change.
fn rewrite(path: &Path, text: &str) {
    std::fs::write(path, text).expect("rewrite a served file");
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open a served file");
    file.set_modified(SystemTime::now() + Duration::from_secs(120))
        .expect("set its mtime");
}

#[tokio::test]
async fn nginx_answers_a_refresh_with_304s_and_only_changed_files_are_fetched() {
    let v = Volley::new();
    let root = v.path("site");
    std::fs::create_dir_all(&root).expect("site directory");
    let names: Vec<String> = (0..20).map(|i| format!("page-{i}.html")).collect();
    for (i, name) in names.iter().enumerate() {
        std::fs::write(root.join(name), format!("<p>page {i}</p>\n").repeat(50))
            .expect("write a page");
    }
    let nginx = Nginx::start(&root, &v.path("nginx")).await;
    let urls: Vec<String> = names.iter().map(|n| nginx.url(&format!("/{n}"))).collect();
    let bodies = v.path("bodies");
    let bodies = bodies.to_str().expect("utf-8 path");

    let first = job(&v, "first", &urls, &["--save-bodies", bodies]).await;
    assert_eq!(classes(&first), BTreeMap::from([("ok".into(), 20)]));
    assert!(
        first.iter().all(|r| r["changed"].is_null()),
        "a plain job does not compare: {first:?}"
    );

    let second = job(&v, "second", &urls, &["--refresh", "--save-bodies", bodies]).await;
    assert_eq!(
        classes(&second),
        BTreeMap::from([("not_modified".into(), 20)])
    );
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(b["status"], 304);
        assert_eq!(b["changed"], false);
        assert_eq!(b["body_sha256"], a["body_sha256"], "the remembered body");
        assert_eq!(b["body_path"], a["body_path"]);
        assert_eq!(b["wire_bytes"], 0);
    }
    // nginx got both validators on each of the 20 and answered 304.
    let log = nginx.requests();
    let revalidated: Vec<&String> = log.iter().filter(|l| l.contains(" 304 ")).collect();
    assert_eq!(revalidated.len(), 20, "{log:#?}");
    assert!(
        revalidated
            .iter()
            .all(|l| l.contains("inm=\"") && l.contains("GMT")),
        "If-None-Match and If-Modified-Since on each: {revalidated:#?}"
    );

    // Three files change: exactly those are fetched again, as changed.
    for i in [3, 7, 11] {
        rewrite(&root.join(&names[i]), &format!("<p>page {i}, edited</p>\n"));
    }
    let third = job(&v, "third", &urls, &["--refresh", "--save-bodies", bodies]).await;
    assert_eq!(
        classes(&third),
        BTreeMap::from([("not_modified".into(), 17), ("ok".into(), 3)])
    );
    for (i, url) in urls.iter().enumerate() {
        let row = by_url(&third, url);
        let edited = [3, 7, 11].contains(&i);
        assert_eq!(row["changed"], edited, "{row}");
        // Every saved body is whole and what its outcome says it is: a 304
        // never truncated nor replaced one.
        let path = row["body_path"].as_str().expect("a saved body");
        let saved = std::fs::read(path).expect("read a saved body");
        let expected = if edited {
            format!("<p>page {i}, edited</p>\n")
        } else {
            format!("<p>page {i}</p>\n").repeat(50)
        };
        assert_eq!(String::from_utf8_lossy(&saved), expected, "{path}");
    }
}

#[tokio::test]
async fn a_first_page_not_modified_ends_its_chain_unless_paginate_always() {
    let v = Volley::new();
    let root = v.path("api");
    std::fs::create_dir_all(&root).expect("api directory");
    let page = |n: u32, next: Option<u32>| {
        serde_json::json!({
            "items": [n * 10, n * 10 + 1],
            "next": next.map(|m| format!("/p{m}.json")),
        })
        .to_string()
    };
    for n in 1..=3 {
        std::fs::write(
            root.join(format!("p{n}.json")),
            page(n, (n < 3).then_some(n + 1)),
        )
        .expect("write a page");
    }
    let nginx = Nginx::start(&root, &v.path("nginx")).await;
    let urls = [nginx.url("/p1.json")];
    let paginate = ["--paginate", "json-next=/next", "--items", "/items"];

    let first = job(&v, "walk", &urls, &paginate).await;
    assert_eq!(classes(&first), BTreeMap::from([("ok".into(), 3)]));

    let mut refresh = paginate.to_vec();
    refresh.push("--refresh");
    let stopped = job(&v, "stop", &urls, &refresh).await;
    assert_eq!(
        classes(&stopped),
        BTreeMap::from([("not_modified".into(), 1)]),
        "an unchanged first page ends the chain"
    );

    // The last page gains an item; the first does not change.
    rewrite(
        &root.join("p3.json"),
        &serde_json::json!({"items": [30, 31, 32], "next": null}).to_string(),
    );
    refresh.push("--paginate-always");
    let walked = job(&v, "always", &urls, &refresh).await;
    let found: Vec<(String, String, Value)> = walked
        .iter()
        .map(|r| {
            (
                r["url"].as_str().unwrap_or_default().to_owned(),
                r["class"].as_str().unwrap_or_default().to_owned(),
                r["changed"].clone(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (
                nginx.url("/p1.json"),
                "not_modified".into(),
                Value::Bool(false)
            ),
            (
                nginx.url("/p2.json"),
                "not_modified".into(),
                Value::Bool(false)
            ),
            (nginx.url("/p3.json"), "ok".into(), Value::Bool(true)),
        ]
    );
}

/// A request's route with its `If-None-Match` and `If-Modified-Since`.
type Conditional = (String, Option<String>, Option<String>);

/// What the axum server saw, per route.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<Conditional>>,
    version: AtomicU64,
}

impl Seen {
    fn note(&self, route: &str, headers: &HeaderMap) {
        let get = |name: header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        self.requests.lock().expect("seen lock").push((
            route.to_owned(),
            get(header::IF_NONE_MATCH),
            get(header::IF_MODIFIED_SINCE),
        ));
    }

    fn of(&self, route: &str) -> Vec<(Option<String>, Option<String>)> {
        self.requests
            .lock()
            .expect("seen lock")
            .iter()
            .filter(|(r, _, _)| r == route)
            .map(|(_, inm, ims)| (inm.clone(), ims.clone()))
            .collect()
    }
}

/// `/weak`: a weak ETag, honoured. `/ignore`: validators sent, never
/// honoured (always 200, same body). `/changing`: a new body and ETag each
/// time the version moves. `/max-age`: fresh for an hour. `/no-cache`:
/// `Cache-Control: no-cache`, with an ETag honoured. `/no-store`: an ETag,
/// but `no-store`.
async fn validator_server() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let weak = |State(seen): State<Arc<Seen>>, headers: HeaderMap| async move {
        seen.note("weak", &headers);
        if headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            == Some("W/\"v1\"")
        {
            return StatusCode::NOT_MODIFIED.into_response();
        }
        ([(header::ETAG, "W/\"v1\"")], "weak body").into_response()
    };
    let ignore = |State(seen): State<Arc<Seen>>, headers: HeaderMap| async move {
        seen.note("ignore", &headers);
        (
            [
                (header::ETAG, "\"same\""),
                (header::LAST_MODIFIED, "Sun, 06 Nov 1994 08:49:37 GMT"),
            ],
            "always the same",
        )
            .into_response()
    };
    let changing = |State(seen): State<Arc<Seen>>, headers: HeaderMap| async move {
        seen.note("changing", &headers);
        let version = seen.version.load(Ordering::SeqCst);
        let etag = format!("\"c{version}\"");
        if headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            == Some(&etag)
        {
            return StatusCode::NOT_MODIFIED.into_response();
        }
        ([(header::ETAG, etag)], format!("version {version}")).into_response()
    };
    let cached = |route: &'static str, cache_control: &'static str| {
        move |State(seen): State<Arc<Seen>>, headers: HeaderMap| async move {
            seen.note(route, &headers);
            if headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                == Some("\"cc\"")
            {
                return (
                    StatusCode::NOT_MODIFIED,
                    [(header::CACHE_CONTROL, cache_control)],
                )
                    .into_response();
            }
            (
                [
                    (header::ETAG, "\"cc\""),
                    (header::CACHE_CONTROL, cache_control),
                ],
                route,
            )
                .into_response()
        }
    };
    let app = Router::new()
        .route("/weak", get(weak))
        .route("/ignore", get(ignore))
        .route("/changing", get(changing))
        .route("/max-age", get(cached("max-age", "max-age=3600")))
        .route("/no-cache", get(cached("no-cache", "no-cache")))
        .route("/no-store", get(cached("no-store", "no-store")))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn validators_go_back_as_received_and_a_server_that_ignores_them_is_compared_by_hash() {
    let v = Volley::new();
    let (base, seen) = validator_server().await;
    let urls: Vec<String> = ["/weak", "/ignore", "/changing", "/no-store"]
        .iter()
        .map(|p| format!("{base}{p}"))
        .collect();
    let first = job(&v, "one", &urls, &[]).await;
    assert_eq!(classes(&first), BTreeMap::from([("ok".into(), 4)]));
    seen.version.store(1, Ordering::SeqCst);

    let second = job(&v, "two", &urls, &["--refresh"]).await;
    // The weak ETag went back exactly as received, and was honoured.
    assert_eq!(
        seen.of("weak"),
        vec![(None, None), (Some("W/\"v1\"".into()), None)]
    );
    let weak = by_url(&second, &urls[0]);
    assert_eq!(weak["class"], "not_modified");
    assert_eq!(weak["body_sha256"], by_url(&first, &urls[0])["body_sha256"]);
    // Validators sent, a 200 anyway: ok, and unchanged by its hash.
    assert_eq!(
        seen.of("ignore")[1],
        (
            Some("\"same\"".into()),
            Some("Sun, 06 Nov 1994 08:49:37 GMT".into())
        )
    );
    let ignore = by_url(&second, &urls[1]);
    assert_eq!(
        (ignore["class"].clone(), ignore["changed"].clone()),
        ("ok".into(), false.into())
    );
    // A new body: ok and changed.
    let changing = by_url(&second, &urls[2]);
    assert_eq!(
        (changing["class"].clone(), changing["changed"].clone()),
        ("ok".into(), true.into())
    );
    // no-store: nothing remembered to send, so an unconditional request.
    assert_eq!(seen.of("no-store"), vec![(None, None), (None, None)]);
    assert_eq!(by_url(&second, &urls[3])["class"], "ok");
}

#[tokio::test]
async fn max_age_and_cache_control_make_no_request_while_fresh() {
    let v = Volley::new();
    let (base, seen) = validator_server().await;
    let urls: Vec<String> = ["/max-age", "/no-cache", "/weak"]
        .iter()
        .map(|p| format!("{base}{p}"))
        .collect();
    job(&v, "one", &urls, &[]).await;
    let requests = || seen.requests.lock().expect("seen lock").len();
    assert_eq!(requests(), 3);

    // --max-age: everything was checked moments ago; nothing is asked.
    let fresh = job(&v, "two", &urls, &["--max-age", "1h"]).await;
    assert_eq!(classes(&fresh), BTreeMap::from([("fresh".into(), 3)]));
    assert_eq!(requests(), 3, "no request under --max-age");
    for row in &fresh {
        assert_eq!(row["attempts"], 0);
        assert!(row["body_sha256"].is_string(), "{row}");
        assert!(
            row["message"]
                .as_str()
                .is_some_and(|m| m.contains("--max-age")),
            "{row}"
        );
    }

    // --respect-cache-control: max-age=3600 is fresh; no-cache and a
    // response without freshness are revalidated.
    let cc = job(
        &v,
        "three",
        &urls,
        &["--respect-cache-control", "--refresh"],
    )
    .await;
    assert_eq!(by_url(&cc, &urls[0])["class"], "fresh");
    assert_eq!(by_url(&cc, &urls[1])["class"], "not_modified");
    assert_eq!(by_url(&cc, &urls[2])["class"], "not_modified");
    assert_eq!(seen.of("max-age").len(), 1, "fresh by Cache-Control");
    assert_eq!(seen.of("no-cache").len(), 2, "no-cache always asks");
}
