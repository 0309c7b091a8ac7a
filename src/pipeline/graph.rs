//! The stage graph: each stage a task, joined by bounded channels.
//!
//! ```text
//! sources (blocking readers) ─[lines]─> parse ─[events]─> dedupe ─> cluster
//!   ─> detect ─[findings]─> sinks (stdout, file, report)
//! ```
//! Every channel holds at most `channel_capacity` batches, so a slow stage
//! makes the one before it wait (backpressure), and no queue grows without
//! bound. When the sources end, each stage drains its input, flushes (detect
//! resolves its open windows) and closes its output, so shutdown loses
//! nothing. Each stage reports received / emitted / dropped-by-reason, and
//! `received + expanded == emitted + dropped` holds for every stage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::config::{PipelineSpec, SourceConfig};
use super::sinks::Sinks;
use super::stages::Stages;
use crate::cluster::Clusterer;
use crate::dedupe::Deduper;
use crate::detect::{Detector, Engine, EngineConfig};
use crate::event::Event;
use crate::finding::Finding;
use crate::parse::{SourceState, parse_into};

/// Outcome counts of one stage.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StageReport {
    pub stage: String,
    pub received: u64,
    /// Extra items a stage created (one webhook payload, many alerts).
    pub expanded: u64,
    pub emitted: u64,
    pub dropped: BTreeMap<String, u64>,
}

impl StageReport {
    fn new(stage: &str) -> StageReport {
        StageReport {
            stage: stage.to_owned(),
            ..StageReport::default()
        }
    }

    /// `received + expanded == emitted + dropped`.
    pub fn adds_up(&self) -> bool {
        self.received + self.expanded == self.emitted + self.dropped.values().sum::<u64>()
    }

