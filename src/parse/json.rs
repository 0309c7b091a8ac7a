//! JSON lines with a configurable field mapping.
//!
//! Nested objects are flattened to dotted keys (`{"source":{"ip":…}}` ->
//! `source.ip`). A key is placed, in order, by the source's mapping
//! (`ecs name <- json key`), as an ECS name itself, as a common alias
//! (`msg`, `level`, `ts`, `client_ip`, …), and otherwise as `labels.<key>`.
//! A Kubernetes Event object (`involvedObject`, `reason`) is recognised, and
//! so are access logs: Caddy's and Traefik's by their own names ([`web`]),
//! nginx's `log_format … escape=json` by its variables (`request`,
//! `request_uri`, `time_local`, `http_referer`, …), and so is the systemd
//! journal's export ([`journal`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SourceState;
use crate::event::{Event, Outcome};
use crate::time::parse_rfc3339;

mod journal;
mod scan;
mod web;

/// Objects nested deeper than this stay one leaf (their JSON text).
const MAX_DEPTH: usize = 8;

/// ECS field name -> JSON key (dotted for nested objects).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct JsonMapping(pub BTreeMap<String, String>);

/// A flattened JSON leaf: the text of a string (unescaped, borrowed when it
/// has no escapes) or the literal of a number, bool or array.
struct Leaf<'a> {
    key: Cow<'a, str>,
    text: Cow<'a, str>,
    number: Option<f64>,
}

pub fn parse(ev: &mut Event, line: &str, state: &SourceState) -> bool {
    parse_fields(ev, line, state)
}

fn parse_fields(ev: &mut Event, line: &str, state: &SourceState) -> bool {
    let mut flat: Vec<Leaf<'_>> = Vec::with_capacity(16);
    if scan::flatten(line, &mut flat).is_none() {
        flat.clear();
        if !flatten_raw(Cow::Borrowed(""), line, &mut flat, 0) {
            return false;
        }
    }
    ev.dataset = Cow::Borrowed("json");
    if flat.iter().any(|l| l.key == "involvedObject.kind") {
        return kube_event(ev, &flat);
    }
    if journal::is_record(&flat) {
        return journal::parse(ev, line, flat);
    }
    // explicit mapping first: rename mapped keys to their ECS names
    for (ecs, key) in &state.json.0 {
        if let Some(leaf) = flat.iter_mut().find(|l| l.key == key.as_str()) {
            leaf.key = Cow::Owned(ecs.clone());
        }
    }
    if let Some(dataset) = web::rename(&mut flat) {
        ev.dataset = Cow::Borrowed(dataset);
    }
    let mut msg: Option<Cow<'_, str>> = None;
    for Leaf { key, text, number } in flat {
        match key.as_ref() {
            // a key a schema dropped
            "" => {}
            "@timestamp" | "timestamp" | "time" | "ts" | "date" | "time_iso8601" => {
                if let Some((t, _)) = parse_rfc3339(text.as_bytes()) {
                    ev.timestamp = t;
                } else if let Some(n) = number {
                    // epoch seconds or milliseconds
                    ev.timestamp = if n > 1e11 {
                        n as i64
                    } else {
                        (n * 1000.0) as i64
                    };
                }
            }
            "time_local" => {
                if let Some(t) = super::access::parse_clf_time(text.as_bytes()) {
                    ev.timestamp = t;
                }
            }
            "message" | "msg" => msg = Some(text),
            "log.level" | "level" | "severity" | "lvl" => ev.log_level = Some(level(&text)),
            "event.dataset" => ev.dataset = Cow::Owned(text.into_owned()),
            "event.category" => ev.category = category(&text),
            "source.port" => ev.source_port = text.parse().ok(),
            "process.name" => ev.process_name = Some(ev.text(&text)),
            "process.pid" => ev.process_pid = text.parse().ok(),
            "user_agent.original" | "user_agent" | "http_user_agent"
                if matches!(text.as_ref(), "" | "-") => {}
            "user_agent.original" | "user_agent" | "http_user_agent" => {
                ev.user_agent = Some(ev.text(&text))
            }
            "http.response.body.bytes" | "bytes" | "body_bytes_sent" => {
                ev.http_body_bytes = text.parse().ok()
            }
            "event.duration" => ev.duration_ns = text.parse().ok(),
            // nginx's variables
            "request_time" => ev.duration_ns = seconds_as_ns(number, &text),
            "request_uri" => ev.set_url_original(&text),
            "request_method" => ev.http_method = Some(crate::event::http_method(&text)),
            "request" if super::access::request_line(ev, &text) => {}
            "remote_user" if matches!(text.as_ref(), "" | "-") => {}
            "remote_user" => ev.set_user_name(&text),
            "http_referer" if matches!(text.as_ref(), "" | "-") => {}
            "http_referer" => ev.push_extra("http.request.referrer", &text),
            "http.version" => {
                if let Some(v) = super::access::unusual_version(&text) {
                    ev.push_extra("http.version", v)
                }
            }
            // every extra field is dotted: plain keys skip the list
            k if k.contains('.')
                && let Some(name) = crate::event::EXTRA_FIELDS.iter().find(|f| **f == k) =>
            {
                ev.push_extra(name, &text)
            }
            k => match k.strip_prefix("labels.") {
                Some(l) => ev.push_label(Cow::Owned(l.to_owned()), &text),
                None => super::logfmt::set_known(ev, k, &text),
            },
        }
    }
    match msg {
        // an unescaped message is a slice of the line: keep it as a range
        Some(Cow::Borrowed(m)) => {
            let start = super::offset_in(line, m);
            if line[start..].as_ptr() == m.as_ptr() {
                ev.set_message_range(start, start + m.len());
            } else {
                ev.message_owned = Some(m.to_owned());
            }
        }
        Some(Cow::Owned(m)) => ev.message_owned = Some(m),
        None => {}
    }
    if ev.action.is_none()
        && let Some(status) = ev.http_status
    {
        ev.action = Some(Cow::Borrowed(super::access::request_action(ev, status)));
        super::mark_proxy_target(ev);
    }
    true
}

