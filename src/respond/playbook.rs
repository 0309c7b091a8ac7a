//! Playbooks (`playbooks/*.yaml`): ordered, first-match profiles with typed
//! conditions, each a list of steps. Files are read in name order and the
//! playbooks of a file in their order; the first whose `match` admits a
//! finding plans its steps, and no other does.
//!
//! ```text
//! PlaybookFile (serde, lines) ─> compile ─> Playbook (kinds checked, templates
//!                                           compiled, verification parsed)
//! finding + incident ─> first matching Playbook ─> Plan per step (targets
//!                                                  rendered and checked)
//! ```
//! Compiling does no I/O; a playbook that names an unknown action, field,
//! template name or connector is refused with its `file:line`.

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::catalogue::{ActionKind, check_target};
use super::template::{Template, Values, Var};
use crate::detect::CompileError;
use crate::detect::config::Located;
use crate::finding::{Domain, Finding, OffenderType, Severity, Status};

/// How risky a step is; the policy maps each risk to a mode.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaybookFile {
    /// File format version; 1.
    pub version: u32,
    pub playbooks: Vec<Located<PlaybookSpec>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaybookSpec {
    /// Stable id, recorded on every action it plans.
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "match")]
    pub matcher: MatchSpec,
    /// No automatic step fits: the incident goes to a person at once
    /// (steps may then be empty).
    #[serde(default)]
    pub escalate: bool,
    #[serde(default)]
    pub steps: Vec<Located<StepSpec>>,
}

/// Conditions on the finding and its incident; every one given must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    #[serde(default)]
    pub domain: Option<Vec<Domain>>,
    #[serde(default)]
    pub classification: Option<Vec<String>>,
    /// Detector ids.
    #[serde(default)]
    pub detector: Option<Vec<String>>,
    #[serde(default)]
    pub severity_at_least: Option<Severity>,
    #[serde(default)]
    pub confidence_at_least: Option<f64>,
    #[serde(default)]
    pub offender_type: Option<Vec<OffenderType>>,
    /// Offender values that never match (a detector's placeholder for a
    /// missing field, such as `unknown-host`).
    #[serde(default)]
    pub not_offenders: Option<Vec<String>>,
    /// At least one of these tags is on an asset the finding concerns.
    #[serde(default)]
    pub asset_tags: Option<Vec<String>>,
    /// None of these tags is.
    #[serde(default)]
    pub not_asset_tags: Option<Vec<String>>,
    /// The incident's priority score (0 to 100) is at least this.
    #[serde(default)]
    pub priority_at_least: Option<f64>,
    /// Finding states that start the playbook (default: open and updated).
    #[serde(default)]
    pub status: Option<Vec<Status>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// An action kind (`block_ip`, `lock_account`, `restart_service`, …).
    pub action: String,
    /// identity, http or infrastructure; default: the finding's domain when
    /// its responder offers the action.
    #[serde(default)]
    pub responder: Option<Domain>,
    /// The connector to use instead of the responder's route.
    #[serde(default)]
    pub connector: Option<String>,
    /// Template of the target (default `{offender}`).
    #[serde(default = "default_target")]
    pub target: String,
    /// Act on every instance of the finding's service (from `assets:`)
    /// instead of one target, in stages.
    #[serde(default)]
    pub fan_out: Option<FanOut>,
    /// Parameters, templated from the finding.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    pub risk: Risk,
    /// A containment is undone this long after it is executed (required for
    /// containments: nothing stays blocked forever).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    #[serde(default)]
    pub verify: Option<VerifySpec>,
    /// What undoes the step when verification fails (default: the kind's
    /// own undo, such as unblock_ip for block_ip).
    #[serde(default)]
    pub rollback: Option<RollbackSpec>,
    /// Staging of a fanned-out step.
    #[serde(default)]
    pub stage: Option<StageSpec>,
}

