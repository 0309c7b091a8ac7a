//! Durable publishing to JetStream: finding versions and dead letters.
//!
//! Publishes are pipelined (all sent, then all acknowledgements awaited);
//! one that fails is retried alone with backoff until the server takes it.
//! Nothing here is dropped: the caller acknowledges its input only after
//! [`Publisher::publish_all`] returns.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;

use super::config::NatsSinkConfig;
use super::{NatsError, subject, with_retry};
use crate::finding::Finding;

/// Headers a dead letter carries.
pub const REASON_HEADER: &str = "ThreatPilot-Reason";
pub const SUBJECT_HEADER: &str = "ThreatPilot-Subject";
pub const SEQUENCE_HEADER: &str = "ThreatPilot-Stream-Sequence";

/// One message to publish durably.
#[derive(Clone)]
pub struct Outgoing {
    pub subject: String,
    pub id: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

/// What the server said about a batch of publishes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub stored: u64,
    /// Already stored under the same `Nats-Msg-Id`, dropped by the server.
    pub duplicate: u64,
}

#[derive(Clone)]
pub struct Publisher {
    js: jetstream::Context,
}

impl Publisher {
    pub fn new(js: jetstream::Context) -> Publisher {
        Publisher { js }
    }

    /// Publishes every message and waits until JetStream stored each. The
    /// acknowledgements are awaited together, within [`ACK_WAIT`]: when a
    /// server restart loses some, the batch costs that wait once, not
    /// once per lost acknowledgement; those messages are resent with
    /// their ids (a copy the server did store is dropped as a duplicate).
    pub async fn publish_all(&self, batch: Vec<Outgoing>) -> Result<Published, NatsError> {
        let mut acks = Vec::with_capacity(batch.len());
        for m in &batch {
            acks.push(self.js.send_publish(m.subject.clone(), build(m)).await);
        }
        let started = std::time::Instant::now();
        let waits = futures_util::future::join_all(acks.into_iter().map(|sent| async move {
            match sent {
                Ok(fut) => tokio::time::timeout(ACK_WAIT, fut)
                    .await
                    .ok()
                    .and_then(Result::ok),
                Err(_) => None,
            }
        }))
        .await;
        let lost = waits.iter().filter(|w| w.is_none()).count();
        if lost > 0 {
            metrics::counter!(crate::metrics::NATS_PUBLISH_ACKS_LOST).increment(lost as u64);
            tracing::warn!(
                lost,
                of = batch.len(),
                waited_ms = started.elapsed().as_millis() as u64,
                "publish acknowledgements lost (the server restarted or is unreachable); resending those messages with their ids"
            );
        }
        let mut out = Published::default();
        for (m, stored) in batch.iter().zip(waits) {
            let ack = match stored {
                Some(ack) => ack,
                None => with_retry("publish", || self.publish_one(m)).await?,
            };
            if ack.duplicate {
                out.duplicate += 1;
            } else {
                out.stored += 1;
            }
        }
        Ok(out)
    }

    async fn publish_one(&self, m: &Outgoing) -> Result<jetstream::publish::PublishAck, NatsError> {
        let fut = self
            .js
            .send_publish(m.subject.clone(), build(m))
            .await
            .map_err(|e| match e.kind() {
                // no retry makes a message smaller than the server's limit
                PublishErrorKind::MaxPayloadExceeded => {
                    NatsError::Setup(format!("publish to {}: {e}", m.subject))
                }
                // a restarting server answers "no stream" until JetStream is back
                _ => NatsError::Server(format!("publish to {}: {e}", m.subject)),
            })?;
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .map_err(|_| NatsError::Server(format!("no acknowledgement for {}", m.subject)))?
            .map_err(|e| NatsError::Server(format!("publish to {}: {e}", m.subject)))
    }
}

/// How long a batch waits for its publish acknowledgements together.
const ACK_WAIT: Duration = Duration::from_secs(3);

fn build(m: &Outgoing) -> PublishMessage {
    PublishMessage::build()
        .payload(m.payload.clone())
        .headers(m.headers.clone())
        .message_id(&m.id)
}

/// A finding version as a message: `<prefix>.<domain>.<classification>`,
/// id `<finding id>.<update count>` (the same version republished after a
/// crash carries the same id and is dropped by the server).
pub fn finding_message(cfg: &NatsSinkConfig, f: &Finding) -> Result<Outgoing, NatsError> {
    let payload = serde_json::to_vec(f).map_err(|e| NatsError::Encode(e.to_string()))?;
    let mut headers = HeaderMap::new();
    headers.insert("Content-Type", "application/json");
    Ok(Outgoing {
        subject: format!(
            "{}.{}.{}",
            cfg.subject_prefix,
            f.domain.as_str(),
            subject::token(&f.classification)
        ),
        id: format!("{}.{}", f.finding_id, f.update_count),
        headers,
        payload: Bytes::from(payload),
    })
}

/// A message that could not be processed, kept whole with its reason.
pub fn dead_letter(
    prefix: &str,
    stream: &str,
    msg: &async_nats::Message,
    seq: u64,
    reason: &str,
) -> Outgoing {
    let mut headers = msg.headers.clone().unwrap_or_default();
    if let Some(id) = headers.get("Nats-Msg-Id").map(|v| v.to_string()) {
        headers.insert("ThreatPilot-Original-Msg-Id", id.as_str());
    }
    headers.insert(REASON_HEADER, reason);
    headers.insert(SUBJECT_HEADER, msg.subject.as_str());
    headers.insert(SEQUENCE_HEADER, seq.to_string().as_str());
    Outgoing {
        subject: format!("{prefix}.{}", msg.subject),
        id: format!("dl.{stream}.{seq}"),
        headers,
        payload: msg.payload.clone(),
    }
}

/// Creates the findings stream, or checks the existing one captures them.
pub async fn ensure_findings_stream(
    js: &jetstream::Context,
    cfg: &NatsSinkConfig,
    duplicate_window: Duration,
) -> Result<(), NatsError> {
    super::source::ensure_stream(
        js,
        jetstream::stream::Config {
            name: cfg.stream.clone(),
            subjects: vec![format!("{}.>", cfg.subject_prefix)],
            duplicate_window,
            ..Default::default()
        },
    )
    .await
}
