//! The stage graph: each stage a task, joined by bounded channels.
//!
//! ```text
//! files, stdin ──────┐
//! Loki push, webhooks ├─[Ingress: raw lines]─> parse ─[events]─> dedupe
//! syslog, Loki query ─┘        ─> cluster ─> detect ─[findings]─> sinks
//! ```
//! Sources only hold an [`Ingress`]: files are read on a blocking thread,
//! pushers (HTTP, syslog) send from their handlers, and the graph runs until
//! the last ingress is dropped. Pushed lines keep their stream's identity
//! ([`Origin::Stream`]), so each stream has its own parser state and
//! event-time domain, as each file does.
//! The sources' channel and the findings' channel hold at most
//! `channel_capacity` items, and each channel between stages one batch,
//! so a slow stage makes the one before it wait (backpressure), and no
//! queue grows without bound. One batch between stages, not several,
//! because the stage after the slowest one would otherwise take each
//! batch long after it was made, its events and lines gone from the cache
//! by then: a stage now takes a batch soon after the one before made it,
//! often on the same thread (the runtime runs the task a send wakes
//! next), and fewer batches are held at once. A file's last batch is
//! marked as its input's end, and detect resolves that file's findings
//! after its events (its time domain ends: nothing more can fall in its
//! windows). When the sources end, each stage drains its input, flushes
//! (detect resolves its open windows) and closes its output, so shutdown
//! loses nothing. Each stage reports received / emitted /
//! dropped-by-reason and how long it was busy, and
//! `received + expanded == emitted + dropped` holds for every stage.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::config::{PipelineSpec, SourceConfig};
use super::sinks::Sinks;
use super::stages::Stages;
use crate::cluster::Clusterer;
use crate::dedupe::Deduper;
use crate::detect::{Detector, Engine, EngineConfig};
use crate::event::Event;
use crate::finding::Finding;
pub use crate::flow::{
    Board, Ingress, Lines, Origin, RawBatch, Refused, StageReport, Stream, mono_ns,
};
use crate::name::Name;
use crate::parse::{SourceState, bound_to_receipt, parse_line_of};

/// Batches a channel between two stages holds (see the module's docs).
const HANDOFF: usize = 1;

/// Emptied event batches held for reuse by the parse stage.
const SPARE_BATCHES: usize = 4;

/// Final versions the detect stage sends at a time when its input ends.
const FLUSH_PART: usize = 4096;

/// A stage's counters, kept in its report and recorded as metrics as they
/// happen, so a long-running pipeline's `/metrics` is live.
struct Live {
    stage: &'static str,
    rep: StageReport,
    board: Board,
}

impl Live {
    fn new(stage: &'static str) -> Live {
        Live::on(stage, Board::default())
    }

    /// A stage whose counts are also posted to `board` after each batch.
    fn on(stage: &'static str, board: Board) -> Live {
        Live {
            stage,
            rep: StageReport::new(stage),
            board,
        }
    }

    fn post(&self) {
        self.board.post(&self.rep);
    }

    fn adjust(&mut self, reason: &'static str, n: u64) {
        if n > 0 {
            *self.rep.adjusted.entry(reason.into()).or_default() += n;
            metrics::counter!(crate::metrics::STAGE_ADJUSTED, "stage" => self.stage, "reason" => reason)
                .increment(n);
        }
    }

    fn count(&mut self, received: u64, expanded: u64, emitted: u64) {
        self.rep.received += received;
        self.rep.expanded += expanded;
        self.rep.emitted += emitted;
        metrics::counter!(crate::metrics::STAGE_RECEIVED, "stage" => self.stage)
            .increment(received);
        metrics::counter!(crate::metrics::STAGE_EMITTED, "stage" => self.stage).increment(emitted);
    }

    fn drop(&mut self, reason: &'static str, n: u64) {
        *self.rep.dropped.entry(reason.into()).or_default() += n;
        if n > 0 {
            metrics::counter!(crate::metrics::STAGE_DROPPED, "stage" => self.stage, "reason" => reason)
                .increment(n);
        }
    }

    /// Adds the time since `since` to the stage's busy time.
    fn busy(&mut self, since: Instant) {
        let us = since.elapsed().as_micros() as u64;
        self.rep.busy_us += us;
        metrics::counter!(crate::metrics::STAGE_BUSY, "stage" => self.stage).increment(us);
    }

