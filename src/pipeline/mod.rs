//! The pipeline: a versioned file ([`config`]) declares sources, transforms,
//! detectors and sinks; [`graph`] runs them as tasks joined by bounded
//! channels; [`stages`] holds the per-batch logic both paths share.

pub mod config;
pub mod graph;
pub mod serve;
pub mod sinks;
pub mod stages;

pub use config::{PipelineSpec, load_str};
pub use graph::{RunSummary, StageReport, inputs, run, run_inline};
