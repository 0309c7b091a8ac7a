//! Whether any of a set of literals occurs in a value, ASCII case folded:
//! the question the shared keyword groups and the Sigma prefilter ask of
//! nearly every event, and whose answer is nearly always no.
//!
//! An Aho-Corasick DFA walks a value byte by byte, a dozen instructions or
//! more per byte over a whole log line. Teddy (aho-corasick's packed SIMD
//! searcher) tests 16 or 32 bytes at a time, so saying "none here" costs a
//! fraction of that. It takes a few dozen patterns and does not fold case,
//! so a set is cut into chunks, one searcher each, run over the value
//! lowercased: lowercasing both sides is exactly ASCII case folding, the
//! automaton's own rule. Where the CPU (or a chunk) rules Teddy out, the
//! automaton answers. Only where a caller needs to know *which* patterns
//! occur (after a yes) is the automaton built beside the searchers, and
//! then when first needed.
//!
//! Each searcher costs about as much as the DFA walking a few dozen bytes
//! (a fixed cost per call, then the false candidates to verify), so a set
//! of several searchers over a short value (a URL path, against the web
//! shell, sensitive-file and technology lists: eight searchers) is faster
//! walked by the DFA; over a log line the searchers win. The DFA answers
//! for values shorter than [`BYTES_PER_SEARCHER`] bytes per searcher,
//! built when the first such value comes.

use std::sync::OnceLock;

use aho_corasick::packed;
use aho_corasick::{AhoCorasick, AhoCorasickKind, BuildError};

/// Patterns per Teddy searcher: within what it accepts, and few enough
/// per bucket to keep false candidates rare.
const TEDDY_CHUNK: usize = 48;

/// Bytes of a pattern's start that Teddy fingerprints (at most): a
/// searcher fingerprints as many as its shortest pattern has, so shorter
/// patterns get searchers of their own (three 3-byte Sigma needles such
/// as `={{` made every candidate of the 45 long ones in their chunk a
/// 3-byte match to verify).
const FINGERPRINT: usize = 4;

/// Bytes of value the DFA walks in the time one searcher takes (measured
/// over real URL paths and access lines: a searcher 30 to 38 ns a call
/// whatever the length up to a few hundred bytes, the DFA 0.8 to 1.3 ns
/// a byte). Below this many bytes a searcher, the DFA answers.
const BYTES_PER_SEARCHER: usize = 28;

/// An automaton over `patterns`, ASCII case-insensitive, for finding
/// which of them occur (a DFA scans fastest; these sets are small enough
/// for its memory).
pub fn automaton<P: AsRef<str>>(patterns: &[P]) -> Result<AhoCorasick, BuildError> {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .kind(Some(AhoCorasickKind::DFA))
        .build(patterns.iter().map(AsRef::as_ref))
}

/// Whether any of a set of literals occurs, ASCII case folded.
#[derive(Debug, Clone)]
pub enum AnyOf {
    /// The patterns lowercased, in chunks, over the value lowercased; a
    /// few one-byte patterns (`=`), which the searchers refuse, by memchr;
    /// and for short values the DFA.
    Simd(Searchers),
    /// Where the CPU or a chunk rules the searchers out.
    Automaton(AhoCorasick),
}

/// The searchers of a set, and the DFA that stands in for them on short
/// values.
#[derive(Debug, Clone)]
pub struct Searchers {
    searchers: Vec<packed::Searcher>,
    bytes: Vec<u8>,
    /// Values shorter than this go to the DFA.
    dfa_below: usize,
    /// The set's patterns, for building the DFA.
    patterns: Vec<String>,
    /// Built when the first short value comes; `None` if it cannot be.
    dfa: OnceLock<Option<AhoCorasick>>,
}

impl AnyOf {
    pub fn new<P: AsRef<str>>(patterns: &[P]) -> Result<AnyOf, BuildError> {
        match searchers(patterns) {
            Some((searchers, bytes)) => Ok(AnyOf::Simd(Searchers {
                dfa_below: BYTES_PER_SEARCHER * searchers.len(),
                searchers,
                bytes,
                patterns: cover(patterns),
                dfa: OnceLock::new(),
            })),
            None => automaton(patterns).map(AnyOf::Automaton),
        }
    }

    /// Whether any pattern occurs in `value` (`lower` is scratch space).
    pub fn occurs(&self, value: &str, lower: &mut Vec<u8>) -> bool {
        match self {
            AnyOf::Simd(s) if value.len() < s.dfa_below => match s.dfa() {
                Some(dfa) => dfa.is_match(value),
                None => s.search(value, lower),
            },
            AnyOf::Simd(s) => s.search(value, lower),
            AnyOf::Automaton(a) => a.is_match(value),
        }
    }
}

