//! Writing the day indexes: the embedded store hands every events batch it
//! writes to an [`Indexer`], which adds the rows to the index of their day
//! and commits, so a search sees them as soon as their Parquet file exists.
//!
//! Few writers are open at once (a replay of old files touches many days;
//! each writer holds a memory arena and a merge thread): the least recently
//! used is committed and closed when another day needs one. Retention runs
//! at start and hourly: days older than `retention_days` go, then the
//! oldest days until the indexes fit in `max_bytes`.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, JsonObjectOptions, OwnedValue, STORED, Schema, TEXT,
    TextFieldIndexing,
};
use tantivy::tokenizer::{LowerCaser, RawTokenizer, RemoveLongFilter, TextAnalyzer};
use tantivy::{Index, IndexWriter, TantivyDocument};

use super::doc::ecs;
use crate::store::EventRow;
use crate::time::{day_name, parse_day};

/// Pipeline-file settings of the search index (under a `parquet` sink).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    /// Index the events the store writes (those its `events` mode keeps).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Days of events kept searchable (by event time).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Bound on the indexes' size on disk; the oldest days go first.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Memory of one open day writer (tantivy's indexing arena).
    #[serde(default = "default_writer_mb")]
    pub writer_memory_mb: usize,
    /// Day writers open at once.
    #[serde(default = "default_open_days")]
    pub open_days: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            enabled: true,
            retention_days: default_retention_days(),
            max_bytes: default_max_bytes(),
            writer_memory_mb: default_writer_mb(),
            open_days: default_open_days(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_retention_days() -> u32 {
    14
}
fn default_max_bytes() -> u64 {
    4 << 30
}
fn default_writer_mb() -> usize {
    64
}
fn default_open_days() -> usize {
    2
}

/// The analyzer of exact field values: the whole value, lowercased; values
/// longer than this are stored but not indexed as terms.
pub const KEYWORD: &str = "keyword";
const MAX_KEYWORD_BYTES: usize = 1024;

/// The JSON field that holds every ECS name and value, so a query can say
/// `source.ip:…` without the prefix.
pub const FIELDS: &str = "fields";

/// The JSON field that repeats the numeric values as columns, which range
/// queries read (making every field a column would halve indexing speed).
pub const NUMBERS: &str = "numbers";

/// The fields of a day index.
#[derive(Clone, Copy)]
pub struct Fields {
    pub timestamp: Field,
    pub original: Field,
    pub message: Field,
    pub values: Field,
    pub numbers: Field,
    pub source: Field,
}

/// The schema every day index has, and its fields.
pub fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let timestamp = b.add_i64_field("@timestamp", INDEXED | FAST | STORED);
    let original = b.add_text_field("event.original", TEXT);
    let message = b.add_text_field("message", TEXT);
    let keyword = TextFieldIndexing::default()
        .set_tokenizer(KEYWORD)
        .set_index_option(IndexRecordOption::Basic);
    let values = b.add_json_field(
        FIELDS,
        JsonObjectOptions::default()
            .set_indexing_options(keyword.clone())
            .set_expand_dots_enabled(),
    );
    let numbers = b.add_json_field(
        NUMBERS,
        JsonObjectOptions::default()
            .set_indexing_options(keyword)
            .set_fast(KEYWORD)
            .set_expand_dots_enabled(),
    );
    let source = b.add_text_field("_source", STORED);
    let fields = Fields {
        timestamp,
        original,
        message,
        values,
        numbers,
        source,
    };
    (b.build(), fields)
}

/// Registers the analyzers an index needs (tantivy does not persist them).
pub fn register_analyzers(index: &Index) {
    let keyword = TextAnalyzer::builder(RawTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_KEYWORD_BYTES))
        .filter(LowerCaser)
        .build();
    index.tokenizers().register(KEYWORD, keyword.clone());
    // the columns that range queries read hold the same lowercased values
    index.fast_field_tokenizer().register(KEYWORD, keyword);
}

