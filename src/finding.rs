//! The finding (SPEC 4.2): a detection over a window, with its lifecycle.
//!
//! A finding is emitted when its threshold is crossed (`open`), re-emitted at
//! most once per cooldown while the activity goes on (`updated`, with
//! `update_count` incremented), and emitted a last time when the activity has
//! been quiet for the detector's resolve delay or the input ends
//! (`resolved`). Its id is a hash of detector, offender and window start, so
//! the same input gives the same ids in every run.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    Identity,
    Http,
    Infrastructure,
}

impl Domain {
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Identity => "identity",
            Domain::Http => "http",
            Domain::Infrastructure => "infrastructure",
        }
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Updated,
    Resolved,
    Suppressed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Updated => "updated",
            Status::Resolved => "resolved",
            Status::Suppressed => "suppressed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OffenderType {
    Ip,
    User,
    Service,
    Host,
    Token,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DetectorRef {
    pub id: String,
    pub version: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Offender {
    #[serde(rename = "type")]
    pub kind: OffenderType,
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Metrics {
    pub event_count: u64,
    pub unique_targets: u64,
    pub success_count: u64,
    pub failure_count: u64,
    pub duration_sec: u64,
    /// The aggregate the threshold applies to (count, distinct count, sum or ratio).
    pub value: f64,
    pub threshold: f64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TimeWindow {
    /// Epoch ms, event time.
    pub start: i64,
    pub end: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Finding {
    pub finding_id: String,
    pub execution_id: String,
    pub detector: DetectorRef,
    pub domain: Domain,
    pub classification: String,
    pub title: String,
    pub severity: Severity,
    pub confidence: f64,
    pub status: Status,
    pub context: BTreeMap<String, String>,
    pub offender: Offender,
    pub metrics: Metrics,
    pub time_window: TimeWindow,
    pub first_seen: i64,
    pub last_seen: i64,
    pub update_count: u32,
    /// Bounded sample of raw lines.
    pub evidence: Vec<String>,
    pub recommended_actions: Vec<String>,
    /// MITRE ATT&CK technique ids.
    pub attack: Vec<String>,
    /// A sample of the distinct targets (users tried, source addresses of
    /// a distributed attack, paths probed), first seen first.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Wall-clock epoch ms when this version was emitted.
    pub emitted_at: i64,
    /// Event time (epoch ms) of the event that crossed the threshold.
    pub crossed_at: i64,
    #[serde(skip)]
    pub trigger_read_ns: u64,
}
