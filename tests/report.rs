//! The daily report: snapshots of both renderings, log-derived text
//! escaped for each format, the same report from the embedded store and
//! from a real ClickHouse 18.16, and the HTML opened in headless Chromium
//! (Debian's `chromium`) whose screenshot must show the charts.

#[path = "support/clickhouse.rs"]
mod clickhouse;
#[path = "support/mmdb.rs"]
mod mmdb;
#[path = "support/png.rs"]
mod png;
#[path = "support/service.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use threatpilot::report::{
    ActionLine, Day, Group, IncidentLine, Noise, Offender, Percentiles, Report, Template,
};
use threatpilot::respond::incident::TimelineEntry;

/// A user name an attacker chose: a newline, table pipes, a heading, HTML,
/// template syntax and a terminal escape.
const HOSTILE: &str =
    "bob\n| fake | row |\n## Injected <script>alert('x')</script> {{7*7}} \u{1b}[31mred";

fn day() -> Day {
    Day::new(
        chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        "Europe/Berlin".parse().unwrap(),
    )
    .unwrap()
}

fn sample() -> Report {
    let d = day();
    let at = |h: i64| d.start_ms + h * 3_600_000;
    let mut per_hour = BTreeMap::new();
    let mut identity = vec![0; 24];
    identity[3] = 5;
    identity[4] = 2;
    let mut http = vec![0; 24];
    http[4] = 3;
    per_hour.insert("identity".to_string(), identity);
    per_hour.insert("http".to_string(), http);
    let mut offenders = BTreeMap::new();
    offenders.insert(
        "user".to_string(),
        vec![Offender {
            kind: "user".into(),
            value: HOSTILE.into(),
            findings: 4,
            events: 120,
            country: None,
            asn: None,
        }],
    );
    offenders.insert(
        "ip".to_string(),
        vec![Offender {
            kind: "ip".into(),
            value: "203.0.113.7".into(),
            findings: 6,
            events: 300,
            country: Some("NL".into()),
            asn: Some("AS64500 Example <Net>".into()),
        }],
    );
    Report {
        date: "2026-12-01".into(),
        timezone: "Europe/Berlin".into(),
        start_ms: d.start_ms,
        end_ms: d.end_ms,
        findings: 10,
        findings_previous_day: 8,
        findings_week_average: 5.0,
        groups: vec![
            Group {
                domain: "identity".into(),
                classification: "brute_force".into(),
                severity: "high".into(),
                today: 7,
                previous_day: 8,
                week_average: 4.0,
            },
            Group {
                domain: "http".into(),
                classification: "sqli".into(),
                severity: "medium".into(),
                today: 3,
                previous_day: 0,
                week_average: 1.0,
            },
        ],
        per_hour,
        offenders,
        incidents_total: 1,
        incidents: vec![IncidentLine {
            incident_id: "i-0123456789abcdef".into(),
            title: format!("SSH brute force on {HOSTILE}"),
            status: "mitigated".into(),
            severity: "high".into(),
            priority: 72.0,
            offender: "ip 203.0.113.7".into(),
            opened_ms: at(3),
            mitigated_ms: Some(at(3) + 40_000),
            resolved_ms: None,
            jira_key: "SOC-12".into(),
            timeline: vec![
                TimelineEntry {
                    at_ms: at(3),
                    phase: "detection".into(),
                    text: format!("identity.ssh_brute_force opened for {HOSTILE}"),
                    action_id: None,
                },
                TimelineEntry {
                    at_ms: at(3) + 40_000,
                    phase: "execution".into(),
                    text: "block_ip on 203.0.113.7: verified".into(),
                    action_id: Some("a-1".into()),
                },
            ],
        }],
        actions_by_status: [
            ("verified".to_string(), 1),
            ("skipped_by_policy".to_string(), 1),
        ]
        .into_iter()
        .collect(),
        actions_notable: vec![ActionLine {
            action_id: "a-2".into(),
            incident_id: "i-0123456789abcdef".into(),
            kind: "lock_account".into(),
            target: HOSTILE.into(),
            status: "skipped_by_policy".into(),
            reason: "protected: the account is on the protected list".into(),
            created_ms: at(3),
            expires_ms: 0,
        }],
        approvals_pending: vec![],
        approvals_expired: vec![],
        noise: Noise {
            lines: 120_000,
            events: 45_000,
            findings: 10,
            incidents: 1,
        },
        time_to_detect: Percentiles {
            count: 10,
            p50_ms: 2_050,
            p90_ms: 31_050,
        },
        time_to_mitigate: Percentiles {
            count: 1,
            p50_ms: 40_000,
            p90_ms: 40_000,
        },
        new_templates_total: 1,
        new_templates: vec![Template {
            template_id: "t-1".into(),
            text: format!("Invalid user <*> from <*> {HOSTILE}"),
            dataset: "sshd".into(),
        }],
        detectors_busiest: vec![("identity.ssh_brute_force".into(), 7)],
        detectors_silent: vec!["infrastructure.oom_kill".into()],
        analysis: Some("Hypothesis: a password-guessing bot.\nNext steps: keep the block.".into()),
    }
}

