//! Literal prefilter for Sigma rules that read the raw line.
//!
//! Keyword rules (and rules on `event.original` or `message`) cannot be
//! memoised by field values: every line is new. rsigma evaluates each such
//! rule on each line, which for the web and Linux families' keyword rules
//! cost more than all the other detectors together. Yet nearly every one of
//! those rules can only fire on a line that contains one of a few literals
//! (`keywords: ['cmd.exe', 'powershell']`, `'|contains': '/etc/passwd'`).
//!
//! From each compiled rule we derive such a *needle set*: strings of which
//! a matching line must contain at least one (ASCII case folded). The sets
//! of all prunable rules go into one Aho-Corasick automaton, so a line is
//! scanned once, and the engine runs only on a line with a hit. A rule
//! whose firing does not provably need a literal (a regex, a negation, a
//! field other than the line) gets no set, and its part is evaluated on
//! every line as before: the prefilter never changes what fires, only
//! what is skipped.
//!
//! The derivation mirrors the condition's logic: `and` needs any one
//! operand's set (the most selective one is kept), `or` and `1 of` need the
//! union of all operands' sets (or nothing can be said), `not` says nothing.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder};
use regex_syntax::hir::{Hir, HirKind};
use rsigma_eval::matcher::{CompiledMatcher, GroupMode};
use rsigma_eval::{CompiledDetection, CompiledRule};
use rsigma_parser::{ConditionExpr, Quantifier};

use crate::event::Event;

/// One automaton over the needles of a set of rules.
pub struct Prefilter {
    automaton: AhoCorasick,
}

impl Prefilter {
    /// The prefilter for `needles` (each rule's set, already unioned).
    pub fn new(needles: &[String]) -> Option<Prefilter> {
        AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build(needles)
            .ok()
            .map(|automaton| Prefilter { automaton })
    }

    /// Whether `ev`'s line (or its message, where that is not a part of the
    /// line) holds any needle: false means no rule behind this can match.
    pub fn admits(&self, ev: &Event) -> bool {
        // rsigma folds case by Unicode rules, where `K` (Kelvin) is a `k`
        // and `ſ` an `s`; the automaton folds ASCII only
        !ev.original.is_ascii()
            || self.automaton.is_match(ev.original.as_str())
            || ev
                .message_owned
                .as_deref()
                .is_some_and(|m| !m.is_ascii() || self.automaton.is_match(m))
    }
}

