//! A generic JSON webhook: the incident and its actions as JSON, signed so
//! the receiver can check who sent it and when. Headers:
//! `X-ThreatPilot-Timestamp: <unix seconds>` and
//! `X-ThreatPilot-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`,
//! plus `Idempotency-Key: <outbox key>-<incident version>` so a resend after
//! a crash is recognisably the same delivery.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::render::cut;
use super::{Outcome, retry_after};
use crate::respond::connectors::Secret;

/// `sha256=HEX` over `timestamp.body`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(71);
    hex.push_str("sha256=");
    for b in bytes {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

pub async fn send(
    client: &reqwest::Client,
    url: &str,
    secret: Option<&Secret>,
    key: &str,
    body: &Value,
    now_secs: i64,
) -> Outcome {
    let bytes = match serde_json::to_vec(body) {
        Ok(b) => b,
        Err(e) => return Outcome::Dead(format!("webhook body: {e}")),
    };
    let version = body["incident"]["version"].as_u64().unwrap_or(0);
    let mut req = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", format!("{key}-{version}"))
        .header("X-ThreatPilot-Timestamp", now_secs.to_string());
    if let Some(s) = secret {
        req = req.header(
            "X-ThreatPilot-Signature",
            signature(s.expose().as_bytes(), now_secs, &bytes),
        );
    }
    let r = match req.body(bytes).send().await {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Retry {
                after: None,
                why: format!("webhook: {}", e.without_url()),
            };
        }
    };
    let status = r.status().as_u16();
    let after = retry_after(r.headers());
    match status {
        200..=299 => Outcome::Sent(Vec::new()),
        408 | 425 | 429 | 500..=599 => Outcome::Retry {
            after,
            why: format!("webhook: HTTP {status}"),
        },
        s => {
            let text = r.text().await.unwrap_or_default();
            Outcome::Dead(format!("webhook: HTTP {s} {}", cut(text.trim(), 100)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let a = signature(b"k", 1700000000, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 71, "{a}");
        assert_ne!(a, signature(b"k", 1700000001, b"{}"));
        assert_ne!(a, signature(b"k", 1700000000, b"{ }"));
        assert_ne!(a, signature(b"j", 1700000000, b"{}"));
    }
}
