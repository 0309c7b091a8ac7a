//! Pipeline-file settings of the JetStream source and the findings sink.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NatsSourceConfig {
    pub id: String,
    /// Server URL; `THREATPILOT_NATS_URL` or `--nats-url` override it.
    #[serde(default = "default_url")]
    pub url: String,
    /// Stream created at start; an existing one is bound as it is (its
    /// limits and retention stay the operator's) and gains missing subjects.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Subjects publishers send to (`logs.<dataset>.<host>`, `alerts.<source>`).
    #[serde(default = "default_subjects")]
    pub subjects: Vec<String>,
    /// Durable consumer name; a partitioned worker appends its partitions.
    #[serde(default = "default_consumer")]
    pub consumer: String,
    #[serde(default)]
    pub retention: Retention,
    /// Oldest message the stream keeps; unlimited when absent.
    #[serde(default)]
    pub max_age_secs: Option<u64>,
    /// How long the server remembers a `Nats-Msg-Id` to drop its repeats.
    #[serde(default = "default_duplicate_window")]
    pub duplicate_window_secs: u64,
    /// Messages per pull request.
    #[serde(default = "default_fetch_batch")]
    pub fetch_batch: usize,
    /// Largest message body processed; larger ones are dead-lettered.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Dead letters go to `<dead_letter_prefix>.<original subject>`.
    #[serde(default = "default_dead_letter")]
    pub dead_letter_prefix: String,
    /// Partition count of the server's subject mapping (`deploy/nats/`);
    /// unpartitioned when absent.
    #[serde(default)]
    pub partitions: Option<u32>,
    /// State is checkpointed, and input acknowledged, this often.
    #[serde(default = "default_checkpoint_ms")]
    pub checkpoint_interval_ms: u64,
    /// ... and after this many messages, whichever comes first.
    #[serde(default = "default_checkpoint_messages")]
    pub checkpoint_messages: u64,
    /// Object store bucket holding worker checkpoints.
    #[serde(default = "default_checkpoint_bucket")]
    pub checkpoint_bucket: String,
}

/// JetStream retention policy of the input stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Keep messages until limits (age, size) remove them.
    #[default]
    Limits,
    /// Remove a message once every consumer acknowledged it.
    Interest,
    /// Remove a message once it is acknowledged.
    WorkQueue,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// Findings go to `<subject_prefix>.<domain>.<classification>`.
    #[serde(default = "default_findings_prefix")]
    pub subject_prefix: String,
    /// Stream created for findings (captures `<subject_prefix>.>`).
    #[serde(default = "default_findings_stream")]
    pub stream: String,
}

impl Default for NatsSinkConfig {
    fn default() -> Self {
        NatsSinkConfig {
            subject_prefix: default_findings_prefix(),
            stream: default_findings_stream(),
        }
    }
}

fn default_url() -> String {
    "nats://127.0.0.1:4222".into()
}
fn default_stream() -> String {
    "THREATPILOT_INPUT".into()
}
fn default_subjects() -> Vec<String> {
    vec!["logs.>".into(), "alerts.>".into()]
}
fn default_consumer() -> String {
    "threatpilot".into()
}
fn default_duplicate_window() -> u64 {
    600
}
fn default_fetch_batch() -> usize {
    1000
}
fn default_max_message_bytes() -> usize {
    1 << 20
}
fn default_dead_letter() -> String {
    "threatpilot.deadletter".into()
}
fn default_checkpoint_ms() -> u64 {
    2000
}
fn default_checkpoint_messages() -> u64 {
    100_000
}
fn default_checkpoint_bucket() -> String {
    "threatpilot-checkpoints".into()
}
fn default_findings_prefix() -> String {
    "threatpilot.findings".into()
}
fn default_findings_stream() -> String {
    "THREATPILOT_FINDINGS".into()
}

impl NatsSourceConfig {
    /// Every setting at its default, reading from `url`.
    pub fn with_url(id: &str, url: &str) -> NatsSourceConfig {
        NatsSourceConfig {
            id: id.into(),
            url: url.into(),
            stream: default_stream(),
            subjects: default_subjects(),
            consumer: default_consumer(),
            retention: Retention::default(),
            max_age_secs: None,
            duplicate_window_secs: default_duplicate_window(),
            fetch_batch: default_fetch_batch(),
            max_message_bytes: default_max_message_bytes(),
            dead_letter_prefix: default_dead_letter(),
            partitions: None,
            checkpoint_interval_ms: default_checkpoint_ms(),
            checkpoint_messages: default_checkpoint_messages(),
            checkpoint_bucket: default_checkpoint_bucket(),
        }
    }

    /// Subjects the input stream captures. Partitioned, the server maps
    /// `logs.a.b` to `part.<n>.logs.a.b`; subjects the mapping does not
    /// cover stay as published and belong to partition 0.
    pub fn stream_subjects(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.partitions.is_some() {
            out.extend(self.subjects.iter().map(|s| format!("part.*.{s}")));
        }
        out.extend(self.subjects.iter().cloned());
        out
    }

    /// What a worker owning `owned` partitions consumes.
    pub fn filter_subjects(&self, owned: &[u32]) -> Vec<String> {
        if self.partitions.is_none() {
            return Vec::new();
        }
        let mut out: Vec<String> = owned
            .iter()
            .flat_map(|p| self.subjects.iter().map(move |s| format!("part.{p}.{s}")))
            .collect();
        if owned.contains(&0) {
            out.extend(self.subjects.iter().cloned());
        }
        out
    }

    /// The durable consumer (and checkpoint) name of a worker.
    pub fn worker_name(&self, owned: &[u32]) -> String {
        match self.partitions {
            None => self.consumer.clone(),
            Some(_) => {
                let parts: Vec<String> = owned.iter().map(u32::to_string).collect();
                format!("{}-p{}", self.consumer, parts.join("_"))
            }
        }
    }
}
