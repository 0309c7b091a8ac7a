//! The daily report on a schedule, inside `run`: at a local time each day
//! the previous day's report is written to files (`DIR/YYYY-MM-DD.md` and
//! `.html`) and handed to notify channels through the outbox (e-mail gets
//! the HTML with the Markdown as its text part, Slack a summary, webhooks
//! the report as JSON). A report missed while the service was down is
//! made at the next start.
//!
//! ```yaml
//! report: {at: "07:00", timezone: Europe/Berlin, channels: [oncall, soc]}
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime, TimeZone};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::source::Source;
use super::{Day, Report};
use crate::notify::config::ChannelSpec;
use crate::notify::render::{cut, slack_mrkdwn, slack_plain};
use crate::notify::runtime::Post;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportSchedule {
    /// Local time (`HH:MM`) the previous day's report is made.
    #[serde(default = "default_at")]
    pub at: String,
    /// The IANA time zone of `at` and of the day's midnights.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Where the reports are written.
    #[serde(default = "default_dir")]
    pub dir: String,
    /// Notify channels (e-mail, Slack, webhook) the report goes to.
    #[serde(default)]
    pub channels: Vec<String>,
    /// MaxMind-format databases (Country or City, ASN) for the country and
    /// AS of the top addresses.
    #[serde(default)]
    pub geoip: Vec<String>,
}

fn default_at() -> String {
    "07:00".into()
}
fn default_timezone() -> String {
    "UTC".into()
}
fn default_dir() -> String {
    "out/reports".into()
}

/// A schedule checked: its time and zone parsed.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub at: NaiveTime,
    pub timezone: chrono_tz::Tz,
    pub dir: PathBuf,
    pub channels: Vec<String>,
    pub geoip: Vec<String>,
}

impl ReportSchedule {
    /// Checks the schedule against the notify channels there are.
    pub fn compile(&self, notify: Option<&crate::notify::Compiled>) -> Result<Schedule, String> {
        let at = NaiveTime::parse_from_str(&self.at, "%H:%M")
            .map_err(|_| format!("report.at {:?}: HH:MM (24-hour clock)", self.at))?;
        let timezone: chrono_tz::Tz = self
            .timezone
            .parse()
            .map_err(|_| format!("report.timezone {:?}: not an IANA time zone", self.timezone))?;
        for name in &self.channels {
            let spec = notify
                .and_then(|n| n.channels.iter().find(|(c, _)| c.name() == name))
                .map(|(c, _)| c);
            match spec {
                None => return Err(format!("report.channels: no notify channel `{name}`")),
                Some(ChannelSpec::Jira(_)) => {
                    return Err(format!(
                        "report.channels: `{name}` is Jira, which takes incidents, not reports"
                    ));
                }
                Some(_) => {}
            }
        }
        for db in &self.geoip {
            super::geo::Geo::open(std::slice::from_ref(db))
                .map_err(|e| format!("report.geoip: {e}"))?;
        }
        Ok(Schedule {
            at,
            timezone,
            dir: PathBuf::from(&self.dir),
            channels: self.channels.clone(),
            geoip: self.geoip.clone(),
        })
    }
}

/// Yesterday in `tz`.
pub fn yesterday(tz: chrono_tz::Tz) -> NaiveDate {
    let today = tz
        .timestamp_millis_opt(crate::time::now_ms())
        .single()
        .map(|t| t.date_naive())
        .unwrap_or_default();
    today.pred_opt().unwrap_or(today)
}