    fn queue(&self, depth: usize) {
        metrics::gauge!(crate::metrics::STAGE_QUEUE_DEPTH, "stage" => self.stage).set(depth as f64);
    }
}

/// What a finished run reports.
#[derive(Debug, Default, serde::Serialize)]
pub struct RunSummary {
    /// source (all sources together), parse, dedupe, cluster, detect, sink.
    pub stages: Vec<StageReport>,
    /// Each source on its own (files, Loki push, syslog, …).
    pub sources: Vec<StageReport>,
    pub findings: usize,
    pub finding_versions: usize,
    /// Templates the miner holds at the end.
    pub templates: usize,
    /// Template ids given out (a template that generalised has had more
    /// than one): what the stores' `templates_latest` holds a row for.
    pub template_versions: usize,
    pub parse_failures: u64,
    pub evicted_keys: u64,
    /// Read-to-emit latency of opened findings (threshold crossings),
    /// milliseconds; zero where sinks read final states only (no open
    /// version is made then).
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub elapsed_secs: f64,
}

/// A bounded input resolved to its parser state: a file, the files of a
/// rotation set read as one stream (oldest first, see
/// [`crate::rotation`]), or stdin.
pub struct SourceInput {
    /// The files read one after another; empty for stdin.
    pub paths: Vec<String>,
    pub state: SourceState,
    /// Read at most this many lines per second (replay at a given speed);
    /// batches are then sent every 10 ms instead of when full.
    pub pace_lines_per_sec: Option<f64>,
}

/// Expands the pipeline's file and stdin sources into one input per file
/// (per rotation set); push and NATS sources are started by the caller.
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
                for set in crate::rotation::streams(paths) {
                    let mut state = SourceState::new(*format, reference_ms);
                    state.dataset_hint = dataset.as_deref().map(Name::new);
                    state.host_hint = host.as_deref().map(Name::new);
                    state.json = json_mapping.clone();
                    state.file_path = set.first().map(|p| Name::new(p));
                    out.push(SourceInput {
                        paths: set,
                        state,
                        pace_lines_per_sec: None,
                    });
                }
            }
            SourceConfig::Stdin {
                format, dataset, ..
            } => {
                let mut state = SourceState::new(*format, reference_ms);
                state.dataset_hint = dataset.as_deref().map(Name::new);
                out.push(SourceInput {
                    paths: Vec::new(),
                    state,
                    pace_lines_per_sec: None,
                });
            }
            // long-lived sources, not files
            SourceConfig::Nats(_)
            | SourceConfig::LokiPush(_)
            | SourceConfig::Alertmanager(_)
            | SourceConfig::Syslog(_)
            | SourceConfig::LokiQuery(_) => {}
        }
    }
    for (i, input) in out.iter_mut().enumerate() {
        input.state.time_domain = i as u32;
    }
    out
}

/// Runs the graph over files to their end.
pub async fn run(
    spec: &PipelineSpec,
    inputs: Vec<SourceInput>,
    detectors: Vec<Detector>,
    sinks: Sinks,
) -> anyhow::Result<RunSummary> {
    let (paths, states): (Vec<_>, Vec<_>) = inputs
        .into_iter()
        .map(|i| ((i.paths, i.pace_lines_per_sec), i.state))
        .unzip();
    let (ingress, graph) = start(spec, states, detectors, sinks)?;
    let files = spawn_files(paths, spec.batch_size, ingress);
    let rep = files.await??;
    graph.finish(vec![rep]).await
}

