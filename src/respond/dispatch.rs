//! The dispatcher: findings in, incidents and actions out, with the policy
//! consulted at every gate. It holds all response state and does no I/O:
//! each call leaves [`Effect`]s that the runtime carries out (journal,
//! audit, connectors, external checks, job tails), so the same code runs a
//! live pipeline, `replay --respond` and the playbook fixtures.
//!
//! ```text
//! finding ─> incident (correlate, score) ─> first matching playbook ─> plan
//!   ─> policy ─┬─ skip ──────────────> skipped_by_policy (reason)
//!              ├─ observe ───────────> dry_run
//!              ├─ approve ───────────> pending_approval ─ approve ─┐  (expiry: expired)
//!              └─ auto ──────────────────────────────────────────────> approved ─> Execute
//! executed ─> succeeded ─> verification due ─> verified (or awaiting_confirmation)
//!                                          └─> failed: rollback + escalate
//! TTL due ─> undo action (unblock, unlock) ─> undone
//! ```
//! Staged fan-out: stage n+1 is released only when every action of stage n
//! has verified; a failed verification halts the rest and rolls back what
//! ran.

use std::collections::{BTreeMap, HashMap};

use super::action::{Action, ActionStatus, CheckPlan};
use super::catalogue::ActionKind;
use super::incident::{Assets, IncidentStatus, Incidents};
use super::playbook::{Check, FindingValues, MatchInput, Plan, Playbook, first_match, plan};
use super::policy::{Mode, Policy, PolicyState, Verdict};
use super::template::{promql_escape, url_escape};
use crate::finding::{Domain, Finding, Status};

/// What the runtime must do after a dispatcher call.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// An incident changed (store it, journal it, tail it).
    Incident(String),
    /// An action changed.
    Action(String),
    Audit {
        actor: String,
        decision: String,
        subject: String,
        detail: String,
    },
    /// Hand this action to its connector (after journaling it durably).
    Execute(String),
    /// Run this action's external verification (HTTP, Prometheus).
    Verify(String),
    /// A job-tail line of an incident.
    Tail {
        incident_id: String,
        phase: String,
        text: String,
        action_id: Option<String>,
    },
}

/// Which connector carries (responder, action kind).
pub type Routes = HashMap<(Domain, ActionKind), String>;

pub struct Dispatcher {
    playbooks: Vec<Playbook>,
    pub policy: Policy,
    assets: Assets,
    pub incidents: Incidents,
    pub actions: HashMap<String, Action>,
    /// Action ids in creation order.
    pub order: Vec<String>,
    routes: Routes,
    pub state: PolicyState,
    /// Wall time each finding was last emitted, for "finding quiet" checks.
    finding_seen: HashMap<String, i64>,
    /// No connector executes (replay): auto actions are recorded as planned.
    pub simulate: bool,
    effects: Vec<Effect>,
}

/// Seconds a finding update may trail an execution and still be the one
/// that was already on its way.
const QUIET_GRACE_MS: i64 = 5_000;

impl Dispatcher {
    pub fn new(
        playbooks: Vec<Playbook>,
        policy: Policy,
        assets: Assets,
        incidents: Incidents,
        routes: Routes,
    ) -> Dispatcher {
        Dispatcher {
            playbooks,
            policy,
            assets,
            incidents,
            actions: HashMap::new(),
            order: Vec::new(),
            routes,
            state: PolicyState::default(),
            finding_seen: HashMap::new(),
            simulate: false,
            effects: Vec::new(),
        }
    }

    /// The effects left by the calls so far.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Records a request refused before it reached an action (an unknown
    /// Slack user pressing approve), with why.
    pub fn refused(&mut self, actor: &str, subject: &str, why: &str) {
        self.audit(actor, "refused", subject, why);
    }

    fn audit(&mut self, actor: &str, decision: &str, subject: &str, detail: impl Into<String>) {
        self.effects.push(Effect::Audit {
            actor: actor.into(),
            decision: decision.into(),
            subject: subject.into(),
            detail: detail.into(),
        });
    }

    fn tail(&mut self, incident: &str, phase: &str, text: String, action: Option<&str>) {
        if let Some(i) = self.incidents.by_id.get_mut(incident) {
            i.note(
                crate::time::now_ms().max(i.updated_ms),
                phase,
                text.clone(),
                action,
            );
        }
        self.effects.push(Effect::Tail {
            incident_id: incident.to_owned(),
            phase: phase.into(),
            text,
            action_id: action.map(str::to_owned),
        });
        self.effects.push(Effect::Incident(incident.to_owned()));
    }

    /// A finding version from the pipeline.
    pub fn on_finding(&mut self, f: &Finding, now_ms: i64) {
        self.finding_seen.insert(f.finding_id.clone(), now_ms);
        let joined = self.incidents.file(f, &self.assets, now_ms);
        let iid = joined.incident_id.clone();
        if let Some(e) = self.incidents.by_id[&iid].timeline.last().cloned() {
            self.effects.push(Effect::Tail {
                incident_id: iid.clone(),
                phase: e.phase,
                text: e.text,
                action_id: None,
            });
        }
        self.effects.push(Effect::Incident(iid.clone()));
        if joined.opened {
            let p = self.incidents.by_id[&iid].priority;
            self.audit(
                "dispatcher",
                "incident_opened",
                &iid,
                format!("priority {p:.1}"),
            );
        }
        if f.status == Status::Resolved || f.status == Status::Suppressed {
            self.finding_seen.remove(&f.finding_id);
            self.settle(&iid, now_ms);
            return;
        }
        let (tags, priority) = {
            let i = &self.incidents.by_id[&iid];
            (i.asset_tags.iter().cloned().collect::<Vec<_>>(), i.priority)
        };
        let m = MatchInput {
            finding: f,
            tags: &tags,
            priority,
        };
        let Some(pb) = first_match(&self.playbooks, &m).cloned() else {
            return;
        };
        if pb.escalate {
            let done = self.incidents.by_id[&iid].status == IncidentStatus::Escalated;
            if !done {
                self.escalate(&iid, &format!("playbook {}: {}", pb.id, pb.title), now_ms);
            }
        }
        let instances = self.assets.instances(f).to_vec();
        let plans = plan(
            &pb,
            &FindingValues {
                finding: f,
                incident_id: &iid,
            },
            &instances,
        );
        for p in plans {
            match p {
                Ok(p) => self.propose(&pb, p, f, &iid, instances.len(), now_ms),
                Err((step, kind, why)) => {
                    let id = Action::id_for(&iid, &pb.id, step, "-");
                    if self.actions.contains_key(&id) {
                        continue;
                    }
                    let mut a = self.blank(&pb, step, kind, "", f, &iid, now_ms);
                    a.action_id = id;
                    a.responder = kind.responder_for(f.domain);
                    a.set(
                        ActionStatus::SkippedByPolicy,
                        format!("skipped: {why}"),
                        now_ms,
                    );
                    self.record_new(a, "playbook");
                }
            }
        }
        self.settle(&iid, now_ms);
    }

