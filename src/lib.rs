//! ThreatPilot: a streaming detection-and-response pipeline.
//!
//! Data flows `source -> parse -> dedupe -> cluster -> detect -> sinks`; see
//! `docs/ARCHITECTURE.md` for the tour. Each stage is a module here; the
//! stage graph that joins them is [`pipeline`].

pub mod analysis;
pub mod api;
pub mod cli;
pub mod cli_support;
pub mod cluster;
pub mod console;
pub mod dedupe;
pub mod detect;
pub mod escape;
pub mod event;
pub mod finding;
pub mod flow;
pub mod hub;
pub mod ingest;
pub mod line;
pub mod listen;
pub mod memo;
pub mod metrics;
pub mod name;
pub mod nats;
pub mod net;
pub mod notify;
pub mod parse;
pub mod pipeline;
pub mod prehashed;
pub mod report;
pub mod respond;
pub mod rotation;
pub mod schema;
pub mod search;
pub mod simulate;
pub mod store;
pub mod time;
