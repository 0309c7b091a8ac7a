//! Literal prefilter for Sigma rules.
//!
//! Keyword rules (and rules on `event.original` or `message`) cannot be
//! memoised by field values: every line is new. Rules on parsed fields
//! miss their memo whenever the values are new: unique attack URLs, and
//! real traffic's long tail of pages and agents (half the requests of a
//! real access log). rsigma evaluating the rules on each such event cost
//! more than all the other detectors together. Yet nearly every rule can
//! only fire on an event that holds one of a few literals (`keywords:
//! ['cmd.exe', 'powershell']`, `'|contains': '/etc/passwd'`).
//!
//! From each compiled rule we derive such a *needle set*: (where, literal)
//! pairs of which a matching event holds at least one, where being the
//! line or a named field (ASCII case folded). An event is scanned once per
//! place for the needles of all rules together ([`AnyOf`]: SIMD searchers
//! over the lowercased value, which nearly always answer "none"); where
//! some occur, an automaton says which, and only the rules behind those
//! are evaluated, each on its own. Evaluating just those matters on real
//! traffic: a rule needing `.html` (behind rarer literals it also needs)
//! is run on a request for a page, not every rule of the family. A rule
//! whose firing does not provably need a literal (a number, a negation,
//! an existence test) gets no set and is evaluated on every event: the
//! prefilter never changes what fires, only what is skipped.
//!
//! The derivation mirrors the condition's logic: `and` needs any one
//! operand's set (the most selective one is kept), `or` and `1 of` need the
//! union of all operands' sets (or nothing can be said), `not` says nothing.

use std::collections::HashMap;
use std::sync::OnceLock;

use aho_corasick::AhoCorasick;
use regex_syntax::hir::{Hir, HirKind};
use rsigma_eval::Event as _;
use rsigma_eval::event::EventValue;
use rsigma_eval::matcher::{CompiledMatcher, GroupMode};
use rsigma_eval::{CompiledDetection, CompiledRule};
use rsigma_parser::{ConditionExpr, Quantifier};

use super::SigmaEvent;
use crate::detect::literals::{self, AnyOf};
use crate::event::{Event, Field};

/// A literal, where it must occur (`None` for the line, else a field by
/// the name rsigma reads it, `cs-uri-query`), and whether it must be the
/// field's whole value (`c-useragent: 'x'`) rather than occur in it.
pub type Needle = (Option<String>, String, bool);

/// A literal and whether it is a whole value.
type Lit = (String, bool);

/// Every place's needles over a set of rules, and which of them the
/// current event holds.
pub struct Prefilter {
    line: Option<Place>,
    fields: Vec<Place>,
    /// Per literal number: the rules whose gate names it.
    rules_of: Vec<Vec<u32>>,
    /// Per literal number: the stamp of the last event that held it.
    held: Vec<u32>,
    /// The literals the current event holds, each once.
    holding: Vec<u32>,
    /// Per rule: the stamp of the last event it was a candidate for.
    seen: Vec<u32>,
    stamp: u32,
    /// Scratch: a value lowercased, to look up whole values.
    lower: String,
    /// Scratch: a value lowercased, for the SIMD searchers.
    scan: Vec<u8>,
}

/// A place's literals: those that occur in it, and whole values. Sigma
/// names that read the same field of ours (`cs-uri`, `cs-uri-query` and
/// `c-uri` are all `url.original`) share one place, so a value is
/// scanned once.
struct Place {
    /// A Sigma name that reads the field ("" for the line).
    name: String,
    /// Whether any needle occurs in the value: the question nearly every
    /// value answers no to.
    gate: Option<AnyOf>,
    /// Which ones, once some does (pattern `i` is needle `within_ids[i]`):
    /// built when first needed, as most values hold none.
    which: OnceLock<Option<AhoCorasick>>,
    patterns: Vec<String>,
    within_ids: Vec<u32>,
    /// Whole values, lowercased, and their numbers: one lookup, not a
    /// compare per value.
    whole: HashMap<String, u32>,
    /// Which lengths they have (by length, up to the longest): a value of
    /// another length is none of them, without lowercasing and hashing it
    /// (a browser's user agent against a list of tools' agents).
    lengths: Vec<bool>,
    /// Every literal of the place, for a value the search cannot answer
    /// for (not ASCII, a number or a list): all are taken as held.
    all: Vec<u32>,
}

