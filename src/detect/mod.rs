//! Detection (SPEC 7): the engine that runs what `detectors/` describes.
//!
//! ```text
//! detectors/<domain>/*.yaml ─> config::DetectorSpec ─> compile ─> Detector
//!                                    (serde, line numbers)   (fields resolved,
//!                                                             automata built)
//! events ─> engine: detectors indexed by dataset ─> match ─> group key ─>
//!           window state (tumbling | sliding | leaky bucket | sequence) ─>
//!           threshold crossed ─> finding open ─> updates (cooldown) ─> resolved
//! ```
//! Compilation does no I/O and everything per-event is prebuilt. The engine
//! runs on event time: per time domain (one per replayed file) the
//! watermark is the newest event time less the allowed lateness.

pub mod config;
pub mod engine;
pub mod eval;
pub mod fixtures;
mod literals;
pub mod matcher;
mod plan;
pub mod sigma;
pub mod window;

use std::path::{Path, PathBuf};

use config::{AggregateKind, DetectorSpec, WindowKind};
use matcher::Matcher;

use crate::event::Field;
use crate::finding::{Domain, OffenderType, Severity};

pub use engine::{Engine, EngineConfig, EngineSnapshot, EngineState, EngineStats};

/// A detector file that cannot be used, with its place.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}:{line}: {message}")]
pub struct CompileError {
    pub path: String,
    pub line: u64,
    pub message: String,
}

/// A compiled detector.
#[derive(Debug, Clone)]
pub struct Detector {
    pub id: String,
    pub revision: u32,
    pub title: String,
    pub domain: Domain,
    pub classification: String,
    pub severity: Severity,
    pub confidence: f64,
    pub attack: Vec<String>,
    pub matcher: Matcher,
    pub resolve_when: Option<Matcher>,
    pub logic: Logic,
    pub group_by: Vec<Field>,
    pub offender_kind: OffenderType,
    pub offender_field: Field,
    pub offender_default: Option<String>,
    pub context: Vec<(String, Field)>,
    /// Fixed context every finding carries (a Sigma rule's id, level, author).
    pub labels: Vec<(String, String)>,
    pub targets_field: Option<Field>,
    pub recommended_actions: Vec<String>,
    pub evidence_max: usize,
    pub cooldown_ms: i64,
    pub resolve_after_ms: i64,
    pub path: String,
    /// The Sigma rule this detector runs (matched by the rule's engine,
    /// not by `matcher`).
    pub sigma: Option<std::sync::Arc<sigma::SigmaRef>>,
}

#[derive(Debug, Clone)]
pub enum Logic {
    Window(WindowLogic),
    Sequence(SequenceLogic),
}

#[derive(Debug, Clone)]
pub struct WindowLogic {
    pub kind: WindowKind,
    pub size_ms: i64,
    pub leak_ms: f64,
    pub aggregate: AggregateKind,
    pub field: Option<Field>,
    pub numerator: Option<Matcher>,
    pub min_events: u64,
    /// An event counts only this long or longer after its key's previous
    /// event (0: every event counts), so a burst counts once.
    pub min_gap_ms: i64,
    pub threshold: f64,
}

#[derive(Debug, Clone)]
pub struct SequenceLogic {
    pub within_ms: i64,
    pub steps: Vec<(String, Matcher, u64)>,
}

