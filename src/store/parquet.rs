//! The embedded store: the same tables as ClickHouse, written as Parquet
//! files under a data folder, one folder per table and day:
//!
//! ```text
//! <dir>/events/2026-11-22/<run>-<seq>.parquet
//! <dir>/findings/2026-11-22/…   (every version; the view findings_latest keeps the newest)
//! <dir>/templates/…
//! ```
//! Columns and types come from the ClickHouse DDL (one contract for both
//! stores); rows become Arrow record batches through arrow-json's serde
//! decoder. A file is written under a temporary name and renamed, so a
//! reader never sees half a file. Retention deletes whole day folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};

use super::clickhouse::expected_columns;
use super::sink::StoreHandle;
use super::spool::Batch;
use crate::flow::StageReport;
use crate::search::Indexer;
use crate::time::{day_name, parse_day};

/// Pipeline-file settings of the embedded (Parquet) store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkConfig {
    /// The data folder (`threatpilot sql --data` reads it).
    #[serde(default = "default_dir")]
    pub dir: String,
    #[serde(default)]
    pub events: super::EventsMode,
    #[serde(default = "default_sample")]
    pub sample_rate: f64,
    /// A file is written at this many rows of a table...
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// ...or this long after its first row.
    #[serde(default = "default_flush_ms")]
    pub flush_ms: u64,
    /// Days kept per table; absent tables are kept forever.
    #[serde(default)]
    pub retention_days: BTreeMap<String, u32>,
    /// The full-text index of the stored events (`threatpilot search`).
    #[serde(default)]
    pub search: crate::search::SearchConfig,
}

fn default_dir() -> String {
    "out/data".into()
}
fn default_sample() -> f64 {
    0.01
}
fn default_batch_rows() -> usize {
    100_000
}
fn default_flush_ms() -> u64 {
    10_000
}

/// The Arrow type of a ClickHouse column type.
fn arrow_type(ch: &str) -> DataType {
    match ch {
        "String" => DataType::Utf8,
        "UInt8" => DataType::UInt8,
        "UInt16" => DataType::UInt16,
        "UInt32" => DataType::UInt32,
        "UInt64" => DataType::UInt64,
        "Int64" => DataType::Int64,
        "Float64" => DataType::Float64,
        "Date" => DataType::Date32,
        "DateTime" => DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
        "Array(String)" => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        _ => DataType::Utf8,
    }
}

/// A table's Arrow schema, from the DDL.
pub fn schema(table: &str) -> Option<SchemaRef> {
    let cols = expected_columns().remove(table)?;
    let fields: Vec<Field> = cols
        .iter()
        .map(|(name, ty)| Field::new(name, arrow_type(ty), false))
        .collect();
    Some(Arc::new(Schema::new(fields)))
}

/// The tables the embedded store writes and `threatpilot sql` reads.
pub const TABLES: &[&str] = &[
    "events",
    "findings",
    "templates",
    "incidents",
    "actions",
    "audit",
];

fn to_batch<S: Serialize>(table: &str, rows: &[S]) -> anyhow::Result<RecordBatch> {
    let schema = schema(table).ok_or_else(|| anyhow::anyhow!("unknown table {table}"))?;
    let mut decoder = datafusion::arrow::json::ReaderBuilder::new(schema)
        .with_batch_size(rows.len().max(1))
        .build_decoder()?;
    decoder.serialize(rows)?;
    decoder
        .flush()?
        .ok_or_else(|| anyhow::anyhow!("no rows decoded for {table}"))
}

struct Writer {
    dir: PathBuf,
    run: String,
    seq: u64,
    written: BTreeMap<&'static str, u64>,
    /// Indexes each events file's rows once it is written.
    index: Option<Indexer>,
}