    #[allow(clippy::too_many_arguments)]
    fn blank(
        &self,
        pb: &Playbook,
        step: usize,
        kind: ActionKind,
        target: &str,
        f: &Finding,
        iid: &str,
        now_ms: i64,
    ) -> Action {
        let s = &pb.steps[step];
        let values = FindingValues {
            finding: f,
            incident_id: iid,
        };
        let check = match &s.verify.check {
            Check::FindingQuiet => Ok(CheckPlan::FindingQuiet),
            Check::Http(t) => t
                .render_with(&values, url_escape)
                .map(|url| CheckPlan::Http { url }),
            Check::Prometheus { url, query, below } => query
                .render_with(&values, promql_escape)
                .map(|q| CheckPlan::Prometheus {
                    url: url.clone(),
                    query: q,
                    below: *below,
                }),
        };
        let check = Some(check.unwrap_or_else(|why| CheckPlan::Unrenderable { why }));
        Action {
            action_id: Action::id_for(iid, &pb.id, step, target),
            incident_id: iid.to_owned(),
            finding_id: f.finding_id.clone(),
            playbook_id: pb.id.clone(),
            step,
            responder: kind.responder_for(f.domain),
            kind,
            target: target.to_owned(),
            parameters: BTreeMap::new(),
            risk: s.risk,
            mode: Mode::Observe,
            status: ActionStatus::Proposed,
            reason: String::new(),
            connector: String::new(),
            approved_by: None,
            approved_ms: None,
            output: String::new(),
            verification: None,
            approval_expires_ms: None,
            expires_ms: None,
            ttl_secs: s.ttl_secs,
            rollback_action_id: None,
            undoes: None,
            stage: 0,
            context: f.context.clone(),
            check,
            verify_after_secs: s.verify.after_secs,
            confirm: s.verify.confirm,
            verify_due_ms: None,
            attempts: 0,
            created_ms: now_ms,
            updated_ms: now_ms,
            executed_ms: None,
            version: 0,
        }
    }

    /// An action of the same kind on the same target already in force or
    /// under way.
    /// An action under way on the target, or a containment of it still in
    /// force (a finished restart does not stop the next one; the policy's
    /// limits and loop detection do).
    fn live_on(&self, kind: ActionKind, target: &str) -> Option<&Action> {
        self.actions.values().find(|a| {
            let under_way = matches!(
                a.status,
                ActionStatus::PendingApproval | ActionStatus::Approved | ActionStatus::Executing
            );
            let in_force = kind.is_containment()
                && matches!(
                    a.status,
                    ActionStatus::Succeeded
                        | ActionStatus::AwaitingConfirmation
                        | ActionStatus::Verified
                );
            a.kind == kind
                && a.target == target
                && a.undoes.is_none()
                && a.rollback_action_id.is_none()
                && (under_way || in_force)
        })
    }

    fn propose(
        &mut self,
        pb: &Playbook,
        p: Plan,
        f: &Finding,
        iid: &str,
        instances: usize,
        now_ms: i64,
    ) {
        let id = Action::id_for(iid, &pb.id, p.step, &p.target);
        if self.actions.contains_key(&id) {
            return;
        }
        if let Some(live) = self.live_on(p.kind, &p.target) {
            let text = format!(
                "{} {} already {} by {}",
                p.kind.as_str(),
                p.target,
                live.status.as_str(),
                live.action_id
            );
            let lid = live.action_id.clone();
            self.tail(iid, "proposal", text, Some(&lid));
            return;
        }
        let mut a = self.blank(pb, p.step, p.kind, &p.target, f, iid, now_ms);
        a.responder = p.responder;
        a.parameters = p.params.clone();
        a.stage = p.stage;
        a.connector = p
            .connector
            .clone()
            .or_else(|| self.routes.get(&(p.responder, p.kind)).cloned())
            .unwrap_or_default();
        let verdict =
            self.policy
                .check(&p, &f.context, &self.state, &a.connector, instances, now_ms);
        self.audit(
            "playbook",
            "proposed",
            &id,
            format!(
                "{} {} on {} for {} (playbook {}, {} risk)",
                p.responder.as_str(),
                p.kind.as_str(),
                p.target,
                iid,
                pb.id,
                p.risk.as_str()
            ),
        );
        match verdict {
            Verdict::Skip(why) => {
                a.set(
                    ActionStatus::SkippedByPolicy,
                    format!("skipped: {why}"),
                    now_ms,
                );
            }
            Verdict::Loop(why) => {
                a.set(
                    ActionStatus::SkippedByPolicy,
                    format!("skipped: {why}"),
                    now_ms,
                );
                self.escalate(iid, &why, now_ms);
            }
            Verdict::Go(mode, why) => {
                a.mode = mode;
                self.gate(&mut a, mode, why, now_ms);
            }
        }
        self.record_new(a, "policy");
    }

