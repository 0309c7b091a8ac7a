//! What sources and stages hand each other: raw batches through the
//! graph's [`Ingress`], and the outcome counts every stage reports.
//!
//! It sits below the pipeline, ingestion and the API so that each can
//! speak of batches and reports without importing the others.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::line::Line;

pub use crate::ingest::Stream;

/// Outcome counts of one stage.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StageReport {
    pub stage: String,
    pub received: u64,
    /// Extra items a stage created (one webhook payload, many alerts).
    pub expanded: u64,
    pub emitted: u64,
    pub dropped: BTreeMap<String, u64>,
    /// Items an earlier run left (a store's spool) and this one delivered.
    pub replayed: u64,
    /// Items passed on changed, by reason (`time_clamped`: an event time
    /// too far ahead of its receipt was set to the receive time).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub adjusted: BTreeMap<String, u64>,
    /// Microseconds the stage spent working, not waiting for input or for
    /// the next stage: the stage whose busy time is nearest the run's
    /// elapsed time is the one that sets the pace.
    #[serde(skip_serializing_if = "is_zero")]
    pub busy_us: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl StageReport {
    pub fn new(stage: &str) -> StageReport {
        StageReport {
            stage: stage.to_owned(),
            ..StageReport::default()
        }
    }

    /// `received + expanded == emitted + dropped`.
    pub fn adds_up(&self) -> bool {
        self.received + self.expanded == self.emitted + self.dropped.values().sum::<u64>()
    }

    /// Adds another report's counts (several sources make one `source` stage).
    pub fn merge(&mut self, other: &StageReport) {
        self.received += other.received;
        self.expanded += other.expanded;
        self.emitted += other.emitted;
        for (k, v) in &other.dropped {
            *self.dropped.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.adjusted {
            *self.adjusted.entry(k.clone()).or_default() += v;
        }
        self.busy_us += other.busy_us;
    }
}

/// Every stage's report as it stands, shared by a running graph's stages
/// and `/api/v1/status`, so a long-lived pipeline shows what it dropped
/// (late, overloaded, …) while it runs, not only in its final summary.
#[derive(Clone, Debug, Default)]
pub struct Board(Arc<std::sync::Mutex<BTreeMap<String, StageReport>>>);

impl Board {
    /// Replaces a stage's report with its latest counts.
    pub fn post(&self, rep: &StageReport) {
        if let Ok(mut m) = self.0.lock() {
            match m.get_mut(&rep.stage) {
                Some(r) => r.clone_from(rep),
                None => {
                    m.insert(rep.stage.clone(), rep.clone());
                }
            }
        }
    }

    /// The reports, by stage name.
    pub fn reports(&self) -> Vec<StageReport> {
        self.0
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Where a batch of raw lines came from.
pub enum Origin {
    /// One of the pipeline's files (or stdin), by index.
    Input(usize),
    /// A pushed stream (a Loki stream, a syslog peer, a webhook sender); its
    /// parser state is created on first sight.
    Stream(Arc<Stream>),
}

/// A batch's lines, held in one buffer. A file reader that allocated a
/// string per line, each freed later by the parse stage on another
/// thread, spent more on the allocator than on reading.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lines {
    text: String,
    /// Where each line ends in `text`.
    ends: Vec<usize>,
}

impl Lines {
    /// Room for `lines` lines of `bytes` bytes in all.
    pub fn with_capacity(lines: usize, bytes: usize) -> Lines {
        Lines {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(lines),
        }
    }

    /// The bytes of all lines together.
    pub fn bytes(&self) -> usize {
        self.text.len()
    }

    pub fn push(&mut self, line: &str) {
        self.text.push_str(line);
        self.ends.push(self.text.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let line = self.text.get(start..end).unwrap_or("");
            start = end;
            line
        })
    }

    /// The lines with their buffer moved (not copied) behind a shared
    /// pointer, so that each event can keep its line as a range of it
    /// ([`Line`]).
    pub fn into_shared(self) -> SharedLines {
        SharedLines {
            text: Arc::new(self.text),
            ends: self.ends,
        }
    }
}

/// A batch's lines in a buffer that the events made of them share.
pub struct SharedLines {
    text: Arc<String>,
    ends: Vec<usize>,
}

impl SharedLines {
    /// Each line, as text and as a [`Line`] of the shared buffer.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Line)> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let text = self.text.get(start..end).unwrap_or("");
            let line = Line::of(&self.text, start, end);
            start = end;
            (text, line)
        })
    }
}

