//! Response without live targets: playbook goldens and fixtures, coverage
//! of every shipped detector, `replay --respond` output, hostile values,
//! the audit chain through the CLI, and respond sections refused at load.

#[path = "support/service.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::Path;

use support::{temp_dir, threatpilot, threatpilot_ok};

#[test]
fn broken_playbooks_have_golden_errors() {
    let mut cases: Vec<_> = std::fs::read_dir("tests/invalid_playbooks")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 5);
    for case in cases {
        let text = std::fs::read_to_string(case.join("input.yaml")).unwrap();
        let err = threatpilot::respond::playbook::load_str(&text, "input.yaml")
            .expect_err(&format!("{} should not load", case.display()));
        let want = std::fs::read_to_string(case.join("error.txt")).unwrap_or_default();
        assert_eq!(
            err.to_string(),
            want.trim_end(),
            "golden error of {}",
            case.display()
        );
    }
}

#[test]
fn every_playbook_fixture_plans_exactly_its_expected_actions() {
    let playbooks = threatpilot::respond::playbook::load_paths(&["playbooks".to_owned()]).unwrap();
    let dirs =
        threatpilot::respond::fixtures::fixture_dirs(Path::new("fixtures/playbooks")).unwrap();
    assert!(dirs.len() >= 10, "found {} playbook fixtures", dirs.len());
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|d| threatpilot::respond::fixtures::run_fixture(d, &playbooks).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // every playbook is exercised by some fixture
    let used: BTreeSet<String> = dirs
        .iter()
        .flat_map(|d| threatpilot::respond::fixtures::run_fixture(d, &playbooks).unwrap())
        .map(|e| e.playbook)
        .collect();
    for p in &playbooks {
        if !p.escalate {
            assert!(used.contains(&p.id), "playbook {} has no fixture", p.id);
        }
    }
}

/// Every shipped detector's findings (from its own fixtures) meet a playbook.
#[test]
fn every_shipped_detector_has_a_playbook() {
    use threatpilot::respond::playbook::{MatchInput, first_match, load_paths};
    let playbooks = load_paths(&["playbooks".to_owned()]).unwrap();
    let detectors = threatpilot::detect::load_dir(Path::new("detectors")).unwrap();
    let mut covered = BTreeSet::new();
    for d in threatpilot::detect::fixtures::fixture_dirs(Path::new("fixtures/detectors")).unwrap() {
        for mut f in threatpilot::detect::fixtures::run_fixture(&d, Path::new("detectors")).unwrap()
        {
            // as it opens (fixtures give final, resolved states)
            f.status = threatpilot::finding::Status::Open;
            let m = MatchInput {
                finding: &f,
                tags: &[],
                priority: 50.0,
            };
            if first_match(&playbooks, &m).is_some() {
                covered.insert(f.detector.id.clone());
            }
        }
    }
    let missing: Vec<&str> = detectors
        .iter()
        .map(|d| d.id.as_str())
        .filter(|id| !covered.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "detectors whose fixture findings meet no playbook (or that have no fixture finding): {missing:?}"
    );
}

