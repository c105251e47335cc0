//! Test support, written once: a real HTTP server on loopback whose routes
//! behave the ways volley must handle, and a runner for the real `volley`
//! binary over a throwaway directory and database.
//!
//! Routes (all GET):
//! - `/ok/{n}?ms=D` — 200 `ok {n}`, after D ms if given.
//! - `/status/{code}` — that status.
//! - `/flaky/{key}?fails=N&code=C` — status C (default 503) for the first N
//!   requests to that path, then 200.
//! - `/retry-after/{key}?secs=S&form=seconds|date&code=C` — first request: C
//!   (default 429) with `Retry-After` in the given form; then 200.
//! - `/slow?ms=D` — 200 after D ms.
//! - `/stall` — headers and one chunk at once, then silence.
//! - `/redirect/{n}` — 302 to `/redirect/{n-1}`; `/redirect/0` is 200.
//! - `/gzip` — a gzip-encoded text body (`Content-Encoding: gzip`).
//! - `/big/{bytes}` — a streamed body of [`pattern`] bytes.
//! - `/echo` — 200; the request headers are kept for [`Server::headers_seen`].
//! - `/storm/{n}?secs=S&form=seconds|date` — the first `/storm` request to
//!   this server gets 429 with `Retry-After`; every later one 200.
//! - `/flap/{n}` — 503 and 200 in turn, over all `/flap` requests.
//! - `/loop` — a redirect to itself.
//! - `/to?url=U` — 302 to `U` (anywhere: for the address rules' redirect check).
//! - `/login` — 302 to `/echo`, setting the cookie [`SESSION_COOKIE`];
//!   `/login?stay=1` sets it with a 200.
//! - `/bomb` — 16 MiB of zeros, gzip-encoded (about 16 KiB on the wire).
//! - `/private/{n}` — 200 (for robots.txt tests).
//! - `/robots.txt` — what [`Server::set_robots`] set; 404 by default.
//! - `/api/{style}?…` — a paginated JSON API of `pages` pages of `size`
//!   items (`{"id": n, "page": p}`), in the style `link` (`page=`, `Link`
//!   header), `next` (`page=`, `"next"` URL), `cursor` (`after=cN`,
//!   `"meta": {"cursor": …}`), `paged` (`p=`, empty after the last page),
//!   `offset` (`start=`, `total=` items), `loop` (`Link` back to page 1),
//!   and `flaky` (like `link`, but page 3 answers 503 once). `ms=D` delays.
//!
//! Every server tracks the most requests it had in flight at once
//! ([`Server::max_in_flight`]). [`hostile`] has a raw TCP server for what a
//! well-behaved HTTP library cannot send.

#![allow(dead_code)]

pub mod hostile;
pub mod pg;

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::Notify;

/// Query parameters, sorted by name (so URLs built from them are stable).
type Params = std::collections::BTreeMap<String, String>;

/// What the server saw.
#[derive(Default)]
pub struct Seen {
    /// Arrival times of requests, by path (without query).
    hits: Mutex<HashMap<String, Vec<Instant>>>,
    /// Requests in total.
    total: AtomicU64,
    /// Woken on every request.
    arrived: Notify,
    /// Request headers of `/echo`.
    headers: Mutex<Vec<HeaderMap>>,
    /// Requests in flight now, and the most at once.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Requests to `/storm` and `/flap`.
    storm: AtomicU64,
    flap: AtomicU64,
    /// What `/robots.txt` answers: status and body.
    robots: Mutex<Option<(u16, String)>>,
    /// Requests by path and query.
    uri_hits: Mutex<HashMap<String, u64>>,
    /// Connections accepted (TLS servers only).
    connections: AtomicU64,
}

/// A running test server.
#[derive(Clone)]
pub struct Server {
    pub addr: SocketAddr,
    seen: Arc<Seen>,
}

impl Server {
    /// Starts a server on 127.0.0.1 with a free port, on the current runtime.
    pub async fn start() -> Server {
        Server::start_on("127.0.0.1").await
    }