#[test]
fn the_markdown_report_matches_its_snapshot_and_escapes_log_text() {
    let md = threatpilot::report::markdown::render(&sample(), &day());
    insta::assert_snapshot!("report_markdown", md);
    // nothing from the log starts a line, a row or a tag
    for line in md.lines() {
        assert!(!line.starts_with("## Injected"), "{line}");
        assert!(!line.starts_with("| fake"), "{line}");
    }
    // `<` only escaped, so no tag starts
    assert!(!md.replace("\\<", "").contains("<script"), "{md}");
    assert!(md.contains("\\<script\\>"));
    assert!(!md.contains('\u{1b}'));
    let rows = md.lines().filter(|l| l.contains("bob")).count();
    assert_eq!(rows, 6, "one line per place the name appears:\n{md}");
}

#[test]
fn the_html_report_matches_its_snapshot_and_has_no_script_or_markup_from_logs() {
    let html = threatpilot::report::html::render(&sample(), &day());
    insta::assert_snapshot!("report_html", html);
    assert!(!html.contains("<script"), "no script at all");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(!html.contains('\u{1b}'));
    for fetch in ["src=", "<link", "url(", "@import"] {
        assert!(!html.contains(fetch), "nothing is fetched: {fetch}");
    }
    assert_eq!(
        html.matches("<svg").count(),
        4,
        "hours, two offender kinds, times"
    );
}

const FILES: &str = "[fixtures/detectors/crowdsec-ssh-bf/input.log, fixtures/detectors/crowdsec-nginx-http-sqli-probing/input.log, fixtures/detectors/synthetic-password-spraying/input.log, fixtures/detectors/npd-oom-kill/input.log]";

fn run_pipeline(dir: &Path, sink: &str) {
    let p = dir.join("p.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: report\nsources:\n  - type: file\n    id: f\n    paths: {FILES}\nsinks:\n{sink}respond:\n  playbooks: [playbooks]\n  state_dir: {}\n",
            dir.join("respond").display()
        ),
    )
    .unwrap();
    support::run_pipeline(&p);
}

