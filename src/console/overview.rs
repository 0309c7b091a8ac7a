//! The overview: what needs a person now (pending approvals with their
//! expiry, open incidents by priority), what the pipeline found in the
//! last day (findings per hour by domain, drawn as the report draws it),
//! what response did (actions by decision) and whether any responder's
//! circuit breaker is open.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;

use super::page::{self, badge, countdown, esc, live, table, when};
use super::session::Session;
use crate::api::ApiState;
use crate::respond::action::{Action, ActionStatus};
use crate::respond::incident::{Incident, IncidentStatus};

const HOUR_MS: i64 = 3_600_000;

/// Rows a list on the overview shows (the count says how many there are).
const SHOWN: usize = 50;

pub(super) async fn page(State(s): State<Arc<ApiState>>, super::Who(who): super::Who) -> Response {
    let now = crate::time::now_ms();
    let mut body = String::new();
    match &s.respond {
        Some(v) => {
            let (waiting, waiting_total) =
                v.actions_where(|a| a.status == ActionStatus::PendingApproval, SHOWN);
            let (open, open_total) =
                v.incidents_where(|i| i.status != IncidentStatus::Resolved, SHOWN);
            body.push_str(&live(
                "pending",
                &pending(&who, &waiting, waiting_total, now),
            ));
            body.push_str(&live("open-incidents", &open_incidents(&open, open_total)));
            body.push_str(&live("findings-per-hour", &per_hour(&s, now)));
            body.push_str(&live(
                "actions-24h",
                &by_decision(&v.action_counts_since(now - 24 * HOUR_MS)),
            ));
            body.push_str(&live("breakers", &breakers(&v.breakers())));
        }
        None => {
            body.push_str(r#"<p class="note">This pipeline does not respond (no <code>respond</code> section): no incidents or actions.</p>"#);
            body.push_str(&live("findings-per-hour", &per_hour(&s, now)));
        }
    }
    page::page("Overview", &who, "/console", &body)
}

fn pending(who: &Session, actions: &[Action], total: usize, now: i64) -> String {
    let rows: Vec<Vec<String>> = actions
        .iter()
        .map(|a| {
            vec![
                format!(
                    r#"<a href="/console/incidents/{}">{}</a>"#,
                    page::attr(&a.incident_id),
                    esc(&a.incident_id)
                ),
                esc(a.kind.as_str()),
                format!("<code>{}</code>", esc(&a.target)),
                badge(a.risk.as_str(), a.risk.as_str()),
                a.approval_expires_ms
                    .map_or("—".into(), |t| countdown(t, now)),
                page::decide_forms(who, &a.action_id, "/console", false),
            ]
        })
        .collect();
    format!(
        r#"<h2>Pending approvals <span class="count">{total}</span></h2>{}{}"#,
        more(
            actions.len(),
            total,
            "/console/actions?status=pending_approval"
        ),
        table(
            "pending-table",
            &["Incident", "Action", "Target", "Risk", "Expires", ""],
            &rows,
            "Nothing waits for approval."
        )
    )
}

pub(super) fn incident_rows(list: &[&Incident]) -> Vec<Vec<String>> {
    list.iter()
        .map(|i| {
            vec![
                format!("{:.1}", i.priority),
                format!(
                    r#"<a href="/console/incidents/{}">{}</a>"#,
                    page::attr(&i.incident_id),
                    esc(&page::clip(&i.title, 120))
                ),
                badge(i.severity.as_str(), i.severity.as_str()),
                esc(i.domain.as_str()),
                format!("<code>{}</code>", esc(&i.offender_value)),
                badge(i.status.as_str(), i.status.as_str()),
                i.finding_ids.len().to_string(),
                when(i.opened_ms),
            ]
        })
        .collect()
}

pub(super) const INCIDENT_HEADS: &[&str] = &[
    "Priority", "Incident", "Severity", "Domain", "Offender", "Status", "Findings", "Opened",
];

fn open_incidents(open: &[Incident], total: usize) -> String {
    let shown: Vec<&Incident> = open.iter().collect();
    format!(
        r#"<h2>Open incidents <span class="count">{total}</span></h2>{}{}"#,
        more(open.len(), total, "/console/incidents"),
        table(
            "incidents-table",
            INCIDENT_HEADS,
            &incident_rows(&shown),
            "No open incidents."
        )
    )
}

/// "The first 50 of 1,234: all of them" when a list is cut.
fn more(shown: usize, total: usize, all: &str) -> String {
    if shown >= total {
        return String::new();
    }
    format!(r#"<p class="sub">The first {shown} of {total}: <a href="{all}">all of them</a>.</p>"#)
}

/// Findings per hour by domain over the 24 hours up to the newest finding
/// (or now): a replayed day shows its own day.
fn per_hour(s: &ApiState, now: i64) -> String {
    let latest = s.hub.latest();
    let newest = latest.iter().map(|f| f.last_seen).max().unwrap_or(now);
    let end = (newest / HOUR_MS + 1) * HOUR_MS;
    let start = end - 24 * HOUR_MS;
    let mut hours: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut counted = 0u64;
    for f in &latest {
        if f.first_seen < start || f.first_seen >= end {
            continue;
        }
        let h = ((f.first_seen - start) / HOUR_MS) as usize;
        hours
            .entry(f.domain.as_str().to_owned())
            .or_insert_with(|| vec![0; 24])[h] += 1;
        counted += 1;
    }
    let chart = crate::report::svg::stacked_hours(&hours, |h| {
        let t = start + h as i64 * HOUR_MS;
        format!("{:02}", (t / HOUR_MS) % 24)
    });
    format!(
        r#"<h2>Findings per hour by domain <span class="count">{counted}</span></h2><p class="sub">{} to {} (UTC, by first event)</p>{chart}"#,
        page::stamp(start),
        page::stamp(end),
    )
}

fn by_decision(counts: &BTreeMap<&'static str, u64>) -> String {
    let items: Vec<(String, f64, String)> = counts
        .iter()
        .map(|(k, n)| ((*k).to_owned(), *n as f64, n.to_string()))
        .collect();
    let chart = if items.is_empty() {
        r#"<p class="empty">No actions in the last 24 hours.</p>"#.to_owned()
    } else {
        crate::report::svg::bars("chart-actions", "Actions by decision", &items, "#4e79a7")
    };
    format!("<h2>Actions in the last 24 hours by decision</h2>{chart}")
}

fn breakers(b: &BTreeMap<String, crate::respond::policy::Breaker>) -> String {
    let rows: Vec<Vec<String>> = b
        .iter()
        .map(|(name, br)| {
            vec![
                esc(name),
                if br.open {
                    badge("open", "open")
                } else {
                    badge("closed", "closed")
                },
                br.failures.to_string(),
                br.failed_verifications.to_string(),
                esc(&br.reason),
            ]
        })
        .collect();
    format!(
        "<h2>Responder circuit breakers</h2>{}",
        table(
            "breakers-table",
            &[
                "Connector",
                "State",
                "Failures",
                "Failed verifications",
                "Reason"
            ],
            &rows,
            "No connector has run an action yet."
        )
    )
}
