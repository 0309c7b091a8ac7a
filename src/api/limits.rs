//! Request limits: per-client rate limits (token buckets), body size,
//! arrival time and ingestion's memory budget. Each refusal is an HTTP answer a client can act on: 413
//! (smaller batches), 408 (send faster), 429 with `Retry-After` (slow down).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::ingest::budget::Grant;

/// A refusal with its status and message (plain text, as Loki answers).
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl Refusal {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn retry_after(mut self, secs: u64) -> Refusal {
        self.retry_after_secs = Some(secs);
        self
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut msg = self.message;
        if !msg.ends_with('\n') {
            msg.push('\n');
        }
        let mut r = (self.status, msg).into_response();
        if let Some(s) = self.retry_after_secs
            && let Ok(v) = s.to_string().parse()
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

/// Token buckets per client key, bounded in number: when full, buckets
/// that have refilled completely (idle clients) are forgotten first.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    max_clients: usize,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: rate.max(0.001),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
            max_clients: 100_000,
        }
    }

    /// Takes one request from `client`'s bucket, or says how many seconds
    /// until one is there.
    pub fn take(&self, client: &str) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut b) = self.buckets.lock() else {
            return Ok(());
        };
        if b.len() >= self.max_clients && !b.contains_key(client) {
            let (rate, burst) = (self.rate, self.burst);
            b.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
            if b.len() >= self.max_clients {
                // every client is active: refuse the newcomer rather than grow
                return Err(1);
            }
        }
        let (tokens, at) = b.entry(client.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// Reads a body of at most `max` bytes within `timeout`.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    timeout: Duration,
) -> Result<bytes::Bytes, Refusal> {
    let budget = crate::ingest::budget::MemoryBudget::new(usize::MAX);
    let mut grant = budget.grant(0).expect("an empty grant");
    read_body_within(headers, body, max, timeout, &mut grant).await
}

/// Reads a body of at most `max` bytes within `timeout`, taking each
/// step of its buffer from `grant` before allocating it: with the budget
/// spent the request is answered 503 with `Retry-After`.
pub async fn read_body_within(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    timeout: Duration,
    grant: &mut Grant,
) -> Result<bytes::Bytes, Refusal> {
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {max} bytes: send smaller batches"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let base = grant.held();
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf = bytes::BytesMut::new();
        if let Some(n) = declared {
            let n = n as usize;
            if !grant.resize(base + n) {
                return Err(over_budget(n));
            }
            buf.reserve(n);
        }
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            let chunk = chunk.map_err(|e| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {e}"),
                )
            })?;
            let need = buf.len() + chunk.len();
            if need > max {
                return Err(too_large());
            }
            if need > buf.capacity() {
                let cap = need.max(2 * buf.capacity()).min(max);
                if !grant.resize(base + cap) {
                    return Err(over_budget(cap));
                }
                buf.reserve(cap - buf.len());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body not received within {}s", timeout.as_secs()),
        )),
        Ok(r) => r,
    }
}

/// The answer when ingestion's memory budget has no room for a request.
pub fn over_budget(bytes: usize) -> Refusal {
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("ingestion memory budget spent: no room for {bytes} more bytes; retry later"),
    )
    .retry_after(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_asks_to_wait() {
        let r = RateLimiter::new(1.0, 3);
        for _ in 0..3 {
            assert!(r.take("a").is_ok());
        }
        assert_eq!(r.take("a"), Err(1));
        // another client has its own bucket
        assert!(r.take("b").is_ok());
    }

    #[test]
    fn the_client_table_is_bounded() {
        let mut r = RateLimiter::new(0.001, 1);
        r.max_clients = 2;
        assert!(r.take("a").is_ok());
        assert!(r.take("b").is_ok());
        // a and b are drained (not idle), so a third is refused, not stored
        assert!(r.take("c").is_err());
        assert_eq!(r.buckets.lock().unwrap().len(), 2);
    }
}
