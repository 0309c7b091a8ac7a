//! The detection engine: events in, findings out, on event time.
//!
//! Detectors are indexed by the one field value their `match` requires
//! (action, dataset, log level or category), and each kind of event gets
//! a plan of the detectors that can match it with what is left to test
//! ([`super::plan`]), so an event is tested only against those. State is a map
//! from (detector, time domain, group key) to a small [`KeyState`]. Keys
//! whose window has emptied at the watermark are dropped as event time
//! moves on, so the map holds the live activity; when it still outgrows
//! `max_keys`, expired keys go first, then inactive keys with the
//! fewest events (oldest first among equals), counted in `evicted_keys`: a
//! flood of new keys costs bounded memory, never an OOM, and does not wash
//! out a slow attacker's build-up. Keys with an open finding are never evicted.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use crate::prehashed::{PrehashedMap, PrehashedSet};

use smallvec::SmallVec;
use xxhash_rust::xxh3::Xxh3;

use super::config::AggregateKind;
use super::matcher::{EvalCtx, KeywordGroups, KeywordHits, Matcher};
use super::plan::{Index, PlanCache, Verdicts};
use super::sigma::SigmaSet;
use super::window::{Contribution, WindowState};
use super::{Detector, Logic};
use crate::event::{Event, Kind, Outcome};
use crate::finding::{DetectorRef, Finding, Metrics, Offender, Status, TimeWindow};

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Most group keys held across all detectors.
    pub max_keys: usize,
    /// How far behind the newest event time an event may arrive and still count.
    pub allowed_lateness_ms: i64,
    pub execution_id: String,
    /// A jump back in time beyond the allowed lateness starts a new segment
    /// of its stream (its windows end, its open findings resolve) instead
    /// of being dropped as late: in a bounded replay such a jump is where
    /// one file of a concatenation ends and another (older) begins. Off on
    /// the live path, where late is late.
    pub segments: bool,
    /// Build only the versions that resolve a finding: where nothing reads
    /// the open and updated ones (a replay printing final states), making
    /// them, with their evidence and targets copied, is most of what a
    /// finding costs. Their count is kept (`EngineStats::unbuilt`); the
    /// finding's id, counters and final state are the same either way.
    pub final_states_only: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_keys: 1_000_000,
            allowed_lateness_ms: 60_000,
            execution_id: format!("exec-{}", crate::time::now_ms()),
            segments: false,
            final_states_only: false,
        }
    }
}

/// Outcome counters; `events == late + evaluated`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EngineStats {
    pub events: u64,
    pub late: u64,
    pub evaluated: u64,
    pub matched: u64,
    pub opened: u64,
    pub updated: u64,
    pub resolved: u64,
    pub evicted_keys: u64,
    /// Keys forgotten because their window emptied (not a loss: a new
    /// event for the key starts from nothing either way). Counted for this
    /// process only: left out of checkpoints, whose layout it would change.
    #[serde(skip)]
    pub expired_keys: u64,
    /// New segments started by a jump back in time (with `segments`).
    #[serde(skip)]
    pub segments: u64,
    /// Open and updated versions not built (`final_states_only`).
    #[serde(skip)]
    pub unbuilt: u64,
}

type Key = (u32, u32, u64);

/// A tracked key's state behind a pointer, with when it expires beside
/// it: the table itself stays small (a flood of one-off keys fills it and
/// leaves it half empty between passes), and an expiry pass reads the
/// table alone.
struct Slot {
    /// [`KeyState::expires`] as of the key's last event.
    expires: i64,
    state: Box<KeyState>,
}

impl std::ops::Deref for Slot {
    type Target = KeyState;
    fn deref(&self) -> &KeyState {
        &self.state
    }
}

impl std::ops::DerefMut for Slot {
    fn deref_mut(&mut self) -> &mut KeyState {
        &mut self.state
    }
}

/// States of expired keys, kept for the next new keys. A key's state is
/// cold by the time it expires: dropping it read it back from memory (to
/// find what it owns), and the allocator then handed other cold blocks to
/// new keys, so a stream of one-off clients cost a few cache misses per
/// key and detector. An expired state is now set aside unread, and a new
/// key overwrites one, which reads that memory once (a small `targets`
/// list's memory is kept for reuse). Only as many are kept as new keys
/// are expected before the next expiry pass, so memory stays that of the
/// live keys.
#[derive(Default)]
// boxed: a state moves into a key's slot as it is, not copied out
#[allow(clippy::vec_box)]
struct Spare(Vec<Box<KeyState>>);

/// Asks the CPU to bring `st` into cache ahead of its use, so that the
/// read does not wait on memory.
fn prefetch(st: &KeyState) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let first = (st as *const KeyState).cast::<i8>();
        let size = size_of::<KeyState>();
        // each line the state spans, aligned or not
        for at in (0..size).step_by(64).chain([size - 1]) {
            // SAFETY: a prefetch is a hint: it never faults, and the
            // program sees no value or state change from it; every address
            // here lies within `st`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(at)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = st;
}

impl Spare {
    /// A state for a new key of `det` first seen at `ts`.
    fn take(&mut self, det: &Detector, ts: i64) -> Box<KeyState> {
        match self.0.pop() {
            Some(mut st) => {
                // the next ones are read at the next new keys (an event
                // may make one per detector): fetched meanwhile
                self.0.iter().rev().take(2).for_each(|next| prefetch(next));
                st.reset(det, ts);
                st
            }
            None => Box::new(KeyState::new(det, ts)),
        }
    }

