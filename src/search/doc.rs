//! A stored event row as the flat, dotted ECS object (SPEC 4.1) that
//! `threatpilot parse` prints: the names analysts search by and read.
//! Empty columns (`""`, `0` where the column means "absent") are left out,
//! so `http.response.status_code:0` never matches an sshd line.

use serde_json::{Map, Value};

use crate::store::EventRow;

/// The ECS object of a row; `labels` and `extra` are spread into it.
pub fn ecs(row: &EventRow) -> Map<String, Value> {
    let mut m = Map::new();
    let mut text = |k: &str, v: &str| {
        if !v.is_empty() {
            m.insert(k.to_owned(), Value::String(v.to_owned()));
        }
    };
    text("@timestamp", &crate::time::format_rfc3339(row.timestamp_ms));
    text("event.id", &row.event_id);
    text("event.kind", &row.kind);
    text("event.category", &row.category);
    text("event.action", &row.action);
    text("event.outcome", &row.outcome);
    text("event.dataset", &row.dataset);
    text("event.original", &row.original);
    text("message", &row.message);
    text("source.ip", &row.source_ip);
    text("user.name", &row.user_name);
    text("host.name", &row.host_name);
    text("service.name", &row.service_name);
    text("process.name", &row.process_name);
    text("http.request.method", &row.http_method);
    text("url.original", &row.url_original);
    if let Some((path, query)) = row.url_original.split_once('?') {
        text("url.path", path);
        text("url.query", query);
    } else {
        text("url.path", &row.url_original);
    }
    text("user_agent.original", &row.user_agent);
    text("log.level", &row.log_level);
    text("template.id", &row.template_id);
    text("template.text", &row.template_text);
    text("error.message", &row.parse_error);
    let mut number = |k: &str, v: u64| {
        if v > 0 {
            m.insert(k.to_owned(), v.into());
        }
    };
    number("source.port", u64::from(row.source_port));
    number("process.pid", u64::from(row.process_pid));
    number("http.response.status_code", u64::from(row.http_status));
    number("http.response.body.bytes", row.http_body_bytes);
    number("event.count", u64::from(row.event_count));
    if !row.parse_error.is_empty() {
        m.insert("error.type".into(), "parse_failure".into());
    }
    spread(&mut m, &row.labels, "labels.");
    spread(&mut m, &row.extra, "");
    m
}

/// Adds the members of a JSON object column, each name prefixed.
fn spread(m: &mut Map<String, Value>, column: &str, prefix: &str) {
    if column.is_empty() {
        return;
    }
    if let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(column) {
        for (k, v) in obj {
            m.insert(format!("{prefix}{k}"), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::parse::{Format, SourceState, parse_line};

    #[test]
    fn a_row_reads_back_as_the_ecs_event_without_empty_fields() {
        let line = "Nov 22 10:00:01 web1 sshd[42]: Failed password for root from 203.0.113.50 port 4242 ssh2";
        let mut state = SourceState::new(Format::Auto, 1_795_000_000_000);
        let mut ev: Event = parse_line(line, &mut state, 0);
        ev.push_label("job", "sshd");
        ev.push_extra("kubernetes.pod.name", "api-0");
        let m = ecs(&EventRow::from_event(&ev));
        assert_eq!(m["source.ip"], "203.0.113.50");
        assert_eq!(m["source.port"], 4242);
        assert_eq!(m["user.name"], "root");
        assert_eq!(m["labels.job"], "sshd");
        assert_eq!(m["kubernetes.pod.name"], "api-0");
        assert_eq!(m["event.id"], crate::store::rows::event_id(&ev).as_str());
        assert!(!m.contains_key("http.response.status_code"));
        assert!(!m.contains_key("url.path"));
    }
}
