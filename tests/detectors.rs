//! Detector fixtures (one test per folder under `fixtures/detectors`), the
//! coverage rule (every shipped detector has a fixture that expects it), and
//! golden errors for broken detector files (`tests/invalid/<case>`).

use std::collections::BTreeSet;
use std::path::Path;

use threatpilot::detect::fixtures::{Expected, fixture_dirs, run_fixture};

#[test]
fn every_fixture_raises_exactly_its_expected_findings() {
    let dirs = fixture_dirs(Path::new("fixtures/detectors")).unwrap();
    assert!(
        dirs.len() >= 20,
        "expected the fixture folders, found {}",
        dirs.len()
    );
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|d| run_fixture(d, Path::new("detectors")).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}

#[test]
fn every_detector_has_a_fixture_that_expects_it() {
    let detectors = threatpilot::detect::load_dir(Path::new("detectors")).unwrap();
    assert!(
        detectors.len() >= 20,
        "the catalogue has {} detectors",
        detectors.len()
    );
    let mut covered = BTreeSet::new();
    for d in fixture_dirs(Path::new("fixtures/detectors")).unwrap() {
        let expected: Vec<Expected> =
            serde_json::from_str(&std::fs::read_to_string(d.join("expected.json")).unwrap())
                .unwrap();
        covered.extend(expected.into_iter().map(|e| e.detector));
    }
    let missing: Vec<&str> = detectors
        .iter()
        .map(|d| d.id.as_str())
        .filter(|id| !covered.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "detectors without a fixture: {missing:?}"
    );
}

#[test]
fn benign_baseline_raises_nothing() {
    let findings = run_fixture(
        Path::new("fixtures/detectors/benign-apache-baseline"),
        Path::new("detectors"),
    )
    .unwrap();
    assert!(findings.is_empty());
}

#[test]
fn broken_detectors_have_golden_errors() {
    let mut cases: Vec<_> = std::fs::read_dir("tests/invalid")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    for case in cases {
        let text = std::fs::read_to_string(case.join("input.yaml")).unwrap();
        let err = threatpilot::detect::load_str(&text, "input.yaml")
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
fn findings_are_deterministic_across_runs() {
    let strip = |fs: Vec<threatpilot::finding::Finding>| {
        fs.into_iter()
            .map(|mut f| {
                f.emitted_at = 0;
                f.execution_id.clear();
                serde_json::to_string(&f).unwrap()
            })
            .collect::<Vec<_>>()
    };
    for d in fixture_dirs(Path::new("fixtures/detectors")).unwrap() {
        let a = strip(run_fixture(&d, Path::new("detectors")).unwrap());
        let b = strip(run_fixture(&d, Path::new("detectors")).unwrap());
        assert_eq!(a, b, "{}", d.display());
    }
}
