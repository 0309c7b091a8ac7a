//! The command-line contracts scripts rely on, checked through the binary:
//! `parse`, `cluster`, `replay`, `validate`, `simulate`.

use std::process::Command;

use serde_json::Value;

fn tp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_threatpilot"))
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn parse_prints_one_dotted_ecs_event_per_line() {
    let out = tp()
        .args(["parse", "fixtures/detectors/crowdsec-ssh-bf/input.log"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let events = json_lines(&out.stdout);
    let lines = std::fs::read_to_string("fixtures/detectors/crowdsec-ssh-bf/input.log")
        .unwrap()
        .lines()
        .count();
    assert_eq!(events.len(), lines);
    let e = &events[0];
    assert_eq!(e["event.dataset"], "sshd");
    assert_eq!(e["source.ip"], "35.188.49.176");
    assert!(e["@timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(
        e["event.original"]
            .as_str()
            .unwrap()
            .contains("Invalid user pascal")
    );
}

#[test]
fn cluster_prints_line_template_id_and_template() {
    let out = tp()
        .args([
            "cluster",
            "--log-format",
            r"<Date> <Day> <Time> <Component> sshd\[<Pid>\]: <Content>",
            "fixtures/detectors/crowdsec-ssh-slow-bf/input.log",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows = json_lines(&out.stdout);
    assert!(!rows.is_empty());
    for (i, r) in rows.iter().enumerate() {
        let obj = r.as_object().unwrap();
        assert_eq!(obj.len(), 3, "exactly line, template_id, template: {r}");
        assert_eq!(r["line"], i + 1);
        assert!(r["template_id"].as_str().unwrap().starts_with("t-"));
        assert!(r["template"].is_string());
    }
}

#[test]
fn replay_prints_final_findings_and_a_summary() {
    let out = tp()
        .args([
            "replay",
            "--reference-time",
            "2026-06-01T00:00:00Z",
            "fixtures/detectors/crowdsec-ssh-bf/input.log",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let findings = json_lines(&out.stdout);
    let ids: std::collections::HashSet<_> = findings
        .iter()
        .map(|f| f["finding_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), findings.len(), "each finding once");
    assert!(findings.iter().all(|f| f["status"] == "resolved"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("received="));
    let updates = tp()
        .args([
            "replay",
            "--updates",
            "--reference-time",
            "2026-06-01T00:00:00Z",
            "fixtures/detectors/crowdsec-ssh-bf/input.log",
        ])
        .output()
        .unwrap();
    let versions = json_lines(&updates.stdout);
    assert!(versions.len() > findings.len());
    assert_eq!(versions[0]["status"], "open");
}

#[test]
fn validate_reports_file_and_line() {
    assert!(tp().arg("validate").output().unwrap().status.success());
    let out = tp()
        .args([
            "validate",
            "--detectors",
            "tests/invalid/bad_regex",
            "--pipelines",
            "pipelines",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("tests/invalid/bad_regex/input.yaml:13: invalid regex")
    );
}

#[test]
fn simulate_writes_streams_and_expected_findings() {
    let dir = std::env::temp_dir().join(format!("tp-sim-{}", std::process::id()));
    let out = tp()
        .args(["simulate", "--events", "20000", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    for f in ["sshd.log", "nginx.log", "app.jsonl", "kernel.log"] {
        assert!(std::fs::metadata(dir.join(f)).unwrap().len() > 0, "{f}");
    }
    let expected: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert!(expected.len() >= 10);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn replay_reads_a_pretty_printed_alertmanager_payload_as_one_document() {
    let out = tp()
        .args(["replay", "fixtures/detectors/am-high-memory/input.json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let findings = json_lines(&out.stdout);
    assert_eq!(
        findings.len(),
        1,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(findings[0]["detector"]["id"], "infrastructure.alert_firing");
}

#[test]
fn a_file_sink_keeps_what_earlier_runs_wrote() {
    let dir = std::env::temp_dir().join(format!("tp-cli-append-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let findings = dir.join("findings.jsonl");
    let pipeline = dir.join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "version: 1\nname: append\nsources:\n  - type: file\n    id: f\n    paths: [fixtures/detectors/crowdsec-ssh-bf/input.log]\nsinks:\n  - type: file\n    path: {}\n",
            findings.display()
        ),
    )
    .unwrap();
    let run = || {
        let out = tp()
            .args(["run", "--pipeline"])
            .arg(&pipeline)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run();
    let first = std::fs::read_to_string(&findings).unwrap();
    assert!(!first.is_empty());
    // a crash left half a line: it is closed, not glued to the next run's
    std::fs::write(&findings, format!("{first}{{\"torn\":")).unwrap();
    run();
    let text = std::fs::read_to_string(&findings).unwrap();
    assert!(text.starts_with(&first), "the first run's lines are kept");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 * first.lines().count() + 1);
    assert_eq!(lines[first.lines().count()], "{\"torn\":");
    for l in lines.iter().filter(|l| !l.starts_with("{\"torn\"")) {
        serde_json::from_str::<Value>(l).expect("whole JSON lines");
    }
}
