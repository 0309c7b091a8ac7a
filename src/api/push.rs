//! Ingestion endpoints: Loki push and Alertmanager webhooks.
//!
//! ```text
//! request ─> token (ingest) ─> rate limit ─> body (size, time) ─> decode
//!         ─> one group of batches ─> Ingress (waits ≤ overload_wait) ─> 204 / 200
//!            └── each step's memory first taken from the ingestion budget (503)
//! ```
//! Answers follow what the senders expect: 204 for Loki, 200 for
//! Alertmanager; 4xx for a body the client must fix (neither retries it);
//! 429 and 503 with `Retry-After` only where trying again later helps. A
//! request is taken whole or refused whole, so a retry never duplicates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::auth::Need;
use super::limits::{Refusal, read_body_within};
use crate::flow::{Origin, RawBatch, Refused};
use crate::ingest::budget::Grant;
use crate::ingest::config::{AlertmanagerConfig, LokiPushConfig};
use crate::ingest::loki::{self, PushError};
use crate::ingest::{SourceStats, Stream};
use crate::parse::{Format, JsonMapping};

/// A push source served on the API, with its counters.
pub struct PushSource<C> {
    pub cfg: C,
    pub stats: Arc<SourceStats>,
}

pub(super) async fn loki_push(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(src) = &s.loki else {
        return (
            StatusCode::NOT_FOUND,
            "no loki_push source in this pipeline\n",
        )
            .into_response();
    };
    let r = loki_inner(&s, src, peer, &headers, body).await;
    answer(&src.stats, r, StatusCode::NO_CONTENT)
}

async fn loki_inner(
    s: &ApiState,
    src: &PushSource<LokiPushConfig>,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), Refusal> {
    let (body, grant) = admit(s, peer, headers, body).await?;
    s.note_peer(peer, "a Loki push client", &src.cfg.id);
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (ctype, cenc) = (text(header::CONTENT_TYPE), text(header::CONTENT_ENCODING));
    let tenant = text(header::HeaderName::from_static("x-scope-orgid"));
    let limits = loki::DecodeLimits {
        max_bytes: s.limits.max_decompressed_bytes,
        max_lines: s.limits.max_lines_per_request,
    };
    // decoding is CPU work: as many at once as there are cores, so a crowd
    // of bodies queues here (bounded by the wait) rather than each holding
    // a thread and its buffers
    let wait = Duration::from_millis(s.limits.overload_wait_ms);
    let slot = match tokio::time::timeout(wait, s.decoders.clone().acquire_owned()).await {
        Ok(Ok(p)) => p,
        _ => {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "every decoder is busy: retry later",
            )
            .retry_after(1));
        }
    };
    let (decoded, grant) = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let mut grant = grant;
        let r = loki::decode_within(ctype.as_deref(), cenc.as_deref(), &body, limits, &mut grant);
        // the body is let go here; the grant now holds what the entries cost
        drop(body);
        (r, grant)
    })
    .await
    .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let streams = decoded.map_err(|e| match e {
        PushError::Invalid(m) => Refusal::new(StatusCode::BAD_REQUEST, m),
        PushError::TooLarge(m) => Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, m),
        PushError::Unsupported(m) => Refusal::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, m),
        PushError::Overloaded(m) => Refusal::new(StatusCode::SERVICE_UNAVAILABLE, m).retry_after(1),
    })?;
    let mut group: Vec<RawBatch> = streams
        .into_iter()
        .filter(|p| !p.lines.is_empty())
        .map(|p| {
            let stream = Stream::from_labels(
                &src.cfg.id,
                tenant.as_deref(),
                p.labels,
                src.cfg.format,
                &src.cfg.json_mapping,
            );
            let mut b = RawBatch::lines(Origin::Stream(Arc::new(stream)), p.lines);
            b.times = p.times;
            b.metadata = p.metadata;
            b
        })
        .collect();
    if let Some(first) = group.first_mut() {
        first.grant = Some(grant);
    }
    hand_on(s, &src.stats, group).await
}

pub(super) async fn alertmanager(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(src) = &s.alertmanager else {
        return (
            StatusCode::NOT_FOUND,
            "no alertmanager source in this pipeline\n",
        )
            .into_response();
    };
    let r = alertmanager_inner(&s, src, peer, &headers, body).await;
    answer(&src.stats, r, StatusCode::OK)
}

