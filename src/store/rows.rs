//! One struct per table, field for column, in the DDL's order (RowBinary
//! is positional). `DateTime` is seconds (`u32`), `Date` days (`u16`).

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::finding::Finding;

/// Longest text stored in one column; longer values are cut on a character
/// boundary and the row marked (`truncated`), not refused.
pub const MAX_FIELD_BYTES: usize = 32 * 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ::clickhouse::Row)]
pub struct EventRow {
    pub event_id: String,
    pub timestamp: u32,
    pub timestamp_ms: i64,
    pub ingested_ms: i64,
    pub day: u16,
    pub kind: String,
    pub category: String,
    pub action: String,
    pub outcome: String,
    pub dataset: String,
    pub original: String,
    pub message: String,
    pub source_ip: String,
    pub source_port: u16,
    pub user_name: String,
    pub host_name: String,
    pub service_name: String,
    pub process_name: String,
    pub process_pid: u32,
    pub http_method: String,
    pub url_original: String,
    pub http_status: u16,
    pub http_body_bytes: u64,
    pub user_agent: String,
    pub log_level: String,
    pub labels: String,
    pub template_id: String,
    pub template_text: String,
    pub event_count: u32,
    pub parse_error: String,
    pub truncated: u8,
    /// The event's other ECS fields as a JSON object (migration 007).
    pub extra: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ::clickhouse::Row)]
pub struct FindingRow {
    pub finding_id: String,
    pub update_count: u32,
    pub execution_id: String,
    pub detector_id: String,
    pub detector_version: u32,
    pub domain: String,
    pub classification: String,
    pub title: String,
    pub severity: String,
    pub confidence: f64,
    pub status: String,
    pub offender_type: String,
    pub offender_value: String,
    pub event_count: u64,
    pub unique_targets: u64,
    pub success_count: u64,
    pub failure_count: u64,
    pub duration_sec: u64,
    pub metric_value: f64,
    pub threshold: f64,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub first_seen: u32,
    pub last_seen: u32,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub crossed_at_ms: i64,
    pub emitted_at_ms: i64,
    pub context: String,
    pub evidence: Vec<String>,
    pub recommended_actions: Vec<String>,
    pub attack: Vec<String>,
    pub day: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ::clickhouse::Row)]
pub struct TemplateRow {
    pub template_id: String,
    pub template_text: String,
    pub dataset: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub version: u64,
    pub day: u16,
}

fn secs(ms: i64) -> u32 {
    (ms.div_euclid(1000)).clamp(0, u32::MAX as i64) as u32
}

fn days(ms: i64) -> u16 {
    (ms.div_euclid(86_400_000)).clamp(0, u16::MAX as i64) as u16
}

/// Cuts `s` to at most `MAX_FIELD_BYTES`; sets `cut` when it did.
fn bounded(s: &str, cut: &mut bool) -> String {
    if s.len() <= MAX_FIELD_BYTES {
        return s.to_owned();
    }
    *cut = true;
    let mut end = MAX_FIELD_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The stable id of an event: its source's time domain, time and line,
/// and, for a repeat of an identical event kept earlier, its occurrence
/// number (so stores that merge rows by id keep both counts).
pub fn event_id(ev: &Event) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&ev.time_domain.to_le_bytes());
    h.update(&ev.timestamp.to_le_bytes());
    h.update(ev.original.as_bytes());
    if ev.occurrence > 0 {
        h.update(&ev.occurrence.to_le_bytes());
    }
    format!("e-{:016x}", h.digest())
}

impl EventRow {
    pub fn from_event(ev: &Event) -> EventRow {
        let mut cut = false;
        let opt = |v: Option<&str>, cut: &mut bool| v.map_or(String::new(), |s| bounded(s, cut));
        let labels = object_json(
            ev.labels()
                .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v.to_owned())))
                .collect(),
            &mut cut,
        );
        let extra = extra_json(ev, &mut cut);
        EventRow {
            event_id: event_id(ev),
            timestamp: secs(ev.timestamp),
            timestamp_ms: ev.timestamp,
            ingested_ms: ev.ingested,
            day: days(ev.timestamp),
            kind: match ev.kind {
                crate::event::Kind::Event => "event".into(),
                crate::event::Kind::Alert => "alert".into(),
            },
            category: ev.category.unwrap_or("").into(),
            action: ev.action.as_deref().unwrap_or("").into(),
            outcome: ev.outcome.as_str().into(),
            dataset: ev.dataset.to_string(),
            original: bounded(&ev.original, &mut cut),
            message: bounded(ev.message(), &mut cut),
            source_ip: ev.source_ip().unwrap_or_default().to_owned(),
            source_port: ev.source_port.unwrap_or(0),
            user_name: opt(ev.user_name(), &mut cut),
            host_name: opt(ev.host_name(), &mut cut),
            service_name: opt(ev.service_name(), &mut cut),
            process_name: opt(ev.process_name(), &mut cut),
            process_pid: ev.process_pid.unwrap_or(0),
            http_method: ev.http_method.as_deref().unwrap_or("").into(),
            url_original: opt(ev.url_original(), &mut cut),
            http_status: ev.http_status.unwrap_or(0),
            http_body_bytes: ev.http_body_bytes.unwrap_or(0),
            user_agent: opt(ev.user_agent(), &mut cut),
            log_level: ev.log_level.as_deref().unwrap_or("").into(),
            labels,
            template_id: ev
                .template
                .as_ref()
                .map_or(String::new(), |t| crate::event::template_id_string(t.id)),
            template_text: ev
                .template
                .as_ref()
                .map_or(String::new(), |t| bounded(&t.text, &mut cut)),
            event_count: ev.count,
            parse_error: ev.parse_error.as_deref().unwrap_or("").into(),
            truncated: (cut || ev.label("truncated") == Some("true")) as u8,
            extra,
        }
    }
}