fn report(args: &[&str]) -> String {
    let out = support::threatpilot_ok(
        ["report", "--timezone", "Europe/Berlin"]
            .iter()
            .copied()
            .chain(args.iter().copied()),
        &format!("report {args:?}"),
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The local day (Europe/Berlin) most findings of the store fall on.
fn busiest_day(data: &str) -> String {
    let out = support::threatpilot_ok(
        [
            "sql",
            "--data",
            data,
            "--format",
            "json",
            "SELECT first_seen_ms FROM findings_latest",
        ],
        "sql",
    );
    let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let mut days: BTreeMap<String, usize> = BTreeMap::new();
    for l in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let ms = v["first_seen_ms"].as_i64().unwrap();
        let t = chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .with_timezone(&tz);
        *days.entry(t.format("%Y-%m-%d").to_string()).or_default() += 1;
    }
    days.into_iter().max_by_key(|d| d.1).unwrap().0
}

#[test]
fn the_same_report_comes_from_the_embedded_store_and_from_clickhouse() {
    let Some(ch) = clickhouse::ClickhouseServer::start(support::temp_dir("report-ch")) else {
        return;
    };
    let dir = support::temp_dir("report-parquet");
    let data = dir.join("data");
    run_pipeline(
        &dir,
        &format!(
            "  - type: parquet\n    dir: {}\n    events: all\n",
            data.display()
        ),
    );
    let dir2 = support::temp_dir("report-clickhouse");
    run_pipeline(
        &dir2,
        &format!(
            "  - type: clickhouse\n    url: {}\n    database: tpr\n    events: all\n    spool_dir: {}\n",
            ch.url,
            dir2.join("spool").display()
        ),
    );
    let data = data.display().to_string();
    let date = busiest_day(&data);
    let embedded = report(&["--date", &date, "--data", &data]);
    let server = report(&[
        "--date",
        &date,
        "--clickhouse",
        &ch.url,
        "--database",
        "tpr",
    ]);
    assert_eq!(embedded, server);
    // with a database that knows every IPv4 address
    let db = dir.join("all.mmdb");
    mmdb::write(
        &db,
        &[
            ([0, 0, 0, 0], 1, "AQ", 64510, "Low"),
            ([128, 0, 0, 0], 1, "AQ", 64511, "High"),
        ],
    );
    let db = db.display().to_string();
    let geo = report(&["--date", &date, "--data", &data, "--geoip", &db]);
    assert!(
        geo.contains("| offender | country | AS | findings | events |"),
        "{geo}"
    );
    assert!(geo.contains("| AQ | AS6451"), "{geo}");
    // a day with findings, whose count is what SQL says
    let day = Day::new(
        chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d").unwrap(),
        "Europe/Berlin".parse().unwrap(),
    )
    .unwrap();
    let out = support::threatpilot_ok(
        [
            "sql",
            "--data",
            &data,
            "--format",
            "json",
            &format!(
                "SELECT count(*) AS n FROM findings_latest WHERE first_seen_ms >= {} AND first_seen_ms < {}",
                day.start_ms, day.end_ms
            ),
        ],
        "sql",
    );
    let n: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = n["n"].as_u64().unwrap();
    assert!(n > 0);
    assert!(
        embedded.contains(&format!("**{n} findings**")),
        "{embedded}"
    );
    assert!(embedded.contains("## Top offenders"));
    // incidents and actions are dated when they were opened and proposed:
    // today, in both stores alike
    let today = chrono::Utc::now()
        .with_timezone(&"Europe/Berlin".parse::<chrono_tz::Tz>().unwrap())
        .format("%Y-%m-%d")
        .to_string();
    let a = report(&["--date", &today, "--data", &data]);
    let b = report(&[
        "--date",
        &today,
        "--clickhouse",
        &ch.url,
        "--database",
        "tpr",
    ]);
    let opened = |s: &str| {
        s.lines()
            .find(|l| l.ends_with(" opened."))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert_eq!(opened(&a), opened(&b));
    assert_ne!(opened(&a), "0 opened.", "{a}");
    // HTML from both stores too
    let h1 = report(&["--date", &date, "--data", &data, "--format", "html"]);
    let h2 = report(&[
        "--date",
        &date,
        "--clickhouse",
        &ch.url,
        "--database",
        "tpr",
        "--format",
        "html",
    ]);
    assert_eq!(h1, h2);
}

#[test]
fn a_bad_date_zone_or_store_is_a_clear_error() {
    let out = support::threatpilot(["report", "--date", "2026-13-01"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--date"));
    let out = support::threatpilot(["report", "--date", "2026-12-01", "--timezone", "Mars/Base"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("time zone"));
    let out = support::threatpilot([
        "report",
        "--date",
        "2026-12-01",
        "--data",
        "/nonexistent/tp",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no embedded store"));
    let out = support::threatpilot([
        "report",
        "--date",
        "2026-12-01",
        "--clickhouse",
        "http://127.0.0.1:9",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("clickhouse"));
}

#[test]
fn top_addresses_get_country_and_as_from_maxmind_format_databases() {
    let dir = support::temp_dir("report-geoip");
    let db = dir.join("test.mmdb");
    mmdb::write(
        &db,
        &[
            ([198, 51, 100, 0], 24, "DE", 64500, "Example Net"),
            ([203, 0, 113, 0], 25, "NL", 64501, "Other Net"),
        ],
    );
    let geo = threatpilot::report::geo::Geo::open(&[db.display().to_string()]).unwrap();
    assert_eq!(
        geo.lookup("198.51.100.77"),
        (Some("DE".into()), Some("AS64500 Example Net".into()))
    );
    assert_eq!(geo.lookup("203.0.113.7").0.as_deref(), Some("NL"));
    assert_eq!(geo.lookup("203.0.113.200"), (None, None), "outside the /25");
    assert_eq!(geo.lookup("not an address"), (None, None));
    let mut r = sample();
    for list in r.offenders.values_mut() {
        for o in list {
            o.country = None;
            o.asn = None;
        }
    }
    geo.enrich(&mut r);
    let ip = &r.offenders["ip"][0];
    assert_eq!(ip.country.as_deref(), Some("NL"));
    assert_eq!(ip.asn.as_deref(), Some("AS64501 Other Net"));
    assert!(
        r.offenders["user"][0].country.is_none(),
        "a user has no country"
    );
    let md = threatpilot::report::markdown::render(&r, &day());
    assert!(
        md.contains("| 203.0.113.7 | NL | AS64501 Other Net | 6 | 300 |"),
        "{md}"
    );
    // through the command, on a store: a database that is not one is named
    let out = support::threatpilot([
        "report",
        "--geoip",
        "/nonexistent/x.mmdb",
        "--date",
        "2026-12-01",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.mmdb"));
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .map(|n| PathBuf::from("/usr/bin").join(n))
        .find(|p| p.exists())
}

#[test]
fn the_html_report_renders_its_charts_in_headless_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            !support::servers_required(),
            "chromium is needed (scripts/servers.sh installs it)"
        );
        return;
    };
    let dir = support::temp_dir("report-chromium");
    let html = dir.join("report.html");
    std::fs::write(&html, threatpilot::report::html::render(&sample(), &day())).unwrap();
    let shot = artefacts().join("report.png");
    let out = std::process::Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=900,1400",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = png::decode(&std::fs::read(&shot).unwrap()).unwrap();
    assert_eq!((img.width, img.height), (900, 1400));
    // each chart's colour is on screen: identity and http bars (stacked
    // per hour), offender bars, time bars
    for (name, rgb) in [
        ("identity bars", (0x4e, 0x79, 0xa7)),
        ("http bars", (0xf2, 0x8e, 0x2b)),
        ("offender bars", (0xe1, 0x57, 0x59)),
        ("time bars", (0x76, 0xb7, 0xb2)),
    ] {
        let n = img.count(rgb, 6);
        assert!(n > 400, "{name}: {n} pixels of {rgb:?}");
    }
    // identity has findings in two hours: two bars (and the legend's key)
    let columns = img.column_runs((0x4e, 0x79, 0xa7), 6);
    assert!(columns >= 3, "{columns} runs of identity-coloured columns");
}

/// Where tests keep what a person may want to look at afterwards.
fn artefacts() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("out/test-artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}