impl Place {
    fn new(name: &str, within: Vec<(String, u32)>, whole: HashMap<String, u32>) -> Option<Place> {
        let patterns: Vec<String> = within.iter().map(|(l, _)| l.clone()).collect();
        let any = match patterns.is_empty() {
            true => None,
            false => Some(AnyOf::new(&patterns).ok()?),
        };
        let mut all: Vec<u32> = within.iter().map(|w| w.1).collect();
        all.extend(whole.values());
        Some(Place {
            name: name.to_owned(),
            gate: any,
            which: OnceLock::new(),
            patterns,
            within_ids: within.into_iter().map(|w| w.1).collect(),
            lengths: whole.keys().fold(Vec::new(), |mut at, w| {
                at.resize(at.len().max(w.len() + 1), false);
                at[w.len()] = true;
                at
            }),
            whole,
            all,
        })
    }
}

impl Prefilter {
    /// The prefilter over each rule's needles (rule `i`'s are `needles[i]`).
    pub fn new(needles: &[Vec<Needle>]) -> Option<Prefilter> {
        // by what is read: the line, or the field a name resolves to
        type Reads = Option<Result<Field, String>>;
        struct Wanted {
            reads: Reads,
            name: String,
            within: Vec<(String, u32)>,
            whole: HashMap<String, u32>,
        }
        let mut places: Vec<Wanted> = Vec::new();
        let mut numbered = HashMap::new();
        let mut number = |(place, literal, whole): &Needle, places: &mut Vec<Wanted>| -> u32 {
            let reads: Reads = place
                .as_deref()
                .map(|n| super::sigma_field(n).ok_or_else(|| n.to_owned()));
            let i = match places.iter().position(|p| p.reads == reads) {
                Some(i) => i,
                None => {
                    places.push(Wanted {
                        reads: reads.clone(),
                        name: place.clone().unwrap_or_default(),
                        within: Vec::new(),
                        whole: HashMap::new(),
                    });
                    places.len() - 1
                }
            };
            // the line is searched, never compared whole
            let whole = *whole && place.is_some();
            let literal = literal.to_ascii_lowercase();
            let next = numbered.len() as u32;
            let n = *numbered.entry((i, literal.clone(), whole)).or_insert(next);
            if n == next {
                let p = &mut places[i];
                if whole {
                    p.whole.insert(literal, n);
                } else {
                    p.within.push((literal, n));
                }
            }
            n
        };
        // each rule behind its needles
        let mut rules_of: Vec<Vec<u32>> = Vec::new();
        for (r, needles) in needles.iter().enumerate() {
            for l in needles {
                let n = number(l, &mut places) as usize;
                rules_of.resize(rules_of.len().max(n + 1), Vec::new());
                if rules_of[n].last() != Some(&(r as u32)) {
                    rules_of[n].push(r as u32);
                }
            }
        }
        let mut pf = Prefilter {
            line: None,
            fields: Vec::new(),
            rules_of,
            held: vec![0; numbered.len()],
            holding: Vec::new(),
            seen: vec![0; needles.len()],
            stamp: 0,
            lower: String::new(),
            scan: Vec::new(),
        };
        for w in places {
            let place = Place::new(&w.name, w.within, w.whole)?;
            match w.reads {
                None => pf.line = Some(place),
                Some(_) => pf.fields.push(place),
            }
        }
        Some(pf)
    }