/// The ECS fields without a column of their own, as one JSON object
/// (empty when there are none).
fn extra_json(ev: &Event, cut: &mut bool) -> String {
    let mut m = serde_json::Map::new();
    for (k, v) in ev.extras() {
        m.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
    }
    if let Some(d) = ev.duration_ns {
        m.insert("event.duration".into(), d.into());
    }
    if let Some(p) = &ev.file_path {
        m.insert(
            "log.file.path".into(),
            serde_json::Value::String(p.to_string()),
        );
    }
    object_json(m, cut)
}

/// A JSON object column: empty when there is nothing in it.
fn object_json(m: serde_json::Map<String, serde_json::Value>, cut: &mut bool) -> String {
    if m.is_empty() {
        return String::new();
    }
    bounded(&serde_json::Value::Object(m).to_string(), cut)
}

fn enum_str<T: Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl FindingRow {
    pub fn from_finding(f: &Finding) -> FindingRow {
        let mut cut = false;
        FindingRow {
            finding_id: f.finding_id.clone(),
            update_count: f.update_count,
            execution_id: f.execution_id.clone(),
            detector_id: f.detector.id.clone(),
            detector_version: f.detector.version,
            domain: f.domain.as_str().into(),
            classification: f.classification.clone(),
            title: f.title.clone(),
            severity: enum_str(f.severity),
            confidence: f.confidence,
            status: enum_str(f.status),
            offender_type: enum_str(f.offender.kind),
            offender_value: f.offender.value.clone(),
            event_count: f.metrics.event_count,
            unique_targets: f.metrics.unique_targets,
            success_count: f.metrics.success_count,
            failure_count: f.metrics.failure_count,
            duration_sec: f.metrics.duration_sec,
            metric_value: f.metrics.value,
            threshold: f.metrics.threshold,
            window_start_ms: f.time_window.start,
            window_end_ms: f.time_window.end,
            first_seen: secs(f.first_seen),
            last_seen: secs(f.last_seen),
            first_seen_ms: f.first_seen,
            last_seen_ms: f.last_seen,
            crossed_at_ms: f.crossed_at,
            emitted_at_ms: f.emitted_at,
            context: serde_json::to_string(&f.context).unwrap_or_default(),
            evidence: f.evidence.iter().map(|e| bounded(e, &mut cut)).collect(),
            recommended_actions: f.recommended_actions.clone(),
            attack: f.attack.clone(),
            day: days(f.first_seen),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_fields_are_cut_on_a_char_boundary_and_marked() {
        let mut ev = Event::raw(
            format!("é{}", "x".repeat(MAX_FIELD_BYTES)).into(),
            "app".into(),
        );
        ev.timestamp = 1_700_000_000_123;
        let row = EventRow::from_event(&ev);
        assert_eq!(row.truncated, 1);
        assert!(row.original.len() <= MAX_FIELD_BYTES);
        assert!(row.original.starts_with('é'));
        assert_eq!(row.timestamp, 1_700_000_000);
        assert_eq!(row.day, 19675);
        let small = EventRow::from_event(&Event::raw("short".into(), "app".into()));
        assert_eq!(small.truncated, 0);
    }

    #[test]
    fn event_ids_are_stable_and_tell_sources_apart() {
        let mut a = Event::raw("same line".into(), "app".into());
        a.timestamp = 5;
        let mut b = a.clone();
        assert_eq!(event_id(&a), event_id(&b));
        b.time_domain = 1;
        assert_ne!(event_id(&a), event_id(&b));
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ::clickhouse::Row)]
pub struct IncidentRow {
    pub incident_id: String,
    pub version: u64,
    pub status: String,
    pub priority: f64,
    pub title: String,
    pub offender_type: String,
    pub offender_value: String,
    pub service_name: String,
    pub finding_ids: Vec<String>,
    pub jira_key: String,
    pub opened_ms: i64,
    pub updated_ms: i64,
    pub day: u16,
    pub severity: String,
    pub domain: String,
    pub classifications: Vec<String>,
    pub offenders: Vec<String>,
    pub host_name: String,
    pub repeat_offender: u8,
    pub mitigated_ms: i64,
    pub resolved_ms: i64,
    pub timeline: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ::clickhouse::Row)]
pub struct ActionRow {
    pub action_id: String,
    pub version: u64,
    pub incident_id: String,
    pub finding_id: String,
    pub playbook_id: String,
    pub responder: String,
    pub kind: String,
    pub target: String,
    pub parameters: String,
    pub risk: String,
    pub mode: String,
    pub status: String,
    pub approved_by: String,
    pub approved_ms: i64,
    pub output: String,
    pub verification: String,
    pub expires_ms: i64,
    pub rollback_action_id: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub day: u16,
    pub reason: String,
    pub connector: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ::clickhouse::Row)]
