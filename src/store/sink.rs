//! The store sink: a task that batches rows per table and inserts them,
//! spooling to disk whenever ClickHouse cannot take them.
//!
//! ```text
//! StoreHandle::send ─[bounded channel]─> per-table buffers ─ batch_rows or flush_ms ─┐
//!                                                                                     v
//!          spool empty and server up? ── insert ── ok ──> counted
//!                    │                       └─ fails ─> spool (durable), retry later
//!                    └─ no ─> spool; a drain loop replays it oldest first (backoff)
//! ```
//! Order is kept: while anything waits in the spool, new batches queue
//! behind it. A full spool (`max_spool_bytes`) stops taking rows, so the
//! pipeline waits instead of the disk filling. At shutdown the buffers are
//! flushed and the spool drained for a few seconds; what is left is
//! replayed by the next start.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::clickhouse::{Clickhouse, StoreError};
use super::config::{ClickhouseSinkConfig, EventsMode};
use super::rows::{EventRow, FindingRow, TemplateRow};
use super::spool::{Batch, Spool};
use crate::event::Event;
use crate::finding::Finding;
use crate::flow::StageReport;

/// Where the stages hand rows to the store.
/// With both a ClickHouse and a Parquet sink, one handle feeds both.
#[derive(Clone)]
pub struct StoreHandle {
    txs: Vec<mpsc::Sender<Batch>>,
}

impl StoreHandle {
    /// A handle and the receiving end a store task reads.
    pub fn channel() -> (StoreHandle, mpsc::Receiver<Batch>) {
        let (tx, rx) = mpsc::channel(16);
        (StoreHandle { txs: vec![tx] }, rx)
    }

    /// One handle that sends every batch to both stores.
    pub fn join(mut self, other: StoreHandle) -> StoreHandle {
        self.txs.extend(other.txs);
        self
    }

    /// Waits for room (backpressure while a spool is full).
    pub async fn send(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        if let Some((last, rest)) = self.txs.split_last() {
            for tx in rest {
                let _ = tx.send(batch.clone()).await;
            }
            let _ = last.send(batch).await;
        }
    }
}

/// Picks the events to store and notices new or changed templates; lives
/// in the detect stage, where events end.
pub struct EventPicker {
    mode: EventsMode,
    /// Keep an event when its id hash falls under this (sampled mode).
    sample_below: u64,
    templates: HashMap<u64, (std::sync::Arc<str>, i64)>,
    /// Evidence mode: the newest events by hash of their line.
    recent: HashMap<u64, Event>,
    order: VecDeque<u64>,
    recent_max: usize,
}

impl EventPicker {
    pub fn new(mode: EventsMode, sample_rate: f64) -> EventPicker {
        EventPicker {
            mode,
            sample_below: (sample_rate.clamp(0.0, 1.0) * u64::MAX as f64) as u64,
            templates: HashMap::new(),
            recent: HashMap::new(),
            order: VecDeque::new(),
            recent_max: 50_000,
        }
    }

