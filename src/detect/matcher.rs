//! Compiled event matching: conditions resolved to [`Field`]s, keyword sets
//! built into Aho-Corasick automata and regexes compiled, all at load.
//!
//! Keyword sets on the same field (say `url.original`, percent-decoded) from
//! every detector are also merged into one automaton per field
//! ([`KeywordGroups`]): the engine scans an event's URL once, records which
//! patterns occur, and each detector's condition checks its own patterns in
//! that record. Seven HTTP attack detectors then cost one scan, not seven.
//! Scans and regex verdicts are also remembered by value for the events
//! that follow ([`crate::memo`]): logs repeat their paths and user agents.
//! They are remembered by the value they are worked out from (a URL's
//! path and query by the URL), so a request's URL is looked up once for
//! all of them.

use std::borrow::Cow;
use std::sync::OnceLock;

use aho_corasick::AhoCorasick;
use regex::Regex;

use super::CompileError;
use super::config::{Condition, Located, MatchSpec};
use super::literals::{self, AnyOf};
use crate::event::{Event, Field};
use crate::memo::{Consult, Trial};

#[derive(Debug, Clone)]
enum Test {
    Equals(Vec<String>),
    /// `equals` on a numeric field, compared as numbers (no formatting per event).
    EqualsNumber(Vec<f64>),
    Prefix(Vec<String>),
    Keywords(Keywords),
    /// The expression, and its verdict memo's index once registered.
    Regex(Regex, Option<usize>),
    Range {
        gte: Option<f64>,
        lte: Option<f64>,
    },
    Exists(bool),
}

#[derive(Debug, Clone)]
struct Keywords {
    patterns: Vec<String>,
    /// For matching outside the engine (no shared groups), built when
    /// first used: the engine's detectors never use it.
    own: OnceLock<Option<AhoCorasick>>,
    /// Where its patterns sit in the shared automaton, once registered.
    slot: Option<Slot>,
}

impl Keywords {
    /// Whether any pattern occurs in `value`, ASCII case folded.
    fn is_match(&self, value: &str) -> bool {
        let own = self.own.get_or_init(|| {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(&self.patterns)
                .ok()
        });
        match own {
            Some(a) => a.is_match(value),
            // too large for an automaton: the same question, slower
            None => self.patterns.iter().any(|p| {
                value
                    .as_bytes()
                    .windows(p.len())
                    .any(|w| w.eq_ignore_ascii_case(p.as_bytes()))
            }),
        }
    }
}

/// A keyword condition's patterns in its group's bits: words `first` to
/// `last` (relative to the group's first word), the bits of the first and
/// last word that are its own. Worked out once at load, so a test is a
/// mask or two.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Slot {
    group: usize,
    first: usize,
    last: usize,
    first_mask: u64,
    last_mask: u64,
}

impl Slot {
    /// The slot of patterns `start..end` (not empty) of `group`.
    fn new(group: usize, start: usize, end: usize) -> Slot {
        let (first, last) = (start / 64, (end - 1) / 64);
        Slot {
            group,
            first,
            last,
            first_mask: u64::MAX << (start % 64),
            last_mask: u64::MAX >> (63 - (end - 1) % 64),
        }
    }

    /// Whether any of its patterns is set in the group's `bits` (a slot
    /// past their end, from other groups, sees nothing).
    fn any(&self, bits: &[u64]) -> bool {
        let word = |w: usize, mask: u64| bits.get(w).is_some_and(|b| b & mask != 0);
        if self.first == self.last {
            return word(self.first, self.first_mask & self.last_mask);
        }
        word(self.first, self.first_mask)
            || bits
                .get(self.first + 1..self.last)
                .is_some_and(|ws| ws.iter().any(|&w| w != 0))
            || word(self.last, self.last_mask)
    }
}

#[derive(Debug, Clone)]
pub struct CompiledCondition {
    pub field: Field,
    test: Test,
    url_decode: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Matcher {
    all: Vec<CompiledCondition>,
    any: Vec<CompiledCondition>,
    none: Vec<CompiledCondition>,
}

impl Matcher {
    pub fn compile(spec: &MatchSpec, path: &str) -> Result<Matcher, CompileError> {
        let c = |v: &[Located<Condition>]| {
            v.iter()
                .map(|c| compile_condition(c, path))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Matcher {
            all: c(&spec.all)?,
            any: c(&spec.any)?,
            none: c(&spec.none)?,
        })
    }

    pub fn matches(&self, ev: &Event) -> bool {
        self.matches_in(ev, &mut EvalCtx::default())
    }

    /// Matches with the engine's shared keyword scans for this event.
    pub fn matches_in(&self, ev: &Event, ctx: &mut EvalCtx<'_>) -> bool {
        let mut buf = String::new();
        // `none` before `any`: the same verdict, but exclusions are usually
        // cheap and spare the keyword scans `any` tends to hold
        self.all.iter().all(|c| c.test(ev, &mut buf, ctx))
            && !self.none.iter().any(|c| c.test(ev, &mut buf, ctx))
            && (self.any.is_empty() || self.any.iter().any(|c| c.test(ev, &mut buf, ctx)))
    }

