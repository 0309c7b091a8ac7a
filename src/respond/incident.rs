//! Incidents: findings correlated by offender and target within a horizon
//! of event time, scored, and carried through their lifecycle.
//!
//! ```text
//! finding ─> keys: offender, the source addresses a user-offender finding
//!            names (a distributed brute force), and for infrastructure the
//!            service and host ─> an open incident holding any key within the
//!            horizon? join it : open a new one ─> rescore
//! ```
//! So the brute force, the spraying and the success-after-failures of one
//! address are one incident, and a distributed brute force on an account
//! gathers its source addresses. Victim hosts are not keys for identity and
//! HTTP findings: many attackers hitting one server are many incidents.
//!
//! Priority (0 to 100) = 40 × severity + 20 × confidence + 25 × asset
//! criticality + 15 × repeat offence, each part in 0..1. Lifecycle: open ─>
//! mitigating (an action under way) ─> mitigated (containment in force or
//! verified) ─> resolved (every finding resolved, nothing pending), or
//! escalated (a person must act); each change is a timeline entry.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::config::{AssetSpec, AssetsSpec};
use super::playbook::{offender_type, severity_str};
use crate::finding::{Domain, Finding, OffenderType, Severity, Status};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Open,
    Mitigating,
    Mitigated,
    Resolved,
    Escalated,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Mitigating => "mitigating",
            IncidentStatus::Mitigated => "mitigated",
            IncidentStatus::Resolved => "resolved",
            IncidentStatus::Escalated => "escalated",
        }
    }
}

/// One entry of an incident's timeline (also a job-tail event).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimelineEntry {
    pub at_ms: i64,
    /// detection, proposal, gate, execution, verification, closure.
    pub phase: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
}

/// Timeline entries kept per incident (the audit log keeps everything).
const TIMELINE_MAX: usize = 500;
/// Offenders and findings listed per incident.
const LIST_MAX: usize = 200;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Incident {
    pub incident_id: String,
    pub title: String,
    pub status: IncidentStatus,
    pub priority: f64,
    pub severity: Severity,
    pub domain: Domain,
    pub classifications: BTreeSet<String>,
    /// The first finding's offender.
    pub offender_type: OffenderType,
    pub offender_value: String,
    /// Every offender and source address gathered, bounded.
    pub offenders: BTreeSet<String>,
    pub service: Option<String>,
    pub host: Option<String>,
    pub finding_ids: Vec<String>,
    /// Findings not yet resolved.
    pub open_findings: BTreeSet<String>,
    pub repeat_offender: bool,
    pub asset_criticality: Severity,
    pub asset_tags: BTreeSet<String>,
    pub jira_key: Option<String>,
    /// Event time of the first and last finding (correlation horizon).
    pub first_seen: i64,
    pub last_seen: i64,
    pub opened_ms: i64,
    pub updated_ms: i64,
    pub mitigated_ms: Option<i64>,
    pub resolved_ms: Option<i64>,
    pub escalated_reason: Option<String>,
    pub timeline: Vec<TimelineEntry>,
    pub version: u64,
}

impl Incident {
    pub fn note(&mut self, at_ms: i64, phase: &str, text: String, action_id: Option<&str>) {
        if self.timeline.len() >= TIMELINE_MAX {
            self.timeline.remove(1);
        }
        self.timeline.push(TimelineEntry {
            at_ms,
            phase: phase.into(),
            text,
            action_id: action_id.map(str::to_owned),
        });
        self.updated_ms = at_ms;
        self.version += 1;
    }

    /// Moves to `status`, noting it; no-op when already there.
    pub fn transition(&mut self, status: IncidentStatus, at_ms: i64, why: &str) {
        if self.status == status {
            return;
        }
        let from = self.status;
        self.status = status;
        match status {
            IncidentStatus::Mitigated => self.mitigated_ms = Some(at_ms),
            IncidentStatus::Resolved => self.resolved_ms = Some(at_ms),
            IncidentStatus::Escalated => self.escalated_reason = Some(why.to_owned()),
            _ => {}
        }
        self.note(
            at_ms,
            "closure",
            format!("{} → {}: {why}", from.as_str(), status.as_str()),
            None,
        );
    }

    /// The JSON line of `replay --respond`.
    pub fn line(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("type".into(), "incident".into());
        }
        v
    }
}

