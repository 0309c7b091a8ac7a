//! The ClickHouse sink against real ClickHouse 18.16 servers of the tests'
//! own: migrations and the schema check, an outage in the middle of a run
//! (spooled, replayed, nothing lost or doubled), a spool left by one run and
//! replayed by the next, retention by dropping old day partitions, and
//! oversized fields cut and marked.

#[path = "support/clickhouse.rs"]
mod clickhouse;
#[path = "support/service.rs"]
mod support;

use std::process::Stdio;

use clickhouse::ClickhouseServer;
use serde_json::Value;
use support::{Service, temp_dir};
use threatpilot::store::clickhouse::{MIGRATIONS, applies};

/// The migrations this server takes (some wait for newer servers).
fn applicable(ch: &ClickhouseServer) -> Vec<u64> {
    let version = ch.query("SELECT version()").unwrap();
    let mut parts = version.trim().split('.').map(|p| p.parse().unwrap_or(0));
    let server = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    MIGRATIONS
        .iter()
        .filter(|m| applies(m.2, server))
        .map(|m| u64::from(m.0))
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn service_yaml(ch: &str, db: &str, extra: &str) -> String {
    format!(
        "version: 1\nname: ch\nsources:\n  - type: loki_push\n    id: loki\ndetect:\n  paths: [detectors]\nsinks:\n  - type: clickhouse\n    url: {ch}\n    database: {db}\n    events: all\n    batch_rows: 500\n    flush_ms: 200\n    spool_dir: {{dir}}/../spool-{db}\n{extra}  - type: file\n    path: {{dir}}/findings.jsonl\napi:\n  listen: 127.0.0.1:0\n"
    )
}

/// A push of `n` unique sshd failures (brute force from a few addresses).
fn push(svc: &Service, tag: &str, n: usize) {
    let values: Vec<Value> = (0..n)
        .map(|i| {
            let line = format!(
                "Failed password for root from 198.51.100.{} port {} ssh2 {tag}",
                i % 7 + 1,
                1000 + i
            );
            serde_json::json!([
                ((now_ms() - 60_000 + i as i64) * 1_000_000).to_string(),
                line
            ])
        })
        .collect();
    let body = serde_json::json!({"streams": [{"stream": {"job": "sshd", "host": format!("h-{tag}")}, "values": values}]});
    let r = svc.post(
        "/loki/api/v1/push",
        &[("Content-Type", "application/json")],
        &serde_json::to_vec(&body).unwrap(),
    );
    assert_eq!(r.status, 204, "{}", r.text());
}

fn metric(svc: &Service, name: &str) -> f64 {
    svc.get("/metrics")
        .1
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn an_outage_mid_run_is_spooled_and_replayed_with_nothing_lost_or_doubled() {
    let Some(mut ch) = ClickhouseServer::start(temp_dir("ch-outage")) else {
        return;
    };
    let svc = Service::start(
        "ch-outage-svc",
        &service_yaml(&ch.url, "tp", ""),
        Stdio::null(),
    );
    assert_eq!(
        ch.number("SELECT max(version) FROM tp.schema_migrations"),
        *applicable(&ch).last().unwrap()
    );
    push(&svc, "a", 300);
    // one line far over the column limit
    let long = format!(
        "Failed password for root from 198.51.100.99 port 9 ssh2 {}",
        "x".repeat(100_000)
    );
    let body = serde_json::json!({"streams": [{"stream": {"job": "sshd"}, "values": [[(now_ms() * 1_000_000).to_string(), long]]}]});
    let r = svc.post(
        "/loki/api/v1/push",
        &[("Content-Type", "application/json")],
        &serde_json::to_vec(&body).unwrap(),
    );
    assert_eq!(r.status, 204);
    svc.wait_for("the first rows", 20, |_| {
        ch.number("SELECT count() FROM tp.events") == 301
    });

    ch.stop();
    push(&svc, "b", 400);
    svc.wait_for("a spooled batch", 20, |s| {
        metric(s, "threatpilot_store_spool_batches") > 0.0
    });
    ch.restart();
    push(&svc, "c", 500);
    let total = 1201;
    svc.wait_for("every row", 60, |_| {
        ch.number("SELECT count() FROM tp.events FINAL") == total
    });
    let findings_file = svc.dir.join("findings.jsonl");
    let err = svc.stop();
    assert!(err.contains("store:clickhouse received="), "{err}");
    let store = err
        .lines()
        .find(|l| l.trim_start().starts_with("store"))
        .unwrap();
    assert!(!store.contains("left_in_spool"), "{store}");

    // nothing doubled, even before parts merge
    assert_eq!(
        ch.number("SELECT uniqExact(event_id) FROM tp.events"),
        total
    );
    ch.query("OPTIMIZE TABLE tp.events FINAL").unwrap();
    assert_eq!(ch.number("SELECT count() FROM tp.events"), total);
    // one row per finding once merged: the latest version
    let versions: Vec<Value> = std::fs::read_to_string(&findings_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut ids: Vec<&str> = versions
        .iter()
        .map(|f| f["finding_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert!(!ids.is_empty());
    assert_eq!(
        ch.number("SELECT count() FROM tp.findings FINAL"),
        ids.len() as u64
    );
    assert_eq!(
        ch.number("SELECT count() FROM tp.findings"),
        versions.len() as u64
    );
    // the long line was cut, and marked
    assert_eq!(
        ch.number("SELECT count() FROM tp.events WHERE truncated = 1"),
        1
    );
    assert!(ch.number("SELECT max(length(original)) FROM tp.events") <= 32 * 1024);
    assert!(ch.number("SELECT count() FROM tp.templates FINAL") > 0);
}

#[test]
fn a_spool_left_by_one_run_is_replayed_by_the_next() {
    let Some(mut ch) = ClickhouseServer::start(temp_dir("ch-spool")) else {
        return;
    };
    ch.stop();
    // ClickHouse is down for the whole first run
    let yaml = service_yaml(&ch.url, "tp2", "");
    let svc = Service::start("ch-spool-a", &yaml, Stdio::null());
    push(&svc, "d", 250);
    let spool = svc.dir.join("..").join("spool-tp2");
    let err = svc.stop();
    let store = err
        .lines()
        .find(|l| l.trim_start().starts_with("store"))
        .unwrap()
        .to_owned();
    assert!(store.contains("left_in_spool="), "{store}");
    assert!(std::fs::read_dir(&spool).unwrap().count() > 0);
    // the next run, with ClickHouse back, replays it before anything else
    ch.restart();
    let svc = Service::start(
        "ch-spool-b",
        &yaml.replace("{dir}/../spool-tp2", &spool.display().to_string()),
        Stdio::null(),
    );
    svc.wait_for("the replayed rows", 60, |_| {
        ch.query("EXISTS TABLE tp2.events")
            .is_some_and(|r| r.trim() == "1")
            && ch.number("SELECT count() FROM tp2.events FINAL") == 250
    });
    svc.stop();
    assert_eq!(ch.number("SELECT uniqExact(event_id) FROM tp2.events"), 250);
}

#[test]
fn a_replay_that_leaves_rows_in_the_spool_fails_and_the_next_run_reports_them() {
    let Some(mut ch) = ClickhouseServer::start(temp_dir("ch-left")) else {
        return;
    };
    // nothing listens where the pipeline is told ClickHouse is
    ch.stop();
    let dir = temp_dir("ch-left-run");
    let spool = dir.join("spool");
    let pipeline = dir.join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "version: 1\nname: s\nsources:\n  - type: file\n    id: f\n    paths: [fixtures/detectors/crowdsec-ssh-bf/input.log]\nsinks:\n  - type: clickhouse\n    url: {}\n    database: tp5\n    events: all\n    spool_dir: {}\n",
            ch.url,
            spool.display()
        ),
    )
    .unwrap();
    let run = || {
        support::threatpilot([
            std::ffi::OsStr::new("run"),
            "--pipeline".as_ref(),
            pipeline.as_os_str(),
        ])
    };
    let first = run();
    let err = String::from_utf8_lossy(&first.stderr).into_owned();
    assert_eq!(first.status.code(), Some(3), "{err}");
    assert!(err.contains("wait in the spool at"), "{err}");
    assert!(err.contains(&spool.display().to_string()), "{err}");
    let left: u64 = err
        .split("left_in_spool=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a left_in_spool count");
    assert!(left > 0);
    // back up: the next run inserts them first and says so
    ch.restart();
    let second = run();
    let err = String::from_utf8_lossy(&second.stderr).into_owned();
    assert!(second.status.success(), "{err}");
    let replayed: u64 = err
        .split("replayed_from_earlier_spool=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no replay reported:\n{err}"));
    assert_eq!(replayed, left);
    assert!(!err.contains("left_in_spool"), "{err}");
}

#[test]
fn a_schema_that_does_not_match_stops_the_run_at_start_with_the_column_named() {
    let Some(ch) = ClickhouseServer::start(temp_dir("ch-schema")) else {
        return;
    };
    let dir = temp_dir("ch-schema-run");
    let pipeline = dir.join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "version: 1\nname: s\nsources:\n  - type: file\n    id: f\n    paths: [fixtures/detectors/crowdsec-ssh-bf/input.log]\nsinks:\n  - type: clickhouse\n    url: {}\n    database: tp3\n    events: all\n    spool_dir: {}\n",
            ch.url,
            dir.join("spool").display()
        ),
    )
    .unwrap();
    let run = || {
        support::threatpilot([
            std::ffi::OsStr::new("run"),
            "--pipeline".as_ref(),
            pipeline.as_os_str(),
        ])
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // lines with a time of their own have the same ids in every run
    // (a blank line's time is when it was read)
    let timed = "SELECT uniqExact(event_id) FROM tp3.events WHERE original != ''";
    let rows = ch.number(timed);
    assert!(rows > 0);
    // migrations ran once: a second run applies none and adds its rows
    assert!(run().status.success());
    assert_eq!(
        ch.number("SELECT count() FROM tp3.schema_migrations"),
        applicable(&ch).len() as u64
    );
    assert_eq!(ch.number(timed), rows);
    ch.query("ALTER TABLE tp3.events MODIFY COLUMN http_status String")
        .unwrap();
    let bad = run();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("tp3.events: column http_status String where http_status UInt16 is expected"),
        "{err}"
    );
    // a column added or dropped is named too
    ch.query("ALTER TABLE tp3.events MODIFY COLUMN http_status UInt16")
        .unwrap();
    ch.query("ALTER TABLE tp3.findings ADD COLUMN surprise String")
        .unwrap();
    ch.query("ALTER TABLE tp3.findings DROP COLUMN context")
        .unwrap();
    let bad = run();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("(missing context; not written by this version: surprise)"),
        "{err}"
    );
}

