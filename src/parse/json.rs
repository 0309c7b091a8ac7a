//! JSON lines with a configurable field mapping.
//!
//! Nested objects are flattened to dotted keys (`{"source":{"ip":…}}` ->
//! `source.ip`). A key is placed, in order, by the source's mapping
//! (`ecs name <- json key`), as an ECS name itself, as a common alias
//! (`msg`, `level`, `ts`, `client_ip`, …), and otherwise as `labels.<key>`.
//! A Kubernetes Event object (`involvedObject`, `reason`) is recognised.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::SourceState;
use crate::event::{Event, Outcome};
use crate::time::parse_rfc3339;

/// ECS field name -> JSON key (dotted for nested objects).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct JsonMapping(pub BTreeMap<String, String>);

pub fn parse(ev: &mut Event, state: &SourceState) -> bool {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(&ev.original) else { return false };
    let mut flat: Vec<(String, Value)> = Vec::with_capacity(obj.len());
    flatten("", Value::Object(obj), &mut flat);
    ev.dataset = Cow::Borrowed("json");
    if flat.iter().any(|(k, _)| k == "involvedObject.kind") {
        return kube_event(ev, &flat);
    }
    // explicit mapping first: rename mapped keys to their ECS names
    for (ecs, key) in &state.json.0 {
        if let Some(entry) = flat.iter_mut().find(|(k, _)| k == key) {
            entry.0 = ecs.clone();
        }
    }
    let mut msg: Option<String> = None;
    for (k, v) in flat {
        let text = match &v {
            Value::String(s) => Cow::Borrowed(s.as_str()),
            Value::Null => continue,
            other => Cow::Owned(other.to_string()),
        };
        match k.as_str() {
            "@timestamp" | "timestamp" | "time" | "ts" | "date" => {
                if let Some((t, _)) = parse_rfc3339(text.as_bytes()) {
                    ev.timestamp = t;
                } else if let Some(n) = v.as_f64() {
                    // epoch seconds or milliseconds
                    ev.timestamp = if n > 1e11 { n as i64 } else { (n * 1000.0) as i64 };
                }
            }
            "message" | "msg" => msg = Some(text.into_owned()),
            "log.level" | "level" | "severity" | "lvl" => ev.log_level = Some(Cow::Owned(text.to_ascii_lowercase())),
            "event.dataset" => ev.dataset = Cow::Owned(text.into_owned()),
            "event.category" => ev.category = category(&text),
            "source.port" => ev.source_port = text.parse().ok(),
            "process.name" => ev.process_name = Some(text.into_owned()),
            "process.pid" => ev.process_pid = text.parse().ok(),
            "user_agent.original" | "user_agent" | "http_user_agent" => ev.user_agent = Some(text.into_owned()),
            "http.response.body.bytes" | "bytes" | "body_bytes_sent" => ev.http_body_bytes = text.parse().ok(),
            "event.duration" => ev.duration_ns = text.parse().ok(),
            k if crate::event::EXTRA_FIELDS.contains(&k) => ev.extra.push((Cow::Owned(k.to_owned()), text.into_owned())),
            k => match k.strip_prefix("labels.") {
                Some(l) => ev.labels.push((l.to_owned(), text.into_owned())),
                None => super::logfmt::set_known(ev, k, &text),
            },
        }
    }
    if let Some(m) = msg {
        ev.message_owned = Some(m);
    }
    if ev.action.is_none() && ev.http_status.is_some() {
        ev.action = Some(Cow::Borrowed("http_request"));
    }
    true
}

fn category(s: &str) -> Option<&'static str> {
    ["authentication", "web", "process", "host", "network", "file", "database", "iam", "session"]
        .into_iter()
        .find(|c| *c == s)
}

fn flatten(prefix: &str, v: Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_owned(), other)),
    }
}

fn kube_event(ev: &mut Event, flat: &[(String, Value)]) -> bool {
    let get = |key: &str| flat.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.as_str());
    let reason = get("reason").unwrap_or("");
    ev.dataset = Cow::Borrowed("kubernetes.event");
    ev.category = Some("process");
    ev.action = Some(super::kube::normalize_reason(reason));
    ev.labels.push(("reason".into(), reason.to_owned()));
    let warning = get("type") == Some("Warning");
    ev.outcome = if warning { Outcome::Failure } else { Outcome::Unknown };
    ev.log_level = Some(Cow::Borrowed(if warning { "warning" } else { "info" }));
    if let Some(m) = get("message") {
        ev.message_owned = Some(m.to_owned());
    }
    for key in ["lastTimestamp", "eventTime", "firstTimestamp", "metadata.creationTimestamp"] {
        if let Some((t, _)) = get(key).and_then(|t| parse_rfc3339(t.as_bytes())) {
            ev.timestamp = t;
            break;
        }
    }
    if let Some(n) = flat.iter().find(|(k, _)| k == "count").and_then(|(_, v)| v.as_u64()) {
        ev.count = n.clamp(1, u32::MAX as u64) as u32;
    }
    if get("involvedObject.kind") == Some("Pod") {
        if let Some(name) = get("involvedObject.name") {
            ev.push_extra("kubernetes.pod.name", name);
        }
    }
    if let Some(ns) = get("involvedObject.namespace") {
        ev.push_extra("kubernetes.namespace", ns);
    }
    if let Some(host) = get("source.host") {
        ev.host_name = Some(host.to_owned());
    }
    true
}
