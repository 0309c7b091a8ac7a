//! What sources and stages hand each other: raw batches through the
//! graph's [`Ingress`], and the outcome counts every stage reports.
//!
//! It sits below the pipeline, ingestion and the API so that each can
//! speak of batches and reports without importing the others.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

pub use crate::ingest::Stream;

/// Outcome counts of one stage.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StageReport {
    pub stage: String,
    pub received: u64,
    /// Extra items a stage created (one webhook payload, many alerts).
    pub expanded: u64,
    pub emitted: u64,
    pub dropped: BTreeMap<String, u64>,
}

impl StageReport {
    pub fn new(stage: &str) -> StageReport {
        StageReport {
            stage: stage.to_owned(),
            ..StageReport::default()
        }
    }

    /// `received + expanded == emitted + dropped`.
    pub fn adds_up(&self) -> bool {
        self.received + self.expanded == self.emitted + self.dropped.values().sum::<u64>()
    }

    /// Adds another report's counts (several sources make one `source` stage).
    pub fn merge(&mut self, other: &StageReport) {
        self.received += other.received;
        self.expanded += other.expanded;
        self.emitted += other.emitted;
        for (k, v) in &other.dropped {
            *self.dropped.entry(k.clone()).or_default() += v;
        }
    }
}

/// Where a batch of raw lines came from.
pub enum Origin {
    /// One of the pipeline's files (or stdin), by index.
    Input(usize),
    /// A pushed stream (a Loki stream, a syslog peer, a webhook sender); its
    /// parser state is created on first sight.
    Stream(Arc<Stream>),
}

/// A batch of raw lines from one origin.
pub struct RawBatch {
    pub origin: Origin,
    pub lines: Vec<String>,
    /// Per-line event time where the transport carries one (Loki entry
    /// timestamps, epoch ms); empty means "when read". A line's own
    /// timestamp, when it has one, still wins.
    pub times: Vec<i64>,
    /// Per-line labels (Loki structured metadata): (line index, name, value).
    pub metadata: Vec<(u32, String, String)>,
    pub read_ns: u64,
}

impl RawBatch {
    pub fn lines(origin: Origin, lines: Vec<String>) -> RawBatch {
        RawBatch {
            origin,
            lines,
            times: Vec::new(),
            metadata: Vec::new(),
            read_ns: mono_ns(),
        }
    }
}

/// The graph's entrance: every source sends its batches through a clone.
/// The graph drains and stops once every clone is dropped. A send is a
/// group of batches taken whole or not at all, so a refused HTTP push can
/// be retried without having been half ingested.
#[derive(Clone)]
pub struct Ingress {
    tx: mpsc::Sender<Vec<RawBatch>>,
}

/// Why a batch was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The parse stage's queue stayed full for the whole wait (overload).
    Full,
    /// The graph is shutting down.
    Closed,
}

impl Ingress {
    /// The entrance of a graph whose parse stage reads `tx`'s receiver.
    pub fn new(tx: mpsc::Sender<Vec<RawBatch>>) -> Ingress {
        Ingress { tx }
    }

    /// Waits for room (backpressure for readers that can wait).
    pub async fn send(&self, batch: RawBatch) -> Result<(), Refused> {
        self.tx.send(vec![batch]).await.map_err(|_| Refused::Closed)
    }

    /// Sends a group whole, waiting for room.
    pub async fn send_all(&self, batches: Vec<RawBatch>) -> Result<(), Refused> {
        self.tx.send(batches).await.map_err(|_| Refused::Closed)
    }

    /// Waits at most `wait` for room, for pushers that must answer their
    /// client (an HTTP 503 tells it to retry later).
    pub async fn send_all_within(
        &self,
        batches: Vec<RawBatch>,
        wait: Duration,
    ) -> Result<(), Refused> {
        match self.tx.send_timeout(batches, wait).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(Refused::Full),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(Refused::Closed),
        }
    }

    pub fn blocking_send(&self, batch: RawBatch) -> Result<(), Refused> {
        self.tx
            .blocking_send(vec![batch])
            .map_err(|_| Refused::Closed)
    }

    /// Sends waiting for the parse stage.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// Monotonic nanoseconds since the first call (for latency).
pub fn mono_ns() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}
