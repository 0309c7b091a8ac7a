//! Which detectors an event is tested against, and how: one plan per kind
//! of event.
//!
//! Detectors are indexed by the one value of action, dataset, log level or
//! category their `match` requires ([`Index`]). A stream holds a few dozen
//! kinds of event (those four values together), and a condition on one of
//! the four has the same verdict for every event of a kind. So, once per
//! kind, the candidates are chosen and each one's conditions reduced to
//! what the kind leaves open ([`Plan`]): a web request is not tested
//! against the detectors that exclude web requests, nor its category again
//! by the eighteen that require it. The conditions of all detectors are
//! interned ([`Atoms`]): one that several detectors share (a status range,
//! a static-asset path pattern) is tested once per event and its verdict
//! reused ([`Verdicts`]). A detector that requires a keyword is passed
//! over at the cost of one bit when the event's value holds no keyword of
//! its group at all (the usual case: one scan answers a dozen detectors).
//!
//! Which of a plan's detectors match is a function of the values its
//! conditions read, and for a web request those are the request itself
//! (method, target, status, user agent): real traffic repeats them
//! heavily. So a plan remembers, by those values, which detectors matched
//! ([`Recall`]): a repeated request costs one key and one lookup instead
//! of a scan and a test per condition. A kind whose conditions read the
//! line or its message (new on every line) remembers nothing; where the
//! values do not repeat (an attack's unique URLs) the memory is let go
//! after a trial and tried again later.

use std::borrow::Cow;

use super::Detector;
use super::matcher::{CompiledCondition, EvalCtx};
use crate::event::{Event, Field};
use crate::memo::{Consult, Trial};
use crate::prehashed::PrehashedMap;

/// Every distinct condition of the indexed detectors, tested by number.
#[derive(Default)]
pub(super) struct Atoms {
    conditions: Vec<CompiledCondition>,
}

impl Atoms {
    fn intern(&mut self, c: &CompiledCondition) -> u32 {
        let at = match self.conditions.iter().position(|a| a.same_as(c)) {
            Some(i) => i,
            None => {
                self.conditions.push(c.clone());
                self.conditions.len() - 1
            }
        };
        at as u32
    }

    fn len(&self) -> usize {
        self.conditions.len()
    }
}

/// What is left of a detector's `match` once the index has chosen it
/// (the indexed `equals` holds by construction), as atoms.
#[derive(Default)]
struct Residual {
    all: Vec<u32>,
    any: Vec<u32>,
    none: Vec<u32>,
}

/// Detectors by the value of the one field each requires.
#[derive(Default)]
pub(super) struct Index {
    by_action: PrehashedMap<String, Vec<u32>>,
    by_dataset: PrehashedMap<String, Vec<u32>>,
    by_level: PrehashedMap<String, Vec<u32>>,
    by_category: PrehashedMap<String, Vec<u32>>,
    generic: Vec<u32>,
    residual: Vec<Residual>,
    atoms: Atoms,
    /// Detectors with `resolve_when`, tested on every event.
    pub(super) resolvers: Vec<u32>,
}

impl Index {
    pub(super) fn build(detectors: &[Detector]) -> Index {
        let mut ix = Index {
            resolvers: detectors
                .iter()
                .enumerate()
                .filter(|(_, d)| d.resolve_when.is_some())
                .map(|(i, _)| i as u32)
                .collect(),
            ..Index::default()
        };
        for (i, d) in detectors.iter().enumerate() {
            if d.sigma.is_some() {
                // matched by the Sigma engine; never a candidate here
                ix.residual.push(Residual::default());
                continue;
            }
            let rest = match d.matcher.index_key() {
                Some((field, values, rest)) => {
                    let map = match field {
                        Field::Action => &mut ix.by_action,
                        Field::Dataset => &mut ix.by_dataset,
                        Field::LogLevel => &mut ix.by_level,
                        // the only other field `index_key` gives
                        _ => &mut ix.by_category,
                    };
                    values
                        .into_iter()
                        .for_each(|v| map.entry(v).or_default().push(i as u32));
                    rest
                }
                None => {
                    ix.generic.push(i as u32);
                    d.matcher.clone()
                }
            };
            let (all, any, none) = rest.parts();
            let mut interned = |cs: &[CompiledCondition]| -> Vec<u32> {
                cs.iter().map(|c| ix.atoms.intern(c)).collect()
            };
            let residual = Residual {
                all: interned(all),
                any: interned(any),
                none: interned(none),
            };
            ix.residual.push(residual);
        }
        ix
    }

