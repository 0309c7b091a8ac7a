//! The `respond:` section of a pipeline file, as written: where playbooks
//! live, the safety policy, the asset inventory, the connectors and which
//! connector carries each responder's actions. [`super::Compiled`] is built
//! from it once, at load.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::connectors::ConnectorSpec;
use super::policy::PolicySpec;
use crate::detect::config::Located;
use crate::finding::Severity;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RespondConfig {
    /// Folders (or files) of playbooks, in order; first match wins.
    #[serde(default = "default_playbooks")]
    pub playbooks: Vec<String>,
    /// The safety policy inline...
    #[serde(default)]
    pub policy: Option<PolicySpec>,
    /// ...or in its own file (`version: 1` and the same keys).
    #[serde(default)]
    pub policy_file: Option<String>,
    /// Hosts, services and users with tags and criticality.
    #[serde(default)]
    pub assets: AssetsSpec,
    /// Where the action journal and the audit log live.
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    #[serde(default)]
    pub connectors: Vec<Located<ConnectorSpec>>,
    /// Which connector carries each action of each responder:
    /// `{http: {block_ip: edge}, identity: {lock_account: idp}}`.
    #[serde(default)]
    pub routes: BTreeMap<String, BTreeMap<String, Located<String>>>,
    /// Findings of one offender or target this close in event time belong
    /// to one incident.
    #[serde(default = "default_horizon")]
    pub incident_horizon_secs: u64,
    /// An offender with an incident in this many past days (from the
    /// store) is a repeat offender.
    #[serde(default = "default_repeat_days")]
    pub repeat_offender_days: u32,
    /// Actions a connector holds waiting; past it, actions are skipped (and
    /// recorded) rather than slowing anything down.
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// Incidents kept in memory for the API; the oldest closed ones go first.
    #[serde(default = "default_max_incidents")]
    pub max_incidents: usize,
    /// When a run's input ends (a file replay), how long it still waits for
    /// actions under way and verifications due; what is left stays in the
    /// journal for the next start.
    #[serde(default = "default_drain")]
    pub drain_secs: u64,
}

fn default_playbooks() -> Vec<String> {
    vec!["playbooks".into()]
}
fn default_state_dir() -> String {
    "out/respond".into()
}
fn default_horizon() -> u64 {
    3600
}
fn default_repeat_days() -> u32 {
    30
}
fn default_queue() -> usize {
    1000
}
fn default_max_incidents() -> usize {
    10_000
}
fn default_drain() -> u64 {
    30
}

impl Default for RespondConfig {
    fn default() -> Self {
        RespondConfig {
            playbooks: default_playbooks(),
            policy: None,
            policy_file: None,
            assets: AssetsSpec::default(),
            state_dir: default_state_dir(),
            connectors: Vec::new(),
            routes: BTreeMap::new(),
            incident_horizon_secs: default_horizon(),
            repeat_offender_days: default_repeat_days(),
            queue_capacity: default_queue(),
            max_incidents: default_max_incidents(),
            drain_secs: default_drain(),
        }
    }
}

/// The asset inventory: what matters, and how much.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetsSpec {
    #[serde(default)]
    pub hosts: Vec<AssetSpec>,
    #[serde(default)]
    pub services: Vec<AssetSpec>,
    #[serde(default)]
    pub users: Vec<AssetSpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetSpec {
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "default_criticality")]
    pub criticality: Severity,
    /// A service's instances (hosts or replicas): the targets of staged,
    /// fleet-wide steps and the base of `max_percent_of_service`.
    #[serde(default)]
    pub instances: Vec<String>,
}

fn default_criticality() -> Severity {
    Severity::Medium
}
