//! The JetStream worker: consume, process, publish, checkpoint, acknowledge.
//!
//! ```text
//! start: ensure streams ─> read checkpoint ─> restore stages
//!        ─> durable consumer reset to checkpoint.last_seq + 1
//! loop:  chunk of ready messages ─> route + decode each
//!          ├─ bad (oversized, not UTF-8, empty, unroutable) ─> dead letter
//!          └─ lines ─> parse ─> dedupe ─> cluster ─> detect ─> findings
//!        dead letters and findings published, acknowledged by JetStream
//!        every interval / N messages: checkpoint written, then ack (AckAll)
//! stop:  SIGTERM/ctrl-c: checkpoint, ack, exit (windows stay open);
//!        --until-idle: resolve open windows, publish, checkpoint, exit
//! ```
//! Processing is one task: ordering per source is the stream's order, which
//! is what makes a replay after a crash reproduce the same finding versions.
//! Event time of lines without a timestamp is the message's JetStream
//! timestamp (not the wall clock), for the same reason.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

use super::checkpoint::{self, CheckpointOut, Counters};
use super::config::{NatsSinkConfig, NatsSourceConfig, Retention};
use super::sink::{self, Outgoing, Publisher};
use super::subject::{self, Route};
use super::{NatsError, with_retry};
use crate::detect::Detector;
use crate::event::Event;
use crate::name::Name;
use crate::parse::{Format, SourceState, bound_to_receipt, parse_into};
use crate::pipeline::config::{PipelineSpec, SinkConfig, SourceConfig};
use crate::pipeline::sinks::Sinks;
use crate::pipeline::stages::Stages;

/// Header a publisher sets when a body holds several newline-separated lines.
pub const BATCH_HEADER: &str = "ThreatPilot-Batch";
/// Header naming the parser (`syslog`, `access`, `json`, …) for the body.
pub const FORMAT_HEADER: &str = "ThreatPilot-Format";

/// How this worker runs (from the command line).
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// Overrides the pipeline file's URL.
    pub url: Option<String>,
    /// Partitions this worker owns (partitioned pipelines only).
    pub partitions: Vec<u32>,
    /// Stop once nothing is pending and no message came for this long,
    /// resolving open windows first (batch use and tests).
    pub until_idle: Option<Duration>,
    /// Set once the consumer is bound (the API's `/readyz`).
    pub ready: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// What a worker reports when it stops (also on stderr as JSON).
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerSummary {
    pub worker: String,
    /// Stream sequence of the checkpoint this run started from.
    pub restored_seq: Option<u64>,
    /// Last stream sequence processed (and checkpointed).
    pub last_seq: u64,
    /// Outcome counts since the stream began, across restarts.
    pub counters: Counters,
    /// Messages delivered again that were already processed.
    pub redelivered_skipped: u64,
    pub checkpoints: u64,
    pub checkpoint_bytes: usize,
    /// From the call to the end of the last message handled (idle time excluded).
    pub busy_secs: f64,
}

/// Why a message is dead-lettered (bounded label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Oversized,
    InvalidUtf8,
    Empty,
    UnroutableSubject,
    UnknownFormat,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Oversized => "oversized",
            Rejection::InvalidUtf8 => "invalid_utf8",
            Rejection::Empty => "empty",
            Rejection::UnroutableSubject => "unroutable_subject",
            Rejection::UnknownFormat => "unknown_format",
        }
    }
}

/// A message checked and ready to parse.
struct Decoded<'a> {
    route: Route<'a>,
    format: Format,
    text: &'a str,
    batch: bool,
}

fn decode<'a>(msg: &'a async_nats::Message, max_bytes: usize) -> Result<Decoded<'a>, Rejection> {
    let route = subject::route(msg.subject.as_str()).ok_or(Rejection::UnroutableSubject)?;
    if msg.payload.len() > max_bytes {
        return Err(Rejection::Oversized);
    }
    let text = std::str::from_utf8(&msg.payload).map_err(|_| Rejection::InvalidUtf8)?;
    let text = text.trim_end_matches(['\n', '\r']);
    if text.trim().is_empty() {
        return Err(Rejection::Empty);
    }
    let header = |name: &str| {
        msg.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str())
    };
    let format = match header(FORMAT_HEADER) {
        Some(f) => {
            <Format as clap::ValueEnum>::from_str(f, true).map_err(|_| Rejection::UnknownFormat)?
        }
        None if header("Content-Type").is_some_and(|c| c.starts_with("application/json"))
            && route.format == Format::Auto =>
        {
            Format::Json
        }
        None => route.format,
    };
    Ok(Decoded {
        route,
        format,
        text,
        batch: header(BATCH_HEADER) == Some("lines"),
    })
}