pub struct AuditRow {
    pub seq: u64,
    pub at_ms: i64,
    pub actor: String,
    pub decision: String,
    pub subject: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
    pub day: u16,
}

impl IncidentRow {
    pub fn from_incident(i: &crate::respond::incident::Incident) -> IncidentRow {
        let mut cut = false;
        IncidentRow {
            incident_id: i.incident_id.clone(),
            // wall-clock updates order versions across restarts
            version: (i.updated_ms.max(0) as u64) << 16 | (i.version & 0xffff),
            status: i.status.as_str().into(),
            priority: i.priority,
            title: bounded(&i.title, &mut cut),
            offender_type: crate::respond::playbook::offender_type(i.offender_type).into(),
            offender_value: i.offender_value.clone(),
            service_name: i.service.clone().unwrap_or_default(),
            finding_ids: i.finding_ids.clone(),
            jira_key: i.jira_key.clone().unwrap_or_default(),
            opened_ms: i.opened_ms,
            updated_ms: i.updated_ms,
            day: days(i.opened_ms),
            severity: crate::respond::playbook::severity_str(i.severity).into(),
            domain: i.domain.as_str().into(),
            classifications: i.classifications.iter().cloned().collect(),
            offenders: i.offenders.iter().cloned().collect(),
            host_name: i.host.clone().unwrap_or_default(),
            repeat_offender: i.repeat_offender as u8,
            mitigated_ms: i.mitigated_ms.unwrap_or(0),
            resolved_ms: i.resolved_ms.unwrap_or(0),
            timeline: bounded(
                &serde_json::to_string(&i.timeline).unwrap_or_default(),
                &mut cut,
            ),
        }
    }
}

impl ActionRow {
    pub fn from_action(a: &crate::respond::action::Action) -> ActionRow {
        let mut cut = false;
        ActionRow {
            action_id: a.action_id.clone(),
            version: (a.updated_ms.max(0) as u64) << 16 | (a.version & 0xffff),
            incident_id: a.incident_id.clone(),
            finding_id: a.finding_id.clone(),
            playbook_id: a.playbook_id.clone(),
            responder: a.responder.as_str().into(),
            kind: a.kind.as_str().into(),
            target: a.target.clone(),
            parameters: serde_json::to_string(&a.parameters).unwrap_or_default(),
            risk: a.risk.as_str().into(),
            mode: a.mode.as_str().into(),
            status: a.status.as_str().into(),
            approved_by: a.approved_by.clone().unwrap_or_default(),
            approved_ms: a.approved_ms.unwrap_or(0),
            output: bounded(&a.output, &mut cut),
            verification: a.verification.clone().unwrap_or_default(),
            expires_ms: a.expires_ms.unwrap_or(0),
            rollback_action_id: a.rollback_action_id.clone().unwrap_or_default(),
            created_ms: a.created_ms,
            updated_ms: a.updated_ms,
            day: days(a.created_ms),
            reason: bounded(&a.reason, &mut cut),
            connector: a.connector.clone(),
        }
    }
}

impl AuditRow {
    pub fn from_record(r: &crate::respond::audit::AuditRecord) -> AuditRow {
        AuditRow {
            seq: r.seq,
            at_ms: r.at_ms,
            actor: r.actor.clone(),
            decision: r.decision.clone(),
            subject: r.subject.clone(),
            detail: r.detail.clone(),
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
            day: days(r.at_ms),
        }
    }
}
