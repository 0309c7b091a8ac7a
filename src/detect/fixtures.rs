//! Detector fixtures: `fixtures/detectors/<name>/` holds input files
//! (`*.log`, `*.jsonl`, `*.json`) and `expected.json`, the findings the
//! input must raise: `[{"detector": "...", "offender": "..."}]`. The
//! comparison is exact both ways: a missing finding and an extra one both
//! fail, so fixtures check precision as well as recall. Year-less
//! timestamps are placed relative to [`FIXTURE_REFERENCE_MS`], and lines
//! without a timestamp are ingested at that instant, so results (ids
//! included) do not depend on the day the tests run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::finding::Finding;
use crate::parse::{Format, SourceState};
use crate::pipeline::config::PipelineSpec;

/// 2026-06-01T00:00:00Z.
pub const FIXTURE_REFERENCE_MS: i64 = 1_780_272_000_000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Expected {
    pub detector: String,
    pub offender: String,
}

/// Fixture folders under `root`, sorted.
pub fn fixture_dirs(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expected.json").exists())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Replays one fixture folder with the detectors under `detectors`; returns
/// the findings, or a description of what differs from `expected.json`.
pub fn run_fixture(dir: &Path, detectors: &Path) -> Result<Vec<Finding>, String> {
    let expected: Vec<Expected> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json"))
            .map_err(|e| format!("{}: {e}", dir.display()))?,
    )
    .map_err(|e| format!("{}/expected.json: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| n != "expected.json")
                && p.extension()
                    .is_some_and(|e| e == "log" || e == "jsonl" || e == "json")
        })
        .collect();
    files.sort();
    let dets = super::load_dir(detectors).map_err(|errs| {
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let spec = PipelineSpec::defaults("fixtures");
    let mut inputs = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let file = std::fs::File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let mut state = SourceState::new(Format::Auto, FIXTURE_REFERENCE_MS);
        state.time_domain = i as u32;
        let mut lines = Vec::new();
        crate::cli_support::for_each_record(f.to_str(), std::io::BufReader::new(file), |r| {
            lines.push(r.to_owned())
        })
        .map_err(|e| format!("{}: {e}", f.display()))?;
        inputs.push((state, lines));
    }
    let findings = crate::pipeline::graph::final_states(crate::pipeline::run_inline(
        &spec,
        &mut inputs,
        dets,
        FIXTURE_REFERENCE_MS,
    ));
    let mut got: Vec<Expected> = findings
        .iter()
        .map(|f| Expected {
            detector: f.detector.id.clone(),
            offender: f.offender.value.clone(),
        })
        .collect();
    let mut want = expected;
    got.sort();
    want.sort();
    if got == want {
        return Ok(findings);
    }
    // multiset difference, so a finding raised twice where once was expected shows
    let mut missing = want.clone();
    let mut extra = Vec::new();
    for g in got {
        match missing.iter().position(|w| *w == g) {
            Some(i) => {
                missing.remove(i);
            }
            None => extra.push(g),
        }
    }
    Err(format!(
        "{}: missing {missing:?}, unexpected {extra:?}",
        dir.display()
    ))
}