/// A duration in seconds (`0.25`, or `"0.25"` where the number was quoted)
/// as nanoseconds.
fn seconds_as_ns(number: Option<f64>, text: &str) -> Option<i64> {
    let s = number.or_else(|| text.parse().ok())?;
    (s.is_finite() && s >= 0.0).then_some((s * 1e9) as i64)
}

/// Common levels as static strings (no allocation), others lowercased.
fn level(s: &str) -> Cow<'static, str> {
    for l in [
        "trace", "debug", "info", "warn", "warning", "error", "fatal", "critical",
    ] {
        if s.eq_ignore_ascii_case(l) {
            return Cow::Borrowed(l);
        }
    }
    Cow::Owned(s.to_ascii_lowercase())
}

/// Flattens a JSON object into dotted leaves without building a value tree;
/// false when `text` is not a JSON object.
fn flatten_raw<'a>(
    prefix: Cow<'a, str>,
    text: &'a str,
    out: &mut Vec<Leaf<'a>>,
    depth: usize,
) -> bool {
    let Ok(ObjectEntries(map)) = serde_json::from_str::<ObjectEntries<'a>>(text) else {
        return false;
    };
    for (k, raw) in map {
        let key = if prefix.is_empty() {
            k
        } else {
            Cow::Owned(format!("{prefix}.{k}"))
        };
        let v = raw.get();
        match v.as_bytes().first() {
            Some(b'{') if depth < MAX_DEPTH => {
                flatten_raw(key, v, out, depth + 1);
            }
            Some(b'"') => {
                let text: Cow<'a, str> = serde_json::from_str(v).unwrap_or(Cow::Borrowed(""));
                out.push(Leaf {
                    key,
                    text,
                    number: None,
                });
            }
            Some(b'n') => {}
            _ => out.push(Leaf {
                key,
                number: v.parse().ok(),
                text: Cow::Borrowed(v),
            }),
        }
    }
    true
}

/// A JSON object read as its entries in order (keys borrowed where possible).
struct ObjectEntries<'a>(Vec<(Cow<'a, str>, &'a serde_json::value::RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for ObjectEntries<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = ObjectEntries<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<CowStr<'de>>()? {
                    let v: &'de serde_json::value::RawValue = m.next_value()?;
                    out.push((k.0, v));
                }
                Ok(ObjectEntries(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A string borrowed from the input when it has no escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

fn category(s: &str) -> Option<&'static str> {
    [
        "authentication",
        "web",
        "process",
        "host",
        "network",
        "file",
        "database",
        "iam",
        "session",
    ]
    .into_iter()
    .find(|c| *c == s)
}

fn kube_event(ev: &mut Event, flat: &[Leaf<'_>]) -> bool {
    let get = |key: &str| {
        flat.iter()
            .find(|l| l.key == key && l.number.is_none())
            .map(|l| l.text.as_ref())
    };
    let reason = get("reason").unwrap_or("");
    ev.dataset = Cow::Borrowed("kubernetes.event");
    ev.category = Some("process");
    ev.action = Some(super::kube::normalize_reason(reason));
    ev.push_label("reason", reason);
    let warning = get("type") == Some("Warning");
    ev.outcome = if warning {
        Outcome::Failure
    } else {
        Outcome::Unknown
    };
    ev.log_level = Some(Cow::Borrowed(if warning { "warning" } else { "info" }));
    if let Some(m) = get("message") {
        ev.message_owned = Some(m.to_owned());
    }
    for key in [
        "lastTimestamp",
        "eventTime",
        "firstTimestamp",
        "metadata.creationTimestamp",
    ] {
        if let Some((t, _)) = get(key).and_then(|t| parse_rfc3339(t.as_bytes())) {
            ev.timestamp = t;
            break;
        }
    }
    if let Some(n) = flat
        .iter()
        .find(|l| l.key == "count")
        .and_then(|l| l.number)
    {
        ev.count = n.clamp(1.0, u32::MAX as f64) as u32;
    }
    if get("involvedObject.kind") == Some("Pod")
        && let Some(name) = get("involvedObject.name")
    {
        ev.push_extra("kubernetes.pod.name", name);
    }
    if let Some(ns) = get("involvedObject.namespace") {
        ev.push_extra("kubernetes.namespace", ns);
    }
    if let Some(host) = get("source.host") {
        ev.set_host_name(host);
    }
    true
}
