//! Kubernetes: klog lines from kubelet and friends
//! (`E0127 07:27:45.123456 1234 pod_workers.go:1298] "Error syncing pod" err="… CrashLoopBackOff …" pod="ns/name"`),
//! and event lines from `kubectl get events` (`LAST SEEN TYPE REASON OBJECT
//! MESSAGE`) or the Events table of `kubectl describe` (`TYPE REASON AGE FROM
//! MESSAGE`, with `(x26 over 7m)` repeat counts that become `event.count`).
//!
//! Reasons are normalized so detectors match one action whatever the source:
//! `crash_loop_backoff` (BackOff, CrashLoopBackOff), `oom_kill` (OOMKilled,
//! OOMKilling), otherwise the reason in snake case.

use std::borrow::Cow;

use super::SourceState;
use crate::event::{Event, Outcome, Text};
use crate::time::{digits, epoch_ms, fraction_ms};

pub fn looks_like_klog(b: &[u8]) -> bool {
    b.len() > 22 && digits(b, 1, 4).is_some() && b[5] == b' ' && b[8] == b':' && b[11] == b':'
}

pub fn looks_like_events_line(b: &[u8]) -> bool {
    let head = &b[..b.len().min(40)];
    // the cut may fall inside a character: keep the valid prefix
    let s = std::str::from_utf8(head)
        .unwrap_or_else(|e| std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""));
    let mut it = s.split_whitespace();
    let (a, c) = (it.next(), it.next());
    matches!(a, Some("Normal" | "Warning")) || matches!(c, Some("Normal" | "Warning"))
}

/// A bare klog line (no syslog header).
pub fn parse_klog_line(ev: &mut Event, line: &str, state: &mut SourceState) -> bool {
    let b = line.as_bytes();
    if let (Some(mo), Some(d), Some(h), Some(mi), Some(s)) = (
        digits(b, 1, 2),
        digits(b, 3, 2),
        digits(b, 6, 2),
        digits(b, 9, 2),
        digits(b, 12, 2),
    ) {
        let (ms, _) = fraction_ms(b, 14);
        let year = state.year.year_for(mo);
        ev.timestamp = epoch_ms(year, mo, d, h, mi, s, ms);
        ev.dataset = Cow::Borrowed("kubernetes.kubelet");
        ev.process_name = Some(Text::Static("kubelet"));
        parse_klog_message(ev, line, 0);
        true
    } else {
        false
    }
}

/// The part after a klog header's `] `, classified; `msg_at` is its offset in `original`.
pub fn parse_klog_message(ev: &mut Event, msg: &str, msg_at: usize) {
    let level = match msg.as_bytes().first() {
        Some(b'E') => "error",
        Some(b'W') => "warning",
        Some(b'F') => "critical",
        Some(b'I') => "info",
        _ => "",
    };
    let body = match msg.split_once("] ") {
        Some((head, body)) if looks_like_klog(msg.as_bytes()) || head.contains(".go:") => {
            if !level.is_empty() {
                ev.log_level = Some(Cow::Borrowed(level));
            }
            let at = msg_at + super::offset_in(msg, body);
            ev.set_message_range(at, at + body.len());
            body
        }
        _ => msg,
    };
    if let Some(pod) = quoted_value(body, "pod=\"")
        && let Some((ns, name)) = pod.split_once('/')
    {
        ev.push_extra("kubernetes.namespace", ns);
        ev.push_extra("kubernetes.pod.name", name);
        if ev.service_name.is_none() {
            ev.set_service_name(workload_of(name));
        }
    }
    if let Some(c) = body
        .split_once("container=")
        .map(|(_, r)| r.split([' ', '\\', '"']).next().unwrap_or(r))
    {
        ev.push_extra("kubernetes.container.name", c);
    }
    let action = if body.contains("CrashLoopBackOff")
        || body.contains("Back-off restarting failed container")
    {
        "crash_loop_backoff"
    } else if body.contains("OOMKilled") {
        "oom_kill"
    } else {
        return;
    };
    set(ev, action);
}

