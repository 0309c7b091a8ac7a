//! The safety policy: checked before every action is proposed and again
//! before it executes, and it always wins over playbooks. Each check gives
//! a decision with its reason, which is recorded whatever it is.
//!
//! ```text
//! plan ─> protected? ─> blackout? ─> breaker open? ─> loop? ─> rate limit?
//!      ─> per-target limit? ─> blast radius? ─> mode by risk (observe |
//!         approve | auto; auto outside maintenance windows waits for a person)
//! ```
//! Counters (rates, blast radius, loops) are kept by [`PolicyState`] from
//! what was admitted and executed; breakers stay open until an admin resets
//! them.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{Datelike, TimeZone, Timelike};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::catalogue::{ActionKind, TargetKind};
use super::playbook::{Plan, Risk};
use crate::flow::Peers;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Plan and record only.
    Observe,
    /// Wait for a person.
    Approve,
    Auto,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Approve => "approve",
            Mode::Auto => "auto",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// File format version when the policy is its own file; 1.
    #[serde(default)]
    pub version: Option<u32>,
    /// The mode of each risk level; absent levels observe.
    #[serde(default)]
    pub modes: ModesSpec,
    /// Everything observes, whatever the modes say (simulation).
    #[serde(default)]
    pub dry_run: bool,
    /// A pending approval expires this long after it is asked for, and an
    /// expired action never runs.
    #[serde(default = "default_expiry")]
    pub approval_expiry_secs: u64,
    #[serde(default)]
    pub protected: ProtectedSpec,
    /// When automatic actions may run; outside them they wait for a person.
    /// None given: any time.
    #[serde(default)]
    pub maintenance_windows: Vec<WindowSpec>,
    /// When no action may run at all.
    #[serde(default)]
    pub blackout_windows: Vec<WindowSpec>,
    /// At most `max` actions of a kind per `per_secs`.
    #[serde(default)]
    pub rate_limits: Vec<RateLimitSpec>,
    /// At most `max` actions of one kind on one target per `per_secs`.
    #[serde(default = "default_per_target")]
    pub per_target: LimitSpec,
    #[serde(default)]
    pub blast_radius: Vec<BlastRadiusSpec>,
    #[serde(default)]
    pub circuit_breaker: BreakerSpec,
    #[serde(default)]
    pub loop_detection: LoopSpec,
}

fn default_expiry() -> u64 {
    900
}
fn default_per_target() -> LimitSpec {
    LimitSpec {
        max: 3,
        per_secs: 3600,
    }
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            version: None,
            modes: ModesSpec::default(),
            dry_run: false,
            approval_expiry_secs: default_expiry(),
            protected: ProtectedSpec::default(),
            maintenance_windows: Vec::new(),
            blackout_windows: Vec::new(),
            rate_limits: Vec::new(),
            per_target: default_per_target(),
            blast_radius: Vec::new(),
            circuit_breaker: BreakerSpec::default(),
            loop_detection: LoopSpec::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModesSpec {
    #[serde(default = "observe")]
    pub low: Mode,
    #[serde(default = "observe")]
    pub medium: Mode,
    #[serde(default = "observe")]
    pub high: Mode,
    #[serde(default = "observe")]
    pub critical: Mode,
}

fn observe() -> Mode {
    Mode::Observe
}

impl Default for ModesSpec {
    fn default() -> Self {
        ModesSpec {
            low: Mode::Observe,
            medium: Mode::Observe,
            high: Mode::Observe,
            critical: Mode::Observe,
        }
    }
}

/// What no action may touch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProtectedSpec {
    #[serde(default)]
    pub cidrs: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
    /// The pipeline's own hosts (addresses or CIDRs); the addresses of API
    /// clients, approvers and log shippers are added as they are seen.
    #[serde(default)]
    pub self_addresses: Vec<String>,
}

/// A recurring window (days and hours in a time zone) or a one-off range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    #[serde(default)]
    pub name: Option<String>,
    /// mon, tue, …, sun; absent: every day.
    #[serde(default)]
    pub days: Option<Vec<String>>,
    /// `HH:MM`, local to `timezone`; with `end`, a daily window (it may
    /// cross midnight).
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    /// IANA name (`Europe/Berlin`); default UTC.
    #[serde(default = "utc")]
    pub timezone: String,
    /// One-off: from this instant (RFC 3339)...
    #[serde(default)]
    pub from: Option<String>,
    /// ...until this one.
    #[serde(default)]
    pub until: Option<String>,
}

