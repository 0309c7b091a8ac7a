//! `threatpilot bench --clickhouse-url URL`: rows per second inserted into
//! ClickHouse by the store's own insert path (RowBinary over HTTP, batches
//! of `--batch-rows`), into a scratch database that is dropped after.
//! The rows are the simulated traffic's events, parsed and converted
//! before timing, so the figure is the insert alone.

use std::process::ExitCode;
use std::time::Instant;

use super::bench::median;
use crate::parse::{Format, SourceState, parse_into};
use crate::simulate::{SimConfig, generate};
use crate::store::clickhouse::Clickhouse;
use crate::store::{ClickhouseSinkConfig, EventRow};

pub struct ClickhouseBench {
    pub events: usize,
    pub runs: usize,
    pub url: String,
    pub batch_rows: usize,
    pub json: bool,
}

#[derive(serde::Serialize)]
struct Report {
    rows: usize,
    batch_rows: usize,
    server_version: String,
    rows_per_sec: f64,
    mib_per_sec: f64,
}

/// The simulated traffic's events as stored rows, built before any timing.
pub(super) fn simulated_rows(events: usize) -> Vec<EventRow> {
    let (lines, _) = generate(&SimConfig {
        events,
        seed: 7,
        events_per_sec: 500.0,
    });
    let now = crate::time::now_ms();
    let mut state = SourceState::new(Format::Auto, now);
    let mut parsed = Vec::with_capacity(lines.len());
    for l in &lines {
        parse_into(&l.text, &mut state, now, &mut parsed);
    }
    parsed.iter().map(EventRow::from_event).collect()
}

pub fn run(args: ClickhouseBench) -> anyhow::Result<ExitCode> {
    let rows = simulated_rows(args.events);
    // identical lines at the same instant share an id and collapse (the
    // pipeline's dedupe stage would have merged them already)
    let distinct = rows
        .iter()
        .map(|r| r.event_id.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len();
    let bytes: usize = rows
        .iter()
        .map(|r| r.original.len() + r.message.len() + 200)
        .sum();
    let cfg: ClickhouseSinkConfig = serde_json::from_value(serde_json::json!({
        "url": args.url,
        "database": "threatpilot_bench",
    }))?;
    let rt = super::runtime()?;
    let mut rates = Vec::new();
    let version = rt.block_on(async {
        let ch = Clickhouse::connect(&cfg).await?;
        for _ in 0..args.runs.max(1) {
            ch.execute("DROP DATABASE IF EXISTS {db}").await?;
            ch.migrate().await?;
            let t = Instant::now();
            for chunk in rows.chunks(args.batch_rows.max(1)) {
                ch.insert("events", chunk).await?;
            }
            rates.push(t.elapsed().as_secs_f64());
            let n = ch
                .count("SELECT count() AS n FROM {db}.events FINAL")
                .await?;
            anyhow::ensure!(
                n as usize == distinct,
                "{n} of {distinct} distinct rows arrived"
            );
        }
        ch.execute("DROP DATABASE IF EXISTS {db}").await?;
        Ok::<_, anyhow::Error>(format!("{}.{}", ch.version.0, ch.version.1))
    })?;
    let secs = median(rates);
    let r = Report {
        rows: rows.len(),
        batch_rows: args.batch_rows,
        server_version: version,
        rows_per_sec: rows.len() as f64 / secs,
        mib_per_sec: bytes as f64 / secs / (1 << 20) as f64,
    };
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "ClickHouse {} inserts: {} event rows in batches of {} (median of {} runs)",
            r.server_version,
            r.rows,
            r.batch_rows,
            args.runs.max(1)
        );
        println!(
            "  rows/s         {:>10.0} (about {:.0} MiB/s of row data)",
            r.rows_per_sec, r.mib_per_sec
        );
    }
    Ok(ExitCode::SUCCESS)
}