    /// Sets `st` aside, up to `most` held; beyond that it is dropped.
    fn keep(&mut self, st: Box<KeyState>, most: usize) {
        if self.0.len() < most {
            self.0.push(st);
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyState {
    first_seen: i64,
    last_seen: i64,
    window: WindowState,
    event_count: u64,
    success: u64,
    failure: u64,
    /// Distinct targets by hash (up to `MAX_TARGETS`), the first
    /// `TARGET_SAMPLES` with their value, for the finding.
    targets: Targets,
    evidence: Evidence,
    active: Option<Box<Active>>,
}

/// An open finding, held as little as makes its next version: what the
/// detector gives (title, actions, tags) and what the key's episode gives
/// (times, counts, evidence, targets) are filled in when a version is
/// emitted, so an open finding costs a few dozen bytes, not a whole
/// finding's worth of strings (a flood of one-request exploit attempts
/// holds each open for the resolve delay).
#[derive(serde::Serialize, serde::Deserialize)]
struct Active {
    /// The finding id's hash (detector, offender, key, episode start).
    id: u64,
    offender: Box<str>,
    /// Context read from the crossing event (the detector's labels are
    /// added when a version is made).
    context: Vec<(Box<str>, Box<str>)>,
    /// The aggregate and threshold when it crossed.
    value: f64,
    threshold: f64,
    status: Status,
    update_count: u32,
    crossed_at: i64,
    trigger_read_ns: u64,
    last_emit: i64,
}

/// `f-` and the id's 16 hex digits, as `format!("f-{id:016x}")` writes
/// them, without the formatting machinery (one per version emitted).
fn finding_id(id: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(18);
    s.push_str("f-");
    for shift in (0..16).rev() {
        s.push(HEX[(id >> (shift * 4)) as usize & 15] as char);
    }
    s
}

impl Active {
    /// The version to emit now: this finding with its detector's fields
    /// and the key's episode filled in.
    fn version(&self, det: &Detector, execution_id: &str, st: &KeyState) -> Finding {
        let mut context: std::collections::BTreeMap<String, String> =
            det.labels.iter().cloned().collect();
        for (k, v) in &self.context {
            context.insert(k.to_string(), v.to_string());
        }
        let mut f = Finding {
            finding_id: finding_id(self.id),
            execution_id: format!("{execution_id}-v{}", det.revision),
            detector: DetectorRef {
                id: det.id.clone(),
                version: det.revision,
            },
            domain: det.domain,
            classification: det.classification.clone(),
            title: det.title.clone(),
            severity: det.severity,
            confidence: det.confidence,
            status: self.status,
            context,
            offender: Offender {
                kind: det.offender_kind,
                value: self.offender.to_string(),
            },
            metrics: Metrics {
                value: self.value,
                threshold: self.threshold,
                ..Metrics::default()
            },
            time_window: TimeWindow::default(),
            first_seen: 0,
            last_seen: 0,
            update_count: self.update_count,
            evidence: Vec::new(),
            recommended_actions: det
                .recommended_actions
                .iter()
                .map(|a| a.replace("{offender}", &self.offender))
                .collect(),
            attack: det.attack.clone(),
            targets: Vec::new(),
            emitted_at: crate::time::now_ms(),
            crossed_at: self.crossed_at,
            trigger_read_ns: self.trigger_read_ns,
        };
        st.fill(&mut f);
        f
    }
}

/// A key's targets. The first is held in the state itself: most keys see
/// one (a client's user agent, a user's source), and a state set aside and
/// reused then clears it where it already reads, not in a list of its own
/// elsewhere in memory.
type Targets = SmallVec<[(u64, Option<Arc<str>>); 1]>;

const MAX_TARGETS: usize = 64;
/// Largest `targets` list whose memory a reset state keeps.
const REUSED_TARGETS: usize = 4;
/// Distinct target values a finding names (a sample; the count is exact up
/// to `MAX_TARGETS`).
const TARGET_SAMPLES: usize = 16;
/// Fewest events, and fewest new keys, between two passes that drop
/// expired keys.
const EXPIRY_MIN_EVENTS: usize = 8192;
/// A pass that drops expired keys also runs once the table has grown by
/// this fraction (the inverse) of the keys kept by the last pass.
const EXPIRY_GROWTH: usize = 4;
const EVIDENCE_LINE_MAX: usize = 512;
/// Time domains kept with no key before those are forgotten.
const MAX_IDLE_DOMAINS: usize = 1024;

impl KeyState {
    /// Starts the state afresh for `det` at `ts`, as [`KeyState::new`]
    /// would, keeping a small `targets` list's memory.
    fn reset(&mut self, det: &Detector, ts: i64) {
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        if targets.capacity() > REUSED_TARGETS {
            targets = Targets::new();
        }
        *self = KeyState {
            targets,
            ..KeyState::new(det, ts)
        };
    }

    fn new(det: &Detector, ts: i64) -> KeyState {
        KeyState {
            first_seen: ts,
            last_seen: ts,
            window: match &det.logic {
                Logic::Window(w) => WindowState::new(w),
                Logic::Sequence(_) => WindowState::Sequence {
                    stage: 0,
                    count: 0,
                    start: ts,
                },
            },
            event_count: 0,
            success: 0,
            failure: 0,
            targets: Targets::new(),
            evidence: Evidence::default(),
            active: None,
        }
    }

    /// Copies this key's episode (times, counts, evidence) into its finding.
    fn fill(&self, f: &mut Finding) {
        f.first_seen = self.first_seen;
        f.last_seen = self.last_seen;
        f.time_window = TimeWindow {
            start: self.first_seen,
            end: self.last_seen,
        };
        f.metrics.event_count = self.event_count;
        f.metrics.success_count = self.success;
        f.metrics.failure_count = self.failure;
        f.metrics.unique_targets = self.targets.len() as u64;
        f.metrics.duration_sec = ((self.last_seen - self.first_seen).max(0) / 1000) as u64;
        f.evidence = self
            .evidence
            .lines()
            .iter()
            .map(|e| e.to_string())
            .collect();
        f.targets = self
            .targets
            .iter()
            .filter_map(|(_, v)| v.as_deref().map(str::to_owned))
            .collect();
    }

    /// When the key may be forgotten: once its window is certainly empty,
    /// never while its finding is open.
    fn expires(&self, det: &Detector) -> i64 {
        match self.active {
            Some(_) => i64::MAX,
            None => self.last_seen.saturating_add(self.span_ms(det)),
        }
    }

    /// How long after `last_seen` the key's window is certainly empty.
    fn span_ms(&self, det: &Detector) -> i64 {
        match &det.logic {
            Logic::Window(w) => self.window.span_ms(w),
            Logic::Sequence(s) => s.within_ms,
        }
    }
}

/// Target samples shared by every key that names them: one address's
/// user agent, one user name, is held once however many keys sample it
/// (a new key costs a reference, not a copy of a long string). Samples no
/// key holds any more go at each expiry pass.
#[derive(Default)]
struct Samples {
    by_hash: PrehashedMap<u64, Arc<str>>,
}

impl Samples {
    /// The shared sample for `v`, whose xxh3 is `hash`.
    fn get(&mut self, hash: u64, v: &str) -> Arc<str> {
        match self.by_hash.entry(hash) {
            Entry::Occupied(e) if &**e.get() == v => e.get().clone(),
            // two values with one hash: the later keeps a copy of its own
            Entry::Occupied(_) => v.into(),
            Entry::Vacant(e) => e.insert(v.into()).clone(),
        }
    }

    fn prune(&mut self) {
        self.by_hash.retain(|_, s| Arc::strong_count(s) > 1);
    }
}

/// The keys with an open finding: how many each detector has (so a
/// detector with none skips its `resolve_when` test), and per time domain
/// a queue of resolve deadlines, so a sweep visits only the findings that
/// may be due rather than every open one (thousands of files hold a few
/// each; one flooded stream may hold hundreds of thousands).
///
/// A deadline is `last_seen + resolve_after` as of when it was queued;
/// activity since moves it later, which the sweep finds when it pops the
/// entry and queues it again. An entry is live while its key maps to its
/// deadline; entries left by a removed or requeued key are skipped.
#[derive(Default)]
struct OpenKeys {
    keys: PrehashedMap<Key, i64>,
    per_detector: Vec<u32>,
    due: PrehashedMap<u32, BinaryHeap<Reverse<(i64, Key)>>>,
}

impl OpenKeys {
    fn insert(&mut self, k: Key, deadline: i64) {
        if self.keys.insert(k, deadline).is_none() {
            let d = k.0 as usize;
            if self.per_detector.len() <= d {
                self.per_detector.resize(d + 1, 0);
            }
            self.per_detector[d] += 1;
        }
        self.due
            .entry(k.1)
            .or_default()
            .push(Reverse((deadline, k)));
    }

    fn remove(&mut self, k: &Key) {
        if self.keys.remove(k).is_some()
            && let Some(n) = self.per_detector.get_mut(k.0 as usize)
        {
            *n -= 1;
        }
    }

    fn contains(&self, k: &Key) -> bool {
        self.keys.contains_key(k)
    }

    fn any_for(&self, detector: u32) -> bool {
        self.per_detector
            .get(detector as usize)
            .is_some_and(|n| *n > 0)
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.per_detector.clear();
        self.due.clear();
    }

    fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.keys()
    }

    /// The open keys of `domain` due at `watermark`, by `deadline` (their
    /// current deadline), in deadline order; the others popped are queued
    /// again at their current deadline.
    fn take_due(
        &mut self,
        domain: u32,
        watermark: i64,
        deadline: impl Fn(&Key) -> i64,
    ) -> Vec<Key> {
        let mut out = Vec::new();
        let Some(queue) = self.due.get_mut(&domain) else {
            return out;
        };
        let mut requeue = Vec::new();
        while let Some(&Reverse((at, k))) = queue.peek() {
            if at > watermark {
                break;
            }
            queue.pop();
            if self.keys.get(&k) != Some(&at) {
                continue;
            }
            match deadline(&k) {
                now if now <= watermark => out.push(k),
                now => requeue.push((now, k)),
            }
        }
        for (now, k) in requeue {
            self.keys.insert(k, now);
            queue.push(Reverse((now, k)));
        }
        if queue.is_empty() {
            self.due.remove(&domain);
        }
        out
    }

    /// Every open key of `domain`, sorted; its queue is dropped.
    fn take_domain(&mut self, domain: u32) -> Vec<Key> {
        let mut out: Vec<Key> = self
            .due
            .remove(&domain)
            .into_iter()
            .flatten()
            .filter(|Reverse((at, k))| self.keys.get(k) == Some(at))
            .map(|Reverse((_, k))| k)
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

pub struct Engine {
    detectors: Vec<Detector>,
    index: Index,
    keywords: KeywordGroups,
    plans: PlanCache,
    /// Verdicts of the current event's conditions (reused).
    verdicts: Verdicts,
    /// The detectors the current event matches (reused).
    matching: Vec<u32>,
    sigma: SigmaSet,
    /// The detectors the current event's Sigma matches feed, and the
    /// rules that matched (reused).
    sigma_hits: Vec<u32>,
    sigma_rules: Vec<u16>,
    keys: PrehashedMap<Key, Slot>,
    spare: Spare,
    groupings: Groupings,
    samples: Samples,
    active: OpenKeys,
    /// Which shared keyword patterns the current event holds (reused).
    hits: KeywordHits,
    newest: PrehashedMap<u32, i64>,
    last_sweep: PrehashedMap<u32, i64>,
    /// Events since expired keys were last dropped, and the keys kept then.
    since_expiry: usize,
    kept_at_expiry: usize,
    /// Open keys left to resolve by [`Engine::flush_some`], last first.
    flushing: Vec<Key>,
    /// Open keys of an ended input's domain still to resolve, the lowest last.
    ending: Vec<Key>,
    cfg: EngineConfig,
    stats: EngineStats,
}

impl Engine {
    pub fn new(mut detectors: Vec<Detector>, cfg: EngineConfig) -> Engine {
        let matchers = detectors.iter_mut().flat_map(|d| {
            let mut ms: Vec<&mut Matcher> = vec![&mut d.matcher];
            ms.extend(d.resolve_when.as_mut());
            match &mut d.logic {
                Logic::Window(w) => ms.extend(w.numerator.as_mut()),
                Logic::Sequence(s) => ms.extend(s.steps.iter_mut().map(|st| &mut st.1)),
            }
            ms
        });
        // patterns were already built once per condition; merging cannot fail where those did not
        let keywords = KeywordGroups::build(matchers).unwrap_or_default();
        Engine {
            index: Index::build(&detectors),
            groupings: Groupings::build(&detectors),
            sigma: SigmaSet::build(&detectors),
            sigma_hits: Vec::new(),
            sigma_rules: Vec::new(),
            keywords,
            detectors,
            plans: PlanCache::default(),
            verdicts: Verdicts::default(),
            matching: Vec::new(),
            keys: PrehashedMap::default(),
            spare: Spare::default(),
            samples: Samples::default(),
            active: OpenKeys::default(),
            hits: KeywordHits::default(),
            newest: PrehashedMap::default(),
            last_sweep: PrehashedMap::default(),
            since_expiry: 0,
            kept_at_expiry: 0,
            flushing: Vec::new(),
            ending: Vec::new(),
            cfg,
            stats: EngineStats::default(),
        }
    }

    pub fn detectors(&self) -> &[Detector] {
        &self.detectors
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn tracked_keys(&self) -> usize {
        self.keys.len()
    }

    /// The engine's state for a checkpoint: every tracked key (detectors
    /// named by id, so a restore survives a reordered or edited catalogue),
    /// per-domain watermarks and the outcome counters.
    pub fn snapshot(&self) -> EngineSnapshot<'_> {
        EngineSnapshot {
            detectors: self.detectors.iter().map(|d| d.id.clone()).collect(),
            keys: self.keys.iter().map(|(k, v)| (*k, &*v.state)).collect(),
            newest: self.newest.iter().map(|(k, v)| (*k, *v)).collect(),
            last_sweep: self.last_sweep.iter().map(|(k, v)| (*k, *v)).collect(),
            stats: self.stats.clone(),
        }
    }

    /// Replaces this engine's state with a checkpoint's. Keys of detectors
    /// no longer loaded are dropped; returns how many.
    pub fn restore(&mut self, snap: EngineState) -> usize {
        let by_id: std::collections::HashMap<&str, u32> = self
            .detectors
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.as_str(), i as u32))
            .collect();
        let remap: Vec<Option<u32>> = snap
            .detectors
            .iter()
            .map(|id| by_id.get(id.as_str()).copied())
            .collect();
        self.keys.clear();
        self.active.clear();
        let mut dropped = 0;
        for ((di, domain, hash), st) in snap.keys {
            match remap.get(di as usize).copied().flatten() {
                Some(di) => {
                    let key = (di, domain, hash);
                    if st.active.is_some() {
                        let deadline = resolve_deadline(&st, &self.detectors[di as usize]);
                        self.active.insert(key, deadline);
                    }
                    let expires = st.expires(&self.detectors[di as usize]);
                    self.keys.insert(
                        key,
                        Slot {
                            expires,
                            state: Box::new(st),
                        },
                    );
                }
                None => dropped += 1,
            }
        }
        self.newest = snap.newest.into_iter().collect();
        self.last_sweep = snap.last_sweep.into_iter().collect();
        self.stats = snap.stats;
        dropped
    }

    /// Runs one event through every detector that can match it.
    pub fn process(&mut self, ev: &Event, out: &mut Vec<Finding>) {
        self.stats.events += 1;
        let newest = self.newest.entry(ev.time_domain).or_insert(i64::MIN);
        // an alert's state is Alertmanager's (its status and endsAt), not
        // a watermark's: a group resent with an older startsAt still counts
        if *newest != i64::MIN
            && ev.timestamp < *newest - self.cfg.allowed_lateness_ms
            && ev.kind != Kind::Alert
        {
            if !self.cfg.segments {
                self.stats.late += 1;
                return;
            }
            self.new_segment(ev.time_domain, ev.timestamp, out);
        }
        let newest = self.newest.entry(ev.time_domain).or_insert(i64::MIN);
        *newest = (*newest).max(ev.timestamp);
        let newest = *newest;
        self.stats.evaluated += 1;
        // findings whose quiet period ended before this event resolve
        // before it is counted: after a long gap (a sparse log, hours
        // between two crashes) the event opens a new finding rather than
        // updating one that was over. Not so for an alert: its time is
        // when it started, and alerts that started hours apart can all be
        // firing now (see `sweep_due` below)
        let alert = ev.kind == Kind::Alert;
        if !alert {
            self.sweep_due(ev.time_domain, newest, out);
        }
        let Engine {
            detectors,
            index,
            keywords,
            plans,
            verdicts,
            matching,
            keys,
            spare,
            groupings,
            samples,
            active,
            hits,
            cfg,
            stats,
            sigma,
            sigma_hits,
            sigma_rules,
            ..
        } = self;
        let mut ctx = EvalCtx::new(keywords, hits);
        groupings.next_event();
        for &di in &index.resolvers {
            if !active.any_for(di) {
                continue;
            }
            let det = &detectors[di as usize];
            if det
                .resolve_when
                .as_ref()
                .is_some_and(|m| m.matches_in(ev, &mut ctx))
                && let Some(key) = groupings.key(det, di, ev)
                && active.contains(&key)
            {
                if let Some(st) = keys.get_mut(&key) {
                    st.last_seen = st.last_seen.max(ev.timestamp);
                }
                resolve_key(detectors, cfg, keys, active, stats, key, out);
            }
        }
        verdicts.next_event(index.atoms());
        plans
            .get(index, ev)
            .matching(index, verdicts, ev, &mut ctx, matching);
        for &di in matching.iter() {
            stats.matched += 1;
            let det = &detectors[di as usize];
            observe(
                det, di, ev, keys, spare, groupings, samples, active, cfg, stats, &mut ctx, out,
            );
        }
        if !sigma.is_empty() {
            sigma.matches(ev, sigma_rules, sigma_hits);
            for &di in sigma_hits.iter() {
                stats.matched += 1;
                let det = &detectors[di as usize];
                observe(
                    det, di, ev, keys, spare, groupings, samples, active, cfg, stats, &mut ctx, out,
                );
            }
        }
        if alert {
            self.sweep_due(ev.time_domain, newest, out);
        }
        self.since_expiry += 1;
        let kept = self.kept_at_expiry;
        if self.since_expiry >= kept.max(EXPIRY_MIN_EVENTS)
            || self.keys.len() >= kept + (kept / EXPIRY_GROWTH).max(EXPIRY_MIN_EVENTS)
        {
            self.expire();
        }
        if self.keys.len() > self.cfg.max_keys {
            self.evict();
        }
    }

    /// Drops keys whose window is empty at their domain's watermark (no
    /// event still accepted could fall in it) and that have no open
    /// finding. Run after as many events as keys were kept by the last run,
    /// or once a quarter as many new keys were added (an event may make one
    /// per detector), so a pass costs a few reads of the table per new key
    /// (not of the states: each slot has its expiry beside it) while the
    /// table stays within 1.25 times the live activity: a client seen once
    /// costs memory for one window, not until `max_keys` is reached.
    fn expire(&mut self) {
        self.since_expiry = 0;
        let before = self.keys.len();
        let lateness = self.cfg.allowed_lateness_ms;
        // domains are mostly few (one per file or stream): a short list
        // beats a map lookup per key; many (syslog peers, alert groups)
        // get the map
        let watermarks: Vec<(u32, i64)> = self
            .newest
            .iter()
            .map(|(d, n)| (*d, n.saturating_sub(lateness)))
            .collect();
        let many: Option<PrehashedMap<u32, i64>> =
            (watermarks.len() > 16).then(|| watermarks.iter().copied().collect());
        let expired = self.keys.extract_if(|k, slot| {
            let watermark = match &many {
                Some(m) => m.get(&k.1).copied(),
                None => watermarks.iter().find(|w| w.0 == k.1).map(|w| w.1),
            }
            .unwrap_or(i64::MIN);
            slot.expires <= watermark
        });
        // new keys before the next pass: at most a quarter as many as are
        // kept, or the fewest a pass waits for
        let wanted = |kept: usize| (kept / EXPIRY_GROWTH).max(EXPIRY_MIN_EVENTS);
        let most = wanted(before);
        expired.for_each(|(_, slot)| self.spare.keep(slot.state, most));
        self.spare.0.truncate(wanted(self.keys.len()));
        self.samples.prune();
        self.forget_idle_domains();
        self.stats.expired_keys += (before - self.keys.len()) as u64;
        metrics::counter!(crate::metrics::DETECT_EXPIRED_KEYS)
            .increment((before - self.keys.len()) as u64);
        self.kept_at_expiry = self.keys.len();
        // a table left mostly empty by a burst is walked by the next pass
        // and spreads the live keys over cold memory: give it back, keeping
        // room for what arrives before the next pass (about as many new keys
        // as were kept), so steady traffic does not shrink and regrow it
        // at every pass
        if self.keys.capacity() > 8 * self.keys.len().max(EXPIRY_MIN_EVENTS) {
            self.keys.shrink_to(4 * self.keys.len());
        }
    }

    /// Forgets the watermark of domains no key belongs to once there are
    /// many (one per syslog peer or alert group, which anyone can make up):
    /// a forgotten domain's next event starts it afresh, which costs
    /// nothing, as no window of it is held.
    fn forget_idle_domains(&mut self) {
        if self.newest.len() <= MAX_IDLE_DOMAINS {
            return;
        }
        let held: PrehashedSet<u32> = self.keys.keys().map(|k| k.1).collect();
        self.newest.retain(|d, _| held.contains(d));
        self.last_sweep.retain(|d, _| held.contains(d));
        // an open key is a held key: what a dropped queue held was stale
        self.active.due.retain(|d, _| held.contains(d));
    }

    /// Ends a stream's segment where its time jumped back to `at`: its open
    /// findings resolve (their activity ended with the segment), its
    /// windows are forgotten (none may mix events of two periods), and its
    /// clock restarts at `at`.
    fn new_segment(&mut self, domain: u32, at: i64, out: &mut Vec<Finding>) {
        for k in self.active.take_domain(domain) {
            self.resolve(k, out);
        }
        self.keys.retain(|k, _| k.1 != domain);
        self.newest.insert(domain, at);
        self.last_sweep.remove(&domain);
        self.stats.segments += 1;
    }

    /// Resolves findings quiet since before `watermark` minus their resolve delay.
    /// Sweeps `domain` once its watermark (from its newest event time)
    /// has moved a second or more since the last sweep.
    fn sweep_due(&mut self, domain: u32, newest: i64, out: &mut Vec<Finding>) {
        let watermark = newest - self.cfg.allowed_lateness_ms;
        let last = self.last_sweep.entry(domain).or_insert(i64::MIN);
        if *last == i64::MIN || watermark - *last >= 1000 {
            *last = watermark;
            self.sweep(domain, watermark, out);
        }
    }

    fn sweep(&mut self, domain: u32, watermark: i64, out: &mut Vec<Finding>) {
        let (keys, detectors) = (&self.keys, &self.detectors);
        let due = self.active.take_due(domain, watermark, |k| {
            keys.get(k).map_or(i64::MIN, |st| {
                resolve_deadline(st, &detectors[k.0 as usize])
            })
        });
        for k in due {
            self.resolve(k, out);
        }
    }

    fn resolve(&mut self, k: Key, out: &mut Vec<Finding>) {
        resolve_key(
            &self.detectors,
            &self.cfg,
            &mut self.keys,
            &mut self.active,
            &mut self.stats,
            k,
            out,
        );
    }

    /// The end of a bounded input whose events all fall in `domain` (a
    /// file read to its end): nothing more can fall in its windows, so
    /// its open findings resolve now, as the end of the run would resolve
    /// them, and its clock moves to the end of time, so that the next
    /// pass that drops expired keys drops its keys too. A replay of many
    /// files then holds the windows of the files being read, not of every
    /// file read so far. Resolves up to `most` findings a call, in key
    /// order; true while some are left (call again with the same domain).
    pub fn end_domain(&mut self, domain: u32, most: usize, out: &mut Vec<Finding>) -> bool {
        if self.ending.is_empty() {
            self.ending = self.active.take_domain(domain);
            // popped from the end: lowest key first
            self.ending.reverse();
        }
        for _ in 0..most {
            let Some(k) = self.ending.pop() else { break };
            self.resolve(k, out);
        }
        if !self.ending.is_empty() {
            return true;
        }
        self.newest.insert(domain, i64::MAX);
        self.last_sweep.remove(&domain);
        false
    }

    /// End of input: every open finding resolves (its activity has stopped).
    pub fn flush(&mut self, out: &mut Vec<Finding>) {
        while self.flush_some(usize::MAX, out) {}
    }

    /// [`Engine::flush`] a part at a time: resolves up to `most` of the
    /// open findings, in the same order; true while some are left. A
    /// stage ending a flood sends hundreds of thousands of final versions
    /// in parts rather than holding them all at once.
    pub fn flush_some(&mut self, most: usize, out: &mut Vec<Finding>) -> bool {
        if self.flushing.is_empty() {
            self.flushing = self.active.iter().copied().collect();
            // popped from the end: lowest key first
            self.flushing.sort_unstable_by(|a, b| b.cmp(a));
        }
        for _ in 0..most {
            let Some(k) = self.flushing.pop() else { break };
            self.resolve(k, out);
        }
        if self.flushing.is_empty() {
            self.flushing = Vec::new();
            self.keys.clear();
            return false;
        }
        true
    }

    fn evict(&mut self) {
        let target = self.cfg.max_keys - self.cfg.max_keys / 10;
        let before = self.keys.len();
        let newest = &self.newest;
        self.keys
            .retain(|k, slot| slot.expires > newest.get(&k.1).copied().unwrap_or(i64::MIN));
        if self.keys.len() > target {
            // least evidence first (fewest events, then least recently seen):
            // a flood of one-off keys goes before a slow attacker building up
            let mut rank: Vec<(u64, i64)> = self
                .keys
                .values()
                .filter(|s| s.active.is_none())
                .map(|s| (s.event_count, s.last_seen))
                .collect();
            let excess = (self.keys.len() - target).min(rank.len());
            if excess > 0 {
                let (_, cutoff, _) = rank.select_nth_unstable(excess - 1);
                let cutoff = *cutoff;
                let mut budget = excess;
                self.keys.retain(|_, st| {
                    if budget > 0 && st.active.is_none() && (st.event_count, st.last_seen) <= cutoff
                    {
                        budget -= 1;
                        false
                    } else {
                        true
                    }
                });
            }
        }
        self.stats.evicted_keys += (before - self.keys.len()) as u64;
        metrics::counter!(crate::metrics::DETECT_EVICTED_KEYS)
            .increment((before - self.keys.len()) as u64);
    }
}

/// What [`Engine::snapshot`] writes (borrowing the live state).
#[derive(serde::Serialize)]
pub struct EngineSnapshot<'a> {
    detectors: Vec<String>,
    keys: Vec<(Key, &'a KeyState)>,
    newest: Vec<(u32, i64)>,
    last_sweep: Vec<(u32, i64)>,
    stats: EngineStats,
}

/// What [`Engine::restore`] reads: the same fields, owned.
#[derive(serde::Deserialize)]
pub struct EngineState {
    detectors: Vec<String>,
    keys: Vec<(Key, KeyState)>,
    newest: Vec<(u32, i64)>,
    last_sweep: Vec<(u32, i64)>,
    stats: EngineStats,
}

/// When an open finding of `st` resolves if nothing more happens.
fn resolve_deadline(st: &KeyState, det: &Detector) -> i64 {
    st.last_seen.saturating_add(det.resolve_after_ms)
}

/// Emits the final version of an open finding and forgets its key.
#[allow(clippy::too_many_arguments)]
fn resolve_key(
    detectors: &[Detector],
    cfg: &EngineConfig,
    keys: &mut PrehashedMap<Key, Slot>,
    active: &mut OpenKeys,
    stats: &mut EngineStats,
    k: Key,
    out: &mut Vec<Finding>,
) {
    active.remove(&k);
    if let Some(mut st) = keys.remove(&k)
        && let Some(mut a) = st.active.take()
        && let Some(det) = detectors.get(k.0 as usize)
    {
        a.status = Status::Resolved;
        a.update_count += 1;
        stats.resolved += 1;
        // the key is gone: its evidence lines move into the final
        // version rather than being copied
        let evidence = std::mem::take(&mut st.state.evidence).into_lines();
        let mut f = a.version(det, &cfg.execution_id, &st.state);
        f.evidence = evidence.into_iter().map(String::from).collect();
        out.push(f);
    }
}

/// The group digests of the current event, once per distinct grouping
/// (the fields grouped by, and the offender's default): most detectors
/// group by the source address, and an event that several of them
/// observe hashes its address once.
#[derive(Default)]
struct Groupings {
    /// Per detector, its grouping.
    of: Vec<u32>,
    /// Per grouping, the event its digest was worked out for, and the
    /// digest (None when a group-by value is missing).
    digests: Vec<(u64, Option<u64>)>,
    /// The current event's number, from 1.
    event: u64,
}

impl Groupings {
    fn build(detectors: &[Detector]) -> Groupings {
        let mut distinct: Vec<(&[crate::event::Field], Option<&str>)> = Vec::new();
        let of = detectors
            .iter()
            .map(|d| {
                let g = (d.group_by.as_slice(), d.offender_default.as_deref());
                let i = distinct.iter().position(|x| *x == g).unwrap_or_else(|| {
                    distinct.push(g);
                    distinct.len() - 1
                });
                i as u32
            })
            .collect();
        Groupings {
            of,
            digests: vec![(0, None); distinct.len()],
            event: 0,
        }
    }

    fn next_event(&mut self) {
        self.event += 1;
    }

    /// The state key of the current event `ev` for detector `di`.
    /// Inlined: returned through memory, the key was read back whole
    /// before its parts had been written out (a stalled load per call).
    #[inline(always)]
    fn key(&mut self, det: &Detector, di: u32, ev: &Event) -> Option<Key> {
        let slot = self.digests.get_mut(*self.of.get(di as usize)? as usize)?;
        if slot.0 != self.event {
            *slot = (self.event, group_digest(det, ev));
        }
        Some((di, ev.time_domain, slot.1?))
    }
}

/// The digest of `ev`'s group-by values for `det`, or None when one is
/// missing.
///
/// The hash is xxh3 of the values, each followed by 0x1f. Short keys (nearly
/// all: an address, a user, a host) are joined on the stack and hashed in
/// one call; longer ones stream through a hasher, with the same digest.
#[inline(never)]
fn group_digest(det: &Detector, ev: &Event) -> Option<u64> {
    const INLINE: usize = 256;
    let mut joined = [0u8; INLINE];
    let mut len = 0;
    let mut buf = String::new();
    let mut streamed: Option<Xxh3> = None;
    for f in &det.group_by {
        let v = match (
            ev.get(f, &mut buf).filter(|v| !v.is_empty()),
            det.offender_default.as_deref(),
        ) {
            (Some(v), _) | (None, Some(v)) => v,
            (None, None) => return None,
        };
        if streamed.is_none() && len + v.len() < INLINE {
            joined[len..len + v.len()].copy_from_slice(v.as_bytes());
            joined[len + v.len()] = 0x1f;
            len += v.len() + 1;
            continue;
        }
        let h = streamed.get_or_insert_with(|| {
            let mut h = Xxh3::new();
            h.update(&joined[..len]);
            h
        });
        hash_str(h, v);
    }
    Some(match streamed {
        Some(h) => h.digest(),
        None => xxhash_rust::xxh3::xxh3_64(&joined[..len]),
    })
}

fn hash_str(h: &mut Xxh3, s: &str) {
    h.update(s.as_bytes());
    h.update(&[0x1f]);
}

#[allow(clippy::too_many_arguments)]
fn observe(
    det: &Detector,
    di: u32,
    ev: &Event,
    keys: &mut PrehashedMap<Key, Slot>,
    spare: &mut Spare,
    groupings: &mut Groupings,
    samples: &mut Samples,
    active: &mut OpenKeys,
    cfg: &EngineConfig,
    stats: &mut EngineStats,
    ctx: &mut EvalCtx<'_>,
    out: &mut Vec<Finding>,
) {
    let Some(key) = groupings.key(det, di, ev) else {
        return;
    };
    let ts = ev.timestamp;
    let slot = keys.entry(key).or_insert_with(|| Slot {
        expires: i64::MIN,
        state: spare.take(det, ts),
    });
    observe_key(
        det,
        key,
        ev,
        &mut slot.state,
        samples,
        active,
        cfg,
        stats,
        ctx,
        out,
    );
    slot.expires = slot.state.expires(det);
}

/// [`observe`] on the key's state.
#[allow(clippy::too_many_arguments)]
fn observe_key(
    det: &Detector,
    key: Key,
    ev: &Event,
    st: &mut KeyState,
    samples: &mut Samples,
    active: &mut OpenKeys,
    cfg: &EngineConfig,
    stats: &mut EngineStats,
    ctx: &mut EvalCtx<'_>,
    out: &mut Vec<Finding>,
) {
    let mut buf = String::new();
    let ts = ev.timestamp;
    if st.active.is_none() && ts > st.last_seen + st.span_ms(det) {
        st.reset(det, ts);
    }
    // the gap to the key's previous event, for `min_gap_secs`
    let gap = if st.event_count == 0 {
        i64::MAX
    } else {
        ts - st.last_seen
    };
    st.first_seen = st.first_seen.min(ts);
    st.last_seen = st.last_seen.max(ts);
    st.event_count += ev.count as u64;
    match ev.outcome {
        Outcome::Success => st.success += ev.count as u64,
        Outcome::Failure => st.failure += ev.count as u64,
        Outcome::Unknown => {}
    }
    // the target's hash, which a distinct count of the same field reuses
    let mut target_hash = None;
    if let Some(tf) = &det.targets_field
        && let Some(v) = ev.get(tf, &mut buf)
    {
        let th = xxhash_rust::xxh3::xxh3_64(v.as_bytes());
        target_hash = Some(th);
        if st.targets.len() < MAX_TARGETS && !st.targets.iter().any(|t| t.0 == th) {
            let sample = (st.targets.len() < TARGET_SAMPLES).then(|| samples.get(th, v));
            st.targets.push((th, sample));
        }
    }
    if let Some(mut a) = st.active.take() {
        push_evidence(&mut st.evidence, det, ev);
        if ts >= a.last_emit + det.cooldown_ms {
            a.last_emit = ts;
            a.status = Status::Updated;
            a.update_count += 1;
            a.trigger_read_ns = ev.read_ns;
            stats.updated += 1;
            emit(out, &a, det, cfg, stats, st);
        }
        st.active = Some(a);
        return;
    }
    let (crossed, value, threshold) = match &det.logic {
        Logic::Window(w) if gap < w.min_gap_ms => return,
        Logic::Window(w) => {
            let num = match w.aggregate {
                AggregateKind::Sum => {
                    w.field
                        .as_ref()
                        .and_then(|f| ev.get_number(f))
                        .unwrap_or(0.0)
                        * ev.count as f64
                }
                AggregateKind::Ratio
                    if w.numerator.as_ref().is_some_and(|n| n.matches_in(ev, ctx)) =>
                {
                    ev.count as f64
                }
                _ => 0.0,
            };
            let distinct = match (&w.aggregate, &w.field) {
                (AggregateKind::DistinctCount, Some(f)) => {
                    match target_hash.filter(|_| det.targets_field.as_ref() == Some(f)) {
                        Some(th) => th,
                        None => match ev.get(f, &mut buf) {
                            Some(v) => xxhash_rust::xxh3::xxh3_64(v.as_bytes()),
                            None => return,
                        },
                    }
                }
                _ => 0,
            };
            let (value, events) = st.window.observe(
                w,
                &Contribution {
                    ts,
                    weight: ev.count as f64,
                    num,
                    distinct,
                },
            );
            let enough = w.aggregate != AggregateKind::Ratio || events >= w.min_events as f64;
            (enough && value >= w.threshold, value, w.threshold)
        }
        Logic::Sequence(seq) => {
            let WindowState::Sequence {
                stage,
                count,
                start,
            } = &mut st.window
            else {
                return;
            };
            if ts - *start > seq.within_ms {
                *stage = 0;
                *count = 0;
            }
            let s = *stage as usize;
            if s < seq.steps.len() && seq.steps[s].1.matches_in(ev, ctx) {
                if *stage == 0 && *count == 0 {
                    *start = ts;
                }
                *count += ev.count as u64;
                if *count >= seq.steps[s].2 {
                    *stage += 1;
                    *count = 0;
                }
            }
            (
                *stage as usize == seq.steps.len(),
                *stage as f64,
                seq.steps.len() as f64,
            )
        }
    };
    // Evidence is kept from half-way to the threshold on: the lines that
    // build up to a finding, without a copy for every one-off key.
    if crossed || value * 2.0 >= threshold {
        push_evidence(&mut st.evidence, det, ev);
    }
    if !crossed {
        return;
    }
    let offender: Box<str> = match (
        ev.get(&det.offender_field, &mut buf)
            .filter(|v| !v.is_empty()),
        det.offender_default.as_deref(),
    ) {
        (Some(v), _) | (None, Some(v)) => v.into(),
        (None, None) => return,
    };
    let context = det
        .context
        .iter()
        .filter_map(|(k, f)| Some((k.as_str().into(), ev.get(f, &mut buf)?.into())))
        .collect();
    let mut idh = Xxh3::new();
    hash_str(&mut idh, &det.id);
    hash_str(&mut idh, &offender);
    idh.update(&key.2.to_le_bytes());
    // the source: the same attacker against two hosts is two findings
    idh.update(&key.1.to_le_bytes());
    idh.update(&st.first_seen.to_le_bytes());
    let a = Active {
        id: idh.digest(),
        offender,
        context,
        value,
        threshold,
        status: Status::Open,
        update_count: 0,
        crossed_at: ts,
        trigger_read_ns: ev.read_ns,
        last_emit: ts,
    };
    stats.opened += 1;
    emit(out, &a, det, cfg, stats, st);
    st.active = Some(Box::new(a));
    active.insert(key, resolve_deadline(st, det));
}

/// Emits an open or updated version, unless only final states are read.
fn emit(
    out: &mut Vec<Finding>,
    a: &Active,
    det: &Detector,
    cfg: &EngineConfig,
    stats: &mut EngineStats,
    st: &KeyState,
) {
    if cfg.final_states_only {
        stats.unbuilt += 1;
    } else {
        out.push(a.version(det, &cfg.execution_id, st));
    }
}

fn push_evidence(evidence: &mut Evidence, det: &Detector, ev: &Event) {
    if evidence.lines().len() < det.evidence_max {
        let line = &ev.original;
        let cut = (0..=line.len().min(EVIDENCE_LINE_MAX))
            .rev()
            .find(|&i| line.is_char_boundary(i))
            .unwrap_or(0);
        evidence.push(line[..cut].into());
    }
}

/// A key's evidence lines. Most keys hold none: no memory then, and one
/// word in the state (which is kept to two cache lines). A key that
/// holds some pushes them one at a time into room that grows as a
/// vector's does (a boxed slice of exactly the lines, as before, cost
/// two reallocations a line). Written to a checkpoint as the list of
/// lines, as the boxed slice was.
#[derive(Default)]
// boxed: the vector's three words live with its lines, not in the state
#[allow(clippy::box_collection)]
struct Evidence(Option<Box<Vec<Box<str>>>>);

impl Evidence {
    fn lines(&self) -> &[Box<str>] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }

    fn push(&mut self, line: Box<str>) {
        self.0.get_or_insert_with(Box::default).push(line);
    }

    fn into_lines(self) -> Vec<Box<str>> {
        self.0.map(|v| *v).unwrap_or_default()
    }
}

impl serde::Serialize for Evidence {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.lines())
    }
}

