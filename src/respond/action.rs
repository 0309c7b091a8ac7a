//! The action record (SPEC 4.3): one step of a playbook run, from proposal
//! to verification, expiry or rollback. Its id is a hash of the incident,
//! playbook, step and target, so the same input plans the same ids, and an
//! action found again after a restart is the one already journaled, never
//! a second one. The id is also the idempotency key sent to connectors.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::catalogue::ActionKind;
use super::playbook::Risk;
use super::policy::Mode;
use crate::finding::Domain;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    Proposed,
    PendingApproval,
    Approved,
    Rejected,
    Expired,
    Executing,
    Succeeded,
    /// Verified, waiting for a person to confirm (high risk).
    AwaitingConfirmation,
    Verified,
    Failed,
    RolledBack,
    SkippedByPolicy,
    DryRun,
    /// A containment's TTL passed and it was undone.
    Undone,
}

impl ActionStatus {
    /// Nothing more happens to an action in this state.
    pub fn is_final(self) -> bool {
        use ActionStatus::*;
        matches!(
            self,
            Rejected | Expired | Failed | RolledBack | SkippedByPolicy | DryRun | Undone | Verified
        )
    }

    pub fn as_str(self) -> &'static str {
        use ActionStatus::*;
        match self {
            Proposed => "proposed",
            PendingApproval => "pending_approval",
            Approved => "approved",
            Rejected => "rejected",
            Expired => "expired",
            Executing => "executing",
            Succeeded => "succeeded",
            AwaitingConfirmation => "awaiting_confirmation",
            Verified => "verified",
            Failed => "failed",
            RolledBack => "rolled_back",
            SkippedByPolicy => "skipped_by_policy",
            DryRun => "dry_run",
            Undone => "undone",
        }
    }

    /// The short decision of `replay --respond` lines: planned,
    /// pending_approval, approved, rejected, executed, skipped, failed,
    /// rolled_back, expired.
    pub fn decision(self) -> &'static str {
        use ActionStatus::*;
        match self {
            Proposed | DryRun => "planned",
            PendingApproval => "pending_approval",
            Approved | Executing => "approved",
            Rejected => "rejected",
            Succeeded | AwaitingConfirmation | Verified | Undone => "executed",
            Failed => "failed",
            RolledBack => "rolled_back",
            SkippedByPolicy => "skipped",
            Expired => "expired",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Action {
    pub action_id: String,
    pub incident_id: String,
    pub finding_id: String,
    pub playbook_id: String,
    pub step: usize,
    pub responder: Domain,
    #[serde(rename = "action")]
    pub kind: ActionKind,
    pub target: String,
    pub parameters: BTreeMap<String, String>,
    pub risk: Risk,
    pub mode: Mode,
    pub status: ActionStatus,
    /// Why the status is what it is (the policy's reason, an error, …).
    pub reason: String,
    /// The connector that carries it.
    pub connector: String,
    pub approved_by: Option<String>,
    pub approved_ms: Option<i64>,
    /// What the connector answered (capped).
    pub output: String,
    pub verification: Option<String>,
    /// When a pending approval lapses.
    pub approval_expires_ms: Option<i64>,
    /// When a containment is undone (TTL), once executed.
    pub expires_ms: Option<i64>,
    pub ttl_secs: Option<u64>,
    /// The action that undoes this one, once it exists.
    pub rollback_action_id: Option<String>,
    /// For an undo: the action it undoes.
    pub undoes: Option<String>,
    /// Staged fan-out: the stage (0 is the canary).
    pub stage: u32,
    /// The triggering finding's context (for connector templates).
    pub context: BTreeMap<String, String>,
    /// How the action is verified, rendered at planning.
    pub check: Option<CheckPlan>,
    pub verify_after_secs: u64,
    /// A person confirms the verification (second gate).
    pub confirm: bool,
    /// When the verification is due, once executed.
    pub verify_due_ms: Option<i64>,
    /// Executions tried (a retry after a crash keeps the id).
    pub attempts: u32,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub executed_ms: Option<i64>,
    pub version: u64,
}

/// A verification made concrete for one action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CheckPlan {
    FindingQuiet,
    Http {
        url: String,
    },
    Prometheus {
        url: String,
        query: String,
        below: f64,
    },
    /// The playbook's check could not be made concrete for this finding (a
    /// value it names is missing): it fails rather than passing unchecked.
    Unrenderable {
        why: String,
    },
}

impl Action {
    /// The deterministic id of a planned step.
    pub fn id_for(incident_id: &str, playbook: &str, step: usize, target: &str) -> String {
        let h = xxhash_rust::xxh3::xxh3_128(
            format!("{incident_id}\x1f{playbook}\x1f{step}\x1f{target}").as_bytes(),
        );
        format!("a-{:016x}", (h >> 64) as u64 ^ h as u64)
    }

    /// A status change, with its reason, at `now_ms`.
    pub fn set(&mut self, status: ActionStatus, reason: impl Into<String>, now_ms: i64) {
        self.status = status;
        self.reason = reason.into();
        self.updated_ms = now_ms;
        self.version += 1;
    }

    /// The JSON line of `replay --respond`: the record plus its `type` and
    /// `decision`.
    pub fn line(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("type".into(), "action".into());
            o.insert("decision".into(), self.status.decision().into());
        }
        v
    }
}