    /// Each detector that can match `ev` appears once (a detector is in one map).
    fn candidates_into(&self, ev: &Event, out: &mut Vec<u32>) {
        fn get<'a>(m: &'a PrehashedMap<String, Vec<u32>>, k: Option<&str>) -> &'a [u32] {
            k.and_then(|k| m.get(k)).map_or(&[], Vec::as_slice)
        }
        out.clear();
        out.extend_from_slice(get(&self.by_action, ev.action.as_deref()));
        out.extend_from_slice(get(&self.by_dataset, Some(ev.dataset.as_ref())));
        out.extend_from_slice(get(&self.by_level, ev.log_level.as_deref()));
        out.extend_from_slice(get(&self.by_category, ev.category));
        out.extend_from_slice(&self.generic);
    }

    /// The number of atoms, for sizing [`Verdicts`].
    pub(super) fn atoms(&self) -> usize {
        self.atoms.len()
    }
}

/// The fields that make a kind of event: a condition on one of them has
/// one verdict for the whole kind.
fn of_kind(field: &Field) -> bool {
    matches!(
        field,
        Field::Action | Field::Dataset | Field::LogLevel | Field::Category
    )
}

/// One candidate's match on a kind of event: the atoms of `refs` from
/// `start` that must all hold, up to `none_from`; those none of which may,
/// up to `any_from`; and, when `any` is set, those one of which must, up
/// to `end`.
pub(super) struct Step {
    detector: u32,
    /// The keyword group one of whose patterns the event must hold (its
    /// first keyword condition in `all`): most values hold none, and then
    /// the step is decided by the group's one scan.
    gate: Option<usize>,
    start: u32,
    none_from: u32,
    any_from: u32,
    end: u32,
    any: bool,
}

/// The candidates for one kind of event, in index order, each with what
/// the kind leaves to test.
#[derive(Default)]
pub(super) struct Plan {
    steps: Vec<Step>,
    refs: Vec<u32>,
    /// The fields the steps' conditions read.
    reads: Vec<Field>,
    recall: Recall,
}

/// Which detectors matched recent events of a plan's kind, by the values
/// of the fields the plan reads, with how well that pays.
#[derive(Default)]
struct Recall {
    memo: MatchMemo,
    /// Scratch: the current event's key, and a number rendered for it.
    key: Vec<u8>,
    buf: String,
    /// Whether remembering pays.
    trial: Trial,
    /// Answers from memory, all told.
    recalled: u64,
}

/// Matching detectors by key; keys longer than a request with a long
/// query are not remembered.
type MatchMemo = crate::memo::Memo<Vec<u32>, 8192, 1024>;

impl Recall {
    /// The key of `ev`'s values of `reads`, and its hash; None when
    /// memory is resting or the key is too long to remember.
    fn key(&mut self, reads: &[Field], ev: &Event) -> Option<u64> {
        if reads.is_empty() {
            return None;
        }
        match self.trial.consult() {
            Consult::Look => {}
            Consult::Skip => return None,
            Consult::Forget => {
                self.memo = MatchMemo::default();
                return None;
            }
        }
        self.key.clear();
        for f in reads {
            // each value with its length: no two lists of values share a key
            match ev.get(f, &mut self.buf) {
                Some(v) => {
                    self.key.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    self.key.extend_from_slice(v.as_bytes());
                }
                None => self.key.extend_from_slice(&u32::MAX.to_le_bytes()),
            }
            if !MatchMemo::fits(&self.key) {
                return None;
            }
        }
        Some(xxhash_rust::xxh3::xxh3_64(&self.key))
    }
}

