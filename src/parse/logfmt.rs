//! logfmt (`ts=2024-01-02T03:04:05Z level=error msg="db timeout" service=api`)
//! and ISO-timestamped app lines (`2024-01-02 03:04:05,678 ERROR [main] x.Y: msg`).
//!
//! Known keys map to ECS fields; the rest become `labels.*`.

use std::borrow::Cow;

use crate::event::{Event, Outcome};
use crate::time::parse_rfc3339;

pub fn looks_like_logfmt(b: &[u8]) -> bool {
    let head = &b[..b.len().min(64)];
    match head.iter().position(|&c| c == b'=') {
        Some(eq) => {
            eq > 0
                && head[..eq]
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        }
        None => false,
    }
}

pub fn parse(ev: &mut Event, line: &str) -> bool {
    if looks_like_logfmt(line.as_bytes()) {
        pairs(ev, line)
    } else {
        app_line(ev, line)
    }
}

fn pairs(ev: &mut Event, line: &str) -> bool {
    let mut found = false;
    let mut msg_range = None;
    let mut rest = line;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let Some(eq) = rest.find('=') else { break };
        let key = &rest[..eq];
        if key.is_empty() || key.contains(' ') {
            break;
        }
        let after = &rest[eq + 1..];
        let (value, next, raw) = if let Some(q) = after.strip_prefix('"') {
            let mut end = None;
            let b = q.as_bytes();
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => {
                        end = Some(i);
                        break;
                    }
                    _ => i += 1,
                }
            }
            let Some(end) = end else { return false };
            (
                Cow::Owned(q[..end].replace("\\\"", "\"")),
                &q[end + 1..],
                &q[..end],
            )
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (Cow::Borrowed(&after[..end]), &after[end..], &after[..end])
        };
        found = true;
        match key {
            "ts" | "time" | "timestamp" | "t" => {
                if let Some((t, _)) = parse_rfc3339(value.as_bytes()) {
                    ev.timestamp = t;
                }
            }
            "level" | "lvl" | "severity" => {
                ev.log_level = Some(Cow::Owned(value.to_ascii_lowercase()))
            }
            "msg" | "message" => {
                let s = super::offset_in(line, raw);
                msg_range = Some((s, s + raw.len()));
            }
            _ => set_known(ev, key, &value),
        }
        rest = next;
    }
    if !found {
        return false;
    }
    if let Some((s, e)) = msg_range {
        ev.set_message_range(s, e);
    }
    ev.dataset = Cow::Borrowed("logfmt");
    true
}

/// Sets an ECS field from a common app-log key; unknown keys become labels.
pub(super) fn set_known(ev: &mut Event, key: &str, value: &str) {
    match key {
        "service" | "app" | "service.name" => ev.set_service_name(value),
        "host" | "hostname" | "host.name" => ev.set_host_name(value),
        "user" | "username" | "user.name" => ev.set_user_name(value),
        "ip" | "client_ip" | "remote_addr" | "src_ip" | "source.ip" => ev.set_source_ip(value),
        "method" | "http.request.method" => ev.http_method = Some(crate::event::http_method(value)),
        "path" | "url" | "uri" | "url.original" => ev.set_url_original(value),
        "status" | "status_code" | "http.response.status_code" => {
            ev.http_status = value.parse().ok();
            if let Some(s) = ev.http_status {
                ev.category = Some("web");
                ev.outcome = if s >= 400 {
                    Outcome::Failure
                } else {
                    Outcome::Success
                };
            }
        }
        "duration_ms" | "latency_ms" => {
            ev.duration_ns = value.parse::<f64>().ok().map(|v| (v * 1e6) as i64)
        }
        "action" | "event.action" => ev.action = Some(Cow::Owned(value.to_owned())),
        "outcome" | "event.outcome" => {
            ev.outcome = match value {
                "success" => Outcome::Success,
                "failure" => Outcome::Failure,
                _ => Outcome::Unknown,
            }
        }
        _ => ev.push_label(Cow::Owned(key.to_owned()), value),
    }
}

/// `2015-10-18 18:01:47,978 INFO [main] org.x.Y: message`
fn app_line(ev: &mut Event, line: &str) -> bool {
    let Some((ts, used)) = parse_rfc3339(line.as_bytes()) else {
        return false;
    };
    ev.timestamp = ts;
    let rest = line[used..].trim_start();
    let rest = rest.strip_prefix("- ").unwrap_or(rest);
    let (level, after) = super::token(rest);
    let lower = level.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "trace" | "debug" | "info" | "warn" | "warning" | "error" | "fatal" | "critical"
    ) {
        ev.log_level = Some(Cow::Owned(lower));
        let start = super::offset_in(line, after);
        ev.set_message_range(start, line.len());
    } else {
        let start = super::offset_in(line, rest);
        ev.set_message_range(start, line.len());
    }
    ev.dataset = Cow::Borrowed("app");
    true
}
