//! Who may use the API: `Authorization: Bearer <token>` on every `/v1`
//! route (compared in constant time), or the dashboard's session cookie.
//!
//! A browser's `EventSource` cannot send an `Authorization` header, so the
//! dashboard trades the token once (`POST /session`) for a random session
//! id in an `HttpOnly`, `SameSite=Strict` cookie. Requests that change
//! something and authenticate by cookie must also carry
//! `X-Requested-With: volley`, which a cross-site form cannot send.
//! Without a configured token (allowed on loopback only) every request is
//! let through.
//!
//! `volley serve --print-url` prints a one-time link instead
//! (`GET /session/link?key=…`): its first use opens a session as the token
//! would and redirects to the dashboard; it expires after that use or after
//! [`LINK_TTL`], whichever comes first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq as _;

use crate::App;
use crate::api::ApiError;

/// The session cookie's name.
pub const COOKIE: &str = "volley_session";

/// How long a dashboard session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// How long a one-time dashboard link stays valid if it is not used.
pub const LINK_TTL: Duration = Duration::from_secs(5 * 60);

/// The token, the open sessions and the unused one-time links.
#[derive(Debug)]
pub struct Auth {
    token: Option<String>,
    sessions: Mutex<HashMap<String, Instant>>,
    links: Mutex<HashMap<String, Instant>>,
}

impl Auth {
    /// Requires `token` if given.
    pub fn new(token: Option<String>) -> Auth {
        Auth {
            token,
            sessions: Mutex::default(),
            links: Mutex::default(),
        }
    }

    /// Whether a token is required.
    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    fn token_matches(&self, given: &str) -> bool {
        match &self.token {
            Some(token) => bool::from(token.as_bytes().ct_eq(given.as_bytes())),
            None => true,
        }
    }

    fn session_valid(&self, id: &str) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|_, opened| opened.elapsed() < SESSION_TTL);
        sessions
            .keys()
            .any(|known| bool::from(known.as_bytes().ct_eq(id.as_bytes())))
    }

    fn open(&self) -> Option<String> {
        let id = random_id()?;
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), Instant::now());
        Some(id)
    }

    /// A new one-time link key (see the module docs); `None` when the
    /// system has no random numbers to give.
    pub fn one_time_key(&self) -> Option<String> {
        let key = random_id()?;
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), Instant::now());
        Some(key)
    }

    /// Uses up the link `key`: whether it was valid (made here, unused and
    /// younger than [`LINK_TTL`]).
    fn use_key(&self, key: &str) -> bool {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        links.retain(|_, made| made.elapsed() < LINK_TTL);
        let found = links
            .keys()
            .find(|known| bool::from(known.as_bytes().ct_eq(key.as_bytes())))
            .cloned();
        found.is_some_and(|known| links.remove(&known).is_some())
    }
}

/// 32 random bytes as hex.
fn random_id() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// The middleware in front of `/v1` and `/metrics`.
pub async fn require(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if !app.auth.required() {
        return next.run(request).await;
    }
    let headers = request.headers();
    if let Some(token) = bearer(headers) {
        if app.auth.token_matches(token) {
            return next.run(request).await;
        }
        return unauthorized("the bearer token is wrong");
    }
    if let Some(id) = cookie(headers, COOKIE)
        && app.auth.session_valid(id)
    {
        let safe = matches!(*request.method(), Method::GET | Method::HEAD);
        let marked = headers
            .get("x-requested-with")
            .is_some_and(|v| v.as_bytes() == b"volley");
        if safe || marked {
            return next.run(request).await;
        }
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "a request by session cookie that changes something needs the header X-Requested-With: volley",
        )
        .into_response();
    }
    unauthorized("send Authorization: Bearer <token>")
}

fn unauthorized(why: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, why).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"volley\""),
    );
    response
}

/// `POST /session` with `{"token": "…"}`: opens a dashboard session and
/// sets its cookie.
pub async fn open_session(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match crate::api::body_or_error(body) {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    #[derive(serde::Deserialize)]
    struct Login {
        token: String,
    }
    if !crate::api::is_json(&headers) {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send {\"token\": \"…\"} as JSON (Content-Type: application/json)",
        )
        .into_response();
    }
    let login: Login = match serde_json::from_slice(&body) {
        Ok(login) => login,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"token\": \"…\"}}: {e}"),
            )
            .into_response();
        }
    };
    if !app.auth.token_matches(&login.token) {
        return unauthorized("the token is wrong");
    }
    with_session(
        &app,
        (StatusCode::OK, Json(serde_json::json!({"session": "open"}))).into_response(),
    )
}

/// Query of `GET /session/link`.
#[derive(Debug, serde::Deserialize)]
pub struct LinkQuery {
    /// The key `volley serve --print-url` printed.
    key: String,
}

/// `GET /session/link?key=…`: a one-time link's first use opens a
/// dashboard session and redirects to the dashboard (303); a used, expired
/// or unknown key is a 401.
pub async fn open_by_link(
    State(app): State<Arc<App>>,
    crate::api::ApiQuery(query): crate::api::ApiQuery<LinkQuery>,
) -> Response {
    if !app.auth.use_key(&query.key) {
        return unauthorized(
            "this link was used already, has expired (after 5 minutes) or is not this server's; sign in with the token",
        );
    }
    let mut response = StatusCode::SEE_OTHER.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    with_session(&app, response)
}

/// `response` with a new session's cookie set.
fn with_session(app: &App, mut response: Response) -> Response {
    let Some(id) = app.auth.open() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no random numbers for a session id; try again",
        )
        .into_response();
    };
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