    /// Puts an admitted action through its mode's gate.
    fn gate(&mut self, a: &mut Action, mode: Mode, why: String, now_ms: i64) {
        let needs_connector = mode != Mode::Observe && !self.simulate;
        if needs_connector && a.connector.is_empty() {
            a.set(
                ActionStatus::SkippedByPolicy,
                format!(
                    "skipped: no connector carries {}.{} (respond.routes)",
                    a.responder.as_str(),
                    a.kind.as_str()
                ),
                now_ms,
            );
            return;
        }
        if a.stage > 0 && mode != Mode::Observe {
            a.set(
                ActionStatus::Proposed,
                format!("{why}; waits for stage {} to verify", a.stage - 1),
                now_ms,
            );
            return;
        }
        match mode {
            Mode::Observe => a.set(ActionStatus::DryRun, format!("observe: {why}"), now_ms),
            Mode::Approve => {
                self.state.admit(a.kind, &a.target, now_ms);
                a.approval_expires_ms =
                    Some(now_ms + self.policy.spec.approval_expiry_secs as i64 * 1000);
                a.set(
                    ActionStatus::PendingApproval,
                    format!("{why}: waiting for approval"),
                    now_ms,
                );
            }
            Mode::Auto if self.simulate => {
                a.set(
                    ActionStatus::DryRun,
                    format!("{why} (simulation: nothing executes)"),
                    now_ms,
                );
            }
            Mode::Auto => {
                self.state.admit(a.kind, &a.target, now_ms);
                a.set(ActionStatus::Approved, why, now_ms);
            }
        }
    }

    /// Stores a new action and leaves its effects.
    fn record_new(&mut self, a: Action, actor: &str) {
        let id = a.action_id.clone();
        let iid = a.incident_id.clone();
        self.audit(actor, a.status.as_str(), &id, a.reason.clone());
        let text = format!(
            "{} {} on {}: {} ({})",
            a.responder.as_str(),
            a.kind.as_str(),
            if a.target.is_empty() { "-" } else { &a.target },
            a.status.as_str(),
            a.reason
        );
        let execute = a.status == ActionStatus::Approved;
        self.actions.insert(id.clone(), a);
        self.order.push(id.clone());
        self.effects.push(Effect::Action(id.clone()));
        self.tail(&iid, "proposal", text, Some(&id));
        if execute {
            self.start(&id);
        }
    }

    /// Marks an approved action executing and hands it on.
    fn start(&mut self, id: &str) {
        let now = crate::time::now_ms();
        let Some(a) = self.actions.get_mut(id) else {
            return;
        };
        a.attempts += 1;
        a.set(
            ActionStatus::Executing,
            format!("sent to connector {}", a.connector),
            now,
        );
        let iid = a.incident_id.clone();
        let text = format!("{} {} via {}", a.kind.as_str(), a.target, a.connector);
        self.audit("dispatcher", "executing", id, text.clone());
        self.effects.push(Effect::Action(id.to_owned()));
        self.tail(&iid, "execution", text, Some(id));
        self.effects.push(Effect::Execute(id.to_owned()));
        self.settle(&iid, now);
    }

    fn escalate(&mut self, iid: &str, why: &str, now_ms: i64) {
        if let Some(i) = self.incidents.by_id.get_mut(iid) {
            i.transition(IncidentStatus::Escalated, now_ms, why);
            self.audit("dispatcher", "escalated", iid, why);
            self.effects.push(Effect::Incident(iid.to_owned()));
            self.effects.push(Effect::Tail {
                incident_id: iid.to_owned(),
                phase: "closure".into(),
                text: format!("escalated: {why}"),
                action_id: None,
            });
        }
    }

    /// A person approves a pending action (or confirms a verification).
    pub fn approve(&mut self, id: &str, who: &str, now_ms: i64) -> Result<ActionStatus, String> {
        let Some(a) = self.actions.get(id).cloned() else {
            return Err(format!("no action {id}"));
        };
        match a.status {
            ActionStatus::PendingApproval => {}
            ActionStatus::AwaitingConfirmation => {
                let iid = a.incident_id.clone();
                if let Some(x) = self.actions.get_mut(id) {
                    x.set(
                        ActionStatus::Verified,
                        format!("verification confirmed by {who}"),
                        now_ms,
                    );
                }
                self.audit(who, "verification_confirmed", id, "confirmed by a person");
                self.effects.push(Effect::Action(id.to_owned()));
                self.tail(
                    &iid,
                    "verification",
                    format!("confirmed by {who}"),
                    Some(id),
                );
                self.release_next_stage(id, now_ms);
                self.settle(&iid, now_ms);
                return Ok(ActionStatus::Verified);
            }
            s => {
                return Err(format!(
                    "action {id} is {}, not pending approval",
                    s.as_str()
                ));
            }
        }
        if a.approval_expires_ms.is_some_and(|e| now_ms >= e) {
            self.expire(id, now_ms);
            return Err(format!("action {id} expired before it was approved"));
        }
        // the policy is checked again: it may have changed since the proposal
        let plan = plan_of(&a);
        let verdict = self.policy.check(
            &plan,
            &a.context,
            &self.state_without(&a),
            &a.connector,
            0,
            now_ms,
        );
        let iid = a.incident_id.clone();
        match verdict {
            Verdict::Skip(why) | Verdict::Loop(why) => {
                let a = self.actions.get_mut(id).ok_or("gone")?;
                a.set(
                    ActionStatus::SkippedByPolicy,
                    format!("skipped at approval: {why}"),
                    now_ms,
                );
                self.audit("policy", "skipped", id, why.clone());
                self.effects.push(Effect::Action(id.to_owned()));
                self.tail(
                    &iid,
                    "gate",
                    format!("approved by {who}, but skipped: {why}"),
                    Some(id),
                );
                Err(format!("approved, but the policy skips it: {why}"))
            }
            Verdict::Go(..) => {
                let a = self.actions.get_mut(id).ok_or("gone")?;
                a.approved_by = Some(who.to_owned());
                a.approved_ms = Some(now_ms);
                a.set(ActionStatus::Approved, format!("approved by {who}"), now_ms);
                self.audit(who, "approved", id, "approved by a person");
                self.effects.push(Effect::Action(id.to_owned()));
                self.tail(&iid, "gate", format!("approved by {who}"), Some(id));
                self.start(id);
                Ok(ActionStatus::Executing)
            }
        }
    }