impl<S: AsRef<str>> FromIterator<S> for Lines {
    fn from_iter<I: IntoIterator<Item = S>>(lines: I) -> Lines {
        let mut out = Lines::default();
        lines.into_iter().for_each(|l| out.push(l.as_ref()));
        out
    }
}

impl From<Vec<String>> for Lines {
    fn from(lines: Vec<String>) -> Lines {
        lines.into_iter().collect()
    }
}

/// A batch of raw lines from one origin.
pub struct RawBatch {
    pub origin: Origin,
    pub lines: Lines,
    /// Per-line event time where the transport carries one (Loki entry
    /// timestamps, epoch ms); empty means "when read". A line's own
    /// timestamp, when it has one, still wins.
    pub times: Vec<i64>,
    /// Per-line labels (Loki structured metadata): (line index, name, value).
    pub metadata: Vec<(u32, String, String)>,
    pub read_ns: u64,
    /// What these lines hold of ingestion's memory budget, given back when
    /// the parse stage drops the batch (see [`crate::ingest::budget`]).
    pub grant: Option<crate::ingest::budget::Grant>,
    /// The last lines of a bounded input (a file read to its end): nothing
    /// more comes in its time domain, whose open windows can then close.
    pub last: bool,
    /// The file these lines came from, where an input reads several (a
    /// rotation set): their events' `log.file.path` from this batch on.
    pub file: Option<crate::name::Name>,
}

impl RawBatch {
    pub fn lines(origin: Origin, lines: impl Into<Lines>) -> RawBatch {
        RawBatch {
            origin,
            lines: lines.into(),
            times: Vec::new(),
            metadata: Vec::new(),
            read_ns: mono_ns(),
            grant: None,
            last: false,
            file: None,
        }
    }

    /// Notes the file the lines came from (see [`RawBatch::file`]).
    pub fn from_file(self, file: Option<crate::name::Name>) -> RawBatch {
        RawBatch { file, ..self }
    }

    /// Marks the batch as its input's last (see [`RawBatch::last`]).
    pub fn ending(self) -> RawBatch {
        RawBatch { last: true, ..self }
    }
}

/// The graph's entrance: every source sends its batches through a clone.
/// The graph drains and stops once every clone is dropped. A send is a
/// group of batches taken whole or not at all, so a refused HTTP push can
/// be retried without having been half ingested.
#[derive(Clone)]
pub struct Ingress {
    tx: mpsc::Sender<Vec<RawBatch>>,
    peers: Arc<Peers>,
    budget: Arc<crate::ingest::budget::MemoryBudget>,
}

/// Why a batch was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The parse stage's queue stayed full for the whole wait (overload).
    Full,
    /// The graph is shutting down.
    Closed,
}

impl Ingress {
    /// The entrance of a graph whose parse stage reads `tx`'s receiver.
    pub fn new(tx: mpsc::Sender<Vec<RawBatch>>) -> Ingress {
        Ingress {
            tx,
            peers: Arc::new(Peers::default()),
            budget: crate::ingest::budget::MemoryBudget::new(usize::MAX),
        }
    }

    /// Shares `budget` with every source that sends through this ingress.
    pub fn with_budget(self, budget: Arc<crate::ingest::budget::MemoryBudget>) -> Ingress {
        Ingress { budget, ..self }
    }

    /// Ingestion's memory budget: what sources take before they hold lines.
    pub fn budget(&self) -> &Arc<crate::ingest::budget::MemoryBudget> {
        &self.budget
    }