impl Plan {
    /// Rebuilds this plan for the kind of `ev`. A condition on a kind
    /// field is decided here: one that fails drops its detector, one that
    /// holds is not tested again.
    fn build(&mut self, index: &Index, candidates: &[u32], ev: &Event) {
        self.steps.clear();
        self.refs.clear();
        self.reads.clear();
        self.recall = Recall::default();
        let mut buf = String::new();
        let mut decided = |a: u32| {
            let c = &index.atoms.conditions[a as usize];
            (of_kind(&c.field) && c.is_plain())
                .then(|| c.test(ev, &mut buf, &mut EvalCtx::default()))
        };
        for &di in candidates {
            let Some(r) = index.residual.get(di as usize) else {
                continue;
            };
            let start = self.refs.len();
            let mut dead = false;
            for &a in &r.all {
                match decided(a) {
                    Some(true) => {}
                    Some(false) => dead = true,
                    None => self.refs.push(a),
                }
            }
            let none_from = self.refs.len();
            for &a in &r.none {
                match decided(a) {
                    Some(true) => dead = true,
                    Some(false) => {}
                    None => self.refs.push(a),
                }
            }
            let any_from = self.refs.len();
            let mut any = !r.any.is_empty();
            for &a in &r.any {
                match decided(a) {
                    Some(true) => any = false,
                    Some(false) => {}
                    None => self.refs.push(a),
                }
            }
            if !any {
                // satisfied by the kind (or there is no `any`)
                self.refs.truncate(any_from);
            } else if self.refs.len() == any_from {
                // every alternative ruled out by the kind
                dead = true;
            }
            if dead {
                self.refs.truncate(start);
                continue;
            }
            let gate = self.refs[start..none_from]
                .iter()
                .find_map(|&a| index.atoms.conditions[a as usize].keyword_group());
            self.steps.push(Step {
                detector: di,
                gate,
                start: start as u32,
                none_from: none_from as u32,
                any_from: any_from as u32,
                end: self.refs.len() as u32,
                any,
            });
        }
        for &a in &self.refs {
            let field = &index.atoms.conditions[a as usize].field;
            if !self.reads.contains(field) {
                self.reads.push(field.clone());
            }
        }
        // a kind whose conditions read the line is new on every line:
        // nothing to remember, and trying would fill the memo with lines
        if self
            .reads
            .iter()
            .any(|f| matches!(f, Field::Original | Field::Message))
        {
            self.reads.clear();
        }
        // the path and the query are parts of the target
        if self.reads.contains(&Field::UrlOriginal) {
            self.reads
                .retain(|f| !matches!(f, Field::UrlPath | Field::UrlQuery));
        }
    }

    /// The detectors that match `ev` (an event of this plan's kind), in
    /// the plan's order, into `out`: remembered for a repeated request,
    /// else tested step by step (a keyword gate first).
    pub(super) fn matching(
        &mut self,
        index: &Index,
        verdicts: &mut Verdicts,
        ev: &Event,
        ctx: &mut EvalCtx<'_>,
        out: &mut Vec<u32>,
    ) {
        out.clear();
        let hash = self.recall.key(&self.reads, ev);
        if let Some(h) = hash
            && let Some(known) = self.recall.memo.get(h, &self.recall.key)
        {
            self.recall.trial.hit();
            self.recall.recalled += 1;
            out.extend_from_slice(known);
            return;
        }
        for step in &self.steps {
            if let Some(group) = step.gate
                && ctx.found(ev, group) == Some(false)
            {
                continue;
            }
            if self.holds(step, index, verdicts, ev, ctx) {
                out.push(step.detector);
            }
        }
        let Recall { memo, key, .. } = &mut self.recall;
        if let Some(h) = hash
            && let Some(slot) = memo.put(h, key)
        {
            slot.clear();
            slot.extend_from_slice(out);
        }
    }

    /// Whether `step`'s detector matches `ev` (an event of this plan's kind).
    #[inline]
    fn holds(
        &self,
        step: &Step,
        index: &Index,
        verdicts: &mut Verdicts,
        ev: &Event,
        ctx: &mut EvalCtx<'_>,
    ) -> bool {
        let refs = |from: u32, to: u32| self.refs.get(from as usize..to as usize).unwrap_or(&[]);
        let mut test = |a: &u32| verdicts.test(*a, &index.atoms, ev, ctx);
        refs(step.start, step.none_from).iter().all(&mut test)
            && !refs(step.none_from, step.any_from).iter().any(&mut test)
            && (!step.any || refs(step.any_from, step.end).iter().any(&mut test))
    }
}

