//! Playbook fixtures: `fixtures/playbooks/<name>/` holds `findings.json`
//! (one finding or a list, in order), optionally `policy.yaml` and
//! `assets.yaml`, and `expected.json`, the actions they must plan:
//! `[{"playbook", "action", "target", "decision"}]`. The comparison is
//! exact both ways, as for detector fixtures. Nothing executes: the
//! dispatcher runs in simulation, so `auto` shows as `planned`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::dispatch::{Dispatcher, Routes};
use super::incident::{Assets, Incidents};
use super::playbook::Playbook;
use super::policy::{Policy, PolicySpec};
use crate::finding::Finding;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Expected {
    pub playbook: String,
    pub action: String,
    pub target: String,
    pub decision: String,
}

/// Fixture folders under `root` (those with an `expected.json`), sorted.
pub use crate::detect::fixtures::fixture_dirs;

fn read<T: for<'de> Deserialize<'de>>(p: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}

/// Runs one fixture folder against `playbooks`; the planned actions, or
/// what differs from `expected.json`.
pub fn run_fixture(dir: &Path, playbooks: &[Playbook]) -> Result<Vec<Expected>, String> {
    let expected: Vec<Expected> = read(&dir.join("expected.json"))?;
    let findings: Vec<Finding> = match read::<Vec<Finding>>(&dir.join("findings.json")) {
        Ok(v) => v,
        Err(_) => vec![read::<Finding>(&dir.join("findings.json"))?],
    };
    let policy = match std::fs::read_to_string(dir.join("policy.yaml")) {
        Ok(text) => {
            let spec: PolicySpec = serde_saphyr::from_str(&text)
                .map_err(|e| format!("{}/policy.yaml: {e}", dir.display()))?;
            Policy::compile(spec).map_err(|e| format!("{}/policy.yaml: {e}", dir.display()))?
        }
        Err(_) => Policy::observe_only(),
    };
    let assets = match std::fs::read_to_string(dir.join("assets.yaml")) {
        Ok(text) => Assets::new(
            &serde_saphyr::from_str(&text)
                .map_err(|e| format!("{}/assets.yaml: {e}", dir.display()))?,
        ),
        Err(_) => Assets::default(),
    };
    let mut d = Dispatcher::new(
        playbooks.to_vec(),
        policy,
        assets,
        Incidents::new(3600, 100_000),
        Routes::new(),
    );
    d.simulate = true;
    let now = super::super::detect::fixtures::FIXTURE_REFERENCE_MS;
    for f in &findings {
        d.on_finding(f, now);
    }
    let mut got: Vec<Expected> = d
        .order
        .iter()
        .filter_map(|id| d.actions.get(id))
        .map(|a| Expected {
            playbook: a.playbook_id.clone(),
            action: a.kind.as_str().into(),
            target: a.target.clone(),
            decision: a.status.decision().into(),
        })
        .collect();
    let mut want = expected;
    got.sort();
    want.sort();
    if got == want {
        return Ok(got);
    }
    let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).collect();
    let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).collect();
    Err(format!(
        "{}: missing {missing:?}, unexpected {extra:?}",
        dir.display()
    ))
}
