//! Outcome counters of a push source, shared by its concurrent handlers and
//! recorded as metrics as they happen. Every line a client sent is either
//! emitted into the graph or dropped with a reason, so the source's
//! report adds up like every stage's.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::flow::StageReport;

#[derive(Debug)]
pub struct SourceStats {
    id: String,
    received: AtomicU64,
    emitted: AtomicU64,
    dropped: Mutex<BTreeMap<&'static str, u64>>,
}

impl SourceStats {
    pub fn new(id: &str) -> SourceStats {
        SourceStats {
            id: id.to_owned(),
            received: AtomicU64::new(0),
            emitted: AtomicU64::new(0),
            dropped: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// `n` lines handed to the graph.
    pub fn emitted(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
        self.emitted.fetch_add(n, Ordering::Relaxed);
        let id = self.id.clone();
        metrics::counter!(crate::metrics::STAGE_RECEIVED, "stage" => "source", "source" => id.clone())
            .increment(n);
        metrics::counter!(crate::metrics::STAGE_EMITTED, "stage" => "source", "source" => id)
            .increment(n);
    }

    /// `n` lines (or requests, where no line could be read) not handed on.
    pub fn dropped(&self, reason: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        self.received.fetch_add(n, Ordering::Relaxed);
        if let Ok(mut d) = self.dropped.lock() {
            *d.entry(reason).or_default() += n;
        }
        metrics::counter!(crate::metrics::STAGE_RECEIVED, "stage" => "source", "source" => self.id.clone())
            .increment(n);
        metrics::counter!(crate::metrics::STAGE_DROPPED, "stage" => "source", "source" => self.id.clone(), "reason" => reason)
            .increment(n);
    }

    pub fn report(&self) -> StageReport {
        let mut r = StageReport::new(&format!("source:{}", self.id));
        r.received = self.received.load(Ordering::Relaxed);
        r.emitted = self.emitted.load(Ordering::Relaxed);
        if let Ok(d) = self.dropped.lock() {
            r.dropped = d.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        }
        r
    }
}
