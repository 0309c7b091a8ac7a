//! `threatpilot sql` over the embedded store, and the README's analyst
//! queries on both stores: the same pipeline written to Parquet and to a
//! real ClickHouse 18.16 gives the same answers.

#[path = "support/clickhouse.rs"]
mod clickhouse;
#[path = "support/service.rs"]
mod support;

use serde_json::Value;

const FILES: &str = "[fixtures/detectors/crowdsec-ssh-bf/input.log, fixtures/detectors/crowdsec-nginx-http-sqli-probing/input.log, fixtures/detectors/synthetic-password-spraying/input.log, fixtures/detectors/npd-oom-kill/input.log]";

/// The analysts' queries the README shows, as written there.
pub const README_QUERIES: &[&str] = &[
    "SELECT offender_value, count(*) AS findings, sum(event_count) AS events FROM findings_latest WHERE day = today() GROUP BY offender_value ORDER BY findings DESC, offender_value LIMIT 10",
    "SELECT classification, first_seen_ms - first_seen_ms % 3600000 AS hour_ms, count(*) AS findings FROM findings_latest GROUP BY classification, hour_ms ORDER BY hour_ms, classification",
    "SELECT detector_id, count(*) AS findings, avg(crossed_at_ms - first_seen_ms) / 1000 AS avg_seconds_to_detect FROM findings_latest GROUP BY detector_id ORDER BY detector_id",
];

fn run_pipeline(dir: &std::path::Path, sink: &str) {
    let p = dir.join("p.yaml");
    std::fs::write(
        &p,
        format!("version: 1\nname: sql\nsources:\n  - type: file\n    id: f\n    paths: {FILES}\nsinks:\n  - type: file\n    path: {}\n{sink}", dir.join("findings.jsonl").display()),
    )
    .unwrap();
    support::run_pipeline(&p);
}

fn sql(args: &[&str]) -> String {
    let out = support::threatpilot_ok(
        std::iter::once("sql").chain(args.iter().copied()),
        &format!("sql {args:?}"),
    );
    String::from_utf8(out.stdout).unwrap()
}

/// JSON lines with numbers normalized (ClickHouse quotes 64-bit integers)
/// and floats rounded.
fn rows(jsonl: &str) -> Vec<Value> {
    jsonl
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            for (_, x) in v.as_object_mut().unwrap().iter_mut() {
                let n = match x {
                    Value::String(s) => s.parse::<f64>().ok(),
                    Value::Number(n) => n.as_f64(),
                    _ => None,
                };
                if let Some(n) = n {
                    *x = serde_json::json!((n * 1000.0).round() / 1000.0);
                }
            }
            v
        })
        .collect()
}

#[test]
fn the_embedded_store_answers_sql_in_table_json_and_csv() {
    let dir = support::temp_dir("sql-embedded");
    let data = dir.join("data");
    run_pipeline(
        &dir,
        &format!(
            "  - type: parquet\n    dir: {}\n    events: all\n",
            data.display()
        ),
    );
    let data = data.display().to_string();
    let findings: Vec<Value> = std::fs::read_to_string(dir.join("findings.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut ids: Vec<&str> = findings
        .iter()
        .map(|f| f["finding_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    let n = |q: &str| {
        rows(&sql(&["--data", &data, "--format", "json", q]))[0]["n"]
            .as_f64()
            .unwrap() as usize
    };
    assert_eq!(n("SELECT count(*) AS n FROM findings"), findings.len());
    assert_eq!(n("SELECT count(*) AS n FROM findings_latest"), ids.len());
    let lines: usize = [
        "crowdsec-ssh-bf/input.log",
        "crowdsec-nginx-http-sqli-probing/input.log",
        "synthetic-password-spraying/input.log",
        "npd-oom-kill/input.log",
    ]
    .iter()
    .map(|f| {
        std::fs::read_to_string(format!("fixtures/detectors/{f}"))
            .unwrap()
            .lines()
            .count()
    })
    .sum();
    let events = n("SELECT count(*) AS n FROM events");
    assert!(
        events > lines / 2 && events <= lines,
        "{events} events of {lines} lines"
    );
    assert!(n("SELECT count(*) AS n FROM templates_latest") > 0);
    // the latest version is the resolved one
    let open = n("SELECT count(*) AS n FROM findings_latest WHERE status = 'open'");
    assert_eq!(open, 0);
    let table = sql(&[
        "--data",
        &data,
        "SELECT classification, count(*) AS n FROM findings_latest GROUP BY classification ORDER BY classification",
    ]);
    assert!(table.contains("| classification"), "{table}");
    assert!(table.contains("brute_force"), "{table}");
    let csv = sql(&[
        "--data",
        &data,
        "--format",
        "csv",
        "SELECT finding_id, severity FROM findings_latest ORDER BY finding_id",
    ]);
    assert_eq!(csv.lines().next(), Some("finding_id,severity"));
    assert_eq!(csv.lines().count(), ids.len() + 1);
    for q in README_QUERIES {
        sql(&["--data", &data, q]);
    }
    // a bad query is a clear error, not a panic
    let out = support::threatpilot(["sql", "--data", &data, "SELECT nope FROM findings"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn the_readme_queries_give_the_same_answers_on_both_stores() {
    let Some(ch) = clickhouse::ClickhouseServer::start(support::temp_dir("sql-ch")) else {
        return;
    };
    let dir = support::temp_dir("sql-both");
    let data = dir.join("data");
    run_pipeline(
        &dir,
        &format!(
            "  - type: parquet\n    dir: {}\n    events: all\n",
            data.display()
        ),
    );
    let dir2 = support::temp_dir("sql-both-ch");
    run_pipeline(
        &dir2,
        &format!(
            "  - type: clickhouse\n    url: {}\n    database: tpq\n    events: all\n    spool_dir: {}\n",
            ch.url,
            dir2.join("spool").display()
        ),
    );
    let data = data.display().to_string();
    for q in README_QUERIES {
        let embedded = rows(&sql(&["--data", &data, "--format", "json", q]));
        let server = rows(&sql(&[
            "--clickhouse",
            &ch.url,
            "--database",
            "tpq",
            "--format",
            "json",
            q,
        ]));
        assert_eq!(embedded, server, "{q}");
    }
    // and without the date filter, so the comparison is not of two empty answers
    let q = README_QUERIES[0].replace("WHERE day = today() ", "");
    let embedded = rows(&sql(&["--data", &data, "--format", "json", &q]));
    assert!(!embedded.is_empty());
    assert_eq!(
        embedded,
        rows(&sql(&[
            "--clickhouse",
            &ch.url,
            "--database",
            "tpq",
            "--format",
            "json",
            &q
        ]))
    );
}
