//! End-to-end tests of `volley serve`: the real binary on a loopback port,
//! driven over HTTP, fetching from real loopback servers into a real
//! SQLite file.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Server, Volley, signal};
use tokio::io::AsyncBufReadExt as _;

const TOKEN: &str = "test-token-0123456789";

/// A running `volley serve`.
struct Serve {
    child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
}

impl Serve {
    /// Starts `volley serve` on a free loopback port with the test token.
    async fn start(v: &Volley, extra: &[&str]) -> Serve {
        let token = v.path("token");
        std::fs::write(&token, TOKEN).expect("write the token file");
        let token = token.display().to_string();
        let mut args = vec!["--token-file", token.as_str()];
        args.extend_from_slice(extra);
        Serve::start_open(v, &args).await
    }

    /// Starts `volley serve` on a free loopback port, with `extra` flags
    /// (no token unless they give one).
    async fn start_open(v: &Volley, extra: &[&str]) -> Serve {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Serve::spawned(v.command(&args)).await
    }

    /// Starts `volley serve` with the test token on the PostgreSQL
    /// database `db`.
    async fn start_on_postgres(v: &Volley, db: &str, extra: &[&str]) -> Serve {
        let token = v.path("token");
        std::fs::write(&token, TOKEN).expect("write the token file");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_volley"));
        cmd.args([
            "--db",
            db,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
        ])
        .arg(&token)
        .args(extra)
        .current_dir(v.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
        Serve::spawned(cmd).await
    }

    /// Spawns `cmd` and waits until it says where it listens.
    async fn spawned(mut cmd: tokio::process::Command) -> Serve {
        let mut child = cmd.spawn().expect("volley serve starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let base = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("on http://").nth(1) {
                    let addr = rest.split('/').next().unwrap_or_default();
                    return format!("http://{addr}");
                }
            }
            panic!("volley serve ended before saying where it listens");
        })
        .await
        .expect("volley serve says where it listens within 30 s");
        // Keep draining stderr so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a client");
        Serve { child, base, http }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
    }

    async fn json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("a body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The Prometheus text of `/metrics`.
    async fn metrics(&self) -> String {
        self.request(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.json(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        self.json(reqwest::Method::POST, path, body).await
    }

    /// Reads the job's event stream to its `done` event; returns the
    /// events as (kind, data).
    async fn events_until_done(&self, job: &str) -> Vec<(String, Value)> {
        let mut response = self
            .request(reqwest::Method::GET, &format!("/v1/jobs/{job}/events"))
            .send()
            .await
            .expect("the event stream opens");
        assert_eq!(response.status().as_u16(), 200);
        let mut text = String::new();
        let mut events = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(chunk) = response.chunk().await.expect("the stream reads") {
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    let block: String = text.drain(..end + 2).collect();
                    let kind = block.lines().find_map(|l| l.strip_prefix("event: "));
                    let data = block.lines().find_map(|l| l.strip_prefix("data: "));
                    if let (Some(kind), Some(data)) = (kind, data) {
                        let data: Value = serde_json::from_str(data).expect("event data is JSON");
                        events.push((kind.to_owned(), data));
                    }
                }
                if events.last().is_some_and(|(k, _)| k == "done") {
                    return;
                }
            }
        })
        .await
        .expect("the job is done within 60 s");
        events
    }
}