fn lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn replay_respond_prints_findings_incidents_and_actions_in_observe_mode() {
    let out = threatpilot_ok(
        [
            "replay",
            "--respond",
            "--reference-time",
            "2026-06-01T00:00:00Z",
            "fixtures/detectors/crowdsec-ssh-bf/input.log",
            "fixtures/detectors/synthetic-success-after-failures/input.log",
        ],
        "replay --respond",
    );
    let all = lines(&out);
    let of =
        |t: &str| -> Vec<&serde_json::Value> { all.iter().filter(|v| v["type"] == t).collect() };
    assert!(!of("finding").is_empty());
    assert!(!of("incident").is_empty());
    let actions = of("action");
    assert!(
        !actions.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for a in &actions {
        for k in ["action", "target", "incident_id", "decision", "reason"] {
            assert!(a.get(k).is_some(), "action line without {k}: {a}");
        }
        // replay never acts: everything is planned (observe) or skipped
        assert!(
            a["decision"] == "planned" || a["decision"] == "skipped",
            "{a}"
        );
    }
    assert!(actions.iter().any(|a| a["action"] == "block_ip"));
    // every action belongs to a printed incident
    let incidents: BTreeSet<&str> = of("incident")
        .iter()
        .map(|i| i["incident_id"].as_str().unwrap())
        .collect();
    for a in &actions {
        assert!(incidents.contains(a["incident_id"].as_str().unwrap()));
    }
    // the brute force, the success after failures of one address: one incident
    let saf = of("finding")
        .into_iter()
        .find(|f| f["detector"]["id"] == "identity.success_after_failures")
        .expect("a success-after-failures finding");
    let offender = saf["offender"]["value"].as_str().unwrap();
    let with: Vec<_> = of("incident")
        .into_iter()
        .filter(|i| {
            i["offenders"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o == offender)
        })
        .collect();
    assert_eq!(with.len(), 1, "{with:?}");
}

#[test]
fn replay_with_a_policy_shows_what_would_wait_and_what_is_protected() {
    let dir = temp_dir("respond-policy");
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        "version: 1\nmodes: {low: auto, medium: auto, high: approve, critical: approve}\nprotected:\n  users: [root]\n",
    )
    .unwrap();
    let out = threatpilot_ok(
        [
            "replay",
            "--respond",
            "--policy",
            policy.to_str().unwrap(),
            "--reference-time",
            "2026-06-01T00:00:00Z",
            "fixtures/detectors/synthetic-success-after-failures/input.log",
        ],
        "replay --respond --policy",
    );
    let actions: Vec<serde_json::Value> = lines(&out)
        .into_iter()
        .filter(|v| v["type"] == "action")
        .collect();
    let by = |kind: &str| actions.iter().find(|a| a["action"] == kind).cloned();
    let lock = by("lock_account").expect("a lock_account action");
    // high risk waits for a person
    assert_eq!(lock["decision"], "pending_approval", "{lock}");
    // medium risk would run (simulated)
    let block = by("block_ip").expect("a block_ip action");
    assert_eq!(block["decision"], "planned", "{block}");
    assert!(
        block["reason"].as_str().unwrap().contains("auto"),
        "{block}"
    );
}

#[test]
fn audit_verify_names_the_first_edited_record() {
    let dir = temp_dir("audit-cli");
    let path = dir.join("audit.log");
    {
        let mut log = threatpilot::respond::audit::AuditLog::open(&path).unwrap();
        for i in 0..20 {
            log.append(
                1_000 + i,
                "policy",
                "skipped",
                &format!("a-{i:04}"),
                "protected",
            )
            .unwrap();
        }
        log.sync().unwrap();
    }
    let ok = threatpilot(["audit", "verify", path.to_str().unwrap()]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    // one byte of record 13 changed
    let mut bytes = std::fs::read(&path).unwrap();
    let line13 = bytes
        .split(|b| *b == b'\n')
        .take(12)
        .map(|l| l.len() + 1)
        .sum::<usize>();
    let at = line13
        + bytes[line13..]
            .windows(6)
            .position(|w| w == b"a-0012")
            .unwrap()
        + 5;
    bytes[at] = b'9';
    std::fs::write(&path, bytes).unwrap();
    let bad = threatpilot(["audit", "verify", path.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(text.contains(":13: record 13 breaks the chain"), "{text}");
}

#[test]
fn a_respond_section_naming_unknown_connectors_or_actions_is_refused_with_its_line() {
    let dir = temp_dir("respond-invalid");
    let pipeline = dir.join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        "version: 1
name: bad
sources:
  - type: stdin
    id: in
sinks:
  - type: stdout
respond:
  connectors:
    - type: nginx
      name: edge
      deny_file: /tmp/deny.conf
  routes:
    http:
      block_ip: edgee
      restart_service: edge
",
    )
    .unwrap();
    let out = threatpilot(["run", "--pipeline", pipeline.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let p = pipeline.display().to_string();
    assert!(
        err.contains(&format!("{p}:15: unknown connector `edgee`")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{p}:16: the http responder has no action `restart_service`"
        )),
        "{err}"
    );
}
