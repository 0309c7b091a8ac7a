//! The Loki query source (batch mode): runs a LogQL log query against a
//! Loki server on a schedule and feeds the lines through the same stages.
//!
//! ```text
//! every `every_secs`:  [cursor, now - delay)  ─ query_range, forward, `limit` per page
//!                       page full? next page from its last timestamp
//!                       cursor = end of the range (only once every page was read)
//! ```
//! Loki's range is start-inclusive and end-exclusive, so consecutive runs
//! neither overlap nor leave a gap. A page boundary can split entries that
//! share a nanosecond: the next page starts at that instant again and skips
//! the entries already read there. `delay` leaves the newest seconds to the
//! next run, for lines still on their way into Loki. A failed request is
//! retried with backoff without moving the cursor, so nothing is missed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;

use super::config::LokiQueryConfig;
use super::{SourceStats, Stream};
use crate::flow::{Ingress, Origin, RawBatch};

#[derive(Deserialize)]
struct Answer {
    status: String,
    data: Data,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: Vec<ResultStream>,
}

#[derive(Deserialize)]
struct ResultStream {
    stream: BTreeMap<String, String>,
    values: Vec<(String, String)>,
}

/// One entry read, with its stream's labels.
struct Entry {
    ns: i64,
    labels: Arc<Vec<(String, String)>>,
    line: String,
}

/// Runs the query on its schedule until `stop`.
pub async fn run(
    cfg: LokiQueryConfig,
    ingress: Ingress,
    stats: Arc<SourceStats>,
    mut stop: watch::Receiver<bool>,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(source = cfg.id, error = %e, "loki query: no HTTP client");
            return;
        }
    };
    let token = cfg.token_env.as_deref().and_then(|v| std::env::var(v).ok());
    let now_ns = || crate::time::now_ms() as i128 * 1_000_000;
    let mut cursor = (now_ns() - cfg.lookback_secs as i128 * 1_000_000_000) as i64;
    let mut backoff = Duration::from_secs(1);
    loop {
        let end = (now_ns() - cfg.delay_secs as i128 * 1_000_000_000) as i64;
        let mut wait = Duration::from_secs(cfg.every_secs.max(1));
        if end > cursor {
            match read_range(
                &client,
                &cfg,
                token.as_deref(),
                cursor,
                end,
                &ingress,
                &stats,
            )
            .await
            {
                Ok(n) => {
                    metrics::counter!(crate::metrics::LOKI_QUERY_RUNS, "outcome" => "ok")
                        .increment(1);
                    tracing::info!(source = cfg.id, lines = n, "loki query run");
                    cursor = end;
                    backoff = Duration::from_secs(1);
                }
                Err(e) => {
                    metrics::counter!(crate::metrics::LOKI_QUERY_RUNS, "outcome" => "failed")
                        .increment(1);
                    tracing::warn!(source = cfg.id, error = %e, retry_in = ?backoff, "loki query failed");
                    wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = super::stopped(&mut stop) => return,
        }
    }
}

/// Reads `[start, end)` page by page into the graph; returns the lines read.
async fn read_range(
    client: &reqwest::Client,
    cfg: &LokiQueryConfig,
    token: Option<&str>,
    mut start: i64,
    end: i64,
    ingress: &Ingress,
    stats: &SourceStats,
) -> anyhow::Result<u64> {
    let limit = cfg.limit.max(1);
    let mut total = 0;
    // entries already read at the page boundary instant
    let mut seen_at_start: HashSet<u64> = HashSet::new();
    loop {
        let page = query(client, cfg, token, start, end, limit).await?;
        let full = page.len() >= limit;
        let last = page.iter().map(|e| e.ns).max();
        let fresh: Vec<Entry> = page
            .into_iter()
            .filter(|e| e.ns != start || !seen_at_start.contains(&entry_key(e)))
            .collect();
        let mut next_seen = HashSet::new();
        if let Some(last) = last {
            next_seen = fresh
                .iter()
                .filter(|e| e.ns == last)
                .map(entry_key)
                .collect();
            if last == start {
                next_seen.extend(seen_at_start.iter().copied());
            }
        }
        total += hand_on(cfg, fresh, ingress, stats).await?;
        match last {
            Some(last) if full => {
                if last == start && next_seen.len() <= seen_at_start.len() {
                    // more entries share one nanosecond than a page holds
                    anyhow::bail!("more than {limit} entries at one instant: raise limit");
                }
                start = last;
                seen_at_start = next_seen;
            }
            _ => return Ok(total),
        }
    }
}

fn entry_key(e: &Entry) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (k, v) in e.labels.iter() {
        h.update(k.as_bytes());
        h.update(&[0]);
        h.update(v.as_bytes());
        h.update(&[1]);
    }
    h.update(e.line.as_bytes());
    h.digest()
}

async fn query(
    client: &reqwest::Client,
    cfg: &LokiQueryConfig,
    token: Option<&str>,
    start: i64,
    end: i64,
    limit: usize,
) -> anyhow::Result<Vec<Entry>> {
    let url = format!("{}/loki/api/v1/query_range", cfg.url.trim_end_matches('/'));
    let mut req = client.get(&url).query(&[
        ("query", cfg.query.as_str()),
        ("start", &start.to_string()),
        ("end", &end.to_string()),
        ("limit", &limit.to_string()),
        ("direction", "forward"),
    ]);
    if let Some(t) = &cfg.tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        anyhow::bail!("{url}: HTTP {status}: {}", body.trim());
    }
    let a: Answer = resp.json().await?;
    if a.status != "success" || a.data.result_type != "streams" {
        anyhow::bail!(
            "{url}: status {:?}, result type {:?} (a log query, not a metric query, is needed)",
            a.status,
            a.data.result_type
        );
    }
    let mut out = Vec::new();
    for s in a.data.result {
        let labels = Arc::new(s.stream.into_iter().collect::<Vec<_>>());
        for (ts, line) in s.values {
            let ns = ts
                .parse()
                .map_err(|_| anyhow::anyhow!("{url}: timestamp {ts:?} is not nanoseconds"))?;
            out.push(Entry {
                ns,
                labels: labels.clone(),
                line,
            });
        }
    }
    out.sort_by_key(|e| e.ns);
    Ok(out)
}

/// Sends entries grouped by stream, in time order within each.
async fn hand_on(
    cfg: &LokiQueryConfig,
    entries: Vec<Entry>,
    ingress: &Ingress,
    stats: &SourceStats,
) -> anyhow::Result<u64> {
    let n = entries.len() as u64;
    if n == 0 {
        return Ok(0);
    }
    let mut by_stream: BTreeMap<Vec<(String, String)>, RawBatch> = BTreeMap::new();
    for e in entries {
        let b = by_stream
            .entry(e.labels.as_ref().clone())
            .or_insert_with(|| {
                let st = Stream::from_labels(
                    &cfg.id,
                    cfg.tenant.as_deref(),
                    e.labels.as_ref().clone(),
                    cfg.format,
                    &cfg.json_mapping,
                );
                RawBatch::lines(Origin::Stream(Arc::new(st)), crate::flow::Lines::default())
            });
        b.lines.push(&e.line);
        b.times.push(e.ns / 1_000_000);
    }
    if ingress
        .send_all(by_stream.into_values().collect())
        .await
        .is_err()
    {
        stats.dropped("shutting_down", n);
        anyhow::bail!("the pipeline is shutting down");
    }
    stats.emitted(n);
    Ok(n)
}