    /// Rows for a batch of events and the findings it produced.
    pub fn pick(
        &mut self,
        events: &[Event],
        findings: &[Finding],
    ) -> (Vec<EventRow>, Vec<TemplateRow>) {
        let mut rows = Vec::new();
        let mut templates = Vec::new();
        for ev in events {
            if let Some(t) = &ev.template {
                let changed = match self.templates.get(&t.id) {
                    Some((text, _)) => !std::sync::Arc::ptr_eq(text, &t.text) && **text != *t.text,
                    None => true,
                };
                if changed {
                    let first = self.templates.get(&t.id).map_or(ev.timestamp, |x| x.1);
                    self.templates.insert(t.id, (t.text.clone(), first));
                    templates.push(TemplateRow {
                        template_id: crate::event::template_id_string(t.id),
                        template_text: t.text.to_string(),
                        dataset: ev.dataset.to_string(),
                        first_seen_ms: first,
                        last_seen_ms: ev.timestamp,
                        version: crate::time::now_ms().max(0) as u64,
                        day: (first.div_euclid(86_400_000)).clamp(0, u16::MAX as i64) as u16,
                    });
                }
            }
            match self.mode {
                EventsMode::All => rows.push(EventRow::from_event(ev)),
                EventsMode::Sampled => {
                    let h = xxhash_rust::xxh3::xxh3_64(super::rows::event_id(ev).as_bytes());
                    if h < self.sample_below {
                        rows.push(EventRow::from_event(ev));
                    }
                }
                EventsMode::Evidence => self.remember(ev),
                EventsMode::None => {}
            }
        }
        if self.mode == EventsMode::Evidence {
            for f in findings {
                for line in &f.evidence {
                    let h = xxhash_rust::xxh3::xxh3_64(line.as_bytes());
                    // each cited event is stored once
                    if let Some(ev) = self.recent.remove(&h) {
                        rows.push(EventRow::from_event(&ev));
                    }
                }
            }
        }
        (rows, templates)
    }

    fn remember(&mut self, ev: &Event) {
        let h = xxhash_rust::xxh3::xxh3_64(ev.original.as_bytes());
        // a copy of its own line: a kept event must not hold its batch's buffer
        let mut kept = ev.clone();
        kept.original = ev.original.detached();
        if self.recent.insert(h, kept).is_none() {
            self.order.push_back(h);
        }
        while self.order.len() > self.recent_max {
            if let Some(old) = self.order.pop_front() {
                self.recent.remove(&old);
            }
        }
    }
}

/// Counts of a store run, by table.
#[derive(Default)]
struct Counts {
    received: HashMap<&'static str, u64>,
    inserted: HashMap<&'static str, u64>,
    /// Rows an earlier run left in the spool, inserted by this one.
    replayed: u64,
}

struct Writer {
    cfg: ClickhouseSinkConfig,
    ch: Option<Clickhouse>,
    spool: Spool,
    counts: Counts,
    backoff: Duration,
    next_try: Instant,
    next_retention: Instant,
    /// The last spool batch an earlier run left (batches up to it are
    /// that run's rows, counted apart from this run's).
    earlier: Option<u64>,
}

impl Writer {
    /// Connects, migrates and checks the schema; a schema mismatch is fatal.
    async fn connect(&mut self) -> Result<(), StoreError> {
        let ch = Clickhouse::connect(&self.cfg).await?;
        let applied = ch.migrate().await?;
        ch.verify_schema().await?;
        tracing::info!(version = ?ch.version, applied, "clickhouse ready");
        self.ch = Some(ch);
        self.retention().await;
        Ok(())
    }

    async fn retention(&mut self) {
        if self.cfg.retention_days.is_empty() {
            return;
        }
        if let Some(ch) = &self.ch {
            match ch.enforce_retention(&self.cfg.retention_days).await {
                Ok(n) if n > 0 => {
                    tracing::info!(partitions = n, "clickhouse retention dropped old days")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "clickhouse retention failed"),
            }
        }
        self.next_retention = Instant::now() + Duration::from_secs(3600);
    }

    async fn insert(&self, batch: &Batch) -> Result<(), StoreError> {
        let Some(ch) = &self.ch else {
            return Err(StoreError::Unreachable("not connected".into()));
        };
        match batch {
            Batch::Events(r) => ch.insert("events", r).await,
            Batch::Findings(r) => ch.insert("findings", r).await,
            Batch::Templates(r) => ch.insert("templates", r).await,
            Batch::Incidents(r) => ch.insert("incidents", r).await,
            Batch::Actions(r) => ch.insert("actions", r).await,
            Batch::Audit(r) => ch.insert("audit", r).await,
        }
    }

    fn inserted(&mut self, batch: &Batch) {
        *self.counts.inserted.entry(batch.table()).or_default() += batch.len() as u64;
        metrics::counter!(crate::metrics::STORE_ROWS_INSERTED, "table" => batch.table())
            .increment(batch.len() as u64);
    }