/// Reads files (or stdin) one after another into the graph, on a blocking
/// thread; input `i` is `Origin::Input(i)`, and the files of one input (a
/// rotation set) are read in turn as one stream. Small files travel together:
/// a file's last lines wait for the next file's first ones until a batch's
/// worth is gathered, so a thousand 200-line files (a load balancer's
/// five-minute logs) cross the stages in a few hundred hand-offs rather
/// than thousands; each file's findings still resolve right after its own
/// last event (see the detect stage).
pub fn spawn_files(
    inputs: Vec<(Vec<String>, Option<f64>)>,
    batch_size: usize,
    ingress: Ingress,
) -> tokio::task::JoinHandle<anyhow::Result<StageReport>> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<StageReport> {
        let mut live = Live::new("source");
        // bytes for the next batch: about what the last one held (files
        // of one kind have lines of about one length)
        let mut room = 0;
        let mut gathered = Gathered::default();
        let mut closed = false;
        // busy: reading and splitting, not waiting for the parser
        let mut since = Instant::now();
        let send =
            |batches: Vec<RawBatch>, live: &mut Live, closed: &mut bool, since: &mut Instant| {
                let n: u64 = batches.iter().map(|b| b.lines.len() as u64).sum();
                live.busy(*since);
                let refused = *closed || ingress.blocking_send_all(batches).is_err();
                *since = Instant::now();
                if refused {
                    *closed = true;
                    live.count(n, 0, 0);
                    live.drop("downstream_closed", n);
                } else {
                    live.count(n, 0, n);
                }
            };
        // a file that cannot be opened or read ends the reading; the files
        // before it were read whole, and what it gave before the error goes
        // on with them before the error is told
        let mut failure = None;
        'inputs: for (i, (paths, pace)) in inputs.iter().enumerate() {
            let pace = pace.filter(|p| *p > 0.0);
            let started = Instant::now();
            let mut read = 0u64;
            let mut next_flush = Duration::from_millis(10);
            // stdin where no file is named
            let files: Vec<Option<&str>> = match paths.as_slice() {
                [] => vec![None],
                paths => paths.iter().map(|p| Some(p.as_str())).collect(),
            };
            for (n, path) in files.iter().copied().enumerate() {
                // which file a batch is from, where the input reads several
                let file = (files.len() > 1).then(|| crate::name::Name::new(path.unwrap_or("-")));
                let reader = match open_input(path) {
                    Ok(r) => r,
                    Err(e) => {
                        failure = Some(e);
                        break 'inputs;
                    }
                };
                let mut lines = Lines::with_capacity(batch_size, room);
                let outcome = crate::cli_support::for_each_record(path, reader, |l| {
                    if let Some(p) = pace {
                        // hold each line until its time comes, as a live stream would deliver it
                        let due = Duration::from_secs_f64(read as f64 / p);
                        if let Some(wait) = due.checked_sub(started.elapsed())
                            && wait > Duration::from_micros(200)
                        {
                            std::thread::sleep(wait);
                        }
                        read += 1;
                    }
                    lines.push(l);
                    let flush_due = pace.is_some() && started.elapsed() >= next_flush;
                    if flush_due {
                        next_flush = started.elapsed() + Duration::from_millis(10);
                    }
                    if lines.len() >= batch_size || flush_due {
                        room = lines.bytes() + lines.bytes() / 8;
                        let full =
                            std::mem::replace(&mut lines, Lines::with_capacity(batch_size, room));
                        // what was gathered goes first and alone: a group over a
                        // batch is cut, and the files in it end with its last part
                        if let Some(group) = gathered.drain() {
                            send(group, &mut live, &mut closed, &mut since);
                        }
                        let batch = RawBatch::lines(Origin::Input(i), full).from_file(file.clone());
                        send(vec![batch], &mut live, &mut closed, &mut since);
                    }
                })
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.unwrap_or("stdin")));
                room = room.max(lines.bytes() + lines.bytes() / 8);
                let mut batch = RawBatch::lines(Origin::Input(i), lines).from_file(file);
                // the end of the input, even with no line left to send: its
                // windows close once the lines before are evaluated
                if n + 1 == files.len() || outcome.is_err() {
                    batch = batch.ending();
                }
                // a paced input is a live stream's stand-in: it waits for no one
                if pace.is_some() {
                    send(vec![batch], &mut live, &mut closed, &mut since);
                } else if let Some(group) = gathered.add(batch, batch_size) {
                    send(group, &mut live, &mut closed, &mut since);
                }
                if let Err(e) = outcome {
                    failure = Some(e);
                    break 'inputs;
                }
            }
        }
        if let Some(group) = gathered.drain() {
            send(group, &mut live, &mut closed, &mut since);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(live.rep),
        }
    })
}

/// A file (stdin for None), inflated where it is gzip.
fn open_input(path: Option<&str>) -> anyhow::Result<Box<dyn std::io::BufRead>> {
    let read = match path {
        Some(p) => match std::fs::File::open(p) {
            Ok(f) => crate::cli_support::read_file(f),
            Err(e) => anyhow::bail!("cannot open {p}: {e}"),
        },
        None => crate::cli_support::inflated(Box::new(std::io::BufReader::new(std::io::stdin()))),
    };
    read.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.unwrap_or("stdin")))
}

