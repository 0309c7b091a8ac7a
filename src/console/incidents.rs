//! Incidents: the list, and one incident whole: its findings with their
//! evidence, its timeline (the job tail, followed live over server-sent
//! events), its actions with decisions and reasons and the buttons to
//! approve or reject those that wait, and the analysis text when there is
//! one.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::response::sse::Event;

use super::overview::{INCIDENT_HEADS, incident_rows};
use super::page::{self, badge, countdown, esc, live, table, when};
use super::session::Session;
use crate::api::ApiState;
use crate::respond::action::{Action, ActionStatus};
use crate::respond::incident::Incident;

fn not_responding(who: &Session) -> Response {
    page::problem(
        StatusCode::NOT_FOUND,
        Some(who),
        "This pipeline does not respond (no respond section): it has no incidents.",
    )
}

/// Incidents a list shows at most.
const LISTED: usize = 500;

#[derive(serde::Deserialize, Default)]
pub(super) struct ListQuery {
    status: Option<String>,
}

pub(super) async fn list(
    State(s): State<Arc<ApiState>>,
    super::Who(who): super::Who,
    Query(q): Query<ListQuery>,
) -> Response {
    let Some(v) = &s.respond else {
        return not_responding(&who);
    };
    let status = q.status.filter(|x| !x.is_empty());
    let (page_of, total) = v.incidents_where(
        |i| status.as_deref().is_none_or(|st| i.status.as_str() == st),
        LISTED,
    );
    let shown: Vec<&Incident> = page_of.iter().collect();
    let mut filter = String::from(
        r#"<form class="filters" method="get" action="/console/incidents"><label>Status <select name="status"><option value="">any</option>"#,
    );
    for st in ["open", "mitigating", "mitigated", "resolved", "escalated"] {
        let sel = if status.as_deref() == Some(st) {
            " selected"
        } else {
            ""
        };
        filter.push_str(&format!(r#"<option{sel}>{st}</option>"#));
    }
    filter.push_str(r#"</select></label><button type="submit">Show</button></form>"#);
    let body = format!(
        r#"{filter}<p class="sub">{total} incidents{}, highest priority first.</p>{}"#,
        if total > LISTED {
            format!(", the first {LISTED} shown")
        } else {
            String::new()
        },
        live(
            "incident-list",
            &table(
                "incidents-table",
                INCIDENT_HEADS,
                &incident_rows(&shown),
                "No incidents."
            )
        )
    );
    page::page("Incidents", &who, "/console/incidents", &body)
}

pub(super) async fn detail(
    State(s): State<Arc<ApiState>>,
    super::Who(who): super::Who,
    Path(id): Path<String>,
) -> Response {
    let Some(v) = &s.respond else {
        return not_responding(&who);
    };
    let Some(i) = v.incident(&id) else {
        return page::problem(
            StatusCode::NOT_FOUND,
            Some(&who),
            &format!("No incident {id:?}."),
        );
    };
    let now = crate::time::now_ms();
    let actions = v.actions_of(&id);
    let mut body = String::new();
    body.push_str(&live("incident-facts", &facts(&i)));
    if let Some(text) = v.analysis(&id) {
        let paras: String = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("<p>{}</p>", esc(l)))
            .collect();
        body.push_str(&format!(
            r#"<section id="analysis"><h2>Analysis</h2><div class="analysis">{paras}</div><p class="sub">Advice written for people; nothing acts on it.</p></section>"#
        ));
    }
    let back = format!("/console/incidents/{id}");
    body.push_str(&live(
        "incident-actions",
        &actions_table(&who, &actions, now, &back),
    ));
    body.push_str(&timeline(&i));
    body.push_str(&findings(&s, v, &i));
    page::page(
        &format!("Incident {}", i.title),
        &who,
        "/console/incidents",
        &body,
    )
}

fn facts(i: &Incident) -> String {
    let mut rows = vec![
        ("Incident", format!("<code>{}</code>", esc(&i.incident_id))),
        ("Status", badge(i.status.as_str(), i.status.as_str())),
        ("Priority", format!("{:.1}", i.priority)),
        ("Severity", badge(i.severity.as_str(), i.severity.as_str())),
        ("Domain", esc(i.domain.as_str())),
        (
            "Classifications",
            esc(&i
                .classifications
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")),
        ),
        (
            "Offenders",
            i.offenders
                .iter()
                .map(|o| format!("<code>{}</code>", esc(o)))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        ("Opened", when(i.opened_ms)),
        ("Updated", when(i.updated_ms)),
    ];
    if let Some(svc) = &i.service {
        rows.push(("Service", esc(svc)));
    }
    if let Some(h) = &i.host {
        rows.push(("Host", esc(h)));
    }
    if let Some(t) = i.mitigated_ms {
        rows.push(("Mitigated", when(t)));
    }
    if let Some(t) = i.resolved_ms {
        rows.push(("Resolved", when(t)));
    }
    if let Some(r) = &i.escalated_reason {
        rows.push(("Escalated", esc(r)));
    }
    if let Some(k) = &i.jira_key {
        rows.push(("Jira", esc(k)));
    }
    if i.repeat_offender {
        rows.push(("Repeat offender", "yes".into()));
    }
    let mut s = String::from(r#"<dl class="facts">"#);
    for (k, v) in rows {
        s.push_str(&format!("<dt>{k}</dt><dd>{v}</dd>"));
    }
    s.push_str("</dl>");
    s
}

pub(super) fn actions_table(who: &Session, actions: &[Action], now: i64, back: &str) -> String {
    let rows: Vec<Vec<String>> = actions
        .iter()
        .map(|a| {
            let mut decision = badge(a.status.as_str(), a.status.as_str());
            if let Some(by) = &a.approved_by {
                decision.push_str(&format!(r#" <span class="sub">by {}</span>"#, esc(by)));
            }
            if a.status == ActionStatus::PendingApproval
                && let Some(t) = a.approval_expires_ms
            {
                decision.push(' ');
                decision.push_str(&countdown(t, now));
            }
            let mut reason = esc(&page::clip(&a.reason, 300));
            if let Some(vf) = &a.verification {
                reason.push_str(&format!(
                    r#"<br><span class="sub">verification: {}</span>"#,
                    esc(&page::clip(vf, 300))
                ));
            }
            vec![
                format!(
                    r#"<code class="action-id" data-status="{}">{}</code>"#,
                    a.status.as_str(),
                    esc(&a.action_id)
                ),
                esc(a.kind.as_str()),
                format!("<code>{}</code>", esc(&a.target)),
                badge(a.risk.as_str(), a.risk.as_str()),
                esc(a.mode.as_str()),
                decision,
                reason,
                match a.status {
                    ActionStatus::PendingApproval => {
                        page::decide_forms(who, &a.action_id, back, false)
                    }
                    ActionStatus::AwaitingConfirmation => {
                        page::decide_forms(who, &a.action_id, back, true)
                    }
                    _ => String::new(),
                },
            ]
        })
        .collect();
    format!(
        "<h2>Actions</h2>{}",
        table(
            "actions-table",
            &[
                "Action", "Kind", "Target", "Risk", "Mode", "Decision", "Reason", ""
            ],
            &rows,
            "No actions were planned for this incident."
        )
    )
}

/// The timeline as it stands; the script appends what the tail streams.
fn timeline(i: &Incident) -> String {
    let mut s = format!(
        r#"<section id="timeline"><h2>Timeline <span class="live-dot" title="live"></span></h2><ol class="tail" id="tail" data-tail="/console/incidents/{}/tail">"#,
        page::attr(&i.incident_id)
    );
    for e in &i.timeline {
        s.push_str(&tail_item(e.at_ms, &e.phase, &e.text));
    }
    s.push_str("</ol></section>");
    s
}

fn tail_item(at_ms: i64, phase: &str, text: &str) -> String {
    format!(
        r#"<li data-key="{at_ms}|{}|{}">{} {} {}</li>"#,
        page::attr(phase),
        page::attr(text),
        when(at_ms),
        badge(phase, phase),
        esc(text)
    )
}

/// The incident's findings with a few evidence lines each.
fn findings(s: &ApiState, v: &crate::respond::runtime::View, i: &Incident) -> String {
    let mut out = String::from(r#"<section id="incident-findings"><h2>Findings</h2>"#);
    let fallback = v.evidence_of(i);
    let mut shown = 0;
    for id in i.finding_ids.iter().rev().take(20) {
        let Some(versions) = s.hub.get(id) else {
            continue;
        };
        let Some(f) = versions.last() else { continue };
        shown += 1;
        out.push_str(&format!(
            r#"<article class="finding"><h3><a href="/console/findings/{}">{}</a> {} <span class="sub">{} · {} events · {}</span></h3>"#,
            page::attr(&f.finding_id),
            esc(&f.title),
            badge(f.severity.as_str(), f.severity.as_str()),
            esc(&f.detector.id),
            f.metrics.event_count,
            page::stamp(f.first_seen),
        ));
        out.push_str(&evidence(&f.evidence));
        out.push_str("</article>");
    }
    if shown == 0 && !fallback.is_empty() {
        out.push_str(&evidence(&fallback));
    } else if shown == 0 {
        out.push_str(r#"<p class="empty">The findings have left the console's memory; the store keeps them (see Query).</p>"#);
    }
    out.push_str("</section>");
    out
}

pub(super) fn evidence(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut s = String::from(r#"<ul class="evidence">"#);
    for l in lines.iter().take(10) {
        s.push_str(&format!(
            "<li><code>{}</code></li>",
            esc(&page::clip(l, 2000))
        ));
    }
    s.push_str("</ul>");
    s
}

/// The job tail as the API streams it, every entry as a `tail` event (the
/// script de-duplicates against what the page shows).
pub(super) async fn tail(
    State(s): State<Arc<ApiState>>,
    _: super::Who,
    Path(id): Path<String>,
) -> Response {
    crate::api::respond::tail_stream(&s, id, tail_event)
}

fn tail_event(v: &serde_json::Value) -> Event {
    Event::default().event("tail").data(v.to_string())
}
