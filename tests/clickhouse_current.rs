//! The migrations on a current ClickHouse. The suite's server is Debian's
//! 18.16, which skips what it lacks; chDB (a current ClickHouse engine in
//! process, `scripts/chdb_check.py`) runs everything a new server gets:
//! every migration including LowCardinality and codecs, and the retention
//! TTL. The columns that result must be the ones the sink writes, and the
//! views must still give the latest version of a finding.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use threatpilot::store::clickhouse::{
    MIGRATIONS, applies, expected_columns, migration_statements, plain_type, ttl_statement,
};

/// Runs statements then queries on chDB; None when chDB is not installed.
fn chdb(statements: &[String], queries: &[&str]) -> Option<Value> {
    let have = Command::new("python3")
        .args(["-c", "import chdb"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        let required = std::env::var("THREATPILOT_REQUIRE_SERVERS").is_ok_and(|v| v == "1");
        assert!(!required, "chdb is required but missing (pip install chdb)");
        eprintln!("skipped: chdb is not installed");
        return None;
    }
    let mut child = Command::new("python3")
        .arg("scripts/chdb_check.py")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let job = json!({"statements": statements, "queries": queries});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn a_current_server_gets_every_migration_and_the_sink_columns_still_match() {
    let current = (99, 0);
    let mut statements = vec!["CREATE DATABASE `tp`".to_owned()];
    for (_, _, ddl) in MIGRATIONS {
        assert!(applies(ddl, current));
        statements.extend(migration_statements(ddl, "tp"));
    }
    statements.push(ttl_statement("tp", "events", 30));
    statements.push(ttl_statement("tp", "findings", 90));
    statements.push(
        "INSERT INTO tp.findings (finding_id, update_count, title, severity, evidence, day) VALUES \
         ('f-1', 1, 'SSH brute force', 'medium', ['a'], today()), \
         ('f-1', 2, 'SSH brute force', 'high', ['a', 'b'], today())"
            .to_owned(),
    );
    let Some(answer) = chdb(
        &statements,
        &[
            "SELECT table, name, type, compression_codec FROM system.columns \
             WHERE database = 'tp' ORDER BY table, position",
            "SELECT severity, length(evidence) FROM tp.findings_latest",
            "SELECT engine_full FROM system.tables WHERE database = 'tp' AND name = 'events'",
        ],
    ) else {
        return;
    };
    let version = answer["version"].as_str().unwrap();
    let major: u32 = version.split('.').next().unwrap().parse().unwrap();
    assert!(
        major >= 20,
        "chdb's ClickHouse {version} is older than expected"
    );
    let q = |i: usize| answer["queries"][i].as_str().unwrap().to_owned();

    // (table, name, type, codec) as the server has them
    let columns: Vec<Vec<String>> = q(0)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    for (table, want) in expected_columns() {
        let got: Vec<(String, String)> = columns
            .iter()
            .filter(|c| c[0] == table)
            .map(|c| (c[1].clone(), plain_type(&c[2]).to_owned()))
            .collect();
        assert_eq!(got, want, "{table}");
    }
    let column = |table: &str, name: &str| {
        columns
            .iter()
            .find(|c| c[0] == table && c[1] == name)
            .unwrap_or_else(|| panic!("{table}.{name}"))
            .clone()
    };
    assert_eq!(column("events", "dataset")[2], "LowCardinality(String)");
    assert_eq!(column("findings", "severity")[2], "LowCardinality(String)");
    assert!(column("events", "original")[3].contains("ZSTD"));
    assert!(column("events", "timestamp_ms")[3].contains("Delta"));
    // key and partition columns are untouched
    assert_eq!(column("events", "event_id")[2], "String");
    assert_eq!(column("events", "timestamp")[2], "DateTime");

    assert_eq!(q(1), "high\t2\n");
    let engine = q(2);
    assert!(engine.contains("TTL day + toIntervalDay(30)"), "{engine}");
}
