//! Finding sinks for local runs: stdout (final states, or every version),
//! a JSON-lines file (every version), and a Markdown report at the end.
//!
//! Final states go out as findings resolve, so a replay of many files
//! holds the open findings, not every finding it ever made; a version is
//! rendered as JSON only where a sink writes it.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use super::config::SinkConfig;
use super::graph::StageReport;
use crate::finding::{Finding, Status};
use crate::hub::Subscriber;
use crate::prehashed::PrehashedMap;

/// Where a store takes rows, and which events it wants.
#[derive(Clone)]
pub struct StoreTap {
    pub handle: crate::store::sink::StoreHandle,
    pub events: crate::store::EventsMode,
    pub sample_rate: f64,
}

pub struct Sinks {
    configs: Vec<SinkConfig>,
    files: Vec<Option<std::io::BufWriter<std::fs::File>>>,
    /// Standard output, buffered (flushed with each batch).
    stdout: std::io::BufWriter<std::io::Stdout>,
    /// Scratch: the version being written, as a JSON line.
    line: Vec<u8>,
    /// Whether a sink writes every version as it comes (a file,
    /// `--updates`): only then is each version rendered as JSON.
    per_version: bool,
    /// Whether standard output takes final states: a finding is written
    /// once it is resolved (its state is then final), and those still
    /// open at the end after the rest.
    finals: bool,
    /// Whether a report is written at the end (from every finding's
    /// latest version, so those are kept).
    report_all: bool,
    /// Whether every finding still open at the end of input is resolved
    /// then (the stage graph's detect stage does so): an open version
    /// need not be kept for the final states, its resolved one will come.
    resolved_at_end: bool,
    /// Each finding's latest version where one is kept for the end (a
    /// report, or final states not yet written), in order of first emission.
    latest: Vec<Option<Box<Finding>>>,
    /// Place in `latest` by the digest of the finding's id: an id is
    /// itself a 64-bit digest (`f-` and 16 hex digits), so its digest is as
    /// distinct as it is, and costs no copy of the id per finding.
    index: PrehashedMap<u64, usize>,
    versions: usize,
    report: StageReport,
    /// Whatever else takes findings: the API's hub, response.
    subscribers: Vec<Box<dyn Subscriber>>,
    /// A store's entrance (ClickHouse or the embedded Parquet store).
    store: Option<StoreTap>,
}

impl Sinks {
    pub fn open(configs: Vec<SinkConfig>) -> anyhow::Result<Sinks> {
        let mut files = Vec::new();
        for c in &configs {
            files.push(match c {
                SinkConfig::File { path } => Some(create(path)?),
                _ => None,
            });
        }
        let has = |want: fn(&SinkConfig) -> bool| configs.iter().any(want);
        Ok(Sinks {
            per_version: has(|c| {
                matches!(
                    c,
                    SinkConfig::Stdout { updates: true } | SinkConfig::File { .. }
                )
            }),
            finals: has(|c| matches!(c, SinkConfig::Stdout { updates: false })),
            report_all: has(|c| matches!(c, SinkConfig::Report { .. })),
            resolved_at_end: false,
            configs,
            files,
            stdout: std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()),
            line: Vec::new(),
            latest: Vec::new(),
            index: PrehashedMap::default(),
            versions: 0,
            subscribers: Vec::new(),
            store: None,
            report: StageReport {
                stage: "sink".into(),
                ..StageReport::default()
            },
        })
    }

    /// Also hands every version to a subscriber (the API's hub, response).
    pub fn with_subscriber(mut self, s: impl Subscriber + 'static) -> Sinks {
        self.subscribers.push(Box::new(s));
        self
    }

    /// Declares that every finding open at the end of input will be
    /// resolved then (see `resolved_at_end`).
    pub fn resolved_at_end(mut self) -> Sinks {
        self.resolved_at_end = true;
        self
    }

    /// Also sends rows to a started store.
    pub fn with_store(mut self, tap: StoreTap) -> Sinks {
        self.store = Some(tap);
        self
    }

    /// Whether every sink reads final states alone (standard output
    /// without `--updates`, nothing else): then the open and updated
    /// versions of a finding need not be made at all.
    pub fn reads_final_states_only(&self) -> bool {
        self.finals
            && !self.per_version
            && !self.report_all
            && self.subscribers.is_empty()
            && self.store.is_none()
    }

    pub fn store(&self) -> Option<&StoreTap> {
        self.store.as_ref()
    }

    pub fn accept(&mut self, f: Finding) -> anyhow::Result<()> {
        self.report.received += 1;
        if !self.subscribers.is_empty() {
            let shared = Arc::new(f.clone());
            for s in &mut self.subscribers {
                s.accept(&shared);
            }
        }
        self.versions += 1;
        let resolved = f.status == Status::Resolved;
        if self.per_version || (self.finals && resolved) {
            self.line.clear();
            f.write_json(&mut self.line);
            self.line.push(b'\n');
        }
        if self.per_version {
            for (c, file) in self.configs.iter().zip(self.files.iter_mut()) {
                match (c, file) {
                    (SinkConfig::Stdout { updates: true }, _) => {
                        self.stdout.write_all(&self.line)?
                    }
                    (SinkConfig::File { .. }, Some(w)) => w.write_all(&self.line)?,
                    _ => {}
                }
            }
        }
        if self.finals && resolved {
            self.stdout.write_all(&self.line)?;
        }
        let next = self.latest.len();
        let i = *self
            .index
            .entry(xxhash_rust::xxh3::xxh3_64(f.finding_id.as_bytes()))
            .or_insert(next);
        if i == next {
            self.latest.push(None);
        }
        let keep = self.report_all || (self.finals && !resolved && !self.resolved_at_end);
        self.latest[i] = keep.then(|| Box::new(f));
        self.report.emitted += 1;
        Ok(())
    }

    /// Pushes buffered output to the operating system (before a
    /// checkpoint acknowledges the input that produced it).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.stdout.flush()?;
        for w in self.files.iter_mut().flatten() {
            w.flush()?;
        }
        Ok(())
    }

    /// Writes final states and reports; returns (stage report, findings, versions).
    pub fn finish(mut self) -> anyhow::Result<(StageReport, usize, usize)> {
        let held = || self.latest.iter().flatten().map(|f| &**f);
        if self.finals {
            // the findings still open (resolved ones are written)
            let mut line = Vec::new();
            for f in held().filter(|f| f.status != Status::Resolved) {
                line.clear();
                f.write_json(&mut line);
                line.push(b'\n');
                self.stdout.write_all(&line)?;
            }
        }
        self.stdout.flush()?;
        for (c, file) in self.configs.iter().zip(self.files.iter_mut()) {
            match (c, file) {
                (SinkConfig::File { .. }, Some(w)) => w.flush()?,
                (SinkConfig::Report { path }, _) => {
                    if let Some(dir) = std::path::Path::new(path)
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty())
                    {
                        std::fs::create_dir_all(dir)?;
                    }
                    let findings: Vec<&Finding> = held().collect();
                    std::fs::write(path, report_markdown(&findings))
                        .map_err(|e| anyhow::anyhow!("cannot write {path}: {e}"))?;
                }
                _ => {}
            }
        }
        // after the findings' own output, so response lines follow it
        for s in &mut self.subscribers {
            s.finish();
        }
        Ok((self.report, self.latest.len(), self.versions))
    }
}