    /// The policy state less this action's own admission (it was counted
    /// when it was proposed).
    fn state_without(&self, a: &Action) -> PolicyState {
        let mut s = self.state.clone();
        s.forget_admission(a.kind, &a.target);
        s
    }

    /// A person rejects a pending action (or a verification).
    pub fn reject(
        &mut self,
        id: &str,
        who: &str,
        why: &str,
        now_ms: i64,
    ) -> Result<ActionStatus, String> {
        let Some(a) = self.actions.get(id).cloned() else {
            return Err(format!("no action {id}"));
        };
        let iid = a.incident_id.clone();
        match a.status {
            ActionStatus::PendingApproval => {
                let a = self.actions.get_mut(id).ok_or("gone")?;
                a.set(
                    ActionStatus::Rejected,
                    format!("rejected by {who}: {why}"),
                    now_ms,
                );
                self.audit(who, "rejected", id, why);
                self.effects.push(Effect::Action(id.to_owned()));
                self.tail(&iid, "gate", format!("rejected by {who}: {why}"), Some(id));
                self.settle(&iid, now_ms);
                Ok(ActionStatus::Rejected)
            }
            ActionStatus::AwaitingConfirmation => {
                self.audit(who, "verification_rejected", id, why);
                self.failed_verification(
                    id,
                    &format!("{who} rejected the verification: {why}"),
                    now_ms,
                );
                Ok(ActionStatus::RolledBack)
            }
            s => Err(format!(
                "action {id} is {}, not pending approval",
                s.as_str()
            )),
        }
    }

    fn expire(&mut self, id: &str, now_ms: i64) {
        let Some(a) = self.actions.get_mut(id) else {
            return;
        };
        a.set(
            ActionStatus::Expired,
            "expired: nobody approved it in time",
            now_ms,
        );
        let iid = a.incident_id.clone();
        self.audit(
            "policy",
            "expired",
            id,
            "approval expired; it will never run",
        );
        self.effects.push(Effect::Action(id.to_owned()));
        self.tail(&iid, "gate", "approval expired".into(), Some(id));
        self.escalate(&iid, "an approval expired", now_ms);
    }

    /// A connector's answer.
    pub fn on_executed(&mut self, id: &str, ok: bool, output: String, now_ms: i64) {
        let Some(a) = self.actions.get(id).cloned() else {
            return;
        };
        if a.status != ActionStatus::Executing {
            return;
        }
        let iid = a.incident_id.clone();
        let breaker = &self.policy.spec.circuit_breaker.clone();
        if let Some(why) = self.state.execution(&a.connector, ok, breaker) {
            self.audit("policy", "breaker_opened", &a.connector, why.clone());
            self.tail(
                &iid,
                "execution",
                format!("circuit breaker of {} opened: {why}", a.connector),
                None,
            );
        }
        let output = cap(&output);
        if !ok {
            let Some(x) = self.actions.get_mut(id) else {
                return;
            };
            x.output = output.clone();
            x.set(ActionStatus::Failed, format!("failed: {output}"), now_ms);
            self.audit(&a.connector, "failed", id, output.clone());
            self.effects.push(Effect::Action(id.to_owned()));
            self.tail(&iid, "execution", format!("failed: {output}"), Some(id));
            if let Some(orig) = &a.undoes {
                self.escalate(&iid, &format!("undo {id} of {orig} failed"), now_ms);
            } else {
                self.escalate(
                    &iid,
                    &format!("{} on {} failed", a.kind.as_str(), a.target),
                    now_ms,
                );
                self.halt_group(&a, now_ms);
            }
            return;
        }
        self.state.executed(a.kind, &a.target, now_ms);
        let Some(x) = self.actions.get_mut(id) else {
            return;
        };
        x.output = output.clone();
        x.executed_ms = Some(now_ms);
        if let Some(orig) = a.undoes.clone() {
            x.set(ActionStatus::Verified, format!("done: {output}"), now_ms);
            self.audit(&a.connector, "succeeded", id, output);
            self.effects.push(Effect::Action(id.to_owned()));
            let rolled = self
                .actions
                .get(&orig)
                .is_some_and(|o| o.status == ActionStatus::RolledBack);
            if let Some(o) = self.actions.get_mut(&orig)
                && !rolled
            {
                o.set(
                    ActionStatus::Undone,
                    format!("undone by {id} after its TTL"),
                    now_ms,
                );
                self.effects.push(Effect::Action(orig.clone()));
            }
            self.audit(
                "ttl",
                if rolled { "rolled_back" } else { "undone" },
                &orig,
                format!("by {id}"),
            );
            self.tail(
                &iid,
                "closure",
                format!("{} {} done", a.kind.as_str(), a.target),
                Some(id),
            );
            self.settle(&iid, now_ms);
            return;
        }
        x.expires_ms = a.ttl_secs.map(|t| now_ms + t as i64 * 1000);
        x.verify_due_ms = Some(now_ms + a.verify_after_secs as i64 * 1000);
        x.set(
            ActionStatus::Succeeded,
            format!("executed: {output}"),
            now_ms,
        );
        self.audit(&a.connector, "succeeded", id, output.clone());
        self.effects.push(Effect::Action(id.to_owned()));
        self.tail(&iid, "execution", format!("succeeded: {output}"), Some(id));
        self.settle(&iid, now_ms);
    }