    /// Notes which literals `ev` holds; false when it holds none, and then
    /// no rule behind this can match. The line counts with its message,
    /// where that is not a part of it.
    pub fn scan(&mut self, ev: &Event) -> bool {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.held.fill(0);
            self.seen.fill(0);
            self.stamp = 1;
        }
        self.holding.clear();
        let Prefilter {
            line,
            fields,
            held,
            holding,
            stamp,
            lower,
            scan,
            ..
        } = self;
        let mut mark = |ids: &mut dyn Iterator<Item = u32>| {
            let mut any = false;
            for i in ids {
                if let Some(h) = held.get_mut(i as usize) {
                    if *h != *stamp {
                        *h = *stamp;
                        holding.push(i);
                    }
                    any = true;
                }
            }
            any
        };
        let mut any = false;
        if let Some(l) = line {
            any |= find(l, &ev.original, scan, &mut mark);
            if let Some(m) = ev.message_owned.as_deref() {
                any |= find(l, m, scan, &mut mark);
            }
        }
        let sigma = SigmaEvent(ev);
        for p in fields.iter() {
            match sigma.get_field(&p.name) {
                Some(EventValue::Str(v)) => {
                    any |= find(p, &v, scan, &mut mark);
                    if let Some(n) = whole(p, &v, lower) {
                        any |= mark(&mut std::iter::once(n));
                    }
                }
                // a number or a list is matched by rsigma's own rules
                Some(_) => any |= mark(&mut p.all.iter().copied()),
                None => {}
            }
        }
        any
    }

    /// The rules whose gates the event last scanned opens, in order.
    pub fn candidates(&mut self, out: &mut Vec<u32>) {
        out.clear();
        for &n in &self.holding {
            for &r in self.rules_of.get(n as usize).map_or(&[][..], Vec::as_slice) {
                let Some(seen) = self.seen.get_mut(r as usize) else {
                    continue;
                };
                if *seen == self.stamp {
                    continue;
                }
                *seen = self.stamp;
                out.push(r);
            }
        }
        out.sort_unstable();
    }
}

/// The number of the whole value `value` is, in `place`.
fn whole(place: &Place, value: &str, lower: &mut String) -> Option<u32> {
    if place.lengths.get(value.len()) != Some(&true) {
        return None;
    }
    lower.clear();
    lower.push_str(value);
    lower.make_ascii_lowercase();
    place.whole.get(lower.as_str()).copied()
}

/// Marks the literals of `place` that occur in `value`; whether any does.
/// The quick question first (nearly always no), then which, overlaps
/// included. rsigma folds case by Unicode rules, where `K` (Kelvin) is a
/// `k` and `ſ` an `s`; the search folds ASCII only, so for a value with
/// other bytes every literal of the place is taken as held.
fn find(
    place: &Place,
    value: &str,
    scratch: &mut Vec<u8>,
    mark: &mut impl FnMut(&mut dyn Iterator<Item = u32>) -> bool,
) -> bool {
    if !value.is_ascii() {
        return mark(&mut place.all.iter().copied());
    }
    let Some(any) = &place.gate else {
        return false;
    };
    if !any.occurs(value, scratch) {
        return false;
    }
    // the same patterns built the searchers above: an automaton over them
    // builds too, short of running out of memory
    let which = place
        .which
        .get_or_init(|| literals::automaton(&place.patterns).ok());
    let Some(which) = which else {
        return mark(&mut place.all.iter().copied());
    };
    let ids = &place.within_ids;
    mark(
        &mut which
            .find_overlapping_iter(value)
            .filter_map(|m| ids.get(m.pattern().as_usize()).copied()),
    )
}

/// The needles of which an event matching `rule` holds at least one, or
/// `None` when the rule may match without any (it is then always run).
/// `raw_field` says which field names are the line itself.
pub fn needles(rule: &CompiledRule, raw_field: &dyn Fn(&str) -> bool) -> Option<Vec<Needle>> {
    let mut all = Vec::new();
    // a rule fires when any of its conditions holds
    for cond in &rule.conditions {
        all.extend(condition(rule, cond, raw_field)?);
    }
    (!all.is_empty()).then_some(all)
}

fn condition(
    rule: &CompiledRule,
    cond: &ConditionExpr,
    raw_field: &dyn Fn(&str) -> bool,
) -> Option<Vec<Needle>> {
    match cond {
        ConditionExpr::Identifier(name) => detection(rule.detections.get(name)?, raw_field),
        ConditionExpr::And(xs) => most_selective(xs.iter().map(|x| condition(rule, x, raw_field))),
        ConditionExpr::Or(xs) => union(xs.iter().map(|x| condition(rule, x, raw_field))),
        ConditionExpr::Not(_) => None,
        ConditionExpr::Selector {
            quantifier,
            pattern,
        } => {
            let named = rule
                .detections
                .iter()
                .filter(|(name, _)| pattern.matches_detection_name(name))
                .map(|(_, d)| detection(d, raw_field));
            match quantifier {
                Quantifier::Any | Quantifier::Count(1) => union(named),
                Quantifier::All => most_selective(named),
                // `N of`: any one of them may be left out; the union still holds
                Quantifier::Count(n) if *n > 1 => union(named),
                Quantifier::Count(_) => None,
            }
        }
    }
}

