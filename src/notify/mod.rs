//! Notifications (SPEC 9): incidents reach people where they work, once
//! each, updated in place as they evolve, and never lost or doubled when a
//! channel is down.
//!
//! ```text
//! respond View ─ changed ids ─> notifier task ─ route, render ─> outbox (synced)
//!                                    │                              │
//!                                    └── per channel: rate, quiet hours, backoff ─> Slack / webhook
//! ```
//! The notifier only reads incidents and actions from response's view, so
//! a slow or dead channel never slows detection or response: its messages
//! wait in the outbox, where a newer state of an incident replaces an
//! older unsent one (a storm of 500 findings is one message, updated).
//! Approve / reject buttons come back through `POST /slack/interactions`.

pub mod config;
pub mod email;
pub mod jira;
pub mod outbox;
pub mod render;
pub mod runtime;
pub mod slack;
pub mod webhook;

use std::collections::HashSet;
use std::time::Duration;

pub use config::NotifyConfig;

use crate::detect::CompileError;
use crate::respond::policy::Window;
use config::{ChannelSpec, RouteSpec};
use render::Notice;

/// What became of one send.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Taken, with what to remember of it: (suffix of the outbox key,
    /// value); suffix "" is the message's own reference (a Slack
    /// `CHANNEL/TS`, a Jira issue key).
    Sent(Vec<(&'static str, String)>),
    /// Try again (after the time the far side asked for, if it did).
    Retry {
        after: Option<Duration>,
        why: String,
    },
    /// The message updated no longer exists: post a new one.
    Gone,
    /// Never sendable; the error's name.
    Dead(String),
}

/// Reads a `Retry-After` header (seconds).
pub fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A `notify:` section compiled: everything checked, nothing started (the
/// secrets are read at start).
#[derive(Clone)]
pub struct Compiled {
    pub cfg: NotifyConfig,
    pub channels: Vec<(ChannelSpec, Vec<Window>)>,
    pub routes: Vec<RouteSpec>,
    /// The pipeline's `analysis:`, when it has one.
    pub analysis: Option<crate::analysis::AnalysisConfig>,
}

/// Compiles a `notify:` section of the pipeline file at `path`; all errors
/// are returned, each with its `file:line`.
pub fn compile(cfg: &NotifyConfig, path: &str) -> Result<Compiled, Vec<CompileError>> {
    let mut errors = Vec::new();
    let err = |line: u64, message: String| CompileError {
        path: path.to_owned(),
        line,
        message,
    };
    let mut names = HashSet::new();
    let mut channels = Vec::new();
    if cfg.channels.is_empty() {
        errors.push(err(1, "notify: no channels".into()));
    }
    for c in &cfg.channels {
        if let Err(m) = c.value.check() {
            errors.push(err(c.line, m));
        }
        if !names.insert(c.value.name().to_owned()) {
            errors.push(err(
                c.line,
                format!("duplicate channel name {}", c.value.name()),
            ));
        }
        let mut quiet = Vec::new();
        for w in c.value.pacing().1 {
            match Window::compile(w) {
                Ok(w) => quiet.push(w),
                Err(m) => errors.push(err(c.line, format!("quiet_hours: {m}"))),
            }
        }
        channels.push((c.value.clone(), quiet));
    }
    for r in &cfg.routes {
        if r.value.channels.is_empty() {
            errors.push(err(r.line, "a route needs at least one channel".into()));
        }
        for ch in &r.value.channels {
            if !names.contains(ch) {
                errors.push(err(r.line, format!("unknown channel `{ch}`")));
            }
        }
    }
    if cfg.retry.initial_ms == 0 || cfg.retry.max_ms < cfg.retry.initial_ms {
        errors.push(err(
            1,
            "notify.retry: initial_ms must be at least 1 and max_ms at least initial_ms".into(),
        ));
    }
    if errors.is_empty() {
        Ok(Compiled {
            cfg: cfg.clone(),
            channels,
            routes: cfg.routes.iter().map(|r| r.value.clone()).collect(),
            analysis: None,
        })
    } else {
        Err(errors)
    }
}

impl Compiled {
    /// The channels an incident goes to, in configuration order.
    pub fn channels_for(&self, n: &Notice) -> Vec<&str> {
        let all = || self.channels.iter().map(|(c, _)| c.name()).collect();
        if self.routes.is_empty() {
            return all();
        }
        let i = &n.incident;
        let mut out: Vec<&str> = Vec::new();
        for r in &self.routes {
            let ok = r.severity_at_least.is_none_or(|s| i.severity >= s)
                && (r.domain.is_empty() || r.domain.contains(&i.domain))
                && (r.classification.is_empty()
                    || r.classification
                        .iter()
                        .any(|c| i.classifications.contains(c)))
                && (r.status.is_empty() || r.status.contains(&i.status));
            if ok {
                for c in &r.channels {
                    if !out.contains(&c.as_str()) {
                        out.push(c);
                    }
                }
            }
        }
        out
    }
}