    /// Starts a server on loopback address `ip` (127.0.0.2, … make distinct
    /// hosts) with a free port.
    pub async fn start_on(ip: &str) -> Server {
        let seen = Arc::new(Seen::default());
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .expect("bind a loopback port for the test server");
        let addr = listener.local_addr().expect("test server address");
        let app = app(&seen);
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("test server runs");
        });
        Server { addr, seen }
    }

    /// Starts a server that answers on every loopback address (127.0.0.0/8)
    /// at one free port: the wildcard address, bound to the `lo` device so
    /// that nothing from outside the machine reaches it (needs root, as CI
    /// and this project's machines are). [`Server::url`] names 127.0.0.1;
    /// any 127.x.y.z reaches the same server.
    pub async fn start_on_all_loopback() -> Server {
        let seen = Arc::new(Seen::default());
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind_device(Some(b"lo"))
            .expect("bind the socket to the loopback device (SO_BINDTODEVICE needs root)");
        socket
            .bind(SocketAddr::from(([0, 0, 0, 0], 0)))
            .expect("bind a port");
        let port = socket.local_addr().expect("address").port();
        let listener = socket.listen(4096).expect("listen");
        let app = app(&seen);
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("test server runs");
        });
        Server {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            seen,
        }
    }

    /// Starts the same routes over TLS (ALPN offers `h2` and `http/1.1`)
    /// with a fresh self-signed certificate for `127.0.0.1` and `localhost`.
    /// Returns the server and the certificate as PEM, for `--ca-cert`.
    pub async fn start_tls() -> (Server, String) {
        Server::start_tls_with_alpn(&[b"h2", b"http/1.1"]).await
    }

    /// Like [`Server::start_tls`], offering only the `alpn` protocols
    /// (`&[b"h2"]` makes an HTTP/2-only server).
    pub async fn start_tls_with_alpn(alpn: &[&[u8]]) -> (Server, String) {
        let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("generate a test certificate");
        let cert_pem = key.cert.pem();
        let private =
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![key.cert.der().clone()], private)
            .expect("TLS server config");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        (Server::start_tls_config(config).await, cert_pem)
    }

    /// The test server over TLS with `config` (its certificate, client
    /// authentication and ALPN), on a free loopback port.
    pub async fn start_tls_config(config: rustls::ServerConfig) -> Server {
        let seen = Arc::new(Seen::default());
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the TLS test server");
        let addr = listener.local_addr().expect("test server address");
        let service = hyper_util::service::TowerToHyperService::new(app(&seen));
        let counted = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counted.connections.fetch_add(1, Ordering::Relaxed);
                let (acceptor, service) = (acceptor.clone(), service.clone());
                tokio::spawn(async move {
                    // A client that rejects the certificate ends the handshake: not an error here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
                });
            }
        });
        Server { addr, seen }
    }

    /// TCP connections a TLS server has accepted.
    pub fn connections(&self) -> u64 {
        self.seen.connections.load(Ordering::Relaxed)
    }

    /// The `https` URL of `path` on a server from [`Server::start_tls`].
    pub fn https_url(&self, path: &str) -> String {
        format!("https://{}{}", self.addr, path)
    }

    /// The `http` URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Requests that reached `path` (without query).
    pub fn hits(&self, path: &str) -> u64 {
        self.arrivals(path).len() as u64
    }

    /// Arrival times of requests to `path`.
    pub fn arrivals(&self, path: &str) -> Vec<Instant> {
        self.seen
            .hits
            .lock()
            .expect("hits lock")
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// Arrival times of requests whose path starts with `prefix`, sorted.
    pub fn arrivals_under(&self, prefix: &str) -> Vec<Instant> {
        let hits = self.seen.hits.lock().expect("hits lock");
        let mut all: Vec<Instant> = hits
            .iter()
            .filter(|(path, _)| path.starts_with(prefix))
            .flat_map(|(_, times)| times.iter().copied())
            .collect();
        all.sort();
        all
    }

    /// Requests so far, all paths.
    pub fn total(&self) -> u64 {
        self.seen.total.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have arrived in total.
    pub async fn wait_for_requests(&self, n: u64) {
        loop {
            let arrived = self.seen.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.total() >= n {
                return;
            }
            arrived.await;
        }
    }

    /// The most requests this server had in flight at once.
    pub fn max_in_flight(&self) -> u64 {
        self.seen.max_in_flight.load(Ordering::SeqCst)
    }

    /// Makes `/robots.txt` answer `status` with `body`.
    pub fn set_robots(&self, status: u16, body: &str) {
        *self.seen.robots.lock().expect("robots lock") = Some((status, body.to_owned()));
    }

    /// Requests that reached exactly `path_and_query`.
    pub fn uri_hits(&self, path_and_query: &str) -> u64 {
        self.seen
            .uri_hits
            .lock()
            .expect("uri lock")
            .get(path_and_query)
            .copied()
            .unwrap_or(0)
    }

    /// Requests by path and query, for paths starting with `prefix`.
    pub fn uri_hits_under(&self, prefix: &str) -> HashMap<String, u64> {
        self.seen
            .uri_hits
            .lock()
            .expect("uri lock")
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Request headers received by `/echo`.
    pub fn headers_seen(&self) -> Vec<HeaderMap> {
        self.seen.headers.lock().expect("headers lock").clone()
    }
}

/// A small site with a known link graph, for crawls: cycles, relative and
/// absolute links, `<base href>`, fragments, a query variant, a
/// `rel=nofollow` link, a stylesheet and a mail link (not pages), a link
/// to another host, and two broken links each named by two pages:
/// `missing.html` (a 404, from `b` and `deep/e`) and port 9 of this
/// address, where nothing listens (from `a` and `deep/d`). From
/// `index.html` a crawl of this host finds `index`, `a`, `b`, `c`,
/// `deep/d`, `deep/e`, `a.html?x=1`, `missing.html` and
/// `http://127.0.0.1:9/gone`; `c` only through its nofollow link. `deep/e`
/// asks not to be indexed (`<meta name="robots" content="noindex">`).
async fn site(UrlPath(page): UrlPath<String>) -> Response {
    let body = match page.as_str() {
        "index.html" => {
            r#"<html><head><link rel="stylesheet" href="style.css"></head><body>
            <a href="a.html">A</a> <a href="b.html#part">B</a> <a href="/site/a.html">A again</a>
            <a href="http://out-of-scope.test/page">elsewhere</a> <a rel="nofollow" href="c.html">C</a>
            <a href="mailto:someone@example.com">mail</a></body></html>"#
        }
        "a.html" => {
            r#"<html><head><base href="/site/deep/"></head><body>
            <a href="d.html">D</a> <a href="/site/index.html">home</a>
            <a href="http://127.0.0.1:9/gone">refused</a></body></html>"#
        }
        "b.html" => {
            r#"<a href="a.html?x=1">A, a variant</a> <a href="missing.html">gone</a> <a href="index.html#top">home</a>"#
        }
        "c.html" => r#"<a href="b.html">B</a>"#,
        "deep/d.html" => r#"<a href="e.html">E</a> <a href="http://127.0.0.1:9/gone">refused</a>"#,
        "deep/e.html" => {
            r#"<head><meta name="robots" content="noindex"></head>
            <a href="/site/missing.html">gone</a> <a href="/site/b.html">B</a>"#
        }
        "style.css" => "body {}",
        _ => return (StatusCode::NOT_FOUND, "no such page").into_response(),
    };
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// A seed for [`next_random`] from the clock, so kill moments vary by run
/// (tests print it).
pub fn random_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 | 1)
        .unwrap_or(88172645463325252)
}

/// A small xorshift generator, so the moments of kill loops vary by run.
pub fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Pages of a generated site of [`GRAPH_PAGES`] pages for crawls that
/// must survive kill -9: page `n` links to `2n+1` and `2n+2` (a tree that
/// reaches every page), to its parent `n/2` and to `(7n+3) mod N`
/// (cycles), relatively and absolutely.
async fn graph(UrlPath(n): UrlPath<u64>) -> Response {
    if n >= GRAPH_PAGES {
        return (StatusCode::NOT_FOUND, "no such page").into_response();
    }
    let mut body = String::from("<html><body>");
    for to in [2 * n + 1, 2 * n + 2, n / 2, (7 * n + 3) % GRAPH_PAGES] {
        if to < GRAPH_PAGES {
            body.push_str(&format!(
                r#"<a href="{to}">{to}</a> <a href="/graph/{to}#top">again</a>"#
            ));
        }
    }
    body.push_str("</body></html>");
    ([(header::CONTENT_TYPE, "text/html")], body).into_response()
}

/// Pages of the generated site [`graph`] serves.
pub const GRAPH_PAGES: u64 = 3_000;

/// Sitemaps of the test site: `index.xml`, a sitemap index naming
/// `pages.xml.gz` (a gzip urlset: `c.html` with a `<lastmod>`, and
/// `deep/e.html`), `big.xml` (one entry past the protocol's 50,000, all
/// naming `index.html`) and itself (a loop).
async fn maps(UrlPath(name): UrlPath<String>) -> Response {
    const NS: &str = "http://www.sitemaps.org/schemas/sitemap/0.9";
    match name.as_str() {
        "index.xml" => {
            let body = format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><sitemapindex xmlns="{NS}">
                <sitemap><loc>/maps/pages.xml.gz</loc></sitemap>
                <sitemap><loc>/maps/big.xml</loc></sitemap>
                <sitemap><loc>/maps/index.xml</loc></sitemap></sitemapindex>"#
            );
            ([(header::CONTENT_TYPE, "application/xml")], body).into_response()
        }
        "pages.xml.gz" => {
            let xml = format!(
                r#"<urlset xmlns="{NS}"><url><loc>/site/c.html</loc><lastmod>2026-11-30</lastmod></url>
                <url><loc>/site/deep/e.html#frag</loc></url></urlset>"#
            );
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(xml.as_bytes()).expect("gzip into memory");
            let body = gz.finish().expect("gzip into memory");
            ([(header::CONTENT_TYPE, "application/gzip")], body).into_response()
        }
        "big.xml" => {
            let mut body = format!(r#"<urlset xmlns="{NS}">"#);
            for _ in 0..=50_000 {
                body.push_str("<url><loc>/site/index.html</loc></url>");
            }
            body.push_str("</urlset>");
            ([(header::CONTENT_TYPE, "text/xml")], body).into_response()
        }
        _ => (StatusCode::NOT_FOUND, "no such sitemap").into_response(),
    }
}

/// A page on `a.example.co.uk` linking to a sibling host of its
/// registrable domain and to a host of another domain under the same
/// public suffix, on the port the request came to (`--scope domain`).
async fn domains(headers: HeaderMap) -> Response {
    let port = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.rsplit_once(':'))
        .map_or("80", |(_, p)| p)
        .to_owned();
    let body = format!(
        r#"<a href="http://b.example.co.uk:{port}/domains/b">sibling</a>
        <a href="http://other.co.uk:{port}/domains/o">another domain</a>"#
    );
    ([(header::CONTENT_TYPE, "text/html")], body).into_response()
}

