//! Request limits: per-client rate limits (token buckets), body size and
//! arrival time. Each refusal is an HTTP answer a client can act on: 413
//! (smaller batches), 408 (send faster), 429 with `Retry-After` (slow down).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

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
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, max)).await {
        Err(_) => Err(Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body not received within {}s", timeout.as_secs()),
        )),
        Ok(Err(e)) => {
            // the only limit to_bytes applies is ours
            let text = e.to_string();
            if text.contains("length limit") {
                Err(too_large())
            } else {
                Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {text}"),
                ))
            }
        }
        Ok(Ok(b)) => Ok(b),
    }
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