/// The input stream as the pipeline file describes it.
pub fn input_stream(src: &NatsSourceConfig) -> stream::Config {
    stream::Config {
        name: src.stream.clone(),
        subjects: src.stream_subjects(),
        retention: match src.retention {
            Retention::Limits => stream::RetentionPolicy::Limits,
            Retention::Interest => stream::RetentionPolicy::Interest,
            Retention::WorkQueue => stream::RetentionPolicy::WorkQueue,
        },
        max_age: Duration::from_secs(src.max_age_secs.unwrap_or(0)),
        duplicate_window: Duration::from_secs(src.duplicate_window_secs),
        ..Default::default()
    }
}

/// Creates `cfg`'s stream. An existing stream keeps the settings its
/// operator gave it (limits, replicas, storage) and only gains the subjects
/// it lacks.
pub async fn ensure_stream(js: &jetstream::Context, cfg: stream::Config) -> Result<(), NatsError> {
    let name = cfg.name.as_str();
    let classify = |e: jetstream::context::CreateStreamError| {
        use jetstream::context::CreateStreamErrorKind as K;
        match e.kind() {
            // the server is (re)starting: retrying helps
            K::TimedOut | K::JetStreamUnavailable | K::Response => {
                NatsError::Server(format!("stream {name}: {e}"))
            }
            // a conflicting stream or a bad name: the operator's to fix
            _ => NatsError::Setup(format!("stream {name}: {e}")),
        }
    };
    with_retry("stream setup", || {
        let cfg = cfg.clone();
        async move {
            let Ok(mut existing) = js.get_stream(&cfg.name).await else {
                return js.create_stream(cfg).await.map(|_| ()).map_err(classify);
            };
            let mut config = existing
                .info()
                .await
                .map_err(|e| NatsError::Server(format!("stream {name}: {e}")))?
                .config
                .clone();
            let missing: Vec<String> = cfg
                .subjects
                .iter()
                .filter(|s| !config.subjects.contains(s))
                .cloned()
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            tracing::info!(stream = name, ?missing, "adding subjects to the stream");
            config.subjects.extend(missing);
            js.update_stream(config).await.map(|_| ()).map_err(classify)
        }
    })
    .await
}

/// The worker's run state (everything a checkpoint saves, and its handles).
struct Worker {
    src: NatsSourceConfig,
    sink: Option<NatsSinkConfig>,
    name: String,
    publisher: Publisher,
    store: jetstream::object_store::ObjectStore,
    stages: Stages,
    /// Events per stage batch (the pipeline's `batch_size`).
    batch_size: usize,
    /// How far a record's time may run ahead of its JetStream publish time.
    max_future_skew_ms: i64,
    /// Finding versions already published (with a NATS sink).
    published: Option<super::published::Published>,
    sinks: Sinks,
    /// Parser state per source (subject without its partition), in order
    /// of first sight, found through `source_index`.
    sources: Vec<(String, SourceState)>,
    source_index: HashMap<String, usize>,
    restored_years: HashMap<String, crate::parse::YearInference>,
    counters: Counters,
    processed_seq: u64,
    since_checkpoint: u64,
    /// The newest message handled and not yet acknowledged (AckAll covers the rest).
    unacked: Option<(jetstream::Message, Instant)>,
    redelivered_skipped: u64,
    checkpoints: u64,
    checkpoint_bytes: usize,
}