/// The routes every test server serves (see the module docs).
fn app(seen: &Arc<Seen>) -> Router {
    Router::new()
        .route("/ok/{n}", get(ok))
        .route("/status/{code}", get(status))
        .route("/flaky/{key}", get(flaky))
        .route("/retry-after/{key}", get(retry_after))
        .route("/slow", get(slow))
        .route("/stall", get(stall))
        .route("/redirect/{n}", get(redirect))
        .route("/gzip", get(gzip))
        .route("/big/{bytes}", get(big))
        .route("/echo", get(echo))
        .route("/storm/{n}", get(storm))
        .route("/flap/{n}", get(flap))
        .route("/loop", get(redirect_loop))
        .route("/to", get(redirect_to))
        .route("/login", get(login))
        .route("/bomb", get(bomb))
        .route("/private/{n}", get(|| async { "private" }))
        .route("/robots.txt", get(robots))
        .route("/api/{style}", get(api))
        .route("/site/{*page}", get(site))
        .route("/domains/{page}", get(domains))
        .route("/maps/{name}", get(maps))
        .route("/graph/{n}", get(graph))
        .layer(middleware::from_fn_with_state(Arc::clone(seen), count))
        .with_state(Arc::clone(seen))
}

async fn count(State(seen): State<Arc<Seen>>, request: Request, next: Next) -> Response {
    seen.hits
        .lock()
        .expect("hits lock")
        .entry(request.uri().path().to_owned())
        .or_default()
        .push(Instant::now());
    let uri = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |pq| pq.as_str().to_owned(),
    );
    *seen
        .uri_hits
        .lock()
        .expect("uri lock")
        .entry(uri)
        .or_default() += 1;
    seen.total.fetch_add(1, Ordering::SeqCst);
    seen.arrived.notify_waiters();
    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let response = next.run(request).await;
    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

