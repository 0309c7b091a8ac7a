//! The report as Markdown (CommonMark tables), for files, Slack, Jira and
//! terminals. Every value that came from a log goes through
//! [`crate::escape::markdown`], so no user name or URL adds a row, a
//! heading or markup.

use std::fmt::Write;

use super::{ActionLine, Report, duration, trend};
use crate::escape::markdown as md;

pub fn render(r: &Report, day: &super::Day) -> String {
    let mut s = String::new();
    let actions: u64 = r.actions_by_status.values().sum();
    let _ = writeln!(
        s,
        "# ThreatPilot daily report: {} ({})\n",
        r.date,
        md(&r.timezone)
    );
    let _ = writeln!(
        s,
        "**{} findings** (previous day {}, {}; 7-day average {:.1}, {}), **{} incidents**, **{} actions**.\n",
        r.findings,
        r.findings_previous_day,
        trend(r.findings as f64, r.findings_previous_day as f64),
        r.findings_week_average,
        trend(r.findings as f64, r.findings_week_average),
        r.incidents_total,
        actions
    );
    if let Some(a) = &r.analysis {
        s.push_str("## Analysis\n\n");
        for line in a.lines().filter(|l| !l.trim().is_empty()) {
            let _ = writeln!(s, "> {}", md(line.trim()));
        }
        s.push('\n');
    }

    s.push_str("## Findings by domain, classification and severity\n\n");
    if r.groups.is_empty() {
        s.push_str("No findings on this day or the seven before.\n\n");
    } else {
        s.push_str("| domain | classification | severity | today | previous day | 7-day average | trend |\n|---|---|---|---:|---:|---:|---|\n");
        for g in &r.groups {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.1} | {} |",
                md(&g.domain),
                md(&g.classification),
                md(&g.severity),
                g.today,
                g.previous_day,
                g.week_average,
                trend(g.today as f64, g.week_average)
            );
        }
        s.push('\n');
    }

    if !r.per_hour.is_empty() {
        s.push_str("## Findings per hour\n\n| hour |");
        for d in r.per_hour.keys() {
            let _ = write!(s, " {} |", md(d));
        }
        s.push_str("\n|---|");
        s.push_str(&"---:|".repeat(r.per_hour.len()));
        s.push('\n');
        let hours = r.per_hour.values().map(Vec::len).max().unwrap_or(0);
        for h in 0..hours {
            if r.per_hour.values().all(|v| v[h] == 0) {
                continue;
            }
            let _ = write!(s, "| {} |", day.clock(r.start_ms + h as i64 * 3_600_000));
            for v in r.per_hour.values() {
                let _ = write!(s, " {} |", v[h]);
            }
            s.push('\n');
        }
        s.push('\n');
    }

    s.push_str("## Top offenders\n\n");
    if r.offenders.is_empty() {
        s.push_str("None.\n\n");
    }
    for (kind, list) in &r.offenders {
        let geo = list.iter().any(|o| o.country.is_some() || o.asn.is_some());
        if geo {
            let _ = writeln!(
                s,
                "### {}\n\n| offender | country | AS | findings | events |\n|---|---|---|---:|---:|",
                md(kind)
            );
        } else {
            let _ = writeln!(
                s,
                "### {}\n\n| offender | findings | events |\n|---|---:|---:|",
                md(kind)
            );
        }
        for o in list {
            if geo {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} |",
                    md(&o.value),
                    md(o.country.as_deref().unwrap_or("–")),
                    md(o.asn.as_deref().unwrap_or("–")),
                    o.findings,
                    o.events
                );
            } else {
                let _ = writeln!(s, "| {} | {} | {} |", md(&o.value), o.findings, o.events);
            }
        }
        s.push('\n');
    }

    let _ = writeln!(s, "## Incidents\n\n{} opened.\n", r.incidents_total);
    if !r.incidents.is_empty() {
        s.push_str("| opened | incident | severity | status | offender | mitigated | resolved | ticket |\n|---|---|---|---|---|---|---|---|\n");
        for i in &r.incidents {
            let at = |t: Option<i64>| t.map(|t| day.clock(t)).unwrap_or_else(|| "–".into());
            let _ = writeln!(
                s,
                "| {} | {} {} | {} | {} | {} | {} | {} | {} |",
                day.clock(i.opened_ms),
                md(&i.incident_id),
                md(&i.title),
                md(&i.severity),
                md(&i.status),
                md(&i.offender),
                at(i.mitigated_ms),
                at(i.resolved_ms),
                md(&i.jira_key)
            );
        }
        s.push('\n');
        for i in r.incidents.iter().filter(|i| !i.timeline.is_empty()) {
            let _ = writeln!(s, "### {} {}\n", md(&i.incident_id), md(&i.title));
            for t in &i.timeline {
                let _ = writeln!(
                    s,
                    "- {} {}: {}",
                    day.clock(t.at_ms),
                    md(&t.phase),
                    md(&t.text)
                );
            }
            s.push('\n');
        }
    }

    s.push_str("## Actions\n\n");
    if r.actions_by_status.is_empty() {
        s.push_str("None proposed.\n\n");
    } else {
        s.push_str("| status | actions |\n|---|---:|\n");
        for (st, n) in &r.actions_by_status {
            let _ = writeln!(s, "| {} | {n} |", md(st));
        }
        s.push('\n');
    }
    action_table(
        &mut s,
        "Skipped, failed and rolled back",
        &r.actions_notable,
        day,
    );
    action_table(&mut s, "Approvals pending", &r.approvals_pending, day);
    action_table(&mut s, "Approvals expired", &r.approvals_expired, day);

    let n = &r.noise;
    s.push_str("## Noise reduction\n\n| lines | events after dedup | findings | incidents |\n|---:|---:|---:|---:|\n");
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} |\n",
        n.lines, n.events, n.findings, n.incidents
    );

    s.push_str(
        "## Time to detect and to mitigate\n\n| | count | p50 | p90 |\n|---|---:|---:|---:|\n",
    );
    for (name, p) in [
        ("first event → finding", &r.time_to_detect),
        ("incident opened → mitigated", &r.time_to_mitigate),
    ] {
        if p.count == 0 {
            let _ = writeln!(s, "| {name} | 0 | – | – |");
        } else {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} |",
                p.count,
                duration(p.p50_ms),
                duration(p.p90_ms)
            );
        }
    }
    s.push('\n');

    let _ = writeln!(
        s,
        "## New log templates\n\n{} first seen.\n",
        r.new_templates_total
    );
    if !r.new_templates.is_empty() {
        s.push_str("| template | dataset | text |\n|---|---|---|\n");
        for t in &r.new_templates {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                md(&t.template_id),
                md(&t.dataset),
                md(&t.text)
            );
        }
        s.push('\n');
    }

    s.push_str("## Detectors\n\n");
    if !r.detectors_busiest.is_empty() {
        s.push_str("| detector | findings |\n|---|---:|\n");
        for (d, n) in &r.detectors_busiest {
            let _ = writeln!(s, "| {} | {n} |", md(d));
        }
        s.push('\n');
    }
    if r.detectors_silent.is_empty() {
        s.push_str("Every detector raised a finding in the last 30 days.\n");
    } else {
        let names: Vec<String> = r.detectors_silent.iter().map(|d| md(d)).collect();
        let _ = writeln!(
            s,
            "Silent for 30 days ({}): {}.",
            names.len(),
            names.join(", ")
        );
    }
    s
}

fn action_table(s: &mut String, title: &str, list: &[ActionLine], day: &super::Day) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "### {title}\n\n| proposed | action | target | status | reason | expires |\n|---|---|---|---|---|---|"
    );
    for a in list {
        let expires = if a.expires_ms > 0 {
            day.stamp(a.expires_ms)
        } else {
            "–".into()
        };
        let _ = writeln!(
            s,
            "| {} | {} {} | {} | {} | {} | {} |",
            day.stamp(a.created_ms),
            md(&a.action_id),
            md(&a.kind),
            md(&a.target),
            md(&a.status),
            md(&a.reason),
            expires
        );
    }
    s.push('\n');
}
