//! Detection scored against labelled logs in the CrowdSec hub test layout:
//! one folder per test with a log (named by `config.yaml`'s `log_file`,
//! else every `*.log` in it) and `scenario.assert`, whose lines name the
//! source addresses CrowdSec raises alerts for (`"1.2.3.4" in
//! results[0].Overflow.GetSources()`); `len(results) == 0` says nothing
//! should be raised. So users can check the shipped detectors, or their
//! own, against their own labelled logs.
//!
//! Each log is replayed as `threatpilot replay` does (year-less times
//! placed by a fixed reference, a jump back in time a new segment). An
//! address counts as flagged when a finding names it as its offender.
//! Recall and precision are per source address, summed over the tests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::fixtures::FIXTURE_REFERENCE_MS;
use crate::finding::OffenderType;
use crate::name::Name;
use crate::parse::{Format, SourceState};
use crate::pipeline::config::{OutOfOrder, PipelineSpec};

/// One test's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct TestScore {
    pub name: String,
    pub lines: usize,
    pub expected: BTreeSet<String>,
    pub flagged: BTreeSet<String>,
    /// Expected and not flagged.
    pub missed: BTreeSet<String>,
    /// Flagged and not expected.
    pub extra: BTreeSet<String>,
    /// Detectors that raised the findings.
    pub detectors: BTreeSet<String>,
}

/// Totals over tests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub tests: usize,
    pub expected: usize,
    pub flagged: usize,
    pub true_positives: usize,
    pub recall: f64,
    pub precision: f64,
}

/// The addresses a `scenario.assert` expects alerts for.
pub fn expected_sources(assert: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in assert.lines() {
        let line = line.trim();
        // "1.2.3.4" in results[0].Overflow.GetSources()
        if let Some((lhs, _)) = line.split_once(" in results[")
            && line.contains("GetSources()")
        {
            out.insert(lhs.trim().trim_matches('"').to_owned());
            continue;
        }
        // results[0].Overflow.Sources["1.2.3.4"]....
        let mut rest = line;
        while let Some(at) = rest.find("Sources[\"") {
            let after = &rest[at + 9..];
            let Some(end) = after.find('"') else { break };
            out.insert(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

/// The log files of a test folder.
fn logs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    if let Ok(cfg) = std::fs::read_to_string(dir.join("config.yaml"))
        && let Some(name) = cfg.lines().find_map(|l| l.trim().strip_prefix("log_file:"))
    {
        let p = dir.join(name.trim().trim_matches(|c| c == '"' || c == '\''));
        if p.is_file() {
            return Ok(vec![p]);
        }
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    Ok(v)
}

/// Test folders under `root` (each with a `scenario.assert`), sorted; `root`
/// itself when it is one.
pub fn test_dirs(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    if root.join("scenario.assert").is_file() {
        return Ok(vec![root.to_owned()]);
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("scenario.assert").is_file())
        .collect();
    v.sort();
    Ok(v)
}

/// Replays one test folder with `detectors` and scores it.
pub fn score_test(dir: &Path, detectors: Vec<super::Detector>) -> Result<TestScore, String> {
    let name = dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let assert = std::fs::read_to_string(dir.join("scenario.assert"))
        .map_err(|e| format!("{}/scenario.assert: {e}", dir.display()))?;
    let expected = expected_sources(&assert);
    let files = logs(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if files.is_empty() {
        return Err(format!(
            "{}: no log file (config.yaml log_file, or *.log)",
            dir.display()
        ));
    }
    let mut spec = PipelineSpec::defaults("eval");
    spec.detect.out_of_order = OutOfOrder::Segment;
    let mut inputs = Vec::new();
    let mut lines = 0;
    for (i, f) in files.iter().enumerate() {
        let file = std::fs::File::open(f)
            .and_then(crate::cli_support::read_file)
            .map_err(|e| format!("{}: {e}", f.display()))?;
        let mut state = SourceState::new(Format::Auto, FIXTURE_REFERENCE_MS);
        state.time_domain = i as u32;
        state.file_path = Some(Name::new(&f.display().to_string()));
        let mut records = Vec::new();
        crate::cli_support::for_each_record(f.to_str(), file, |r| records.push(r.to_owned()))
            .map_err(|e| format!("{}: {e}", f.display()))?;
        lines += records.len();
        inputs.push((state, records));
    }
    let findings = crate::pipeline::graph::final_states(crate::pipeline::run_inline(
        &spec,
        &mut inputs,
        detectors,
        FIXTURE_REFERENCE_MS,
    ));
    let ip_findings: Vec<_> = findings
        .iter()
        .filter(|f| f.offender.kind == OffenderType::Ip)
        .collect();
    let flagged: BTreeSet<String> = ip_findings
        .iter()
        .map(|f| f.offender.value.clone())
        .collect();
    Ok(TestScore {
        name,
        lines,
        missed: expected.difference(&flagged).cloned().collect(),
        extra: flagged.difference(&expected).cloned().collect(),
        detectors: ip_findings.iter().map(|f| f.detector.id.clone()).collect(),
        expected,
        flagged,
    })
}

/// Sums scores up: recall and precision per source address.
pub fn totals(scores: &[TestScore]) -> Totals {
    let expected: usize = scores.iter().map(|s| s.expected.len()).sum();
    let flagged: usize = scores.iter().map(|s| s.flagged.len()).sum();
    let tp: usize = scores
        .iter()
        .map(|s| s.expected.intersection(&s.flagged).count())
        .sum();
    let ratio = |n: usize, d: usize| if d == 0 { 1.0 } else { n as f64 / d as f64 };
    Totals {
        tests: scores.len(),
        expected,
        flagged,
        true_positives: tp,
        recall: ratio(tp, expected),
        precision: ratio(tp, flagged),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_read_from_both_forms_of_assertion() {
        let a = r#"len(results) == 2
"127.0.0.1" in results[0].Overflow.GetSources()
results[0].Overflow.Sources["127.0.0.1"].IP == "127.0.0.1"
"192.168.1.2" in results[1].Overflow.GetSources()
results[1].Overflow.Sources["10.0.0.0/8"].Range == "10.0.0.0/8"
results[0].Overflow.Alert.Events[0].GetMeta("source_ip") == "8.8.8.8"
"#;
        let got: Vec<String> = expected_sources(a).into_iter().collect();
        assert_eq!(got, ["10.0.0.0/8", "127.0.0.1", "192.168.1.2"]);
        assert!(expected_sources("len(results) == 0\n").is_empty());
    }

    #[test]
    fn totals_are_per_address_over_all_tests() {
        let t = |e: &[&str], f: &[&str]| TestScore {
            name: "t".into(),
            lines: 1,
            expected: e.iter().map(|s| s.to_string()).collect(),
            flagged: f.iter().map(|s| s.to_string()).collect(),
            missed: BTreeSet::new(),
            extra: BTreeSet::new(),
            detectors: BTreeSet::new(),
        };
        let s = totals(&[t(&["a", "b"], &["a"]), t(&[], &["c"]), t(&["d"], &["d"])]);
        assert_eq!((s.expected, s.flagged, s.true_positives), (3, 3, 2));
        assert!((s.recall - 2.0 / 3.0).abs() < 1e-9);
        assert!((s.precision - 2.0 / 3.0).abs() < 1e-9);
    }
}
