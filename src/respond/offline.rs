//! Response without connectors, for `replay --respond`: the dispatcher
//! runs in simulation on the finding versions as they are emitted, and at
//! the end every finding (final state), incident and action is printed as
//! a JSON line with its `"type"`. Nothing executes; with no policy every
//! risk observes, with one its modes decide what would have waited for a
//! person and what would have run.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use super::Compiled;
use super::dispatch::Dispatcher;
use super::incident::{Assets, Incidents};
use crate::finding::Finding;
use crate::hub::Subscriber;

pub struct Offline {
    d: Dispatcher,
    findings: Vec<Arc<Finding>>,
    index: HashMap<String, usize>,
}

impl Offline {
    pub fn new(c: Compiled) -> Offline {
        let mut d = Dispatcher::new(
            c.playbooks,
            c.policy,
            Assets::new(&c.cfg.assets),
            Incidents::new(c.cfg.incident_horizon_secs, usize::MAX),
            c.routes,
        );
        d.simulate = true;
        Offline {
            d,
            findings: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Every line, in order: findings, incidents, actions.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for f in &self.findings {
            let mut v = serde_json::to_value(f.as_ref()).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("type".into(), "finding".into());
            }
            out.push(v);
        }
        out.extend(self.d.incidents.sorted().iter().map(|i| i.line()));
        out.extend(
            self.d
                .order
                .iter()
                .filter_map(|id| self.d.actions.get(id))
                .map(|a| a.line()),
        );
        out
    }
}

impl Subscriber for Offline {
    fn accept(&mut self, f: &Arc<Finding>) {
        match self.index.get(&f.finding_id) {
            Some(&i) => self.findings[i] = f.clone(),
            None => {
                self.index.insert(f.finding_id.clone(), self.findings.len());
                self.findings.push(f.clone());
            }
        }
        self.d.on_finding(f, f.emitted_at);
        self.d.take_effects();
    }

    fn finish(&mut self) {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for l in self.lines() {
            if writeln!(out, "{l}").is_err() {
                break;
            }
        }
    }
}
