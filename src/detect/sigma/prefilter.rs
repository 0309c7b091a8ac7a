//! Literal prefilter for Sigma rules that read the raw line.
//!
//! Keyword rules (and rules on `event.original` or `message`) cannot be
//! memoised by field values: every line is new. rsigma evaluates each such
//! rule on each line, which for the web and Linux families' keyword rules
//! cost more than all the other detectors together. Yet nearly every one of
//! those rules can only fire on a line that contains one of a few literals
//! (`keywords: ['cmd.exe', 'powershell']`, `'|contains': '/etc/passwd'`).
//!
//! From each compiled rule we derive such a *needle set*: (where, literal)
//! pairs of which a matching event holds at least one, where being the
//! line or a named field (ASCII case folded). The sets of all prunable
//! rules go into one literal set per place ([`AnyOf`]: SIMD searchers
//! over the lowercased value), so a line is scanned once, and the engine
//! runs only on an event with a hit. The same holds for rules on parsed
//! fields when their memo misses (unique attack URLs):
//! `cs-uri-query|contains: '/etc/passwd'` needs that literal in the URL.
//! A rule whose firing does not provably need a literal (a number, a
//! negation, an existence test) gets no set, and its part is evaluated on
//! every event as before: the prefilter never changes what fires, only
//! what is skipped.
//!
//! The derivation mirrors the condition's logic: `and` needs any one
//! operand's set (the most selective one is kept), `or` and `1 of` need the
//! union of all operands' sets (or nothing can be said), `not` says nothing.

use std::collections::HashSet;

use regex_syntax::hir::{Hir, HirKind};
use rsigma_eval::Event as _;
use rsigma_eval::event::EventValue;
use rsigma_eval::matcher::{CompiledMatcher, GroupMode};
use rsigma_eval::{CompiledDetection, CompiledRule};
use rsigma_parser::{ConditionExpr, Quantifier};

use super::SigmaEvent;
use crate::detect::literals::AnyOf;
use crate::event::{Event, Field};

/// A literal, where it must occur (`None` for the line, else a field by
/// the name rsigma reads it, `cs-uri-query`), and whether it must be the
/// field's whole value (`c-useragent: 'x'`) rather than occur in it.
pub type Needle = (Option<String>, String, bool);

/// A literal and whether it is a whole value.
type Lit = (String, bool);

/// One literal set per place over the needles of a set of rules.
pub struct Prefilter {
    line: Option<AnyOf>,
    fields: Vec<Place>,
    /// Scratch: a value lowercased, to look up whole values.
    lower: String,
    /// Scratch: a value lowercased, for the SIMD searchers.
    scan: Vec<u8>,
}

/// A field's needles: those that occur in it, and whole values. Sigma
/// names that read the same field of ours (`cs-uri`, `cs-uri-query` and
/// `c-uri` are all `url.original`) share one place, so a value is
/// scanned once.
struct Place {
    /// A Sigma name that reads the field.
    name: String,
    within: Option<AnyOf>,
    /// Whole values, lowercased: one lookup, not a compare per value.
    whole: HashSet<String>,
    /// Which lengths they have (by length, up to the longest): a value of
    /// another length is none of them, without lowercasing and hashing it
    /// (a browser's user agent against a list of tools' agents).
    lengths: Vec<bool>,
}

