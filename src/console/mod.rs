//! The SOC console: incidents, job tails, approvals, findings, the audit
//! chain, daily reports and a read-only query page, served by the API's
//! own server under `/console`.
//!
//! ```text
//! GET  /console                       overview: open incidents, findings per hour,
//!                                     actions by decision, pending approvals, breakers
//! GET  /console/incidents[/{id}]      incidents; one with findings, evidence,
//!                                     timeline, live job tail and actions
//! GET  /console/findings[/{id}]       the findings API's filters, as a table
//! GET  /console/actions               actions and the audit log, with the chain's state
//! GET  /console/reports[/{date}]      daily reports: written ones, or made on demand
//! GET|POST /console/query             read-only SQL over the store, or event search
//! POST /console/actions/{id}/approve|reject
//! GET  /console/events                server-sent "changed" (pages refresh live parts)
//! GET  /console/incidents/{id}/tail   the job tail (server-sent events)
//! ```
//! Why it is built this way:
//! - server-rendered HTML and SVG (the report's charts), one static script
//!   and one stylesheet compiled into the binary: nothing to build, nothing
//!   fetched from elsewhere;
//! - the API's tokens and roles, through a login form and a session cookie
//!   ([`session`]); changes are POSTs with a CSRF token;
//! - a Content-Security-Policy that allows no inline script and nothing
//!   from another origin, so a value that slips past escaping still cannot
//!   run.

mod actions;
pub mod config;
mod findings;
mod incidents;
mod overview;
pub mod page;
mod query;
pub mod reports;
pub mod session;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub use config::ConsoleConfig;
use session::{Session, Sessions};

use crate::api::ApiState;
use crate::api::auth::Need;

/// What the console reads beyond the API's state: where the store, the
/// reports and the search index are.
#[derive(Default)]
pub struct Context {
    /// The pipeline's store (the query page, reports made on demand).
    pub store: Option<crate::report::schedule::Store>,
    /// Where the daily reports are written, and how they are made.
    pub reports: Option<reports::ReportsAt>,
    /// Detector ids (the report lists quiet ones).
    pub detectors: Vec<String>,
}

impl Context {
    /// The event search index, when the store is the embedded one.
    fn search_root(&self) -> Option<PathBuf> {
        match &self.store {
            Some(crate::report::schedule::Store::Parquet(dir)) => {
                Some(dir.join(crate::search::INDEX_DIR))
            }
            _ => None,
        }
    }
}

/// The console's state, held by the API.
pub struct Console {
    pub cfg: ConsoleConfig,
    pub sessions: Sessions,
    pub ctx: Context,
    audit: actions::ChainState,
}

impl Console {
    pub fn new(cfg: ConsoleConfig, ctx: Context) -> Console {
        Console {
            sessions: Sessions::new(&cfg),
            cfg,
            ctx,
            audit: actions::ChainState::default(),
        }
    }
}

/// The console's routes, to merge into the API's router.
pub(crate) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/console", get(overview::page))
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/incidents", get(incidents::list))
        .route("/console/incidents/{id}", get(incidents::detail))
        .route("/console/incidents/{id}/tail", get(incidents::tail))
        .route("/console/findings", get(findings::list))
        .route("/console/findings/{id}", get(findings::detail))
        .route("/console/actions", get(actions::page))
        .route("/console/actions/{id}/approve", post(actions::approve))
        .route("/console/actions/{id}/reject", post(actions::reject))
        .route("/console/reports", get(reports::list))
        .route("/console/reports/{date}", get(reports::view))
        .route("/console/reports/{date}/raw", get(reports::raw))
        .route("/console/query", get(query::form_get).post(query::run))
        .route("/console/events", get(events))
        .route("/console/assets/{name}", get(asset))
        // forms are small; the API's own routes read bodies under their limits
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::map_response(secure_headers))
}

/// The policy every console answer carries (a report shown in a frame
/// brings its own, stricter one).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'";

async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// The console, or 404 when the pipeline turned it off.
fn console(s: &ApiState) -> Result<&Console, Box<Response>> {
    s.console.as_ref().ok_or_else(|| {
        Box::new((StatusCode::NOT_FOUND, "the console is turned off\n").into_response())
    })
}

/// The logged-in person, or a redirect to the login form (pages) / 401
/// (streams and fragments).
pub(crate) fn who(s: &ApiState, headers: &HeaderMap, uri: &Uri) -> Result<Session, Box<Response>> {
    let c = console(s)?;
    match c.sessions.find(headers) {
        Some(w) => Ok(w),
        None if uri.path().ends_with("/tail") || uri.path() == "/console/events" => Err(Box::new(
            (StatusCode::UNAUTHORIZED, "log in first\n").into_response(),
        )),
        None => {
            let next = uri
                .path_and_query()
                .map_or("/console".to_owned(), |p| p.to_string());
            Err(Box::new(
                Redirect::to(&format!("/console/login?next={}", page::query_value(&next)))
                    .into_response(),
            ))
        }
    }
}

/// The logged-in person, as a handler argument: without a session a page
/// redirects to the login form and a stream is answered 401.
pub(crate) struct Who(pub Session);

impl axum::extract::FromRequestParts<Arc<ApiState>> for Who {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &Arc<ApiState>,
    ) -> Result<Who, Response> {
        who(s, &parts.headers, &parts.uri).map(Who).map_err(|r| *r)
    }
}

/// Refuses a request someone forged or may not make: counted, audited when
/// the pipeline responds, and answered with a page that says why.
async fn refuse(
    s: &ApiState,
    who: Option<&Session>,
    status: StatusCode,
    reason: &str,
    subject: &str,
    why: &str,
) -> Response {
    metrics::counter!(crate::metrics::CONSOLE_REFUSED, "reason" => reason.to_owned()).increment(1);
    if let Some(v) = &s.respond {
        let actor = who.map_or("unknown", |w| w.name.as_str());
        let _ = v.refused(&format!("console:{actor}"), subject, why).await;
    }
    tracing::warn!(subject, why, "console: request refused");
    page::problem(status, who, why)
}