/// Opens (or creates) the index of one day folder.
pub fn open_day(folder: &Path) -> tantivy::Result<Index> {
    std::fs::create_dir_all(folder)?;
    let dir = tantivy::directory::MmapDirectory::open(folder)?;
    let (schema, _) = schema();
    let index = Index::open_or_create(dir, schema)?;
    register_analyzers(&index);
    Ok(index)
}

/// The document of one stored row.
fn document(row: &EventRow, f: &Fields) -> TantivyDocument {
    let ecs = ecs(row);
    let mut doc = TantivyDocument::default();
    doc.add_i64(f.timestamp, row.timestamp_ms);
    doc.add_text(f.original, &row.original);
    // most lines' message is the line itself: indexed once is enough
    if row.message != row.original {
        doc.add_text(f.message, &row.message);
    }
    let values: Vec<(String, OwnedValue)> = ecs
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "event.original" | "message" | "@timestamp"))
        .filter_map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => OwnedValue::Str(s.clone()),
                serde_json::Value::Number(n) => OwnedValue::I64(n.as_i64()?),
                _ => return None,
            };
            Some((k.clone(), v))
        })
        .collect();
    let numbers = values
        .iter()
        .filter(|(_, v)| matches!(v, OwnedValue::I64(_)))
        .cloned()
        .collect();
    doc.add_field_value(f.values, &OwnedValue::Object(values));
    doc.add_field_value(f.numbers, &OwnedValue::Object(numbers));
    doc.add_text(f.source, serde_json::Value::Object(ecs).to_string());
    doc
}

struct DayWriter {
    writer: IndexWriter,
    used: Instant,
}

/// Adds stored rows to the day indexes and enforces retention.
pub struct Indexer {
    root: PathBuf,
    cfg: SearchConfig,
    fields: Fields,
    writers: BTreeMap<i64, DayWriter>,
    /// Rows indexed, and rows that could not be.
    pub indexed: u64,
    pub failed: u64,
}

impl Indexer {
    /// An indexer writing under `root` (the data folder's `index`).
    pub fn new(root: PathBuf, cfg: SearchConfig) -> std::io::Result<Indexer> {
        std::fs::create_dir_all(&root)?;
        Ok(Indexer {
            root,
            cfg,
            fields: schema().1,
            writers: BTreeMap::new(),
            indexed: 0,
            failed: 0,
        })
    }

    /// Indexes rows and commits every day touched. Like the Parquet events
    /// table, a replayed file is indexed again (dedup is the pipeline's).
    /// A failure is logged and counted; the Parquet rows are unaffected.
    pub fn add(&mut self, rows: &[EventRow]) {
        let mut by_day: BTreeMap<i64, Vec<&EventRow>> = BTreeMap::new();
        for r in rows {
            by_day
                .entry(r.timestamp_ms.div_euclid(86_400_000))
                .or_default()
                .push(r);
        }
        for (day, rows) in by_day {
            match self.add_day(day, &rows) {
                Ok(()) => {
                    self.indexed += rows.len() as u64;
                    metrics::counter!(crate::metrics::SEARCH_INDEXED).increment(rows.len() as u64);
                }
                Err(e) => {
                    tracing::error!(error = %e, day = %day_name(day), rows = rows.len(), "cannot index events");
                    self.failed += rows.len() as u64;
                    metrics::counter!(crate::metrics::SEARCH_INDEX_ERRORS)
                        .increment(rows.len() as u64);
                }
            }
        }
    }

    fn add_day(&mut self, day: i64, rows: &[&EventRow]) -> tantivy::Result<()> {
        let f = self.fields;
        let w = self.writer(day)?;
        for r in rows {
            w.add_document(document(r, &f))?;
        }
        w.commit()?;
        Ok(())
    }