/// Opens a sink's file for appending (and its folder): a restart, clean
/// or not, never destroys what earlier runs wrote. A line a crash left
/// half-written is closed first, so the next line starts on its own.
fn create(path: &str) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    use std::io::{Read, Seek, SeekFrom, Write};
    if let Some(dir) = std::path::Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {path}: {e}"))?;
    let len = f.metadata()?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1))?;
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            f.write_all(b"\n")?;
        }
    }
    Ok(std::io::BufWriter::new(f))
}

/// The `events` sink: every event as detection sees it, as ECS JSON lines.
/// It runs in the detect stage, where the events are, and is flushed with
/// each batch so a reader sees whole lines.
pub struct EventsSink {
    out: Vec<std::io::BufWriter<std::fs::File>>,
}

impl EventsSink {
    pub fn open(configs: &[SinkConfig]) -> anyhow::Result<Option<EventsSink>> {
        let mut out = Vec::new();
        for c in configs {
            if let SinkConfig::Events { path } = c {
                out.push(create(path)?);
            }
        }
        Ok((!out.is_empty()).then_some(EventsSink { out }))
    }

    pub fn write(&mut self, events: &[crate::event::Event]) -> std::io::Result<()> {
        for w in &mut self.out {
            for ev in events {
                serde_json::to_writer(&mut *w, &ev.to_json())?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
        }
        Ok(())
    }
}

/// A Markdown summary of findings: counts by domain, classification and
/// severity, top offenders, and each finding. Offenders come from logs, so
/// every value is escaped (no extra rows, headings, HTML or terminal
/// escapes from a crafted user name).
pub fn report_markdown(findings: &[&Finding]) -> String {
    use crate::escape::markdown as md;
    let mut s = String::from("# ThreatPilot findings report\n\n");
    s.push_str(&format!("{} findings.\n\n", findings.len()));
    let mut by: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let mut offenders: BTreeMap<String, usize> = BTreeMap::new();
    for f in findings {
        *by.entry((
            f.domain.as_str().into(),
            f.classification.clone(),
            format!("{:?}", f.severity).to_lowercase(),
        ))
        .or_default() += 1;
        *offenders
            .entry(format!("{:?} {}", f.offender.kind, f.offender.value).to_lowercase())
            .or_default() += 1;
    }
    s.push_str("## By domain, classification and severity\n\n| domain | classification | severity | findings |\n|---|---|---|---|\n");
    for ((d, c, sev), n) in &by {
        s.push_str(&format!("| {} | {} | {sev} | {n} |\n", md(d), md(c)));
    }
    let mut top: Vec<_> = offenders.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    s.push_str("\n## Top offenders\n\n| offender | findings |\n|---|---|\n");
    for (o, n) in top.iter().take(10) {
        s.push_str(&format!("| {} | {n} |\n", md(o)));
    }
    s.push_str("\n## Findings\n\n| first seen | detector | severity | offender | events | status |\n|---|---|---|---|---|---|\n");
    for f in findings {
        s.push_str(&format!(
            "| {} | {} | {:?} | {} | {} | {:?} |\n",
            crate::time::format_rfc3339(f.first_seen),
            md(&f.detector.id),
            f.severity,
            md(&f.offender.value),
            f.metrics.event_count,
            f.status
        ));
    }
    s
}