fn set(ev: &mut Event, action: &'static str) {
    ev.category = Some("process");
    ev.action = Some(Cow::Borrowed(action));
    ev.outcome = Outcome::Failure;
}

/// `name-7d4b9c-x2x` -> `name` (drops ReplicaSet and pod hashes).
fn workload_of(pod: &str) -> &str {
    let mut parts: Vec<&str> = pod.rsplitn(3, '-').collect();
    parts.reverse();
    match parts.as_slice() {
        [base, rs, id] if rs.len() >= 8 && rs.len() <= 10 && id.len() == 5 => base,
        _ => pod,
    }
}

fn quoted_value<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let (_, r) = s.split_once(key)?;
    r.split_once('"').map(|(v, _)| v)
}

/// `kubectl get events` or describe's Events table line.
pub fn parse_events_line(ev: &mut Event, line: &str) -> bool {
    events_fields(ev, line)
}

fn events_fields(ev: &mut Event, line: &str) -> bool {
    let toks: Vec<&str> = line.split_whitespace().take(4).collect();
    let (kind_at, reason) = match toks.as_slice() {
        [t, r, ..] if *t == "Normal" || *t == "Warning" => (0, *r),
        [_, t, r, ..] if *t == "Normal" || *t == "Warning" => (1, *r),
        _ => return false,
    };
    ev.log_level = Some(Cow::Borrowed(if toks[kind_at] == "Warning" {
        "warning"
    } else {
        "info"
    }));
    // repeat count "(x26 over 7m37s)"
    if let Some(n) = line
        .split_once("(x")
        .and_then(|(_, r)| r.split_once(' '))
        .and_then(|(n, _)| n.parse::<u32>().ok())
    {
        ev.count = n.max(1);
    }
    let object = if kind_at == 1 {
        toks.get(3).copied()
    } else {
        None
    };
    if let Some((kind, name)) = object.and_then(|o| o.split_once('/'))
        && kind == "pod"
    {
        ev.push_extra("kubernetes.pod.name", name);
    }
    // message: after "kubelet" (describe) or after the object (get events)
    let msg = match line.find("kubelet ") {
        Some(i) => line[i + 8..].trim_start(),
        None => object
            .and_then(|o| line.split_once(o))
            .map_or("", |(_, r)| r.trim_start()),
    };
    if !msg.is_empty() {
        let at = super::offset_in(line, msg);
        ev.set_message_range(at, line.len());
        if let Some(pod) = msg
            .split_once(" in pod ")
            .map(|(_, r)| r.split('(').next().unwrap_or(r))
        {
            let (name, ns) = pod.rsplit_once('_').unwrap_or((pod, ""));
            ev.push_extra("kubernetes.pod.name", name);
            if !ns.is_empty() {
                ev.push_extra("kubernetes.namespace", ns);
            }
            ev.set_service_name(workload_of(name));
        }
        if let Some(c) = msg
            .split_once("failed container ")
            .map(|(_, r)| r.split(' ').next().unwrap_or(r))
        {
            ev.push_extra("kubernetes.container.name", c);
        }
    }
    ev.dataset = Cow::Borrowed("kubernetes.event");
    ev.push_label("reason", reason);
    let action = normalize_reason(reason);
    ev.category = Some("process");
    ev.action = Some(action);
    ev.outcome = if toks[kind_at] == "Warning" {
        Outcome::Failure
    } else {
        Outcome::Unknown
    };
    true
}

/// Kubernetes event reason -> action name.
pub fn normalize_reason(reason: &str) -> Cow<'static, str> {
    match reason {
        "BackOff" | "CrashLoopBackOff" => Cow::Borrowed("crash_loop_backoff"),
        "OOMKilled" | "OOMKilling" => Cow::Borrowed("oom_kill"),
        other => {
            let mut out = String::with_capacity(other.len() + 4);
            for (i, c) in other.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            }
            Cow::Owned(out)
        }
    }
}