    /// Its conditions: those that must all hold, those of which one must
    /// (when there are any), those of which none may.
    pub(super) fn parts(
        &self,
    ) -> (
        &[CompiledCondition],
        &[CompiledCondition],
        &[CompiledCondition],
    ) {
        (&self.all, &self.any, &self.none)
    }

    fn conditions_mut(&mut self) -> impl Iterator<Item = &mut CompiledCondition> {
        self.all
            .iter_mut()
            .chain(self.any.iter_mut())
            .chain(self.none.iter_mut())
    }

    /// The most selective field this matcher requires one of a few values
    /// of (an `all` condition with `equals` on action, dataset, log level or
    /// category), so the engine tests a detector only on events that can
    /// match; with the rest of the matcher, which is all that is left to
    /// test on an event the index chose by that value.
    pub fn index_key(&self) -> Option<(Field, Vec<String>, Matcher)> {
        let (at, field, values) = [
            Field::Action,
            Field::Dataset,
            Field::LogLevel,
            Field::Category,
        ]
        .into_iter()
        .find_map(|want| {
            self.all
                .iter()
                .enumerate()
                .find_map(|(i, c)| match &c.test {
                    Test::Equals(v) if c.field == want && !c.url_decode => {
                        Some((i, want.clone(), v.clone()))
                    }
                    _ => None,
                })
        })?;
        let mut rest = self.clone();
        rest.all.remove(at);
        Some((field, values, rest))
    }
}

fn compile_condition(
    c: &Located<Condition>,
    path: &str,
) -> Result<CompiledCondition, CompileError> {
    let err = |message: String| CompileError {
        path: path.to_owned(),
        line: c.line,
        message,
    };
    let cond = &c.value;
    let field = Field::resolve(&cond.field).map_err(err)?;
    let mut tests = Vec::new();
    if cond.equals.is_some() && cond.equals_from.is_some() {
        return Err(err("give `equals` or `equals_from`, not both".into()));
    }
    let listed_values = match &cond.equals_from {
        Some(files) => Some(read_lists(files, path).map_err(err)?),
        None => None,
    };
    if let Some(v) = cond.equals.as_ref().or(listed_values.as_ref()) {
        let numeric = matches!(
            field,
            Field::HttpStatus
                | Field::SourcePort
                | Field::ProcessPid
                | Field::HttpBodyBytes
                | Field::Duration
        );
        match v
            .iter()
            .map(|x| x.parse::<f64>())
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(nums) if numeric && !cond.url_decode => tests.push(Test::EqualsNumber(nums)),
            Err(_) if numeric => {
                return Err(err(format!(
                    "`{}` is numeric: `equals` needs numbers",
                    cond.field
                )));
            }
            _ => tests.push(Test::Equals(v.clone())),
        }
    }
    if let Some(v) = &cond.prefix {
        tests.push(Test::Prefix(v.clone()));
    }
    let listed = match &cond.keywords_from {
        Some(files) => Some(read_lists(files, path).map_err(err)?),
        None => None,
    };
    if let Some(k) = cond.keywords.as_ref().or(listed.as_ref()) {
        if k.is_empty() || k.iter().any(String::is_empty) {
            return Err(err("`keywords` needs at least one non-empty keyword".into()));
        }
        tests.push(Test::Keywords(Keywords {
            patterns: k.clone(),
            own: OnceLock::new(),
            slot: None,
        }));
    }
    if cond.keywords.is_some() && listed.is_some() {
        return Err(err("give `keywords` or `keywords_from`, not both".into()));
    }
    if let Some(r) = &cond.regex {
        let re = Regex::new(r).map_err(|e| {
            // the regex crate draws a caret diagram over several lines; keep the verdict
            let text = e.to_string();
            err(format!(
                "invalid regex {r:?}: {}",
                text.lines()
                    .last()
                    .unwrap_or("")
                    .trim_start_matches("error: ")
            ))
        })?;
        tests.push(Test::Regex(re, None));
    }
    if cond.gte.is_some() || cond.lte.is_some() {
        tests.push(Test::Range {
            gte: cond.gte,
            lte: cond.lte,
        });
    }
    if let Some(e) = cond.exists {
        tests.push(Test::Exists(e));
    }
    if tests.len() != 1 {
        return Err(err(format!(
            "condition on `{}` needs exactly one of equals, prefix, keywords, regex, gte/lte, exists (found {})",
            cond.field,
            tests.len()
        )));
    }
    Ok(CompiledCondition {
        field,
        test: tests.remove(0),
        url_decode: cond.url_decode,
    })
}