fn utc() -> String {
    "UTC".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    pub action: String,
    pub max: u32,
    pub per_secs: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    pub max: u32,
    pub per_secs: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlastRadiusSpec {
    pub action: String,
    /// Distinct targets of this kind per window.
    #[serde(default)]
    pub max_targets: Option<u32>,
    #[serde(default = "default_blast_window")]
    pub per_secs: u64,
    /// At most this share (0 to 100) of a service's instances at once.
    #[serde(default)]
    pub max_percent_of_service: Option<f64>,
}

fn default_blast_window() -> u64 {
    3600
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerSpec {
    /// Failed executions in a row that open a connector's breaker.
    #[serde(default = "three")]
    pub max_failures: u32,
    /// Failed verifications in a row that open it.
    #[serde(default = "two")]
    pub max_failed_verifications: u32,
}

fn three() -> u32 {
    3
}
fn two() -> u32 {
    2
}

impl Default for BreakerSpec {
    fn default() -> Self {
        BreakerSpec {
            max_failures: 3,
            max_failed_verifications: 2,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoopSpec {
    /// Executions of one kind on one target within the window that mean the
    /// action is feeding its own trigger.
    #[serde(default = "three")]
    pub max_repeats: u32,
    #[serde(default = "default_loop_window")]
    pub window_secs: u64,
}

fn default_loop_window() -> u64 {
    3600
}

impl Default for LoopSpec {
    fn default() -> Self {
        LoopSpec {
            max_repeats: 3,
            window_secs: default_loop_window(),
        }
    }
}

/// A compiled window.
/// A compiled [`WindowSpec`] (also the quiet hours of notifications).
#[derive(Clone, Debug)]
pub struct Window {
    pub name: String,
    days: Option<Vec<chrono::Weekday>>,
    daily: Option<(u32, u32)>,
    tz: chrono_tz::Tz,
    range: Option<(i64, i64)>,
}

impl Window {
    pub fn compile(w: &WindowSpec) -> Result<Window, String> {
        let tz = chrono_tz::Tz::from_str(&w.timezone)
            .map_err(|_| format!("unknown time zone {:?}", w.timezone))?;
        let days = w
            .days
            .as_ref()
            .map(|d| {
                d.iter()
                    .map(|x| {
                        chrono::Weekday::from_str(x)
                            .map_err(|_| format!("{x:?} is not a day (mon, tue, …, sun)"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let minutes = |s: &str| -> Result<u32, String> {
            let (h, m) = s
                .split_once(':')
                .ok_or_else(|| format!("{s:?} is not HH:MM"))?;
            let (h, m): (u32, u32) = (
                h.parse().map_err(|_| format!("{s:?} is not HH:MM"))?,
                m.parse().map_err(|_| format!("{s:?} is not HH:MM"))?,
            );
            if h > 24 || m > 59 || (h == 24 && m > 0) {
                return Err(format!("{s:?} is not a time of day"));
            }
            Ok(h * 60 + m)
        };
        let daily = match (&w.start, &w.end) {
            (Some(a), Some(b)) => Some((minutes(a)?, minutes(b)?)),
            (None, None) => None,
            _ => return Err("a daily window needs both start and end".into()),
        };
        let instant = |s: &str| {
            crate::time::parse_rfc3339(s.as_bytes())
                .map(|x| x.0)
                .ok_or_else(|| format!("{s:?} is not an RFC 3339 time"))
        };
        let range = match (&w.from, &w.until) {
            (Some(a), Some(b)) => Some((instant(a)?, instant(b)?)),
            (None, None) => None,
            _ => return Err("a one-off window needs both from and until".into()),
        };
        if daily.is_none() && range.is_none() && days.is_none() {
            return Err("a window needs days, start and end, or from and until".into());
        }
        Ok(Window {
            name: w.name.clone().unwrap_or_else(|| describe_window(w)),
            days,
            daily,
            tz,
            range,
        })
    }

    pub fn contains(&self, now_ms: i64) -> bool {
        if let Some((a, b)) = self.range
            && !(a..b).contains(&now_ms)
        {
            return false;
        }
        let Some(local) = self.tz.timestamp_millis_opt(now_ms).single() else {
            return false;
        };
        let minute = local.hour() * 60 + local.minute();
        let mut day = local.weekday();
        let in_hours = match self.daily {
            None => true,
            Some((a, b)) if a <= b => (a..b).contains(&minute),
            Some((a, b)) => {
                // crosses midnight: the early part belongs to the previous day
                if minute < b {
                    day = day.pred();
                    true
                } else {
                    minute >= a
                }
            }
        };
        in_hours && self.days.as_ref().is_none_or(|d| d.contains(&day))
    }
}

fn describe_window(w: &WindowSpec) -> String {
    match (&w.from, &w.until, &w.start, &w.end) {
        (Some(a), Some(b), _, _) => format!("{a}..{b}"),
        (_, _, Some(a), Some(b)) => format!(
            "{}{a}-{b} {}",
            w.days
                .as_ref()
                .map(|d| format!("{} ", d.join(",")))
                .unwrap_or_default(),
            w.timezone
        ),
        _ => format!(
            "{} {}",
            w.days.as_ref().map(|d| d.join(",")).unwrap_or_default(),
            w.timezone
        ),
    }
}

/// A compiled policy.
#[derive(Clone)]
pub struct Policy {
    pub spec: PolicySpec,
    cidrs: Vec<(ipnet::IpNet, String)>,
    self_nets: Vec<ipnet::IpNet>,
    maintenance: Vec<Window>,
    blackout: Vec<Window>,
    rate: HashMap<ActionKind, LimitSpec>,
    blast: HashMap<ActionKind, BlastRadiusSpec>,
    /// Addresses learned at run time that must never be acted on (log
    /// shippers, Alertmanager, API clients and approvers); shared with the
    /// pipeline's ingress and API.
    pub guarded: Arc<Peers>,
}

/// What the policy decides for one plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Not done, and why.
    Skip(String),
    /// A loop: skipped, and the incident escalates.
    Loop(String),
    /// Done in this mode, and why that mode.
    Go(Mode, String),
}

fn net(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not an address or CIDR block"))
}

impl Policy {
    pub fn compile(spec: PolicySpec) -> Result<Policy, String> {
        if let Some(v) = spec.version
            && v != 1
        {
            return Err(format!("unsupported policy file version {v} (expected 1)"));
        }
        let cidrs = spec
            .protected
            .cidrs
            .iter()
            .map(|c| Ok((net(c)?, c.clone())))
            .collect::<Result<Vec<_>, String>>()?;
        let self_nets = spec
            .protected
            .self_addresses
            .iter()
            .map(|c| net(c))
            .collect::<Result<Vec<_>, String>>()?;
        let windows = |ws: &[WindowSpec]| -> Result<Vec<Window>, String> {
            ws.iter().map(Window::compile).collect()
        };
        let kind = |s: &str| {
            ActionKind::parse(s).ok_or_else(|| format!("unknown action `{s}` in the policy"))
        };
        let mut rate = HashMap::new();
        for r in &spec.rate_limits {
            if r.per_secs == 0 {
                return Err("rate_limits: per_secs must be at least 1".into());
            }
            rate.insert(
                kind(&r.action)?,
                LimitSpec {
                    max: r.max,
                    per_secs: r.per_secs,
                },
            );
        }
        let mut blast = HashMap::new();
        for b in &spec.blast_radius {
            if let Some(p) = b.max_percent_of_service
                && !(0.0..=100.0).contains(&p)
            {
                return Err("blast_radius: max_percent_of_service is between 0 and 100".into());
            }
            blast.insert(kind(&b.action)?, b.clone());
        }
        if spec.approval_expiry_secs == 0 {
            return Err("approval_expiry_secs must be at least 1".into());
        }
        Ok(Policy {
            cidrs,
            self_nets,
            maintenance: windows(&spec.maintenance_windows)?,
            blackout: windows(&spec.blackout_windows)?,
            rate,
            blast,
            guarded: Arc::new(Peers::default()),
            spec,
        })
    }

    /// The policy of replay and of a pipeline without one: observe all.
    pub fn observe_only() -> Policy {
        Policy::compile(PolicySpec::default()).unwrap_or_else(|_| unreachable!())
    }

    pub fn mode_of(&self, risk: Risk) -> Mode {
        let m = &self.spec.modes;
        match risk {
            Risk::Low => m.low,
            Risk::Medium => m.medium,
            Risk::High => m.high,
            Risk::Critical => m.critical,
        }
    }

    /// Why `plan` may not touch its target, if it may not.
    pub fn protected(&self, plan: &Plan) -> Option<String> {
        let t = &plan.target;
        match plan.kind.target_kind() {
            TargetKind::Ip => {
                let target = net(t).ok()?;
                for (n, text) in &self.cidrs {
                    if n.contains(&target.network()) || target.contains(&n.network()) {
                        return Some(format!("{t} is protected by protected.cidrs {text}"));
                    }
                }
                for n in &self.self_nets {
                    if n.contains(&target.network()) || target.contains(&n.network()) {
                        return Some(format!(
                            "{t} is one of the pipeline's own hosts (protected.self_addresses {n})"
                        ));
                    }
                }
                if let Some((ip, via)) = self.guarded.find(|ip| target.contains(ip)) {
                    return Some(
                        if ip == target.addr() && target.prefix_len() == target.max_prefix_len() {
                            format!("{t} sends to or steers this pipeline ({via})")
                        } else {
                            format!(
                                "{t} holds {ip}, which sends to or steers this pipeline ({via})"
                            )
                        },
                    );
                }
                None
            }
            TargetKind::User => self
                .spec
                .protected
                .users
                .iter()
                .any(|u| u == t)
                .then(|| format!("{t} is protected by protected.users")),
            TargetKind::Name => {
                if self.spec.protected.services.iter().any(|s| s == t) {
                    Some(format!("{t} is protected by protected.services"))
                } else if self.spec.protected.hosts.iter().any(|h| h == t) {
                    Some(format!("{t} is protected by protected.hosts"))
                } else {
                    None
                }
            }
        }
    }

    /// Also refuses hosts and services the finding names in its context.
    pub fn protected_context(&self, context: &BTreeMap<String, String>) -> Option<String> {
        let p = &self.spec.protected;
        for (k, v) in context {
            if (k == "host" && p.hosts.contains(v)) || (k == "service" && p.services.contains(v)) {
                return Some(format!("{k} {v} is protected by protected.{k}s"));
            }
        }
        None
    }

    /// The verdict for a plan at `now_ms`.
    pub fn check(
        &self,
        plan: &Plan,
        context: &BTreeMap<String, String>,
        state: &PolicyState,
        connector: &str,
        instances: usize,
        now_ms: i64,
    ) -> Verdict {
        if let Some(why) = self
            .protected(plan)
            .or_else(|| self.protected_context(context))
        {
            return Verdict::Skip(why);
        }
        if let Some(w) = self.blackout.iter().find(|w| w.contains(now_ms)) {
            return Verdict::Skip(format!("blackout window {} is in force", w.name));
        }
        if state.breaker_open(connector) {
            return Verdict::Skip(format!(
                "the circuit breaker of connector {connector} is open (an admin resets it)"
            ));
        }
        let loops = &self.spec.loop_detection;
        let repeats = state.executions(
            plan.kind,
            &plan.target,
            now_ms - loops.window_secs as i64 * 1000,
        );
        if repeats >= loops.max_repeats as usize {
            return Verdict::Loop(format!(
                "loop: {} on {} already ran {repeats} times in {}s, and its trigger keeps coming back",
                plan.kind.as_str(),
                plan.target,
                loops.window_secs
            ));
        }
        if let Some(r) = self.rate.get(&plan.kind) {
            let n = state.admitted(plan.kind, now_ms - r.per_secs as i64 * 1000);
            if n >= r.max as usize {
                return Verdict::Skip(format!(
                    "rate limit: {n} {} actions in the last {}s (rate_limits max {})",
                    plan.kind.as_str(),
                    r.per_secs,
                    r.max
                ));
            }
        }
        let pt = &self.spec.per_target;
        let n = state.admitted_on(plan.kind, &plan.target, now_ms - pt.per_secs as i64 * 1000);
        if n >= pt.max as usize {
            return Verdict::Skip(format!(
                "rate limit: {} on {} already {n} times in {}s (per_target max {})",
                plan.kind.as_str(),
                plan.target,
                pt.per_secs,
                pt.max
            ));
        }
        if let Some(b) = self.blast.get(&plan.kind) {
            let since = now_ms - b.per_secs as i64 * 1000;
            let targets = state.distinct_targets(plan.kind, since, &plan.target);
            if let Some(max) = b.max_targets
                && targets > max as usize
            {
                return Verdict::Skip(format!(
                    "blast radius: {} would reach {targets} targets in {}s (max_targets {max})",
                    plan.kind.as_str(),
                    b.per_secs
                ));
            }
            if let Some(p) = b.max_percent_of_service
                && instances > 0
                && targets as f64 * 100.0 / instances as f64 > p
            {
                return Verdict::Skip(format!(
                    "blast radius: {targets} of the service's {instances} instances is over {p}%"
                ));
            }
        }
        let mode = self.mode_of(plan.risk);
        if self.spec.dry_run {
            return Verdict::Go(
                Mode::Observe,
                "dry run: the policy simulates every action".into(),
            );
        }
        let why = format!("{} risk is {} by policy", plan.risk.as_str(), mode.as_str());
        if mode == Mode::Auto
            && !self.maintenance.is_empty()
            && !self.maintenance.iter().any(|w| w.contains(now_ms))
        {
            return Verdict::Go(
                Mode::Approve,
                format!("{why}, but outside every maintenance window: a person approves"),
            );
        }
        Verdict::Go(mode, why)
    }
}

/// What the policy remembers: admissions and executions per kind and
/// target, and breaker counts per connector. Bounded by the windows: old
/// entries are pruned as new ones arrive.
#[derive(Default, Clone, Serialize, Deserialize)]
pub struct PolicyState {
    /// (at, kind, target) of admitted actions, oldest first.
    admitted: VecDeque<(i64, ActionKind, String)>,
    executed: VecDeque<(i64, ActionKind, String)>,
    breakers: BTreeMap<String, Breaker>,
}

#[derive(Default, Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Breaker {
    pub failures: u32,
    pub failed_verifications: u32,
    pub open: bool,
    pub reason: String,
}

/// Entries older than this are never looked at by any window.
const KEEP_MS: i64 = 7 * 86_400_000;

impl PolicyState {
    pub fn admit(&mut self, kind: ActionKind, target: &str, now_ms: i64) {
        self.admitted.push_back((now_ms, kind, target.to_owned()));
        prune(&mut self.admitted, now_ms);
    }

    /// Takes back the latest admission of (kind, target), so an action can
    /// be checked again without counting itself.
    pub fn forget_admission(&mut self, kind: ActionKind, target: &str) {
        if let Some(i) = self
            .admitted
            .iter()
            .rposition(|(_, k, x)| *k == kind && x == target)
        {
            self.admitted.remove(i);
        }
    }

    pub fn executed(&mut self, kind: ActionKind, target: &str, now_ms: i64) {
        self.executed.push_back((now_ms, kind, target.to_owned()));
        prune(&mut self.executed, now_ms);
    }

    fn admitted(&self, kind: ActionKind, since: i64) -> usize {
        self.admitted
            .iter()
            .filter(|(t, k, _)| *t >= since && *k == kind)
            .count()
    }

    fn admitted_on(&self, kind: ActionKind, target: &str, since: i64) -> usize {
        self.admitted
            .iter()
            .filter(|(t, k, x)| *t >= since && *k == kind && x == target)
            .count()
    }

    fn executions(&self, kind: ActionKind, target: &str, since: i64) -> usize {
        self.executed
            .iter()
            .filter(|(t, k, x)| *t >= since && *k == kind && x == target)
            .count()
    }

    /// Distinct targets of `kind` since `since`, counting `also`.
    fn distinct_targets(&self, kind: ActionKind, since: i64, also: &str) -> usize {
        let mut set: HashSet<&str> = self
            .admitted
            .iter()
            .filter(|(t, k, _)| *t >= since && *k == kind)
            .map(|(_, _, x)| x.as_str())
            .collect();
        set.insert(also);
        set.len()
    }

    pub fn breaker_open(&self, connector: &str) -> bool {
        self.breakers.get(connector).is_some_and(|b| b.open)
    }

    pub fn breakers(&self) -> &BTreeMap<String, Breaker> {
        &self.breakers
    }

    /// Counts an execution's outcome; returns the reason when this opened
    /// the breaker.
    pub fn execution(&mut self, connector: &str, ok: bool, spec: &BreakerSpec) -> Option<String> {
        let b = self.breakers.entry(connector.to_owned()).or_default();
        if ok {
            b.failures = 0;
            return None;
        }
        b.failures += 1;
        if !b.open && b.failures >= spec.max_failures {
            b.open = true;
            b.reason = format!("{} failed executions in a row", b.failures);
            return Some(b.reason.clone());
        }
        None
    }

    pub fn verification(
        &mut self,
        connector: &str,
        ok: bool,
        spec: &BreakerSpec,
    ) -> Option<String> {
        let b = self.breakers.entry(connector.to_owned()).or_default();
        if ok {
            b.failed_verifications = 0;
            return None;
        }
        b.failed_verifications += 1;
        if !b.open && b.failed_verifications >= spec.max_failed_verifications {
            b.open = true;
            b.reason = format!("{} failed verifications in a row", b.failed_verifications);
            return Some(b.reason.clone());
        }
        None
    }

    /// Closes a breaker (an admin's reset); false when it was not open.
    pub fn reset(&mut self, connector: &str) -> bool {
        match self.breakers.get_mut(connector) {
            Some(b) if b.open => {
                *b = Breaker::default();
                true
            }
            _ => false,
        }
    }
}

fn prune(q: &mut VecDeque<(i64, ActionKind, String)>, now_ms: i64) {
    while q.front().is_some_and(|(t, _, _)| *t < now_ms - KEEP_MS) {
        q.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(kind: ActionKind, target: &str, risk: Risk) -> Plan {
        Plan {
            playbook_id: "p".into(),
            step: 0,
            kind,
            responder: crate::finding::Domain::Http,
            connector: None,
            target: target.into(),
            params: BTreeMap::new(),
            risk,
            ttl_secs: Some(60),
            stage: 0,
        }
    }

    fn policy(yaml: &str) -> Policy {
        Policy::compile(serde_saphyr::from_str(yaml).unwrap()).unwrap()
    }

    const NOW: i64 = 1_780_272_000_000; // 2026-06-01T00:00:00Z, a Monday

    #[test]
    fn protected_targets_are_skipped_with_the_rule_that_protects_them() {
        let p = policy("modes: {medium: auto}\nprotected: {cidrs: [10.0.0.0/8], users: [root]}\n");
        let s = PolicyState::default();
        let ctx = BTreeMap::new();
        assert_eq!(
            p.check(
                &plan(ActionKind::BlockIp, "10.0.0.5", Risk::Medium),
                &ctx,
                &s,
                "edge",
                0,
                NOW
            ),
            Verdict::Skip("10.0.0.5 is protected by protected.cidrs 10.0.0.0/8".into())
        );
        // a block wider than the protected range would cover it too
        assert!(matches!(
            p.check(
                &plan(ActionKind::BlockIp, "10.0.0.0/4", Risk::Medium),
                &ctx,
                &s,
                "edge",
                0,
                NOW
            ),
            Verdict::Skip(_)
        ));
        assert!(matches!(
            p.check(
                &plan(ActionKind::LockAccount, "root", Risk::Medium),
                &ctx,
                &s,
                "idp",
                0,
                NOW
            ),
            Verdict::Skip(_)
        ));
        p.guarded
            .add("192.0.2.7".parse().unwrap(), "syslog source edge");
        assert!(matches!(
            p.check(
                &plan(ActionKind::BlockIp, "192.0.2.7", Risk::Medium),
                &ctx,
                &s,
                "edge",
                0,
                NOW
            ),
            Verdict::Skip(_)
        ));
        assert!(matches!(
            p.check(
                &plan(ActionKind::BlockIp, "203.0.113.1", Risk::Medium),
                &ctx,
                &s,
                "edge",
                0,
                NOW
            ),
            Verdict::Go(Mode::Auto, _)
        ));
    }

    #[test]
    fn windows_follow_their_time_zone_and_cross_midnight() {
        let w = Window::compile(&WindowSpec {
            name: None,
            days: Some(vec!["sun".into()]),
            start: Some("23:00".into()),
            end: Some("03:00".into()),
            timezone: "Europe/Berlin".into(),
            from: None,
            until: None,
        })
        .unwrap();
        // Monday 00:00 UTC is Monday 02:00 in Berlin: the Sunday-night window
        assert!(w.contains(NOW));
        assert!(!w.contains(NOW + 2 * 3_600_000));
        let p = policy(
            "modes: {low: auto}\nmaintenance_windows: [{days: [sat], start: '01:00', end: '02:00'}]\nblackout_windows: [{from: '2026-06-01T00:00:00Z', until: '2026-06-01T01:00:00Z', name: freeze}]\n",
        );
        let s = PolicyState::default();
        let ctx = BTreeMap::new();
        let v = p.check(
            &plan(ActionKind::ClearCache, "cdn", Risk::Low),
            &ctx,
            &s,
            "c",
            0,
            NOW,
        );
        assert_eq!(
            v,
            Verdict::Skip("blackout window freeze is in force".into())
        );
        let later = NOW + 2 * 3_600_000;
        assert!(matches!(
            p.check(
                &plan(ActionKind::ClearCache, "cdn", Risk::Low),
                &ctx,
                &s,
                "c",
                0,
                later
            ),
            Verdict::Go(Mode::Approve, _)
        ));
    }

    #[test]
    fn limits_breakers_and_loops_stop_actions() {
        let p = policy(
            "modes: {high: approve}\nrate_limits: [{action: block_ip, max: 2, per_secs: 60}]\nblast_radius: [{action: restart_service, max_percent_of_service: 50}]\n",
        );
        let mut s = PolicyState::default();
        let ctx = BTreeMap::new();
        s.admit(ActionKind::BlockIp, "192.0.2.1", NOW);
        s.admit(ActionKind::BlockIp, "192.0.2.2", NOW);
        assert!(matches!(
            p.check(&plan(ActionKind::BlockIp, "192.0.2.3", Risk::High), &ctx, &s, "e", 0, NOW),
            Verdict::Skip(r) if r.starts_with("rate limit")
        ));
        assert!(matches!(
            p.check(
                &plan(ActionKind::BlockIp, "192.0.2.3", Risk::High),
                &ctx,
                &s,
                "e",
                0,
                NOW + 61_000
            ),
            Verdict::Go(Mode::Approve, _)
        ));
        s.admit(ActionKind::RestartService, "web-1", NOW);
        assert!(matches!(
            p.check(
                &plan(ActionKind::RestartService, "web-2", Risk::High),
                &ctx,
                &s,
                "ops",
                4,
                NOW
            ),
            Verdict::Go(..)
        ));
        s.admit(ActionKind::RestartService, "web-2", NOW);
        assert!(matches!(
            p.check(&plan(ActionKind::RestartService, "web-3", Risk::High), &ctx, &s, "ops", 4, NOW),
            Verdict::Skip(r) if r.starts_with("blast radius")
        ));
        let spec = BreakerSpec::default();
        assert!(s.execution("e", false, &spec).is_none());
        assert!(s.execution("e", false, &spec).is_none());
        assert!(s.execution("e", false, &spec).is_some());
        assert!(matches!(
            p.check(&plan(ActionKind::BlockIp, "198.51.100.1", Risk::High), &ctx, &s, "e", 0, NOW + 120_000),
            Verdict::Skip(r) if r.contains("circuit breaker")
        ));
        assert!(s.reset("e"));
        for _ in 0..3 {
            s.executed(ActionKind::BlockIp, "198.51.100.1", NOW);
        }
        assert!(matches!(
            p.check(
                &plan(ActionKind::BlockIp, "198.51.100.1", Risk::High),
                &ctx,
                &s,
                "e",
                0,
                NOW + 120_000
            ),
            Verdict::Loop(_)
        ));
    }
}
