//! Daily reports: those the schedule wrote (`report: {dir}`), and any day's
//! made on demand from the store with the same code. A report is one
//! self-contained HTML file with inline CSS; it is shown in a sandboxed
//! frame under its own policy (styles only: no script, nothing fetched).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::NaiveDate;

use super::page::{self, esc, table};
use crate::api::ApiState;

/// Where the schedule writes reports, and how it makes them.
#[derive(Clone, Debug)]
pub struct ReportsAt {
    pub dir: std::path::PathBuf,
    pub timezone: chrono_tz::Tz,
    pub geoip: Vec<String>,
}

const REPORT_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'";

/// Days with a written report, newest first.
fn written(dir: &std::path::Path) -> Vec<NaiveDate> {
    let mut days: Vec<NaiveDate> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            NaiveDate::parse_from_str(name.strip_suffix(".html")?, "%Y-%m-%d").ok()
        })
        .collect();
    days.sort_unstable_by(|a, b| b.cmp(a));
    days
}

#[derive(serde::Deserialize, Default)]
pub(super) struct DayQuery {
    day: Option<String>,
}

pub(super) async fn list(
    State(s): State<Arc<ApiState>>,
    super::Who(who): super::Who,
    Query(q): Query<DayQuery>,
) -> Response {
    if let Some(day) = q.day.as_deref().filter(|d| !d.is_empty()) {
        return match NaiveDate::parse_from_str(day, "%Y-%m-%d") {
            Ok(d) => Redirect::to(&format!("/console/reports/{d}")).into_response(),
            Err(_) => page::problem(
                StatusCode::BAD_REQUEST,
                Some(&who),
                &format!("{day:?} is not a day (YYYY-MM-DD)."),
            ),
        };
    }
    let Some(c) = s.console.as_ref() else {
        return (StatusCode::NOT_FOUND, "").into_response();
    };
    let mut body = String::new();
    match &c.ctx.reports {
        Some(r) => {
            let rows: Vec<Vec<String>> = written(&r.dir)
                .iter()
                .take(400)
                .map(|d| {
                    vec![
                        format!(r#"<a href="/console/reports/{d}">{d}</a>"#),
                        format!(r#"<a href="/console/reports/{d}/raw">HTML</a>"#),
                    ]
                })
                .collect();
            body.push_str(&format!(
                r#"<p class="sub">Written each day to <code>{}</code> ({}).</p>{}"#,
                esc(&r.dir.display().to_string()),
                esc(r.timezone.name()),
                table("reports-table", &["Day", "File"], &rows, "No report written yet.")
            ));
        }
        None => body.push_str(
            r#"<p class="note">This pipeline has no report schedule (<code>report:</code>); days can still be reported on demand.</p>"#,
        ),
    }
    if c.ctx.store.is_some() {
        let today = chrono::Utc::now().date_naive();
        body.push_str(&format!(
            r#"<h2>Any day, on demand</h2><form class="filters" method="get" action="/console/reports"><label>Day <input type="date" name="day" value="{today}"></label><button type="submit">Make the report</button></form>"#
        ));
    } else {
        body.push_str(r#"<p class="note">No store in this pipeline: reports on demand need a parquet or clickhouse sink.</p>"#);
    }
    page::page("Daily reports", &who, "/console/reports", &body)
}

fn day_of(date: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()
}

pub(super) async fn view(super::Who(who): super::Who, Path(date): Path<String>) -> Response {
    let Some(d) = day_of(&date) else {
        return page::problem(StatusCode::NOT_FOUND, Some(&who), "Not a day (YYYY-MM-DD).");
    };
    let body = format!(
        r#"<p><a href="/console/reports">All reports</a> · <a href="/console/reports/{d}/raw">Open alone</a></p><iframe class="report" id="report-frame" sandbox src="/console/reports/{d}/raw" title="Daily report {d}"></iframe>"#
    );
    page::page(
        &format!("Daily report {d}"),
        &who,
        "/console/reports",
        &body,
    )
}

pub(super) async fn raw(
    State(s): State<Arc<ApiState>>,
    super::Who(who): super::Who,
    Path(date): Path<String>,
) -> Response {
    let Some(d) = day_of(&date) else {
        return page::problem(StatusCode::NOT_FOUND, Some(&who), "Not a day (YYYY-MM-DD).");
    };
    let Some(c) = s.console.as_ref() else {
        return (StatusCode::NOT_FOUND, "").into_response();
    };
    let file = c
        .ctx
        .reports
        .as_ref()
        .map(|r| r.dir.join(format!("{d}.html")))
        .filter(|p| p.is_file());
    let html = match file {
        Some(p) => match tokio::fs::read_to_string(&p).await {
            Ok(t) => t,
            Err(e) => {
                return page::problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Some(&who),
                    &format!("cannot read {}: {e}", p.display()),
                );
            }
        },
        None => {
            let Some(store) = &c.ctx.store else {
                return page::problem(
                    StatusCode::NOT_FOUND,
                    Some(&who),
                    "No report was written for that day, and there is no store to make one from.",
                );
            };
            let (tz, geoip) = c
                .ctx
                .reports
                .as_ref()
                .map_or((chrono_tz::UTC, Vec::new()), |r| {
                    (r.timezone, r.geoip.clone())
                });
            let made = tokio::time::timeout(
                Duration::from_secs(60),
                crate::report::schedule::render(store, tz, &geoip, &c.ctx.detectors, d),
            )
            .await;
            match made {
                Ok(Ok((_, _, html))) => html,
                Ok(Err(e)) => {
                    return page::problem(
                        StatusCode::BAD_GATEWAY,
                        Some(&who),
                        &format!("the report could not be made: {e}"),
                    );
                }
                Err(_) => {
                    return page::problem(
                        StatusCode::GATEWAY_TIMEOUT,
                        Some(&who),
                        "the report took more than 60 s to make",
                    );
                }
            }
        }
    };
    let mut r = page::html(html);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(REPORT_CSP),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    r
}