async fn storm(State(seen): State<Arc<Seen>>, Query(q): Query<Params>) -> Response {
    if seen.storm.fetch_add(1, Ordering::SeqCst) > 0 {
        return "calm".into_response();
    }
    let secs = param::<u64>(&q, "secs").unwrap_or(1);
    let value = if q.get("form").map(String::as_str) == Some("date") {
        httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs))
    } else {
        secs.to_string()
    };
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, value)],
        "storm",
    )
        .into_response()
}

async fn flap(State(seen): State<Arc<Seen>>) -> Response {
    if seen.flap.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
        return (StatusCode::SERVICE_UNAVAILABLE, "flap").into_response();
    }
    "flop".into_response()
}

async fn redirect_to(Query(q): Query<HashMap<String, String>>) -> Response {
    let to = q.get("url").cloned().unwrap_or_default();
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

/// The session cookie `/login` sets.
pub const SESSION_COOKIE: &str = "sid=s3ss10n-9f2c";

/// Sets [`SESSION_COOKIE`] and redirects to `/echo`, as a login form does
/// (with `?stay=1`, answers 200 instead).
async fn login(Query(q): Query<HashMap<String, String>>) -> Response {
    let set = (
        header::SET_COOKIE,
        format!("{SESSION_COOKIE}; Path=/; HttpOnly"),
    );
    if q.contains_key("stay") {
        return ([set], "logged in").into_response();
    }
    (
        StatusCode::FOUND,
        [set, (header::LOCATION, "/echo".to_owned())],
    )
        .into_response()
}

async fn redirect_loop() -> Response {
    (StatusCode::FOUND, [(header::LOCATION, "/loop")]).into_response()
}

/// Decoded size of `/bomb`.
pub const BOMB_BYTES: usize = 16 << 20;

/// The body `/bomb` serves: [`BOMB_BYTES`] of zeros, gzipped. Made on
/// first use, which takes about a second in a debug build: a test with a
/// short read timeout makes it before it starts fetching.
pub fn bomb_body() -> &'static [u8] {
    static BOMB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BOMB.get_or_init(|| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(BOMB_BYTES >> 20) {
            encoder.write_all(&zeros).expect("gzip into memory");
        }
        encoder.finish().expect("gzip into memory")
    })
}

async fn bomb() -> Response {
    ([(header::CONTENT_ENCODING, "gzip")], bomb_body().to_vec()).into_response()
}

/// The items of page `page` (1-based) of `size` items.
fn page_items(page: u64, size: u64) -> Vec<serde_json::Value> {
    (0..size)
        .map(|i| serde_json::json!({"id": (page - 1) * size + i, "page": page}))
        .collect()
}