#[test]
fn retention_drops_old_day_partitions_on_servers_without_ttl() {
    let Some(ch) = ClickhouseServer::start(temp_dir("ch-retention")) else {
        return;
    };
    let dir = temp_dir("ch-retention-run");
    let pipeline = dir.join("p.yaml");
    let yaml = |retention: &str| {
        format!(
            "version: 1\nname: r\nsources:\n  - type: file\n    id: f\n    paths: [fixtures/detectors/crowdsec-ssh-bf/input.log]\nsinks:\n  - type: clickhouse\n    url: {}\n    database: tp4\n    events: evidence\n    spool_dir: {}\n{retention}",
            ch.url,
            dir.join("spool").display()
        )
    };
    std::fs::write(&pipeline, yaml("")).unwrap();
    support::run_pipeline(&pipeline);
    // evidence mode: only events some finding cites
    let stored = ch.number("SELECT count() FROM tp4.events");
    assert!(stored > 0 && stored < 100, "{stored}");
    for age in [40, 35, 2] {
        ch.query(&format!(
            "INSERT INTO tp4.events (event_id, day, timestamp) VALUES ('old-{age}', today() - {age}, now() - {age} * 86400)"
        ))
        .unwrap();
    }
    std::fs::write(&pipeline, yaml("    retention_days: {events: 30}\n")).unwrap();
    support::run_pipeline(&pipeline);
    assert_eq!(
        ch.number("SELECT count() FROM tp4.events WHERE event_id IN ('old-40', 'old-35')"),
        0
    );
    assert_eq!(
        ch.number("SELECT count() FROM tp4.events WHERE event_id = 'old-2'"),
        1
    );
}