/// The patterns (or values) of list files, relative to the detector file
/// at `path`: one a line, blank lines and `#` comments skipped.
fn read_lists(files: &[String], path: &str) -> Result<Vec<String>, String> {
    let base = std::path::Path::new(path)
        .parent()
        .unwrap_or(std::path::Path::new(""));
    let mut out = Vec::new();
    for f in files {
        let p = base.join(f);
        let text = std::fs::read_to_string(&p)
            .map_err(|e| format!("cannot read list {}: {e}", p.display()))?;
        out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    if out.is_empty() {
        return Err(format!("lists {files:?} hold no entry"));
    }
    Ok(out)
}

/// One merged automaton per (field, url_decode), and the fields whose
/// values scans and regex verdicts are remembered by.
#[derive(Debug, Default)]
pub struct KeywordGroups {
    groups: Vec<KeywordGroup>,
    /// Per distinct regex test (its index in `Test::Regex`): its source
    /// and its place among that source's tests.
    regexes: Vec<(usize, usize)>,
    sources: Vec<Source>,
}

#[derive(Debug)]
struct KeywordGroup {
    field: Field,
    url_decode: bool,
    /// Every pattern, ASCII case-insensitive: which ones occur. Built
    /// when first asked (a DFA over a few hundred patterns costs more to
    /// build than thousands of lines cost to scan, and a stream with no
    /// hit never asks); `None` if it cannot be built.
    automaton: OnceLock<Option<AhoCorasick>>,
    patterns: Vec<String>,
    /// Whether any occurs at all, the usual answer being no.
    any: AnyOf,
    /// Its source, its place among the source's groups, and its first
    /// word in the source's remembered bits.
    source: usize,
    index: usize,
    word: usize,
}

/// A field whose value the scans and regex verdicts of one or more
/// fields are a function of, and so remembered by: `url.path` and
/// `url.query` are parts of `url.original`. A request's URL is then
/// looked up once for its three keyword groups and its path and query
/// tests, not once for each.
#[derive(Debug)]
struct Source {
    field: Field,
    /// Words of pattern bits of its groups, end to end.
    words: usize,
    groups: usize,
    regexes: usize,
}

/// The field `field`'s value is worked out from. This must follow how
/// [`Event::url_path`] and [`Event::url_query`] derive their values: a
/// field listed here is a function of its source's value alone.
fn source_of(field: &Field) -> Field {
    match field {
        Field::UrlPath | Field::UrlQuery => Field::UrlOriginal,
        other => other.clone(),
    }
}

impl KeywordGroup {
    fn new(
        field: Field,
        url_decode: bool,
        patterns: &[String],
    ) -> Result<KeywordGroup, aho_corasick::BuildError> {
        let any = AnyOf::new(patterns)?;
        // where the searchers are ruled out, `any` is that same automaton
        let automaton = OnceLock::new();
        if let AnyOf::Automaton(a) = &any {
            let _ = automaton.set(Some(a.clone()));
        }
        Ok(KeywordGroup {
            field,
            url_decode,
            any,
            automaton,
            patterns: patterns.to_vec(),
            source: 0,
            index: 0,
            word: 0,
        })
    }

    fn words(&self) -> usize {
        self.patterns.len().div_ceil(64)
    }

    /// The automaton that says which patterns occur.
    fn automaton(&self) -> Option<&AhoCorasick> {
        self.automaton
            .get_or_init(|| literals::automaton(&self.patterns).ok())
            .as_ref()
    }
}

impl KeywordGroups {
    /// Merges the keyword conditions of `matchers` and assigns each its slot.
    pub fn build<'a>(
        matchers: impl Iterator<Item = &'a mut Matcher>,
    ) -> Result<KeywordGroups, aho_corasick::BuildError> {
        let mut keys: Vec<(Field, bool, Vec<String>)> = Vec::new();
        // one verdict memo per distinct regex test
        let mut regexes: Vec<(Field, bool, String)> = Vec::new();
        for m in matchers {
            for c in m.conditions_mut() {
                let (field, decode) = (c.field.clone(), c.url_decode);
                if let Test::Regex(r, memo) = &mut c.test {
                    let test = (field.clone(), decode, r.as_str().to_owned());
                    *memo = Some(match regexes.iter().position(|t| *t == test) {
                        Some(i) => i,
                        None => {
                            regexes.push(test);
                            regexes.len() - 1
                        }
                    });
                }
                if let Test::Keywords(k) = &mut c.test {
                    let gi = match keys.iter().position(|g| g.0 == field && g.1 == decode) {
                        Some(i) => i,
                        None => {
                            keys.push((field, decode, Vec::new()));
                            keys.len() - 1
                        }
                    };
                    let start = keys[gi].2.len();
                    keys[gi].2.extend(k.patterns.iter().cloned());
                    k.slot = Some(Slot::new(gi, start, keys[gi].2.len()));
                }
            }
        }
        let mut groups: Vec<KeywordGroup> = keys
            .into_iter()
            .map(|(field, decode, patterns)| KeywordGroup::new(field, decode, &patterns))
            .collect::<Result<_, _>>()?;
        let mut sources: Vec<Source> = Vec::new();
        let mut source = |field: &Field| {
            let field = source_of(field);
            match sources.iter().position(|s| s.field == field) {
                Some(i) => i,
                None => {
                    sources.push(Source {
                        field,
                        words: 0,
                        groups: 0,
                        regexes: 0,
                    });
                    sources.len() - 1
                }
            }
        };
        let mut regex_places = Vec::with_capacity(regexes.len());
        for g in &mut groups {
            g.source = source(&g.field);
        }
        for (field, ..) in &regexes {
            regex_places.push((source(field), 0));
        }
        for g in &mut groups {
            let s = &mut sources[g.source];
            (g.index, g.word) = (s.groups, s.words);
            s.groups += 1;
            s.words += g.words();
        }
        for (s, index) in &mut regex_places {
            *index = sources[*s].regexes;
            sources[*s].regexes += 1;
        }
        Ok(KeywordGroups {
            groups,
            regexes: regex_places,
            sources,
        })
    }
}

