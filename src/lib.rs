//! ThreatPilot: a streaming detection-and-response pipeline.
//!
//! Data flows `source -> parse -> dedupe -> cluster -> detect -> sinks`; see
//! `docs/ARCHITECTURE.md` for the tour. Each stage is a module here; the
//! stage graph that joins them is [`pipeline`].

pub mod event;
pub mod parse;
pub mod time;
pub mod cluster;
pub mod dedupe;
pub mod cli;
pub mod detect;
pub mod finding;
pub mod metrics;
pub mod cli_support;
pub mod pipeline;
pub mod simulate;
pub mod schema;
pub mod prehashed;