impl Schedule {
    /// The instant `at` on local `date`.
    fn due_on(&self, date: NaiveDate) -> i64 {
        let local = date.and_time(self.at);
        self.timezone
            .from_local_datetime(&local)
            .earliest()
            .or_else(|| {
                // `at` falls in a skipped hour: an hour later
                self.timezone
                    .from_local_datetime(&(local + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map_or(0, |t| t.timestamp_millis())
    }

    /// The latest due instant at or before `now_ms`, and the day it reports.
    pub fn last_due(&self, now_ms: i64) -> (i64, NaiveDate) {
        let today = self
            .timezone
            .timestamp_millis_opt(now_ms)
            .single()
            .map(|t| t.date_naive())
            .unwrap_or_default();
        let mut date = today;
        if self.due_on(date) > now_ms {
            date = date.pred_opt().unwrap_or(date);
        }
        (self.due_on(date), date.pred_opt().unwrap_or(date))
    }

    /// The next due instant after `now_ms`.
    pub fn next_due(&self, now_ms: i64) -> i64 {
        let (last, reported) = self.last_due(now_ms);
        let date = reported
            .succ_opt()
            .and_then(|d| d.succ_opt())
            .unwrap_or(reported);
        self.due_on(date).max(last + 1)
    }
}

/// Where the scheduled report reads.
#[derive(Clone, Debug)]
pub enum Store {
    Parquet(PathBuf),
    Clickhouse(crate::store::ClickhouseSinkConfig),
}

/// Runs the schedule until `stop`.
pub fn start(
    schedule: Schedule,
    store: Store,
    detectors: Vec<String>,
    channels: Vec<ChannelSpec>,
    post: Option<mpsc::Sender<Post>>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // a report missed while down is made now; one already written is not
        let (_, last) = schedule.last_due(crate::time::now_ms());
        let mut done = schedule
            .dir
            .join(format!("{last}.html"))
            .exists()
            .then_some(last);
        loop {
            let now = crate::time::now_ms();
            let (_, due) = schedule.last_due(now);
            if done != Some(due) {
                make(&schedule, &store, &detectors, &channels, post.as_ref(), due).await;
                done = Some(due);
            }
            let wait = Duration::from_millis((schedule.next_due(now) - now).max(0) as u64);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    })
}

async fn make(
    schedule: &Schedule,
    store: &Store,
    detectors: &[String],
    channels: &[ChannelSpec],
    post: Option<&mpsc::Sender<Post>>,
    date: NaiveDate,
) {
    let started = std::time::Instant::now();
    match build(schedule, store, detectors, date).await {
        Ok((report, md, html)) => {
            if let Err(e) = write(&schedule.dir, &date.to_string(), &md, &html) {
                tracing::error!(error = %e, dir = %schedule.dir.display(), "report: cannot write");
            }
            tracing::info!(
                date = %date,
                findings = report.findings,
                ms = started.elapsed().as_millis() as u64,
                "daily report made"
            );
            if let Some(post) = post {
                for spec in channels
                    .iter()
                    .filter(|c| schedule.channels.iter().any(|n| n == c.name()))
                {
                    let Some(body) = body_for(spec, &report, &md, &html) else {
                        continue;
                    };
                    let p = Post {
                        about: format!("report-{date}"),
                        channel: spec.name().to_owned(),
                        body,
                    };
                    if post.send(p).await.is_err() {
                        tracing::warn!("report: the notifier has stopped; not sent");
                    }
                }
            }
        }
        Err(e) => tracing::error!(error = %e, date = %date, "daily report failed"),
    }
}

async fn build(
    schedule: &Schedule,
    store: &Store,
    detectors: &[String],
    date: NaiveDate,
) -> anyhow::Result<(Report, String, String)> {
    render(store, schedule.timezone, &schedule.geoip, detectors, date).await
}

/// One day's report from the store, as Markdown and HTML (the schedule
/// writes them; the console shows one on demand).
pub async fn render(
    store: &Store,
    timezone: chrono_tz::Tz,
    geoip: &[String],
    detectors: &[String],
    date: NaiveDate,
) -> anyhow::Result<(Report, String, String)> {
    let day = Day::new(date, timezone)?;
    let src = match store {
        Store::Parquet(dir) => Source::embedded(dir).await?,
        Store::Clickhouse(c) => Source::clickhouse_sink(c)?,
    };
    let mut report = super::gather(&src, &day, detectors).await?;
    // read at each report, so a database updated in place is picked up
    super::geo::Geo::open(geoip)?.enrich(&mut report);
    let md = super::markdown::render(&report, &day);
    let html = super::html::render(&report, &day);
    Ok((report, md, html))
}

/// Writes both files whole (a temporary file renamed), so a reader never
/// sees half a report and a crash never leaves one that looks done.
fn write(dir: &Path, name: &str, md: &str, html: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (ext, text) in [("md", md), ("html", html)] {
        let tmp = dir.join(format!(".{name}.{ext}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, dir.join(format!("{name}.{ext}")))?;
    }
    Ok(())
}

/// The report's message for one channel.
pub fn body_for(spec: &ChannelSpec, r: &Report, md: &str, html: &str) -> Option<Value> {
    let subject = format!("ThreatPilot daily report {}", r.date);
    match spec {
        ChannelSpec::Email(_) => Some(json!({
            "subject": subject, "text": md, "html": html, "severity": "info"
        })),
        ChannelSpec::Slack(_) => Some(slack_summary(r)),
        ChannelSpec::Webhook(_) => Some(json!({
            "type": "report", "severity": "info", "report": r, "markdown": md
        })),
        ChannelSpec::Jira(_) => None,
    }
}

/// A Slack message summing the report up (Block Kit, within its limits).
pub fn slack_summary(r: &Report) -> Value {
    const SECTION: usize = 3000;
    let actions: u64 = r.actions_by_status.values().sum();
    let headline = format!(
        "*{} findings* (previous day {}, 7-day average {:.1}), *{} incidents*, *{} actions*",
        r.findings, r.findings_previous_day, r.findings_week_average, r.incidents_total, actions
    );
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": slack_plain(&format!("Daily report {}", r.date))}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": headline}}),
    ];
    let groups: Vec<String> = r
        .groups
        .iter()
        .filter(|g| g.today > 0)
        .take(10)
        .map(|g| {
            format!(
                "• {} {} ({}): {}",
                slack_mrkdwn(&g.domain),
                slack_mrkdwn(&g.classification),
                slack_mrkdwn(&g.severity),
                g.today
            )
        })
        .collect();
    if !groups.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&format!("*Findings*\n{}", groups.join("\n")), SECTION)}}));
    }
    let offenders: Vec<String> = r
        .offenders
        .iter()
        .flat_map(|(kind, list)| {
            list.iter().take(5).map(move |o| {
                format!(
                    "• {} {}: {} findings",
                    slack_mrkdwn(kind),
                    slack_mrkdwn(&o.value),
                    o.findings
                )
            })
        })
        .collect();
    if !offenders.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&format!("*Top offenders*\n{}", offenders.join("\n")), SECTION)}}));
    }
    let mut more = vec![format!(
        "Time to detect p50 {}, to mitigate p50 {}",
        super::duration(r.time_to_detect.p50_ms),
        super::duration(r.time_to_mitigate.p50_ms)
    )];
    if !r.approvals_pending.is_empty() {
        more.push(format!("{} approvals pending", r.approvals_pending.len()));
    }
    if !r.detectors_silent.is_empty() {
        more.push(format!(
            "{} detectors silent for 30 days",
            r.detectors_silent.len()
        ));
    }
    more.push(format!("{} new log templates", r.new_templates_total));
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(&more.join(" · "), SECTION)}]}));
    if let Some(a) = &r.analysis {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&format!("*Analysis*\n{}", slack_mrkdwn(a)), SECTION)}}));
    }
    json!({
        "text": format!("Daily report {}: {} findings, {} incidents", r.date, r.findings, r.incidents_total),
        "blocks": blocks,
        "incident_id": format!("report-{}", r.date),
        "severity": "info",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(at: &str, tz: &str) -> Schedule {
        ReportSchedule {
            at: at.into(),
            timezone: tz.into(),
            dir: "x".into(),
            channels: vec![],
            geoip: vec![],
        }
        .compile(None)
        .unwrap()
    }

    #[test]
    fn the_previous_day_is_reported_at_the_local_time() {
        let s = schedule("07:00", "Europe/Berlin");
        // 2026-12-01 05:30 UTC is 06:30 in Berlin: the last report was
        // made on 30 November, for 29 November
        let now = crate::time::parse_rfc3339(b"2026-12-01T05:30:00Z")
            .unwrap()
            .0;
        let (due, day) = s.last_due(now);
        assert_eq!(day.to_string(), "2026-11-29");
        assert_eq!(crate::time::format_rfc3339(due), "2026-11-30T06:00:00.000Z");
        assert_eq!(
            crate::time::format_rfc3339(s.next_due(now)),
            "2026-12-01T06:00:00.000Z"
        );
        let after = crate::time::parse_rfc3339(b"2026-12-01T06:00:00Z")
            .unwrap()
            .0;
        assert_eq!(s.last_due(after).1.to_string(), "2026-11-30");
    }

    #[test]
    fn bad_schedules_are_refused() {
        let bad = |at: &str, tz: &str| {
            ReportSchedule {
                at: at.into(),
                timezone: tz.into(),
                dir: "x".into(),
                channels: vec![],
                geoip: vec![],
            }
            .compile(None)
            .unwrap_err()
        };
        assert!(bad("7 am", "UTC").contains("HH:MM"));
        assert!(bad("07:00", "Mars/Olympus").contains("IANA"));
        let r = ReportSchedule {
            at: "07:00".into(),
            timezone: "UTC".into(),
            dir: "x".into(),
            channels: vec!["nobody".into()],
            geoip: vec![],
        };
        assert!(r.compile(None).unwrap_err().contains("no notify channel"));
    }
}