/// Which shared patterns the current event holds: one bit per pattern,
/// kept by the engine and reused from event to event (no allocation per
/// event once it has grown to the groups' size); with what is remembered
/// of recent values of each source.
#[derive(Default)]
pub struct KeywordHits {
    /// Pattern bits of every group, end to end.
    bits: Vec<u64>,
    /// First word of each group's bits, and one past its last.
    offsets: Vec<(usize, usize)>,
    /// Whether each group was scanned for the current event.
    scanned: Vec<bool>,
    /// Whether the scan found any pattern at all (most values hold none:
    /// then every condition on the group is false without reading bits).
    found: Vec<bool>,
    /// Scratch for a lowercased value.
    lower: Vec<u8>,
    sources: Remembered,
}

/// Per source, its recent values' scans and verdicts, and where the
/// current event's are.
#[derive(Default)]
struct Remembered {
    memos: Vec<SourceMemo>,
    /// Per source, whether its memo pays (a message new on every line
    /// is scanned without one).
    trials: Vec<Trial>,
    /// For the current event: where the answers for its value are.
    at: Vec<At>,
    /// Per source, the answers for a value too long to remember.
    scratch: Vec<Known>,
}

/// Per source, what was worked out for its recent values (before any
/// percent-decoding: hashing a value costs a fraction of decoding and
/// scanning it). Values up to 512 bytes are remembered, while that pays
/// ([`Trial`]: a message is mostly new on every line).
type SourceMemo = crate::memo::Memo<Known, 4096, 512>;

/// Where the current event's answers for a source are.
#[derive(Clone, Copy, Debug)]
enum At {
    /// Not looked up yet.
    Unknown,
    /// The event lacks the source field (and so every field of it).
    Absent,
    Memo(usize),
    Scratch,
}

/// What is known of one value of a source, filled in as it is needed:
/// its groups' pattern bits and its regex tests' verdicts.
#[derive(Default)]
struct Known {
    bits: Vec<u64>,
    /// Per group of the source: whether `bits` holds its scan.
    scanned: Vec<bool>,
    /// Per regex test on the source: not tested yet, or its verdict.
    verdicts: Vec<Option<bool>>,
}

impl Known {
    /// Forgets everything, sized for `source`.
    fn reset(&mut self, source: &Source) {
        self.bits.clear();
        self.bits.resize(source.words, 0);
        self.scanned.clear();
        self.scanned.resize(source.groups, false);
        self.verdicts.clear();
        self.verdicts.resize(source.regexes, None);
    }
}

impl Remembered {
    /// What is known of the event's value of source `s`, looked up (or
    /// its slot claimed) on first need for the event; None when the event
    /// lacks the field.
    fn known(&mut self, ev: &Event, s: usize, source: &Source) -> Option<&mut Known> {
        if let At::Unknown = *self.at.get(s)? {
            let mut buf = String::new();
            self.at[s] = match ev.get(&source.field, &mut buf) {
                None => At::Absent,
                Some(v) => {
                    let key = v.as_bytes();
                    let consult = match SourceMemo::fits(key) {
                        true => self.trials.get_mut(s)?.consult(),
                        false => Consult::Skip,
                    };
                    if consult == Consult::Forget {
                        self.memos[s] = SourceMemo::default();
                    }
                    let claimed = (consult == Consult::Look)
                        .then(|| self.memos[s].claim(xxhash_rust::xxh3::xxh3_64(key), key))
                        .flatten();
                    match claimed {
                        Some((at, known)) => {
                            if known {
                                self.trials[s].hit();
                            } else {
                                self.memos[s].at_mut(at)?.reset(source);
                            }
                            At::Memo(at)
                        }
                        None => {
                            self.scratch[s].reset(source);
                            At::Scratch
                        }
                    }
                }
            };
        }
        match self.at[s] {
            At::Memo(at) => self.memos[s].at_mut(at),
            At::Scratch => self.scratch.get_mut(s),
            At::Absent | At::Unknown => None,
        }
    }
}

impl KeywordHits {
    fn fit(&mut self, groups: &KeywordGroups) {
        if self.offsets.len() == groups.groups.len()
            && self.sources.memos.len() == groups.sources.len()
        {
            return;
        }
        self.offsets.clear();
        let mut words = 0;
        for g in &groups.groups {
            let end = words + g.words();
            self.offsets.push((words, end));
            words = end;
        }
        self.bits = vec![0; words];
        self.scanned = vec![false; groups.groups.len()];
        self.found = vec![false; groups.groups.len()];
        let n = groups.sources.len();
        self.sources = Remembered {
            memos: (0..n).map(|_| SourceMemo::default()).collect(),
            trials: (0..n).map(|_| Trial::default()).collect(),
            at: vec![At::Unknown; n],
            scratch: (0..n).map(|_| Known::default()).collect(),
        };
    }
}