/// The ends of small files waiting to travel together (see [`spawn_files`]).
#[derive(Default)]
struct Gathered {
    batches: Vec<RawBatch>,
    lines: usize,
}

impl Gathered {
    /// Adds a file's last batch; returns a group to send once a batch's
    /// worth is gathered. A group never grows past a batch by gathering
    /// (the parse stage would cut it, and every file in it would end with
    /// its last part): what was there leaves first.
    fn add(&mut self, batch: RawBatch, batch_size: usize) -> Option<Vec<RawBatch>> {
        let n = batch.lines.len();
        let out = if self.lines + n > batch_size {
            self.drain()
        } else {
            None
        };
        self.lines += n;
        self.batches.push(batch);
        match out {
            Some(out) => Some(out),
            None if self.lines >= batch_size => Some(self.take()),
            None => None,
        }
    }

    /// What is gathered, if anything, emptied.
    fn drain(&mut self) -> Option<Vec<RawBatch>> {
        (!self.batches.is_empty()).then(|| self.take())
    }

    /// What is gathered, emptied.
    fn take(&mut self) -> Vec<RawBatch> {
        self.lines = 0;
        std::mem::take(&mut self.batches)
    }
}

/// The running stages, from parse to the sinks; [`Running::finish`] waits
/// for them once every [`Ingress`] clone is dropped.
pub struct Running {
    started: Instant,
    board: Board,
    parse: tokio::task::JoinHandle<(StageReport, u64)>,
    dedupe: tokio::task::JoinHandle<StageReport>,
    cluster: tokio::task::JoinHandle<(StageReport, (usize, usize))>,
    detect: tokio::task::JoinHandle<(StageReport, crate::detect::EngineStats)>,
    sink: tokio::task::JoinHandle<anyhow::Result<SinkOutcome>>,
}

/// The sink stage's report, findings and versions, and finding latencies.
type SinkOutcome = ((StageReport, usize, usize), Vec<f64>);