    /// A grant of `n` bytes, waiting while the budget has no room (for
    /// readers that can wait: a TCP sender is slowed down). A cost above
    /// the whole budget waits for all of it.
    pub async fn grant_waiting(&self, n: usize) -> crate::ingest::budget::Grant {
        let n = n.min(self.budget.limit());
        loop {
            if let Some(g) = self.budget.grant(n) {
                return g;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Records the senders it sees in `peers` (shared with response, so
    /// that no action ever blocks a log shipper).
    pub fn with_peers(self, peers: Arc<Peers>) -> Ingress {
        Ingress { peers, ..self }
    }

    /// Notes that `ip` delivers to this pipeline through `via`.
    pub fn peer(&self, ip: IpAddr, via: &str) {
        self.peers.add(ip, via);
    }

    /// Waits for room (backpressure for readers that can wait).
    pub async fn send(&self, batch: RawBatch) -> Result<(), Refused> {
        self.tx.send(vec![batch]).await.map_err(|_| Refused::Closed)
    }

    /// Sends a group whole, waiting for room.
    pub async fn send_all(&self, batches: Vec<RawBatch>) -> Result<(), Refused> {
        self.tx.send(batches).await.map_err(|_| Refused::Closed)
    }

    /// Waits at most `wait` for room, for pushers that must answer their
    /// client (an HTTP 503 tells it to retry later).
    pub async fn send_all_within(
        &self,
        batches: Vec<RawBatch>,
        wait: Duration,
    ) -> Result<(), Refused> {
        match self.tx.send_timeout(batches, wait).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(Refused::Full),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(Refused::Closed),
        }
    }

    pub fn blocking_send(&self, batch: RawBatch) -> Result<(), Refused> {
        self.blocking_send_all(vec![batch])
    }

    /// Sends a group whole from a thread outside the runtime, waiting for room.
    pub fn blocking_send_all(&self, batches: Vec<RawBatch>) -> Result<(), Refused> {
        self.tx.blocking_send(batches).map_err(|_| Refused::Closed)
    }

    /// Sends waiting for the parse stage.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// Addresses that deliver to or steer this pipeline: log shippers, syslog
/// peers, Alertmanager, API clients and approvers. Response never acts on
/// them (self-lockout protection): blocking the host that ships the logs
/// would blind the pipeline to the attack it is answering. Bounded, so a
/// flood of spoofed senders cannot grow it without end; the first reason
/// an address was seen for is kept, for the audit record.
#[derive(Default)]
pub struct Peers {
    seen: RwLock<HashMap<IpAddr, Arc<str>>>,
}

impl Peers {
    /// At most this many addresses are remembered.
    pub const MAX: usize = 65_536;

    pub fn add(&self, ip: IpAddr, via: &str) {
        if self.seen.read().is_ok_and(|m| m.contains_key(&ip)) {
            return;
        }
        if let Ok(mut m) = self.seen.write()
            && m.len() < Self::MAX
        {
            m.entry(ip).or_insert_with(|| Arc::from(via));
        }
    }

    /// Why `ip` is a peer, if it is one.
    pub fn why(&self, ip: &IpAddr) -> Option<Arc<str>> {
        self.seen.read().ok()?.get(ip).cloned()
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.why(ip).is_some()
    }

    /// A peer for which `inside` holds (one inside a network to be
    /// blocked), with its reason.
    pub fn find(&self, inside: impl Fn(&IpAddr) -> bool) -> Option<(IpAddr, Arc<str>)> {
        let m = self.seen.read().ok()?;
        m.iter()
            .find(|(ip, _)| inside(ip))
            .map(|(ip, w)| (*ip, w.clone()))
    }

    pub fn len(&self) -> usize {
        self.seen.read().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Monotonic nanoseconds since the first call (for latency).
pub fn mono_ns() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// A batch gives back the lines put in, empty ones included.
        #[test]
        fn lines_read_back_as_pushed(lines in proptest::collection::vec("\\PC{0,12}", 0..20)) {
            let batch: Lines = lines.iter().collect();
            proptest::prop_assert_eq!(batch.len(), lines.len());
            proptest::prop_assert_eq!(batch.iter().collect::<Vec<_>>(), lines.iter().map(String::as_str).collect::<Vec<_>>());
            proptest::prop_assert_eq!(Lines::from(lines.clone()), batch);
        }
    }
}