/// Per-event scratch: the shared keyword scans (computed on first need),
/// and the engine's memos.
#[derive(Default)]
pub struct EvalCtx<'a> {
    groups: Option<&'a KeywordGroups>,
    hits: Option<&'a mut KeywordHits>,
}

impl<'a> EvalCtx<'a> {
    /// A context for one event, forgetting the previous event's scans.
    pub fn new(groups: &'a KeywordGroups, hits: &'a mut KeywordHits) -> EvalCtx<'a> {
        hits.fit(groups);
        hits.scanned.iter_mut().for_each(|s| *s = false);
        hits.sources.at.iter_mut().for_each(|a| *a = At::Unknown);
        EvalCtx {
            groups: Some(groups),
            hits: Some(hits),
        }
    }

    /// Whether the event's value for keyword `group` holds any of its
    /// patterns at all; None outside the engine.
    #[inline]
    pub fn found(&mut self, ev: &Event, group: usize) -> Option<bool> {
        if !*self.hits.as_deref()?.scanned.get(group)? {
            self.scan(ev, group)?;
        }
        self.hits.as_deref()?.found.get(group).copied()
    }

    /// Whether the event holds any of `slot`'s patterns; None outside
    /// the engine (no shared groups). The group is scanned on first need.
    #[inline]
    fn any_hit(&mut self, ev: &Event, slot: &Slot) -> Option<bool> {
        let group = slot.group;
        if !*self.hits.as_deref()?.scanned.get(group)? {
            self.scan(ev, group)?;
        }
        let hits = self.hits.as_deref()?;
        let (offset, end) = *hits.offsets.get(group)?;
        Some(hits.found[group] && slot.any(&hits.bits[offset..end]))
    }

    /// Whether `cond`'s regex `re` (distinct test number `test`) matches
    /// the event's value, remembered with its source's value; None
    /// outside the engine.
    fn regex_verdict(
        &mut self,
        ev: &Event,
        cond: &CompiledCondition,
        re: &Regex,
        test: usize,
    ) -> Option<bool> {
        let groups = self.groups?;
        let &(s, index) = groups.regexes.get(test)?;
        let source = groups.sources.get(s)?;
        let Some(known) = self.hits.as_deref_mut()?.sources.known(ev, s, source) else {
            return Some(false);
        };
        let verdict = known.verdicts.get_mut(index)?;
        if let Some(v) = *verdict {
            return Some(v);
        }
        let mut buf = String::new();
        let v = ev.get(&cond.field, &mut buf).is_some_and(|v| {
            if cond.url_decode {
                re.is_match(&url_decode(v))
            } else {
                re.is_match(v)
            }
        });
        *verdict = Some(v);
        Some(v)
    }

    /// Records which of `group`'s patterns the event's value holds (from
    /// what is remembered of its source's value when that was seen
    /// lately). Apart from the tests that read its bits: a scan is once
    /// per group and event, a test many times.
    #[inline(never)]
    fn scan(&mut self, ev: &Event, group: usize) -> Option<()> {
        let groups = self.groups?;
        let g = groups.groups.get(group)?;
        let source = groups.sources.get(g.source)?;
        let hits = self.hits.as_deref_mut()?;
        let (offset, end) = *hits.offsets.get(group)?;
        let bits = hits.bits.get_mut(offset..end)?;
        hits.scanned[group] = true;
        match hits.sources.known(ev, g.source, source) {
            None => bits.fill(0),
            Some(known) => {
                let words = known.bits.get_mut(g.word..g.word + bits.len())?;
                let scanned = known.scanned.get_mut(g.index)?;
                if !*scanned {
                    words.fill(0);
                    let mut buf = String::new();
                    if let Some(v) = ev.get(&g.field, &mut buf) {
                        let decoded: Cow<str> = if g.url_decode {
                            url_decode(v)
                        } else {
                            Cow::Borrowed(v)
                        };
                        // most values hold no pattern at all: the plain
                        // search says so far faster than walking every
                        // overlapping match
                        if g.any.occurs(decoded.as_ref(), &mut hits.lower)
                            && let Some(automaton) = g.automaton()
                        {
                            for m in automaton.find_overlapping_iter(decoded.as_ref()) {
                                let p = m.pattern().as_usize();
                                words[p / 64] |= 1 << (p % 64);
                            }
                        }
                    }
                    *scanned = true;
                }
                bits.copy_from_slice(words);
            }
        }
        hits.found[group] = bits.iter().any(|&w| w != 0);
        Some(())
    }
}

impl CompiledCondition {
    /// Whether `other` tests the same thing: same field, same decoding,
    /// same test (keyword conditions: the same patterns in the same slot).
    pub(super) fn same_as(&self, other: &CompiledCondition) -> bool {
        self.field == other.field
            && self.url_decode == other.url_decode
            && match (&self.test, &other.test) {
                (Test::Equals(a), Test::Equals(b)) | (Test::Prefix(a), Test::Prefix(b)) => a == b,
                (Test::EqualsNumber(a), Test::EqualsNumber(b)) => a == b,
                (Test::Keywords(a), Test::Keywords(b)) => {
                    a.slot == b.slot && a.patterns == b.patterns
                }
                (Test::Regex(a, _), Test::Regex(b, _)) => a.as_str() == b.as_str(),
                (Test::Range { gte: a, lte: b }, Test::Range { gte: c, lte: d }) => {
                    a == c && b == d
                }
                (Test::Exists(a), Test::Exists(b)) => a == b,
                _ => false,
            }
    }