impl<'de> serde::Deserialize<'de> for Evidence {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Evidence, D::Error> {
        let lines = Vec::<Box<str>>::deserialize(d)?;
        Ok(Evidence((!lines.is_empty()).then(|| Box::new(lines))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Field;
    use crate::parse::{Format, SourceState, parse_line};

    const BF: &str = r#"
version: 1
id: identity.bf
revision: 1
title: bf
domain: identity
classification: brute_force
severity: high
confidence: 0.9
match:
  all:
    - field: event.action
      equals: [ssh_login]
    - field: event.outcome
      equals: [failure]
window:
  kind: sliding
  size_secs: 600
  group_by: [source.ip]
  threshold: 20
output:
  offender: {type: ip, field: source.ip}
"#;

    #[test]
    fn with_a_minimum_gap_a_burst_counts_once_and_spaced_events_add_up() {
        let spaced = BF
            .replace("threshold: 20", "min_gap_secs: 300\n  threshold: 3")
            .replace("size_secs: 600", "size_secs: 7200");
        let det = crate::detect::load_str(&spaced, "bf.yaml").unwrap();
        let run = |times: &[(u32, u32)]| {
            let mut engine = Engine::new(vec![det.clone()], EngineConfig::default());
            let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
            let mut out = Vec::new();
            for (m, s) in times {
                let line = format!(
                    "Mar  3 10:{m:02}:{s:02} h sshd[1]: Failed password for root from 203.0.113.8 port 22 ssh2"
                );
                engine.process(&parse_line(&line, &mut st, 0), &mut out);
            }
            out.iter()
                .filter(|f| f.status == crate::finding::Status::Open)
                .count()
        };
        // forty failures in forty seconds: one burst, one count
        let burst: Vec<(u32, u32)> = (0..40).map(|s| (0, s)).collect();
        assert_eq!(run(&burst), 0);
        // three failures six minutes apart
        assert_eq!(run(&[(0, 0), (6, 0), (12, 0)]), 1);
        // three bursts six minutes apart count three as well
        let bursts: Vec<(u32, u32)> = [0, 6, 12]
            .iter()
            .flat_map(|m| (0..5).map(move |s| (*m, s)))
            .collect();
        assert_eq!(run(&bursts), 1);
        // four minutes apart is one long burst
        assert_eq!(run(&[(0, 0), (4, 0), (8, 0), (12, 0)]), 0);
    }

    /// Regression: an event that came after its key's finding had been
    /// quiet past its resolve delay updated that finding (a crash a day
    /// after the last one joined the day before's finding), since the
    /// sweep that resolves findings ran only after the event was counted.
    #[test]
    fn a_finding_quiet_past_its_resolve_delay_is_over_before_the_next_event() {
        let one = BF
            .replace("threshold: 20", "threshold: 1\n  resolve_after_secs: 600")
            .replace("kind: sliding", "kind: tumbling");
        let det = crate::detect::load_str(&one, "bf.yaml").unwrap();
        let mut engine = Engine::new(vec![det], EngineConfig::default());
        let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
        let mut out = Vec::new();
        for at in ["Mar  3 10:00:00", "Mar  3 10:01:00", "Mar  4 10:00:00"] {
            let line =
                format!("{at} h sshd[1]: Failed password for root from 203.0.113.8 port 22 ssh2");
            engine.process(&parse_line(&line, &mut st, 0), &mut out);
        }
        engine.flush(&mut out);
        let versions: Vec<(Status, u64)> = out
            .iter()
            .map(|f| (f.status, f.metrics.event_count))
            .collect();
        assert_eq!(
            versions,
            [
                (Status::Open, 1),
                (Status::Updated, 2),
                (Status::Resolved, 2),
                (Status::Open, 1),
                (Status::Resolved, 1),
            ]
        );
        assert_ne!(out[0].finding_id, out[3].finding_id);
    }

    #[test]
    fn a_jump_back_is_late_live_and_a_new_segment_in_a_replay() {
        let det = crate::detect::load_str(BF, "bf.yaml").unwrap();
        let line = |hour: u32, ip: &str, i: u32| {
            format!(
                "Mar  3 {hour:02}:00:{i:02} h sshd[1]: Failed password for root from {ip} port 22 ssh2"
            )
        };
        for segments in [false, true] {
            let mut engine = Engine::new(
                vec![det.clone()],
                EngineConfig {
                    segments,
                    ..EngineConfig::default()
                },
            );
            let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
            let mut out = Vec::new();
            // the detector wants 20 failures
            for (hour, ip) in [(14, "203.0.113.1"), (10, "203.0.113.2")] {
                for i in 0..25 {
                    engine.process(&parse_line(&line(hour, ip, i), &mut st, 0), &mut out);
                }
            }
            engine.flush(&mut out);
            let found: std::collections::BTreeSet<&str> =
                out.iter().map(|f| f.offender.value.as_str()).collect();
            if segments {
                assert_eq!(engine.stats().late, 0);
                assert_eq!(engine.stats().segments, 1);
                assert_eq!(found.len(), 2, "{found:?}");
                // the first segment's finding resolved when it ended
                let first: Vec<_> = out
                    .iter()
                    .filter(|f| f.offender.value == "203.0.113.1")
                    .collect();
                assert_eq!(
                    first.last().unwrap().status,
                    crate::finding::Status::Resolved
                );
            } else {
                assert_eq!(engine.stats().late, 25);
                assert_eq!(found.len(), 1, "{found:?}");
            }
        }
    }

    #[test]
    fn a_flood_of_new_keys_is_evicted_and_an_attack_in_it_still_found() {
        let det = crate::detect::load_str(BF, "bf.yaml").unwrap();
        let mut engine = Engine::new(
            vec![det],
            EngineConfig {
                max_keys: 1000,
                allowed_lateness_ms: 60_000,
                execution_id: "t".into(),
                segments: false,
                final_states_only: false,
            },
        );
        let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
        let mut out = Vec::new();
        let attacker = |sec: u32| {
            format!(
                "Mar  3 10:{:02}:{:02} h sshd[1]: Failed password for root from 203.0.113.9 port 22 ssh2",
                sec / 60 % 60,
                sec % 60
            )
        };
        // a quick burst, then slower than the key table turns over (1500 new keys
        // between attempts against room for 1000): least-recently-seen eviction
        // would forget the attacker every time
        for _ in 0..5 {
            engine.process(&parse_line(&attacker(0), &mut st, 0), &mut out);
        }
        for i in 0..50_000u32 {
            let sec = i / 100;
            let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            let line = format!(
                "Mar  3 10:{:02}:{:02} h sshd[1]: Failed password for root from {ip} port 22 ssh2",
                sec / 60 % 60,
                sec % 60
            );
            engine.process(&parse_line(&line, &mut st, 0), &mut out);
            if i % 1500 == 1499 {
                engine.process(&parse_line(&attacker(sec), &mut st, 0), &mut out);
            }
            assert!(engine.tracked_keys() <= 1000, "state grew past its bound");
        }
        assert!(engine.stats().evicted_keys > 40_000);
        assert_eq!(
            out.iter()
                .filter(|f| f.offender.value == "203.0.113.9")
                .map(|f| &f.finding_id)
                .collect::<std::collections::HashSet<_>>()
                .len(),
            1
        );
        // the state of one tracked key is small, and its table slot smaller
        assert!(std::mem::size_of::<Slot>() <= 16);
        assert!(
            std::mem::size_of::<KeyState>() <= 128,
            "KeyState is {} bytes",
            std::mem::size_of::<KeyState>()
        );
    }

    #[test]
    fn keys_whose_window_emptied_are_dropped_as_time_moves_on() {
        let det = crate::detect::load_str(BF, "bf.yaml").unwrap();
        let mut engine = Engine::new(vec![det], EngineConfig::default());
        let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
        let mut out = Vec::new();
        // one failure from each of 40,000 addresses, 20 a second for 2,000 s;
        // the 600 s window plus 60 s of lateness holds about 13,200 of them,
        // and a pass runs once a quarter as many again (at least 8,192) were
        // added
        for i in 0..40_000u32 {
            let sec = i / 20;
            let line = format!(
                "Mar  3 {:02}:{:02}:{:02} h sshd[1]: Failed password for root from 10.{}.{}.{} port 22 ssh2",
                10 + sec / 3600,
                sec / 60 % 60,
                sec % 60,
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            );
            engine.process(&parse_line(&line, &mut st, 0), &mut out);
            assert!(
                engine.tracked_keys() < 22_000,
                "{} keys",
                engine.tracked_keys()
            );
        }
        assert!(engine.stats().expired_keys > 15_000);
        assert_eq!(engine.stats().evicted_keys, 0);
        assert!(out.is_empty());
    }

    #[test]
    fn a_new_key_on_an_expired_keys_state_starts_as_on_a_fresh_one() {
        let det = BF.replace(
            "  offender: {type: ip, field: source.ip}",
            "  offender: {type: ip, field: source.ip}\n  targets_field: user.name",
        );
        let failure = |sec: u32, user: &str, ip: &str| {
            format!(
                "Mar  3 {:02}:{:02}:{:02} h sshd[1]: Failed password for {user} from {ip} port 22 ssh2",
                10 + sec / 3600,
                sec / 60 % 60,
                sec % 60,
            )
        };
        // an attacker's 25 failures on three users within 30 s, at 2,000 s
        let attack: Vec<String> = (0..25u32)
            .map(|i| {
                failure(
                    2_000 + i,
                    ["root", "admin", "oracle"][i as usize % 3],
                    "192.0.2.7",
                )
            })
            .collect();
        let run = |flood: bool| {
            let det = crate::detect::load_str(&det, "bf.yaml").unwrap();
            let mut engine = Engine::new(vec![det], EngineConfig::default());
            let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
            let mut out = Vec::new();
            // before it, 40,000 addresses with a few failures each on their
            // own user: their states expire and are set aside for reuse
            for i in 0..(if flood { 40_000u32 } else { 0 }) {
                let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
                for _ in 0..(1 + i % 3) {
                    let line = failure(i / 20, &format!("u{i}"), &ip);
                    engine.process(&parse_line(&line, &mut st, 0), &mut out);
                }
            }
            assert!(out.is_empty());
            assert!(!flood || engine.stats().expired_keys > 15_000);
            for line in &attack {
                engine.process(&parse_line(line, &mut st, 0), &mut out);
            }
            engine.flush(&mut out);
            out.iter()
                .map(|f| {
                    let m = &f.metrics;
                    let counts = (m.event_count, m.failure_count, m.unique_targets);
                    (
                        f.status,
                        counts,
                        f.first_seen,
                        f.last_seen,
                        f.targets.clone(),
                        f.evidence.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let fresh = run(false);
        assert_eq!(fresh.len(), 2, "opened and resolved: {fresh:?}");
        assert_eq!(fresh[0].1, (20, 20, 3));
        assert_eq!(run(true), fresh);
    }

    #[test]
    fn flushing_in_parts_resolves_the_same_findings_in_the_same_order() {
        let run = |part: usize| {
            let det = crate::detect::load_str(BF, "bf.yaml").unwrap();
            let mut engine = Engine::new(vec![det], EngineConfig::default());
            let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
            let mut out = Vec::new();
            // seven addresses, 25 failures each in 35 s: seven open findings
            for i in 0..175u32 {
                let line = format!(
                    "Mar  3 10:00:{:02} h sshd[1]: Failed password for root from 10.0.0.{} port 22 ssh2",
                    i / 5,
                    i % 7
                );
                engine.process(&parse_line(&line, &mut st, 0), &mut out);
            }
            out.clear();
            let mut parts = 0;
            while engine.flush_some(part, &mut out) {
                parts += 1;
            }
            assert_eq!(engine.tracked_keys(), 0);
            let resolved: Vec<(String, Status)> = out
                .iter()
                .map(|f| (f.finding_id.clone(), f.status))
                .collect();
            (resolved, parts)
        };
        let (whole, _) = run(usize::MAX);
        let (in_parts, parts) = run(2);
        assert_eq!(whole.len(), 7, "{whole:?}");
        assert!(whole.iter().all(|(_, s)| *s == Status::Resolved));
        assert_eq!(in_parts, whole);
        assert_eq!(parts, 3);
    }

    #[test]
    fn evidence_is_written_to_a_checkpoint_as_the_list_of_lines_it_was() {
        let lines: Box<[Box<str>]> = vec!["a".into(), "b c".into()].into_boxed_slice();
        let mut ev = Evidence::default();
        let none = postcard::to_allocvec(&ev).unwrap();
        assert_eq!(
            none,
            postcard::to_allocvec(&Box::<[Box<str>]>::default()).unwrap()
        );
        for l in lines.iter() {
            ev.push(l.clone());
        }
        let bytes = postcard::to_allocvec(&ev).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&lines).unwrap());
        let back: Evidence = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.lines(), &*lines);
        let empty: Evidence = postcard::from_bytes(&none).unwrap();
        assert!(empty.0.is_none(), "no lines, no memory");
    }

    #[test]
    fn targets_are_written_to_a_checkpoint_as_the_list_they_were() {
        let list: Vec<(u64, Option<Arc<str>>)> = vec![(7, Some("agent/1".into())), (9, None)];
        for n in 0..=list.len() {
            let held: Targets = list[..n].iter().cloned().collect();
            let bytes = postcard::to_allocvec(&held).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(&list[..n].to_vec()).unwrap());
            let back: Targets = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back.as_slice(), &list[..n]);
        }
    }

    #[test]
    fn finding_ids_are_f_and_sixteen_hex_digits() {
        for id in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(finding_id(id), format!("f-{id:016x}"));
        }
    }