async fn alertmanager_inner(
    s: &ApiState,
    src: &PushSource<AlertmanagerConfig>,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), Refusal> {
    let (body, mut grant) = admit(s, peer, headers, body).await?;
    s.note_peer(peer, "an Alertmanager webhook sender", &src.cfg.id);
    let text = std::str::from_utf8(&body)
        .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "the payload is not UTF-8"))?;
    // refuse what Alertmanager must not resend before it reaches the graph
    let alerts = crate::parse::parse_webhook(text, 0)
        .map_err(|m| Refusal::new(StatusCode::BAD_REQUEST, m))?
        .len();
    let cost = crate::ingest::budget::line_cost(body.len())
        + alerts * (crate::ingest::budget::EVENT_OVERHEAD + body.len() / alerts.max(1));
    if !grant.resize(cost) {
        return Err(super::limits::over_budget(cost));
    }
    let stream = Stream::from_labels(
        &src.cfg.id,
        None,
        Vec::new(),
        Format::Alertmanager,
        &JsonMapping::default(),
    );
    let line = text.replace(['\n', '\r'], " ");
    let mut batch = RawBatch::lines(Origin::Stream(Arc::new(stream)), vec![line]);
    batch.grant = Some(grant);
    hand_on(s, &src.stats, vec![batch]).await
}

/// Token, rate limit and body: what every ingestion request passes
/// first. The grant holds the body's bytes of the memory budget.
async fn admit(
    s: &ApiState,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<(bytes::Bytes, Grant), Refusal> {
    let caller = s
        .auth
        .check(headers, Need::Ingest)
        .map_err(|(status, m)| Refusal::new(status, m))?;
    let client = caller.name.unwrap_or_else(|| peer.ip().to_string());
    if let Err(wait) = s.rate.take(&client) {
        return Err(Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "client {client} is over {} requests/s",
                s.limits.requests_per_sec
            ),
        )
        .retry_after(wait));
    }
    let mut grant = s
        .budget
        .grant(0)
        .ok_or_else(|| super::limits::over_budget(0))?;
    let body = read_body_within(
        headers,
        body,
        s.limits.max_body_bytes,
        Duration::from_secs(s.limits.request_timeout_secs.max(1)),
        &mut grant,
    )
    .await?;
    metrics::counter!(crate::metrics::INGEST_BYTES).increment(body.len() as u64);
    Ok((body, grant))
}

/// Hands a request's batches to the graph, whole or not at all.
async fn hand_on(s: &ApiState, stats: &SourceStats, group: Vec<RawBatch>) -> Result<(), Refusal> {
    let lines: u64 = group.iter().map(|b| b.lines.len() as u64).sum();
    if lines == 0 {
        return Ok(());
    }
    let ingress = s.ingress.read().ok().and_then(|i| i.clone());
    let Some(ingress) = ingress else {
        stats.dropped("shutting_down", lines);
        return Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down").retry_after(5));
    };
    let wait = Duration::from_millis(s.limits.overload_wait_ms);
    match ingress.send_all_within(group, wait).await {
        Ok(()) => {
            stats.emitted(lines);
            Ok(())
        }
        Err(Refused::Full) => {
            stats.dropped("overloaded", lines);
            Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the pipeline is behind: retry later",
            )
            .retry_after(1))
        }
        Err(Refused::Closed) => {
            stats.dropped("shutting_down", lines);
            Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down").retry_after(5))
        }
    }
}

fn answer(stats: &SourceStats, r: Result<(), Refusal>, ok: StatusCode) -> Response {
    let status = r.as_ref().map_or_else(|e| e.status, |_| ok);
    metrics::counter!(crate::metrics::INGEST_REQUESTS, "source" => stats.id().to_owned(), "status" => status.as_str().to_owned())
        .increment(1);
    match r {
        Ok(()) => ok.into_response(),
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(source = stats.id(), status = %e.status, "{}", e.message);
            } else {
                tracing::debug!(source = stats.id(), status = %e.status, "{}", e.message);
            }
            e.into_response()
        }
    }
}
