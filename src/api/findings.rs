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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::ApiState;
use super::auth::Need;
use crate::finding::{Finding, Severity};

/// Updates kept per finding for `GET /findings/{id}`.
const VERSIONS_KEPT: usize = 50;

pub struct FindingsHub {
    inner: Mutex<Store>,
    live: broadcast::Sender<Arc<Finding>>,
    max: usize,
}

#[derive(Default)]
struct Store {
    by_id: HashMap<String, Entry>,
    /// (touch sequence, id), oldest first; stale pairs are skipped.
    order: VecDeque<(u64, String)>,
    seq: u64,
    forgotten: u64,
}

struct Entry {
    seq: u64,
    versions: VecDeque<Arc<Finding>>,
}

impl FindingsHub {
    pub fn new(max: usize) -> FindingsHub {
        FindingsHub {
            inner: Mutex::new(Store::default()),
            live: broadcast::channel(4096).0,
            max: max.max(1),
        }
    }

    /// Takes one finding version (from the sink stage).
    pub fn publish(&self, f: &Finding) {
        let f = Arc::new(f.clone());
        let _ = self.live.send(f.clone());
        let Ok(mut s) = self.inner.lock() else { return };
        s.seq += 1;
        let seq = s.seq;
        let id = f.finding_id.clone();
        let e = s.by_id.entry(id.clone()).or_insert_with(|| Entry {
            seq,
            versions: VecDeque::new(),
        });
        e.seq = seq;
        if e.versions.len() == VERSIONS_KEPT {
            e.versions.pop_front();
        }
        e.versions.push_back(f);
        s.order.push_back((seq, id));
        while s.by_id.len() > self.max {
            let Some((seq, id)) = s.order.pop_front() else {
                break;
            };
            if s.by_id.get(&id).is_some_and(|e| e.seq == seq) {
                s.by_id.remove(&id);
                s.forgotten += 1;
            }
        }
        // drop stale order entries so the queue stays near the map's size
        if s.order.len() > 2 * self.max + 1024 {
            let Store { by_id, order, .. } = &mut *s;
            order.retain(|(seq, id)| by_id.get(id).is_some_and(|e| e.seq == *seq));
        }
    }

    /// Latest versions that pass `q`, most recently seen first.
    pub fn list(&self, q: &ListQuery) -> Vec<Arc<Finding>> {
        let Ok(s) = self.inner.lock() else {
            return Vec::new();
        };
        let mut out: Vec<Arc<Finding>> = s
            .by_id
            .values()
            .filter_map(|e| e.versions.back())
            .filter(|f| q.admits(f))
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            b.last_seen
                .cmp(&a.last_seen)
                .then(a.finding_id.cmp(&b.finding_id))
        });
        out.truncate(q.limit.unwrap_or(100).clamp(1, 1000));
        out
    }

    /// A finding's updates, oldest first; `None` when unknown.
    pub fn get(&self, id: &str) -> Option<Vec<Arc<Finding>>> {
        let s = self.inner.lock().ok()?;
        s.by_id
            .get(id)
            .map(|e| e.versions.iter().cloned().collect())
    }

    pub fn counts(&self) -> (usize, u64) {
        self.inner
            .lock()
            .map(|s| (s.by_id.len(), s.forgotten))
            .unwrap_or_default()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Finding>> {
        self.live.subscribe()
    }
}

/// Filters of the list and the live stream; all optional.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<String>,
    pub domain: Option<String>,
    pub classification: Option<String>,
    /// Minimum severity (`high` gives high and critical).
    pub severity: Option<Severity>,
    pub detector: Option<String>,
    /// Offender value (an address, a user, a host).
    pub offender: Option<String>,
    /// Last seen at or after this instant (RFC 3339).
    pub since: Option<String>,
    pub limit: Option<usize>,
}

impl ListQuery {
    fn since_ms(&self) -> Result<Option<i64>, String> {
        self.since
            .as_deref()
            .map(|t| {
                crate::time::parse_rfc3339(t.as_bytes())
                    .map(|x| x.0)
                    .ok_or_else(|| format!("since={t:?} is not an RFC 3339 time"))
            })
            .transpose()
    }

    fn admits(&self, f: &Finding) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        let status = serde_json::to_value(f.status).ok();
        eq(
            &self.status,
            status.as_ref().and_then(|v| v.as_str()).unwrap_or(""),
        ) && eq(&self.domain, f.domain.as_str())
            && eq(&self.classification, &f.classification)
            && eq(&self.detector, &f.detector.id)
            && eq(&self.offender, &f.offender.value)
            && self.severity.is_none_or(|s| f.severity >= s)
            && self
                .since_ms()
                .ok()
                .flatten()
                .is_none_or(|t| f.last_seen >= t)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, last_seen: i64, update: u32) -> Finding {
        let mut f: Finding =
            serde_json::from_str(include_str!("../../tests/data/finding.json")).unwrap();
        f.finding_id = id.into();
        f.last_seen = last_seen;
        f.update_count = update;
        f
    }

    #[test]
    fn keeps_latest_versions_newest_first_and_bounded() {
        let hub = FindingsHub::new(2);
        hub.publish(&finding("a", 10, 0));
        hub.publish(&finding("b", 20, 0));
        hub.publish(&finding("a", 30, 1));
        let ids: Vec<String> = hub
            .list(&ListQuery::default())
            .iter()
            .map(|f| f.finding_id.clone())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(hub.get("a").unwrap().len(), 2);
        hub.publish(&finding("c", 40, 0));
        // b was updated longest ago
        assert!(hub.get("b").is_none());
        assert_eq!(hub.counts(), (2, 1));
    }
}
