//! The report as one self-contained HTML file: inline CSS, SVG charts
//! (findings per hour stacked by domain, top offenders, detect and
//! mitigate times), no scripts and nothing fetched, so it reads the same
//! in a browser, a mail client or an archive. Every value from a log goes
//! through [`crate::escape::html`].

use std::fmt::Write;

use super::{ActionLine, Report, duration, svg, trend};
use crate::escape::html as esc;

const STYLE: &str = "body{font-family:-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:#222;max-width:820px;margin:24px auto;padding:0 16px;line-height:1.4}\
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:14px;margin-bottom:4px}\
table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}th,td{border-bottom:1px solid #eee;padding:4px 6px;text-align:left;vertical-align:top}\
th{background:#f6f6f6}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
.lead{font-size:15px}.muted{color:#666}.sev-critical{color:#b00020;font-weight:600}.sev-high{color:#c25400;font-weight:600}\
.analysis{background:#f4f7fb;border-left:4px solid #4e79a7;padding:8px 12px;white-space:pre-wrap}\
ul.timeline{font-size:13px;margin:4px 0 12px 0}code{font-size:12px;word-break:break-all}";

pub fn render(r: &Report, day: &super::Day) -> String {
    let mut s = String::with_capacity(32 * 1024);
    let actions: u64 = r.actions_by_status.values().sum();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>ThreatPilot daily report {date}</title><style>{STYLE}</style></head><body>\n\
<h1>ThreatPilot daily report: {date}</h1><p class=\"muted\">{tz}, {from} to {to}</p>\n",
        date = esc(&r.date),
        tz = esc(&r.timezone),
        from = day.stamp(r.start_ms),
        to = day.stamp(r.end_ms),
    );
    let _ = writeln!(
        s,
        "<p class=\"lead\"><b>{} findings</b> (previous day {}, {}; 7-day average {:.1}, {}), <b>{} incidents</b>, <b>{} actions</b>.</p>",
        r.findings,
        r.findings_previous_day,
        esc(&trend(r.findings as f64, r.findings_previous_day as f64)),
        r.findings_week_average,
        esc(&trend(r.findings as f64, r.findings_week_average)),
        r.incidents_total,
        actions
    );
    if let Some(a) = &r.analysis {
        let _ = writeln!(
            s,
            "<h2>Analysis</h2><div class=\"analysis\">{}</div>",
            esc_multiline(a)
        );
    }

    s.push_str("<h2>Findings per hour</h2>\n");
    if r.per_hour.is_empty() {
        s.push_str("<p>No findings.</p>\n");
    } else {
        s.push_str(&svg::stacked_hours(&r.per_hour, |h| {
            day.clock(r.start_ms + h as i64 * 3_600_000)
        }));
        s.push('\n');
    }

    s.push_str("<h2>Findings by domain, classification and severity</h2>\n");
    if r.groups.is_empty() {
        s.push_str("<p>No findings on this day or the seven before.</p>\n");
    } else {
        s.push_str("<table><tr><th>domain</th><th>classification</th><th>severity</th><th class=\"n\">today</th><th class=\"n\">previous day</th><th class=\"n\">7-day average</th><th>trend</th></tr>\n");
        for g in &r.groups {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}</td><td class=\"sev-{}\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}</td><td>{}</td></tr>",
                esc(&g.domain),
                esc(&g.classification),
                esc(&g.severity),
                esc(&g.severity),
                g.today,
                g.previous_day,
                g.week_average,
                esc(&trend(g.today as f64, g.week_average))
            );
        }
        s.push_str("</table>\n");
    }

    s.push_str("<h2>Top offenders</h2>\n");
    if r.offenders.is_empty() {
        s.push_str("<p>None.</p>\n");
    }
    for (kind, list) in &r.offenders {
        let items: Vec<(String, f64, String)> = list
            .iter()
            .map(|o| {
                let mut label = o.value.clone();
                let geo: Vec<&str> = [o.country.as_deref(), o.asn.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect();
                if !geo.is_empty() {
                    label = format!("{label} ({})", geo.join(", "));
                }
                (
                    label,
                    o.findings as f64,
                    format!("{} ({} events)", o.findings, o.events),
                )
            })
            .collect();
        let _ = writeln!(s, "<h3>{}</h3>", esc(kind));
        s.push_str(&svg::bars(
            &format!("chart-offenders-{kind}"),
            &format!("Top offenders: {kind}"),
            &items,
            "#e15759",
        ));
        s.push('\n');
    }

    s.push_str("<h2>Time to detect and to mitigate</h2>\n");
    let mut times = Vec::new();
    for (name, p) in [
        ("detect", &r.time_to_detect),
        ("mitigate", &r.time_to_mitigate),
    ] {
        if p.count > 0 {
            times.push((format!("{name} p50"), p.p50_ms as f64, duration(p.p50_ms)));
            times.push((format!("{name} p90"), p.p90_ms as f64, duration(p.p90_ms)));
        }
    }
    if times.is_empty() {
        s.push_str("<p>Nothing detected or mitigated.</p>\n");
    } else {
        s.push_str(&svg::bars(
            "chart-times",
            "Time to detect and to mitigate",
            &times,
            "#76b7b2",
        ));
        let _ = writeln!(
            s,
            "<p class=\"muted\">Detect: first event → finding, {} findings. Mitigate: incident opened → mitigated, {} incidents.</p>",
            r.time_to_detect.count, r.time_to_mitigate.count
        );
    }

    let _ = writeln!(s, "<h2>Incidents</h2><p>{} opened.</p>", r.incidents_total);
    if !r.incidents.is_empty() {
        s.push_str("<table><tr><th>opened</th><th>incident</th><th>severity</th><th>status</th><th>offender</th><th>mitigated</th><th>resolved</th><th>ticket</th></tr>\n");
        for i in &r.incidents {
            let at = |t: Option<i64>| t.map(|t| day.clock(t)).unwrap_or_else(|| "–".into());
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td><code>{}</code> {}</td><td class=\"sev-{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                day.clock(i.opened_ms),
                esc(&i.incident_id),
                esc(&i.title),
                esc(&i.severity),
                esc(&i.severity),
                esc(&i.status),
                esc(&i.offender),
                at(i.mitigated_ms),
                at(i.resolved_ms),
                esc(&i.jira_key)
            );
        }
        s.push_str("</table>\n");
        for i in r.incidents.iter().filter(|i| !i.timeline.is_empty()) {
            let _ = writeln!(
                s,
                "<h3><code>{}</code> {}</h3><ul class=\"timeline\">",
                esc(&i.incident_id),
                esc(&i.title)
            );
            for t in &i.timeline {
                let _ = writeln!(
                    s,
                    "<li>{} <b>{}</b>: {}</li>",
                    day.clock(t.at_ms),
                    esc(&t.phase),
                    esc(&t.text)
                );
            }
            s.push_str("</ul>\n");
        }
    }

    s.push_str("<h2>Actions</h2>\n");
    if r.actions_by_status.is_empty() {
        s.push_str("<p>None proposed.</p>\n");
    } else {
        s.push_str("<table><tr><th>status</th><th class=\"n\">actions</th></tr>\n");
        for (st, n) in &r.actions_by_status {
            let _ = writeln!(s, "<tr><td>{}</td><td class=\"n\">{n}</td></tr>", esc(st));
        }
        s.push_str("</table>\n");
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
    let _ = writeln!(
        s,
        "<h2>Noise reduction</h2><table><tr><th class=\"n\">lines</th><th class=\"n\">events after dedup</th><th class=\"n\">findings</th><th class=\"n\">incidents</th></tr>\
<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr></table>",
        n.lines, n.events, n.findings, n.incidents
    );

    let _ = writeln!(
        s,
        "<h2>New log templates</h2><p>{} first seen.</p>",
        r.new_templates_total
    );
    if !r.new_templates.is_empty() {
        s.push_str("<table><tr><th>template</th><th>dataset</th><th>text</th></tr>\n");
        for t in &r.new_templates {
            let _ = writeln!(
                s,
                "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>",
                esc(&t.template_id),
                esc(&t.dataset),
                esc(&t.text)
            );
        }
        s.push_str("</table>\n");
    }

    s.push_str("<h2>Detectors</h2>\n");
    if !r.detectors_busiest.is_empty() {
        s.push_str("<table><tr><th>detector</th><th class=\"n\">findings</th></tr>\n");
        for (d, n) in &r.detectors_busiest {
            let _ = writeln!(s, "<tr><td>{}</td><td class=\"n\">{n}</td></tr>", esc(d));
        }
        s.push_str("</table>\n");
    }
    if r.detectors_silent.is_empty() {
        s.push_str("<p>Every detector raised a finding in the last 30 days.</p>\n");
    } else {
        let names: Vec<String> = r.detectors_silent.iter().map(|d| esc(d)).collect();
        let _ = writeln!(
            s,
            "<p>Silent for 30 days ({}): {}.</p>",
            names.len(),
            names.join(", ")
        );
    }
    s.push_str("</body></html>\n");
    s
}

fn esc_multiline(text: &str) -> String {
    text.lines().map(esc).collect::<Vec<_>>().join("\n")
}

fn action_table(s: &mut String, title: &str, list: &[ActionLine], day: &super::Day) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "<h3>{title}</h3><table><tr><th>proposed</th><th>action</th><th>target</th><th>status</th><th>reason</th><th>expires</th></tr>"
    );
    for a in list {
        let expires = if a.expires_ms > 0 {
            day.stamp(a.expires_ms)
        } else {
            "–".into()
        };
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td><code>{}</code> {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            day.stamp(a.created_ms),
            esc(&a.action_id),
            esc(&a.kind),
            esc(&a.target),
            esc(&a.status),
            esc(&a.reason),
            expires
        );
    }
    s.push_str("</table>\n");
}
