//! Full-text search over stored events (embedded mode): every event the
//! embedded store writes is also indexed with tantivy, so an analyst can
//! find the lines behind a finding by address, account or words without a
//! server.
//!
//! ```text
//! <data dir>/index/2026-11-22/   one tantivy index per event day, like the
//! <data dir>/index/2026-11-21/   Parquet day folders: retention deletes
//!                                whole days, oldest first
//! ```
//! One index per day keeps retention a folder delete (no per-document
//! deletes and merges), lets a search skip days outside its time range,
//! and yields results newest first by walking days backwards.
//!
//! What a document holds:
//! - `@timestamp` (epoch ms; fast field for the time range and the sort),
//! - `event.original` and `message` as words (free text, phrases),
//! - every other ECS field as an exact, case-insensitive value under its
//!   dotted name (`source.ip:203.0.113.50`, `http.response.status_code:401`,
//!   `labels.job:sshd`), in one JSON field the query parser falls back to,
//! - the numeric fields again as columns, for ranges,
//! - the ECS event itself, stored, for display.

pub mod doc;
pub mod index;
pub mod query;

pub use index::{Indexer, SearchConfig};
pub use query::{Hit, Search};

/// The folder under the data directory that holds the day indexes.
pub const INDEX_DIR: &str = "index";