#[test]
fn identical_lines_across_batches_keep_their_count_in_both_stores_of_one_pipeline() {
    let Some(ch) = ClickhouseServer::start(temp_dir("ch-identical")) else {
        return;
    };
    let dir = temp_dir("ch-identical-run");
    // 3,000 identical lines (twelve batches of them), then a few others
    let same = "Nov 22 10:00:00 web-1 sshd[7]: Connection closed by 192.0.2.1 port 22 [preauth]";
    let mut text = format!("{same}\n").repeat(3000);
    for i in 0..20 {
        text.push_str(&format!(
            "Nov 22 10:00:{:02} web-1 sshd[7]: Failed password for root from 203.0.113.4 port {} ssh2\n",
            i + 1,
            40000 + i
        ));
    }
    let log = dir.join("auth.log");
    std::fs::write(&log, text).unwrap();
    let data = dir.join("data");
    let pipeline = dir.join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "version: 1\nname: both\nsources:\n  - type: file\n    id: f\n    paths: [{}]\nsinks:\n  - type: clickhouse\n    url: {}\n    database: tp_identical\n    events: all\n    spool_dir: {}\n  - type: parquet\n    dir: {}\n    events: all\n",
            log.display(),
            ch.url,
            dir.join("spool").display(),
            data.display()
        ),
    )
    .unwrap();
    let out = support::threatpilot([
        std::ffi::OsStr::new("run"),
        "--pipeline".as_ref(),
        pipeline.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("store:clickhouse"), "{err}");
    assert!(err.contains("store:parquet"), "{err}");
    // ClickHouse merges rows by event_id: every stored event keeps its count
    ch.query("OPTIMIZE TABLE tp_identical.events FINAL")
        .unwrap();
    let rows = ch.number("SELECT count() FROM tp_identical.events FINAL");
    let lines = ch.number("SELECT sum(event_count) FROM tp_identical.events FINAL");
    eprintln!("clickhouse: {rows} rows, {lines} lines");
    assert_eq!(lines, 3020, "{rows} rows");
    assert!(rows > 20, "the identical run spans several batches: {rows}");
    // the embedded store holds the same rows and counts
    let v = sql_json(
        &data,
        "SELECT count(*) AS rows, sum(event_count) AS lines, count(DISTINCT event_id) AS ids FROM events",
    );
    assert_eq!(v["lines"], 3020, "{v}");
    assert_eq!(v["rows"], rows, "{v}");
    assert_eq!(v["ids"], rows, "one id per row: {v}");
    // the summary's template ids are the stores' template rows
    let ids: u64 = err
        .split(" ids stored")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no template ids in the summary: {err}"));
    assert_eq!(
        ch.number("SELECT count() FROM tp_identical.templates_latest FINAL"),
        ids
    );
    let v = sql_json(&data, "SELECT count(*) AS n FROM templates_latest");
    assert_eq!(v["n"], ids, "{v}");
}

/// The first row of a query over an embedded store, as JSON.
fn sql_json(data: &std::path::Path, query: &str) -> Value {
    let out = support::threatpilot_ok(
        [
            std::ffi::OsStr::new("sql"),
            "--data".as_ref(),
            data.as_os_str(),
            "--format".as_ref(),
            "json".as_ref(),
            query.as_ref(),
        ],
        "sql",
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(text.lines().next().unwrap()).unwrap()
}