impl Prefilter {
    /// The prefilter for `needles` (each rule's set, already unioned).
    pub fn new(needles: &[Needle]) -> Option<Prefilter> {
        type Wanted<'a> = (Vec<&'a str>, HashSet<String>);
        // by what is read: the line, or the field a name resolves to
        type Reads = Option<Result<Field, String>>;
        let mut places: Vec<(Reads, &str, Wanted)> = Vec::new();
        for (place, literal, whole) in needles {
            let reads: Reads = place
                .as_deref()
                .map(|n| super::sigma_field(n).ok_or_else(|| n.to_owned()));
            let i = match places.iter().position(|p| p.0 == reads) {
                Some(i) => i,
                None => {
                    places.push((reads, place.as_deref().unwrap_or(""), Default::default()));
                    places.len() - 1
                }
            };
            // the line is searched, never compared whole
            if *whole && place.is_some() {
                places[i].2.1.insert(literal.to_ascii_lowercase());
            } else {
                places[i].2.0.push(literal);
            }
        }
        let any_of = |literals: Vec<&str>| {
            if literals.is_empty() {
                return Ok(None);
            }
            AnyOf::new(&literals).map(Some)
        };
        let mut pf = Prefilter {
            line: None,
            fields: Vec::new(),
            lower: String::new(),
            scan: Vec::new(),
        };
        for (reads, name, (within, whole)) in places {
            let within = any_of(within).ok()?;
            match reads {
                None => pf.line = within,
                Some(_) => pf.fields.push(Place {
                    name: name.to_owned(),
                    within,
                    lengths: whole.iter().fold(Vec::new(), |mut at, w| {
                        at.resize(at.len().max(w.len() + 1), false);
                        at[w.len()] = true;
                        at
                    }),
                    whole,
                }),
            }
        }
        Some(pf)
    }

    /// Whether `ev` holds any needle in its place: false means no rule
    /// behind this can match. The line counts with its message, where that
    /// is not a part of it.
    pub fn admits(&mut self, ev: &Event) -> bool {
        let scan = &mut self.scan;
        if let Some(line) = &self.line
            && (holds(line, &ev.original, scan)
                || ev
                    .message_owned
                    .as_deref()
                    .is_some_and(|m| holds(line, m, scan)))
        {
            return true;
        }
        let sigma = SigmaEvent(ev);
        let lower = &mut self.lower;
        self.fields.iter().any(|p| match sigma.get_field(&p.name) {
            Some(EventValue::Str(v)) => {
                p.within.as_ref().is_some_and(|a| holds(a, &v, scan))
                    || !v.is_ascii()
                    || (p.lengths.get(v.len()) == Some(&true) && {
                        lower.clear();
                        lower.push_str(&v);
                        lower.make_ascii_lowercase();
                        p.whole.contains(lower.as_str())
                    })
            }
            // a number or a list is matched by rsigma's own rules
            Some(_) => true,
            None => false,
        })
    }
}

/// Whether `value` may hold a needle. rsigma folds case by Unicode rules,
/// where `K` (Kelvin) is a `k` and `ſ` an `s`; the search folds ASCII
/// only, so a value with other bytes is let through.
fn holds(literals: &AnyOf, value: &str, scratch: &mut Vec<u8>) -> bool {
    !value.is_ascii() || literals.occurs(value, scratch)
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
            needle("cs-uri", "/cgi-bin/", false),
            needle("cs-uri-query", "/etc/passwd", false),
            needle("c-uri", "/wp-login.php", true),
            needle("c-useragent", "Nikto", false),
            needle("cs-user-agent", "Exact Agent/1.0", true),
        ])
        .expect("a prefilter");
        // url.original and user_agent.original: one scan each
        assert_eq!(pf.fields.len(), 2);
        let mut st = crate::parse::SourceState::new(crate::parse::Format::Auto, 1_780_000_000_000);
        for (target, agent, admitted) in [
            ("/index.html", "Mozilla/5.0", false),
            ("/x?f=/ETC/passwd", "Mozilla/5.0", true),
            ("/cgi-bin/test", "Mozilla/5.0", true),
            ("/WP-LOGIN.php", "Mozilla/5.0", true),
            ("/wp-login.php?x", "Mozilla/5.0", false),
            ("/index.html", "exact agent/1.0", true),
            ("/index.html", "Exact Agent/1.0 (extra)", false),
            ("/index.html", "a nikto scan", true),
        ] {
            let line = format!(
                r#"203.0.113.5 - - [03/Mar/2026:10:00:00 +0000] "GET {target} HTTP/1.1" 404 0 "-" "{agent}""#
            );
            let ev = crate::parse::parse_line(&line, &mut st, 0);
            assert_eq!(pf.admits(&ev), admitted, "{line}");
        }
    }
}