/// Verdicts of atoms for the current event, each tested at most once.
/// A verdict is stored with the event's stamp, so a new event forgets
/// them all without clearing.
#[derive(Default)]
pub(super) struct Verdicts {
    stamp: u32,
    state: Vec<u32>,
    buf: String,
}

impl Verdicts {
    /// Forgets the previous event's verdicts.
    pub(super) fn next_event(&mut self, atoms: usize) {
        if self.state.len() != atoms {
            self.state = vec![0; atoms];
            self.stamp = 0;
        }
        self.stamp += 1;
        if self.stamp >= 1 << 31 {
            self.state.fill(0);
            self.stamp = 1;
        }
    }

    fn test(&mut self, a: u32, atoms: &Atoms, ev: &Event, ctx: &mut EvalCtx<'_>) -> bool {
        let (Some(cond), Some(state)) = (
            atoms.conditions.get(a as usize),
            self.state.get_mut(a as usize),
        ) else {
            return false;
        };
        if *state >> 1 == self.stamp {
            return *state & 1 == 1;
        }
        let verdict = cond.test(ev, &mut self.buf, ctx);
        *state = self.stamp << 1 | verdict as u32;
        verdict
    }
}

/// The plans of recently seen kinds of event (action, dataset, log level,
/// category). Direct-mapped and bounded; a slot is only used when all four
/// values are equal. Not a [`crate::memo::Memo`]: the kind is compared as
/// four fields in place, with no key to join and hash for the usual event,
/// which is of the previous event's kind.
#[derive(Default)]
pub(super) struct PlanCache {
    slots: Vec<Option<CachedKind>>,
    /// The slot of the previous event's kind: lines of one source mostly
    /// follow others of their kind, and comparing spares the hashing.
    last: usize,
    candidates: Vec<u32>,
}

/// A kind's values as the event had them: parsers name most kinds with
/// static strings, so comparing a later event's values is mostly a
/// pointer compare ([`same`]).
struct CachedKind {
    action: Option<Cow<'static, str>>,
    dataset: Cow<'static, str>,
    level: Option<Cow<'static, str>>,
    category: Option<&'static str>,
    plan: Plan,
}

const PLAN_SLOTS: usize = 64;

impl CachedKind {
    /// An empty plan for `ev`'s kind.
    fn of(ev: &Event) -> CachedKind {
        CachedKind {
            action: ev.action.clone(),
            dataset: ev.dataset.clone(),
            level: ev.log_level.clone(),
            category: ev.category,
            plan: Plan::default(),
        }
    }

    fn is_for(&self, ev: &Event) -> bool {
        let both = |a: Option<&str>, b: Option<&str>| match (a, b) {
            (Some(a), Some(b)) => same(a, b),
            (a, b) => a.is_none() && b.is_none(),
        };
        both(self.category, ev.category)
            && same(&self.dataset, &ev.dataset)
            && both(self.action.as_deref(), ev.action.as_deref())
            && both(self.level.as_deref(), ev.log_level.as_deref())
    }
}

/// Whether two strings are equal, the same memory first: a `memcmp` call
/// for a short name costs more than the compare.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || a == b)
}