pub async fn run_worker(
    spec: &PipelineSpec,
    detectors: Vec<Detector>,
    sinks: Sinks,
    opts: WorkerOptions,
) -> anyhow::Result<WorkerSummary> {
    crate::metrics::describe();
    let started = Instant::now();
    let Some(SourceConfig::Nats(src)) = spec.sources.first() else {
        anyhow::bail!("the pipeline has no nats source");
    };
    let mut src = src.clone();
    if let Some(url) = opts
        .url
        .clone()
        .or_else(|| std::env::var("THREATPILOT_NATS_URL").ok())
    {
        src.url = url;
    }
    match (src.partitions, opts.partitions.is_empty()) {
        (Some(n), false) => {
            if let Some(p) = opts.partitions.iter().find(|p| **p >= n) {
                anyhow::bail!("partition {p} is out of range (the pipeline has {n})");
            }
        }
        (Some(n), true) => {
            anyhow::bail!(
                "this pipeline has {n} partitions: name the ones this worker owns with --partitions"
            )
        }
        (None, false) => anyhow::bail!("--partitions needs a pipeline with `partitions:` set"),
        (None, true) => {}
    }
    let sink_cfg = spec.sinks.iter().find_map(|s| match s {
        SinkConfig::Nats(c) => Some(c.clone()),
        _ => None,
    });
    let name = src.worker_name(&opts.partitions);
    let client = super::connect(&src.url, &format!("threatpilot-{name}")).await?;
    let js = jetstream::new(client);
    let dup_window = Duration::from_secs(src.duplicate_window_secs);
    ensure_stream(&js, input_stream(&src)).await?;
    ensure_stream(
        &js,
        stream::Config {
            name: format!("{}_DEADLETTER", src.stream),
            subjects: vec![format!("{}.>", src.dead_letter_prefix)],
            duplicate_window: dup_window,
            ..Default::default()
        },
    )
    .await?;
    let mut published = None;
    if let Some(c) = &sink_cfg {
        sink::ensure_findings_stream(&js, c, dup_window).await?;
        published = Some(super::published::Published::open(&js, &name).await?);
    }
    let store = match js.get_object_store(&src.checkpoint_bucket).await {
        Ok(s) => s,
        Err(_) => js
            .create_object_store(jetstream::object_store::Config {
                bucket: src.checkpoint_bucket.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| NatsError::Setup(format!("checkpoint bucket: {e}")))?,
    };

    let mut stages = Stages::new(spec, detectors, format!("exec-{name}"));
    let cp = with_retry("checkpoint read", || checkpoint::load(&store, &name)).await?;
    let (mut restored_years, mut counters, mut processed_seq, mut restored_seq) =
        (HashMap::new(), Counters::default(), 0, None);
    if let Some(cp) = cp {
        let dropped = stages.restore(cp.stages);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "window keys of detectors no longer loaded were dropped"
            );
        }
        restored_years = cp.sources.into_iter().collect();
        counters = cp.counters;
        processed_seq = cp.last_seq;
        restored_seq = Some(cp.last_seq);
        tracing::info!(worker = %name, last_seq = cp.last_seq, "restored checkpoint");
    }
    let mut worker = Worker {
        src: src.clone(),
        sink: sink_cfg,
        name: name.clone(),
        publisher: Publisher::new(js.clone()),
        store,
        stages,
        batch_size: spec.batch_size.max(1),
        max_future_skew_ms: spec.detect.max_future_skew_secs as i64 * 1000,
        published,
        sinks,
        sources: Vec::new(),
        source_index: HashMap::new(),
        restored_years,
        counters,
        processed_seq,
        since_checkpoint: 0,
        unacked: None,
        redelivered_skipped: 0,
        checkpoints: 0,
        checkpoint_bytes: 0,
    };

    let input = js
        .get_stream(&src.stream)
        .await
        .map_err(|e| NatsError::Server(format!("stream {}: {e}", src.stream)))?;
    let ack_wait =
        Duration::from_millis(src.checkpoint_interval_ms * 10).max(Duration::from_secs(60));
    let mut consumer: consumer::PullConsumer = input
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.clone()),
            ack_policy: consumer::AckPolicy::All,
            ack_wait,
            max_ack_pending: -1,
            max_deliver: -1,
            filter_subjects: src.filter_subjects(&opts.partitions),
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::Setup(format!("consumer {name}: {e}")))?;
    // resume exactly after the checkpoint: what was delivered to a crashed
    // run and not checkpointed comes again now, not after ack_wait
    input
        .reset_consumer(&name, Some(worker.processed_seq + 1))
        .await
        .map_err(|e| NatsError::Setup(format!("consumer {name} reset: {e}")))?;

    if let Some(r) = &opts.ready {
        r.store(true, std::sync::atomic::Ordering::Release);
    }
    let mut shutdown = Box::pin(crate::pipeline::serve::shutdown_signal());
    let mut ticker =
        tokio::time::interval(Duration::from_millis(src.checkpoint_interval_ms.max(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_message = Instant::now();
    let mut busy = Duration::ZERO;
    'outer: loop {
        let messages = consumer
            .stream()
            .max_messages_per_batch(src.fetch_batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| NatsError::Server(format!("consume: {e}")))?;
        let mut chunks = messages.ready_chunks(src.fetch_batch);
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    tracing::info!("stopping: checkpoint and exit");
                    break 'outer;
                }
                chunk = chunks.next() => match chunk {
                    Some(chunk) => {
                        worker.handle(chunk).await?;
                        last_message = Instant::now();
                        busy = started.elapsed();
                        if worker.since_checkpoint >= src.checkpoint_messages {
                            worker.checkpoint().await?;
                        }
                    }
                    None => continue 'outer,
                },
                _ = ticker.tick() => {
                    if worker.since_checkpoint > 0 {
                        worker.checkpoint().await?;
                    }
                    if let Ok(info) = consumer.info().await {
                        metrics::gauge!(crate::metrics::NATS_CONSUMER_PENDING).set(info.num_pending as f64);
                        if let Some(idle) = opts.until_idle
                            && info.num_pending == 0
                            && info.num_ack_pending == 0
                            && last_message.elapsed() >= idle
                        {
                            let mut findings = Vec::new();
                            worker.stages.engine.flush(&mut findings);
                            worker.emit(findings).await?;
                            worker.since_checkpoint += 1;
                            break 'outer;
                        }
                    }
                }
            }
        }
    }
    worker.checkpoint().await?;
    let summary = WorkerSummary {
        worker: name,
        restored_seq,
        last_seq: worker.processed_seq,
        counters: worker.counters.clone(),
        redelivered_skipped: worker.redelivered_skipped,
        checkpoints: worker.checkpoints,
        checkpoint_bytes: worker.checkpoint_bytes,
        busy_secs: busy.as_secs_f64(),
    };
    worker.sinks.finish()?;
    Ok(summary)
}

