//! The daily report (SPEC 11): what happened on one day, from the stored
//! tables of either store, as Markdown (Slack, Jira, terminals) and as one
//! self-contained HTML file with SVG charts (mail clients, browsers).
//!
//! ```text
//! Source (Parquet via DataFusion | ClickHouse) ─ SQL ─> Report ─> markdown | html
//! ```
//! Everything is gathered with aggregate queries both dialects share, so a
//! day of a million findings is a few grouped scans, and both stores give
//! the same report. Day boundaries are the report's time zone's midnights.
//! Findings are placed by their first event (event time), incidents by
//! when they were opened and actions by when they were proposed.

pub mod geo;
pub mod html;
pub mod markdown;
pub mod schedule;
pub mod source;
pub mod svg;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{NaiveDate, TimeZone};
use serde::Serialize;

use crate::respond::incident::TimelineEntry;
use source::{Row, Source, int, num, text};

const DAY_MS: i64 = 86_400_000;
/// Rows of each list shown (the counts above them are complete).
const LIST: usize = 10;
const INCIDENTS_SHOWN: usize = 25;
const ACTIONS_SHOWN: usize = 50;

/// The day a report covers, in its time zone.
#[derive(Clone, Debug)]
pub struct Day {
    pub date: NaiveDate,
    pub timezone: chrono_tz::Tz,
    /// [start, end) in epoch ms.
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Day {
    pub fn new(date: NaiveDate, timezone: chrono_tz::Tz) -> anyhow::Result<Day> {
        let midnight = |d: NaiveDate| -> anyhow::Result<i64> {
            let local = d
                .and_hms_opt(0, 0, 0)
                .ok_or_else(|| anyhow::anyhow!("no midnight on {d}"))?;
            // a midnight skipped by a clock change starts at the first
            // instant after it
            let at = timezone
                .from_local_datetime(&local)
                .earliest()
                .or_else(|| {
                    timezone
                        .from_local_datetime(&(local + chrono::Duration::hours(1)))
                        .earliest()
                })
                .ok_or_else(|| anyhow::anyhow!("{d} has no midnight in {timezone}"))?;
            Ok(at.timestamp_millis())
        };
        let next = date
            .succ_opt()
            .ok_or_else(|| anyhow::anyhow!("no day after {date}"))?;
        Ok(Day {
            date,
            timezone,
            start_ms: midnight(date)?,
            end_ms: midnight(next)?,
        })
    }

    /// The day `n` days before this one.
    pub fn before(&self, n: u64) -> anyhow::Result<Day> {
        let d = self
            .date
            .checked_sub_days(chrono::Days::new(n))
            .ok_or_else(|| anyhow::anyhow!("no day {n} days before {}", self.date))?;
        Day::new(d, self.timezone)
    }

    /// Local `HH:MM` of an instant.
    pub fn clock(&self, ms: i64) -> String {
        match self.timezone.timestamp_millis_opt(ms).single() {
            Some(t) => t.format("%H:%M").to_string(),
            None => String::new(),
        }
    }

    /// Local `YYYY-MM-DD HH:MM` of an instant.
    pub fn stamp(&self, ms: i64) -> String {
        match self.timezone.timestamp_millis_opt(ms).single() {
            Some(t) => t.format("%Y-%m-%d %H:%M").to_string(),
            None => String::new(),
        }
    }
}

/// Findings of one (domain, classification, severity) today, the day
/// before and on average over the seven days before.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Group {
    pub domain: String,
    pub classification: String,
    pub severity: String,
    pub today: u64,
    pub previous_day: u64,
    pub week_average: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Offender {
    pub kind: String,
    pub value: String,
    pub findings: u64,
    pub events: u64,
    /// ISO country code, where a geoip database knows the address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// `AS64500 Organisation`, likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IncidentLine {
    pub incident_id: String,
    pub title: String,
    pub status: String,
    pub severity: String,
    pub priority: f64,
    pub offender: String,
    pub opened_ms: i64,
    pub mitigated_ms: Option<i64>,
    pub resolved_ms: Option<i64>,
    pub jira_key: String,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ActionLine {
    pub action_id: String,
    pub incident_id: String,
    pub kind: String,
    pub target: String,
    pub status: String,
    pub reason: String,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// Two percentiles of a duration, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: i64,
    pub p90_ms: i64,
}

/// Lines in → events after dedup → findings → incidents.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Noise {
    pub lines: u64,
    pub events: u64,
    pub findings: u64,
    pub incidents: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Template {
    pub template_id: String,
    pub text: String,
    pub dataset: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub date: String,
    pub timezone: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub findings: u64,
    pub findings_previous_day: u64,
    pub findings_week_average: f64,
    pub groups: Vec<Group>,
    /// Findings per local hour (index) and domain.
    pub per_hour: BTreeMap<String, Vec<u64>>,
    /// Top offenders of each kind (address, user, service, …).
    pub offenders: BTreeMap<String, Vec<Offender>>,
    pub incidents_total: u64,
    pub incidents: Vec<IncidentLine>,
    /// Actions proposed that day, by status.
    pub actions_by_status: BTreeMap<String, u64>,
    /// Skipped (with reasons), failed and rolled back, that day.
    pub actions_notable: Vec<ActionLine>,
    /// Waiting for a person at the end of the day, whenever proposed.
    pub approvals_pending: Vec<ActionLine>,
    pub approvals_expired: Vec<ActionLine>,
    pub noise: Noise,
    /// First event → finding.
    pub time_to_detect: Percentiles,
    /// Incident opened → mitigated.
    pub time_to_mitigate: Percentiles,
    pub new_templates_total: u64,
    pub new_templates: Vec<Template>,
    /// Detectors by findings that day.
    pub detectors_busiest: Vec<(String, u64)>,
    /// Detectors with no finding in the 30 days to the report's end.
    pub detectors_silent: Vec<String>,
    /// Advice written for the day (see `analysis:`), when there is some.
    pub analysis: Option<String>,
}

/// Gathers the report of `day`; `detectors` are the ids configured, so
/// that a detector that never fired is reported silent too.
pub async fn gather(src: &Source, day: &Day, detectors: &[String]) -> anyhow::Result<Report> {
    let (d0, d1) = (day.start_ms, day.end_ms);
    let p0 = day.before(1)?.start_ms;
    let w0 = day.before(7)?.start_ms;
    let in_day = format!("first_seen_ms >= {d0} AND first_seen_ms < {d1}");
    // 30 days back covers the week's comparison and detector silence
    let findings = src.scope_findings(d1 - 30 * DAY_MS, d1).await?;
    let findings = findings.as_str();

    let mut groups = Vec::new();
    for r in src
        .rows(&format!(
            "SELECT domain, classification, severity, \
             sum(CASE WHEN first_seen_ms >= {d0} THEN 1 ELSE 0 END) AS today, \
             sum(CASE WHEN first_seen_ms >= {p0} AND first_seen_ms < {d0} THEN 1 ELSE 0 END) AS prev, \
             sum(CASE WHEN first_seen_ms < {d0} THEN 1 ELSE 0 END) AS week \
             FROM {findings} WHERE first_seen_ms >= {w0} AND first_seen_ms < {d1} \
             GROUP BY domain, classification, severity"
        ))
        .await?
    {
        groups.push(Group {
            domain: text(&r, "domain"),
            classification: text(&r, "classification"),
            severity: text(&r, "severity"),
            today: int(&r, "today") as u64,
            previous_day: int(&r, "prev") as u64,
            week_average: num(&r, "week") / 7.0,
        });
    }
    groups.sort_by(|a, b| {
        severity_rank(&b.severity)
            .cmp(&severity_rank(&a.severity))
            .then(b.today.cmp(&a.today))
            .then_with(|| (&a.domain, &a.classification).cmp(&(&b.domain, &b.classification)))
    });

    let hours = ((d1 - d0) / 3_600_000).max(1) as usize;
    let mut per_hour: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in src
        .rows(&format!(
            "SELECT floor((first_seen_ms - {d0}) / 3600000.0) AS hour, domain, count(*) AS n \
             FROM {findings} WHERE {in_day} \
             GROUP BY floor((first_seen_ms - {d0}) / 3600000.0), domain"
        ))
        .await?
    {
        let h = (num(&r, "hour") as usize).min(hours - 1);
        per_hour
            .entry(text(&r, "domain"))
            .or_insert_with(|| vec![0; hours])[h] += int(&r, "n") as u64;
    }

    let mut offenders = BTreeMap::new();
    for kind in src
        .rows(&format!(
            "SELECT offender_type, count(*) AS n FROM {findings} WHERE {in_day} GROUP BY offender_type"
        ))
        .await?
    {
        let kind = text(&kind, "offender_type");
        if !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let top = src
            .rows(&format!(
                "SELECT offender_value, count(*) AS findings, sum(event_count) AS events \
                 FROM {findings} WHERE {in_day} AND offender_type = '{kind}' \
                 GROUP BY offender_value ORDER BY findings DESC, events DESC, offender_value LIMIT {LIST}"
            ))
            .await?;
        offenders.insert(
            kind.clone(),
            top.iter()
                .map(|r| Offender {
                    kind: kind.clone(),
                    value: text(r, "offender_value"),
                    findings: int(r, "findings") as u64,
                    events: int(r, "events") as u64,
                    country: None,
                    asn: None,
                })
                .collect(),
        );
    }

    let detect = percentiles(
        &src.rows(&format!(
            "SELECT floor((crossed_at_ms - first_seen_ms) / 100.0) AS bucket, count(*) AS n \
             FROM {findings} WHERE {in_day} AND crossed_at_ms >= first_seen_ms \
             GROUP BY floor((crossed_at_ms - first_seen_ms) / 100.0)"
        ))
        .await?,
        100,
    );

    let mut busiest: Vec<(String, u64)> = src
        .rows(&format!(
            "SELECT detector_id, count(*) AS n FROM {findings} WHERE {in_day} GROUP BY detector_id"
        ))
        .await?
        .iter()
        .map(|r| (text(r, "detector_id"), int(r, "n") as u64))
        .collect();
    busiest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let recent: BTreeSet<String> = src
        .rows(&format!(
            "SELECT detector_id, count(*) AS n FROM {findings} \
             WHERE first_seen_ms >= {} AND first_seen_ms < {d1} GROUP BY detector_id",
            d1 - 30 * DAY_MS
        ))
        .await?
        .iter()
        .map(|r| text(r, "detector_id"))
        .collect();
    let mut known: BTreeSet<String> = detectors.iter().cloned().collect();
    known.extend(
        src.rows(&format!(
            // every version counts here: which detectors ever fired
            "SELECT detector_id, count(*) AS n FROM findings WHERE first_seen_ms < {d1} GROUP BY detector_id"
        ))
        .await?
        .iter()
        .map(|r| text(r, "detector_id")),
    );
    let silent = known.difference(&recent).cloned().collect();

    let incident_rows = src
        .rows(&format!(
            "SELECT incident_id, title, status, severity, priority, offender_type, offender_value, \
             opened_ms, mitigated_ms, resolved_ms, jira_key, timeline FROM incidents_latest \
             WHERE opened_ms >= {d0} AND opened_ms < {d1} ORDER BY priority DESC, opened_ms, incident_id"
        ))
        .await?;
    let mitigations: Vec<i64> = incident_rows
        .iter()
        .filter(|r| int(r, "mitigated_ms") > 0)
        .map(|r| (int(r, "mitigated_ms") - int(r, "opened_ms")).max(0))
        .collect();
    let incidents: Vec<IncidentLine> = incident_rows
        .iter()
        .take(INCIDENTS_SHOWN)
        .map(|r| {
            let at = |c| Some(int(r, c)).filter(|&v| v > 0);
            IncidentLine {
                incident_id: text(r, "incident_id"),
                title: text(r, "title"),
                status: text(r, "status"),
                severity: text(r, "severity"),
                priority: num(r, "priority"),
                offender: format!("{} {}", text(r, "offender_type"), text(r, "offender_value")),
                opened_ms: int(r, "opened_ms"),
                mitigated_ms: at("mitigated_ms"),
                resolved_ms: at("resolved_ms"),
                jira_key: text(r, "jira_key"),
                timeline: serde_json::from_str(&text(r, "timeline")).unwrap_or_default(),
            }
        })
        .collect();

    let actions_by_status = src
        .rows(&format!(
            "SELECT status, count(*) AS n FROM actions_latest \
             WHERE created_ms >= {d0} AND created_ms < {d1} GROUP BY status"
        ))
        .await?
        .iter()
        .map(|r| (text(r, "status"), int(r, "n") as u64))
        .collect();
    const ACTION_COLS: &str =
        "action_id, incident_id, kind, target, status, reason, created_ms, expires_ms";
    let notable = actions(
        src.rows(&format!(
            "SELECT {ACTION_COLS} FROM actions_latest WHERE created_ms >= {d0} AND created_ms < {d1} \
             AND status IN ('skipped_by_policy', 'failed', 'rolled_back') ORDER BY created_ms, action_id"
        ))
        .await?,
    );
    let pending = actions(
        src.rows(&format!(
            "SELECT {ACTION_COLS} FROM actions_latest WHERE created_ms < {d1} \
             AND status = 'pending_approval' ORDER BY created_ms, action_id"
        ))
        .await?,
    );
    let expired = actions(
        src.rows(&format!(
            "SELECT {ACTION_COLS} FROM actions_latest WHERE created_ms >= {d0} AND created_ms < {d1} \
             AND status = 'expired' ORDER BY created_ms, action_id"
        ))
        .await?,
    );

    let stored = src
        .rows(&format!(
            "SELECT count(*) AS events, sum(event_count) AS lines FROM events \
             WHERE timestamp_ms >= {d0} AND timestamp_ms < {d1}"
        ))
        .await?;
    let stored = stored.first().cloned().unwrap_or_default();

    let new_templates_total = src
        .rows(&format!(
            "SELECT count(*) AS n FROM templates_latest WHERE {in_day}"
        ))
        .await?
        .first()
        .map_or(0, |r| int(r, "n") as u64);
    let new_templates = src
        .rows(&format!(
            "SELECT template_id, template_text, dataset FROM templates_latest \
             WHERE {in_day} ORDER BY first_seen_ms, template_id LIMIT {LIST}"
        ))
        .await?
        .iter()
        .map(|r| Template {
            template_id: text(r, "template_id"),
            text: text(r, "template_text"),
            dataset: text(r, "dataset"),
        })
        .collect();

    let findings = groups.iter().map(|g| g.today).sum();
    Ok(Report {
        date: day.date.to_string(),
        timezone: day.timezone.name().to_owned(),
        start_ms: d0,
        end_ms: d1,
        findings,
        findings_previous_day: groups.iter().map(|g| g.previous_day).sum(),
        findings_week_average: groups.iter().map(|g| g.week_average).sum(),
        groups: groups
            .into_iter()
            .filter(|g| g.today > 0 || g.previous_day > 0 || g.week_average > 0.0)
            .collect(),
        per_hour,
        offenders,
        incidents_total: incident_rows.len() as u64,
        incidents,
        actions_by_status,
        actions_notable: notable,
        approvals_pending: pending,
        approvals_expired: expired,
        noise: Noise {
            lines: int(&stored, "lines") as u64,
            events: int(&stored, "events") as u64,
            findings,
            incidents: incident_rows.len() as u64,
        },
        time_to_detect: detect,
        time_to_mitigate: exact_percentiles(mitigations),
        new_templates_total,
        new_templates,
        detectors_busiest: busiest.into_iter().take(LIST).collect(),
        detectors_silent: silent,
        analysis: None,
    })
}

fn actions(rows: Vec<Row>) -> Vec<ActionLine> {
    rows.iter()
        .take(ACTIONS_SHOWN)
        .map(|r| ActionLine {
            action_id: text(r, "action_id"),
            incident_id: text(r, "incident_id"),
            kind: text(r, "kind"),
            target: text(r, "target"),
            status: text(r, "status"),
            reason: text(r, "reason"),
            created_ms: int(r, "created_ms"),
            expires_ms: int(r, "expires_ms"),
        })
        .collect()
}

/// Percentiles from a histogram of `bucket` (width `width_ms`) → `n`;
/// each value is its bucket's middle.
fn percentiles(rows: &[Row], width_ms: i64) -> Percentiles {
    let mut h: Vec<(i64, u64)> = rows
        .iter()
        .map(|r| (num(r, "bucket") as i64, int(r, "n") as u64))
        .collect();
    h.sort_unstable();
    let count: u64 = h.iter().map(|b| b.1).sum();
    let at = |q: f64| -> i64 {
        let rank = ((q * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, n) in &h {
            seen += n;
            if seen >= rank {
                return b * width_ms + width_ms / 2;
            }
        }
        0
    };
    Percentiles {
        count,
        p50_ms: at(0.5),
        p90_ms: at(0.9),
    }
}

fn exact_percentiles(mut v: Vec<i64>) -> Percentiles {
    v.sort_unstable();
    let at = |q: f64| -> i64 {
        if v.is_empty() {
            return 0;
        }
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    };
    Percentiles {
        count: v.len() as u64,
        p50_ms: at(0.5),
        p90_ms: at(0.9),
    }
}

pub fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}

/// `1.2 s`, `3 min`, `2.5 h` for a duration in milliseconds.
pub fn duration(ms: i64) -> String {
    let s = ms as f64 / 1000.0;
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// `+12 %`, `−3 %` or `new` for today against a reference.
pub fn trend(today: f64, before: f64) -> String {
    if before <= 0.0 {
        return if today > 0.0 {
            "new".into()
        } else {
            "–".into()
        };
    }
    let pct = (today - before) / before * 100.0;
    if pct.abs() < 0.5 {
        "±0 %".into()
    } else if pct > 0.0 {
        format!("+{pct:.0} %")
    } else {
        format!("−{:.0} %", -pct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_boundaries_follow_the_time_zone() {
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let d = Day::new(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(), berlin).unwrap();
        assert_eq!(
            crate::time::format_rfc3339(d.start_ms),
            "2026-11-30T23:00:00.000Z"
        );
        assert_eq!(d.end_ms - d.start_ms, DAY_MS);
        // the day clocks go forward has 23 hours
        let spring = Day::new(NaiveDate::from_ymd_opt(2026, 3, 29).unwrap(), berlin).unwrap();
        assert_eq!(spring.end_ms - spring.start_ms, 23 * 3_600_000);
    }

    #[test]
    fn percentiles_from_a_histogram() {
        let rows: Vec<Row> = [(0, 5), (10, 4), (100, 1)]
            .iter()
            .map(|(b, n)| serde_json::from_value(serde_json::json!({"bucket": b, "n": n})).unwrap())
            .collect();
        let p = percentiles(&rows, 100);
        assert_eq!((p.count, p.p50_ms, p.p90_ms), (10, 50, 1050));
        let e = exact_percentiles(vec![5, 1, 3, 2, 4, 100, 6, 7, 8, 9]);
        assert_eq!((e.p50_ms, e.p90_ms), (5, 9));
    }

    #[test]
    fn trends() {
        assert_eq!(trend(12.0, 10.0), "+20 %");
        assert_eq!(trend(5.0, 10.0), "−50 %");
        assert_eq!(trend(3.0, 0.0), "new");
    }
}