/// Starts parse, dedupe, cluster, detect and the sinks. `states` are the
/// parser states of `Origin::Input(i)`; pushed streams get theirs on first
/// sight, at most `max_streams` at a time.
pub fn start(
    spec: &PipelineSpec,
    states: Vec<SourceState>,
    detectors: Vec<Detector>,
    sinks: Sinks,
) -> anyhow::Result<(Ingress, Running)> {
    crate::metrics::describe();
    let events_sink = super::sinks::EventsSink::open(&spec.sinks)?;
    let started = Instant::now();
    let cap = spec.channel_capacity;
    let (raw_tx, mut raw_rx) = mpsc::channel::<Vec<RawBatch>>(cap);
    let (parsed_tx, mut parsed_rx) = mpsc::channel::<Batch>(HANDOFF);
    let (deduped_tx, mut deduped_rx) = mpsc::channel::<Batch>(HANDOFF);
    let (clustered_tx, mut clustered_rx) = mpsc::channel::<Batch>(HANDOFF);
    let (findings_tx, mut findings_rx) = mpsc::channel::<Vec<Finding>>(cap);
    // emptied batches go back to the parse stage: a batch's buffer freed
    // on the detect stage's thread and allocated anew on the parser's
    // came back as fresh pages, faulted in and zeroed for every batch
    let (spare_tx, mut spare_rx) = mpsc::channel::<Vec<Event>>(SPARE_BATCHES);

    let board = Board::default();
    let mut parser = Parser::new(
        states,
        spec.max_streams,
        spec.detect.max_future_skew_secs as i64 * 1000,
    );
    let board_parse = board.clone();
    let batch_size = spec.batch_size.max(1);
    let parse = tokio::spawn(async move {
        let mut live = Live::on("parse", board_parse);
        let mut failures = 0u64;
        'groups: while let Some(mut group) = raw_rx.recv().await {
            let t = Instant::now();
            live.queue(raw_rx.len());
            let lines: usize = group.iter().map(|b| b.lines.len()).sum();
            let mut events = spare_rx.try_recv().unwrap_or_default();
            events.reserve(lines);
            let mut ended = Vec::new();
            for b in &mut group {
                if b.last
                    && let Some(domain) = parser.domain(&b.origin)
                {
                    ended.push(domain);
                }
                let before = events.len();
                let received = b.lines.len() as u64;
                let (empty, failed, clamped) = parser.parse(b, &mut events);
                failures += failed;
                let made = (events.len() - before) as u64;
                live.count(received, made.saturating_sub(received - empty), made);
                live.drop("empty", empty);
                live.adjust("time_clamped", clamped);
                metrics::counter!(crate::metrics::PARSE_FAILURES).increment(failed);
            }
            live.busy(t);
            live.post();
            // a pushed group can be a hundred thousand lines: later stages
            // get them in batches, so their queues hold bounded memory
            if events.len() <= batch_size {
                if parsed_tx.send(Batch { events, ended }).await.is_err() {
                    break;
                }
                continue;
            }
            let mut events = events.into_iter().peekable();
            while events.peek().is_some() {
                let chunk: Vec<Event> = events.by_ref().take(batch_size).collect();
                // the inputs end after their last events
                let ended = match events.peek() {
                    Some(_) => Vec::new(),
                    None => std::mem::take(&mut ended),
                };
                if parsed_tx
                    .send(Batch {
                        events: chunk,
                        ended,
                    })
                    .await
                    .is_err()
                {
                    break 'groups;
                }
            }
            // the group's grant of the ingestion budget is given back here
            drop(group);
        }
        (live.rep, failures)
    });

    let dedupe_cfg = spec.transforms.dedupe.clone();
    let board_dedupe = board.clone();
    let dedupe = tokio::spawn(async move {
        let mut live = Live::on("dedupe", board_dedupe);
        let mut d = Deduper::new(dedupe_cfg.window_ms, dedupe_cfg.max_alert_keys);
        while let Some(mut batch) = parsed_rx.recv().await {
            let t = Instant::now();
            live.queue(parsed_rx.len());
            let s = d.process(&mut batch.events);
            live.count(s.received, 0, s.emitted);
            live.drop("merged_duplicate", s.merged);
            live.drop("alert_resend", s.alert_resends);
            live.busy(t);
            live.post();
            if deduped_tx.send(batch).await.is_err() {
                break;
            }
        }
        live.rep
    });

    let cluster_cfg = spec.transforms.cluster.clone();
    let board_cluster = board.clone();
    let cluster = tokio::spawn(async move {
        let mut live = Live::on("cluster", board_cluster);
        let mut c = Clusterer::new(cluster_cfg);
        while let Some(mut batch) = deduped_rx.recv().await {
            let t = Instant::now();
            live.queue(deduped_rx.len());
            c.process(&mut batch.events);
            let n = batch.events.len() as u64;
            live.count(n, 0, n);
            live.busy(t);
            live.post();
            metrics::gauge!(crate::metrics::TEMPLATES).set(c.template_count() as f64);
            if clustered_tx.send(batch).await.is_err() {
                break;
            }
        }
        (live.rep, (c.template_count(), c.template_versions()))
    });

    let engine_cfg = EngineConfig {
        max_keys: spec.detect.max_keys,
        allowed_lateness_ms: spec.detect.allowed_lateness_secs as i64 * 1000,
        execution_id: format!("exec-{}", crate::time::now_ms()),
        segments: spec.detect.out_of_order == super::config::OutOfOrder::Segment,
        // no finding latency is measured then: it is timed from open versions
        final_states_only: sinks.reads_final_states_only(),
    };
    let mut events_sink = events_sink;
    let mut picker = sinks.store().map(|t| {
        (
            crate::store::sink::EventPicker::new(t.events, t.sample_rate),
            t.handle.clone(),
        )
    });
    let sink_store = sinks.store().map(|t| t.handle.clone());
    let board_detect = board.clone();
    let detect = tokio::spawn(async move {
        let mut live = Live::on("detect", board_detect);
        let mut engine = Engine::new(detectors, engine_cfg);
        let mut late = 0;
        let mut segments = 0;
        'batches: while let Some(Batch {
            events: mut batch,
            mut ended,
        }) = clustered_rx.recv().await
        {
            let mut t = Instant::now();
            live.queue(clustered_rx.len());
            let mut findings = Vec::new();
            let mut rest = &batch[..];
            while let Some(first) = rest.first() {
                // a file's events are one run; small files share a batch
                let domain = first.time_domain;
                let run = rest
                    .iter()
                    .position(|e| e.time_domain != domain)
                    .unwrap_or(rest.len());
                for ev in &rest[..run] {
                    engine.process(ev, &mut findings);
                }
                rest = &rest[run..];
                // a file that ended before the batch's end resolves before
                // the next file's events, as if it had travelled alone (a
                // small file's open findings are few: at once, not in parts)
                if !rest.is_empty()
                    && let Some(k) = ended.iter().position(|d| *d == domain)
                {
                    ended.swap_remove(k);
                    while engine.end_domain(domain, usize::MAX, &mut findings) {}
                }
            }
            if let Some(w) = &mut events_sink
                && let Err(e) = w.write(&batch)
            {
                tracing::error!(error = %e, "events sink failed; it stops here");
                events_sink = None;
            }
            if let Some((p, store)) = &mut picker {
                let (rows, templates) = p.pick(&batch, &findings);
                // the store's queue may make this stage wait: not busy then
                live.busy(t);
                store
                    .send(crate::store::spool::Batch::Templates(templates))
                    .await;
                store.send(crate::store::spool::Batch::Events(rows)).await;
                t = Instant::now();
            }
            let s = engine.stats();
            live.count(batch.len() as u64, 0, batch.len() as u64 - (s.late - late));
            live.drop("late", s.late - late);
            live.adjust("new_segment", s.segments - segments);
            live.busy(t);
            live.post();
            late = s.late;
            segments = s.segments;
            metrics::gauge!(crate::metrics::DETECT_TRACKED_KEYS).set(engine.tracked_keys() as f64);
            // a pushed group's batch can be large: that one is let go
            if batch.capacity() <= SPARE_BATCHES * batch_size {
                batch.clear();
                let _ = spare_tx.try_send(batch);
            }
            if !findings.is_empty() && findings_tx.send(findings).await.is_err() {
                break;
            }
            // files that ended with this batch: their findings resolve now
            for domain in ended {
                let part = |out: &mut Vec<Finding>| engine.end_domain(domain, FLUSH_PART, out);
                if !send_in_parts(part, &mut picker, &findings_tx).await {
                    break 'batches;
                }
            }
        }
        // what is still open resolves, sent in parts (a flood leaves
        // hundreds of thousands open)
        send_in_parts(
            |out: &mut Vec<Finding>| engine.flush_some(FLUSH_PART, out),
            &mut picker,
            &findings_tx,
        )
        .await;
        drop(picker);
        (live.rep, engine.stats().clone())
    });

    let sink = tokio::spawn(async move {
        // the detect stage resolves whatever is open when its input ends
        let mut sinks = sinks.resolved_at_end();
        let mut latencies = Vec::new();
        let mut live = Live::new("sink");
        while let Some(batch) = findings_rx.recv().await {
            metrics::gauge!(crate::metrics::STAGE_QUEUE_DEPTH, "stage" => "sink")
                .set(findings_rx.len() as f64);
            let now = mono_ns();
            if let Some(store) = &sink_store {
                let rows = batch
                    .iter()
                    .map(crate::store::FindingRow::from_finding)
                    .collect();
                store.send(crate::store::spool::Batch::Findings(rows)).await;
            }
            let t = Instant::now();
            for f in batch {
                // latency is from the event that crossed the threshold to its finding
                if f.status == crate::finding::Status::Open {
                    let ms = now.saturating_sub(f.trigger_read_ns) as f64 / 1e6;
                    metrics::histogram!(crate::metrics::FINDING_LATENCY).record(ms / 1e3);
                    latencies.push(ms);
                }
                metrics::counter!(crate::metrics::FINDINGS_EMITTED, "detector" => f.detector.id.clone()).increment(1);
                sinks.accept(f)?;
            }
            // whole lines for whoever follows the files (findings are few)
            sinks.flush()?;
            live.busy(t);
        }
        drop(sink_store);
        let mut rep = sinks.finish()?;
        // counted by the sinks; the time is this loop's
        rep.0.busy_us = live.rep.busy_us;
        Ok::<_, anyhow::Error>((rep, latencies))
    });

    let running = Running {
        started,
        board,
        parse,
        dedupe,
        cluster,
        detect,
        sink,
    };
    Ok((Ingress::new(raw_tx), running))
}