async fn api(
    State(seen): State<Arc<Seen>>,
    UrlPath(style): UrlPath<String>,
    Query(q): Query<Params>,
) -> Response {
    if let Some(ms) = param::<u64>(&q, "ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let pages = param::<u64>(&q, "pages").unwrap_or(5);
    let size = param::<u64>(&q, "size").unwrap_or(5);
    // `key=value` first, then the other parameters in name order.
    let query = |key: &str, value: u64| {
        std::iter::once(format!("{key}={value}"))
            .chain(
                q.iter()
                    .filter(|(k, _)| k.as_str() != key)
                    .map(|(k, v)| format!("{k}={v}")),
            )
            .collect::<Vec<_>>()
            .join("&")
    };
    let json = |value: serde_json::Value| {
        (
            [(header::CONTENT_TYPE, "application/json")],
            value.to_string(),
        )
            .into_response()
    };
    match style.as_str() {
        "link" | "flaky" | "loop" => {
            let page = param::<u64>(&q, "page").unwrap_or(1);
            if style == "flaky" && page == 3 {
                // The middleware counted this request already: 1 means first.
                let page3: u64 = seen
                    .uri_hits
                    .lock()
                    .expect("uri lock")
                    .iter()
                    .filter(|(k, _)| {
                        k.starts_with("/api/flaky?") && k.split(['?', '&']).any(|kv| kv == "page=3")
                    })
                    .map(|(_, v)| *v)
                    .sum();
                if page3 == 1 {
                    return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
                }
            }
            let next = match style.as_str() {
                "loop" => Some(format!("/api/loop?{}", query("page", 1))),
                _ if page < pages => Some(format!("/api/{style}?{}", query("page", page + 1))),
                _ => None,
            };
            let mut response = json(serde_json::json!({"items": page_items(page, size)}));
            if let Some(next) = next {
                let value = format!("<{next}>; rel=\"next\", </api/{style}?page=1>; rel=\"first\"");
                if let Ok(v) = header::HeaderValue::from_str(&value) {
                    response.headers_mut().insert(header::LINK, v);
                }
            }
            response
        }
        "next" => {
            let page = param::<u64>(&q, "page").unwrap_or(1);
            let next = (page < pages).then(|| format!("/api/next?{}", query("page", page + 1)));
            json(serde_json::json!({"data": page_items(page, size), "next": next}))
        }
        "cursor" => {
            let page = q
                .get("after")
                .and_then(|c| c.strip_prefix('c'))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(1);
            let cursor = (page < pages).then(|| format!("c{}", page + 1));
            json(serde_json::json!({"items": page_items(page, size), "meta": {"cursor": cursor}}))
        }
        "paged" => {
            let page = param::<u64>(&q, "p").unwrap_or(1);
            let items = if page <= pages {
                page_items(page, size)
            } else {
                Vec::new()
            };
            json(serde_json::json!({"items": items}))
        }
        "root" => {
            // json-server: the page is the array, the next page in Link.
            let page = param::<u64>(&q, "page").unwrap_or(1);
            let mut response = json(serde_json::Value::Array(page_items(page, size)));
            if page < pages {
                let value = format!("</api/root?{}>; rel=\"next\"", query("page", page + 1));
                if let Ok(v) = header::HeaderValue::from_str(&value) {
                    response.headers_mut().insert(header::LINK, v);
                }
            }
            response
        }
        "mixed" => json(serde_json::json!({"items": [
            {"a": 1}, {"a": 2, "c": "x"}, {"b": 3, "nested": {"k": [1, 2]}}
        ]})),
        "offset" => {
            let start = param::<u64>(&q, "start").unwrap_or(0);
            let total = param::<u64>(&q, "total").unwrap_or(23);
            let items: Vec<serde_json::Value> = (start..(start + size).min(total))
                .map(|id| serde_json::json!({"id": id}))
                .collect();
            json(serde_json::json!({"items": items, "total": total}))
        }
        _ => (StatusCode::NOT_FOUND, "no such style").into_response(),
    }
}

async fn robots(State(seen): State<Arc<Seen>>) -> Response {
    match seen.robots.lock().expect("robots lock").clone() {
        Some((status, body)) => {
            (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no robots.txt").into_response(),
    }
}

fn hits_of(seen: &Seen, path: &str) -> usize {
    seen.hits
        .lock()
        .expect("hits lock")
        .get(path)
        .map_or(0, Vec::len)
}

fn param<T: std::str::FromStr>(q: &Params, key: &str) -> Option<T> {
    q.get(key).and_then(|v| v.parse().ok())
}

async fn ok(UrlPath(n): UrlPath<String>, Query(q): Query<Params>) -> String {
    if let Some(ms) = param::<u64>(&q, "ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    format!("ok {n}")
}

async fn status(UrlPath(code): UrlPath<u16>) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
    (code, format!("status {code}")).into_response()
}

async fn flaky(
    State(seen): State<Arc<Seen>>,
    UrlPath(key): UrlPath<String>,
    Query(q): Query<Params>,
) -> Response {
    let fails = param::<usize>(&q, "fails").unwrap_or(1);
    let code = param::<u16>(&q, "code").unwrap_or(503);
    if hits_of(&seen, &format!("/flaky/{key}")) <= fails {
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (code, "try again").into_response();
    }
    "recovered".into_response()
}

async fn retry_after(
    State(seen): State<Arc<Seen>>,
    UrlPath(key): UrlPath<String>,
    Query(q): Query<Params>,
) -> Response {
    if hits_of(&seen, &format!("/retry-after/{key}")) > 1 {
        return "after waiting".into_response();
    }
    let secs = param::<u64>(&q, "secs").unwrap_or(1);
    let value = if q.get("form").map(String::as_str) == Some("date") {
        httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs))
    } else {
        secs.to_string()
    };
    let code = StatusCode::from_u16(param::<u16>(&q, "code").unwrap_or(429))
        .unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    (code, [(header::RETRY_AFTER, value)], "slow down").into_response()
}

async fn slow(Query(q): Query<Params>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(
        param::<u64>(&q, "ms").unwrap_or(1000),
    ))
    .await;
    "finally"
}

async fn stall() -> Response {
    let chunks = futures_util::stream::unfold(0u8, |step| async move {
        if step > 0 {
            std::future::pending::<()>().await;
        }
        Some((
            Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"first chunk;")),
            step + 1,
        ))
    });
    Body::from_stream(chunks).into_response()
}

async fn redirect(UrlPath(n): UrlPath<u32>) -> Response {
    if n == 0 {
        return "landed".into_response();
    }
    (
        StatusCode::FOUND,
        [(header::LOCATION, format!("/redirect/{}", n - 1))],
    )
        .into_response()
}

/// The decoded text `/gzip` serves.
pub fn gzip_text() -> String {
    "volley decodes gzip bodies as they stream. ".repeat(200)
}