    #[test]
    fn an_ended_inputs_findings_resolve_at_its_end_as_at_the_end_of_the_run() {
        let failure = |sec: u32, ip: &str| {
            format!(
                "Mar  3 10:{:02}:{:02} h sshd[1]: Failed password for root from {ip} port 22 ssh2",
                sec / 60,
                sec % 60
            )
        };
        let mut file = SourceState::new(Format::Auto, 1_780_000_000_000);
        let mut stream = SourceState::new(Format::Auto, 1_780_000_000_000);
        stream.time_domain = 1;
        // the file: seven attackers (25 failures each in 35 s) and twenty
        // addresses with one failure; the stream: one attacker
        let mut file_events: Vec<Event> = (0..175u32)
            .map(|i| parse_line(&failure(i / 5, &format!("10.0.0.{}", i % 7)), &mut file, 0))
            .collect();
        file_events.extend(
            (0..20u32).map(|i| parse_line(&failure(40, &format!("10.0.1.{i}")), &mut file, 0)),
        );
        let attacker =
            |i: u32, st: &mut SourceState| parse_line(&failure(i / 5, "192.0.2.9"), st, 0);
        let seen = |out: &[Finding]| -> Vec<(String, Status, u64, i64, i64)> {
            out.iter()
                .map(|f| {
                    let m = &f.metrics;
                    (
                        f.finding_id.clone(),
                        f.status,
                        m.event_count,
                        f.first_seen,
                        f.last_seen,
                    )
                })
                .collect()
        };
        let engine = || {
            let det = crate::detect::load_str(BF, "bf.yaml").unwrap();
            Engine::new(vec![det], EngineConfig::default())
        };
        let mut out = Vec::new();
        // the whole run: everything resolves at its end
        let mut whole = engine();
        for (i, ev) in file_events.iter().enumerate() {
            whole.process(ev, &mut out);
            whole.process(&attacker(i as u32, &mut stream), &mut out);
        }
        out.clear();
        whole.flush(&mut out);
        let at_run_end = seen(&out);
        assert_eq!(at_run_end.len(), 8, "{at_run_end:?}");
        // the file ends first: its seven resolve then, in parts, the same
        let mut stream = SourceState::new(Format::Auto, 1_780_000_000_000);
        stream.time_domain = 1;
        let mut ended = engine();
        for (i, ev) in file_events.iter().enumerate() {
            ended.process(ev, &mut out);
            ended.process(&attacker(i as u32, &mut stream), &mut out);
        }
        out.clear();
        let mut parts = 1;
        while ended.end_domain(0, 2, &mut out) {
            parts += 1;
        }
        assert_eq!(parts, 4);
        let at_file_end = seen(&out);
        let of_file: Vec<_> = at_run_end
            .iter()
            .filter(|f| at_file_end.contains(f))
            .collect();
        assert_eq!(of_file.len(), 7, "{at_file_end:?}");
        assert!(at_file_end.iter().all(|f| f.1 == Status::Resolved));
        // the stream goes on: the file's quiet keys go with the next pass
        // that drops expired ones, its attacker's finding stays open
        for i in 195..(195 + EXPIRY_MIN_EVENTS as u32 + 10) {
            ended.process(&attacker(i, &mut stream), &mut out);
        }
        assert_eq!(ended.tracked_keys(), 1);
        out.clear();
        ended.flush(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].offender.value, "192.0.2.9");
    }

