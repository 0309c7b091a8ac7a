//! NATS JetStream: the long-lived worker's source and sink, and the
//! publishing helper.
//!
//! ```text
//! publishers ─> logs.<dataset>.<host> ─(server mapping: part.<n>.…)─> stream THREATPILOT_INPUT
//!   ─> durable pull consumer (one per worker, filtered to its partitions)
//!   ─> parse ─> dedupe ─> cluster ─> detect ─> threatpilot.findings.<domain>.<class>
//!                                      │         (Nats-Msg-Id = finding id + version)
//!   unprocessable message ─────────────┴──> threatpilot.deadletter.<subject> (reason in headers)
//!   every interval: checkpoint (object store) ─> acknowledge input up to it
//! ```
//! [`source`] runs the worker, [`sink`] publishes findings and dead letters
//! with retries, [`checkpoint`] saves and restores state, [`subject`] reads
//! sources off subjects, [`publish`] feeds files and pipes in.
//!
//! Guarantees: a message is acknowledged only after the checkpoint that
//! contains its effect on the windows is written, and after the findings
//! and dead letters it produced were acknowledged by JetStream. A crash at
//! any point replays from the last checkpoint; the replay re-emits the same
//! finding versions, which the findings stream drops by `Nats-Msg-Id`.

pub mod checkpoint;
pub mod config;
pub mod publish;
pub mod published;
pub mod sink;
pub mod source;
pub mod subject;

use std::time::Duration;

pub use source::{WorkerOptions, WorkerSummary, run_worker};

/// Errors of the NATS components: whose fault, and whether a retry helps.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The server could not be reached or refused a request; retrying helps.
    #[error("nats server: {0}")]
    Server(String),
    /// The stream or consumer setup conflicts with what exists (the operator's to fix).
    #[error("nats setup: {0}")]
    Setup(String),
    /// A checkpoint that cannot be used (the operator's to fix).
    #[error("{0}")]
    Checkpoint(String),
    /// A value that could not be encoded (ours).
    #[error("encoding: {0}")]
    Encode(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl NatsError {
    pub fn retryable(&self) -> bool {
        matches!(self, NatsError::Server(_))
    }
}

/// Connects with unbounded reconnects: a restarted server is rejoined, and
/// what was not acknowledged is redelivered or replayed.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, NatsError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(10)))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => {
                    metrics::counter!(crate::metrics::NATS_CONNECTS).increment(1);
                    tracing::info!("connected to nats")
                }
                async_nats::Event::Disconnected => tracing::warn!("disconnected from nats"),
                other => tracing::debug!(event = %other, "nats client event"),
            }
        })
        .connect(url)
        .await
        .map_err(|e| NatsError::Server(format!("cannot connect to {url}: {e}")))
}

/// Retries `f` with capped exponential backoff while its error is retryable.
pub async fn with_retry<T, F, Fut>(what: &str, mut f: F) -> Result<T, NatsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, NatsError>>,
{
    let mut delay = Duration::from_millis(50);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.retryable() => {
                tracing::warn!(error = %e, what, "retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}