async fn gzip() -> Response {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(gzip_text().as_bytes())
        .expect("gzip into memory");
    let body = encoder.finish().expect("gzip into memory");
    (
        [
            (header::CONTENT_ENCODING, "gzip"),
            (header::CONTENT_TYPE, "text/plain"),
        ],
        body,
    )
        .into_response()
}

/// Byte `i` of every `/big` body.
pub fn pattern(i: u64) -> u8 {
    ((i * 31 + 7) % 251) as u8
}

/// SHA-256 (hex) of the first `len` [`pattern`] bytes.
pub fn pattern_sha256(len: u64) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut i = 0;
    while i < len {
        buf.clear();
        let end = (i + 64 * 1024).min(len);
        buf.extend((i..end).map(pattern));
        h.update(&buf);
        i = end;
    }
    hex::encode(h.finalize())
}

async fn big(UrlPath(len): UrlPath<u64>) -> Response {
    const CHUNK: u64 = 64 * 1024;
    let chunks = futures_util::stream::unfold(0u64, move |at| async move {
        if at >= len {
            return None;
        }
        let end = (at + CHUNK).min(len);
        let chunk: Vec<u8> = (at..end).map(pattern).collect();
        Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(chunk)), end))
    });
    (
        [(header::CONTENT_LENGTH, len.to_string())],
        Body::from_stream(chunks),
    )
        .into_response()
}

async fn echo(State(seen): State<Arc<Seen>>, headers: HeaderMap) -> &'static str {
    seen.headers.lock().expect("headers lock").push(headers);
    "echo"
}

/// A real DNS server on loopback: Debian's dnsmasq (package dnsmasq-base,
/// which `.ci/run` installs), answering `*.volley.test`, `*.example.co.uk`
/// and `*.other.co.uk` (names on both sides of a public suffix) with 127.0.0.1 and
/// NXDOMAIN for `*.gone.test`, and nothing else (no upstream, no hosts
/// file). Stopped when dropped.
pub struct Dns {
    pub addr: SocketAddr,
    child: tokio::process::Child,
}

impl Dns {
    /// Starts dnsmasq on a free port. dnsmasq listens on UDP and TCP: a
    /// port free for UDP may be taken for TCP (by a test server of a test
    /// running alongside), and then dnsmasq exits; it is tried again on
    /// another port, five times at most.
    pub async fn start() -> Dns {
        let mut failures = Vec::new();
        for _ in 0..5 {
            match Dns::try_start().await {
                Ok(dns) => return dns,
                Err(why) => failures.push(why),
            }
        }
        panic!("dnsmasq did not start: {failures:?}");
    }

    async fn try_start() -> Result<Dns, String> {
        use tokio::io::AsyncBufReadExt as _;
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port")
            .port();
        let mut child = tokio::process::Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--user=root",
                "--pid-file=",
                "--log-facility=-",
                "--address=/volley.test/127.0.0.1",
                "--address=/example.co.uk/127.0.0.1",
                "--address=/other.co.uk/127.0.0.1",
                "--address=/gone.test/",
            ])
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("dnsmasq runs (apt-get install dnsmasq-base)");
        // dnsmasq logs "started" once it listens, or why it cannot.
        let stderr = child.stderr.take().expect("dnsmasq's stderr");
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let mut said = Vec::new();
        let started = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("started") {
                    return true;
                }
                said.push(line);
            }
            false
        })
        .await;
        if started != Ok(true) {
            return Err(format!("port {port}: {}", said.join(" / ")));
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Dns {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        })
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A throwaway directory with a database, and the real `volley` binary.
pub struct Volley {
    pub dir: tempfile::TempDir,
}

/// One outcome row with its task, as tests read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// `None` for a page found by pagination.
    pub line: Option<u64>,
    pub url: String,
    pub state: String,
    pub class: String,
    pub status: Option<u16>,
    pub http_version: Option<String>,
    pub message: Option<String>,
    pub attempts: u32,
    pub bytes: Option<u64>,
    pub final_url: Option<String>,
    pub body_sha256: Option<String>,
    pub body_path: Option<String>,
    pub duplicate_of_line: Option<u64>,
}

impl Volley {
    pub fn new() -> Volley {
        Volley {
            dir: tempfile::tempdir().expect("create a temporary directory"),
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("volley.db")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `lines` to `name` in the directory; returns its path.
    pub fn write_lines(&self, name: &str, lines: &[String]) -> PathBuf {
        let path = self.path(name);
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&path, text).expect("write the URL list");
        path
    }

    /// Writes `urls` to `urls.txt`, runs `volley fetch` over it with
    /// [`fetch_args`] and `extra`, and checks that it exited 0.
    pub async fn fetch_ok(&self, urls: &[String], extra: &[&str]) -> Output {
        let list = self.write_lines("urls.txt", urls);
        let out = self
            .run(&fetch_args(list.to_str().expect("utf-8 path"), extra))
            .await;
        assert!(
            out.status.success(),
            "exit {:?}: {}",
            out.status,
            stderr(&out)
        );
        out
    }

    /// `volley --db <db> <args>`, run in the directory, with piped output.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_volley"));
        cmd.arg("--db")
            .arg(self.db())
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `volley` to the end with `input` piped on its stdin.
    pub async fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        use tokio::io::AsyncWriteExt as _;
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().expect("start volley");
        let mut stdin = child.stdin.take().expect("a piped stdin");
        stdin
            .write_all(input.as_bytes())
            .await
            .expect("write volley's stdin");
        drop(stdin);
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("volley finished within 60 s")
            .expect("volley ran")
    }

