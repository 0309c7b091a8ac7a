//! Clustering (SPEC 6): log lines grouped into templates.
//!
//! [`drain`] mines templates online, [`mask`] normalizes variable tokens,
//! [`logformat`] extracts `<Content>` with the Loghub benchmark's header
//! syntax, and [`eval`] scores groupings against Loghub ground truth. The
//! pipeline stage ([`Clusterer`]) sets `template.id` and `template.text` on
//! every event from its `message`.

pub mod drain;
pub mod eval;
pub mod logformat;
pub mod mask;

use crate::event::{Event, TemplateRef};
pub use drain::{Drain, DrainConfig};

/// The cluster stage: one miner for all sources.
pub struct Clusterer {
    drain: Drain,
}

impl Clusterer {
    pub fn new(cfg: DrainConfig) -> Clusterer {
        Clusterer { drain: Drain::new(cfg) }
    }

    /// Sets the template of each event.
    pub fn process(&mut self, events: &mut [Event]) {
        for ev in events {
            let idx = self.drain.add(ev.message());
            let c = self.drain.cluster(idx);
            ev.template = Some(TemplateRef { id: c.id, text: c.text.clone() });
        }
    }

    pub fn template_count(&self) -> usize {
        self.drain.clusters().len()
    }

    pub fn drain(&self) -> &Drain {
        &self.drain
    }
}