fn sev_weight(s: Severity) -> f64 {
    match s {
        Severity::Low => 0.25,
        Severity::Medium => 0.5,
        Severity::High => 0.75,
        Severity::Critical => 1.0,
    }
}

/// The asset inventory, by name.
#[derive(Default)]
pub struct Assets {
    hosts: HashMap<String, AssetSpec>,
    services: HashMap<String, AssetSpec>,
    users: HashMap<String, AssetSpec>,
}

impl Assets {
    pub fn new(spec: &AssetsSpec) -> Assets {
        let by = |v: &[AssetSpec]| v.iter().map(|a| (a.name.clone(), a.clone())).collect();
        Assets {
            hosts: by(&spec.hosts),
            services: by(&spec.services),
            users: by(&spec.users),
        }
    }

    /// The assets a finding concerns: its context's host and service, and
    /// an offender that is one of ours (a user, host or service).
    pub fn of(&self, f: &Finding) -> Vec<&AssetSpec> {
        let mut out = Vec::new();
        if let Some(h) = f.context.get("host").and_then(|h| self.hosts.get(h)) {
            out.push(h);
        }
        if let Some(s) = f.context.get("service").and_then(|s| self.services.get(s)) {
            out.push(s);
        }
        let o = &f.offender.value;
        let own = match f.offender.kind {
            OffenderType::User => self.users.get(o),
            OffenderType::Host => self.hosts.get(o),
            OffenderType::Service => self.services.get(o),
            OffenderType::Ip | OffenderType::Token => None,
        };
        out.extend(own);
        out
    }

    /// The instances of the finding's service, for fanned-out steps.
    pub fn instances(&self, f: &Finding) -> &[String] {
        f.context
            .get("service")
            .or_else(|| (f.offender.kind == OffenderType::Service).then_some(&f.offender.value))
            .and_then(|s| self.services.get(s))
            .map_or(&[], |s| &s.instances)
    }
}

/// Open incidents by correlation key, and every incident kept.
pub struct Incidents {
    pub horizon_ms: i64,
    pub by_id: HashMap<String, Incident>,
    /// Correlation key ─> incident id.
    keys: HashMap<String, String>,
    /// Offenders seen in incidents of past days (from the store).
    pub repeat: HashSet<String>,
    max: usize,
}

/// What happened to a finding.
pub struct Joined {
    pub incident_id: String,
    pub opened: bool,
}

impl Incidents {
    pub fn new(horizon_secs: u64, max: usize) -> Incidents {
        Incidents {
            horizon_ms: horizon_secs as i64 * 1000,
            by_id: HashMap::new(),
            keys: HashMap::new(),
            repeat: HashSet::new(),
            max: max.max(1),
        }
    }

    /// The correlation keys of a finding.
    fn keys(f: &Finding) -> Vec<String> {
        let mut k = vec![format!(
            "{}:{}",
            offender_type(f.offender.kind),
            f.offender.value
        )];
        if f.offender.kind == OffenderType::User {
            for t in &f.targets {
                if t.parse::<std::net::IpAddr>().is_ok() {
                    k.push(format!("ip:{t}"));
                }
            }
        }
        if f.domain == Domain::Infrastructure {
            for c in ["service", "host"] {
                if let Some(v) = f.context.get(c).filter(|v| !v.is_empty()) {
                    k.push(format!("{c}:{v}"));
                }
            }
        }
        k
    }