fn detection(d: &CompiledDetection, raw_field: &dyn Fn(&str) -> bool) -> Option<Vec<Needle>> {
    let at = |place: Option<&str>, literals: Vec<Lit>| {
        let place = place.map(str::to_owned);
        literals
            .into_iter()
            .map(|(l, whole)| (place.clone(), l, whole))
            .collect::<Vec<Needle>>()
    };
    match d {
        CompiledDetection::Keywords(m) => matcher(m).map(|l| at(None, l)),
        CompiledDetection::AllOf(items) => {
            most_selective(items.iter().map(|item| match (&item.field, item.exists) {
                (None, None) => matcher(&item.matcher).map(|l| at(None, l)),
                (Some(f), None) if raw_field(f) => matcher(&item.matcher).map(|l| at(None, l)),
                (Some(f), None) => matcher(&item.matcher).map(|l| at(Some(f), l)),
                _ => None,
            }))
        }
        CompiledDetection::AnyOf(subs) => union(subs.iter().map(|s| detection(s, raw_field))),
        CompiledDetection::And(subs) => {
            most_selective(subs.iter().map(|s| detection(s, raw_field)))
        }
        CompiledDetection::ArrayMatch { .. } | CompiledDetection::Conditional { .. } => None,
    }
}

fn matcher(m: &CompiledMatcher) -> Option<Vec<Lit>> {
    match m {
        CompiledMatcher::Exact { value, .. } => needle(value).map(|n| vec![(n, true)]),
        CompiledMatcher::Contains { value, .. }
        | CompiledMatcher::StartsWith { value, .. }
        | CompiledMatcher::EndsWith { value, .. } => needle(value).map(|n| vec![(n, false)]),
        CompiledMatcher::AhoCorasickSet { needles, .. } => {
            union(needles.iter().map(|n| needle(n).map(|n| vec![(n, false)])))
        }
        CompiledMatcher::AnyOf(children)
        | CompiledMatcher::CaseInsensitiveGroup {
            children,
            mode: GroupMode::Any,
        } => union(children.iter().map(matcher)),
        CompiledMatcher::AllOf(children)
        | CompiledMatcher::CaseInsensitiveGroup {
            children,
            mode: GroupMode::All,
        } => most_selective(children.iter().map(matcher)),
        CompiledMatcher::Regex(re) => within(regex(re.as_str())),
        CompiledMatcher::RegexSetMatch { set, mode } => {
            let each = set.patterns().iter().map(|p| within(regex(p)));
            match mode {
                GroupMode::Any => union(each),
                GroupMode::All => most_selective(each),
            }
        }
        _ => None,
    }
}

/// Literals that occur within a value, not whole.
fn within(literals: Option<Vec<String>>) -> Option<Vec<Lit>> {
    literals.map(|l| l.into_iter().map(|l| (l, false)).collect())
}

/// The literals a match of `pattern` must contain (wildcard values such as
/// `wget * | sh` become `(?i)wget .* \| sh` regexes). A leading `(?i)` is
/// read as case folding, which the search does.
fn regex(pattern: &str) -> Option<Vec<String>> {
    let pattern = pattern.strip_prefix("(?i)").unwrap_or(pattern);
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .ok()?;
    required(&hir)
}

fn required(hir: &Hir) -> Option<Vec<String>> {
    match hir.kind() {
        HirKind::Literal(lit) => literal(&lit.0),
        HirKind::Capture(c) => required(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => required(&r.sub),
        HirKind::Alternation(alts) => union(alts.iter().map(required)),
        HirKind::Concat(parts) => {
            // adjacent literals form one needle; any one piece is required
            let mut pieces = Vec::new();
            let mut run = Vec::new();
            for part in parts {
                if let HirKind::Literal(lit) = part.kind() {
                    run.extend_from_slice(&lit.0);
                    continue;
                }
                pieces.push(literal(&run));
                run.clear();
                pieces.push(required(part));
            }
            pieces.push(literal(&run));
            most_selective(pieces.into_iter())
        }
        _ => None,
    }
}

fn literal(bytes: &[u8]) -> Option<Vec<String>> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(needle)
        .map(|n| vec![n])
}