    /// Stores a full batch: straight in when nothing waits, else behind the spool.
    async fn write(&mut self, batch: Batch) {
        if self.spool.is_empty() && self.ch.is_some() {
            match self.insert(&batch).await {
                Ok(()) => return self.inserted(&batch),
                Err(e) => self.failed(&e),
            }
        }
        self.spool_batch(&batch);
    }

    fn failed(&mut self, e: &StoreError) {
        metrics::counter!(crate::metrics::STORE_INSERT_ERRORS).increment(1);
        if e.retryable() {
            tracing::warn!(error = %e, "clickhouse insert failed; spooling");
        } else {
            tracing::error!(error = %e, "clickhouse refused a batch; spooling it for the operator");
        }
        // reconnect (and re-check the schema) before the next try
        self.ch = None;
        self.next_try = Instant::now() + self.backoff;
    }

    fn spool_batch(&mut self, batch: &Batch) {
        if let Err(e) = self.spool.push(batch) {
            // the disk refused too: nothing else can keep it
            tracing::error!(error = %e, rows = batch.len(), table = batch.table(), "cannot spool a batch");
        }
        self.gauges();
    }

    fn gauges(&self) {
        metrics::gauge!(crate::metrics::STORE_SPOOL_BYTES).set(self.spool.bytes() as f64);
        metrics::gauge!(crate::metrics::STORE_SPOOL_BATCHES).set(self.spool.batches() as f64);
    }

    /// Replays the spool oldest first while the server takes it.
    async fn drain(&mut self) {
        if self.spool.is_empty() || Instant::now() < self.next_try {
            return;
        }
        if self.ch.is_none()
            && let Err(e) = self.connect().await
        {
            tracing::debug!(error = %e, "clickhouse still unreachable");
            self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
            self.next_try = Instant::now() + self.backoff;
            return;
        }
        loop {
            let front = match self.spool.front() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spool");
                    break;
                }
            };
            match self.insert(&front.1).await {
                Ok(()) => {
                    if self.earlier.is_some_and(|last| front.0 <= last) {
                        self.counts.replayed += front.1.len() as u64;
                    } else {
                        self.inserted(&front.1);
                    }
                    if let Err(e) = self.spool.pop(front.0) {
                        tracing::error!(error = %e, "cannot remove a replayed spool batch");
                        break;
                    }
                }
                Err(e) => {
                    self.failed(&e);
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
                    break;
                }
            }
        }
        if self.spool.is_empty() {
            self.backoff = Duration::from_millis(250);
            tracing::info!("clickhouse spool replayed");
        }
        self.gauges();
    }
}