fn urls(server: &Server, n: usize, query: &str) -> Vec<String> {
    (0..n)
        .map(|i| server.url(&format!("/ok/{i}{query}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_submitted_over_http_runs_to_done_with_events_pages_and_ndjson() {
    let upstream = Server::start().await;
    let v = Volley::new();
    let serve = Serve::start(&v, &["--allow-private", "127.0.0.0/8"]).await;
    let list = urls(&upstream, 60, "?ms=30");
    let mut with_bad = list.clone();
    with_bad.push("not a url".into());
    let response = serve
        .request(reqwest::Method::POST, "/v1/jobs")
        .header("content-type", "application/json")
        .body(json!({"name": "docs", "urls": with_bad, "options": {"per_host": 4}}).to_string())
        .send()
        .await
        .expect("submit");
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(
        response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok()),
        Some("/v1/jobs/docs")
    );
    let events = serve.events_until_done("docs").await;
    let progress: Vec<u64> = events
        .iter()
        .filter(|(k, _)| k == "progress")
        .map(|(_, d)| d["counts"]["done"].as_u64().unwrap_or(0))
        .collect();
    assert!(progress.len() >= 2, "progress events: {progress:?}");
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows: {progress:?}"
    );
    let (_, done) = events.last().expect("a done event");
    assert_eq!(done["state"], "done");
    assert_eq!(done["counts"]["total"], 61);
    assert_eq!(done["classes"], json!({"ok": 60, "invalid_url": 1}));

    // Keyset pages of 25: every outcome once, in input order.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = serve
            .get(&format!("/v1/jobs/docs/outcomes?limit=25&after={after}"))
            .await;
        for row in page["outcomes"].as_array().expect("outcomes") {
            seen.push(row["line"].as_u64().expect("line"));
        }
        match page["next"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(seen, (1..=61).collect::<Vec<u64>>());
    let only_bad = serve.get("/v1/jobs/docs/outcomes?class=invalid_url").await;
    assert_eq!(only_bad["outcomes"].as_array().map(Vec::len), Some(1));

    // The whole result as NDJSON.
    let text = serve
        .request(reqwest::Method::GET, "/v1/jobs/docs/outcomes")
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .expect("NDJSON")
        .text()
        .await
        .expect("NDJSON body");
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(rows.len(), 61);
    assert_eq!(rows[0]["class"], "ok");
    assert_eq!(
        rows[0]["headers"]["content-type"],
        "text/plain; charset=utf-8"
    );

    let job = serve.get("/v1/jobs/docs").await;
    assert!(
        job["latency_ms"]["p50"].as_u64().is_some_and(|p| p >= 30),
        "{job}"
    );
    let metrics = serve.metrics().await;
    assert!(
        metrics.contains("volley_outcomes_total{class=\"ok\",status=\"200\"} 60"),
        "{metrics}"
    );
    for url in &list {
        assert_eq!(upstream.hits(&support::path_of(url)), 1, "{url} once");
    }
    v.assert_one_outcome_per_task(61);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_the_token_and_a_public_listen_needs_one() {
    let v = Volley::new();
    let serve = Serve::start(&v, &[]).await;
    for token in [None, Some("wrong")] {
        let mut request = serve.http.get(format!("{}/v1/jobs", serve.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status().as_u16(), 401, "token {token:?}");
        assert!(response.headers().contains_key("www-authenticate"));
    }
    assert_eq!(serve.get("/v1/jobs").await, json!({"jobs": []}));
    // Without a token, only loopback.
    let open = Volley::new();
    let out = open.run(&["serve", "--listen", "0.0.0.0:0"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        support::stderr(&out).contains("token"),
        "{}",
        support::stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_rules_refuse_loopback_by_literal_name_and_redirect() {
    let target = Server::start().await;
    let redirector = Server::start_on("127.0.0.2").await;
    let v = Volley::new();
    let serve = Serve::start(&v, &["--allow-private", "127.0.0.2/32"]).await;
    let port = target.addr.port();
    let job = json!({"name": "ssrf", "urls": [
        target.url("/ok/literal"),
        format!("http://localhost:{port}/ok/name"),
        redirector.url(&format!("/to?url=http://127.0.0.1:{port}/ok/hop")),
        format!("http://[::ffff:127.0.0.1]:{port}/ok/mapped"),
        "http://169.254.169.254/latest/meta-data/",
    ]});
    let (status, body) = serve.post("/v1/jobs", Some(job)).await;
    assert_eq!(status, 201, "{body}");
    let events = serve.events_until_done("ssrf").await;
    let (_, done) = events.last().expect("done");
    assert_eq!(done["classes"], json!({"forbidden_address": 5}), "{done}");
    assert_eq!(target.total(), 0, "the loopback server saw no request");
    assert_eq!(redirector.hits("/to"), 1, "the allowed host was asked once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_submitted_over_http_counts_the_pages_it_found() {
    let upstream = Server::start().await;
    let v = Volley::new();
    let serve = Serve::start(&v, &["--allow-private", "127.0.0.0/8"]).await;
    let job = json!({
        "name": "site",
        "urls": [upstream.url("/site/index.html")],
        "options": {"follow": true, "retries": 0}
    });
    assert_eq!(serve.post("/v1/jobs", Some(job)).await.0, 201);
    let events = serve.events_until_done("site").await;
    assert!(events.iter().any(|(k, _)| k == "done"), "{events:?}");
    let body = serve.get("/v1/jobs/site").await;
    assert_eq!(body["counts"]["total"], 9, "{body}");
    assert_eq!(
        body["counts"]["pages"], 8,
        "every task but the seed was found by a page: {body}"
    );
    assert_eq!(upstream.uri_hits("/site/b.html"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_cancel_keep_one_outcome_per_input() {
    let upstream = Server::start().await;
    let v = Volley::new();
    let serve = Serve::start(&v, &["--allow-private", "127.0.0.0/8", "--per-host", "2"]).await;
    let (status, _) = serve
        .post(
            "/v1/jobs",
            Some(json!({"name": "slow", "urls": urls(&upstream, 40, "?ms=100")})),
        )
        .await;
    assert_eq!(status, 201);
    upstream.wait_for_requests(4).await;
    let (status, paused) = serve.post("/v1/jobs/slow/pause", None).await;
    assert_eq!(
        (status, paused["state"].as_str()),
        (200, Some("paused")),
        "{paused}"
    );
    // The run has stopped when pause answers: nothing more is requested.
    let at_pause = upstream.total();
    assert!(at_pause < 40, "paused before the end: {at_pause}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(upstream.total(), at_pause, "no request while paused");
    let (status, resumed) = serve.post("/v1/jobs/slow/resume", None).await;
    assert_eq!((status, resumed["state"].as_str()), (200, Some("running")));
    let events = serve.events_until_done("slow").await;
    assert_eq!(events.last().expect("done").1["classes"], json!({"ok": 40}));

    let (status, _) = serve
        .post(
            "/v1/jobs",
            Some(json!({"name": "dropped", "urls": urls(&upstream, 30, "?ms=300&j=2")})),
        )
        .await;
    assert_eq!(status, 201);
    upstream.wait_for_requests(41).await;
    let (status, cancelled) = serve.post("/v1/jobs/dropped/cancel", None).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    let n = cancelled["cancelled"].as_u64().expect("cancelled count");
    assert!(n > 0 && n < 30, "some tasks were cancelled: {n}");
    assert_eq!(cancelled["classes"]["cancelled"], n);
    assert_eq!(cancelled["counts"]["total"], 30);
    assert_eq!(cancelled["counts"]["pending"], 0);
    let metrics = serve.metrics().await;
    assert!(
        metrics.contains(&format!(
            "volley_outcomes_total{{class=\"cancelled\",status=\"none\"}} {n}"
        )),
        "cancelled outcomes are counted: {metrics}"
    );
    v.assert_one_outcome_per_task(70);
    let (status, _) = serve
        .json(reqwest::Method::DELETE, "/v1/jobs/dropped", None)
        .await;
    assert_eq!(status, 204);
    v.assert_one_outcome_per_task(40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_share_one_host_budget() {
    let upstream = Server::start().await;
    let v = Volley::new();
    let serve = Serve::start(&v, &["--allow-private", "127.0.0.0/8", "--per-host", "2"]).await;
    for (name, tag) in [("one", "a"), ("two", "b")] {
        let job = json!({"name": name, "urls": urls(&upstream, 20, &format!("?ms=50&j={tag}")), "options": {"per_host": 8}});
        assert_eq!(serve.post("/v1/jobs", Some(job)).await.0, 201);
    }
    for name in ["one", "two"] {
        serve.events_until_done(name).await;
    }
    assert_eq!(upstream.total(), 40);
    assert_eq!(
        upstream.max_in_flight(),
        2,
        "two jobs on one host share its limit of 2"
    );
}

/// Jobs whose client settings are equal share the server's HTTP client:
/// 100 jobs of 10 URLs each to one HTTPS host, all submitted at once, open
/// no more connections in all than the per-host limit, where a client per
/// job opened at least one per job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_with_equal_client_settings_share_connections() {
    let (upstream, pem) = Server::start_tls().await;
    let v = Volley::new();
    let ca = v.path("ca.pem");
    std::fs::write(&ca, pem).expect("write the CA");
    let ca = ca.display().to_string();
    let serve = Serve::start(
        &v,
        &[
            "--allow-private",
            "127.0.0.0/8",
            "--per-host",
            "2",
            "--ca-cert",
            &ca,
        ],
    )
    .await;
    let names: Vec<String> = (0..100).map(|j| format!("j{j:03}")).collect();
    for (j, name) in names.iter().enumerate() {
        let urls: Vec<String> = (0..10)
            .map(|i| upstream.https_url(&format!("/ok/{j}-{i}")))
            .collect();
        // Options that no client reads may differ between the jobs.
        let job = json!({"name": name, "urls": urls, "options": {"retries": j % 3}});
        assert_eq!(serve.post("/v1/jobs", Some(job)).await.0, 201);
    }
    for name in &names {
        serve.events_until_done(name).await;
    }
    let jobs = serve.get("/v1/jobs").await;
    for job in jobs["jobs"].as_array().expect("jobs") {
        assert_eq!(job["classes"], json!({"ok": 10}), "{job}");
    }
    assert_eq!(upstream.total(), 1000);
    assert!(
        upstream.connections() <= 2,
        "{} connections for 100 jobs to one host with a per-host limit of 2",
        upstream.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_resumes_its_jobs_on_restart() {
    let upstream = Server::start().await;
    let v = Volley::new();
    let args = ["--allow-private", "127.0.0.0/8", "--per-host", "4"];
    let mut serve = Serve::start(&v, &args).await;
    let list = urls(&upstream, 200, "?ms=20");
    let job = json!({"name": "big", "urls": list.clone()});
    assert_eq!(serve.post("/v1/jobs", Some(job)).await.0, 201);
    upstream.wait_for_requests(30).await;
    signal(serve.child.id().expect("server pid"), libc::SIGKILL);
    let _ = serve.child.wait().await;
    let serve = Serve::start(&v, &args).await;
    let events = serve.events_until_done("big").await;
    assert_eq!(
        events.last().expect("done").1["classes"],
        json!({"ok": 200})
    );
    v.assert_one_outcome_per_task(200);
    // Requests whose outcomes were not committed at the kill (in flight, or
    // on their way to the store) are made again, once; no other.
    for url in &list {
        let hits = upstream.hits(&support::path_of(url));
        assert!((1..=2).contains(&hits), "{url}: {hits} requests");
    }
    let repeats = upstream.total() - 200;
    eprintln!("requests made again after the kill: {repeats}");
}

/// Runs headless Chromium on `url` with `flags`; returns its stdout.
async fn chromium(flags: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().expect("a profile dir");
    let out = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(flags)
        .arg(url)
        .output()
        .await
        .expect("Debian's chromium is installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_job_advance_to_its_final_counts_in_a_browser() {
    let upstream = Server::start().await;
    let v = Volley::new();
    let serve = Serve::start_open(&v, &["--allow-private", "127.0.0.0/8", "--per-host", "2"]).await;
    // About 6 s of requests (40 × 300 ms, 2 at a time): longer than the
    // browser takes to start, even on a loaded machine.
    let mut list = urls(&upstream, 40, "?ms=300");
    list.push(upstream.url("/status/404"));
    let job = json!({"name": "docs-mirror", "urls": list});
    assert_eq!(serve.post("/v1/jobs", Some(job)).await.0, 201);
    // Virtual time: the page's timers and event stream run until the
    // budget is spent, which outlasts the job.
    let page = format!("{}/", serve.base);
    let dom = chromium(&["--virtual-time-budget=15000", "--dump-dom"], &page).await;
    let section = dom
        .split("<section")
        .nth(1)
        .and_then(|s| s.split('>').next())
        .unwrap_or_else(|| panic!("no job card in the page: {dom}"));
    assert!(section.contains("data-job=\"docs-mirror\""), "{section}");
    assert!(section.contains("data-state=\"done\""), "{section}");
    let seen: Vec<u64> = section
        .split("data-progress-seen=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default()
        .split(',')
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        seen.first().is_some_and(|first| *first < 41),
        "it saw the job running: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&41), "and its final count: {seen:?}");
    assert!(
        dom.contains(">ok 40<") && dom.contains(">http_4xx 1<"),
        "class chips: {dom}"
    );
    let hosts_seen = dom
        .split("data-hosts-seen=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default();
    assert!(
        hosts_seen.contains("127.0.0.1"),
        "the busiest hosts panel listed the upstream while the job ran: {hosts_seen:?}"
    );
    // A picture for a person to look at, with a second job (the browser
    // waits for event streams to end before it takes it).
    let mut more = urls(&upstream, 60, "?ms=300");
    more.push(upstream.url("/status/503"));
    let job = json!({"name": "api-sync", "urls": more, "options": {"retries": 0}});
    assert_eq!(serve.post("/v1/jobs", Some(job)).await.0, 201);
    let png = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard.png");
    let shot = format!("--screenshot={}", png.display());
    chromium(
        &[
            "--virtual-time-budget=3000",
            "--window-size=1100,420",
            &shot,
        ],
        &page,
    )
    .await;
    // The API's reader page renders every operation of the description.
    let docs = chromium(
        &["--virtual-time-budget=3000", "--dump-dom"],
        &format!("{}/docs", serve.base),
    )
    .await;
    // The failures of a class, with their messages, linked by the hash.
    let drill = chromium(
        &["--virtual-time-budget=5000", "--dump-dom"],
        &format!("{page}#outcomes=docs-mirror/http_4xx"),
    )
    .await;
    let panel = drill
        .split("class=\"outcomes\" data-class=\"http_4xx\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no http_4xx outcomes panel: {drill}"));
    assert!(
        panel.contains("/status/404") && panel.contains("404"),
        "the failed URL and its status: {panel}"
    );
    let operations = docs.matches("<span class=\"method ").count();
    assert_eq!(operations, 17, "operations on /docs: {docs}");
    assert!(docs.contains("/v1/jobs/{name}/outcomes"), "{docs}");
    let bytes = std::fs::read(&png).expect("the screenshot was written");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "a real PNG: {} bytes",
        bytes.len()
    );
}

/// A webhook receiver on loopback: answers 503 to the first POST and 204
/// after, and hands each body to the test.
async fn webhook_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let (tx, seen) = (tx.clone(), std::sync::Arc::clone(&seen));
            async move {
                let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let _ = tx.send(value);
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_posts_its_summary_to_its_webhook_once_after_a_retry() {
    let upstream = Server::start().await;
    let (hook, mut received) = webhook_receiver().await;
    let v = Volley::new();
    let serve = Serve::start(&v, &["--allow-private", "127.0.0.0/8"]).await;
    let template = format!("{}/ok/{{1..25}}", upstream.url("").trim_end_matches('/'));
    let (status, body) = serve
        .post(
            "/v1/jobs",
            Some(json!({"name": "hooked", "template": template, "notify": hook})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["counts"]["total"], 25, "the template's 25 URLs");
    let first = tokio::time::timeout(Duration::from_secs(60), received.recv())
        .await
        .expect("the webhook is called within 60 s")
        .expect("a body");
    let second = tokio::time::timeout(Duration::from_secs(60), received.recv())
        .await
        .expect("the 503 is retried within 60 s")
        .expect("a body");
    for summary in [&first, &second] {
        assert_eq!(summary["event"], "job.done", "{summary}");
        assert_eq!(summary["name"], "hooked");
        assert_eq!(summary["classes"]["ok"], 25, "{summary}");
    }
    // Recorded as sent, and not sent again.
    let job = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let job = serve.get("/v1/jobs/hooked").await;
            if !job["notified"].is_null() {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the result is recorded");
    assert_eq!(job["notified"], "sent", "{job}");
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), received.recv())
            .await
            .is_err(),
        "no third call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_job_submitted_to_the_server_is_shared_with_volley_work() {
    let upstream = Server::start_on_all_loopback().await;
    let port = upstream.addr.port();
    let hosts = 20;
    // About 5 s of work for one process at 8 requests in flight: time for
    // the worker to join. The server's run is then busy (its requests wait
    // for its concurrency), so it hands hosts over down to its fair share;
    // 40 tasks a host, more than a run holds of one host at a time.
    let n = 800;
    let list: Vec<String> = (0..n)
        .map(|i| format!("http://127.0.1.{}:{port}/ok/{i}?ms=50", 1 + i % hosts))
        .collect();
    let db = support::pg::database().await;
    let v = Volley::new();
    let serve = Serve::start_on_postgres(&v, &db, &["--allow-private", "127.0.0.0/8"]).await;
    let job = json!({"name": "shared", "urls": list, "options": {"per_host": 2, "concurrency": 8}});
    let (status, body) = serve.post("/v1/jobs", Some(job)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["options"],
        json!({"per-host": 2, "concurrency": 8}),
        "as the creator gave them"
    );
    // A worker process joins the server's job: it finds the job in the
    // database, with its options and the server's address rules.
    let worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_volley"))
        .args(["--db", &db, "work", "--job", "shared", "--quiet"])
        .current_dir(v.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("volley work starts");
    let events = serve.events_until_done("shared").await;
    assert_eq!(events.last().map(|(k, _)| k.as_str()), Some("done"));
    let out = tokio::time::timeout(Duration::from_secs(60), worker.wait_with_output())
        .await
        .expect("the worker ends with the job")
        .expect("the worker ran");
    assert!(
        out.status.success(),
        "volley work: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = serve.get("/v1/jobs/shared").await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["counts"]["done"], n, "{job}");
    assert_eq!(job["classes"], json!({"ok": n}), "{job}");
    // The NDJSON export reads PostgreSQL too.
    let text = serve
        .request(reqwest::Method::GET, "/v1/jobs/shared/outcomes")
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .expect("the export")
        .text()
        .await
        .expect("its body");
    assert_eq!(text.lines().count(), n, "{}", &text[..text.len().min(500)]);
    // Both processes did part of it (a worker writes its count when it
    // closes: stop the server), and nothing was fetched twice.
    let Serve { mut child, .. } = serve;
    signal(child.id().expect("the server runs"), libc::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the server drains within 30 s")
        .expect("it ran");
    assert!(status.success(), "SIGTERM: exit 0");
    let client = support::pg::connect(&db).await;
    let rows = client
        .query("SELECT name, recorded FROM workers ORDER BY id", &[])
        .await
        .expect("read the workers");
    let recorded: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(recorded.len(), 2, "the server and the worker: {recorded:?}");
    assert!(
        recorded.iter().all(|(_, n)| *n > 0),
        "each recorded outcomes: {recorded:?}"
    );
    assert_eq!(
        recorded.iter().map(|(_, n)| n).sum::<i64>(),
        i64::try_from(n).expect("small"),
        "{recorded:?}"
    );
    for i in 0..n {
        assert_eq!(upstream.hits(&format!("/ok/{i}")), 1, "/ok/{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_url_gives_a_link_that_signs_in_once() {
    let v = Volley::new();
    let token = v.path("token");
    std::fs::write(&token, TOKEN).expect("write the token file");
    let mut cmd = v.command(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        token.to_str().expect("utf-8"),
        "--print-url",
    ]);
    let mut child = cmd.spawn().expect("volley serve starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let link = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("volley: dashboard: ") {
                return rest.split(' ').next().unwrap_or_default().to_owned();
            }
        }
        panic!("volley serve printed no link");
    })
    .await
    .expect("the link within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let base = link
        .split("/session/")
        .next()
        .unwrap_or_default()
        .to_owned();
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let first = http.get(&link).send().await.expect("the server answers");
    assert_eq!(first.status().as_u16(), 303);
    assert_eq!(first.headers()["location"], "/");
    let cookie = first.headers()["set-cookie"]
        .to_str()
        .expect("a cookie")
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let jobs = http
        .get(format!("{base}/v1/jobs"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("the server answers");
    assert_eq!(jobs.status().as_u16(), 200, "the session works");
    let again = http.get(&link).send().await.expect("the server answers");
    assert_eq!(again.status().as_u16(), 401, "a link signs in once");
    let wrong = format!("{base}/session/link?key=00");
    assert_eq!(
        http.get(&wrong)
            .send()
            .await
            .expect("answers")
            .status()
            .as_u16(),
        401
    );
    drop(child);
}