impl Writer {
    /// Writes one table's rows, a file per day.
    fn write(&mut self, batch: &Batch) -> anyhow::Result<()> {
        let table = batch.table();
        let by_day: BTreeMap<u16, Batch> = match batch {
            Batch::Events(r) => split(r, |x| x.day)
                .into_iter()
                .map(|(d, v)| (d, Batch::Events(v)))
                .collect(),
            Batch::Findings(r) => split(r, |x| x.day)
                .into_iter()
                .map(|(d, v)| (d, Batch::Findings(v)))
                .collect(),
            Batch::Templates(r) => split(r, |x| x.day)
                .into_iter()
                .map(|(d, v)| (d, Batch::Templates(v)))
                .collect(),
            Batch::Incidents(r) => split(r, |x| x.day)
                .into_iter()
                .map(|(d, v)| (d, Batch::Incidents(v)))
                .collect(),
            Batch::Actions(r) => split(r, |x| x.day)
                .into_iter()
                .map(|(d, v)| (d, Batch::Actions(v)))
                .collect(),
            Batch::Audit(r) => split(r, |x| x.day)
                .into_iter()
                .map(|(d, v)| (d, Batch::Audit(v)))
                .collect(),
        };
        for (day, rows) in by_day {
            let rb = match &rows {
                Batch::Events(r) => to_batch(table, r)?,
                Batch::Findings(r) => to_batch(table, r)?,
                Batch::Templates(r) => to_batch(table, r)?,
                Batch::Incidents(r) => to_batch(table, r)?,
                Batch::Actions(r) => to_batch(table, r)?,
                Batch::Audit(r) => to_batch(table, r)?,
            };
            let folder = self.dir.join(table).join(day_name(i64::from(day)));
            std::fs::create_dir_all(&folder)?;
            self.seq += 1;
            let name = format!("{}-{:06}.parquet", self.run, self.seq);
            let tmp = folder.join(format!(".{name}.tmp"));
            let file = std::fs::File::create(&tmp)?;
            let mut w = ArrowWriter::try_new(file, rb.schema(), None)?;
            w.write(&rb)?;
            w.close()?;
            std::fs::rename(&tmp, folder.join(&name))?;
            *self.written.entry(table).or_default() += rows.len() as u64;
            if let (Batch::Events(r), Some(index)) = (&rows, self.index.as_mut()) {
                index.add(r);
            }
        }
        Ok(())
    }