    /// The connector's queue was full: the action is skipped, not delayed.
    pub fn overflow(&mut self, id: &str, now_ms: i64) {
        let Some(a) = self.actions.get_mut(id) else {
            return;
        };
        let why = format!("skipped: connector {} has a full queue", a.connector);
        a.set(ActionStatus::SkippedByPolicy, why.clone(), now_ms);
        let iid = a.incident_id.clone();
        self.audit("dispatcher", "skipped", id, why.clone());
        self.effects.push(Effect::Action(id.to_owned()));
        self.tail(&iid, "execution", why, Some(id));
        self.settle(&iid, now_ms);
    }

    /// A verification's result.
    pub fn on_verified(&mut self, id: &str, ok: bool, detail: String, now_ms: i64) {
        let Some(a) = self.actions.get(id).cloned() else {
            return;
        };
        if a.status != ActionStatus::Succeeded {
            return;
        }
        let iid = a.incident_id.clone();
        let breaker = self.policy.spec.circuit_breaker.clone();
        if let Some(why) = self.state.verification(&a.connector, ok, &breaker) {
            self.audit("policy", "breaker_opened", &a.connector, why);
        }
        if !ok {
            self.failed_verification(id, &detail, now_ms);
            return;
        }
        let Some(x) = self.actions.get_mut(id) else {
            return;
        };
        x.verification = Some(format!("passed: {detail}"));
        x.verify_due_ms = None;
        if a.confirm {
            x.set(
                ActionStatus::AwaitingConfirmation,
                "verified; a person confirms",
                now_ms,
            );
            self.audit(
                "verifier",
                "verified",
                id,
                format!("{detail}; awaiting confirmation"),
            );
            self.effects.push(Effect::Action(id.to_owned()));
            self.tail(
                &iid,
                "verification",
                format!("passed ({detail}); awaiting a person's confirmation"),
                Some(id),
            );
        } else {
            x.set(
                ActionStatus::Verified,
                format!("verified: {detail}"),
                now_ms,
            );
            self.audit("verifier", "verified", id, detail.clone());
            self.effects.push(Effect::Action(id.to_owned()));
            self.tail(&iid, "verification", format!("passed: {detail}"), Some(id));
            self.release_next_stage(id, now_ms);
        }
        self.settle(&iid, now_ms);
    }

    fn failed_verification(&mut self, id: &str, detail: &str, now_ms: i64) {
        let Some(a) = self.actions.get(id).cloned() else {
            return;
        };
        let iid = a.incident_id.clone();
        if let Some(x) = self.actions.get_mut(id) {
            x.verification = Some(format!("failed: {detail}"));
            x.verify_due_ms = None;
            x.set(
                ActionStatus::RolledBack,
                format!("verification failed: {detail}"),
                now_ms,
            );
        }
        self.audit("verifier", "verification_failed", id, detail);
        self.effects.push(Effect::Action(id.to_owned()));
        self.tail(&iid, "verification", format!("failed: {detail}"), Some(id));
        self.undo(
            id,
            "rollback",
            &format!("verification failed: {detail}"),
            now_ms,
        );
        self.halt_group(&a, now_ms);
        self.escalate(
            &iid,
            &format!("verification of {id} failed: {detail}"),
            now_ms,
        );
    }

    /// Stops the later stages of a fan-out and rolls back what ran.
    fn halt_group(&mut self, a: &Action, now_ms: i64) {
        let group: Vec<String> = self
            .order
            .iter()
            .filter(|i| *i != &a.action_id)
            .filter(|i| self.actions.get(*i).is_some_and(|x| same_step(a, x)))
            .cloned()
            .collect();
        for gid in group {
            let status = self.actions[&gid].status;
            match status {
                ActionStatus::Proposed | ActionStatus::PendingApproval => {
                    if let Some(x) = self.actions.get_mut(&gid) {
                        x.set(
                            ActionStatus::SkippedByPolicy,
                            "skipped: halted, an earlier stage failed",
                            now_ms,
                        );
                    }
                    self.audit("dispatcher", "halted", &gid, "an earlier stage failed");
                    self.effects.push(Effect::Action(gid));
                }
                ActionStatus::Succeeded
                | ActionStatus::AwaitingConfirmation
                | ActionStatus::Verified => {
                    if let Some(x) = self.actions.get_mut(&gid) {
                        x.set(
                            ActionStatus::RolledBack,
                            "rolled back: a stage of its fan-out failed",
                            now_ms,
                        );
                    }
                    self.effects.push(Effect::Action(gid.clone()));
                    self.undo(&gid, "rollback", "a stage of its fan-out failed", now_ms);
                }
                _ => {}
            }
        }
    }

    /// Starts the undo of an executed action (TTL or rollback).
    fn undo(&mut self, id: &str, actor: &str, why: &str, now_ms: i64) {
        let Some(a) = self.actions.get(id).cloned() else {
            return;
        };
        if a.rollback_action_id.is_some() || a.executed_ms.is_none() {
            return;
        }
        let pb = self.playbooks.iter().find(|p| p.id == a.playbook_id);
        let rollback = pb
            .and_then(|p| p.steps.get(a.step))
            .and_then(|s| s.rollback.clone())
            .map(|(k, _)| k)
            .or_else(|| a.kind.undo());
        let Some(kind) = rollback else {
            self.audit(
                actor,
                "no_rollback",
                id,
                format!("{} cannot be undone: {why}", a.kind.as_str()),
            );
            return;
        };
        let uid = Action::id_for(
            &a.incident_id,
            &a.playbook_id,
            a.step,
            &format!("undo:{}", a.target),
        );
        let mut u = a.clone();
        u.action_id = uid.clone();
        u.kind = kind;
        u.undoes = Some(id.to_owned());
        u.rollback_action_id = None;
        u.mode = Mode::Auto;
        u.ttl_secs = None;
        u.expires_ms = None;
        u.executed_ms = None;
        u.verify_due_ms = None;
        u.verification = None;
        u.approval_expires_ms = None;
        u.approved_by = None;
        u.approved_ms = None;
        u.output = String::new();
        u.attempts = 0;
        u.created_ms = now_ms;
        u.version = 0;
        u.set(ActionStatus::Approved, format!("{actor}: {why}"), now_ms);
        if let Some(x) = self.actions.get_mut(id) {
            x.rollback_action_id = Some(uid.clone());
            x.version += 1;
        }
        self.effects.push(Effect::Action(id.to_owned()));
        self.record_new(u, actor);
    }