    #[test]
    fn group_keys_hash_as_one_stream_whatever_their_length() {
        let mut det = crate::detect::load_str(BF, "bf.yaml").unwrap();
        det.group_by = vec![Field::SourceIp, Field::UserName];
        let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
        for user in ["root".to_owned(), "u".repeat(300)] {
            let line = format!(
                "Mar  3 10:00:00 h sshd[1]: Failed password for {user} from 203.0.113.9 port 22 ssh2"
            );
            let ev = parse_line(&line, &mut st, 0);
            let mut h = Xxh3::new();
            hash_str(&mut h, "203.0.113.9");
            hash_str(&mut h, &user);
            assert_eq!(group_digest(&det, &ev), Some(h.digest()));
        }
    }

    #[test]
    fn an_alert_resolved_by_alertmanager_resolves_its_finding_at_once() {
        let dets = crate::detect::load_dir(std::path::Path::new("detectors")).unwrap();
        let mut engine = Engine::new(dets, EngineConfig::default());
        let hook = |status: &str, at: &str| {
            format!(
                r#"{{"version":"4","groupKey":"g","status":"{status}","receiver":"r","alerts":[{{"status":"{status}","labels":{{"alertname":"HighLatency","instance":"api-1:9100"}},"annotations":{{"summary":"p99 high"}},"startsAt":"2026-03-03T10:00:00Z","endsAt":"{at}","fingerprint":"f1"}}]}}"#
            )
        };
        let mut st = SourceState::new(Format::Auto, 0);
        let mut out = Vec::new();
        let mut evs = Vec::new();
        crate::parse::parse_into(
            &hook("firing", "0001-01-01T00:00:00Z"),
            &mut st,
            0,
            &mut evs,
        );
        crate::parse::parse_into(
            &hook("resolved", "2026-03-03T10:05:00Z"),
            &mut st,
            0,
            &mut evs,
        );
        for ev in &evs {
            engine.process(ev, &mut out);
        }
        let statuses: Vec<_> = out
            .iter()
            .filter(|f| f.detector.id == "infrastructure.alert_firing")
            .map(|f| f.status)
            .collect();
        assert_eq!(
            statuses,
            vec![Status::Open, Status::Resolved],
            "resolved before the input ends"
        );
        assert_eq!(out[1].last_seen - out[1].first_seen, 300_000);
    }

    #[test]
    fn a_sweep_takes_only_what_is_due_and_requeues_what_moved_on() {
        let mut open = OpenKeys::default();
        let (a, b, other) = ((0, 1, 10), (1, 1, 11), (0, 2, 12));
        open.insert(a, 100);
        open.insert(b, 200);
        open.insert(other, 50);
        // b was active since it was queued: its deadline is now 400
        let now = |k: &Key| if *k == b { 400 } else { 100 };
        assert_eq!(open.take_due(1, 250, now), vec![a]);
        assert!(open.any_for(1) && open.contains(&b));
        // the other domain's key is not visited
        assert!(open.contains(&other));
        open.remove(&a);
        assert_eq!(open.take_due(1, 399, now), Vec::<Key>::new());
        assert_eq!(open.take_due(1, 400, now), vec![b]);
        open.remove(&b);
        assert!(!open.any_for(1));
        // a removed key's stale entry is skipped, a reopened key kept once
        open.insert(a, 500);
        open.remove(&a);
        open.insert(a, 600);
        assert_eq!(open.take_domain(1), vec![a]);
        assert_eq!(open.take_due(2, 1000, |_| 50), vec![other]);
    }
}