    /// Files a finding version into its incident (opening one when needed)
    /// and rescoring it; `now_ms` is wall time.
    pub fn file(&mut self, f: &Finding, assets: &Assets, now_ms: i64) -> Joined {
        let keys = Incidents::keys(f);
        let horizon = self.horizon_ms;
        let found = keys.iter().find_map(|k| {
            let id = self.keys.get(k)?;
            let inc = self.by_id.get(id)?;
            let live = inc.status != IncidentStatus::Resolved
                && f.first_seen <= inc.last_seen + horizon
                && f.last_seen + horizon >= inc.first_seen;
            // an update of a finding already filed always goes home
            (live || inc.finding_ids.contains(&f.finding_id)).then(|| id.clone())
        });
        let opened = found.is_none();
        let id = found.unwrap_or_else(|| format!("i-{}", f.finding_id.trim_start_matches("f-")));
        let repeat = self.repeat.contains(&f.offender.value);
        let inc = self.by_id.entry(id.clone()).or_insert_with(|| Incident {
            incident_id: id.clone(),
            title: format!("{} from {}", f.title, f.offender.value),
            status: IncidentStatus::Open,
            priority: 0.0,
            severity: f.severity,
            domain: f.domain,
            classifications: BTreeSet::new(),
            offender_type: f.offender.kind,
            offender_value: f.offender.value.clone(),
            offenders: BTreeSet::new(),
            service: None,
            host: None,
            finding_ids: Vec::new(),
            open_findings: BTreeSet::new(),
            repeat_offender: repeat,
            asset_criticality: Severity::Low,
            asset_tags: BTreeSet::new(),
            jira_key: None,
            first_seen: f.first_seen,
            last_seen: f.last_seen,
            opened_ms: now_ms,
            updated_ms: now_ms,
            mitigated_ms: None,
            resolved_ms: None,
            escalated_reason: None,
            timeline: Vec::new(),
            version: 0,
        });
        inc.classifications.insert(f.classification.clone());
        if inc.offenders.len() < LIST_MAX {
            inc.offenders.insert(f.offender.value.clone());
            for t in f
                .targets
                .iter()
                .filter(|t| t.parse::<std::net::IpAddr>().is_ok())
            {
                if inc.offenders.len() < LIST_MAX {
                    inc.offenders.insert(t.clone());
                }
            }
        }
        inc.repeat_offender |= repeat;
        inc.severity = inc.severity.max(f.severity);
        inc.first_seen = inc.first_seen.min(f.first_seen);
        inc.last_seen = inc.last_seen.max(f.last_seen);
        if inc.service.is_none() {
            inc.service = f.context.get("service").cloned();
        }
        if inc.host.is_none() {
            inc.host = f.context.get("host").cloned();
        }
        let new_finding = !inc.finding_ids.contains(&f.finding_id);
        if new_finding && inc.finding_ids.len() < LIST_MAX {
            inc.finding_ids.push(f.finding_id.clone());
        }
        if f.status == Status::Resolved || f.status == Status::Suppressed {
            inc.open_findings.remove(&f.finding_id);
        } else {
            inc.open_findings.insert(f.finding_id.clone());
        }
        for a in assets.of(f) {
            inc.asset_criticality = inc.asset_criticality.max(a.criticality);
            inc.asset_tags.extend(a.tags.iter().cloned());
        }
        let conf = f.confidence.clamp(0.0, 1.0);
        let score = 40.0 * sev_weight(inc.severity)
            + 20.0 * conf
            + 25.0 * sev_weight(inc.asset_criticality)
            + if inc.repeat_offender { 15.0 } else { 0.0 };
        inc.priority = inc.priority.max((score * 10.0).round() / 10.0);
        let text = format!(
            "{} {} {} ({}, {} events, confidence {:.2})",
            f.detector.id,
            status_word(f.status),
            f.offender.value,
            severity_str(f.severity),
            f.metrics.event_count,
            f.confidence
        );
        if new_finding || f.status != Status::Updated {
            inc.note(now_ms, "detection", text, None);
        } else {
            inc.updated_ms = now_ms;
            inc.version += 1;
        }
        // a resolved incident that gets a new finding opens again
        if inc.status == IncidentStatus::Resolved && f.status != Status::Resolved {
            inc.transition(IncidentStatus::Open, now_ms, "new activity");
        }
        for k in keys {
            self.keys.insert(k, id.clone());
        }
        Joined {
            incident_id: id,
            opened,
        }
    }

    /// Forgets the oldest resolved incidents past the limit (the store and
    /// the journal keep them).
    pub fn trim(&mut self) {
        if self.by_id.len() <= self.max {
            return;
        }
        let mut done: Vec<(i64, String)> = self
            .by_id
            .values()
            .filter(|i| i.status == IncidentStatus::Resolved)
            .map(|i| (i.updated_ms, i.incident_id.clone()))
            .collect();
        done.sort();
        let excess = self.by_id.len() - self.max;
        let gone: HashSet<String> = done.into_iter().take(excess).map(|x| x.1).collect();
        self.by_id.retain(|id, _| !gone.contains(id));
        self.keys.retain(|_, id| !gone.contains(id));
    }

    /// Restores an incident from the journal.
    pub fn restore(&mut self, inc: Incident) {
        let mut keys = vec![format!(
            "{}:{}",
            offender_type(inc.offender_type),
            inc.offender_value
        )];
        for o in &inc.offenders {
            if o.parse::<std::net::IpAddr>().is_ok() {
                keys.push(format!("ip:{o}"));
            }
        }
        for k in keys {
            self.keys.insert(k, inc.incident_id.clone());
        }
        self.by_id.insert(inc.incident_id.clone(), inc);
    }