    fn release_next_stage(&mut self, id: &str, now_ms: i64) {
        let Some(a) = self.actions.get(id).cloned() else {
            return;
        };
        let same = |x: &Action| same_step(&a, x);
        let stage_done = self
            .actions
            .values()
            .filter(|x| same(x) && x.stage == a.stage)
            .all(|x| x.status == ActionStatus::Verified);
        if !stage_done {
            return;
        }
        let next: Vec<String> = self
            .order
            .iter()
            .filter(|i| {
                self.actions.get(*i).is_some_and(|x| {
                    same(x) && x.stage == a.stage + 1 && x.status == ActionStatus::Proposed
                })
            })
            .cloned()
            .collect();
        for nid in next {
            let mut x = self.actions[&nid].clone();
            let plan = plan_of(&x);
            let verdict =
                self.policy
                    .check(&plan, &x.context, &self.state, &x.connector, 0, now_ms);
            match verdict {
                Verdict::Go(mode, why) => {
                    x.stage = 0; // released: gate it as a first stage
                    self.gate(&mut x, mode, why, now_ms);
                    x.stage = plan.stage;
                }
                Verdict::Skip(why) | Verdict::Loop(why) => {
                    x.set(
                        ActionStatus::SkippedByPolicy,
                        format!("skipped: {why}"),
                        now_ms,
                    );
                }
            }
            let status = x.status;
            self.audit("policy", status.as_str(), &nid, x.reason.clone());
            let iid = x.incident_id.clone();
            self.actions.insert(nid.clone(), x);
            self.effects.push(Effect::Action(nid.clone()));
            self.tail(
                &iid,
                "gate",
                format!("stage {} released", a.stage + 1),
                Some(&nid),
            );
            if status == ActionStatus::Approved {
                self.start(&nid);
            }
        }
    }

    /// Time passes: approvals expire, verifications fall due, TTLs end.
    pub fn tick(&mut self, now_ms: i64) {
        let mut expired = Vec::new();
        let mut verify = Vec::new();
        let mut ttl = Vec::new();
        for id in &self.order {
            let Some(a) = self.actions.get(id) else {
                continue;
            };
            match a.status {
                ActionStatus::PendingApproval
                    if a.approval_expires_ms.is_some_and(|e| now_ms >= e) =>
                {
                    expired.push(id.clone())
                }
                ActionStatus::Succeeded if a.verify_due_ms.is_some_and(|d| now_ms >= d) => {
                    verify.push(id.clone())
                }
                _ => {}
            }
            if matches!(
                a.status,
                ActionStatus::Succeeded
                    | ActionStatus::AwaitingConfirmation
                    | ActionStatus::Verified
            ) && a.undoes.is_none()
                && a.rollback_action_id.is_none()
                && a.expires_ms.is_some_and(|e| now_ms >= e)
            {
                ttl.push(id.clone());
            }
        }
        for id in expired {
            self.expire(&id, now_ms);
        }
        for id in verify {
            let Some(a) = self.actions.get_mut(&id) else {
                continue;
            };
            a.verify_due_ms = None;
            match a.check.clone() {
                Some(CheckPlan::FindingQuiet) | None => {
                    let executed = a.executed_ms.unwrap_or(now_ms);
                    let last = self.finding_seen.get(&a.finding_id).copied();
                    match last {
                        Some(t) if t > executed + QUIET_GRACE_MS => self.on_verified(
                            &id,
                            false,
                            format!(
                                "the finding was still updating {}s after the action",
                                (t - executed) / 1000
                            ),
                            now_ms,
                        ),
                        _ => self.on_verified(
                            &id,
                            true,
                            "the finding stopped updating".into(),
                            now_ms,
                        ),
                    }
                }
                Some(CheckPlan::Unrenderable { why }) => {
                    self.on_verified(&id, false, format!("the check cannot run: {why}"), now_ms)
                }
                Some(_) => self.effects.push(Effect::Verify(id.clone())),
            }
        }
        for id in ttl {
            let Some(a) = self.actions.get(&id) else {
                continue;
            };
            let iid = a.incident_id.clone();
            let text = format!("TTL of {} on {} ended", a.kind.as_str(), a.target);
            self.audit("ttl", "ttl_ended", &id, text.clone());
            self.tail(&iid, "closure", text, Some(&id));
            self.undo(&id, "ttl", "TTL ended", now_ms);
        }
        // every path above settles the incidents it touched; nothing else
        // changes with time alone, so open incidents are not rescanned here
    }

    /// Resets a connector's circuit breaker (an admin).
    pub fn reset_breaker(&mut self, connector: &str, who: &str) -> bool {
        let done = self.state.reset(connector);
        if done {
            self.audit(who, "breaker_reset", connector, "reset by an admin");
        }
        done
    }