impl Searchers {
    /// The searchers' answer, whatever the value's length.
    fn search(&self, value: &str, lower: &mut Vec<u8>) -> bool {
        lower.clear();
        lower.extend_from_slice(value.as_bytes());
        lower.make_ascii_lowercase();
        let v = lower.as_slice();
        let byte = match self.bytes[..] {
            [] => false,
            [a] => memchr::memchr(a, v).is_some(),
            [a, b] => memchr::memchr2(a, b, v).is_some(),
            [a, b, c, ..] => memchr::memchr3(a, b, c, v).is_some(),
        };
        byte || self.searchers.iter().any(|s| s.find(v).is_some())
    }

    fn dfa(&self) -> Option<&AhoCorasick> {
        self.dfa
            .get_or_init(|| automaton(&self.patterns).ok())
            .as_ref()
    }
}

/// Teddy searchers over `patterns` and their one-byte patterns (at most
/// three, each a byte lowercased), if the CPU and every chunk allow.
fn searchers<P: AsRef<str>>(patterns: &[P]) -> Option<(Vec<packed::Searcher>, Vec<u8>)> {
    let (bytes, longer): (Vec<String>, Vec<String>) =
        cover(patterns).into_iter().partition(|p| p.len() == 1);
    let bytes: Vec<u8> = bytes.iter().map(|b| b.as_bytes()[0]).collect();
    if bytes.len() > 3 {
        return None;
    }
    if longer.is_empty() {
        return (!bytes.is_empty()).then_some((Vec::new(), bytes));
    }
    // `cover` sorts by length: the short ones lead
    let short = longer.partition_point(|p| p.len() < FINGERPRINT);
    let (short, long) = longer.split_at(short);
    short
        .chunks(TEDDY_CHUNK)
        .chain(long.chunks(TEDDY_CHUNK))
        .map(|chunk| {
            let mut b = packed::Config::new().builder();
            chunk.iter().for_each(|p| {
                b.add(p);
            });
            b.build()
        })
        .collect::<Option<Vec<_>>>()
        .filter(|s| !s.is_empty())
        .map(|s| (s, bytes))
}

/// The patterns lowercased, shortest first, less those that hold another
/// one: whether any occurs is the same question over fewer patterns
/// (`select` answers for `=select(` and `union select`), so fewer
/// searchers.
fn cover<P: AsRef<str>>(patterns: &[P]) -> Vec<String> {
    let mut lower: Vec<String> = patterns
        .iter()
        .map(|p| p.as_ref().to_ascii_lowercase())
        .collect();
    lower.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    lower.dedup();
    let mut kept: Vec<String> = Vec::with_capacity(lower.len());
    for p in lower {
        if !kept.iter().any(|k| p.contains(k.as_str())) {
            kept.push(p);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The SIMD searchers on lowercased values answer exactly what the
        /// case-insensitive automaton answers: short values, mixed case,
        /// non-ASCII bytes, and sets larger than one searcher takes.
        #[test]
        fn lowercased_search_agrees_with_the_automaton(
            value in "([a-zA-Z0-9 :./=-]|No space|ENOSPC|read-ONLY|x509: Cert|é|ß|KW6[0-9]X){0,16}",
            many in proptest::bool::ANY,
        ) {
            let mut patterns: Vec<String> = ["No space left on device", "Read-only", "ENOSPC", "x509: certificate", "ss", "É"]
                .map(String::from)
                .to_vec();
            if many {
                patterns.extend((0..70).map(|i| format!("kw{i:02}x")));
                // one-byte patterns, which the searchers refuse
                patterns.extend(["=", "Q"].map(String::from));
            }
            let any = AnyOf::new(&patterns).unwrap();
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("ssse3") {
                proptest::prop_assert!(matches!(any, AnyOf::Simd(..)), "the searchers are what this test checks");
            }
            let automaton = automaton(&patterns).unwrap();
            let expected = automaton.is_match(&value);
            proptest::prop_assert_eq!(any.occurs(&value, &mut Vec::new()), expected, "{}", value);
            // both ways of answering, whichever the value's length picks
            if let AnyOf::Simd(s) = &any {
                proptest::prop_assert_eq!(s.search(&value, &mut Vec::new()), expected, "searchers: {}", value);
                proptest::prop_assert_eq!(s.dfa().map(|d| d.is_match(&value)), Some(expected), "dfa: {}", value);
            }
        }
    }
}
