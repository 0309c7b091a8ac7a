//! Detector files (`detectors/<domain>/*.yaml`), as written: the raw spec.
//! [`super::compile`] turns a spec into a runtime [`super::Detector`] once, at
//! load; nothing here runs per event.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::finding::{Domain, OffenderType, Severity};

/// A value with the line it came from, for line-accurate errors.
#[derive(Clone, Debug, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub line: u64,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(d)?;
        Ok(Located {
            line: s.referenced.line(),
            value: s.value,
        })
    }
}

impl<T: Serialize> Serialize for Located<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<T: JsonSchema> JsonSchema for Located<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(g)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectorSpec {
    /// File format version; 1.
    pub version: u32,
    /// Stable id, `<domain>.<name>`.
    pub id: String,
    /// Detector revision, reported as `detector.version` in findings.
    pub revision: u32,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_status")]
    pub status: RuleStatus,
    pub domain: Domain,
    pub classification: String,
    pub severity: Severity,
    pub confidence: f64,
    /// MITRE ATT&CK technique ids.
    #[serde(default)]
    pub attack: Vec<String>,
    #[serde(default)]
    pub false_positives: Vec<String>,
    #[serde(default)]
    pub references: Vec<String>,
    /// Which events the detector looks at.
    #[serde(rename = "match")]
    pub matcher: MatchSpec,
    /// Windowed aggregation (exactly one of `window` and `sequence`).
    #[serde(default)]
    pub window: Option<Located<WindowSpec>>,
    #[serde(default)]
    pub sequence: Option<Located<SequenceSpec>>,
    /// Events that end the activity at once (e.g. Alertmanager's `resolved`):
    /// an open finding of the same group resolves without waiting for quiet.
    #[serde(default)]
    pub resolve_when: Option<MatchSpec>,
    pub output: OutputSpec,
}

fn default_status() -> RuleStatus {
    RuleStatus::Stable
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleStatus {
    Stable,
    Test,
    Experimental,
    Deprecated,
}

/// Conditions on event fields: all of `all`, at least one of `any` (when
/// given), none of `none`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    #[serde(default)]
    pub all: Vec<Located<Condition>>,
    #[serde(default)]
    pub any: Vec<Located<Condition>>,
    #[serde(default)]
    pub none: Vec<Located<Condition>>,
}

/// One test on one field. Exactly one test is given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// ECS field name (`source.ip`, `event.action`, `labels.team`, …).
    pub field: String,
    /// The value equals one of these.
    #[serde(default)]
    pub equals: Option<Vec<String>>,
    /// Like `equals`, read from list files (one value a line, `#`
    /// comments), relative to the detector file's folder: the exact paths
    /// a signature list names where a part of one would say too little
    /// (`/web/login` is a product's login page, not every page under it).
    #[serde(default)]
    pub equals_from: Option<Vec<String>>,
    /// The value starts with one of these.
    #[serde(default)]
    pub prefix: Option<Vec<String>>,
    /// The value contains one of these (Aho-Corasick, case-insensitive).
    #[serde(default)]
    pub keywords: Option<Vec<String>>,
    /// Like `keywords`, read from list files (one pattern a line, `#`
    /// comments), relative to the detector file's folder: signature lists
    /// that cite their sources and that users extend without touching
    /// the detector.
    #[serde(default)]
    pub keywords_from: Option<Vec<String>>,
    /// The value matches this regular expression (Rust syntax).
    #[serde(default)]
    pub regex: Option<String>,
    /// Numeric bounds (inclusive).
    #[serde(default)]
    pub gte: Option<f64>,
    #[serde(default)]
    pub lte: Option<f64>,
    /// The field is present (true) or absent (false).
    #[serde(default)]
    pub exists: Option<bool>,
    /// Normalise the value as a request target before testing:
    /// percent-decoded until stable, `\\` as `/`, null bytes dropped, `//`
    /// and `/./` folded in the path.
    #[serde(default)]
    pub url_decode: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// Fixed, aligned windows of `size_secs`.
    Tumbling,
    /// The last `size_secs`, at a resolution of a tenth of the size.
    Sliding,
    /// A bucket that leaks one event per `leak_secs` and overflows past `threshold`.
    LeakyBucket,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AggregateKind {
    Count,
    DistinctCount,
    Sum,
    Ratio,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub kind: WindowKind,
    /// Window length (tumbling, sliding).
    #[serde(default)]
    pub size_secs: Option<u64>,
    /// Leak interval (leaky bucket).
    #[serde(default)]
    pub leak_secs: Option<f64>,
    /// Fields whose values name the group (one window per group).
    pub group_by: Vec<String>,
    #[serde(default = "default_aggregate")]
    pub aggregate: AggregateKind,
    /// Field for `distinct_count` and `sum`.
    #[serde(default)]
    pub field: Option<String>,
    /// For `ratio`: events (among those matched) counted in the numerator.
    #[serde(default)]
    pub numerator: Option<MatchSpec>,
    /// For `ratio`: fewest events before the ratio is judged.
    #[serde(default)]
    pub min_events: Option<u64>,
    /// An event counts only when it comes at least this long after its
    /// group's previous event, so a burst counts once: attempts spaced
    /// minutes apart (a slow attacker) fill the window, a fast burst adds one.
    #[serde(default)]
    pub min_gap_secs: Option<u64>,
    /// The aggregate at or above this fires the finding.
    pub threshold: f64,
    /// At most one update per this many seconds while active.
    #[serde(default = "default_cooldown")]
    pub cooldown_secs: u64,
    /// Resolve after this long without a matching event.
    #[serde(default = "default_resolve")]
    pub resolve_after_secs: u64,
}

fn default_aggregate() -> AggregateKind {
    AggregateKind::Count
}

fn default_cooldown() -> u64 {
    60
}
fn default_resolve() -> u64 {
    600
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SequenceSpec {
    pub group_by: Vec<String>,
    /// All steps must happen within this many seconds of the first.
    pub within_secs: u64,
    pub steps: Vec<StepSpec>,
    #[serde(default = "default_cooldown")]
    pub cooldown_secs: u64,
    #[serde(default = "default_resolve")]
    pub resolve_after_secs: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: MatchSpec,
    /// Events needed to complete the step.
    #[serde(default = "one")]
    pub min_count: u64,
}

fn one() -> u64 {
    1
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub offender: OffenderSpec,
    /// Finding context key -> event field (e.g. `host: host.name`).
    #[serde(default)]
    pub context: BTreeMap<String, String>,
    /// Field whose distinct values are `metrics.unique_targets`.
    #[serde(default)]
    pub targets_field: Option<String>,
    /// `{offender}` is replaced by the offender value.
    #[serde(default)]
    pub recommended_actions: Vec<String>,
    #[serde(default = "default_evidence")]
    pub evidence_max: usize,
}

fn default_evidence() -> usize {
    10
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OffenderSpec {
    #[serde(rename = "type")]
    pub kind: OffenderType,
    pub field: String,
    /// Stands in for a missing offender or group-by value (e.g. `unknown-host`
    /// for bare kernel lines); without it such events are skipped.
    #[serde(default)]
    pub default: Option<String>,
}