    /// Brings an incident's status in line with its actions and findings.
    fn settle(&mut self, iid: &str, now_ms: i64) {
        let mut under_way = false;
        let mut in_force = false;
        let mut any = false;
        for a in self.actions.values().filter(|a| a.incident_id == iid) {
            any = true;
            match a.status {
                ActionStatus::PendingApproval
                | ActionStatus::Approved
                | ActionStatus::Executing
                | ActionStatus::Proposed => under_way = true,
                ActionStatus::Succeeded | ActionStatus::AwaitingConfirmation => {
                    under_way |=
                        a.verify_due_ms.is_some() || a.status == ActionStatus::AwaitingConfirmation;
                    in_force = true;
                }
                ActionStatus::Verified => in_force = true,
                _ => {}
            }
        }
        let Some(i) = self.incidents.by_id.get_mut(iid) else {
            return;
        };
        let before = i.status;
        if before == IncidentStatus::Escalated {
            // a person takes it from here; it closes when the activity has stopped
            if i.open_findings.is_empty() && !under_way {
                i.transition(
                    IncidentStatus::Resolved,
                    now_ms,
                    "activity stopped after escalation",
                );
            }
        } else if under_way {
            i.transition(IncidentStatus::Mitigating, now_ms, "actions under way");
        } else if i.open_findings.is_empty() {
            i.transition(IncidentStatus::Resolved, now_ms, "every finding resolved");
        } else if in_force && any {
            i.transition(IncidentStatus::Mitigated, now_ms, "containment in force");
        }
        if i.status != before {
            let text = format!("{} → {}", before.as_str(), i.status.as_str());
            self.effects.push(Effect::Incident(iid.to_owned()));
            self.effects.push(Effect::Tail {
                incident_id: iid.to_owned(),
                phase: "closure".into(),
                text,
                action_id: None,
            });
        }
        self.incidents.trim();
    }

    /// Restores state from the journal after a restart: actions that were
    /// approved or executing run (again, with the same idempotency key),
    /// pending ones keep waiting, executed containments keep their TTL.
    pub fn restore(&mut self, actions: Vec<Action>, now_ms: i64) {
        let mut rerun = Vec::new();
        for a in actions {
            if matches!(a.status, ActionStatus::Approved | ActionStatus::Executing) {
                rerun.push(a.action_id.clone());
            }
            if a.executed_ms.is_some() && a.undoes.is_none() {
                self.state
                    .executed(a.kind, &a.target, a.executed_ms.unwrap_or(now_ms));
            }
            if matches!(a.mode, Mode::Auto | Mode::Approve) {
                self.state.admit(a.kind, &a.target, a.created_ms);
            }
            self.order.push(a.action_id.clone());
            self.actions.insert(a.action_id.clone(), a);
        }
        self.order
            .sort_by_key(|id| self.actions.get(id).map(|a| a.created_ms));
        for id in rerun {
            if let Some(a) = self.actions.get_mut(&id) {
                a.set(ActionStatus::Approved, "resumed after a restart", now_ms);
            }
            self.audit(
                "dispatcher",
                "resumed",
                &id,
                "approved or executing at the last stop: run again with the same idempotency key",
            );
            self.start(&id);
        }
    }
}

/// Whether `x` is one of the targets of the same playbook step as `a` in
/// the same incident (a fan-out's group), undo actions aside.
fn same_step(a: &Action, x: &Action) -> bool {
    x.incident_id == a.incident_id
        && x.playbook_id == a.playbook_id
        && x.step == a.step
        && x.undoes.is_none()
}

/// The plan an action came from (for re-checks).
fn plan_of(a: &Action) -> Plan {
    Plan {
        playbook_id: a.playbook_id.clone(),
        step: a.step,
        kind: a.kind,
        responder: a.responder,
        connector: Some(a.connector.clone()),
        target: a.target.clone(),
        params: a.parameters.clone(),
        risk: a.risk,
        ttl_secs: a.ttl_secs,
        stage: a.stage,
    }
}

/// Connector output kept on an action.
const OUTPUT_MAX: usize = 2048;