/// The literals of which a line matching `rule` contains at least one, or
/// `None` when the rule may match without any (it is then always run).
/// `raw_field` says which field names are the line itself.
pub fn needles(rule: &CompiledRule, raw_field: &dyn Fn(&str) -> bool) -> Option<Vec<String>> {
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
) -> Option<Vec<String>> {
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

fn detection(d: &CompiledDetection, raw_field: &dyn Fn(&str) -> bool) -> Option<Vec<String>> {
    match d {
        CompiledDetection::Keywords(m) => matcher(m),
        CompiledDetection::AllOf(items) => {
            most_selective(items.iter().map(|item| match (&item.field, item.exists) {
                (None, None) => matcher(&item.matcher),
                (Some(f), None) if raw_field(f) => matcher(&item.matcher),
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

fn matcher(m: &CompiledMatcher) -> Option<Vec<String>> {
    match m {
        CompiledMatcher::Exact { value, .. }
        | CompiledMatcher::Contains { value, .. }
        | CompiledMatcher::StartsWith { value, .. }
        | CompiledMatcher::EndsWith { value, .. } => needle(value).map(|n| vec![n]),
        CompiledMatcher::AhoCorasickSet { needles, .. } => {
            union(needles.iter().map(|n| needle(n).map(|n| vec![n])))
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
        CompiledMatcher::Regex(re) => regex(re.as_str()),
        CompiledMatcher::RegexSetMatch { set, mode } => {
            let each = set.patterns().iter().map(|p| regex(p));
            match mode {
                GroupMode::Any => union(each),
                GroupMode::All => most_selective(each),
            }
        }
        _ => None,
    }
}

/// The literals a match of `pattern` must contain (wildcard values such as
/// `wget * | sh` become `(?i)wget .* \| sh` regexes). A leading `(?i)` is
/// read as case folding, which the automaton does.
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

/// A literal usable as a needle: ASCII (the automaton folds ASCII case
/// only, as rsigma lowers the line) and not empty.
fn needle(value: &str) -> Option<String> {
    (!value.is_empty() && value.is_ascii()).then(|| value.to_ascii_lowercase())
}

/// Every operand's set together; `None` if any operand has none.
fn union(sets: impl Iterator<Item = Option<Vec<String>>>) -> Option<Vec<String>> {
    let mut all = Vec::new();
    for s in sets {
        all.extend(s?);
    }
    (!all.is_empty()).then_some(all)
}

/// The operand whose set is hardest to hit: the one whose shortest needle
/// is longest. `None` when no operand has a set.
fn most_selective(sets: impl Iterator<Item = Option<Vec<String>>>) -> Option<Vec<String>> {
    sets.flatten()
        .filter(|s| !s.is_empty())
        .max_by_key(|s| s.iter().map(String::len).min().unwrap_or(0))
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

    fn sorted(v: Option<Vec<String>>) -> Option<Vec<String>> {
        v.map(|mut v| {
            v.sort();
            v
        })
    }

    #[test]
    fn keywords_need_any_of_their_values() {
        let r =
            rule("    keywords:\n        - 'Cmd.exe'\n        - 'whoami'\n    condition: keywords");
        assert_eq!(
            sorted(needles(&r, &raw)),
            Some(vec!["cmd.exe".to_string(), "whoami".to_string()])
        );
    }

    #[test]
    fn a_wildcard_keeps_its_longest_literal_piece() {
        let r = rule(
            "    keywords:\n        - 'wget * - http* | perl'\n        - 'Trojan*FOUND'\n    condition: keywords",
        );
        assert_eq!(
            sorted(needles(&r, &raw)),
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
        assert_eq!(needles(&and, &raw), Some(vec!["longer".to_string()]));
        let or = rule("    k1:\n        - 'ab'\n    k2:\n        - 'cd'\n    condition: k1 or k2");
        assert_eq!(
            sorted(needles(&or, &raw)),
            Some(vec!["ab".to_string(), "cd".to_string()])
        );
        let not = rule("    k1:\n        - 'ab'\n    condition: not k1");
        assert_eq!(needles(&not, &raw), None);
        let filtered =
            rule("    k1:\n        - 'ab'\n    k2:\n        - 'cd'\n    condition: k1 and not k2");
        assert_eq!(needles(&filtered, &raw), Some(vec!["ab".to_string()]));
    }

    #[test]
    fn a_parsed_field_promises_nothing_about_the_line() {
        let r = rule(
            "    sel:\n        user.name: 'root'\n    kw:\n        - 'boom'\n    condition: sel or kw",
        );
        assert_eq!(needles(&r, &raw), None);
        let on_line = rule("    sel:\n        event.original|contains: 'boom'\n    condition: sel");
        assert_eq!(needles(&on_line, &raw), Some(vec!["boom".to_string()]));
    }

    #[test]
    fn selectors_follow_their_quantifier() {
        let any =
            rule("    kw_a:\n        - 'aa'\n    kw_b:\n        - 'bbb'\n    condition: 1 of kw_*");
        assert_eq!(
            sorted(needles(&any, &raw)),
            Some(vec!["aa".to_string(), "bbb".to_string()])
        );
        let all = rule(
            "    kw_a:\n        - 'aa'\n    kw_b:\n        - 'bbb'\n    condition: all of kw_*",
        );
        assert_eq!(needles(&all, &raw), Some(vec!["bbb".to_string()]));
    }
}
