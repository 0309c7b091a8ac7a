//! Pipeline-file settings of the ClickHouse sink.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which events are stored (findings and templates always are).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventsMode {
    /// Every event.
    All,
    /// A deterministic sample by event id (`sample_rate`).
    Sampled,
    /// Only events a finding cites as evidence.
    #[default]
    Evidence,
    /// None.
    None,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClickhouseSinkConfig {
    /// HTTP interface (`http://127.0.0.1:8123`).
    pub url: String,
    #[serde(default = "default_database")]
    pub database: String,
    #[serde(default)]
    pub user: Option<String>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub events: EventsMode,
    /// Fraction of events kept with `events: sampled`.
    #[serde(default = "default_sample")]
    pub sample_rate: f64,
    /// A batch is sent at this many rows...
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// ...or this long after its first row.
    #[serde(default = "default_flush_ms")]
    pub flush_ms: u64,
    /// Where batches wait while ClickHouse is unreachable.
    #[serde(default = "default_spool")]
    pub spool_dir: String,
    /// Most bytes the spool may hold; past it the pipeline waits
    /// (backpressure) instead of filling the disk.
    #[serde(default = "default_spool_bytes")]
    pub max_spool_bytes: u64,
    /// Days kept per table (`events`, `findings`, `templates`, …); absent
    /// tables are kept forever.
    #[serde(default)]
    pub retention_days: std::collections::BTreeMap<String, u32>,
}

fn default_database() -> String {
    "threatpilot".into()
}
fn default_sample() -> f64 {
    0.01
}
fn default_batch_rows() -> usize {
    50_000
}
fn default_flush_ms() -> u64 {
    1000
}
fn default_spool() -> String {
    "out/spool/clickhouse".into()
}
fn default_spool_bytes() -> u64 {
    4 << 30
}