    /// Runs `volley` to the end, failing the test if it takes over a minute.
    pub async fn run(&self, args: &[&str]) -> Output {
        let child = self.command(args).output();
        tokio::time::timeout(Duration::from_secs(60), child)
            .await
            .expect("volley finished within 60 s")
            .expect("volley ran")
    }

    fn conn(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db()).expect("open the test database")
    }

    /// Every outcome of every job, in line order.
    pub fn rows(&self) -> Vec<Row> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT t.line, t.url, t.state, o.class, o.status, o.http_version, o.message, \
                 o.attempts, o.bytes, o.final_url, o.body_sha256, o.body_path, d.line \
                 FROM tasks t JOIN outcomes o ON o.task_id = t.id \
                 LEFT JOIN tasks d ON d.id = o.duplicate_of ORDER BY t.job_id, t.id",
            )
            .expect("prepare the outcome query");
        stmt.query_map([], |r| {
            Ok(Row {
                line: r.get(0)?,
                url: r.get(1)?,
                state: r.get(2)?,
                class: r.get(3)?,
                status: r.get(4)?,
                http_version: r.get(5)?,
                message: r.get(6)?,
                attempts: r.get(7)?,
                bytes: r.get(8)?,
                final_url: r.get(9)?,
                body_sha256: r.get(10)?,
                body_path: r.get(11)?,
                duplicate_of_line: r.get(12)?,
            })
        })
        .expect("query outcomes")
        .collect::<Result<_, _>>()
        .expect("read outcomes")
    }

    /// The outcome of input line `line`.
    pub fn row(&self, line: u64) -> Row {
        self.rows()
            .into_iter()
            .find(|r| r.line == Some(line))
            .unwrap_or_else(|| panic!("no outcome for line {line}"))
    }

    /// The `attempts` rows of input line `line`: (attempt, class, status,
    /// retry delay ms).
    pub fn attempt_rows(&self, line: u64) -> Vec<(u32, String, Option<u16>, Option<u64>)> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT a.attempt, a.class, a.status, a.retry_delay_ms FROM attempts a \
                 JOIN tasks t ON t.id = a.task_id WHERE t.line = ?1 ORDER BY a.attempt",
            )
            .expect("prepare the attempts query");
        stmt.query_map([line], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query attempts")
            .collect::<Result<_, _>>()
            .expect("read attempts")
    }

    /// Every `--items` element, page by page, as JSON.
    pub fn items(&self) -> Vec<serde_json::Value> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT item FROM items ORDER BY task_id, idx")
            .expect("prepare the items query");
        stmt.query_map([], |r| r.get::<_, String>(0))
            .expect("query items")
            .map(|item| serde_json::from_str(&item.expect("read an item")).expect("items are JSON"))
            .collect()
    }

    /// The outcomes as `volley export` writes them (JSON Lines), parsed.
    pub async fn export_rows(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["export"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("each export line is JSON"))
            .collect()
    }

    /// Asserts that every job's counts, as the store keeps them for status,
    /// equal what its tasks and outcomes say (`GROUP BY`). Takes the run
    /// lock: no run may be going.
    pub async fn assert_counts_hold(&self) {
        use volley::store::{Reader, Store};
        let jobs = volley::store::sqlite::SqliteReader::open(&self.db())
            .expect("open the database")
            .jobs()
            .expect("read the jobs");
        let store = volley::store::sqlite::SqliteStore::open(&self.db()).expect("open the store");
        for job in jobs {
            let (kept, counted) = store.recount(job.job.id).await.expect("recount");
            assert_eq!(
                kept, counted,
                "job {}: counts kept and counted",
                job.job.name
            );
        }
    }

    /// Outcomes by class, as the database holds them.
    pub fn class_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.counts_by("SELECT class, count(*) FROM outcomes GROUP BY class")
    }

    /// Task counts by state.
    pub fn task_states(&self) -> HashMap<String, u64> {
        self.counts_by("SELECT state, count(*) FROM tasks GROUP BY state")
    }

    /// The rows of a `SELECT key, count(*) … GROUP BY key` query.
    fn counts_by<C: FromIterator<(String, u64)>>(&self, sql: &str) -> C {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql).expect("prepare the count query");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("run the count query")
            .collect::<Result<C, _>>()
            .expect("read the counts")
    }

    /// Checks the central promise: every task has exactly one outcome, and
    /// the outcomes count equals the tasks count.
    pub fn assert_one_outcome_per_task(&self, expected_tasks: u64) {
        let conn = self.conn();
        let (tasks, outcomes, distinct, orphans): (u64, u64, u64, u64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM outcomes), \
                 (SELECT count(DISTINCT task_id) FROM outcomes), \
                 (SELECT count(*) FROM tasks t WHERE NOT EXISTS \
                    (SELECT 1 FROM outcomes o WHERE o.task_id = t.id))",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .expect("count tasks and outcomes");
        assert_eq!(tasks, expected_tasks, "tasks in the database");
        assert_eq!(outcomes, tasks, "one outcome per task");
        assert_eq!(distinct, outcomes, "no task has two outcomes");
        assert_eq!(orphans, 0, "tasks without an outcome");
    }
}