fn default_target() -> String {
    "{offender}".into()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FanOut {
    /// The instances listed for `context.service` in `assets.services`.
    ServiceInstances,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// How long after execution the check runs.
    #[serde(default = "default_verify_after")]
    pub after_secs: u64,
    /// Passes when the triggering finding has not been updated since the
    /// action ran (the attack stopped) by the time of the check.
    #[serde(default)]
    pub finding_quiet: bool,
    /// Passes when this URL answers 2xx (templated).
    #[serde(default)]
    pub http_url: Option<String>,
    /// Passes when this Prometheus query's first value is below `below`.
    #[serde(default)]
    pub prometheus: Option<PrometheusCheck>,
    /// A person confirms the verification before the action counts as
    /// verified (high-risk actions always need this).
    #[serde(default)]
    pub confirm: bool,
}

fn default_verify_after() -> u64 {
    60
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusCheck {
    /// Base URL of the Prometheus HTTP API (`http://prometheus:9090`).
    pub url: String,
    /// PromQL, templated.
    pub query: String,
    pub below: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackSpec {
    pub action: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Targets in the first stage, verified before any other.
    #[serde(default = "one")]
    pub canary: usize,
    /// Targets per stage after the canary.
    #[serde(default = "one")]
    pub batch_size: usize,
}

fn one() -> usize {
    1
}

/// A compiled playbook.
#[derive(Clone, Debug)]
pub struct Playbook {
    pub id: String,
    pub title: String,
    pub matcher: MatchSpec,
    pub escalate: bool,
    pub steps: Vec<Step>,
    pub path: String,
    pub line: u64,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub kind: ActionKind,
    pub responder: Option<Domain>,
    pub connector: Option<String>,
    pub target: Template,
    pub fan_out: Option<FanOut>,
    pub params: BTreeMap<String, Template>,
    pub risk: Risk,
    pub ttl_secs: Option<u64>,
    pub verify: Verify,
    pub rollback: Option<(ActionKind, BTreeMap<String, Template>)>,
    pub stage: StageSpec,
    pub line: u64,
}

/// A compiled verification.
#[derive(Clone, Debug, PartialEq)]
pub struct Verify {
    pub after_secs: u64,
    pub check: Check,
    pub confirm: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    FindingQuiet,
    Http(Template),
    Prometheus {
        url: String,
        query: Template,
        below: f64,
    },
}

impl Check {
    pub fn describe(&self) -> String {
        match self {
            Check::FindingQuiet => "the triggering finding stops updating".into(),
            Check::Http(t) => format!("{} answers 2xx", t.source()),
            Check::Prometheus { query, below, .. } => {
                format!("prometheus {} < {below}", query.source())
            }
        }
    }
}

/// Names a playbook template may use: the finding's and the incident's.
fn playbook_var(v: &Var) -> bool {
    !matches!(v, Var::Secret | Var::Target | Var::Param(_) | Var::ActionId)
}

fn compile_step(s: &StepSpec, line: u64, path: &str) -> Result<Step, CompileError> {
    let err = |message: String| CompileError {
        path: path.to_owned(),
        line,
        message,
    };
    let kind = ActionKind::parse(&s.action).ok_or_else(|| {
        err(format!(
            "unknown action `{}` (known: {})",
            s.action,
            ActionKind::ALL
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if let Some(r) = s.responder
        && !kind.responders().contains(&r)
    {
        return Err(err(format!(
            "the {} responder has no action `{}` (it has: {})",
            r.as_str(),
            s.action,
            ActionKind::offered_by(r).join(", ")
        )));
    }
    let tpl = |t: &str| Template::compile(t, playbook_var).map_err(&err);
    let target = tpl(&s.target)?;
    let params = s
        .params
        .iter()
        .map(|(k, v)| Ok((k.clone(), tpl(v)?)))
        .collect::<Result<BTreeMap<_, _>, CompileError>>()?;
    if kind.is_containment() && s.ttl_secs.is_none() {
        return Err(err(format!(
            "`{}` is a containment: give it ttl_secs (nothing stays in force forever)",
            s.action
        )));
    }
    if s.ttl_secs == Some(0) {
        return Err(err("ttl_secs must be at least 1".into()));
    }
    let verify = match &s.verify {
        None => Verify {
            after_secs: default_verify_after(),
            check: Check::FindingQuiet,
            confirm: s.risk >= Risk::High,
        },
        Some(v) => {
            let given = [
                v.finding_quiet,
                v.http_url.is_some(),
                v.prometheus.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if given != 1 {
                return Err(err(
                    "verify takes exactly one of finding_quiet, http_url and prometheus".into(),
                ));
            }
            let check = if let Some(u) = &v.http_url {
                Check::Http(tpl(u)?)
            } else if let Some(p) = &v.prometheus {
                let query = tpl(&p.query)?;
                if !query.names_quoted() {
                    return Err(err(format!(
                        "prometheus query {:?}: put each {{name}} inside a \"…\" string (a value outside quotes would be PromQL)",
                        p.query
                    )));
                }
                Check::Prometheus {
                    url: p.url.clone(),
                    query,
                    below: p.below,
                }
            } else {
                Check::FindingQuiet
            };
            Verify {
                after_secs: v.after_secs,
                check,
                confirm: v.confirm || s.risk >= Risk::High,
            }
        }
    };
    let rollback = match &s.rollback {
        Some(r) => {
            let k = ActionKind::parse(&r.action)
                .ok_or_else(|| err(format!("unknown rollback action `{}`", r.action)))?;
            let p = r
                .params
                .iter()
                .map(|(k, v)| Ok((k.clone(), tpl(v)?)))
                .collect::<Result<BTreeMap<_, _>, CompileError>>()?;
            Some((k, p))
        }
        None => kind.undo().map(|u| (u, BTreeMap::new())),
    };
    let stage = s.stage.clone().unwrap_or(StageSpec {
        canary: 1,
        batch_size: 1,
    });
    if stage.canary == 0 || stage.batch_size == 0 {
        return Err(err(
            "stage.canary and stage.batch_size must be at least 1".into()
        ));
    }
    if s.stage.is_some() && s.fan_out.is_none() {
        return Err(err(
            "stage needs fan_out (a single target has nothing to stage)".into(),
        ));
    }
    Ok(Step {
        kind,
        responder: s.responder,
        connector: s.connector.clone(),
        target,
        fan_out: s.fan_out,
        params,
        risk: s.risk,
        ttl_secs: s.ttl_secs,
        verify,
        rollback,
        stage,
        line,
    })
}

/// Compiles one playbook.
pub fn compile(spec: &PlaybookSpec, path: &str, line: u64) -> Result<Playbook, CompileError> {
    let err = |message: String| CompileError {
        path: path.to_owned(),
        line,
        message,
    };
    if spec.id.is_empty() {
        return Err(err("a playbook needs an id".into()));
    }
    if spec.steps.is_empty() && !spec.escalate {
        return Err(err(format!(
            "playbook `{}` has no steps (give steps, or escalate: true)",
            spec.id
        )));
    }
    if let Some(c) = spec.matcher.confidence_at_least
        && !(0.0..=1.0).contains(&c)
    {
        return Err(err("confidence_at_least is between 0 and 1".into()));
    }
    let steps = spec
        .steps
        .iter()
        .map(|s| compile_step(&s.value, s.line, path))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Playbook {
        id: spec.id.clone(),
        title: spec.title.clone(),
        matcher: spec.matcher.clone(),
        escalate: spec.escalate,
        steps,
        path: path.to_owned(),
        line,
    })
}

/// Parses and compiles a playbook file's text.
pub fn load_str(text: &str, path: &str) -> Result<Vec<Playbook>, CompileError> {
    let file: PlaybookFile = serde_saphyr::from_str(text).map_err(|e| CompileError {
        path: path.to_owned(),
        line: e.location().map_or(0, |l| l.line()),
        message: crate::detect::first_line(&e.to_string()),
    })?;
    if file.version != 1 {
        return Err(CompileError {
            path: path.to_owned(),
            line: 1,
            message: format!(
                "unsupported playbook file version {} (expected 1)",
                file.version
            ),
        });
    }
    file.playbooks
        .iter()
        .map(|p| compile(&p.value, path, p.line))
        .collect()
}

/// Loads every playbook file under the given folders or files, in order;
/// all errors are returned, not only the first.
pub fn load_paths(paths: &[String]) -> Result<Vec<Playbook>, Vec<CompileError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let path = Path::new(p);
        let files = if path.is_file() {
            Ok(vec![path.to_path_buf()])
        } else {
            crate::detect::detector_files(path)
        };
        let files = match files {
            Ok(f) => f,
            Err(e) => {
                errors.push(CompileError {
                    path: p.clone(),
                    line: 0,
                    message: format!("cannot read playbooks: {e}"),
                });
                continue;
            }
        };
        for f in files {
            let name = f.display().to_string();
            match std::fs::read_to_string(&f) {
                Ok(text) => match load_str(&text, &name) {
                    Ok(p) => out.extend(p),
                    Err(e) => errors.push(e),
                },
                Err(e) => errors.push(CompileError {
                    path: name,
                    line: 0,
                    message: format!("cannot read: {e}"),
                }),
            }
        }
    }
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for p in &out {
        if let Some(prev) = ids.insert(p.id.clone(), format!("{}:{}", p.path, p.line)) {
            errors.push(CompileError {
                path: p.path.clone(),
                line: p.line,
                message: format!("duplicate playbook id `{}` (also at {prev})", p.id),
            });
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// What a playbook's match sees beyond the finding.
pub struct MatchInput<'a> {
    pub finding: &'a Finding,
    /// Tags of the assets the finding concerns.
    pub tags: &'a [String],
    pub priority: f64,
}

impl Playbook {
    pub fn admits(&self, m: &MatchInput) -> bool {
        let f = m.finding;
        let c = &self.matcher;
        let within = |list: &Option<Vec<String>>, v: &str| {
            list.as_ref().is_none_or(|l| l.iter().any(|x| x == v))
        };
        let statuses = c
            .status
            .as_deref()
            .unwrap_or(&[Status::Open, Status::Updated]);
        statuses.contains(&f.status)
            && c.domain.as_ref().is_none_or(|d| d.contains(&f.domain))
            && within(&c.classification, &f.classification)
            && within(&c.detector, &f.detector.id)
            && c.severity_at_least.is_none_or(|s| f.severity >= s)
            && c.confidence_at_least.is_none_or(|x| f.confidence >= x)
            && c.offender_type
                .as_ref()
                .is_none_or(|t| t.contains(&f.offender.kind))
            && c.not_offenders
                .as_ref()
                .is_none_or(|n| !n.contains(&f.offender.value))
            && c.asset_tags
                .as_ref()
                .is_none_or(|t| t.iter().any(|x| m.tags.contains(x)))
            && c.not_asset_tags
                .as_ref()
                .is_none_or(|t| !t.iter().any(|x| m.tags.contains(x)))
            && c.priority_at_least.is_none_or(|p| m.priority >= p)
    }
}

/// The first playbook that admits the input.
pub fn first_match<'a>(playbooks: &'a [Playbook], m: &MatchInput) -> Option<&'a Playbook> {
    playbooks.iter().find(|p| p.admits(m))
}

/// A step made concrete for one finding: what to do, to what.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub playbook_id: String,
    pub step: usize,
    pub kind: ActionKind,
    pub responder: Domain,
    pub connector: Option<String>,
    pub target: String,
    pub params: BTreeMap<String, String>,
    pub risk: Risk,
    pub ttl_secs: Option<u64>,
    /// Position in a staged fan-out (0 is the canary stage).
    pub stage: u32,
}

/// Values of a finding and its incident, for playbook templates.
pub struct FindingValues<'a> {
    pub finding: &'a Finding,
    pub incident_id: &'a str,
}

impl Values for FindingValues<'_> {
    fn value(&self, var: &Var) -> Option<String> {
        let f = self.finding;
        let m = &f.metrics;
        Some(match var {
            Var::Offender => f.offender.value.clone(),
            Var::OffenderType => offender_type(f.offender.kind).into(),
            Var::Detector => f.detector.id.clone(),
            Var::FindingId => f.finding_id.clone(),
            Var::IncidentId => self.incident_id.to_owned(),
            Var::Domain => f.domain.as_str().into(),
            Var::Classification => f.classification.clone(),
            Var::Severity => severity_str(f.severity).into(),
            Var::Context(k) => return f.context.get(k).filter(|v| !v.is_empty()).cloned(),
            Var::Metric(k) => match k.as_str() {
                "event_count" => m.event_count.to_string(),
                "unique_targets" => m.unique_targets.to_string(),
                "success_count" => m.success_count.to_string(),
                "failure_count" => m.failure_count.to_string(),
                "duration_sec" => m.duration_sec.to_string(),
                "value" => m.value.to_string(),
                "threshold" => m.threshold.to_string(),
                _ => return None,
            },
            Var::Target | Var::Param(_) | Var::Secret | Var::ActionId => return None,
        })
    }
}

pub fn offender_type(t: OffenderType) -> &'static str {
    t.as_str()
}

pub fn severity_str(s: Severity) -> &'static str {
    match s {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// The plans of one playbook's steps for a finding; a step whose template
/// has no value or whose target fails its check is an error with the
/// reason (recorded as a skipped action by the caller).
pub fn plan(
    pb: &Playbook,
    values: &FindingValues,
    instances: &[String],
) -> Vec<Result<Plan, (usize, ActionKind, String)>> {
    let mut out = Vec::new();
    for (i, s) in pb.steps.iter().enumerate() {
        let responder = s
            .responder
            .unwrap_or_else(|| s.kind.responder_for(values.finding.domain));
        let params: Result<BTreeMap<String, String>, String> = s
            .params
            .iter()
            .map(|(k, t)| Ok((k.clone(), t.render(values)?)))
            .collect();
        let params = match params {
            Ok(p) => p,
            Err(e) => {
                out.push(Err((i, s.kind, format!("template: {e}"))));
                continue;
            }
        };
        let targets: Vec<(String, u32)> = match s.fan_out {
            None => match s.target.render(values) {
                Ok(t) => vec![(t, 0)],
                Err(e) => {
                    out.push(Err((i, s.kind, format!("template: {e}"))));
                    continue;
                }
            },
            Some(FanOut::ServiceInstances) => {
                if instances.is_empty() {
                    out.push(Err((
                        i,
                        s.kind,
                        "fan_out: the finding's service has no instances in assets.services".into(),
                    )));
                    continue;
                }
                instances
                    .iter()
                    .enumerate()
                    .map(|(n, t)| (t.clone(), stage_of(n, &s.stage)))
                    .collect()
            }
        };
        for (t, stage) in targets {
            match check_target(s.kind.target_kind(), &t) {
                Ok(target) => out.push(Ok(Plan {
                    playbook_id: pb.id.clone(),
                    step: i,
                    kind: s.kind,
                    responder,
                    connector: s.connector.clone(),
                    target,
                    params: params.clone(),
                    risk: s.risk,
                    ttl_secs: s.ttl_secs,
                    stage,
                })),
                Err(e) => out.push(Err((i, s.kind, format!("target: {e}")))),
            }
        }
    }
    out
}

/// The stage of the `n`th target: 0 for the canary, then batches.
fn stage_of(n: usize, s: &StageSpec) -> u32 {
    if n < s.canary {
        0
    } else {
        (1 + (n - s.canary) / s.batch_size) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "version: 1
playbooks:
  - id: block-brute-force
    title: Block brute-force sources
    match:
      classification: [brute_force]
      offender_type: [ip]
    steps:
      - action: block_ip
        risk: medium
        ttl_secs: 3600
  - id: catch-all
    title: Catch all
    match: {}
    steps:
      - action: restart_service
        target: '{context.service}'
        risk: high
";

    fn finding() -> Finding {
        serde_json::from_str(include_str!("../../tests/data/finding.json")).unwrap()
    }

    #[test]
    fn first_match_wins_and_plans_are_rendered() {
        let pbs = load_str(FILE, "p.yaml").unwrap();
        let mut f = finding();
        f.classification = "brute_force".into();
        f.offender.kind = OffenderType::Ip;
        f.offender.value = "203.0.113.9".into();
        f.status = Status::Open;
        let m = MatchInput {
            finding: &f,
            tags: &[],
            priority: 50.0,
        };
        let pb = first_match(&pbs, &m).unwrap();
        assert_eq!(pb.id, "block-brute-force");
        let plans = plan(
            pb,
            &FindingValues {
                finding: &f,
                incident_id: "i-1",
            },
            &[],
        );
        let p = plans[0].as_ref().unwrap();
        assert_eq!(
            (p.kind, p.target.as_str()),
            (ActionKind::BlockIp, "203.0.113.9")
        );
        assert_eq!(
            pbs[0].steps[0].rollback.as_ref().unwrap().0,
            ActionKind::UnblockIp
        );
        // a high-risk step always waits for a person to confirm its verification
        assert!(pbs[1].steps[0].verify.confirm);
    }

    #[test]
    fn unknown_actions_and_names_are_refused_with_their_line() {
        let bad = FILE.replace("action: block_ip", "action: nuke_site");
        let e = load_str(&bad, "p.yaml").unwrap_err();
        assert_eq!(e.line, 9, "{e}");
        assert!(e.message.contains("unknown action `nuke_site`"), "{e}");
        let bad = FILE.replace("'{context.service}'", "'{servce}'");
        let e = load_str(&bad, "p.yaml").unwrap_err();
        assert_eq!(e.line, 16, "{e}");
        let bad = FILE.replace("        ttl_secs: 3600\n", "");
        let e = load_str(&bad, "p.yaml").unwrap_err();
        assert!(e.message.contains("ttl_secs"), "{e}");
    }

    #[test]
    fn a_hostile_offender_never_becomes_a_target() {
        let pbs = load_str(FILE, "p.yaml").unwrap();
        let mut f = finding();
        f.classification = "brute_force".into();
        f.offender.kind = OffenderType::Ip;
        f.offender.value = "1.2.3.4\ndeny all".into();
        let plans = plan(
            &pbs[0],
            &FindingValues {
                finding: &f,
                incident_id: "i",
            },
            &[],
        );
        assert!(plans[0].as_ref().unwrap_err().2.contains("not an IP"));
    }

    #[test]
    fn fanned_out_steps_are_staged() {
        let s = StageSpec {
            canary: 1,
            batch_size: 2,
        };
        let stages: Vec<u32> = (0..6).map(|n| stage_of(n, &s)).collect();
        assert_eq!(stages, [0, 1, 1, 2, 2, 3]);
    }
}