impl Running {
    /// The stages' counts as they stand, for a live pipeline's status.
    pub fn board(&self) -> Board {
        self.board.clone()
    }

    /// Waits for every stage to drain and flush; `sources` are the reports
    /// of whatever fed the graph.
    pub async fn finish(self, sources: Vec<StageReport>) -> anyhow::Result<RunSummary> {
        let (parse_rep, failures) = self.parse.await?;
        let dedupe_rep = self.dedupe.await?;
        let (cluster_rep, (templates, template_versions)) = self.cluster.await?;
        let (detect_rep, engine_stats) = self.detect.await?;
        let ((sink_rep, findings, versions), mut latencies) = self.sink.await??;
        latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            latencies
                .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        let mut source = StageReport::new("source");
        sources.iter().for_each(|s| source.merge(s));
        let stages = vec![
            source,
            parse_rep,
            dedupe_rep,
            cluster_rep,
            detect_rep,
            sink_rep,
        ];
        Ok(RunSummary {
            stages,
            sources,
            findings,
            finding_versions: versions + engine_stats.unbuilt as usize,
            templates,
            template_versions,
            parse_failures: failures,
            evicted_keys: engine_stats.evicted_keys,
            latency_p50_ms: pct(0.50),
            latency_p99_ms: pct(0.99),
            elapsed_secs: self.started.elapsed().as_secs_f64(),
        })
    }
}

