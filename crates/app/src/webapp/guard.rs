//! Who may talk to the web app: only the user's own browser tab.
//!
//! Other pages in the same browser are hostile (DESIGN.md). Every request passes, in order:
//!
//! 1. **Host**: the `Host` header must name the listening address (`127.0.0.1:PORT`, or
//!    `localhost:PORT`): a page on a hostile domain that resolves to 127.0.0.1 (DNS
//!    rebinding) is refused.
//! 2. **Origin**: a request that changes anything (any method but GET and HEAD) must carry
//!    an `Origin` of the app itself, and `Sec-Fetch-Site`, when the browser sends it, must be
//!    `same-origin` (CSRF).
//! 3. **Token, then cookie**: the URL the app prints carries a random token, good once: the
//!    first `GET /?token=…` that shows it is answered with a session cookie (`HttpOnly`,
//!    `SameSite=Strict`, named after the port) and a redirect that drops the token from the
//!    address bar. Every other request needs that cookie. Tokens and cookies are compared in
//!    constant time.
//!
//! Every response, refusals included, carries a strict Content-Security-Policy (nothing
//! but the app's own scripts, styles and images; no inline script, no framing) and
//! `nosniff`, `no-referrer`, `no-store`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The Content-Security-Policy of every response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// Sessions kept at once (each browser that showed the token once; in practice one).
const MAX_SESSIONS: usize = 8;

/// The app's access policy: its addresses, its one-time token and its sessions.
pub struct Guard {
    hosts: Vec<String>,
    origins: Vec<String>,
    token: Mutex<Option<Zeroizing<String>>>,
    sessions: Mutex<Vec<Zeroizing<String>>>,
    cookie: String,
}

impl Guard {
    /// The policy of an app listening on loopback `port`, whose printed URL carries `token`.
    pub fn new(port: u16, token: Zeroizing<String>, ipv6: bool) -> Self {
        let ip = if ipv6 { "[::1]" } else { "127.0.0.1" };
        let hosts = vec![format!("{ip}:{port}"), format!("localhost:{port}")];
        let origins = hosts.iter().map(|h| format!("http://{h}")).collect();
        Self {
            hosts,
            origins,
            token: Mutex::new(Some(token)),
            sessions: Mutex::new(Vec::new()),
            cookie: format!("blindsight-app-{port}"),
        }
    }

    /// The name of the session cookie.
    pub fn cookie_name(&self) -> &str {
        &self.cookie
    }

    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| self.hosts.iter().any(|a| a.eq_ignore_ascii_case(h)))
    }

    fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|o| self.origins.iter().any(|a| a.eq_ignore_ascii_case(o)));
        let site = headers
            .get("sec-fetch-site")
            .is_none_or(|s| s.as_bytes() == b"same-origin");
        origin && site
    }

    /// Whether `given` is the one-time token; if so it is used up.
    fn take_token(&self, given: &str) -> bool {
        let Ok(mut token) = self.token.lock() else {
            return false;
        };
        let matches = token
            .as_ref()
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(given.as_bytes())));
        if matches {
            *token = None;
        }
        matches
    }

    fn new_session(&self) -> Option<Zeroizing<String>> {
        let id = blindsight_os::random::token().ok()?;
        let mut sessions = self.sessions.lock().ok()?;
        if sessions.len() >= MAX_SESSIONS {
            sessions.remove(0);
        }
        sessions.push(id.clone());
        Some(id)
    }

    fn has_session(&self, headers: &HeaderMap) -> bool {
        let Ok(sessions) = self.sessions.lock() else {
            return false;
        };
        let prefix = format!("{}=", self.cookie);
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(prefix.as_str()))
            .any(|given| {
                sessions.iter().fold(false, |found, s| {
                    found | bool::from(s.as_bytes().ct_eq(given.as_bytes()))
                })
            })
    }
}

/// The token a request's query string shows, if any.
fn token_in(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

/// A refusal: plain text for the page, JSON for the API.
fn refuse(status: StatusCode, api: bool, message: &str) -> Response {
    if api {
        (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
    } else {
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("blindsight app: {message}\n"),
        )
            .into_response()
    }
}

/// The policy as a middleware (see the module docs for the order of the checks).
pub async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let api = request.uri().path().starts_with("/api/");
    if !guard.host_allowed(headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            api,
            "this request is not addressed to the app's own address (Host); open the URL \
             that `blindsight app` printed",
        );
    }
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    if !safe && !guard.origin_allowed(headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            api,
            "a request that changes something must come from the app's own page (Origin)",
        );
    }
    if safe
        && request.uri().path() == "/"
        && let Some(given) = token_in(request.uri().query())
    {
        if !guard.take_token(given) {
            return refuse(
                StatusCode::FORBIDDEN,
                false,
                "this token is wrong or was used already (it is good once): restart \
                 `blindsight app` for a new one, or go back to the browser tab it opened",
            );
        }
        let Some(session) = guard.new_session() else {
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, false, "no session");
        };
        let cookie = format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            guard.cookie,
            session.as_str()
        );
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SEE_OTHER;
        response
            .headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/"));
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, v);
        }
        return response;
    }
    if !guard.has_session(headers) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            api,
            "not signed in: open the URL (with its token) that `blindsight app` printed",
        );
    }
    next.run(request).await
}

/// Adds the security headers to every response.
pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, "content-security-policy", CONTENT_SECURITY_POLICY);
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-frame-options", "DENY");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(h, "cache-control", "no-store");
    response
}