    fn writer(&mut self, day: i64) -> tantivy::Result<&mut IndexWriter> {
        if !self.writers.contains_key(&day) {
            while self.writers.len() >= self.cfg.open_days.max(1) {
                let oldest = self
                    .writers
                    .iter()
                    .min_by_key(|(_, w)| w.used)
                    .map(|(d, _)| *d);
                if let Some(d) = oldest {
                    self.close(d);
                }
            }
        }
        let w = match self.writers.entry(day) {
            Entry::Occupied(open) => open.into_mut(),
            Entry::Vacant(slot) => {
                let index = open_day(&self.root.join(day_name(day)))?;
                let budget = self.cfg.writer_memory_mb.max(15) << 20;
                slot.insert(DayWriter {
                    writer: index.writer_with_num_threads(2, budget)?,
                    used: Instant::now(),
                })
            }
        };
        w.used = Instant::now();
        Ok(&mut w.writer)
    }

    /// Closes a day's writer, letting its merges finish.
    fn close(&mut self, day: i64) {
        if let Some(w) = self.writers.remove(&day)
            && let Err(e) = w.writer.wait_merging_threads()
        {
            tracing::warn!(error = %e, day = %day_name(day), "index merge did not finish");
        }
    }

    /// Closes every writer (at shutdown).
    pub fn finish(mut self) {
        let days: Vec<i64> = self.writers.keys().copied().collect();
        for d in days {
            self.close(d);
        }
    }

    /// Deletes day indexes past `retention_days`, then the oldest days
    /// until the rest fit in `max_bytes`. Returns the days removed.
    pub fn retention(&mut self) -> usize {
        let today = crate::time::now_ms().div_euclid(86_400_000);
        let mut days = list_days(&self.root);
        let mut removed = 0;
        let mut total: u64 = days.iter().map(|(_, p)| folder_bytes(p)).sum();
        days.sort();
        for (day, path) in days {
            let too_old = day < today - i64::from(self.cfg.retention_days);
            if !too_old && total <= self.cfg.max_bytes {
                break;
            }
            let size = folder_bytes(&path);
            self.close(day);
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    total = total.saturating_sub(size);
                    removed += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "cannot remove an old index")
                }
            }
        }
        removed
    }
}

/// The day folders under an index root, as (day number, path).
pub fn list_days(root: &Path) -> Vec<(i64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            Some((parse_day(&name)?, e.path()))
        })
        .collect()
}

/// The bytes of a day index (a flat folder), as retention counts them.
pub fn folder_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |entries| {
        entries
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Format, SourceState, parse_line};
    use crate::search::Search;

    /// An sshd row at `day` (days since the epoch) plus `secs`.
    fn row(day: i64, secs: i64, user: &str) -> EventRow {
        let ms = day * 86_400_000 + secs * 1000;
        let stamp = crate::time::format_rfc3339(ms);
        let line = format!(
            "<38>1 {} bastion sshd 42 - - Invalid user {user} from 198.51.100.7 port 4000",
            &stamp[..19]
        );
        let mut state = SourceState::new(Format::Auto, ms);
        EventRow::from_event(&parse_line(&line, &mut state, 0))
    }

    #[test]
    fn days_evicted_from_the_open_writers_reopen_and_keep_every_row() {
        let root = std::env::temp_dir().join(format!("tp-index-lru-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cfg = SearchConfig {
            open_days: 1,
            ..SearchConfig::default()
        };
        let mut indexer = Indexer::new(root.clone(), cfg).unwrap();
        // three days in turn, then the first again: each switch closes a writer
        let days = [20_000, 20_001, 20_002, 20_000];
        for (i, day) in days.iter().enumerate() {
            indexer.add(&[
                row(*day, i as i64, &format!("u{i}")),
                row(*day, 100 + i as i64, "admin"),
            ]);
        }
        assert_eq!((indexer.indexed, indexer.failed), (8, 0));
        assert!(indexer.writers.len() <= 1);
        indexer.finish();
        let all = |query: &str| {
            Search {
                query: query.into(),
                since: None,
                until: None,
                limit: 100,
            }
            .run(&root)
            .unwrap()
        };
        assert_eq!(all("user.name:admin").len(), 4);
        let first_day = all("user.name:u0 OR user.name:u3");
        assert_eq!(first_day.len(), 2);
        // newest first
        assert!(first_day[0].timestamp_ms > first_day[1].timestamp_ms);
        assert_eq!(list_days(&root).len(), 3);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
