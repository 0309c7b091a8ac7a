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
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("received="));
    // each stage says how long it worked, which tells the one that sets the pace
    for stage in ["source", "parse", "dedupe", "cluster", "detect", "sink"] {
        let line = stderr
            .lines()
            .find(|l| l.trim_start().starts_with(stage))
            .unwrap_or_else(|| panic!("no {stage} line: {stderr}"));
        assert!(line.contains(" busy="), "{line}");
    }
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

/// A folder for one test's files: under the test servers' folder, which
/// `scripts/test.sh` removes at the end, else the system's temporary one.
fn scratch(tag: &str) -> std::path::PathBuf {
    std::env::var_os("THREATPILOT_SERVERS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("{tag}-{}", std::process::id()))
}

#[test]
fn a_file_sink_keeps_what_earlier_runs_wrote() {
    let dir = scratch("tp-cli-append");
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

/// Rotated sshd logs: five attackers an hour apart per file, each file in
/// time order (`hour` sets the file's hour on a fixed day).
fn rotated(hour: u32, first: u32) -> String {
    let mut s = String::new();
    for a in first..first + 5 {
        for i in 0..10 {
            s.push_str(&format!(
                "Mar  3 {hour:02}:{:02}:{:02} bastion sshd[{}]: Failed password for root from 198.51.100.{a} port {} ssh2\n",
                a % 60,
                i * 3,
                400 + i,
                50000 + i
            ));
        }
    }
    s
}

fn offenders(out: &[u8]) -> std::collections::BTreeSet<String> {
    json_lines(out)
        .iter()
        .map(|f| format!("{} {}", f["detector"]["id"], f["offender"]["value"]))
        .collect()
}

#[test]
fn a_files_findings_resolve_when_the_file_ends_not_when_the_last_does() {
    let dir = scratch("tp-ended");
    std::fs::create_dir_all(&dir).unwrap();
    let (first, second) = (dir.join("a.log"), dir.join("b.log"));
    // two small files travel between the stages in one batch: the first
    // ends inside it, and still resolves before the second's events
    std::fs::write(&first, rotated(10, 1)).unwrap();
    std::fs::write(&second, rotated(12, 6)).unwrap();
    let out = tp()
        .args([
            "replay",
            "--updates",
            "--reference-time",
            "2026-06-01T00:00:00Z",
        ])
        .args([&first, &second])
        .output()
        .unwrap();
    assert!(out.status.success());
    let versions = json_lines(&out.stdout);
    // attackers .1 to .5 are in the first file, .6 to .10 in the second
    let attacker = |v: &Value| {
        let ip = v["offender"]["value"].as_str().unwrap_or("");
        ip.strip_prefix("198.51.100.")
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let last_of_first = versions
        .iter()
        .rposition(|v| (1..=5).contains(&attacker(v)))
        .expect("first file's findings");
    let first_of_second = versions
        .iter()
        .position(|v| (6..=10).contains(&attacker(v)))
        .expect("second file's findings");
    // the first file's findings are final before the second file's begin
    assert!(last_of_first < first_of_second, "{versions:#?}");
    assert!(
        versions[..first_of_second]
            .iter()
            .filter(|v| v["status"] == "open")
            .all(|open| versions[..first_of_second]
                .iter()
                .any(|v| v["finding_id"] == open["finding_id"] && v["status"] == "resolved")),
        "{versions:#?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn rotated_logs_concatenated_newest_first_are_all_evaluated() {
    let dir = std::env::temp_dir().join(format!("tp-rotated-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b, c) = (rotated(10, 1), rotated(12, 6), rotated(14, 11));
    let in_order = dir.join("in-order.log");
    std::fs::write(&in_order, format!("{a}{b}{c}")).unwrap();
    let newest_first = format!("{c}{b}{a}");
    let lines = newest_first.lines().count();
    let want = tp().args(["replay"]).arg(&in_order).output().unwrap();
    assert!(want.status.success());
    // `cat access.log access.log.1 access.log.2 | threatpilot replay -`
    let mut child = tp()
        .args(["replay", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), newest_first.as_bytes()).unwrap();
    let got = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&got.stderr);
    assert!(got.status.success(), "{stderr}");
    // A segment restarts every window, so a window longer than the jump
    // between files (the seven-day distributed count) sees each file
    // alone: what only the whole span shows is found in order, not
    // newest-first. Everything else is the same.
    let slow = "identity.distributed_brute_force_slow";
    let within = |out: &[u8]| -> std::collections::BTreeSet<String> {
        offenders(out)
            .into_iter()
            .filter(|p| !p.contains(slow))
            .collect()
    };
    assert_eq!(within(&got.stdout), within(&want.stdout), "{stderr}");
    assert!(offenders(&want.stdout).iter().any(|p| p.contains(slow)));
    assert!(!offenders(&got.stdout).iter().any(|p| p.contains(slow)));
    let found = offenders(&want.stdout);
    for a in 1..=15 {
        let ip = format!("198.51.100.{a}\"");
        assert!(found.iter().any(|f| f.ends_with(&ip)), "{ip}: {found:?}");
    }
    assert!(
        stderr.contains(&format!("detect   received={lines} emitted={lines}")),
        "{stderr}"
    );
    assert!(stderr.contains("new_segment=2"), "{stderr}");
    assert!(!stderr.contains("dropped as late"), "{stderr}");
    // a pipeline that keeps the live rule drops them, and says so
    let log = dir.join("newest-first.log");
    std::fs::write(&log, &newest_first).unwrap();
    let pipeline = dir.join("p.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "version: 1\nname: rotated\nsources:\n  - type: file\n    id: auth\n    paths: [{}]\nsinks:\n  - type: file\n    path: {}\n",
            log.display(),
            dir.join("findings.jsonl").display()
        ),
    )
    .unwrap();
    let out = tp()
        .args(["run", "--pipeline"])
        .arg(&pipeline)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "warning: 100 of {lines} lines (66.7%) were dropped as late"
        )),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn gzip(text: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

#[test]
fn rotated_files_named_in_any_order_are_one_stream_read_oldest_first() {
    let dir = scratch("tp-rotation-set");
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b, c) = (rotated(10, 1), rotated(12, 6), rotated(14, 11));
    let whole = dir.join("whole.log");
    std::fs::write(&whole, format!("{a}{b}{c}")).unwrap();
    let want = tp().args(["replay"]).arg(&whole).output().unwrap();
    assert!(want.status.success());
    // as logrotate leaves them, the oldest compressed, named as a shell
    // glob lists them: newest first
    std::fs::write(dir.join("auth.log"), &c).unwrap();
    std::fs::write(dir.join("auth.log.1"), &b).unwrap();
    std::fs::write(dir.join("auth.log.2.gz"), gzip(&a)).unwrap();
    let got = tp()
        .args(["replay"])
        .args(["auth.log", "auth.log.1", "auth.log.2.gz"].map(|f| dir.join(f)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&got.stderr);
    assert!(got.status.success(), "{stderr}");
    assert!(
        stderr.contains("one stream, oldest first (a rotation set): "),
        "{stderr}"
    );
    // every line read, in time order: no segment, nothing late
    let lines = 3 * a.lines().count();
    assert!(
        stderr.contains(&format!("detect   received={lines} emitted={lines}")),
        "{stderr}"
    );
    assert!(!stderr.contains("new_segment"), "{stderr}");
    // what spans the three files (the seven-day distributed count) is
    // found as in the one file, with the same findings
    assert_eq!(offenders(&got.stdout), offenders(&want.stdout));
    let slow = "identity.distributed_brute_force_slow";
    assert!(offenders(&got.stdout).iter().any(|p| p.contains(slow)));
    let ids = |out: &[u8]| -> Vec<Value> {
        json_lines(out)
            .iter()
            .map(|f| f["finding_id"].clone())
            .collect()
    };
    assert_eq!(ids(&got.stdout), ids(&want.stdout));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_compressed_log_is_read_or_refused_by_name_never_read_as_garbage() {
    let dir = scratch("tp-compressed");
    std::fs::create_dir_all(&dir).unwrap();
    let log = rotated(10, 1);
    let gz = gzip(&log);
    std::fs::write(dir.join("a.log.gz"), &gz).unwrap();
    let parsed = tp()
        .arg("parse")
        .arg(dir.join("a.log.gz"))
        .output()
        .unwrap();
    assert!(parsed.status.success());
    assert_eq!(json_lines(&parsed.stdout).len(), log.lines().count());
    // a gzip file cut short: the lines before the cut are evaluated, then
    // the error names the file
    std::fs::write(dir.join("cut.gz"), &gz[..gz.len() * 2 / 3]).unwrap();
    let out = tp().arg("replay").arg(dir.join("cut.gz")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cut.gz"), "{stderr}");
    assert!(!offenders(&out.stdout).is_empty(), "{stderr}");
    // xz is named, not parsed as lines of binary
    std::fs::write(
        dir.join("b.log.xz"),
        b"\xfd7zXZ\x00\x00\x04\xe6\xd6\xb4\x46",
    )
    .unwrap();
    let out = tp()
        .arg("replay")
        .arg(dir.join("b.log.xz"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("compressed with xz, which is not read"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn eval_detection_scores_labelled_logs_in_the_crowdsec_layout() {
    let root = std::env::temp_dir().join(format!("tp-eval-det-{}", std::process::id()));
    let (a, b) = (root.join("ssh-bf"), root.join("quiet-day"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(a.join("auth.log"), rotated(9, 7)).unwrap();
    std::fs::write(
        a.join("config.yaml"),
        "log_file: auth.log\nlog_type: syslog\n",
    )
    .unwrap();
    std::fs::write(
        a.join("scenario.assert"),
        "len(results) == 2\n\"198.51.100.7\" in results[0].Overflow.GetSources()\nresults[1].Overflow.Sources[\"192.0.2.99\"].IP == \"192.0.2.99\"\n",
    )
    .unwrap();
    std::fs::write(b.join("day.log"), rotated(11, 20)).unwrap();
    std::fs::write(b.join("scenario.assert"), "len(results) == 0\n").unwrap();
    let out = tp()
        .args(["eval", "detection", "--json"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &v["totals"];
    // expected: .7 and .99; flagged: .7-.11 in the first, .20-.24 in the second
    assert_eq!(t["tests"], 2);
    assert_eq!(t["expected"], 2);
    assert_eq!(t["flagged"], 10);
    assert_eq!(t["true_positives"], 1);
    assert_eq!(t["recall"], 0.5);
    assert_eq!(t["precision"], 0.1);
    let first = &v["tests"][1];
    assert_eq!(first["name"], "ssh-bf");
    assert_eq!(first["missed"], serde_json::json!(["192.0.2.99"]));
    let table = tp()
        .args(["eval", "detection"])
        .arg(&root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(
            "2 tests: 2 addresses expected, 10 flagged, 1 found: recall 0.50, precision 0.10"
        ),
        "{text}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn validate_sigma_ends_with_loaded_and_unsupported_and_replay_runs_the_rules() {
    let dir = scratch("tp-sigma");
    std::fs::create_dir_all(dir.join("web")).unwrap();
    std::fs::write(
        dir.join("web/traversal.yml"),
        "title: Encoded traversal in cgi-bin\nid: 0b7c0a43-0000-4000-8000-00000000000a\nauthor: Tester\nlogsource:\n  category: webserver\ndetection:\n  selection:\n    cs-uri-query|contains: '/cgi-bin/.%2e/'\n  condition: selection\nlevel: critical\ntags: [attack.t1190]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("web/cookie.yml"),
        "title: Needs a cookie\nlogsource:\n  category: webserver\ndetection:\n  selection:\n    cs-cookie|contains: 'x'\n  condition: selection\n",
    )
    .unwrap();
    let out = tp()
        .args(["validate", "--sigma"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().last(), Some("sigma: 1 loaded, 1 unsupported"));
    assert!(text.contains("cookie.yml: unsupported: \"Needs a cookie\": field `cs-cookie`"));
    let log = dir.join("access.log");
    std::fs::write(
        &log,
        "198.51.100.23 - - [03/Mar/2026:10:00:00 +0000] \"GET /cgi-bin/.%2e/.%2e/.%2e/bin/sh HTTP/1.1\" 400 0 \"-\" \"x\"\n",
    )
    .unwrap();
    let out = tp()
        .args(["replay", "--sigma"])
        .arg(&dir)
        .arg(&log)
        .output()
        .unwrap();
    assert!(out.status.success());
    let findings = json_lines(&out.stdout);
    let f = findings
        .iter()
        .find(|f| f["title"] == "Encoded traversal in cgi-bin")
        .expect("the Sigma rule fired");
    assert_eq!(f["offender"]["value"], "198.51.100.23");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["context"]["sigma.author"], "Tester");
    assert!(String::from_utf8_lossy(&out.stderr).contains("sigma: 1 loaded, 1 unsupported"));
}

#[test]
fn a_file_that_cannot_be_opened_stops_the_replay_after_what_was_read_is_evaluated() {
    let out = tp()
        .args(["replay", "--reference-time", "2026-06-01T00:00:00Z"])
        .arg("fixtures/detectors/crowdsec-ssh-bf/input.log")
        .arg("fixtures/detectors/no-such-file.log")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot open fixtures/detectors/no-such-file.log"),
        "{stderr}"
    );
    // the first file's brute force is found and printed all the same
    let findings = json_lines(&out.stdout);
    assert!(
        findings
            .iter()
            .any(|f| f["detector"]["id"] == "identity.ssh_brute_force"),
        "{findings:#?}"
    );
}