/// The parse stage's state: one parser state per file input, and one per
/// pushed stream, created on first sight and bounded.
struct Parser {
    inputs: Vec<SourceState>,
    streams: HashMap<u64, SourceState>,
    max_streams: usize,
    max_future_skew_ms: i64,
}

impl Parser {
    fn new(inputs: Vec<SourceState>, max_streams: usize, max_future_skew_ms: i64) -> Parser {
        Parser {
            inputs,
            streams: HashMap::new(),
            max_streams: max_streams.max(1),
            max_future_skew_ms,
        }
    }

    /// The time domain of a bounded input's events (files, stdin); pushed
    /// streams have none that ends.
    fn domain(&self, origin: &Origin) -> Option<u32> {
        match origin {
            Origin::Input(i) => self.inputs.get(*i).map(|s| s.time_domain),
            Origin::Stream(_) => None,
        }
    }

    /// Parses a batch's lines (taken from `b`: the events share their
    /// buffer); returns (lines that gave no event, parse failures, events
    /// whose time was clamped to their receipt).
    fn parse(&mut self, b: &mut RawBatch, events: &mut Vec<Event>) -> (u64, u64, u64) {
        let now = crate::time::now_ms();
        let (state, stream) = match &b.origin {
            Origin::Input(i) => match self.inputs.get_mut(*i) {
                Some(s) => {
                    if let Some(file) = b.file.take() {
                        s.file_path = Some(file);
                    }
                    (s, None)
                }
                None => return (b.lines.len() as u64, 0, 0),
            },
            Origin::Stream(st) => {
                if !self.streams.contains_key(&st.key) && self.streams.len() >= self.max_streams {
                    // forget an arbitrary stream: only its year inference is lost
                    if let Some(k) = self.streams.keys().next().copied() {
                        self.streams.remove(&k);
                        metrics::counter!(crate::metrics::INGEST_STREAMS_EVICTED).increment(1);
                    }
                }
                let s = self
                    .streams
                    .entry(st.key)
                    .or_insert_with(|| st.parser_state(now));
                (s, Some(st.as_ref()))
            }
        };
        let first = events.len();
        let mut empty = 0;
        let mut clamped = 0;
        let mut meta = b.metadata.iter().peekable();
        let lines = std::mem::take(&mut b.lines).into_shared();
        for (i, (line, original)) in lines.iter().enumerate() {
            let mut line_meta = Vec::new();
            while let Some((_, k, v)) = meta.next_if(|(j, _, _)| *j as usize <= i) {
                line_meta.push((k, v));
            }
            let before = events.len();
            let at = b.times.get(i).copied().unwrap_or(now);
            parse_line_of(line, original, state, at, events);
            if events.len() == before {
                empty += 1;
                continue;
            }
            for ev in &mut events[before..] {
                ev.read_ns = b.read_ns;
                if let Some(st) = stream {
                    st.annotate(ev);
                    // a pushed record's clock is the sender's: bounded by ours
                    clamped += u64::from(bound_to_receipt(ev, now, self.max_future_skew_ms));
                }
                for (k, v) in &line_meta {
                    ev.labels.push((
                        Cow::Owned((*k).clone()),
                        crate::event::Text::from((*v).clone()),
                    ));
                }
            }
        }
        let failed = events[first..]
            .iter()
            .filter(|e| e.parse_error.is_some())
            .count() as u64;
        (empty, failed, clamped)
    }
}