    /// The shared keyword group it tests, if a keyword condition.
    pub(super) fn keyword_group(&self) -> Option<usize> {
        match &self.test {
            Test::Keywords(Keywords {
                slot: Some(slot), ..
            }) => Some(slot.group),
            _ => None,
        }
    }

    /// Whether its verdict follows from the field's value alone, without
    /// the engine's shared keyword scans (every test but keywords).
    pub(super) fn is_plain(&self) -> bool {
        !matches!(self.test, Test::Keywords(_))
    }

    pub(super) fn test(&self, ev: &Event, buf: &mut String, ctx: &mut EvalCtx<'_>) -> bool {
        match &self.test {
            Test::Keywords(Keywords {
                slot: Some(slot), ..
            }) => {
                if let Some(hit) = ctx.any_hit(ev, slot) {
                    return hit;
                }
            }
            Test::EqualsNumber(v) => {
                return ev.get_number(&self.field).is_some_and(|n| v.contains(&n));
            }
            Test::Exists(want) => return ev.has(&self.field) == *want,
            Test::Range { gte, lte } => {
                return match ev.get_number(&self.field) {
                    Some(v) => gte.is_none_or(|g| v >= g) && lte.is_none_or(|l| v <= l),
                    None => false,
                };
            }
            Test::Regex(r, Some(memo)) => {
                if let Some(verdict) = ctx.regex_verdict(ev, self, r, *memo) {
                    return verdict;
                }
            }
            Test::Equals(_) | Test::Prefix(_) | Test::Keywords(_) | Test::Regex(..) => {}
        }
        self.test_text(ev, buf)
    }

    /// The tests on a field's text.
    fn test_text(&self, ev: &Event, buf: &mut String) -> bool {
        let Some(value) = ev.get(&self.field, buf) else {
            return false;
        };
        let value: Cow<str> = if self.url_decode {
            url_decode(value)
        } else {
            Cow::Borrowed(value)
        };
        match &self.test {
            Test::Equals(v) => v.iter().any(|x| x == value.as_ref()),
            Test::Prefix(v) => v.iter().any(|x| value.starts_with(x.as_str())),
            Test::Keywords(k) => k.is_match(value.as_ref()),
            Test::Regex(r, _) => r.is_match(&value),
            Test::Exists(e) => *e,
            Test::Range { .. } | Test::EqualsNumber(_) => false,
        }
    }
}

