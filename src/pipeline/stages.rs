//! The processing stages chained on one thread (fixture tests, the per-core
//! benchmark): dedupe -> cluster -> detect over a parsed batch. The task
//! graph ([`super::graph`]) gives each of the same structs (`Deduper`,
//! `Clusterer`, `Engine`) its own task instead, so both run the same logic.

use crate::cluster::Clusterer;
use crate::dedupe::{DedupStats, Deduper};
use crate::detect::{Detector, Engine, EngineConfig};
use crate::event::Event;
use crate::finding::Finding;

use super::config::PipelineSpec;

pub struct Stages {
    pub dedupe: Deduper,
    pub cluster: Clusterer,
    pub engine: Engine,
}

impl Stages {
    pub fn new(spec: &PipelineSpec, detectors: Vec<Detector>, execution_id: String) -> Stages {
        Stages {
            dedupe: Deduper::new(
                spec.transforms.dedupe.window_ms,
                spec.transforms.dedupe.max_alert_keys,
            ),
            cluster: Clusterer::new(spec.transforms.cluster.clone()),
            engine: Engine::new(
                detectors,
                EngineConfig {
                    max_keys: spec.detect.max_keys,
                    allowed_lateness_ms: spec.detect.allowed_lateness_secs as i64 * 1000,
                    execution_id,
                    segments: spec.detect.out_of_order == super::config::OutOfOrder::Segment,
                    final_states_only: false,
                },
            ),
        }
    }

    /// Runs a parsed batch through dedupe, cluster and detect, in place:
    /// the batch is left deduplicated and clustered, for the caller to
    /// clear and fill again (its memory stays warm).
    pub fn process(&mut self, batch: &mut Vec<Event>, findings: &mut Vec<Finding>) -> DedupStats {
        let stats = self.dedupe.process(batch);
        self.cluster.process(batch);
        for ev in batch.iter() {
            self.engine.process(ev, findings);
        }
        stats
    }
}

/// The stages' state for a checkpoint (borrowed from the live stages).
#[derive(serde::Serialize)]
pub struct StagesSnapshot<'a> {
    dedupe: Vec<u64>,
    drain: &'a crate::cluster::Drain,
    engine: crate::detect::EngineSnapshot<'a>,
}

/// A checkpoint's stage state, read back.
#[derive(serde::Deserialize)]
pub struct StagesState {
    dedupe: Vec<u64>,
    drain: crate::cluster::Drain,
    engine: crate::detect::EngineState,
}

impl Stages {
    pub fn snapshot(&self) -> StagesSnapshot<'_> {
        StagesSnapshot {
            dedupe: self.dedupe.snapshot(),
            drain: self.cluster.snapshot(),
            engine: self.engine.snapshot(),
        }
    }

    /// Continues from a checkpoint; returns the window keys dropped because
    /// their detector is no longer loaded.
    pub fn restore(&mut self, state: StagesState) -> usize {
        self.dedupe.restore(state.dedupe);
        self.cluster.restore(state.drain);
        self.engine.restore(state.engine)
    }
}
