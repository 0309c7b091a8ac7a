//! Findings: the API's list with its filters, as a table, and one finding
//! with its evidence, context and the versions it went through.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::page::{self, badge, esc, live, table, when};
use crate::api::ApiState;
use crate::finding::{Finding, Severity};
use crate::hub::ListQuery;

/// The filters as a form sends them (empty fields are no filter).
#[derive(serde::Deserialize, Default)]
pub(super) struct Filters {
    #[serde(default)]
    status: String,
    #[serde(default)]
    domain: String,
    #[serde(default)]
    classification: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    detector: String,
    #[serde(default)]
    offender: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    limit: Option<usize>,
}

impl Filters {
    fn query(&self) -> Result<ListQuery, String> {
        let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let severity = match self.severity.as_str() {
            "" => None,
            s => Some(
                serde_json::from_value::<Severity>(serde_json::Value::String(s.into()))
                    .map_err(|_| format!("severity {s:?} is not low, medium, high or critical"))?,
            ),
        };
        let q = ListQuery {
            status: some(&self.status),
            domain: some(&self.domain),
            classification: some(&self.classification),
            severity,
            detector: some(&self.detector),
            offender: some(&self.offender),
            since: some(&self.since),
            limit: Some(self.limit.unwrap_or(200).clamp(1, 1000)),
        };
        q.since_ms()?;
        Ok(q)
    }
}

fn select(name: &str, have: &str, options: &[&str]) -> String {
    let mut s = format!(r#"<label>{name} <select name="{name}"><option value="">any</option>"#);
    for o in options {
        let sel = if *o == have { " selected" } else { "" };
        s.push_str(&format!("<option{sel}>{o}</option>"));
    }
    s.push_str("</select></label>");
    s
}

fn text(name: &str, have: &str, hint: &str) -> String {
    format!(
        r#"<label>{name} <input type="text" name="{name}" value="{}" placeholder="{hint}"></label>"#,
        page::attr(have)
    )
}

pub(super) async fn list(
    State(s): State<Arc<ApiState>>,
    super::Who(who): super::Who,
    Query(f): Query<Filters>,
) -> Response {
    let form = format!(
        r#"<form class="filters" method="get" action="/console/findings">{}{}{}{}{}{}{}<button type="submit">Filter</button></form>"#,
        select(
            "status",
            &f.status,
            &["open", "updated", "resolved", "suppressed"]
        ),
        select("domain", &f.domain, &["identity", "http", "infrastructure"]),
        select(
            "severity",
            &f.severity,
            &["low", "medium", "high", "critical"]
        ),
        text("detector", &f.detector, "identity.ssh_brute_force"),
        text("classification", &f.classification, ""),
        text("offender", &f.offender, "203.0.113.7"),
        text("since", &f.since, "2026-12-01T00:00:00Z"),
    );
    let q = match f.query() {
        Ok(q) => q,
        Err(e) => {
            let mut r = page::page(
                "Findings",
                &who,
                "/console/findings",
                &format!(r#"{form}<p class="error">{}</p>"#, esc(&e)),
            );
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        }
    };
    let found = s.hub.list(&q);
    let (held, forgotten) = s.hub.counts();
    let rows: Vec<Vec<String>> = found.iter().map(|f| row(f)).collect();
    let body = format!(
        r#"{form}{}<p class="sub">{held} findings held here ({forgotten} older ones left for the store); newest first, at most {}.</p>"#,
        live(
            "findings-list",
            &table(
                "findings-table",
                &[
                    "Last seen",
                    "Finding",
                    "Severity",
                    "Status",
                    "Detector",
                    "Offender",
                    "Events"
                ],
                &rows,
                "No findings match."
            )
        ),
        q.limit.unwrap_or(200),
    );
    page::page("Findings", &who, "/console/findings", &body)
}

fn row(f: &Finding) -> Vec<String> {
    vec![
        when(f.last_seen),
        format!(
            r#"<a href="/console/findings/{}">{}</a>"#,
            page::attr(&f.finding_id),
            esc(&page::clip(&f.title, 120))
        ),
        badge(f.severity.as_str(), f.severity.as_str()),
        badge(f.status.as_str(), f.status.as_str()),
        esc(&f.detector.id),
        format!("<code>{}</code>", esc(&f.offender.value)),
        f.metrics.event_count.to_string(),
    ]
}

pub(super) async fn detail(
    State(s): State<Arc<ApiState>>,
    super::Who(who): super::Who,
    Path(id): Path<String>,
) -> Response {
    let Some(versions) = s.hub.get(&id).filter(|v| !v.is_empty()) else {
        return page::problem(
            StatusCode::NOT_FOUND,
            Some(&who),
            &format!("No finding {id:?} is held here (the store keeps every finding: see Query)."),
        );
    };
    let f = &versions[versions.len() - 1];
    let mut facts = vec![
        ("Finding", format!("<code>{}</code>", esc(&f.finding_id))),
        (
            "Detector",
            format!("{} v{}", esc(&f.detector.id), f.detector.version),
        ),
        ("Severity", badge(f.severity.as_str(), f.severity.as_str())),
        ("Confidence", format!("{:.2}", f.confidence)),
        ("Status", badge(f.status.as_str(), f.status.as_str())),
        ("Classification", esc(&f.classification)),
        (
            "Offender",
            format!(
                "{} <code>{}</code>",
                esc(&format!("{:?}", f.offender.kind).to_lowercase()),
                esc(&f.offender.value)
            ),
        ),
        ("First event", when(f.first_seen)),
        ("Last event", when(f.last_seen)),
        (
            "Measure",
            format!(
                "{} events, value {} against threshold {}",
                f.metrics.event_count, f.metrics.value, f.metrics.threshold
            ),
        ),
    ];
    if !f.attack.is_empty() {
        facts.push(("ATT&CK", esc(&f.attack.join(", "))));
    }
    if !f.targets.is_empty() {
        facts.push(("Targets", esc(&page::clip(&f.targets.join(", "), 500))));
    }
    if !f.recommended_actions.is_empty() {
        facts.push(("Recommended", esc(&f.recommended_actions.join(", "))));
    }
    let mut body = String::from(r#"<dl class="facts">"#);
    for (k, v) in facts {
        body.push_str(&format!("<dt>{}</dt><dd>{v}</dd>", esc(k)));
    }
    body.push_str("</dl><h2>Evidence</h2>");
    body.push_str(&super::incidents::evidence(&f.evidence));
    let ctx: Vec<Vec<String>> = f
        .context
        .iter()
        .map(|(k, v)| vec![format!("<code>{}</code>", esc(k)), esc(&page::clip(v, 500))])
        .collect();
    body.push_str("<h2>Context</h2>");
    body.push_str(&table(
        "context-table",
        &["Field", "Value"],
        &ctx,
        "No context.",
    ));
    let vrows: Vec<Vec<String>> = versions
        .iter()
        .rev()
        .map(|v| {
            vec![
                v.update_count.to_string(),
                when(v.emitted_at),
                badge(v.status.as_str(), v.status.as_str()),
                v.metrics.event_count.to_string(),
            ]
        })
        .collect();
    body.push_str("<h2>Versions</h2>");
    body.push_str(&table(
        "versions-table",
        &["Update", "Emitted", "Status", "Events"],
        &vrows,
        "",
    ));
    page::page(&f.title, &who, "/console/findings", &body)
}