    pub fn sorted(&self) -> Vec<&Incident> {
        let mut v: Vec<&Incident> = self.by_id.values().collect();
        v.sort_by(|a, b| {
            a.opened_ms
                .cmp(&b.opened_ms)
                .then(a.incident_id.cmp(&b.incident_id))
        });
        v
    }
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Open => "opened for",
        Status::Updated => "updated for",
        Status::Resolved => "resolved for",
        Status::Suppressed => "suppressed for",
    }
}

/// Counts incidents by status (for `/api/v1/status`).
pub fn by_status(incidents: &Incidents) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for i in incidents.by_id.values() {
        *out.entry(i.status.as_str().to_owned()).or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, det: &str, kind: OffenderType, offender: &str, at: i64) -> Finding {
        let mut f: Finding =
            serde_json::from_str(include_str!("../../tests/data/finding.json")).unwrap();
        f.finding_id = id.into();
        f.detector.id = det.into();
        f.domain = Domain::Identity;
        f.offender.kind = kind;
        f.offender.value = offender.into();
        f.first_seen = at;
        f.last_seen = at + 1000;
        f.status = Status::Open;
        f.targets.clear();
        f
    }

    #[test]
    fn one_address_one_incident_and_a_distributed_attack_gathers_addresses() {
        let mut inc = Incidents::new(3600, 100);
        let a = Assets::default();
        let t = 1_000_000;
        let j1 = inc.file(
            &finding(
                "f-1",
                "identity.ssh_brute_force",
                OffenderType::Ip,
                "203.0.113.5",
                t,
            ),
            &a,
            t,
        );
        let j2 = inc.file(
            &finding(
                "f-2",
                "identity.password_spraying",
                OffenderType::Ip,
                "203.0.113.5",
                t + 60_000,
            ),
            &a,
            t,
        );
        let j3 = inc.file(
            &finding(
                "f-3",
                "identity.success_after_failures",
                OffenderType::Ip,
                "203.0.113.5",
                t + 120_000,
            ),
            &a,
            t,
        );
        assert!(j1.opened && !j2.opened && !j3.opened);
        assert_eq!(j1.incident_id, j3.incident_id);
        // past the horizon it is a new incident
        let j4 = inc.file(
            &finding(
                "f-4",
                "identity.ssh_brute_force",
                OffenderType::Ip,
                "203.0.113.5",
                t + 10_000_000,
            ),
            &a,
            t,
        );
        assert!(j4.opened);
        let mut d = finding(
            "f-5",
            "identity.distributed_brute_force",
            OffenderType::User,
            "root",
            t,
        );
        d.targets = vec!["198.51.100.1".into(), "198.51.100.2".into()];
        let j5 = inc.file(&d, &a, t);
        let j6 = inc.file(
            &finding(
                "f-6",
                "identity.ssh_brute_force",
                OffenderType::Ip,
                "198.51.100.2",
                t,
            ),
            &a,
            t,
        );
        assert_eq!(j5.incident_id, j6.incident_id);
        let i = &inc.by_id[&j5.incident_id];
        assert!(i.offenders.contains("198.51.100.1") && i.offenders.contains("root"));
    }

    #[test]
    fn priority_rises_with_asset_criticality_and_repeat_offence() {
        let spec: AssetsSpec =
            serde_saphyr::from_str("hosts: [{name: db-1, criticality: critical, tags: [pci]}]\n")
                .unwrap();
        let assets = Assets::new(&spec);
        let mut inc = Incidents::new(3600, 100);
        inc.repeat.insert("203.0.113.9".into());
        let plain = inc.file(
            &finding("f-1", "d", OffenderType::Ip, "192.0.2.1", 0),
            &assets,
            0,
        );
        let mut f = finding("f-2", "d", OffenderType::Ip, "203.0.113.9", 0);
        f.context.insert("host".into(), "db-1".into());
        let hot = inc.file(&f, &assets, 0);
        let (p, h) = (&inc.by_id[&plain.incident_id], &inc.by_id[&hot.incident_id]);
        assert!(
            h.priority > p.priority + 30.0,
            "{} vs {}",
            h.priority,
            p.priority
        );
        assert!(h.repeat_offender && h.asset_tags.contains("pci"));
    }
}