/// A literal usable as a needle: ASCII (the search folds ASCII case
/// only, as rsigma lowers the line) and not empty.
fn needle(value: &str) -> Option<String> {
    (!value.is_empty() && value.is_ascii()).then(|| value.to_ascii_lowercase())
}

/// Every operand's set together; `None` if any operand has none.
fn union<T>(sets: impl Iterator<Item = Option<Vec<T>>>) -> Option<Vec<T>> {
    let mut all = Vec::new();
    for s in sets {
        all.extend(s?);
    }
    (!all.is_empty()).then_some(all)
}

/// The operand whose set is hardest to hit: the one whose shortest needle
/// is longest. `None` when no operand has a set.
fn most_selective<T: Literal>(sets: impl Iterator<Item = Option<Vec<T>>>) -> Option<Vec<T>> {
    sets.flatten()
        .filter(|s| !s.is_empty())
        .max_by_key(|s| s.iter().map(|n| n.literal().len()).min().unwrap_or(0))
}

/// What [`most_selective`] compares: a literal's length.
trait Literal {
    fn literal(&self) -> &str;
}

impl Literal for String {
    fn literal(&self) -> &str {
        self
    }
}

impl Literal for Lit {
    fn literal(&self) -> &str {
        &self.0
    }
}

impl Literal for Needle {
    fn literal(&self) -> &str {
        &self.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(yaml: &str) -> CompiledRule {
        let rule = rsigma_parser::parse_sigma_yaml(yaml)
            .expect("rule parses")
            .rules
            .remove(0);
        rsigma_eval::compile_rule(&rule).expect("rule compiles")
    }

    fn raw(name: &str) -> bool {
        name == "event.original"
    }

    fn rule(detection: &str) -> CompiledRule {
        compiled(&format!(
            "title: t\nlogsource:\n    product: linux\ndetection:\n{detection}\nlevel: high\n"
        ))
    }

    /// Needles as `literal` on the line and `field:literal` elsewhere, sorted.
    fn lits(v: Option<Vec<Needle>>) -> Option<Vec<String>> {
        v.map(|v| {
            let mut v: Vec<String> = v
                .into_iter()
                .map(|(place, l, whole)| match (place, whole) {
                    (None, _) => l,
                    (Some(f), false) => format!("{f}:{l}"),
                    (Some(f), true) => format!("{f}=={l}"),
                })
                .collect();
            v.sort();
            v
        })
    }

    #[test]
    fn keywords_need_any_of_their_values() {
        let r =
            rule("    keywords:\n        - 'Cmd.exe'\n        - 'whoami'\n    condition: keywords");
        assert_eq!(
            lits(needles(&r, &raw)),
            Some(vec!["cmd.exe".to_string(), "whoami".to_string()])
        );
    }

    #[test]
    fn a_wildcard_keeps_its_longest_literal_piece() {
        let r = rule(
            "    keywords:\n        - 'wget * - http* | perl'\n        - 'Trojan*FOUND'\n    condition: keywords",
        );
        assert_eq!(
            lits(needles(&r, &raw)),
            Some(vec![" | perl".to_string(), "trojan".to_string()])
        );
    }

    #[test]
    fn regexes_give_what_every_match_must_hold() {
        assert_eq!(regex("(?i)^.*abc.*$"), Some(vec!["abc".to_string()]));
        assert_eq!(
            regex("(foo|barbaz)x+"),
            Some(vec!["foo".to_string(), "barbaz".to_string()])
        );
        assert_eq!(regex("a?b*"), None);
        assert_eq!(regex("(?i:abc)"), None, "an inner flag leaves classes");
        assert_eq!(regex("[0-9]+"), None);
    }

    #[test]
    fn and_keeps_one_side_or_keeps_both_not_keeps_nothing() {
        let and =
            rule("    k1:\n        - 'ab'\n    k2:\n        - 'longer'\n    condition: k1 and k2");
        assert_eq!(lits(needles(&and, &raw)), Some(vec!["longer".to_string()]));
        let or = rule("    k1:\n        - 'ab'\n    k2:\n        - 'cd'\n    condition: k1 or k2");
        assert_eq!(
            lits(needles(&or, &raw)),
            Some(vec!["ab".to_string(), "cd".to_string()])
        );
        let not = rule("    k1:\n        - 'ab'\n    condition: not k1");
        assert_eq!(lits(needles(&not, &raw)), None);
        let filtered =
            rule("    k1:\n        - 'ab'\n    k2:\n        - 'cd'\n    condition: k1 and not k2");
        assert_eq!(lits(needles(&filtered, &raw)), Some(vec!["ab".to_string()]));
    }

    #[test]
    fn a_parsed_field_needs_its_literal_there_a_number_promises_nothing() {
        let r = rule(
            "    sel:\n        user.name: 'root'\n    kw:\n        - 'boom'\n    condition: sel or kw",
        );
        assert_eq!(
            lits(needles(&r, &raw)),
            Some(vec!["boom".to_string(), "user.name==root".to_string()])
        );
        let numeric = rule(
            "    sel:\n        sc-status: 404\n    kw:\n        - 'boom'\n    condition: sel or kw",
        );
        assert_eq!(lits(needles(&numeric, &raw)), None);
        let on_line = rule("    sel:\n        event.original|contains: 'boom'\n    condition: sel");
        assert_eq!(
            lits(needles(&on_line, &raw)),
            Some(vec!["boom".to_string()])
        );
    }

    #[test]
    fn selectors_follow_their_quantifier() {
        let any =
            rule("    kw_a:\n        - 'aa'\n    kw_b:\n        - 'bbb'\n    condition: 1 of kw_*");
        assert_eq!(
            lits(needles(&any, &raw)),
            Some(vec!["aa".to_string(), "bbb".to_string()])
        );
        let all = rule(
            "    kw_a:\n        - 'aa'\n    kw_b:\n        - 'bbb'\n    condition: all of kw_*",
        );
        assert_eq!(lits(needles(&all, &raw)), Some(vec!["bbb".to_string()]));
    }

    #[test]
    fn names_of_one_field_share_a_place_and_whole_values_ignore_case() {
        let needle = |place: &str, l: &str, whole| (Some(place.to_owned()), l.to_owned(), whole);
        let mut pf = Prefilter::new(&[
            vec![needle("cs-uri", "/cgi-bin/", false)],
            vec![needle("cs-uri-query", "/etc/passwd", false)],
            vec![needle("c-uri", "/wp-login.php", true)],
            vec![
                needle("c-useragent", "Nikto", false),
                needle("cs-user-agent", "Exact Agent/1.0", true),
            ],
        ])
        .expect("a prefilter");
        // url.original and user_agent.original: one scan each
        assert_eq!(pf.fields.len(), 2);
        let mut st = crate::parse::SourceState::new(crate::parse::Format::Auto, 1_780_000_000_000);
        // which rules each request is evaluated by
        let mut candidates = Vec::new();
        for (target, agent, rules) in [
            ("/index.html", "Mozilla/5.0", vec![]),
            ("/x?f=/ETC/passwd", "Mozilla/5.0", vec![1]),
            ("/cgi-bin/test", "Mozilla/5.0", vec![0]),
            ("/cgi-bin/x?f=/etc/passwd", "Mozilla/5.0", vec![0, 1]),
            ("/WP-LOGIN.php", "Mozilla/5.0", vec![2]),
            ("/wp-login.php?x", "Mozilla/5.0", vec![]),
            ("/index.html", "exact agent/1.0", vec![3]),
            ("/index.html", "Exact Agent/1.0 (extra)", vec![]),
            ("/cgi-bin/", "a nikto scan", vec![0, 3]),
        ] {
            let line = format!(
                r#"203.0.113.5 - - [03/Mar/2026:10:00:00 +0000] "GET {target} HTTP/1.1" 404 0 "-" "{agent}""#
            );
            let ev = crate::parse::parse_line(&line, &mut st, 0);
            assert_eq!(pf.scan(&ev), !rules.is_empty(), "{line}");
            pf.candidates(&mut candidates);
            assert_eq!(candidates, rules, "{line}");
        }
    }
}