fn cap(s: &str) -> String {
    if s.len() <= OUTPUT_MAX {
        return s.to_owned();
    }
    let mut end = OUTPUT_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::OffenderType;
    use crate::respond::config::AssetsSpec;
    use crate::respond::playbook::load_str;
    use crate::respond::policy::PolicySpec;

    fn finding(id: &str, offender: &str) -> Finding {
        let mut f: Finding =
            serde_json::from_str(include_str!("../../tests/data/finding.json")).unwrap();
        f.finding_id = id.into();
        f.status = Status::Open;
        f.domain = Domain::Infrastructure;
        f.classification = "crash_loop".into();
        f.offender.kind = OffenderType::Service;
        f.offender.value = offender.into();
        f.context = [("service".to_owned(), "web".to_owned())].into();
        f
    }

    fn dispatcher(playbook: &str, policy: &str, assets: &str) -> Dispatcher {
        let pbs = load_str(playbook, "p.yaml").unwrap();
        let spec: PolicySpec = serde_saphyr::from_str(policy).unwrap();
        let assets: AssetsSpec = serde_saphyr::from_str(assets).unwrap();
        let mut routes = Routes::new();
        for k in ActionKind::ALL {
            for d in k.responders() {
                routes.insert((*d, *k), "c".to_owned());
            }
        }
        Dispatcher::new(
            pbs,
            Policy::compile(spec).unwrap(),
            Assets::new(&assets),
            Incidents::new(3600, 1000),
            routes,
        )
    }

    fn statuses(d: &Dispatcher) -> Vec<(String, &'static str)> {
        d.order
            .iter()
            .map(|id| {
                let a = &d.actions[id];
                (
                    format!("{}:{}", a.kind.as_str(), a.target),
                    a.status.as_str(),
                )
            })
            .collect()
    }

    const STAGED: &str = "version: 1
playbooks:
  - id: rolling-restart
    title: Restart every instance, canary first
    match: {}
    steps:
      - action: restart_service
        fan_out: service_instances
        stage: {canary: 1, batch_size: 2}
        risk: low
        verify: {http_url: 'http://{context.service}/healthz', after_secs: 1}
";
    const FLEET: &str = "services: [{name: web, instances: [w1, w2, w3, w4, w5]}]";

    #[test]
    fn a_fan_out_runs_the_canary_first_then_batches_and_halts_on_a_failed_verification() {
        let mut d = dispatcher(STAGED, "modes: {low: auto}", FLEET);
        let t = 1_000_000;
        d.on_finding(&finding("f-1", "web"), t);
        let execs: Vec<String> = d
            .take_effects()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Execute(id) => Some(d.actions[&id].target.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(execs, ["w1"], "only the canary runs first");
        let id = |d: &Dispatcher, t: &str| {
            d.order
                .iter()
                .find(|i| d.actions[*i].target == t)
                .unwrap()
                .clone()
        };
        let w1 = id(&d, "w1");
        d.on_executed(&w1, true, "ok".into(), t + 10);
        d.tick(t + 2_000);
        assert!(d.take_effects().contains(&Effect::Verify(w1.clone())));
        d.on_verified(&w1, true, "200".into(), t + 2_100);
        let next: Vec<String> = d
            .take_effects()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Execute(id) => Some(d.actions[&id].target.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(next, ["w2", "w3"], "then the first batch");
        let (w2, w3) = (id(&d, "w2"), id(&d, "w3"));
        d.on_executed(&w2, true, "ok".into(), t + 2_200);
        d.on_executed(&w3, true, "ok".into(), t + 2_200);
        d.on_verified(&w2, false, "503".into(), t + 4_000);
        let s = statuses(&d);
        assert!(
            s.contains(&("restart_service:w2".into(), "rolled_back")),
            "{s:?}"
        );
        assert!(
            s.contains(&("restart_service:w4".into(), "skipped_by_policy")),
            "{s:?}"
        );
        assert!(
            s.contains(&("restart_service:w5".into(), "skipped_by_policy")),
            "{s:?}"
        );
        let inc = d.incidents.by_id.values().next().unwrap();
        assert_eq!(inc.status, IncidentStatus::Escalated);
    }

    const BLOCK: &str = "version: 1
playbooks:
  - id: block
    title: Block
    match: {}
    steps:
      - action: block_ip
        risk: high
        ttl_secs: 60
";

    fn ip_finding(id: &str, ip: &str) -> Finding {
        let mut f = finding(id, ip);
        f.domain = Domain::Http;
        f.offender.kind = OffenderType::Ip;
        f.context.clear();
        f
    }

    #[test]
    fn an_expired_approval_never_runs_and_a_ttl_is_undone() {
        let mut d = dispatcher(
            BLOCK,
            "modes: {high: approve}\napproval_expiry_secs: 60",
            "{}",
        );
        let t = 1_000_000;
        d.on_finding(&ip_finding("f-1", "203.0.113.1"), t);
        let a = d.order[0].clone();
        assert_eq!(d.actions[&a].status, ActionStatus::PendingApproval);
        d.tick(t + 61_000);
        assert_eq!(d.actions[&a].status, ActionStatus::Expired);
        assert!(d.approve(&a, "alice", t + 62_000).is_err());
        assert!(
            !d.take_effects()
                .iter()
                .any(|e| matches!(e, Effect::Execute(_)))
        );

        d.on_finding(&ip_finding("f-2", "203.0.113.2"), t);
        let b = d.order[1].clone();
        assert_eq!(
            d.approve(&b, "alice", t + 1_000),
            Ok(ActionStatus::Executing)
        );
        assert_eq!(d.actions[&b].approved_by.as_deref(), Some("alice"));
        d.on_executed(&b, true, "denied".into(), t + 1_100);
        d.tick(t + 1_100 + 61_000);
        let undo = d.actions[&b].rollback_action_id.clone().expect("an undo");
        assert_eq!(d.actions[&undo].kind, ActionKind::UnblockIp);
        assert_eq!(d.actions[&undo].status, ActionStatus::Executing);
        d.on_executed(&undo, true, "removed".into(), t + 63_000);
        assert_eq!(d.actions[&b].status, ActionStatus::Undone);
    }

    const RESTART: &str = "version: 1
playbooks:
  - id: restart
    title: Restart
    match: {}
    steps:
      - action: restart_service
        risk: high
";

    #[test]
    fn an_action_feeding_its_own_trigger_is_stopped_and_escalated() {
        let mut d = dispatcher(
            RESTART,
            "modes: {high: auto}\nloop_detection: {max_repeats: 2, window_secs: 3600}\nper_target: {max: 10, per_secs: 60}",
            "{}",
        );
        let t = 1_000_000;
        // two incidents hours apart (past the horizon), each blocking, then a third
        for n in 1..=2i64 {
            let mut f = finding(&format!("f-{n}"), "web");
            f.first_seen += n * 10_000_000;
            f.last_seen += n * 10_000_000;
            d.on_finding(&f, t);
            let id = d.order.last().unwrap().clone();
            assert_eq!(d.actions[&id].status, ActionStatus::Executing);
            d.on_executed(&id, true, "ok".into(), t + 1000 * n);
        }
        let mut f = finding("f-3", "web");
        f.first_seen += 30_000_000;
        f.last_seen += 30_000_000;
        d.on_finding(&f, t + 3_000);
        let last = &d.actions[d.order.last().unwrap()];
        assert_eq!(last.status, ActionStatus::SkippedByPolicy);
        assert!(last.reason.contains("loop"), "{}", last.reason);
        assert_eq!(
            d.incidents.by_id[&last.incident_id].status,
            IncidentStatus::Escalated
        );
    }

    #[test]
    fn a_restart_resumes_what_was_executing_with_the_same_id() {
        let mut d = dispatcher(BLOCK, "modes: {high: auto}", "{}");
        d.on_finding(&ip_finding("f-1", "203.0.113.7"), 1_000);
        let saved: Vec<Action> = d.actions.values().cloned().collect();
        assert_eq!(saved[0].status, ActionStatus::Executing);
        let mut again = dispatcher(BLOCK, "modes: {high: auto}", "{}");
        again.restore(saved.clone(), 2_000);
        let fx = again.take_effects();
        assert!(fx.contains(&Effect::Execute(saved[0].action_id.clone())));
        // the same finding replayed after the restart plans nothing new
        again.on_finding(&ip_finding("f-1", "203.0.113.7"), 3_000);
        assert_eq!(again.actions.len(), 1);
        assert_eq!(again.actions[&saved[0].action_id].attempts, 2);
    }
}
