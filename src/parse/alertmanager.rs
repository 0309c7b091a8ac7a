//! Alertmanager webhook payloads (version 4): one event per alert.
//!
//! Each event keeps the alert as JSON in `event.original`, its labels as
//! `labels.*`, and `alert.group_key`, `alert.fingerprint`, `alert.status`,
//! `alert.starts_at` (the dedup key of SPEC 5). `@timestamp` is when the
//! alert started, or ended for a resolved one. Each group is its own
//! event-time domain: one group's clock never makes another's alerts late. `host.name` and
//! `service.name` come from the usual labels (`instance`, `node`, `service`,
//! `job`), `log.level` from `severity`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::event::{Event, Kind, Outcome, Text};
use crate::time::parse_rfc3339;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Webhook {
    version: Option<String>,
    group_key: Option<String>,
    #[serde(default)]
    status: String,
    #[serde(default)]
    common_annotations: BTreeMap<String, String>,
    #[serde(default)]
    group_labels: BTreeMap<String, String>,
    alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    #[serde(default)]
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    ends_at: String,
    #[serde(
        default,
        rename = "generatorURL",
        skip_serializing_if = "String::is_empty"
    )]
    generator_url: String,
    #[serde(default)]
    fingerprint: String,
}

/// Parses a webhook body into events; an error names what is wrong.
pub fn parse_webhook(body: &str, ingested_ms: i64) -> Result<Vec<Event>, String> {
    let hook: Webhook =
        serde_json::from_str(body).map_err(|e| format!("invalid Alertmanager payload: {e}"))?;
    if let Some(v) = &hook.version
        && v != "4"
    {
        return Err(format!(
            "unsupported Alertmanager payload version {v:?} (expected \"4\")"
        ));
    }
    let group_key = hook.group_key.unwrap_or_default();
    // the group as people read it (`alertname=HighLatency,cluster=eu`)
    let group = if hook.group_labels.is_empty() {
        group_key.clone()
    } else {
        let pairs: Vec<String> = hook
            .group_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        pairs.join(",")
    };
    let domain = (xxhash_rust::xxh3::xxh3_64(group_key.as_bytes()) >> 32) as u32;
    let mut out = Vec::with_capacity(hook.alerts.len());
    for mut alert in hook.alerts {
        if alert.status.is_empty() {
            alert.status = hook.status.clone();
        }
        if alert.fingerprint.is_empty() {
            // Alertmanager fingerprints are a hash of the label set; senders that omit it get ours
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for (k, v) in &alert.labels {
                h.update(k.as_bytes());
                h.update(&[0]);
                h.update(v.as_bytes());
                h.update(&[0]);
            }
            alert.fingerprint = format!("{:016x}", h.digest());
        }
        let original = serde_json::to_string(&alert).unwrap_or_default();
        let mut ev = Event::raw(original.into(), Cow::Borrowed("alertmanager"));
        ev.ingested = ingested_ms;
        ev.kind = Kind::Alert;
        ev.time_domain = domain;
        ev.category = Some("host");
        let resolved = alert.status == "resolved";
        ev.action = Some(Cow::Borrowed(if resolved {
            "alert_resolved"
        } else {
            "alert_firing"
        }));
        ev.outcome = if resolved {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let start = parse_rfc3339(alert.starts_at.as_bytes()).map(|x| x.0);
        let end = parse_rfc3339(alert.ends_at.as_bytes())
            .map(|x| x.0)
            .filter(|&t| t > 0);
        ev.timestamp = if resolved { end.or(start) } else { start }.unwrap_or(ingested_ms);
        let label = |k: &str| alert.labels.get(k).cloned();
        ev.host_name = label("instance")
            .map(|i| strip_port(&i))
            .or_else(|| label("node"))
            .or_else(|| label("host"))
            .map(Text::from);
        ev.service_name = label("service")
            .or_else(|| label("job"))
            .or_else(|| label("app"))
            .map(Text::from);
        ev.log_level = label("severity").map(Cow::Owned);
        if let Some(name) = label("alertname") {
            ev.push_extra("rule.name", name);
        }
        if let Some(ns) = label("namespace") {
            ev.push_extra("kubernetes.namespace", ns);
        }
        if let Some(pod) = label("pod") {
            ev.push_extra("kubernetes.pod.name", pod);
        }
        let summary = alert
            .annotations
            .get("summary")
            .or_else(|| alert.annotations.get("description"))
            .or_else(|| alert.annotations.get("message"))
            .or_else(|| hook.common_annotations.get("summary"))
            .cloned()
            .or_else(|| label("alertname"))
            .unwrap_or_default();
        ev.push_extra("alert.summary", summary.clone());
        ev.message_owned = Some(summary);
        ev.push_extra("alert.status", alert.status.clone());
        ev.push_extra("alert.fingerprint", alert.fingerprint.clone());
        ev.push_extra("alert.group_key", group_key.clone());
        ev.push_extra("alert.group", group.clone());
        // firing while any alert of the group fires; resolved once all are
        ev.push_extra("alert.group_status", hook.status.clone());
        ev.push_extra("alert.starts_at", alert.starts_at.clone());
        if let Some(e) = end {
            ev.push_extra("alert.ends_at", crate::time::format_rfc3339(e));
        }
        for (k, v) in &alert.labels {
            ev.labels
                .push((Cow::Owned(k.clone()), Text::from(v.clone())));
        }
        for (k, v) in &hook.group_labels {
            if !alert.labels.contains_key(k) {
                ev.labels
                    .push((Cow::Owned(k.clone()), Text::from(v.clone())));
            }
        }
        ev.hash = dedup_key(
            &group_key,
            &alert.fingerprint,
            &alert.starts_at,
            &alert.status,
        );
        out.push(ev);
    }
    Ok(out)
}

/// SPEC 5: alerts dedup by group key, fingerprint, startsAt and status.
fn dedup_key(group: &str, fp: &str, starts: &str, status: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [group, fp, starts, status] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    h.digest()
}

fn strip_port(instance: &str) -> String {
    match instance.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|c| c.is_ascii_digit()) => {
            host.trim_matches(['[', ']']).to_owned()
        }
        _ => instance.to_owned(),
    }
}

/// True for a JSON document that is an Alertmanager webhook payload.
pub fn looks_like_webhook(s: &str) -> bool {
    s.contains("\"alerts\"") && (s.contains("\"groupKey\"") || s.contains("\"receiver\""))
}