impl Worker {
    /// Processes one chunk of delivered messages.
    async fn handle(
        &mut self,
        chunk: Vec<Result<jetstream::Message, consumer::pull::MessagesError>>,
    ) -> anyhow::Result<()> {
        let mut events: Vec<Event> = Vec::with_capacity(self.batch_size);
        let mut findings = Vec::new();
        let mut dead: Vec<Outgoing> = Vec::new();
        let received = chunk.len() as u64;
        let processed_before = self.counters.processed;
        for m in chunk {
            let msg = match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "consume error");
                    continue;
                }
            };
            let Ok(info) = msg.info() else {
                continue;
            };
            let (seq, delivered) = (info.stream_sequence, info.delivered);
            let published_ms = (info.published.unix_timestamp_nanos() / 1_000_000) as i64;
            if delivered > 1 {
                metrics::counter!(crate::metrics::NATS_REDELIVERIES).increment(1);
            }
            if seq <= self.processed_seq {
                self.redelivered_skipped += 1;
                continue;
            }
            match decode(&msg, self.src.max_message_bytes) {
                Ok(d) => {
                    let skew = self.max_future_skew_ms;
                    let state = self.source_state(&d, published_ms);
                    state.format = d.format;
                    let before = events.len();
                    if d.batch {
                        for line in d.text.split('\n').filter(|l| !l.trim().is_empty()) {
                            parse_into(line, state, published_ms, &mut events);
                        }
                    } else {
                        parse_into(d.text, state, published_ms, &mut events);
                    }
                    // the publisher's clock bounds the record's
                    let clamped = events[before..]
                        .iter_mut()
                        .map(|ev| bound_to_receipt(ev, published_ms, skew))
                        .filter(|c| *c)
                        .count();
                    if clamped > 0 {
                        metrics::counter!(crate::metrics::STAGE_ADJUSTED, "stage" => "parse", "reason" => "time_clamped")
                            .increment(clamped as u64);
                    }
                    self.counters.processed += 1;
                    // stage batches stay small (cache-warm, reused memory)
                    // however many lines a chunk of messages carries
                    if events.len() >= self.batch_size {
                        self.counters.events += events.len() as u64;
                        record_stages(&self.stages.process(&mut events, &mut findings));
                        events.clear();
                    }
                }
                Err(reason) => {
                    metrics::counter!(crate::metrics::NATS_DEAD_LETTERS, "reason" => reason.as_str())
                        .increment(1);
                    tracing::warn!(subject = %msg.subject, seq, reason = reason.as_str(), "dead-lettering message");
                    dead.push(sink::dead_letter(
                        &self.src.dead_letter_prefix,
                        &self.src.stream,
                        &msg,
                        seq,
                        reason.as_str(),
                    ));
                    self.counters.dead_lettered += 1;
                }
            }
            self.processed_seq = seq;
            self.since_checkpoint += 1;
            let since = self.unacked.as_ref().map_or_else(Instant::now, |u| u.1);
            self.unacked = Some((msg, since));
        }
        record_stage(
            "source",
            received,
            self.counters.processed - processed_before,
        );
        if !dead.is_empty() {
            self.publisher.publish_all(dead).await?;
        }
        self.counters.events += events.len() as u64;
        record_stages(&self.stages.process(&mut events, &mut findings));
        self.emit(findings).await
    }

    fn source_state(&mut self, d: &Decoded<'_>, published_ms: i64) -> &mut SourceState {
        let key = d.route.source;
        // a lookup by &str per message; the key is copied only for a new source
        let i = match self.source_index.get(key) {
            Some(&i) => i,
            None => {
                let mut st = SourceState::new(d.format, published_ms);
                st.dataset_hint = d.route.dataset.map(Name::new);
                // `logs.sshd.web-1`: bare sshd messages parse as sshd's
                st.program_hint = d.route.dataset.map(Name::new);
                st.host_hint = d.route.host.map(Name::new);
                st.time_domain = subject::time_domain(key);
                if let Some(y) = self.restored_years.remove(key) {
                    st.year = y;
                }
                self.sources.push((key.to_owned(), st));
                self.source_index
                    .insert(key.to_owned(), self.sources.len() - 1);
                self.sources.len() - 1
            }
        };
        &mut self.sources[i].1
    }

    /// Hands finding versions to every sink; returns once JetStream stored them.
    async fn emit(&mut self, findings: Vec<crate::finding::Finding>) -> anyhow::Result<()> {
        if findings.is_empty() {
            return Ok(());
        }
        if let (Some(cfg), Some(published)) = (&self.sink, &mut self.published) {
            // versions published before a restart are not published again
            let fresh = published.unpublished(&findings).await;
            let new: Vec<&crate::finding::Finding> = findings
                .iter()
                .zip(&fresh)
                .filter(|(_, f)| **f)
                .map(|(x, _)| x)
                .collect();
            let already = (findings.len() - new.len()) as u64;
            let out = new
                .iter()
                .map(|f| sink::finding_message(cfg, f))
                .collect::<Result<Vec<_>, _>>()?;
            let p = self.publisher.publish_all(out).await?;
            published.record(&new).await;
            self.counters.findings_published += p.stored;
            self.counters.findings_duplicate += p.duplicate + already;
            metrics::counter!(crate::metrics::NATS_FINDINGS_DUPLICATE)
                .increment(p.duplicate + already);
        }
        for f in findings {
            metrics::counter!(crate::metrics::FINDINGS_EMITTED, "detector" => f.detector.id.clone())
                .increment(1);
            self.sinks.accept(f)?;
        }
        Ok(())
    }

    /// Writes the checkpoint, then acknowledges everything it covers.
    async fn checkpoint(&mut self) -> anyhow::Result<()> {
        self.sinks.flush()?;
        let mut sources: Vec<(&str, &crate::parse::YearInference)> = self
            .sources
            .iter()
            .map(|(k, v)| (k.as_str(), &v.year))
            .collect();
        sources.extend(self.restored_years.iter().map(|(k, v)| (k.as_str(), v)));
        sources.sort_by(|a, b| a.0.cmp(b.0));
        let cp = CheckpointOut {
            format: checkpoint::FORMAT,
            last_seq: self.processed_seq,
            counters: &self.counters,
            sources,
            stages: self.stages.snapshot(),
        };
        let (store, name) = (&self.store, &self.name);
        let bytes = with_retry("checkpoint write", || checkpoint::save(store, name, &cp)).await?;
        self.checkpoints += 1;
        self.checkpoint_bytes = bytes;
        metrics::gauge!(crate::metrics::NATS_CHECKPOINT_BYTES).set(bytes as f64);
        self.since_checkpoint = 0;
        if let Some((msg, since)) = self.unacked.take() {
            // the checkpoint, not the acknowledgement, is the resume point:
            // a lost ack only delays retention, never loses or doubles work
            match msg.ack().await {
                Ok(()) => metrics::histogram!(crate::metrics::NATS_ACK_LATENCY)
                    .record(since.elapsed().as_secs_f64()),
                Err(e) => tracing::warn!(error = %e, "acknowledgement failed"),
            }
        }
        Ok(())
    }
}

/// Stage counters of a long-lived worker, as they happen (the file graph
/// records its totals at the end).
fn record_stage(stage: &'static str, received: u64, emitted: u64) {
    metrics::counter!(crate::metrics::STAGE_RECEIVED, "stage" => stage).increment(received);
    metrics::counter!(crate::metrics::STAGE_EMITTED, "stage" => stage).increment(emitted);
}

fn record_stages(s: &crate::dedupe::DedupStats) {
    record_stage("dedupe", s.received, s.emitted);
    metrics::counter!(crate::metrics::STAGE_DROPPED, "stage" => "dedupe", "reason" => "merged_duplicate")
        .increment(s.merged);
    metrics::counter!(crate::metrics::STAGE_DROPPED, "stage" => "dedupe", "reason" => "alert_resend")
        .increment(s.alert_resends);
    record_stage("detect", s.emitted, s.emitted);
}
