//! `threatpilot bench --search`: events per second indexed by the embedded
//! store's search indexer (the same [`Indexer`], batches of `--batch-rows`,
//! commits and the merges they start included), the index's bytes per
//! event, and how long `threatpilot search` takes for typical queries over
//! the result. The rows are the simulated traffic's events, built before
//! timing; the index is written to a scratch folder, removed after.

use std::process::ExitCode;
use std::time::Instant;

use super::bench::median;
use super::bench_clickhouse::simulated_rows;
use crate::search::index::{folder_bytes, list_days};
use crate::search::{Indexer, Search, SearchConfig};

pub struct SearchBench {
    pub events: usize,
    pub runs: usize,
    pub batch_rows: usize,
    pub json: bool,
}

/// Queries an analyst runs against the simulated traffic.
const QUERIES: &[&str] = &[
    "source.ip:203.0.113.50",
    "event.dataset:sshd AND \"invalid user\"",
    "http.response.status_code:[500 TO 599]",
    "url.path:/api*",
];

#[derive(serde::Serialize)]
struct QueryTime {
    query: &'static str,
    hits: usize,
    ms: f64,
}

#[derive(serde::Serialize)]
struct Report {
    rows: usize,
    batch_rows: usize,
    rows_per_sec: f64,
    index_bytes: u64,
    bytes_per_event: f64,
    /// Limit 100, newest first, opening the index each time as the CLI does.
    queries: Vec<QueryTime>,
}

pub fn run(args: SearchBench) -> anyhow::Result<ExitCode> {
    let rows = simulated_rows(args.events);
    let root =
        std::env::temp_dir().join(format!("threatpilot-bench-search-{}", std::process::id()));
    let runs = args.runs.max(1);
    let mut secs = Vec::with_capacity(runs);
    let mut index_bytes = 0;
    for _ in 0..runs {
        let _ = std::fs::remove_dir_all(&root);
        let mut indexer = Indexer::new(root.clone(), SearchConfig::default())?;
        let t = Instant::now();
        for chunk in rows.chunks(args.batch_rows.max(1)) {
            indexer.add(chunk);
        }
        let (indexed, failed) = (indexer.indexed, indexer.failed);
        indexer.finish();
        secs.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(
            indexed as usize == rows.len() && failed == 0,
            "{indexed} of {} rows indexed, {failed} failed",
            rows.len()
        );
        index_bytes = list_days(&root).iter().map(|(_, p)| folder_bytes(p)).sum();
    }
    let mut queries = Vec::with_capacity(QUERIES.len());
    for &query in QUERIES {
        let search = Search {
            query: query.to_owned(),
            since: None,
            until: None,
            limit: 100,
        };
        let mut times = Vec::with_capacity(5);
        let mut hits = 0;
        for _ in 0..5 {
            let t = Instant::now();
            hits = search.run(&root)?.len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        queries.push(QueryTime {
            query,
            hits,
            ms: median(times),
        });
    }
    let _ = std::fs::remove_dir_all(&root);
    let r = Report {
        rows: rows.len(),
        batch_rows: args.batch_rows,
        rows_per_sec: rows.len() as f64 / median(secs),
        index_bytes,
        bytes_per_event: index_bytes as f64 / rows.len().max(1) as f64,
        queries,
    };
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "search index: {} event rows in batches of {} (median of {runs} runs)",
            r.rows, r.batch_rows
        );
        println!("  events/s       {:>10.0}", r.rows_per_sec);
        println!(
            "  index size     {:>10.1} MiB ({:.0} bytes per event)",
            r.index_bytes as f64 / (1 << 20) as f64,
            r.bytes_per_event
        );
        for q in &r.queries {
            println!("  {:>8.1} ms  {:>4} hits  {}", q.ms, q.hits, q.query);
        }
    }
    Ok(ExitCode::SUCCESS)
}
