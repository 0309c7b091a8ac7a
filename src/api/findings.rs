//! Findings for the API: the latest version of each finding and its recent
//! updates, kept in memory (bounded), and a broadcast of every version for
//! the live stream (server-sent events).
//!
//! ```text
//! GET /api/v1/findings?status=&domain=&classification=&severity=&detector=&offender=&since=&limit=
//! GET /api/v1/findings/{id}            latest version + its updates
//! GET /api/v1/findings/stream          text/event-stream, one event per version
//! ```
//! The store is a view for operators, not the record: the sinks (files,
//! JetStream, ClickHouse) keep every version. Past `max_findings` the
//! finding updated longest ago is forgotten.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::broadcast;

use super::ApiState;
use super::auth::Need;
use crate::finding::Finding;
use crate::hub::{FindingsHub, ListQuery};

#[derive(Serialize)]
struct ListAnswer {
    findings: Vec<Arc<Finding>>,
    count: usize,
}

pub(super) async fn list(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(e) = s.auth.check(&headers, Need::Read) {
        return e.into_response();
    }
    if let Err(e) = q.since_ms() {
        return (StatusCode::BAD_REQUEST, e).into_response();
    }
    let findings = s.hub.list(&q);
    axum::Json(ListAnswer {
        count: findings.len(),
        findings,
    })
    .into_response()
}

#[derive(Serialize)]
struct GetAnswer {
    finding: Arc<Finding>,
    updates: Vec<Arc<Finding>>,
}

pub(super) async fn get(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(e) = s.auth.check(&headers, Need::Read) {
        return e.into_response();
    }
    match s.hub.get(&id) {
        Some(updates) if !updates.is_empty() => axum::Json(GetAnswer {
            finding: updates[updates.len() - 1].clone(),
            updates,
        })
        .into_response(),
        _ => (StatusCode::NOT_FOUND, format!("no finding {id:?}\n")).into_response(),
    }
}

/// Every finding version as it is emitted, filtered like the list. A
/// client too slow to keep up gets a `lagged` event with the count it
/// missed, and the stream goes on.
pub(super) async fn stream(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(e) = s.auth.check(&headers, Need::Read) {
        return e.into_response();
    }
    if let Err(e) = q.since_ms() {
        return (StatusCode::BAD_REQUEST, e).into_response();
    }
    let rx = s.hub.subscribe();
    let stop = s.stop.clone();
    let clients = SseClient::new();
    let events = futures_util::stream::unfold(
        (rx, q, stop, clients),
        |(mut rx, q, mut stop, clients)| async move {
            loop {
                let got = tokio::select! {
                    r = rx.recv() => r,
                    _ = stop.wait_for(|s| *s) => return None,
                };
                let ev = match got {
                    Ok(f) if q.admits(&f) => finding_event(&f),
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        Event::default().event("lagged").data(n.to_string())
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                return Some((Ok::<_, Infallible>(ev), (rx, q, stop, clients)));
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn finding_event(f: &Finding) -> Event {
    let data = serde_json::to_string(f).unwrap_or_else(|_| "{}".into());
    Event::default()
        .event("finding")
        .id(format!("{}.{}", f.finding_id, f.update_count))
        .data(data)
}

/// Counts connected stream clients (a gauge) for as long as it lives.
struct SseClient;

impl SseClient {
    fn new() -> SseClient {
        metrics::gauge!(crate::metrics::API_SSE_CLIENTS).increment(1.0);
        SseClient
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::API_SSE_CLIENTS).decrement(1.0);
    }
}

/// Counts by status for `/api/v1/status`.
pub(super) fn by_status(hub: &FindingsHub) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for f in hub.list(&ListQuery {
        limit: Some(1000),
        ..ListQuery::default()
    }) {
        let k = serde_json::to_value(f.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *out.entry(k).or_default() += 1;
    }
    out
}
