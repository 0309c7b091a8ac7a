//! Worker checkpoints: the stream position and everything the stages hold,
//! in one JetStream object per worker.
//!
//! A checkpoint is written, then the input up to `last_seq` is acknowledged.
//! On start a worker reads its checkpoint and consumes from `last_seq + 1`,
//! so every message is in exactly one of: the checkpointed state, or the
//! replay after it. Replaying re-emits the same finding versions (same ids
//! and update counts), which the findings stream drops as duplicates.
//! Counters travel with the state, so the accounting survives crashes too.
//!
//! The encoding is postcard (compact, fast, schema from the Rust types);
//! `FORMAT` changes whenever the layout does, and a checkpoint of another
//! format is refused at start with a clear error rather than misread.

use std::collections::BTreeMap;

use async_nats::jetstream::object_store::{GetErrorKind, ObjectStore};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::NatsError;
use crate::parse::YearInference;
use crate::pipeline::stages::{StagesSnapshot, StagesState};

/// Layout version of the encoding below.
pub const FORMAT: u32 = 3;

/// Per-worker outcome counts since the stream began (exactly once across
/// restarts: they are restored with the state they describe).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Messages whose events went through the stages.
    pub processed: u64,
    /// Messages that could not be processed, published to the dead-letter subject.
    pub dead_lettered: u64,
    /// Events parsed out of processed messages.
    pub events: u64,
    /// Finding versions published (first publications).
    pub findings_published: u64,
    /// Finding versions the server already had (a replay after a restart).
    pub findings_duplicate: u64,
}

#[derive(Serialize)]
pub struct CheckpointOut<'a> {
    pub format: u32,
    pub last_seq: u64,
    pub counters: &'a Counters,
    pub sources: Vec<(&'a str, &'a YearInference)>,
    pub stages: StagesSnapshot<'a>,
}

#[derive(Deserialize)]
pub struct CheckpointIn {
    pub format: u32,
    pub last_seq: u64,
    pub counters: Counters,
    pub sources: Vec<(String, YearInference)>,
    pub stages: StagesState,
}

impl CheckpointIn {
    pub fn sources(&self) -> BTreeMap<&str, &YearInference> {
        self.sources.iter().map(|(k, v)| (k.as_str(), v)).collect()
    }
}

pub async fn save(
    store: &ObjectStore,
    name: &str,
    cp: &CheckpointOut<'_>,
) -> Result<usize, NatsError> {
    let bytes = postcard::to_stdvec(cp).map_err(|e| NatsError::Encode(e.to_string()))?;
    store
        .put(name, &mut bytes.as_slice())
        .await
        .map_err(|e| NatsError::Server(format!("checkpoint write: {e}")))?;
    Ok(bytes.len())
}

/// The worker's last checkpoint; None when it has none yet.
pub async fn load(store: &ObjectStore, name: &str) -> Result<Option<CheckpointIn>, NatsError> {
    let mut obj = match store.get(name).await {
        Ok(o) => o,
        Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(NatsError::Server(format!("checkpoint read: {e}"))),
    };
    let mut bytes = Vec::new();
    obj.read_to_end(&mut bytes)
        .await
        .map_err(|e| NatsError::Server(format!("checkpoint read: {e}")))?;
    let cp: CheckpointIn = postcard::from_bytes(&bytes).map_err(|e| {
        NatsError::Checkpoint(format!(
            "checkpoint {name} cannot be read ({e}); delete it to start afresh"
        ))
    })?;
    if cp.format != FORMAT {
        return Err(NatsError::Checkpoint(format!(
            "checkpoint {name} has format {} (this build reads {FORMAT}); delete it to start afresh",
            cp.format
        )));
    }
    Ok(Some(cp))
}
