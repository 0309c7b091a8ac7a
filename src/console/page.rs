//! The console's page frame and the small pieces every page is built of.
//! Pages are strings of HTML; every value that comes from a log, a finding,
//! an action or a person goes through [`esc`] (or [`attr`]) on its way in,
//! and nothing is ever written into a script: the one script is a static
//! asset, and it reads what it needs from `data-` attributes.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::session::Session;
use crate::api::auth::Need;
pub use crate::escape::html as esc;

/// The pages in the navigation bar: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/console", "Overview"),
    ("/console/incidents", "Incidents"),
    ("/console/findings", "Findings"),
    ("/console/actions", "Actions & audit"),
    ("/console/reports", "Reports"),
    ("/console/query", "Query"),
];

/// A whole page: the frame around `body`. `active` is the navigation entry
/// it belongs to.
pub fn page(title: &str, who: &Session, active: &str, body: &str) -> Response {
    let mut nav = String::new();
    for (path, label) in NAV {
        let current = if *path == active {
            r#" aria-current="page""#
        } else {
            ""
        };
        nav.push_str(&format!(r#"<a href="{path}"{current}>{label}</a>"#));
    }
    let role = format!("{:?}", who.role).to_lowercase();
    html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · ThreatPilot</title>
<link rel="stylesheet" href="/console/assets/console.css">
<script src="/console/assets/console.js" defer></script>
</head>
<body data-events="/console/events">
<header><span class="brand">ThreatPilot</span><nav>{nav}</nav>
<form class="who" method="post" action="/console/logout"><span id="who" data-role="{role}">{name} ({role})</span>
<input type="hidden" name="csrf" value="{csrf}"><button type="submit">Log out</button></form></header>
<main>
<h1>{title}</h1>
{body}
</main>
</body></html>
"#,
        title = esc(title),
        name = esc(&who.name),
        csrf = attr(&who.csrf),
    ))
}

/// An HTML answer.
pub fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// A plain page for errors, in the frame when someone is logged in.
pub fn problem(status: StatusCode, who: Option<&Session>, text: &str) -> Response {
    let body = format!(r#"<p class="error">{}</p>"#, esc(text));
    let mut r = match who {
        Some(w) => page(status.canonical_reason().unwrap_or("Error"), w, "", &body),
        None => html(format!(
            "<!doctype html><html><head><title>{0}</title></head><body><h1>{0}</h1>{body}</body></html>",
            status.canonical_reason().unwrap_or("Error")
        )),
    };
    *r.status_mut() = status;
    r
}

/// A value for a quoted attribute (the same escaping as content).
pub fn attr(s: &str) -> String {
    esc(s)
}

/// A query-string component.
pub fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `2026-12-01 16:05:03Z`.
pub fn stamp(ms: i64) -> String {
    let t = crate::time::format_rfc3339(ms);
    // 2026-12-01T16:05:03.123Z → 2026-12-01 16:05:03Z
    let t = t.replacen('T', " ", 1);
    match t.find('.') {
        Some(dot) => format!("{}Z", &t[..dot]),
        None => t,
    }
}

/// A time as an element the script keeps relative ("3 min ago").
pub fn when(ms: i64) -> String {
    format!(
        r#"<time datetime="{}" title="{}">{}</time>"#,
        crate::time::format_rfc3339(ms),
        stamp(ms),
        stamp(ms)
    )
}

/// A countdown to `ms`, which the script ticks down each second.
pub fn countdown(ms: i64, now_ms: i64) -> String {
    format!(
        r#"<span class="countdown" data-until="{ms}">{}</span>"#,
        remaining(ms - now_ms)
    )
}

/// `4m 05s left`, or `expired`.
pub fn remaining(ms: i64) -> String {
    if ms <= 0 {
        return "expired".into();
    }
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s left"),
        60..3600 => format!("{}m {:02}s left", s / 60, s % 60),
        _ => format!("{}h {:02}m left", s / 3600, (s % 3600) / 60),
    }
}

/// A small coloured label; `kind` picks the colour (a severity, a status).
pub fn badge(kind: &str, text: &str) -> String {
    let class: String = kind
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    format!(r#"<span class="badge b-{class}">{}</span>"#, esc(text))
}

/// A table; cells are HTML already (escaped by whoever built them).
pub fn table(id: &str, heads: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return format!(r#"<p class="empty" id="{id}">{}</p>"#, esc(empty));
    }
    let mut s = format!(r#"<table id="{id}"><thead><tr>"#);
    for h in heads {
        s.push_str(&format!("<th>{}</th>", esc(h)));
    }
    s.push_str("</tr></thead><tbody>");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            s.push_str("<td>");
            s.push_str(c);
            s.push_str("</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

/// A section the script refreshes in place when the pipeline changes.
pub fn live(id: &str, inner: &str) -> String {
    format!(r#"<section id="{id}" data-live>{inner}</section>"#)
}

/// The buttons for an action that waits for a person, for those who may:
/// approve or reject a pending one; confirm a verification (or reject it,
/// which rolls the action back).
pub fn decide_forms(who: &Session, action_id: &str, back: &str, confirming: bool) -> String {
    if !who.may(Need::Respond) {
        return String::new();
    }
    let id = attr(action_id);
    let csrf = attr(&who.csrf);
    let back = attr(back);
    let (yes, yes_class, no, no_class) = if confirming {
        ("Confirm", "confirm", "Roll back", "rollback")
    } else {
        ("Approve", "approve", "Reject", "reject")
    };
    format!(
        r#"<form class="decide" method="post" action="/console/actions/{id}/approve"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="back" value="{back}"><button type="submit" class="{yes_class}" data-action="{id}">{yes}</button></form>
<form class="decide" method="post" action="/console/actions/{id}/reject"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="back" value="{back}"><input type="text" name="reason" placeholder="reason" maxlength="500"><button type="submit" class="{no_class}" data-action="{id}">{no}</button></form>"#
    )
}

/// Shortens a value for a table cell (whole characters).
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_reads_like_a_clock() {
        assert_eq!(remaining(-5), "expired");
        assert_eq!(remaining(9_500), "9s left");
        assert_eq!(remaining(245_000), "4m 05s left");
        assert_eq!(remaining(7_380_000), "2h 03m left");
        assert_eq!(stamp(0), "1970-01-01 00:00:00Z");
    }

    #[test]
    fn badges_take_only_a_class_safe_kind() {
        assert_eq!(
            badge("hi\"><script>", "<b>"),
            r#"<span class="badge b-hiscript">&lt;b&gt;</span>"#
        );
    }
}
