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

impl OffenderType {
    pub fn as_str(self) -> &'static str {
        match self {
            OffenderType::Ip => "ip",
            OffenderType::User => "user",
            OffenderType::Service => "service",
            OffenderType::Host => "host",
            OffenderType::Token => "token",
        }
    }
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

impl Finding {
    /// Appends this finding as one line of JSON (no newline): the same
    /// bytes as `serde_json::to_vec`, field order included, with strings
    /// escaped sixteen bytes at a time ([`crate::escape::json_string`]).
    /// Sinks write every version through this; a finding of attack traffic
    /// is mostly its evidence lines.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use crate::escape::json_string as string;
        /// A value with no text in it (numbers, or metrics made of them):
        /// nothing to escape, so `serde_json` writes it as fast. It cannot
        /// fail: numbers serialize infallibly (a non-finite float as null)
        /// and a Vec takes every write.
        fn plain(out: &mut Vec<u8>, v: impl Serialize) {
            let _ = serde_json::to_writer(&mut *out, &v);
        }
        fn strings(out: &mut Vec<u8>, v: &[String]) {
            out.push(b'[');
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, s);
            }
            out.push(b']');
        }
        out.extend_from_slice(b"{\"finding_id\":");
        string(out, &self.finding_id);
        out.extend_from_slice(b",\"execution_id\":");
        string(out, &self.execution_id);
        out.extend_from_slice(b",\"detector\":{\"id\":");
        string(out, &self.detector.id);
        out.extend_from_slice(b",\"version\":");
        plain(out, self.detector.version);
        out.extend_from_slice(b"},\"domain\":");
        string(out, self.domain.as_str());
        out.extend_from_slice(b",\"classification\":");
        string(out, &self.classification);
        out.extend_from_slice(b",\"title\":");
        string(out, &self.title);
        out.extend_from_slice(b",\"severity\":");
        string(out, self.severity.as_str());
        out.extend_from_slice(b",\"confidence\":");
        plain(out, self.confidence);
        out.extend_from_slice(b",\"status\":");
        string(out, self.status.as_str());
        out.extend_from_slice(b",\"context\":{");
        for (i, (k, v)) in self.context.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, k);
            out.push(b':');
            string(out, v);
        }
        out.extend_from_slice(b"},\"offender\":{\"type\":");
        string(out, self.offender.kind.as_str());
        out.extend_from_slice(b",\"value\":");
        string(out, &self.offender.value);
        out.extend_from_slice(b"},\"metrics\":");
        plain(out, &self.metrics);
        out.extend_from_slice(b",\"time_window\":");
        plain(out, self.time_window);
        out.extend_from_slice(b",\"first_seen\":");
        plain(out, self.first_seen);
        out.extend_from_slice(b",\"last_seen\":");
        plain(out, self.last_seen);
        out.extend_from_slice(b",\"update_count\":");
        plain(out, self.update_count);
        out.extend_from_slice(b",\"evidence\":");
        strings(out, &self.evidence);
        out.extend_from_slice(b",\"recommended_actions\":");
        strings(out, &self.recommended_actions);
        out.extend_from_slice(b",\"attack\":");
        strings(out, &self.attack);
        out.extend_from_slice(b",\"targets\":");
        strings(out, &self.targets);
        out.extend_from_slice(b",\"emitted_at\":");
        plain(out, self.emitted_at);
        out.extend_from_slice(b",\"crossed_at\":");
        plain(out, self.crossed_at);
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(status: Status, severity: Severity, domain: Domain, kind: OffenderType) -> Finding {
        Finding {
            finding_id: "f-00ff".into(),
            execution_id: "run-1-v2".into(),
            detector: DetectorRef {
                id: "http.sqli_probing".into(),
                version: 3,
            },
            domain,
            classification: "injection".into(),
            title: "SQL injection \"probing\"".into(),
            severity,
            confidence: 0.8,
            status,
            context: [("host", "web-1"), ("sigma.id", "a\\b"), ("z", "\u{1}")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            offender: Offender {
                kind,
                value: "203.0.113.5".into(),
            },
            metrics: Metrics {
                event_count: 12,
                unique_targets: 4,
                success_count: 0,
                failure_count: u64::MAX,
                duration_sec: 61,
                value: 0.1 + 0.2,
                threshold: f64::NAN,
            },
            time_window: TimeWindow {
                start: -5,
                end: i64::MAX,
            },
            first_seen: 1_780_000_000_000,
            last_seen: 1_780_000_061_000,
            update_count: 2,
            evidence: vec![
                "203.0.113.5 - - [03/Mar/2026:10:00:00 +0000] \"GET /?id=1'%20OR%201=1-- HTTP/1.1\" 200 5 \"-\" \"sqlmap/1.7\"".into(),
                "tab\there, newline\n, bell \u{7}, DEL \u{7f}, é, \u{202e}".into(),
            ],
            recommended_actions: vec!["block_ip:203.0.113.5".into()],
            attack: vec![],
            targets: vec!["/?id=1".into(), String::new()],
            emitted_at: 1_780_000_100_000,
            crossed_at: 1_780_000_030_000,
            trigger_read_ns: 99,
        }
    }

    #[test]
    fn write_json_writes_what_serde_json_writes() {
        for (status, severity, domain, kind) in [
            (Status::Open, Severity::Low, Domain::Http, OffenderType::Ip),
            (
                Status::Updated,
                Severity::Medium,
                Domain::Identity,
                OffenderType::User,
            ),
            (
                Status::Resolved,
                Severity::High,
                Domain::Infrastructure,
                OffenderType::Service,
            ),
            (
                Status::Suppressed,
                Severity::Critical,
                Domain::Http,
                OffenderType::Host,
            ),
            (
                Status::Open,
                Severity::Low,
                Domain::Http,
                OffenderType::Token,
            ),
        ] {
            let f = finding(status, severity, domain, kind);
            let mut out = Vec::new();
            f.write_json(&mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&f).unwrap()
            );
        }
        let mut empty = finding(Status::Open, Severity::Low, Domain::Http, OffenderType::Ip);
        empty.context.clear();
        empty.evidence.clear();
        empty.confidence = 1.0;
        let mut out = Vec::new();
        empty.write_json(&mut out);
        assert_eq!(out, serde_json::to_vec(&empty).unwrap());
    }
}