/// Sends findings resolved a part at a time by `part` (true while more
/// are left) to the sinks, and the events they name to the store; false
/// once the sinks are gone.
async fn send_in_parts(
    mut part: impl FnMut(&mut Vec<Finding>) -> bool,
    picker: &mut Option<(
        crate::store::sink::EventPicker,
        crate::store::sink::StoreHandle,
    )>,
    findings_tx: &mpsc::Sender<Vec<Finding>>,
) -> bool {
    loop {
        let mut findings = Vec::new();
        let more = part(&mut findings);
        if let Some((p, store)) = picker {
            let (rows, _) = p.pick(&[], &findings);
            store.send(crate::store::spool::Batch::Events(rows)).await;
        }
        if !findings.is_empty() && findings_tx.send(findings).await.is_err() {
            return false;
        }
        if !more {
            return true;
        }
    }
}

/// Events between two stages, and the bounded inputs (files) these are
/// the last events of: their time domains end after them.
struct Batch {
    events: Vec<Event>,
    ended: Vec<u32>,
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
    let mut events = Vec::with_capacity(spec.batch_size.max(1));
    for (state, lines) in inputs.iter_mut() {
        for chunk in lines.chunks(spec.batch_size.max(1)) {
            events.clear();
            // as a reader batches them: one buffer, shared by the events
            let chunk: Lines = chunk.iter().collect();
            for (l, original) in chunk.into_shared().iter() {
                parse_line_of(l, original, state, now, &mut events);
            }
            stages.process(&mut events, &mut findings);
        }
    }
    stages.engine.flush(&mut findings);
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(input: usize, lines: usize) -> RawBatch {
        let lines: Vec<String> = (0..lines).map(|i| format!("line {i}")).collect();
        RawBatch::lines(Origin::Input(input), lines).ending()
    }

    fn inputs(group: &[RawBatch]) -> Vec<usize> {
        group
            .iter()
            .map(|b| match b.origin {
                Origin::Input(i) => i,
                _ => usize::MAX,
            })
            .collect()
    }

    #[test]
    fn the_events_of_a_rotation_set_name_the_file_they_came_from() {
        let mut state = SourceState::new(crate::parse::Format::Auto, 0);
        state.file_path = Some(Name::new("auth.log.1"));
        let mut parser = Parser::new(vec![state], 8, i64::MAX);
        let line = "Mar  3 10:00:00 bastion sshd[1]: Failed password for root from 198.51.100.1 port 2 ssh2";
        let mut paths = Vec::new();
        for file in [None, Some("auth.log"), None] {
            let mut batch = RawBatch::lines(Origin::Input(0), vec![line.to_string()])
                .from_file(file.map(Name::new));
            let mut events = Vec::new();
            parser.parse(&mut batch, &mut events);
            paths.extend(
                events
                    .iter()
                    .map(|e| e.file_path.as_ref().map(|p| p.to_string())),
            );
        }
        let named = |p: &str| Some(p.to_string());
        assert_eq!(
            paths,
            [named("auth.log.1"), named("auth.log"), named("auth.log")]
        );
    }

    #[test]
    fn small_files_travel_together_and_a_group_never_grows_past_a_batch_by_gathering() {
        let mut g = Gathered::default();
        assert!(g.add(ending(0, 300), 1024).is_none());
        assert!(g.add(ending(1, 300), 1024).is_none());
        assert!(g.add(ending(2, 300), 1024).is_none());
        // a fourth would make 1,200 lines: the three leave first, in order
        let group = g.add(ending(3, 300), 1024).expect("a batch's worth");
        assert_eq!(inputs(&group), [0, 1, 2]);
        assert_eq!(g.lines, 300);
        // exactly a batch's worth leaves at once
        let group = g.add(ending(4, 724), 1024).expect("a batch's worth");
        assert_eq!(inputs(&group), [3, 4]);
        assert!(g.batches.is_empty() && g.lines == 0);
        // an empty file's end waits with the others
        assert!(g.add(ending(5, 0), 1024).is_none());
        assert_eq!(inputs(&g.take()), [5]);
    }
}
