//! Response (SPEC 4.3, 8): findings become incidents, incidents meet
//! playbooks, playbooks propose actions, the safety policy decides, and
//! connectors act; every step is journaled and audited.
//!
//! ```text
//! hub ─ Subscriber ─> runtime task ─> Dispatcher (incidents, playbooks, policy)
//!                         │                  └─ effects ─┬─> journal (durable, before executing)
//!                         │                              ├─> audit chain (file + store)
//!                         │                              ├─> store rows, API view, job tails
//!                         │                              └─> connector queues (bounded) ─> wires
//!                         └─ approvals, results, verifications, ticks
//! ```
//! `src/respond/` runs what `playbooks/` describes. Responders (identity,
//! http, infrastructure) are the domains of [`catalogue::ActionKind`];
//! connectors are in [`connectors`]. Nothing here reaches into the stage
//! graph: response only subscribes to findings.

pub mod action;
pub mod audit;
pub mod catalogue;
pub mod config;
pub mod connectors;
pub mod dispatch;
pub mod fixtures;
pub mod history;
pub mod incident;
pub mod journal;
pub mod offline;
pub mod playbook;
pub mod policy;
pub mod runtime;
pub mod template;

use std::collections::HashMap;

pub use config::RespondConfig;

use crate::detect::CompileError;
use crate::finding::Domain;
use catalogue::ActionKind;
use connectors::ConnectorSpec;
use playbook::Playbook;
use policy::{Policy, PolicySpec};

/// A `respond:` section compiled: everything checked, nothing started.
#[derive(Clone)]
pub struct Compiled {
    pub cfg: RespondConfig,
    pub playbooks: Vec<Playbook>,
    pub policy: Policy,
    pub routes: dispatch::Routes,
    pub connectors: Vec<ConnectorSpec>,
}

/// Reads a policy file (`version: 1` and the policy's keys).
pub fn load_policy_file(path: &str) -> Result<Policy, CompileError> {
    let err = |line: u64, message: String| CompileError {
        path: path.to_owned(),
        line,
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(0, format!("cannot read: {e}")))?;
    let spec: PolicySpec = serde_saphyr::from_str(&text).map_err(|e| {
        err(
            e.location().map_or(0, |l| l.line()),
            crate::detect::first_line(&e.to_string()),
        )
    })?;
    Policy::compile(spec).map_err(|m| err(1, m))
}

/// Compiles a `respond:` section of the pipeline file at `path`; all
/// errors are returned, each with its `file:line`.
pub fn compile(cfg: &RespondConfig, path: &str) -> Result<Compiled, Vec<CompileError>> {
    let mut errors = Vec::new();
    let err = |line: u64, message: String| CompileError {
        path: path.to_owned(),
        line,
        message,
    };
    let playbooks = match playbook::load_paths(&cfg.playbooks) {
        Ok(p) => p,
        Err(e) => {
            errors.extend(e);
            Vec::new()
        }
    };
    let policy = match (&cfg.policy, &cfg.policy_file) {
        (Some(_), Some(_)) => {
            errors.push(err(
                1,
                "respond: give policy or policy_file, not both".into(),
            ));
            Policy::observe_only()
        }
        (Some(p), None) => Policy::compile(p.clone()).unwrap_or_else(|m| {
            errors.push(err(1, format!("respond.policy: {m}")));
            Policy::observe_only()
        }),
        (None, Some(f)) => load_policy_file(f).unwrap_or_else(|e| {
            errors.push(e);
            Policy::observe_only()
        }),
        (None, None) => Policy::observe_only(),
    };
    let mut by_name: HashMap<String, &ConnectorSpec> = HashMap::new();
    for c in &cfg.connectors {
        if let Err(m) = c.value.check() {
            errors.push(err(c.line, m));
        }
        if by_name
            .insert(c.value.name().to_owned(), &c.value)
            .is_some()
        {
            errors.push(err(
                c.line,
                format!("duplicate connector name {}", c.value.name()),
            ));
        }
    }
    let mut routes = dispatch::Routes::new();
    let carries =
        |line: u64, name: &str, kind: ActionKind, errors: &mut Vec<CompileError>| match by_name
            .get(name)
        {
            None => errors.push(err(line, format!("unknown connector `{name}`"))),
            Some(c) if !c.supports(kind) => errors.push(err(
                line,
                format!("connector `{name}` cannot carry {}", kind.as_str()),
            )),
            Some(c) => {
                if let Some(u) = kind.undo()
                    && !c.supports(u)
                {
                    errors.push(err(
                        line,
                        format!(
                            "connector `{name}` carries {} but not {}, which undoes it",
                            kind.as_str(),
                            u.as_str()
                        ),
                    ));
                }
            }
        };
    for (responder, kinds) in &cfg.routes {
        let domain = match responder.as_str() {
            "identity" => Domain::Identity,
            "http" => Domain::Http,
            "infrastructure" => Domain::Infrastructure,
            other => {
                let line = kinds.values().next().map_or(1, |l| l.line);
                errors.push(err(
                    line,
                    format!("unknown responder `{other}` (identity, http, infrastructure)"),
                ));
                continue;
            }
        };
        for (kind, conn) in kinds {
            let Some(k) = ActionKind::parse(kind).filter(|k| k.responders().contains(&domain))
            else {
                errors.push(err(
                    conn.line,
                    format!(
                        "the {responder} responder has no action `{kind}` (it has: {})",
                        ActionKind::offered_by(domain).join(", ")
                    ),
                ));
                continue;
            };
            carries(conn.line, &conn.value, k, &mut errors);
            routes.insert((domain, k), conn.value.clone());
            if let Some(u) = k.undo() {
                routes
                    .entry((domain, u))
                    .or_insert_with(|| conn.value.clone());
            }
        }
    }
    for pb in &playbooks {
        for s in &pb.steps {
            if let Some(c) = &s.connector {
                let before = errors.len();
                carries(s.line, c, s.kind, &mut errors);
                for e in &mut errors[before..] {
                    e.path = pb.path.clone();
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(Compiled {
            cfg: cfg.clone(),
            playbooks,
            policy,
            routes,
            connectors: cfg.connectors.iter().map(|c| c.value.clone()).collect(),
        })
    } else {
        Err(errors)
    }
}
