//! Storage: the tables analysts query (SPEC 10), on ClickHouse when a
//! server is configured.
//!
//! ```text
//! detect stage ─ events ─┐                       ┌─> ClickHouse (RowBinary over HTTP)
//! sink stage ─ findings ─┼─> store sink (batches)┤
//! cluster ─ templates ───┘   by rows or time     └─> spool on disk while it is down,
//!                                                    replayed in order when it is back
//! ```
//! The rows here are the table contract: one struct per table, the same
//! columns as `deploy/clickhouse/*.sql`. Rows are written with validation
//! off (ClickHouse 18.16 has no `RowBinaryWithNamesAndTypes`), so the
//! columns are checked against `system.columns` at start instead: a schema
//! mismatch is an error before the first insert, never a silent drop.
//! Idempotency comes from the engines: a replayed batch collapses by
//! `event_id` / `finding_id` + `update_count` when parts merge.

pub mod clickhouse;
pub mod config;
pub mod parquet;
pub mod rows;
pub mod sink;
pub mod spool;

pub use config::{ClickhouseSinkConfig, EventsMode};
pub use rows::{EventRow, FindingRow, TemplateRow};
