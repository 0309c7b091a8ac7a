//! Incidents, actions and approvals over the API, when the pipeline
//! responds (`respond:` in the pipeline file).
//!
//! ```text
//! GET  /api/v1/incidents[?status=&min_priority=&limit=]   newest priority first
//! GET  /api/v1/incidents/{id}                  the incident, its timeline and actions
//! GET  /api/v1/incidents/{id}/tail             its job tail (server-sent events)
//! GET  /api/v1/actions[?status=&incident=&limit=]
//! POST /api/v1/actions/{id}/approve            responder role; the token's name is recorded
//! POST /api/v1/actions/{id}/reject             responder role; body {"reason": "…"}
//! GET  /api/v1/breakers                        connector circuit breakers
//! POST /api/v1/breakers/{connector}/reset      admin role
//! ```
//! The address of whoever acts through the API is protected from then on
//! (self-lockout protection).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::ApiState;
use super::auth::Need;
use crate::respond::action::Action;
use crate::respond::incident::Incident;

/// 501: the route exists, but this pipeline has no respond section.
fn not_responding() -> Response {
    (
        StatusCode::NOT_IMPLEMENTED,
        "this pipeline does not respond (no respond section)\n",
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentQuery {
    pub status: Option<String>,
    pub min_priority: Option<f64>,
    pub limit: Option<usize>,
}

#[derive(Serialize)]
struct IncidentList {
    incidents: Vec<Incident>,
    count: usize,
}

pub(super) async fn incidents(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(q): Query<IncidentQuery>,
) -> Response {
    if let Err(e) = s.auth.check(&headers, Need::Read) {
        return e.into_response();
    }
    let Some(v) = s.respond.as_ref() else {
        return not_responding();
    };
    let mut list: Vec<Incident> = v
        .incidents()
        .into_iter()
        .filter(|i| q.status.as_deref().is_none_or(|st| i.status.as_str() == st))
        .filter(|i| q.min_priority.is_none_or(|p| i.priority >= p))
        .collect();
    list.truncate(q.limit.unwrap_or(100).clamp(1, 1000));
    axum::Json(IncidentList {
        count: list.len(),
        incidents: list,
    })
    .into_response()
}

#[derive(Serialize)]
struct IncidentAnswer {
    incident: Incident,
    actions: Vec<Action>,
}

pub(super) async fn incident(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = s.auth.check(&headers, Need::Read) {
        return e.into_response();
    }
    let Some(v) = s.respond.as_ref() else {
        return not_responding();
    };
    match v.incident(&id) {
        Some(incident) => {
            let mut actions: Vec<Action> = v
                .actions()
                .into_iter()
                .filter(|a| a.incident_id == id)
                .collect();
            actions.sort_by_key(|a| a.created_ms);
            axum::Json(IncidentAnswer { incident, actions }).into_response()
        }
        None => (StatusCode::NOT_FOUND, format!("no incident {id:?}\n")).into_response(),
    }
}

/// The job tail: the incident's timeline so far, then every new entry.
pub(super) async fn tail(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = s.auth.check(&headers, Need::Read) {
        return e.into_response();
    }
    tail_stream(&s, id, tail_event)
}

/// An incident's job tail as server-sent events, each made by `event`
/// from the entry's JSON (the API names them by phase; the console reads
/// them all under one name).
pub(crate) fn tail_stream(
    s: &ApiState,
    id: String,
    event: fn(&serde_json::Value) -> Event,
) -> Response {
    let Some(v) = s.respond.clone() else {
        return not_responding();
    };
    let rx = v.tail.subscribe();
    let Some(inc) = v.incident(&id) else {
        return (StatusCode::NOT_FOUND, format!("no incident {id:?}\n")).into_response();
    };
    let past: Vec<Event> = inc
        .timeline
        .iter()
        .map(|e| event(&serde_json::json!({"incident_id": id, "at_ms": e.at_ms, "phase": e.phase, "text": e.text, "action_id": e.action_id})))
        .collect();
    let stop = s.stop.clone();
    let live =
        futures_util::stream::unfold((rx, id, stop), move |(mut rx, id, mut stop)| async move {
            loop {
                let got = tokio::select! {
                    r = rx.recv() => r,
                    _ = stop.wait_for(|s| *s) => return None,
                };
                let ev = match got {
                    Ok(t) if t.incident_id == id => {
                        event(&serde_json::to_value(&t).unwrap_or_default())
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        Event::default().event("lagged").data(n.to_string())
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                return Some((ev, (rx, id, stop)));
            }
        });
    let events = futures_util::StreamExt::map(
        futures_util::StreamExt::chain(futures_util::stream::iter(past), live),
        Ok::<_, Infallible>,
    );
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn tail_event(v: &serde_json::Value) -> Event {
    Event::default()
        .event(v["phase"].as_str().unwrap_or("tail"))
        .data(v.to_string())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionQuery {
    pub status: Option<String>,
    pub incident: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Serialize)]
struct ActionList {
    actions: Vec<Action>,
    count: usize,
}

pub(super) async fn actions(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(q): Query<ActionQuery>,
) -> Response {
    if let Err(e) = s.auth.check(&headers, Need::Read) {
        return e.into_response();
    }
    let Some(v) = s.respond.as_ref() else {
        return not_responding();
    };
    let mut list: Vec<Action> = v
        .actions()
        .into_iter()
        .filter(|a| q.status.as_deref().is_none_or(|st| a.status.as_str() == st))
        .filter(|a| q.incident.as_deref().is_none_or(|i| a.incident_id == i))
        .collect();
    list.truncate(q.limit.unwrap_or(100).clamp(1, 1000));
    axum::Json(ActionList {
        count: list.len(),
        actions: list,
    })
    .into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    #[serde(default)]
    pub reason: Option<String>,
}

/// Who acts: the token's name, or the address on an open API.
fn actor(name: Option<String>, peer: SocketAddr) -> String {
    name.unwrap_or_else(|| format!("anonymous@{}", peer.ip()))
}

pub(super) async fn approve(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let caller = match s.auth.check(&headers, Need::Respond) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let Some(v) = s.respond.as_ref() else {
        return not_responding();
    };
    v.guarded.add(peer.ip(), "an API approver");
    answer(v.approve(&id, &actor(caller.name, peer)).await, &id)
}

pub(super) async fn reject(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let caller = match s.auth.check(&headers, Need::Respond) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let Some(v) = s.respond.as_ref() else {
        return not_responding();
    };
    let d: Decision = if body.is_empty() {
        Decision::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(d) => d,
            Err(e) => {
                return (StatusCode::BAD_REQUEST, format!("body: {e}\n")).into_response();
            }
        }
    };
    v.guarded.add(peer.ip(), "an API approver");
    let why = d.reason.unwrap_or_else(|| "no reason given".into());
    answer(v.reject(&id, &actor(caller.name, peer), &why).await, &id)
}

fn answer(r: Result<String, String>, id: &str) -> Response {
    match r {
        Ok(status) => {
            axum::Json(serde_json::json!({"action_id": id, "status": status})).into_response()
        }
        Err(e) if e.starts_with("no action") => {
            (StatusCode::NOT_FOUND, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::CONFLICT, format!("{e}\n")).into_response(),
    }
}

pub(super) async fn breakers(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    if let Err(e) = s.auth.check(&headers, Need::Read) {
        return e.into_response();
    }
    match s.respond.as_ref() {
        Some(v) => axum::Json(v.breakers()).into_response(),
        None => not_responding(),
    }
}

pub(super) async fn reset_breaker(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(connector): Path<String>,
) -> Response {
    let caller = match s.auth.check(&headers, Need::Admin) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let Some(v) = s.respond.as_ref() else {
        return not_responding();
    };
    let who = caller.name.unwrap_or_else(|| "anonymous".into());
    match v.reset_breaker(&connector, &who).await {
        Ok(true) => {
            axum::Json(serde_json::json!({"connector": connector, "reset": true})).into_response()
        }
        Ok(false) => (
            StatusCode::CONFLICT,
            format!("the breaker of {connector} is not open\n"),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}