    fn record(&self) {
        let stage = self.stage.clone();
        metrics::counter!(crate::metrics::STAGE_RECEIVED, "stage" => stage.clone())
            .increment(self.received);
        metrics::counter!(crate::metrics::STAGE_EMITTED, "stage" => stage.clone())
            .increment(self.emitted);
        for (reason, n) in &self.dropped {
            metrics::counter!(crate::metrics::STAGE_DROPPED, "stage" => stage.clone(), "reason" => reason.clone()).increment(*n);
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Default, serde::Serialize)]
pub struct RunSummary {
    pub stages: Vec<StageReport>,
    pub findings: usize,
    pub finding_versions: usize,
    pub templates: usize,
    pub parse_failures: u64,
    pub evicted_keys: u64,
    /// Read-to-emit latency of opened findings (threshold crossings), milliseconds.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub elapsed_secs: f64,
}

/// A batch of raw lines from one source file.
struct RawBatch {
    source: usize,
    lines: Vec<String>,
    read_ns: u64,
}

/// Monotonic nanoseconds since the first call (for latency).
pub fn mono_ns() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A source file resolved to its parser state.
pub struct SourceInput {
    pub path: Option<String>,
    pub state: SourceState,
    /// Read at most this many lines per second (replay at a given speed);
    /// batches are then sent every 10 ms instead of when full.
    pub pace_lines_per_sec: Option<f64>,
}

/// Expands the pipeline's sources into one input per file (or stdin).
pub fn inputs(spec: &PipelineSpec, reference_ms: i64) -> Vec<SourceInput> {
    let mut out = Vec::new();
    for src in &spec.sources {
        match src {
            SourceConfig::File {
                paths,
                format,
                dataset,
                host,
                json_mapping,
                ..
            } => {
                for p in paths {
                    let mut state = SourceState::new(*format, reference_ms);
                    state.dataset_hint = dataset.as_deref().map(Arc::from);
                    state.host_hint = host.as_deref().map(Arc::from);
                    state.json = json_mapping.clone();
                    state.file_path = Some(Arc::from(p.as_str()));
                    out.push(SourceInput {
                        path: Some(p.clone()),
                        state,
                        pace_lines_per_sec: None,
                    });
                }
            }
            // a NATS source is a long-lived worker, not a graph input
            SourceConfig::Nats(_) => {}
            SourceConfig::Stdin {
                format, dataset, ..
            } => {
                let mut state = SourceState::new(*format, reference_ms);
                state.dataset_hint = dataset.as_deref().map(Arc::from);
                out.push(SourceInput {
                    path: None,
                    state,
                    pace_lines_per_sec: None,
                });
            }
        }
    }
    for (i, input) in out.iter_mut().enumerate() {
        input.state.time_domain = i as u32;
    }
    out
}

/// Runs the graph to the end of its inputs.
pub async fn run(
    spec: &PipelineSpec,
    inputs: Vec<SourceInput>,
    detectors: Vec<Detector>,
    sinks: Sinks,
) -> anyhow::Result<RunSummary> {
    crate::metrics::describe();
    let started = Instant::now();
    let cap = spec.channel_capacity;
    let batch_size = spec.batch_size;
    let (raw_tx, mut raw_rx) = mpsc::channel::<RawBatch>(cap);
    let (parsed_tx, mut parsed_rx) = mpsc::channel::<Vec<Event>>(cap);
    let (deduped_tx, mut deduped_rx) = mpsc::channel::<Vec<Event>>(cap);
    let (clustered_tx, mut clustered_rx) = mpsc::channel::<Vec<Event>>(cap);
    let (findings_tx, mut findings_rx) = mpsc::channel::<Vec<Finding>>(cap);

    // sources: blocking readers, one after another per input (files replay in turn)
    let paths: Vec<Option<String>> = inputs.iter().map(|i| i.path.clone()).collect();
    let paces: Vec<Option<f64>> = inputs.iter().map(|i| i.pace_lines_per_sec).collect();
    let mut states: Vec<SourceState> = inputs.into_iter().map(|i| i.state).collect();
    let source = tokio::task::spawn_blocking(move || -> anyhow::Result<StageReport> {
        let mut rep = StageReport::new("source");
        for (i, path) in paths.iter().enumerate() {
            let reader: Box<dyn std::io::BufRead> = match path {
                Some(p) => match std::fs::File::open(p) {
                    Ok(f) => Box::new(std::io::BufReader::with_capacity(1 << 16, f)),
                    Err(e) => anyhow::bail!("cannot open {p}: {e}"),
                },
                None => Box::new(std::io::BufReader::new(std::io::stdin())),
            };
            let mut lines = Vec::with_capacity(batch_size);
            let mut closed = false;
            let pace = paces[i].filter(|p| *p > 0.0);
            let started = Instant::now();
            let mut read = 0u64;
            let mut next_flush = std::time::Duration::from_millis(10);
            crate::cli_support::for_each_record(path.as_deref(), reader, |l| {
                rep.received += 1;
                if closed {
                    *rep.dropped.entry("downstream_closed".into()).or_default() += 1;
                    return;
                }
                if let Some(p) = pace {
                    // hold each line until its time comes, as a live stream would deliver it
                    let due = std::time::Duration::from_secs_f64(read as f64 / p);
                    if let Some(wait) = due.checked_sub(started.elapsed())
                        && wait > std::time::Duration::from_micros(200)
                    {
                        std::thread::sleep(wait);
                    }
                    read += 1;
                }
                lines.push(l.to_owned());
                let flush_due = pace.is_some() && started.elapsed() >= next_flush;
                if flush_due {
                    next_flush = started.elapsed() + std::time::Duration::from_millis(10);
                }
                if lines.len() >= batch_size || flush_due {
                    let n = lines.len() as u64;
                    let b = RawBatch {
                        source: i,
                        lines: std::mem::replace(&mut lines, Vec::with_capacity(batch_size)),
                        read_ns: mono_ns(),
                    };
                    if raw_tx.blocking_send(b).is_err() {
                        closed = true;
                        *rep.dropped.entry("downstream_closed".into()).or_default() += n;
                    } else {
                        rep.emitted += n;
                    }
                }
            })
            .map_err(|e| {
                anyhow::anyhow!("cannot read {}: {e}", path.as_deref().unwrap_or("stdin"))
            })?;
            if !lines.is_empty() {
                let n = lines.len() as u64;
                if raw_tx
                    .blocking_send(RawBatch {
                        source: i,
                        lines,
                        read_ns: mono_ns(),
                    })
                    .is_ok()
                {
                    rep.emitted += n;
                } else {
                    *rep.dropped.entry("downstream_closed".into()).or_default() += n;
                }
            }
        }
        Ok(rep)
    });

    let parse = tokio::spawn(async move {
        let mut rep = StageReport::new("parse");
        let mut failures = 0u64;
        while let Some(b) = raw_rx.recv().await {
            metrics::gauge!(crate::metrics::STAGE_QUEUE_DEPTH, "stage" => "parse")
                .set(raw_rx.len() as f64);
            let now = crate::time::now_ms();
            let state = &mut states[b.source];
            let mut events = Vec::with_capacity(b.lines.len());
            rep.received += b.lines.len() as u64;
            for line in &b.lines {
                let before = events.len();
                parse_into(line, state, now, &mut events);
                rep.expanded += (events.len() - before).saturating_sub(1) as u64;
                if events.len() == before {
                    *rep.dropped.entry("empty".into()).or_default() += 1;
                }
            }
            for ev in &mut events {
                ev.read_ns = b.read_ns;
                failures += ev.parse_error.is_some() as u64;
            }
            rep.emitted += events.len() as u64;
            if parsed_tx.send(events).await.is_err() {
                break;
            }
        }
        metrics::counter!(crate::metrics::PARSE_FAILURES).increment(failures);
        (rep, failures)
    });

    let dedupe_cfg = spec.transforms.dedupe.clone();
    let dedupe = tokio::spawn(async move {
        let mut rep = StageReport::new("dedupe");
        let mut d = Deduper::new(dedupe_cfg.window_ms, dedupe_cfg.max_alert_keys);
        while let Some(batch) = parsed_rx.recv().await {
            metrics::gauge!(crate::metrics::STAGE_QUEUE_DEPTH, "stage" => "dedupe")
                .set(parsed_rx.len() as f64);
            let mut out = Vec::with_capacity(batch.len());
            let s = d.process(batch, &mut out);
            rep.received += s.received;
            rep.emitted += s.emitted;
            *rep.dropped.entry("merged_duplicate".into()).or_default() += s.merged;
            *rep.dropped.entry("alert_resend".into()).or_default() += s.alert_resends;
            if deduped_tx.send(out).await.is_err() {
                break;
            }
        }
        rep
    });

    let cluster_cfg = spec.transforms.cluster.clone();
    let cluster = tokio::spawn(async move {
        let mut rep = StageReport::new("cluster");
        let mut c = Clusterer::new(cluster_cfg);
        while let Some(mut batch) = deduped_rx.recv().await {
            metrics::gauge!(crate::metrics::STAGE_QUEUE_DEPTH, "stage" => "cluster")
                .set(deduped_rx.len() as f64);
            rep.received += batch.len() as u64;
            c.process(&mut batch);
            rep.emitted += batch.len() as u64;
            if clustered_tx.send(batch).await.is_err() {
                break;
            }
        }
        metrics::gauge!(crate::metrics::TEMPLATES).set(c.template_count() as f64);
        (rep, c.template_count())
    });

    let engine_cfg = EngineConfig {
        max_keys: spec.detect.max_keys,
        allowed_lateness_ms: spec.detect.allowed_lateness_secs as i64 * 1000,
        execution_id: format!("exec-{}", crate::time::now_ms()),
    };
    let detect = tokio::spawn(async move {
        let mut rep = StageReport::new("detect");
        let mut engine = Engine::new(detectors, engine_cfg);
        while let Some(batch) = clustered_rx.recv().await {
            metrics::gauge!(crate::metrics::STAGE_QUEUE_DEPTH, "stage" => "detect")
                .set(clustered_rx.len() as f64);
            let mut findings = Vec::new();
            for ev in &batch {
                engine.process(ev, &mut findings);
            }
            metrics::gauge!(crate::metrics::DETECT_TRACKED_KEYS).set(engine.tracked_keys() as f64);
            if !findings.is_empty() && findings_tx.send(findings).await.is_err() {
                break;
            }
        }
        let mut findings = Vec::new();
        engine.flush(&mut findings);
        if !findings.is_empty() {
            let _ = findings_tx.send(findings).await;
        }
        let s = engine.stats().clone();
        rep.received = s.events;
        rep.emitted = s.evaluated;
        rep.dropped.insert("late".into(), s.late);
        (rep, s)
    });

    let sink = tokio::spawn(async move {
        let mut sinks = sinks;
        let mut latencies = Vec::new();
        while let Some(batch) = findings_rx.recv().await {
            metrics::gauge!(crate::metrics::STAGE_QUEUE_DEPTH, "stage" => "sink")
                .set(findings_rx.len() as f64);
            let now = mono_ns();
            for f in batch {
                // latency is from the event that crossed the threshold to its finding
                if f.status == crate::finding::Status::Open {
                    latencies.push(now.saturating_sub(f.trigger_read_ns) as f64 / 1e6);
                }
                metrics::counter!(crate::metrics::FINDINGS_EMITTED, "detector" => f.detector.id.clone()).increment(1);
                sinks.accept(f)?;
            }
        }
        let rep = sinks.finish()?;
        Ok::<_, anyhow::Error>((rep, latencies))
    });

    let source_rep = source.await??;
    let (parse_rep, failures) = parse.await?;
    let dedupe_rep = dedupe.await?;
    let (cluster_rep, templates) = cluster.await?;
    let (detect_rep, engine_stats) = detect.await?;
    let ((sink_rep, findings, versions), mut latencies) = sink.await??;
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let stages = vec![
        source_rep,
        parse_rep,
        dedupe_rep,
        cluster_rep,
        detect_rep,
        sink_rep,
    ];
    stages.iter().for_each(StageReport::record);
    Ok(RunSummary {
        stages,
        findings,
        finding_versions: versions,
        templates,
        parse_failures: failures,
        evicted_keys: engine_stats.evicted_keys,
        latency_p50_ms: pct(0.50),
        latency_p99_ms: pct(0.99),
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

/// Each finding once, in its final state, in order of first emission.
pub fn final_states(versions: Vec<Finding>) -> Vec<Finding> {
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut out: Vec<Finding> = Vec::new();
    for f in versions {
        match index.get(&f.finding_id) {
            Some(&i) => out[i] = f,
            None => {
                index.insert(f.finding_id.clone(), out.len());
                out.push(f);
            }
        }
    }
    out
}

/// Single-threaded run over lines already in memory (fixtures, per-core
/// bench); returns every finding version in emission order. `ingested_ms`
/// is the ingestion instant, which is also the event time of lines that
/// carry none: pin it and the run is reproducible.
pub fn run_inline(
    spec: &PipelineSpec,
    inputs: &mut [(SourceState, Vec<String>)],
    detectors: Vec<Detector>,
    ingested_ms: i64,
) -> Vec<Finding> {
    let mut stages = Stages::new(spec, detectors, "exec-inline".into());
    let mut findings = Vec::new();
    let now = ingested_ms;
    for (state, lines) in inputs.iter_mut() {
        for chunk in lines.chunks(spec.batch_size.max(1)) {
            let mut events = Vec::with_capacity(chunk.len());
            for l in chunk {
                parse_into(l, state, now, &mut events);
            }
            stages.process(events, &mut findings);
        }
    }
    stages.engine.flush(&mut findings);
    findings
}