/// `fetch <list> --quiet` with fast retries (10-50 ms backoff), then `extra`.
pub fn fetch_args<'a>(list: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "fetch",
        list,
        "--quiet",
        "--backoff-base",
        "10ms",
        "--backoff-max",
        "50ms",
    ];
    args.extend_from_slice(extra);
    args
}

/// The text of a process's stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The path of `url` (for [`Server::hits`]).
pub fn path_of(url: &str) -> String {
    let after_host = url.splitn(4, '/').nth(3).unwrap_or("");
    let path = after_host.split('?').next().unwrap_or("");
    format!("/{path}")
}

/// The most arrivals in any one-second window starting at an arrival.
pub fn max_per_second(arrivals: &[Instant]) -> usize {
    (0..arrivals.len())
        .map(|i| {
            arrivals[i..]
                .iter()
                .take_while(|t| **t - arrivals[i] < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: i32) {
    let pid = i32::try_from(pid).expect("pid fits in i32");
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

/// A real proxy on loopback, from Debian: tinyproxy (HTTP, with CONNECT)
/// or microsocks (SOCKS5), each logging what it forwards. Stopped when
/// dropped.
pub struct Proxy {
    /// The proxy's URL (`http://…` or `socks5://…`).
    pub url: String,
    log: Arc<Mutex<Vec<String>>>,
    _child: tokio::process::Child,
}

impl Proxy {
    /// tinyproxy on a free port, logging each request it forwards.
    pub async fn tinyproxy(dir: &std::path::Path) -> Proxy {
        let port = free_port();
        let conf = dir.join(format!("tinyproxy-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nLogLevel Connect\nMaxClients 100\nTimeout 30\n"
            ),
        )
        .expect("write tinyproxy's config");
        let mut cmd = tokio::process::Command::new("tinyproxy");
        cmd.arg("-d").arg("-c").arg(&conf);
        Proxy::spawn(cmd, format!("http://127.0.0.1:{port}"), port).await
    }

    /// microsocks (SOCKS5) on a free port, logging each connection.
    pub async fn microsocks() -> Proxy {
        let port = free_port();
        let mut cmd = tokio::process::Command::new("microsocks");
        cmd.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
        Proxy::spawn(cmd, format!("socks5://127.0.0.1:{port}"), port).await
    }

    async fn spawn(mut cmd: tokio::process::Command, url: String, port: u16) -> Proxy {
        use tokio::io::AsyncBufReadExt as _;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the proxy runs (apt-get install tinyproxy microsocks)");
        let log = Arc::new(Mutex::new(Vec::new()));
        for output in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = Arc::clone(&log);
            let mut lines = tokio::io::BufReader::new(output).lines();
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    log.lock().expect("log lock").push(line);
                }
            });
        }
        wait_listening(port, &url).await;
        Proxy {
            url,
            log,
            _child: child,
        }
    }

    /// What the proxy logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }
}

/// A TCP port nothing listens on now (for a proxy to take, or to stay dead).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until something accepts connections on 127.0.0.1:`port`: a server
/// run as a process says nothing when it listens, so connect until it
/// answers (10 s at most).
async fn wait_listening(port: u16, what: &str) {
    let ready = tokio::time::timeout(Duration::from_secs(10), async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(ready.is_ok(), "{what} did not start");
}

/// nginx serving a directory on 127.0.0.1 (Debian's `nginx-light`), with an
/// access log of each request's URI, status and conditional headers.
pub struct Nginx {
    pub port: u16,
    log: PathBuf,
    _child: tokio::process::Child,
}

impl Nginx {
    /// Serves `root`, keeping its files (config, logs) under `work`.
    pub async fn start(root: &std::path::Path, work: &std::path::Path) -> Nginx {
        std::fs::create_dir_all(work.join("tmp")).expect("nginx work directory");
        let port = free_port();
        let (work_s, root_s) = (work.display(), root.display());
        // One process (no master), so that killing it stops nginx; as
        // root it would otherwise serve as 'nobody', who may not read a
        // temporary directory of root's.
        let user = if is_root() { "user root;" } else { "" };
        let conf = format!(
            "master_process off;\ndaemon off;\n{user}\npid {work_s}/nginx.pid;\n\
             error_log {work_s}/error.log warn;\nevents {{ worker_connections 256; }}\n\
             http {{\n  default_type application/octet-stream;\n\
             log_format conditional escape=none '$request_uri $status inm=$http_if_none_match ims=$http_if_modified_since';\n\
             access_log {work_s}/access.log conditional;\n\
             client_body_temp_path {work_s}/tmp/body;\nproxy_temp_path {work_s}/tmp/proxy;\n\
             fastcgi_temp_path {work_s}/tmp/fastcgi;\nuwsgi_temp_path {work_s}/tmp/uwsgi;\n\
             scgi_temp_path {work_s}/tmp/scgi;\n\
             server {{ listen 127.0.0.1:{port}; root {root_s}; }}\n}}\n"
        );
        let conf_path = work.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = tokio::process::Command::new("nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(work.join("error.log"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx runs (apt-get install nginx-light)");
        wait_listening(port, "nginx").await;
        Nginx {
            port,
            log: work.join("access.log"),
            _child: child,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The access log's lines: `URI STATUS inm=… ims=…`.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}