/// Compiles a parsed spec; `path` and `line` locate errors.
pub fn compile(spec: &DetectorSpec, path: &str) -> Result<Detector, CompileError> {
    let err = |line: u64, message: String| CompileError {
        path: path.to_owned(),
        line,
        message,
    };
    let field = |line: u64, name: &str| Field::resolve(name).map_err(|m| err(line, m));
    if spec.version != 1 {
        return Err(err(
            1,
            format!(
                "unsupported detector file version {} (expected 1)",
                spec.version
            ),
        ));
    }
    let prefix = format!("{}.", spec.domain.as_str());
    if !spec.id.starts_with(&prefix) {
        return Err(err(
            1,
            format!(
                "detector id `{}` must start with its domain `{prefix}`",
                spec.id
            ),
        ));
    }
    if !(0.0..=1.0).contains(&spec.confidence) {
        return Err(err(
            1,
            format!("confidence {} is outside 0..1", spec.confidence),
        ));
    }
    let matcher = Matcher::compile(&spec.matcher, path)?;
    let (logic, group_by, cooldown, resolve) = match (&spec.window, &spec.sequence) {
        (Some(w), None) => {
            let line = w.line;
            let w = &w.value;
            let size_ms = match (w.kind, w.size_secs) {
                (WindowKind::LeakyBucket, _) => 0,
                (_, Some(s)) if s > 0 => s as i64 * 1000,
                _ => {
                    return Err(err(
                        line,
                        "tumbling and sliding windows need `size_secs` > 0".into(),
                    ));
                }
            };
            let leak_ms = match (w.kind, w.leak_secs) {
                (WindowKind::LeakyBucket, Some(l)) if l > 0.0 => l * 1000.0,
                (WindowKind::LeakyBucket, _) => {
                    return Err(err(line, "a leaky bucket needs `leak_secs` > 0".into()));
                }
                _ => 0.0,
            };
            let needs_field = matches!(
                w.aggregate,
                AggregateKind::DistinctCount | AggregateKind::Sum
            );
            let agg_field = match (&w.field, needs_field) {
                (Some(f), true) => Some(field(line, f)?),
                (None, true) => {
                    return Err(err(
                        line,
                        format!("aggregate {:?} needs `field`", w.aggregate).to_lowercase(),
                    ));
                }
                (Some(_), false) => {
                    return Err(err(
                        line,
                        "`field` applies only to distinct_count and sum".into(),
                    ));
                }
                (None, false) => None,
            };
            let numerator = match (&w.numerator, w.aggregate) {
                (Some(n), AggregateKind::Ratio) => Some(Matcher::compile(n, path)?),
                (None, AggregateKind::Ratio) => {
                    return Err(err(line, "a ratio needs `numerator`".into()));
                }
                (Some(_), _) => return Err(err(line, "`numerator` applies only to ratio".into())),
                (None, _) => None,
            };
            if w.kind == WindowKind::LeakyBucket && w.aggregate != AggregateKind::Count {
                return Err(err(
                    line,
                    "a leaky bucket counts events: aggregate must be count".into(),
                ));
            }
            if w.group_by.is_empty() {
                return Err(err(line, "`group_by` needs at least one field".into()));
            }
            let group_by = w
                .group_by
                .iter()
                .map(|g| field(line, g))
                .collect::<Result<Vec<_>, _>>()?;
            let logic = WindowLogic {
                kind: w.kind,
                size_ms,
                leak_ms,
                aggregate: w.aggregate,
                field: agg_field,
                numerator,
                min_events: w.min_events.unwrap_or(1),
                min_gap_ms: w.min_gap_secs.unwrap_or(0) as i64 * 1000,
                threshold: w.threshold,
            };
            (
                Logic::Window(logic),
                group_by,
                w.cooldown_secs,
                w.resolve_after_secs,
            )
        }
        (None, Some(s)) => {
            let line = s.line;
            let s = &s.value;
            if s.steps.len() < 2 {
                return Err(err(line, "a sequence needs at least two steps".into()));
            }
            let steps = s
                .steps
                .iter()
                .map(|st| {
                    Ok((
                        st.name.clone(),
                        Matcher::compile(&st.matcher, path)?,
                        st.min_count.max(1),
                    ))
                })
                .collect::<Result<Vec<_>, CompileError>>()?;
            let group_by = s
                .group_by
                .iter()
                .map(|g| field(line, g))
                .collect::<Result<Vec<_>, _>>()?;
            (
                Logic::Sequence(SequenceLogic {
                    within_ms: s.within_secs as i64 * 1000,
                    steps,
                }),
                group_by,
                s.cooldown_secs,
                s.resolve_after_secs,
            )
        }
        _ => {
            return Err(err(
                1,
                "a detector needs exactly one of `window` and `sequence`".into(),
            ));
        }
    };
    let out = &spec.output;
    Ok(Detector {
        id: spec.id.clone(),
        revision: spec.revision,
        title: spec.title.clone(),
        domain: spec.domain,
        classification: spec.classification.clone(),
        severity: spec.severity,
        confidence: spec.confidence,
        attack: spec.attack.clone(),
        matcher,
        resolve_when: spec
            .resolve_when
            .as_ref()
            .map(|m| Matcher::compile(m, path))
            .transpose()?,
        logic,
        group_by,
        offender_kind: out.offender.kind,
        offender_field: field(1, &out.offender.field)?,
        offender_default: out.offender.default.clone(),
        context: out
            .context
            .iter()
            .map(|(k, v)| Ok((k.clone(), field(1, v)?)))
            .collect::<Result<_, CompileError>>()?,
        labels: Vec::new(),
        targets_field: out
            .targets_field
            .as_deref()
            .map(|f| field(1, f))
            .transpose()?,
        recommended_actions: out.recommended_actions.clone(),
        evidence_max: out.evidence_max.min(100),
        cooldown_ms: cooldown as i64 * 1000,
        resolve_after_ms: resolve.max(1) as i64 * 1000,
        path: path.to_owned(),
        sigma: None,
    })
}

/// Parses and compiles one detector file's text.
pub fn load_str(text: &str, path: &str) -> Result<Detector, CompileError> {
    let spec: DetectorSpec = serde_saphyr::from_str(text).map_err(|e| CompileError {
        path: path.to_owned(),
        line: e.location().map_or(0, |l| l.line()),
        message: first_line(&e.to_string()),
    })?;
    compile(&spec, path)
}

/// The first line of a YAML error, without the location we report ourselves.
pub(crate) fn first_line(s: &str) -> String {
    let line = s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s).trim();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    match line.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((loc, rest)) if loc.contains("column") => rest.to_owned(),
        _ => line.to_owned(),
    }
}

/// Every `*.yaml` under `dir` (recursively), sorted for a stable order.
pub fn detector_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Loads every detector under `dir`; all errors are returned, not just the first.
pub fn load_dir(dir: &Path) -> Result<Vec<Detector>, Vec<CompileError>> {
    let files = detector_files(dir).map_err(|e| {
        vec![CompileError {
            path: dir.display().to_string(),
            line: 0,
            message: format!("cannot read detectors: {e}"),
        }]
    })?;
    let mut detectors = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let path = f.display().to_string();
        match std::fs::read_to_string(&f) {
            Ok(text) => match load_str(&text, &path) {
                Ok(d) => detectors.push(d),
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(CompileError {
                path,
                line: 0,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    let mut ids = std::collections::HashMap::new();
    for d in &detectors {
        if let Some(prev) = ids.insert(d.id.clone(), d.path.clone()) {
            errors.push(CompileError {
                path: d.path.clone(),
                line: 1,
                message: format!("duplicate detector id `{}` (also in {prev})", d.id),
            });
        }
    }
    if errors.is_empty() {
        Ok(detectors)
    } else {
        Err(errors)
    }
}