    /// Deletes day folders older than each table's limit, and old days of
    /// the search index.
    fn retention(&mut self, days: &BTreeMap<String, u32>) -> usize {
        let mut removed = self.index.as_mut().map_or(0, Indexer::retention);
        let today = crate::time::now_ms().div_euclid(86_400_000);
        for (table, keep) in days {
            let Ok(entries) = std::fs::read_dir(self.dir.join(table)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(day) = parse_day(&name) else {
                    continue;
                };
                if day < today - i64::from(*keep) && std::fs::remove_dir_all(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

fn split<R: Clone>(rows: &[R], day: impl Fn(&R) -> u16) -> BTreeMap<u16, Vec<R>> {
    let mut out: BTreeMap<u16, Vec<R>> = BTreeMap::new();
    for r in rows {
        out.entry(day(r)).or_default().push(r.clone());
    }
    out
}

/// Starts the embedded store's writer task.
pub fn start(
    cfg: ParquetSinkConfig,
) -> anyhow::Result<(StoreHandle, tokio::task::JoinHandle<StageReport>)> {
    let dir = PathBuf::from(&cfg.dir);
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", cfg.dir))?;
    let index = if cfg.search.enabled {
        let root = dir.join(crate::search::INDEX_DIR);
        Some(
            Indexer::new(root.clone(), cfg.search.clone())
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", root.display()))?,
        )
    } else {
        None
    };
    let mut w = Writer {
        dir,
        run: format!("{:x}", crate::time::now_ms()),
        seq: 0,
        written: BTreeMap::new(),
        index,
    };
    let removed = w.retention(&cfg.retention_days);
    if removed > 0 {
        tracing::info!(days = removed, "embedded store retention removed old days");
    }
    let (handle, mut rx) = StoreHandle::channel();
    let task = tokio::task::spawn(async move {
        let mut buffers: BTreeMap<&'static str, (Batch, Instant)> = BTreeMap::new();
        let mut received = 0u64;
        let mut failed = 0u64;
        let flush_every = Duration::from_millis(cfg.flush_ms.max(1));
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut next_retention = Instant::now() + Duration::from_secs(3600);
        let write = |w: &mut Writer, b: Batch, failed: &mut u64| {
            if let Err(e) = tokio::task::block_in_place(|| w.write(&b)) {
                tracing::error!(error = %e, table = b.table(), rows = b.len(), "cannot write a Parquet file");
                *failed += b.len() as u64;
            }
        };
        loop {
            tokio::select! {
                got = rx.recv() => match got {
                    Some(b) => {
                        received += b.len() as u64;
                        let (buf, _) = buffers.entry(b.table()).or_insert_with(|| (b.empty_like(), Instant::now()));
                        buf.append(b);
                    }
                    None => break,
                },
                _ = tick.tick() => {}
            }
            let due: Vec<&'static str> = buffers
                .iter()
                .filter(|(_, (b, t))| b.len() >= cfg.batch_rows || t.elapsed() >= flush_every)
                .map(|(k, _)| *k)
                .collect();
            for k in due {
                if let Some((b, _)) = buffers.remove(k) {
                    write(&mut w, b, &mut failed);
                }
            }
            if Instant::now() >= next_retention {
                w.retention(&cfg.retention_days);
                next_retention = Instant::now() + Duration::from_secs(3600);
            }
        }
        for (_, (b, _)) in std::mem::take(&mut buffers) {
            write(&mut w, b, &mut failed);
        }
        let mut rep = StageReport::new("store:parquet");
        rep.received = received;
        rep.emitted = w.written.values().sum();
        if failed > 0 {
            rep.dropped.insert("write_failed".into(), failed);
        }
        if let Some(index) = w.index.take() {
            // stored but not searchable (already logged and counted)
            if index.failed > 0 {
                tracing::warn!(
                    events = index.failed,
                    "events stored but not indexed for search"
                );
            }
            tokio::task::block_in_place(|| index.finish());
        }
        rep
    });
    Ok((handle, task))
}

/// Reads every table of a data folder into a DataFusion session, with the
/// views analysts use on both stores (`findings_latest`, `templates_latest`).
pub async fn session(dir: &Path) -> anyhow::Result<datafusion::prelude::SessionContext> {
    use datafusion::datasource::file_format::parquet::ParquetFormat;
    use datafusion::datasource::listing::{
        ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
    };
    // day folders are subfolders of each table's folder
    let config = datafusion::prelude::SessionConfig::new().set_bool(
        "datafusion.execution.listing_table_ignore_subdirectory",
        false,
    );
    let ctx = datafusion::prelude::SessionContext::new_with_config(config);
    for table in TABLES {
        let folder = dir.join(table);
        std::fs::create_dir_all(&folder)?;
        let url = ListingTableUrl::parse(format!("{}/", folder.canonicalize()?.display()))?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(schema(table).ok_or_else(|| anyhow::anyhow!("no schema for {table}"))?);
        ctx.register_table(*table, Arc::new(ListingTable::try_new(config)?))?;
    }
    for (view, table, key, version) in [
        ("findings_latest", "findings", "finding_id", "update_count"),
        ("templates_latest", "templates", "template_id", "version"),
        ("incidents_latest", "incidents", "incident_id", "version"),
        ("actions_latest", "actions", "action_id", "version"),
    ] {
        let cols: Vec<String> = expected_columns()[table]
            .iter()
            .map(|(c, _)| c.clone())
            .collect();
        let cols = cols.join(", ");
        ctx.sql(&format!(
            "CREATE VIEW {view} AS SELECT {cols} FROM (SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY {version} DESC) AS rank_ FROM {table}) WHERE rank_ = 1"
        ))
        .await?;
    }
    Ok(ctx)
}