#[derive(serde::Deserialize, Default)]
struct LoginQuery {
    next: Option<String>,
}

/// Only paths of the console itself are followed after login.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/console")
                && !n.contains("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/console".to_owned(),
    }
}

async fn login_form(State(s): State<Arc<ApiState>>, Query(q): Query<LoginQuery>) -> Response {
    if let Err(r) = console(&s) {
        return *r;
    }
    login_page(&s, &safe_next(q.next.as_deref()), None, StatusCode::OK)
}

fn login_page(s: &ApiState, next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let field = if s.auth.enabled() {
        r#"<label>API token <input type="password" name="token" id="token" autocomplete="current-password" required autofocus></label>"#
    } else {
        r#"<p class="note">This API asks for no tokens: everyone who reaches it may act.</p>"#
    };
    let error = error.map_or(String::new(), |e| {
        format!(r#"<p class="error" id="login-error">{}</p>"#, page::esc(e))
    });
    let mut r = page::html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log in · ThreatPilot</title>
<link rel="stylesheet" href="/console/assets/console.css"></head>
<body class="login"><main><h1>ThreatPilot</h1><p>{pipeline}</p>{error}
<form method="post" action="/console/login">{field}
<input type="hidden" name="next" value="{next}"><button type="submit" id="login">Log in</button></form></main></body></html>
"#,
        pipeline = page::esc(&s.pipeline),
        next = page::attr(next),
    ));
    *r.status_mut() = status;
    r
}

#[derive(serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
}

async fn login(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    let c = match console(&s) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let next = safe_next(f.next.as_deref());
    if let Err(e) = session::same_origin(&headers) {
        return refuse(
            &s,
            None,
            StatusCode::FORBIDDEN,
            "origin",
            "console login",
            &e.to_string(),
        )
        .await;
    }
    let who = if s.auth.enabled() {
        s.auth.login(&f.token)
    } else {
        Some((
            format!("anonymous@{}", peer.ip()),
            crate::api::config::Role::Admin,
        ))
    };
    let Some((name, role)) = who.filter(|(_, r)| r.allows(Need::Read)) else {
        metrics::counter!(crate::metrics::CONSOLE_REFUSED, "reason" => "login").increment(1);
        // a guess costs the guesser time, not the server
        tokio::time::sleep(Duration::from_millis(400)).await;
        return login_page(
            &s,
            &next,
            Some("That token is unknown, or its role may not read."),
            StatusCode::UNAUTHORIZED,
        );
    };
    match c.sessions.open(&name, role) {
        Ok(cookie) => {
            tracing::info!(who = %name, peer = %peer.ip(), "console: logged in");
            if let Some(v) = &s.respond
                && role.allows(Need::Respond)
            {
                v.guarded.add(peer.ip(), "a console user");
            }
            let mut r = Redirect::to(&next).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => page::problem(StatusCode::INTERNAL_SERVER_ERROR, None, &e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

async fn logout(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    let c = match console(&s) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let who = c.sessions.find(&headers);
    if let Err(e) = session::check_post(who.as_ref(), f.csrf.as_deref(), &headers) {
        return refuse(
            &s,
            who.as_ref(),
            StatusCode::FORBIDDEN,
            "csrf",
            "console logout",
            &e.to_string(),
        )
        .await;
    }
    let mut r = Redirect::to("/console/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&c.sessions.close(&headers)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// One `changed` event shortly after findings, incidents or actions
/// change (at most a few a second), so open pages refresh their live parts.
async fn events(State(s): State<Arc<ApiState>>, _: Who) -> Response {
    let findings = s.hub.subscribe();
    let changed = s.respond.as_ref().map(|v| v.changed.subscribe());
    let stop = s.stop.clone();
    let stream = futures_util::stream::unfold(
        (findings, changed, stop),
        |(mut findings, mut changed, mut stop)| async move {
            let first = async {
                match &mut changed {
                    Some(c) => tokio::select! {
                        r = findings.recv() => !matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)),
                        r = c.recv() => !matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)),
                    },
                    None => !matches!(
                        findings.recv().await,
                        Err(tokio::sync::broadcast::error::RecvError::Closed)
                    ),
                }
            };
            let open = tokio::select! {
                o = first => o,
                _ = stop.wait_for(|s| *s) => false,
            };
            if !open {
                return None;
            }
            // what follows within the moment is one change
            tokio::time::sleep(Duration::from_millis(200)).await;
            findings = findings.resubscribe();
            if let Some(c) = &mut changed {
                *c = c.resubscribe();
            }
            let ev = Event::default().event("changed").data("1");
            Some((Ok::<_, Infallible>(ev), (findings, changed, stop)))
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

const CONSOLE_JS: &str = include_str!("assets/console.js");
const CONSOLE_CSS: &str = include_str!("assets/console.css");

async fn asset(Path(name): Path<String>) -> Response {
    let (kind, body) = match name.as_str() {
        "console.js" => ("text/javascript; charset=utf-8", CONSOLE_JS),
        "console.css" => ("text/css; charset=utf-8", CONSOLE_CSS),
        _ => return (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_followed_after_login() {
        assert_eq!(
            safe_next(Some("/console/incidents/i-1")),
            "/console/incidents/i-1"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/console",
            "/console//evil",
            "/console\\..\\x",
            "/api/v1/actions",
        ] {
            assert_eq!(safe_next(Some(bad)), "/console", "{bad}");
        }
        assert_eq!(safe_next(None), "/console");
    }
}