/// Normalises a request target before matching, so that an encoding
/// does not hide an attack:
/// - percent-decoding until stable (at most eight rounds: `%252e` is `.`
///   too), `+` as space in the first; invalid escapes stay;
/// - backslashes read as slashes (`..\`, IIS-style paths) and null bytes
///   dropped (`shell.php%00.jpg`);
/// - in the path (before `?`), runs of `/` folded and `/./` segments
///   dropped (`/.//./etc/passwd` is `/etc/passwd`).
///
/// Case is left alone: keyword matching already ignores ASCII case.
pub fn url_decode(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let plain = memchr::memchr3(b'%', b'+', b'\\', b).is_none()
        && memchr::memchr(0, b).is_none()
        && memchr::memmem::find(b, b"//").is_none()
        && memchr::memmem::find(b, b"/./").is_none();
    if plain {
        return Cow::Borrowed(s);
    }
    let mut cur = decode_once(b, true);
    for _ in 0..7 {
        if memchr::memchr(b'%', &cur).is_none() {
            break;
        }
        let next = decode_once(&cur, false);
        if next == cur {
            break;
        }
        cur = next;
    }
    let mut out = Vec::with_capacity(cur.len());
    let query = memchr::memchr(b'?', &cur).unwrap_or(cur.len());
    let mut i = 0;
    while i < cur.len() {
        let c = match cur[i] {
            0 => {
                i += 1;
                continue;
            }
            b'\\' => b'/',
            c => c,
        };
        if c == b'/' && i < query && out.last() == Some(&b'/') {
            i += 1;
            continue;
        }
        if c == b'.'
            && i < query
            && out.last() == Some(&b'/')
            && matches!(cur.get(i + 1), Some(b'/' | b'\\'))
        {
            // `/./`: keep the slash already written, skip the dot and its slash
            i += 2;
            continue;
        }
        out.push(c);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn decode_once(b: &[u8], plus_is_space: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A matcher compiled from `yaml`, with its keyword conditions merged
    /// into shared automata as the engine does.
    fn shared(yaml: &str) -> (Matcher, KeywordGroups) {
        let spec: MatchSpec = serde_saphyr::from_str(yaml).unwrap();
        let mut m = Matcher::compile(&spec, "t.yaml").unwrap();
        let groups = KeywordGroups::build(std::iter::once(&mut m)).unwrap();
        (m, groups)
    }

    /// List files beside the detector: `keywords_from` a part of the
    /// value, `equals_from` the whole of it; comments and blank lines
    /// skipped, a missing file or both forms at once refused.
    #[test]
    fn lists_are_read_beside_the_detector_file() {
        let dir = std::env::temp_dir().join(format!("tp-lists-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lists")).unwrap();
        std::fs::write(dir.join("lists/parts.txt"), "# products\n/solr/\n\n").unwrap();
        std::fs::write(dir.join("lists/whole.txt"), "# logins\n/web/login\n").unwrap();
        let at = dir.join("d.yaml").display().to_string();
        let spec: MatchSpec = serde_saphyr::from_str(
            "any:\n  - field: url.path\n    keywords_from: [lists/parts.txt]\n  - field: url.path\n    equals_from: [lists/whole.txt]\n",
        )
        .unwrap();
        let m = Matcher::compile(&spec, &at).unwrap();
        let ev = |path: &str| Event {
            url_original: Some(crate::event::Text::from(path)),
            ..Event::default()
        };
        let groups = KeywordGroups::default();
        let verdict = |path: &str| {
            m.matches_in(
                &ev(path),
                &mut EvalCtx::new(&groups, &mut KeywordHits::default()),
            )
        };
        assert!(verdict("/x/SOLR/admin"));
        assert!(verdict("/web/login"));
        assert!(
            !verdict("/shop/web/login"),
            "an exact path names no page under another"
        );
        assert!(!verdict("/index.html"));

        for (yaml, want) in [
            (
                "all:\n  - field: url.path\n    equals: [/a]\n    equals_from: [lists/whole.txt]\n",
                "not both",
            ),
            (
                "all:\n  - field: url.path\n    equals_from: [lists/none.txt]\n",
                "cannot read list",
            ),
        ] {
            let spec: MatchSpec = serde_saphyr::from_str(yaml).unwrap();
            let e = Matcher::compile(&spec, &at).unwrap_err();
            assert!(e.message.contains(want), "{yaml}: {}", e.message);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn shared_scans_give_each_event_its_own_verdict() {
        let (m, groups) = shared(
            "any:\n  - field: url.original\n    url_decode: true\n    keywords: [union select, ../]\n",
        );
        let mut hits = KeywordHits::default();
        let ev = |url: &str| Event {
            url_original: Some(crate::event::Text::from(url)),
            ..Event::default()
        };
        let verdicts: Vec<bool> = [
            "/a?id=1%20UNION%20SELECT",
            "/index.html",
            "/a?id=1%20UNION%20SELECT",
            "/x/..%2f..%2fetc",
        ]
        .iter()
        .map(|u| m.matches_in(&ev(u), &mut EvalCtx::new(&groups, &mut hits)))
        .collect();
        assert_eq!(verdicts, [true, false, true, true]);
    }

    proptest::proptest! {
        #[test]
        fn shared_scans_agree_with_each_conditions_own_automaton(
            url in "([a-zA-Z/.%0-9 ]|UNION|select|\\.\\./|<ScRiPt|%2[eE]|%252e){0,12}",
        ) {
            // two conditions on one field: their patterns share one automaton
            let (m, groups) = shared(
                "any:\n  - field: url.original\n    url_decode: true\n    keywords: [union select, ../, Select *]\n  - field: url.original\n    url_decode: true\n    keywords: [\"<script\", \"%2E\", sElEcT]\n",
            );
            let mut hits = KeywordHits::default();
            let ev = Event {
                url_original: Some(crate::event::Text::from(&url[..])),
                ..Event::default()
            };
            let decoded = url_decode(&url);
            for c in &m.any {
                let Test::Keywords(k) = &c.test else { unreachable!() };
                let shared = c.test(&ev, &mut String::new(), &mut EvalCtx::new(&groups, &mut hits));
                proptest::prop_assert_eq!(shared, k.is_match(decoded.as_ref()), "{}", url);
            }
        }
    }

    proptest::proptest! {
        /// A remembered regex verdict is the one the regex gives afresh,
        /// for each of two regexes on one field, decoded or not, however
        /// the values repeat.
        #[test]
        fn remembered_regex_verdicts_equal_fresh_ones(
            urls in proptest::collection::vec("(/|a|A|\\.JS|\\.js|%2e|js|\\?x){0,6}", 1..30),
        ) {
            let (m, groups) = shared(
                "any:\n  - field: url.original\n    regex: '(?i)\\.js$'\n  - field: url.original\n    url_decode: true\n    regex: '\\.js'\n  - field: url.original\n    regex: '(?i)\\.js$'\n",
            );
            proptest::prop_assert_eq!(groups.regexes.len(), 2);
            let mut hits = KeywordHits::default();
            for url in &urls {
                let ev = Event {
                    url_original: Some(crate::event::Text::from(&url[..])),
                    ..Event::default()
                };
                let mut ctx = EvalCtx::new(&groups, &mut hits);
                for c in &m.any {
                    let Test::Regex(re, Some(_)) = &c.test else { unreachable!() };
                    let value = if c.url_decode { url_decode(url) } else { Cow::Borrowed(url.as_str()) };
                    let remembered = c.test(&ev, &mut String::new(), &mut ctx);
                    proptest::prop_assert_eq!(remembered, re.is_match(&value), "{}", url);
                }
            }
        }
    }

    proptest::proptest! {
        /// Scans and verdicts on a URL's parts, remembered together by the
        /// URL, are those each condition gives afresh with its own
        /// automaton or regex, whatever order the tests come in and
        /// however the URLs repeat (long ones are not remembered at all).
        #[test]
        fn what_is_remembered_by_the_url_holds_for_each_of_its_parts(
            pool in proptest::collection::vec("(/|a|\\.php|\\?|id=|%2e|\\.\\./|x{300}|admin){0,8}", 1..6),
            picks in proptest::collection::vec(0usize..6, 1..40),
            order in proptest::collection::vec(0usize..5, 5),
        ) {
            let urls = picks.iter().map(|&i| &pool[i % pool.len()]);
            let (m, groups) = shared(concat!(
                "any:\n",
                "  - field: url.original\n    url_decode: true\n    keywords: [../, admin]\n",
                "  - field: url.path\n    keywords: ['.php']\n",
                "  - field: url.path\n    url_decode: true\n    keywords: [/a/]\n",
                "  - field: url.query\n    regex: '^id='\n",
                "  - field: url.path\n    regex: '(?i)\\.php$'\n",
            ));
            proptest::prop_assert_eq!(groups.sources.len(), 1, "one source: the URL");
            let mut hits = KeywordHits::default();
            for url in urls {
                let ev = Event {
                    url_original: Some(crate::event::Text::from(&url[..])),
                    ..Event::default()
                };
                let mut ctx = EvalCtx::new(&groups, &mut hits);
                for &i in &order {
                    let c = &m.any[i];
                    let fresh = c.test_text(&ev, &mut String::new());
                    proptest::prop_assert_eq!(c.test(&ev, &mut String::new(), &mut ctx), fresh, "{} {:?}", url, c.field);
                }
            }
        }
    }

    #[test]
    fn conditions_past_the_first_word_of_a_group_see_their_own_patterns() {
        let many: Vec<String> = (0..70).map(|i| format!("kw{i:02}x")).collect();
        let (m, groups) = shared(&format!(
            "any:\n  - field: url.original\n    keywords: [{}]\n  - field: url.original\n    keywords: [needle]\n",
            many.join(", ")
        ));
        let mut hits = KeywordHits::default();
        for (url, want) in [
            ("/a?q=KW65X", [true, false]),
            ("/a?q=kw00x", [true, false]),
            ("/needle", [false, true]),
            ("/kw69x/needle", [true, true]),
            ("/nothing", [false, false]),
        ] {
            let ev = Event {
                url_original: Some(crate::event::Text::from(url)),
                ..Event::default()
            };
            let mut ctx = EvalCtx::new(&groups, &mut hits);
            let got: Vec<bool> = m
                .any
                .iter()
                .map(|c| c.test(&ev, &mut String::new(), &mut ctx))
                .collect();
            assert_eq!(got, want, "{url}");
        }
    }

    #[test]
    fn a_slot_sees_exactly_its_patterns() {
        let bits = [1u64 << 63, 1, 0, 1 << 5];
        let any = |s: usize, e: usize| Slot::new(0, s, e).any(&bits);
        assert!(any(63, 64));
        assert!(any(60, 66));
        assert!(!any(0, 63));
        assert!(any(64, 65));
        assert!(!any(65, 128));
        assert!(any(130, 250));
        let naive = |s: usize, e: usize| (s..e).any(|p| bits[p / 64] & (1 << (p % 64)) != 0);
        for s in 0..256 {
            for e in s + 1..=256 {
                assert_eq!(any(s, e), naive(s, e), "{s}..{e}");
            }
        }
    }

    #[test]
    fn decodes_double_encoding() {
        assert_eq!(url_decode("/a%20b"), "/a b");
        assert_eq!(url_decode("%252e%252e%252f"), "../");
        assert_eq!(url_decode("%zz"), "%zz");
        assert_eq!(url_decode("50%"), "50%");
        // decoded until stable, however deep the encoding
        assert_eq!(url_decode("/cgi-bin/.%252525252e/x"), "/cgi-bin/../x");
        assert_eq!(
            url_decode("/icons/.%2e/%2e%2e/etc/passwd"),
            "/icons/../../etc/passwd"
        );
        // an encoded plus stays a plus
        assert_eq!(url_decode("/a?q=1%2B1"), "/a?q=1+1");
        assert_eq!(url_decode("/a?q=1+1"), "/a?q=1 1");
        // backslashes, nulls, doubled slashes and `/./`
        assert_eq!(
            url_decode("/..\\..\\windows\\win.ini"),
            "/../../windows/win.ini"
        );
        assert_eq!(url_decode("/up/shell.php%00.jpg"), "/up/shell.php.jpg");
        assert_eq!(url_decode("/.//./etc//passwd"), "/etc/passwd");
        assert_eq!(url_decode("//./a/./b/"), "/a/b/");
        // the query keeps its slashes: `http://` is evidence there
        assert_eq!(
            url_decode("/r//x?u=http://e.test/./a"),
            "/r/x?u=http://e.test/./a"
        );
        assert_eq!(url_decode("/plain/path?x=1"), "/plain/path?x=1");
    }
}