impl PlanCache {
    /// The plan for `ev`'s kind.
    pub(super) fn get(&mut self, index: &Index, ev: &Event) -> &mut Plan {
        if self.slots.is_empty() {
            self.slots.resize_with(PLAN_SLOTS, || None);
        }
        let seen = self
            .slots
            .get(self.last)
            .is_some_and(|s| s.as_ref().is_some_and(|k| k.is_for(ev)));
        if !seen {
            let h = [
                ev.action.as_deref(),
                Some(ev.dataset.as_ref()),
                ev.log_level.as_deref(),
                ev.category,
            ]
            .iter()
            .fold(0u64, |h, s| {
                (h.rotate_left(7) ^ s.map_or(0, quick_hash)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            });
            self.last = (h >> 58) as usize % PLAN_SLOTS;
            let slot = &mut self.slots[self.last];
            if !slot.as_ref().is_some_and(|k| k.is_for(ev)) {
                let mut plan = slot.take().map(|k| k.plan).unwrap_or_default();
                index.candidates_into(ev, &mut self.candidates);
                plan.build(index, &self.candidates, ev);
                *slot = Some(CachedKind {
                    plan,
                    ..CachedKind::of(ev)
                });
            }
        }
        // just filled when it was not this kind's
        let slot = &mut self.slots[self.last];
        &mut slot.get_or_insert_with(|| CachedKind::of(ev)).plan
    }
}

/// A cheap hash of a short string (its length and first and last eight
/// bytes): enough to spread a few dozen kinds over the cache's slots.
fn quick_hash(s: &str) -> u64 {
    let b = s.as_bytes();
    let word = |part: &[u8]| {
        let mut w = [0u8; 8];
        w[..part.len()].copy_from_slice(part);
        u64::from_le_bytes(w)
    };
    let n = b.len();
    let head = word(&b[..n.min(8)]);
    let tail = word(&b[n.saturating_sub(8)..]);
    (head ^ tail.rotate_left(29) ^ n as u64).wrapping_mul(0x517C_C1B7_2722_0A95)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::detect::matcher::{KeywordGroups, KeywordHits};
    use crate::parse::{Format, SourceState, parse_line};

    /// What the engine asks of a plan: the detectors `ev` matches, sorted.
    fn planned(
        (plans, index, verdicts): (&mut PlanCache, &Index, &mut Verdicts),
        (keywords, hits): (&KeywordGroups, &mut KeywordHits),
        ev: &Event,
    ) -> Vec<u32> {
        let mut out = Vec::new();
        verdicts.next_event(index.atoms());
        let mut ctx = EvalCtx::new(keywords, hits);
        plans
            .get(index, ev)
            .matching(index, verdicts, ev, &mut ctx, &mut out);
        out.sort_unstable();
        out
    }

    /// Answers the plans gave from memory.
    fn recalled(plans: &PlanCache) -> u64 {
        plans
            .slots
            .iter()
            .flatten()
            .map(|k| k.plan.recall.recalled)
            .sum()
    }

    /// Every shipped detector, on every fixture line: the detectors a
    /// kind's plan finds matching are exactly those whose whole `match`
    /// (tested the plain way, each keyword set on its own) matches.
    #[test]
    fn a_plan_decides_as_the_whole_match_does() {
        // the package root, where `cargo test` runs
        let root = Path::new(".");
        let mut detectors = crate::detect::load_dir(&root.join("detectors")).unwrap();
        let keywords = KeywordGroups::build(detectors.iter_mut().map(|d| &mut d.matcher)).unwrap();
        let index = Index::build(&detectors);
        let (mut plans, mut verdicts, mut hits) = Default::default();
        let mut matched = std::collections::BTreeSet::new();
        let mut lines = 0;
        for dir in std::fs::read_dir(root.join("fixtures/detectors")).unwrap() {
            let Ok(text) = std::fs::read_to_string(dir.unwrap().path().join("input.log")) else {
                continue;
            };
            let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
            for line in text.lines() {
                lines += 1;
                let ev = parse_line(line, &mut st, 0);
                let whole: Vec<u32> = (0..detectors.len() as u32)
                    .filter(|&i| {
                        let d = &detectors[i as usize];
                        d.sigma.is_none() && d.matcher.matches(&ev)
                    })
                    .collect();
                // the second time from the plan's memory
                for _ in 0..2 {
                    let plan = (&mut plans, &index, &mut verdicts);
                    assert_eq!(planned(plan, (&keywords, &mut hits), &ev), whole, "{line}");
                }
                matched.extend(whole);
            }
        }
        // not a vacuous agreement: most detectors matched some line, and
        // plans answered from memory
        let recalled = recalled(&plans);
        assert!(recalled > 1_000, "{recalled} answers from memory");
        assert!(lines > 5_000, "{lines} lines");
        assert!(matched.len() > 25, "{} detectors matched", matched.len());
    }

    /// Requests that differ in any one value a condition reads are told
    /// apart by the plan's memory; the same request is answered from it.
    #[test]
    fn remembered_matches_tell_every_read_value_apart() {
        let yaml = |id: &str, m: &str| {
            format!(
                "version: 1\nid: {id}\nrevision: 1\ntitle: t\ndomain: http\nclassification: c\nseverity: low\nconfidence: 0.5\nmatch:\n  all:\n    - {{field: event.category, equals: [web]}}\n    - {m}\nwindow: {{kind: tumbling, size_secs: 60, group_by: [source.ip], threshold: 1}}\noutput:\n  offender: {{type: ip, field: source.ip}}\n"
            )
        };
        let mut detectors: Vec<Detector> = [
            yaml(
                "http.status",
                "{field: http.response.status_code, gte: 400}",
            ),
            yaml("http.path", "{field: url.path, keywords: [/admin]}"),
            yaml(
                "http.agent",
                "{field: user_agent.original, keywords: [sqlmap]}",
            ),
            yaml(
                "http.method",
                "{field: http.request.method, equals: [POST]}",
            ),
        ]
        .iter()
        .map(|y| crate::detect::load_str(y, "t.yaml").unwrap())
        .collect();
        let keywords = KeywordGroups::build(detectors.iter_mut().map(|d| &mut d.matcher)).unwrap();
        let index = Index::build(&detectors);
        let (mut plans, mut verdicts, mut hits) = Default::default();
        let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
        for _ in 0..2 {
            for bits in 0..16u32 {
                let method = ["GET", "POST"][(bits & 1) as usize];
                let path = ["/", "/admin"][(bits >> 1 & 1) as usize];
                let status = [200, 404][(bits >> 2 & 1) as usize];
                let agent = ["curl/8", "sqlmap/1.7"][(bits >> 3 & 1) as usize];
                let line = format!(
                    r#"10.0.0.1 - - [01/Dec/2026:12:00:00 +0000] "{method} {path} HTTP/1.1" {status} 5 "-" "{agent}""#
                );
                let ev = parse_line(&line, &mut st, 0);
                let whole: Vec<u32> = (0..detectors.len() as u32)
                    .filter(|&i| detectors[i as usize].matcher.matches(&ev))
                    .collect();
                let plan = (&mut plans, &index, &mut verdicts);
                assert_eq!(planned(plan, (&keywords, &mut hits), &ev), whole, "{line}");
            }
        }
        assert_eq!(recalled(&plans), 16, "the second round from memory");
    }

    #[test]
    fn a_kind_drops_the_detectors_it_rules_out_and_the_conditions_it_decides() {
        let yaml = |id: &str, m: &str| {
            format!(
                "version: 1\nid: {id}\nrevision: 1\ntitle: t\ndomain: http\nclassification: c\nseverity: low\nconfidence: 0.5\nmatch:\n{m}\nwindow: {{kind: tumbling, size_secs: 60, group_by: [source.ip], threshold: 1}}\noutput:\n  offender: {{type: ip, field: source.ip}}\n"
            )
        };
        let detectors: Vec<Detector> = [
            // indexed by category; the method is all that is left to test
            yaml("http.web", "  all:\n    - {field: event.category, equals: [web]}\n    - {field: http.request.method, exists: true}"),
            // generic, and excludes web requests: not in a web plan at all
            yaml("http.not_web", "  any:\n    - {field: message, keywords: [ENOSPC]}\n  none:\n    - {field: event.category, equals: [web]}"),
            // generic, an alternative the kind satisfies: always matches
            yaml("http.any_web", "  any:\n    - {field: event.category, equals: [web]}\n    - {field: message, keywords: [x]}"),
        ]
        .iter()
        .map(|y| crate::detect::load_str(y, "t.yaml").unwrap())
        .collect();
        let index = Index::build(&detectors);
        let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
        let ev = parse_line(
            r#"10.0.0.1 - - [01/Dec/2026:12:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8""#,
            &mut st,
            0,
        );
        let mut plans = PlanCache::default();
        let plan = plans.get(&index, &ev);
        let shape: Vec<(u32, usize, bool)> = plan
            .steps
            .iter()
            .map(|s| (s.detector, (s.end - s.start) as usize, s.any))
            .collect();
        assert_eq!(shape, [(0, 1, false), (2, 0, false)]);
    }
}