/// Starts the store task. A schema that does not match is an error here,
/// before any row flows; an unreachable server is not (rows are spooled).
pub async fn start(
    cfg: ClickhouseSinkConfig,
) -> anyhow::Result<(StoreHandle, tokio::task::JoinHandle<StageReport>)> {
    let spool = Spool::open(std::path::Path::new(&cfg.spool_dir), cfg.max_spool_bytes)
        .map_err(|e| anyhow::anyhow!("cannot open spool {}: {e}", cfg.spool_dir))?;
    let mut w = Writer {
        cfg: cfg.clone(),
        ch: None,
        spool,
        counts: Counts::default(),
        backoff: Duration::from_millis(250),
        next_try: Instant::now(),
        next_retention: Instant::now(),
        earlier: None,
    };
    w.earlier = w.spool.last_seq();
    match w.connect().await {
        Ok(()) => {}
        Err(e @ StoreError::Schema(_)) => return Err(e.into()),
        Err(e @ StoreError::Server(_)) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "clickhouse unreachable at start; spooling until it is back")
        }
    }
    if !w.spool.is_empty() {
        tracing::info!(
            batches = w.spool.batches(),
            "clickhouse spool from an earlier run waits"
        );
    }
    let (handle, mut rx) = StoreHandle::channel();
    let task = tokio::spawn(async move {
        let flush_every = Duration::from_millis(cfg.flush_ms.max(1));
        let mut events: Vec<EventRow> = Vec::new();
        let mut findings: Vec<FindingRow> = Vec::new();
        let mut templates: Vec<TemplateRow> = Vec::new();
        // incidents, actions and audit records (few; kept per table)
        let mut response: std::collections::BTreeMap<&'static str, Batch> =
            std::collections::BTreeMap::new();
        let mut oldest: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            // a full spool takes nothing more until it drains
            let take = !w.spool.full();
            tokio::select! {
                got = rx.recv(), if take => match got {
                    Some(b) => {
                        *w.counts.received.entry(b.table()).or_default() += b.len() as u64;
                        oldest.get_or_insert_with(Instant::now);
                        match b {
                            Batch::Events(r) => events.extend(r),
                            Batch::Findings(r) => findings.extend(r),
                            Batch::Templates(r) => templates.extend(r),
                            other => response
                                .entry(other.table())
                                .or_insert_with(|| other.empty_like())
                                .append(other),
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {}
            }
            let due = oldest.is_some_and(|t| t.elapsed() >= flush_every);
            let rows = events.len()
                + findings.len()
                + templates.len()
                + response.values().map(Batch::len).sum::<usize>();
            if due || rows >= cfg.batch_rows {
                // templates and findings first: events may cite them
                for b in [
                    Batch::Templates(std::mem::take(&mut templates)),
                    Batch::Findings(std::mem::take(&mut findings)),
                    Batch::Events(std::mem::take(&mut events)),
                ]
                .into_iter()
                .chain(std::mem::take(&mut response).into_values())
                {
                    if !b.is_empty() {
                        w.write(b).await;
                    }
                }
                oldest = None;
            }
            w.drain().await;
            if Instant::now() >= w.next_retention {
                w.retention().await;
            }
        }
        for b in [
            Batch::Templates(templates),
            Batch::Findings(findings),
            Batch::Events(events),
        ]
        .into_iter()
        .chain(response.into_values())
        {
            if !b.is_empty() {
                w.write(b).await;
            }
        }
        // give a recovering server a few seconds before leaving the rest for the next start
        let deadline = Instant::now() + Duration::from_secs(5);
        while !w.spool.is_empty() && Instant::now() < deadline {
            w.next_try = Instant::now();
            w.drain().await;
            if !w.spool.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let mut rep = StageReport::new("store:clickhouse");
        rep.received = w.counts.received.values().sum();
        rep.emitted = w.counts.inserted.values().sum::<u64>().min(rep.received);
        rep.replayed = w.counts.replayed;
        let left = rep.received - rep.emitted;
        if left > 0 {
            rep.dropped.insert("left_in_spool".into(), left);
        }
        rep
    });
    Ok((handle, task))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::Line;

    #[test]
    fn an_event_kept_as_evidence_does_not_hold_its_batch() {
        let batch = Arc::new("203.0.113.9 first\n203.0.113.9 second\n".to_owned());
        let events: Vec<Event> = [(0, 17), (18, 36)]
            .iter()
            .map(|&(s, e)| Event::raw(Line::of(&batch, s, e), "app".into()))
            .collect();
        let mut picker = EventPicker::new(EventsMode::Evidence, 0.0);
        let (rows, _) = picker.pick(&events, &[]);
        assert!(
            rows.is_empty(),
            "evidence is stored once a finding cites it"
        );
        drop(events);
        assert_eq!(
            Arc::strong_count(&batch),
            1,
            "the kept events copied their lines"
        );
        let mut kept: Vec<&str> = picker.recent.values().map(|e| &*e.original).collect();
        kept.sort();
        assert_eq!(kept, ["203.0.113.9 first", "203.0.113.9 second"]);
    }
}
