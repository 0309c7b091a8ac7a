//! Drain-style online template mining (He et al., ICWS 2017).
//!
//! ```text
//! content ─> tokens (words.rs) ─> mask (mask.rs; a run of variables is
//!   one, as lists vary in length) ─> tree walk:
//!   token count ─> first `depth` tokens (masked ones take the <*> branch,
//!   and so do qualified names and tokens past `max_children` at a node)
//!   ─> leaf: clusters of that length ─> most similar cluster (share of equal non-wildcard tokens,
//!   ties to the most general) ─> at or above `similarity`: merge (differing
//!   positions become <*>), else a new cluster
//! ```
//! Tokens are compared by 64-bit hashes; strings are kept only for template
//! text. A template's id is the hash of its text, so the same template gets
//! the same id in every run and on every worker; when a template generalizes
//! its id changes with its text (the old id stays valid for events already
//! emitted). The cluster count is capped: past `max_clusters`, lines join
//! the closest existing cluster of their length or an all-wildcard one, and
//! `overflowed` counts them. So is the work a line costs: a leaf holds at
//! most `leaf_templates` templates to compare it with, and a new template
//! in a full leaf takes the place of the one matched least recently
//! (`evicted` counts them). Real logs keep a few templates per leaf (8 at
//! most in any log under the evaluation data); lines no template fits
//! (garbled input, random payloads) would otherwise each add one to a leaf
//! that every later line of that length is compared with in full.
//! And so is memory, whatever the lines: a line counts its first
//! [`MAX_TOKENS`] tokens (the rest are one `<*>`), and templates stop
//! being added once they hold `max_template_bytes`, as past `max_clusters`.

use crate::prehashed::PrehashedMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::mask::{Masked, WILDCARD, classify, is_calendar_name};

/// Clustering settings; one configuration serves every log source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainConfig {
    /// Tree depth: how many leading tokens route a line (besides its length).
    #[serde(default = "default_depth")]
    pub depth: usize,
    /// Minimum share of equal tokens to join a cluster (0..1).
    #[serde(default = "default_similarity")]
    pub similarity: f64,
    /// Children per tree node before further tokens take the <*> branch.
    #[serde(default = "default_max_children")]
    pub max_children: usize,
    /// Upper bound on clusters held in memory.
    #[serde(default = "default_max_clusters")]
    pub max_clusters: usize,
    /// Templates a line is compared with at most: those of its leaf (its
    /// length and leading tokens). A new template in a full leaf takes the
    /// place of the one matched least recently, which keeps its id.
    #[serde(default = "default_leaf_templates")]
    pub leaf_templates: usize,
    /// Upper bound on the bytes templates hold (their words and text):
    /// past it, as past `max_clusters`, no template is added.
    #[serde(default = "default_max_template_bytes")]
    pub max_template_bytes: usize,
}

fn default_depth() -> usize {
    2
}
fn default_similarity() -> f64 {
    // the middle of the best plateau (0.67 to 0.75) on the half of Loghub
    // 2k it was chosen on (BGL, HPC, Linux, Spark), below the drop at 0.78;
    // checked on the other half (README, Clustering). Above 2/3, a line of
    // three constants that differs in one is a template of its own.
    0.7
}
fn default_max_children() -> usize {
    100
}
fn default_max_clusters() -> usize {
    100_000
}
fn default_max_template_bytes() -> usize {
    // 100,000 templates of a typical 300 bytes fill about half of it
    64 << 20
}
fn default_leaf_templates() -> usize {
    // eight times the most any log of the evaluation data needs; a line
    // then costs at most 64 comparisons of its token hashes
    64
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            depth: default_depth(),
            similarity: default_similarity(),
            max_children: default_max_children(),
            max_clusters: default_max_clusters(),
            leaf_templates: default_leaf_templates(),
            max_template_bytes: default_max_template_bytes(),
        }
    }
}

const WILD: u64 = 0;

/// Tokens of a line that count; whatever follows is one `<*>`. Four times
/// the longest line of the evaluation data (HDFS, 110 words); a longer one
/// (a dump, a payload) would otherwise make a template as long as itself.
pub const MAX_TOKENS: usize = 256;

/// A line's first `left` tokens, the last of them `<*>` when more follow.
#[derive(Clone)]
struct Capped<I> {
    inner: I,
    left: usize,
}

impl<'a, I: Iterator<Item = &'a str>> Iterator for Capped<I> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self.left {
            0 => None,
            1 => {
                self.left = 0;
                let tok = self.inner.next()?;
                Some(if self.inner.next().is_some() {
                    WILDCARD
                } else {
                    tok
                })
            }
            _ => {
                self.left -= 1;
                self.inner.next()
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cluster {
    tokens: Vec<Box<str>>,
    hashes: Vec<u64>,
    /// Positions (the first 64) whose constant is a keyword (see
    /// [`is_keyword`]): a line with anything else there is not this template.
    #[serde(default)]
    keywords: u64,
    pub id: u64,
    pub text: Arc<str>,
    pub size: u64,
    /// The miner's line count when a line last joined this template: the
    /// least recent in a full leaf makes room (see [`DrainConfig::leaf_templates`]).
    #[serde(default)]
    last_matched: u64,
}

impl Cluster {
    /// What the template holds in memory, about.
    fn bytes(&self) -> u64 {
        let words: usize = self
            .tokens
            .iter()
            .map(|t| t.len() + std::mem::size_of::<Box<str>>())
            .sum();
        (std::mem::size_of::<Cluster>() + self.text.len() + 8 * self.hashes.len() + words) as u64
    }

    fn new(tokens: Vec<Box<str>>, hashes: Vec<u64>, keywords: u64) -> Cluster {
        let text: Arc<str> = Arc::from(tokens.join(" "));
        Cluster {
            id: xxh3_64(text.as_bytes()),
            text,
            tokens,
            hashes,
            keywords,
            size: 0,
            last_matched: 0,
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Node {
    children: PrehashedMap<u64, usize>,
    clusters: Vec<usize>,
    /// Bumped whenever one of `clusters` is added or generalises: a line's
    /// remembered cluster (see [`LineMemo`]) holds while this has not moved.
    #[serde(skip)]
    generation: u64,
}

/// The template miner. It serializes whole (templates and search tree) for
/// checkpoints, so a restored miner assigns exactly the ids it would have.
#[derive(Serialize, Deserialize)]
pub struct Drain {
    cfg: DrainConfig,
    nodes: Vec<Node>,
    roots: PrehashedMap<usize, usize>,
    clusters: Vec<Cluster>,
    pub overflowed: u64,
    /// Times a template generalised (took a `<*>`), each giving it a new id.
    #[serde(default)]
    pub generalized: u64,
    /// Templates that left a full leaf for a newer one.
    #[serde(default)]
    pub evicted: u64,
    /// Lines added so far, which stamp [`Cluster::last_matched`].
    #[serde(default)]
    lines_added: u64,
    /// What the templates hold, about (see [`DrainConfig::max_template_bytes`]).
    /// Follows from the templates, so checkpoints leave it out: a
    /// restored miner counts it again in [`Drain::set_config`].
    #[serde(skip)]
    held_bytes: u64,
    /// Past the caps, the all-wildcard template of each length, shared by
    /// the leaves of that length that have no template of their own.
    #[serde(default)]
    all_wild: PrehashedMap<usize, usize>,
    #[serde(skip)]
    scratch_hashes: Vec<u64>,
    #[serde(skip)]
    scratch_masked: String,
    #[serde(skip)]
    memo: TokenMemo,
    #[serde(skip)]
    lines: LineMemo,
}

/// Where a line went, by a key that fixes its tokens (see
/// [`Drain::add_keyed`]): requests repeat their method, path and status
/// far more often than their templates change. The answer holds while the
/// leaf's templates stay as they were: the line scored highest against
/// `cluster` then, and with none of its rivals changed it scores highest
/// again (a template that took this line in scores it 1 from then on), so
/// merging it once more would change nothing but the count.
#[derive(Default, Clone, Copy)]
struct Seen {
    cluster: usize,
    leaf: usize,
    generation: u64,
}

/// Keys up to 128 bytes: a method, a path and a status, nearly always.
type LineMemo = crate::memo::Memo<Seen, 4096, 128>;

/// Whether a token is a keyword: an upper-case word such as a protocol,
/// unit, method, state or status name (`HTTPS`, `SOCKS5`, `KB`, `GET`,
/// `LOOKING`, `TIME_WAIT`), in brackets or not, glued to the bracket
/// that follows it (`LOGIN(uid=0)`, `DENIED[<*>]`), or the last part of a
/// qualified name (`android.intent.action.SCREEN_OFF`); or a capitalised
/// word (`Started`, `Stopped`, `Kerberos`). Such words name what a
/// line is about, so two lines that differ in one are two templates
/// (`<*> KB` and `<*> MB`, `open through proxy <*> HTTPS` and
/// `… SOCKS5`, `by (uid=<*>)` and `by LOGIN(uid=<*>)`, `VM Started` and
/// `VM Stopped`), however similar the rest; other constants may still
/// generalise to `<*>`. Capitalised words that do vary, the day and month
/// names of dates written in a message, are masked before this (see
/// `mask.rs`).
fn is_keyword(tok: &str) -> bool {
    if is_upper_word(tok) || is_capitalised_word(tok) {
        return true;
    }
    // a qualified constant: `android.intent.action.SCREEN_OFF`
    if let Some((_, last)) = tok
        .trim_end_matches(|c: char| c.is_ascii_punctuation())
        .rsplit_once('.')
        && is_upper_word(last)
    {
        return true;
    }
    let word = tok
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .unwrap_or(tok.len());
    tok[word..].starts_with(['(', '[', '{', '<']) && is_upper_word(&tok[..word])
}

/// A capitalised word of 2 to 24 letters (`Started`, `Paused`), surrounding
/// punctuation aside: a state or event name, or a sentence's first word.
/// Not a day or month name: masking made that a variable, also in
/// brackets or before a comma (`(Sun`, `Jul,`), where the token is only
/// partly masked and would otherwise come here too.
fn is_capitalised_word(tok: &str) -> bool {
    let word = tok.trim_matches(|c: char| c.is_ascii_punctuation());
    let b = word.as_bytes();
    (2..=24).contains(&b.len())
        && b[0].is_ascii_uppercase()
        && b[1..].iter().all(u8::is_ascii_lowercase)
        && !is_calendar_name(word)
}

/// An upper-case word of 2 to 24 letters, digits and `_` that starts with
/// two capitals, surrounding punctuation aside.
fn is_upper_word(tok: &str) -> bool {
    let b = tok.as_bytes();
    let start = b
        .iter()
        .position(|c| !c.is_ascii_punctuation())
        .unwrap_or(b.len());
    // most tokens are decided here, on their first letter
    if !b.get(start).is_some_and(u8::is_ascii_uppercase) {
        return false;
    }
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_punctuation())
        .map_or(start, |e| e + 1);
    let b = &b[start..end];
    // b[0] is upper-case (checked above)
    (2..=24).contains(&b.len())
        && b[1].is_ascii_uppercase()
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

/// Masked token hashes (no allocation: partly variable tokens are masked
/// into the reused `masked` buffer; the text is rebuilt only for a new cluster).
/// Returns the keyword positions (the first 64) and, of the first `route`
/// positions, those of qualified names (see [`is_qualified_name`]).
fn tokenize<'a>(
    tokens: impl Iterator<Item = &'a str>,
    hashes: &mut Vec<u64>,
    masked: &mut String,
    memo: &mut TokenMemo,
    route: usize,
) -> (u64, u64) {
    hashes.clear();
    let mut keywords = 0u64;
    let mut qualified = 0u64;
    for tok in tokens {
        let raw = xxh3_64(tok.as_bytes());
        let (hash, keyword, qualified_name) = match memo.get(raw, tok.as_bytes()) {
            Some(&known) => known,
            None => {
                let seen = match classify(tok, masked) {
                    Masked::Keep => (raw | 1, is_keyword(tok), is_qualified_name(tok)),
                    Masked::Wild => (WILD, false, false),
                    Masked::Partial => (
                        xxh3_64(masked.as_bytes()) | 1,
                        is_keyword(tok),
                        is_qualified_name(tok),
                    ),
                };
                if let Some(known) = memo.put(raw, tok.as_bytes()) {
                    *known = seen;
                }
                seen
            }
        };
        // a run of variables is one (`channels <*> <*> <*>`: lists vary in length)
        if hash == WILD && hashes.last() == Some(&WILD) {
            continue;
        }
        let i = hashes.len();
        if i < 64 && keyword {
            keywords |= 1 << i;
        }
        if i < route.min(64) && qualified_name {
            qualified |= 1 << i;
        }
        hashes.push(hash);
    }
    (keywords, qualified)
}

/// A dotted name such as a bundle, job or logger id
/// (`com.apple.Safari.SafeBrowsing.Update:`): at the head of a line it names
/// who speaks rather than what is said, so it does not route the line (it
/// still counts in the similarity): `com.apple.CacheDelete.daily: scheduler
/// told me to run this job` and the same from another job meet in one leaf.
fn is_qualified_name(tok: &str) -> bool {
    let core = tok.trim_end_matches([':', ',', ';']);
    let b = core.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphabetic)
        && b.iter().filter(|&&c| c == b'.').count() >= 2
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// What tokenizing made of recently seen tokens (masked hash, keyword or
/// not, qualified name or not), by the token's own hash: logs repeat their
/// words, path segments and even most of their numbers line after line,
/// and a hash and a compare cost a fraction of masking. Tokens up to 64 bytes are
/// remembered.
type TokenMemo = crate::memo::Memo<(u64, bool, bool), 4096, 64>;

/// The masked token texts (for a new cluster's template).
fn masked_tokens<'a>(tokens: impl Iterator<Item = &'a str>) -> Vec<Box<str>> {
    let mut masked = String::new();
    let mut out: Vec<Box<str>> = Vec::new();
    for tok in tokens {
        let m = classify(tok, &mut masked);
        if m == Masked::Wild && out.last().is_some_and(|t| &**t == WILDCARD) {
            continue;
        }
        out.push(match m {
            Masked::Keep => tok.into(),
            Masked::Wild => WILDCARD.into(),
            Masked::Partial => masked.as_str().into(),
        });
    }
    out
}

/// Share of the template's constant tokens that the line keeps in place.
///
/// Drain proper divides by the line length and ignores wildcards, so a line
/// rich in variables never reaches the threshold of a template that has
/// already generalized; counting only the template's constants makes the
/// score independent of how many variables a line carries. Also returns
/// the template's wildcard count (ties go to the most general template).
/// A line scores 0 where it differs from a constant of the template and
/// either of the two is a keyword: a keyword stays put whether the template
/// or the line brought it first. Past `most_differing` differing tokens
/// the line scores 0 without reading on (see [`Drain::best_match`]).
fn similarity(
    template: &Cluster,
    line: &[u64],
    line_keywords: u64,
    most_differing: usize,
) -> (f64, usize) {
    let mut constants = 0usize;
    let mut kept = 0usize;
    let mut differ = 0u64;
    for (i, (t, h)) in template.hashes.iter().zip(line).enumerate() {
        if *t != WILD {
            constants += 1;
            if t == h {
                kept += 1;
            } else if constants - kept > most_differing {
                return (0.0, 0);
            } else if i < 64 {
                differ |= 1 << i;
            }
        }
    }
    if differ & (template.keywords | line_keywords) != 0 {
        return (0.0, 0);
    }
    let template = &template.hashes;
    let wildcards = template.len() - constants;
    if constants == 0 {
        (1.0, wildcards)
    } else {
        (kept as f64 / constants as f64, wildcards)
    }
}

impl Drain {
    pub fn new(cfg: DrainConfig) -> Drain {
        Drain {
            cfg,
            nodes: Vec::new(),
            roots: PrehashedMap::default(),
            clusters: Vec::new(),
            overflowed: 0,
            generalized: 0,
            evicted: 0,
            lines_added: 0,
            held_bytes: 0,
            all_wild: PrehashedMap::default(),
            scratch_hashes: Vec::new(),
            scratch_masked: String::new(),
            memo: TokenMemo::default(),
            lines: LineMemo::default(),
        }
    }

    pub fn config(&self) -> &DrainConfig {
        &self.cfg
    }

    /// Puts the configured settings on a miner restored from a checkpoint,
    /// and counts again what its templates hold.
    pub fn set_config(&mut self, cfg: DrainConfig) {
        self.cfg = cfg;
        // another similarity may have placed remembered lines elsewhere
        self.lines = LineMemo::default();
        self.held_bytes = self.clusters.iter().map(Cluster::bytes).sum();
    }

    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    pub fn cluster(&self, idx: usize) -> &Cluster {
        &self.clusters[idx]
    }

    /// Assigns `content` to a cluster; returns the cluster index.
    pub fn add(&mut self, content: &str) -> usize {
        self.add_tokens(super::words::tokens(content))
    }

    /// Like [`Drain::add_tokens`], for a line whose tokens `key` fixes (the
    /// same key always stands for the same tokens): a line seen before is
    /// counted in its cluster again without being tokenized, where nothing
    /// in its leaf has changed since.
    pub fn add_keyed<'a>(
        &mut self,
        key: &[u8],
        tokens: impl Iterator<Item = &'a str> + Clone,
    ) -> usize {
        if !LineMemo::fits(key) {
            return self.add_tokens(tokens);
        }
        let hash = xxh3_64(key);
        if let Some(&seen) = self.lines.get(hash, key)
            && self.nodes[seen.leaf].generation == seen.generation
        {
            self.lines_added += 1;
            let c = &mut self.clusters[seen.cluster];
            c.size += 1;
            c.last_matched = self.lines_added;
            return seen.cluster;
        }
        let overflowed = self.overflowed;
        let (cluster, leaf) = self.place(tokens);
        // a line placed past `max_clusters` went wherever there was room
        if self.overflowed == overflowed
            && let Some(seen) = self.lines.put(hash, key)
        {
            *seen = Seen {
                cluster,
                leaf,
                generation: self.nodes[leaf].generation,
            };
        }
        cluster
    }

    /// Assigns a line already split into tokens; returns the cluster index.
    pub fn add_tokens<'a>(&mut self, tokens: impl Iterator<Item = &'a str> + Clone) -> usize {
        self.place(tokens).0
    }

    /// Assigns a line to a cluster: (cluster index, leaf).
    fn place<'a>(&mut self, tokens: impl Iterator<Item = &'a str> + Clone) -> (usize, usize) {
        self.lines_added += 1;
        let tokens = Capped {
            inner: tokens,
            left: MAX_TOKENS,
        };
        let mut hashes = std::mem::take(&mut self.scratch_hashes);
        let (keywords, qualified) = tokenize(
            tokens.clone(),
            &mut hashes,
            &mut self.scratch_masked,
            &mut self.memo,
            self.cfg.depth,
        );
        let leaf = self.leaf_for(&hashes, qualified);
        let idx = match self.best_match(leaf, &hashes, keywords) {
            Some((ci, sim)) if sim >= self.cfg.similarity => {
                self.merge(leaf, ci, &hashes);
                ci
            }
            best => {
                if self.full() {
                    self.overflowed += 1;
                    match best {
                        Some((ci, _)) => {
                            self.merge(leaf, ci, &hashes);
                            ci
                        }
                        None => self.all_wild(leaf, hashes.len()),
                    }
                } else {
                    self.new_cluster(leaf, masked_tokens(tokens), hashes.clone(), keywords)
                }
            }
        };
        let c = &mut self.clusters[idx];
        c.size += 1;
        c.last_matched = self.lines_added;
        self.scratch_hashes = hashes;
        (idx, leaf)
    }

    /// Whether templates have reached either cap: lines then join the
    /// closest template of their leaf, or the all-wildcard one.
    fn full(&self) -> bool {
        self.clusters.len() >= self.cfg.max_clusters
            || self.held_bytes >= self.cfg.max_template_bytes as u64
    }

    /// The all-wildcard template of lines of `len` tokens, made once and
    /// shared: past the caps, each new leaf would otherwise add one.
    fn all_wild(&mut self, leaf: usize, len: usize) -> usize {
        match self.all_wild.get(&len) {
            Some(&ci) => {
                self.nodes[leaf].clusters.push(ci);
                self.nodes[leaf].generation += 1;
                ci
            }
            None => {
                let ci = self.new_cluster(leaf, vec![WILDCARD.into(); len], vec![WILD; len], 0);
                self.all_wild.insert(len, ci);
                ci
            }
        }
    }

    fn new_cluster(
        &mut self,
        leaf: usize,
        tokens: Vec<Box<str>>,
        hashes: Vec<u64>,
        keywords: u64,
    ) -> usize {
        let idx = self.clusters.len();
        let c = Cluster::new(tokens, hashes, keywords);
        self.held_bytes += c.bytes();
        self.clusters.push(c);
        let held = &mut self.nodes[leaf].clusters;
        // `while`: a leaf restored from a checkpoint, or kept under a
        // larger setting, may hold more
        while held.len() >= self.cfg.leaf_templates.max(1) {
            let clusters = &self.clusters;
            let Some(pos) = (0..held.len()).min_by_key(|&p| clusters[held[p]].last_matched) else {
                break;
            };
            // order kept: ties in similarity go to the earlier template
            held.remove(pos);
            self.evicted += 1;
        }
        held.push(idx);
        self.nodes[leaf].generation += 1;
        idx
    }

    fn node(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    /// Walks (and grows) the tree to the leaf for this token sequence.
    fn leaf_for(&mut self, hashes: &[u64], unrouted: u64) -> usize {
        let len = hashes.len();
        let mut cur = match self.roots.get(&len) {
            Some(&n) => n,
            None => {
                let n = self.node();
                self.roots.insert(len, n);
                n
            }
        };
        for (i, &h) in hashes.iter().take(self.cfg.depth).enumerate() {
            let h = if i < 64 && unrouted & (1 << i) != 0 {
                WILD
            } else {
                h
            };
            let next = match self.nodes[cur].children.get(&h) {
                Some(&n) => n,
                None => {
                    let key = if self.nodes[cur].children.len() >= self.cfg.max_children {
                        WILD
                    } else {
                        h
                    };
                    match self.nodes[cur].children.get(&key) {
                        Some(&n) => n,
                        None => {
                            let n = self.node();
                            self.nodes[cur].children.insert(key, n);
                            n
                        }
                    }
                }
            };
            cur = next;
        }
        cur
    }

    /// The leaf's template most similar to the line, and its score. Until
    /// the miner is full, only a score at or above `similarity` is used:
    /// a template stops being read once the line differs from it in more
    /// tokens than that allows (the score is at most 1 − differing ÷
    /// length), which is what makes a leaf of templates no line fits cheap
    /// to walk. Past the caps (see [`Drain::full`]), the best of any score
    /// is wanted.
    fn best_match(&self, leaf: usize, hashes: &[u64], keywords: u64) -> Option<(usize, f64)> {
        let most_differing = if self.full() {
            usize::MAX
        } else {
            // the tolerance keeps a template that reaches the threshold exactly
            ((1.0 - self.cfg.similarity) * hashes.len() as f64 + 1e-9).floor() as usize
        };
        self.best_within(leaf, hashes, keywords, most_differing)
    }

    fn best_within(
        &self,
        leaf: usize,
        hashes: &[u64],
        keywords: u64,
        most_differing: usize,
    ) -> Option<(usize, f64)> {
        let mut best: Option<(usize, f64, usize)> = None;
        for &ci in &self.nodes[leaf].clusters {
            let (sim, params) = similarity(&self.clusters[ci], hashes, keywords, most_differing);
            if best.is_none_or(|(_, s, p)| sim > s || (sim == s && params > p)) {
                best = Some((ci, sim, params));
            }
        }
        best.map(|(c, s, _)| (c, s))
    }

    /// Merges a line into cluster `ci` of `leaf`.
    fn merge(&mut self, leaf: usize, ci: usize, hashes: &[u64]) {
        let c = &mut self.clusters[ci];
        let mut changed = false;
        // the words given up, less their `<*>`s
        let mut freed = 0i64;
        for ((t, tok), h) in c.hashes.iter_mut().zip(c.tokens.iter_mut()).zip(hashes) {
            if *t != WILD && t != h {
                *t = WILD;
                freed += tok.len() as i64 - WILDCARD.len() as i64;
                *tok = WILDCARD.into();
                changed = true;
            }
        }
        if changed {
            let text: Arc<str> = Arc::from(c.tokens.join(" "));
            freed += c.text.len() as i64 - text.len() as i64;
            self.held_bytes = self.held_bytes.saturating_add_signed(-freed);
            c.id = xxh3_64(text.as_bytes());
            c.text = text;
            self.generalized += 1;
            self.nodes[leaf].generation += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn groups_lines_that_differ_in_variables() {
        let mut d = Drain::new(DrainConfig::default());
        let a = d.add("Failed password for root from 1.2.3.4 port 22 ssh2");
        let b = d.add("Failed password for admin from 5.6.7.8 port 2222 ssh2");
        let c = d.add("Accepted publickey for alice from 5.6.7.8 port 2222 ssh2");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            &*d.cluster(a).text,
            "Failed password for <*> from <*> port <*> ssh2"
        );
    }

    #[test]
    fn keywords_keep_templates_apart() {
        let mut d = Drain::new(DrainConfig::default());
        let kb = d.add("memory used 512 KB of 2048 MB");
        let gb = d.add("memory used 512 GB of 2048 MB");
        let kb2 = d.add("memory used 12 KB of 4096 MB");
        assert_ne!(kb, gb);
        assert_eq!(kb, kb2);
        // a size restated in brackets is not read (see words.rs), whatever its unit
        let a = d.add("chrome.exe close, 1190 bytes (1.16 KB) sent, 1671 bytes (1.63 MB) received");
        let b = d.add("chrome.exe close, 190 bytes sent, 1671 bytes (1.63 KB) received");
        let c = d.add("chrome.exe close, 19 bytes sent, 71 bytes received");
        assert!(a == b && b == c);
        assert_eq!(
            &*d.cluster(a).text,
            "chrome.exe close, <*> bytes sent, <*> bytes received"
        );
        // a word that is no keyword still generalises
        let a = d.add("open through proxy 10.0.0.1:80 HTTPS for alice");
        let b = d.add("open through proxy 10.0.0.2:80 HTTPS for bob");
        assert_eq!(a, b);
        let c = d.add("open through proxy 10.0.0.2:80 SOCKS5 for bob");
        assert_ne!(a, c);
        assert!(is_keyword("TIME_WAIT") && is_keyword("(KB)") && is_keyword("LOGIN(uid=0)"));
        assert!(!is_keyword("Login(uid=0)") && !is_keyword("USER=root"));
        // whichever comes first, a keyword and an ordinary constant stay apart
        let plain = d.add("session opened for user cyrus by (uid=0)");
        let login = d.add("session opened for user root by LOGIN(uid=0)");
        let later = d.add("session opened for user news by (uid=509)");
        assert_ne!(plain, login);
        assert_eq!(plain, later);
        let mut d = Drain::new(DrainConfig::default());
        let login = d.add("session opened for user root by LOGIN(uid=0)");
        let plain = d.add("session opened for user cyrus by (uid=0)");
        assert_ne!(plain, login);
        assert!(is_keyword("Failed") && !is_keyword("failed") && !is_keyword("K"));
        assert!(!is_keyword("(Sun") && !is_keyword("Jul,"));
        // a capitalised word is a state: two events, not one with a variable
        let started = d.add("[instance: 7a1e] VM Started (Lifecycle Event)");
        let stopped = d.add("[instance: 9c3f] VM Stopped (Lifecycle Event)");
        assert_ne!(started, stopped);
        // while the day and month of a date written in the message vary
        let sun = d.add("connection from 10.0.0.1 (host) at Sun Jul 10 03:55:21 2005");
        let fri = d.add("connection from 10.0.0.9 (other) at Fri Jun 24 18:55:01 2005");
        assert_eq!(sun, fri);
        // the last part of a qualified name: two broadcasts, not one with a variable
        let on = d.add("onReceive action: android.intent.action.SCREEN_ON");
        let off = d.add("onReceive action: android.intent.action.SCREEN_OFF");
        assert_ne!(on, off);
        assert!(
            is_keyword("android.intent.action.SCREEN_OFF,") && !is_keyword("com.huawei.health")
        );
    }

    #[test]
    fn a_qualified_name_at_the_head_does_not_route_the_line() {
        let mut d = Drain::new(DrainConfig::default());
        let tail = "scheduler_evaluate_activity told me to run this job; however, but the start time isn't for 29590 seconds. Ignoring.";
        let a = d.add(&format!("com.apple.CacheDelete.daily: {tail}"));
        let b = d.add(&format!("com.apple.Safari.SafeBrowsing.Update: {tail}"));
        assert_eq!(a, b);
        assert!(
            d.cluster(a)
                .text
                .starts_with("<*> scheduler_evaluate_activity")
        );
        // an ordinary head word still routes
        let c = d.add("Receiving block blk_1 src: /10.0.0.1:5 dest: /10.0.0.2:5");
        let e = d.add("Deleting block blk_1 src: /10.0.0.1:5 dest: /10.0.0.2:5");
        assert_ne!(c, e);
        assert!(is_qualified_name("com.apple.cts:") && !is_qualified_name("ARPT:"));
        assert!(!is_qualified_name("a.b") && !is_qualified_name("/usr/lib/x.so.1"));
    }

    /// `i` in letters (`12` is `bc`): a word the masker keeps.
    fn letters(i: usize) -> String {
        i.to_string()
            .bytes()
            .map(|b| char::from(b - b'0' + b'a'))
            .collect()
    }

    #[test]
    fn a_full_leaf_makes_room_by_dropping_its_least_recently_matched_template() {
        let cfg = DrainConfig {
            leaf_templates: 3,
            ..DrainConfig::default()
        };
        let mut d = Drain::new(cfg);
        // one length, one head: one leaf; no two lines alike enough to merge
        let a = d.add("job run alpha ended cleanly");
        let b = d.add("job run beta failed twice");
        let c = d.add("job run gamma paused again");
        assert_eq!(d.add("job run alpha ended cleanly"), a);
        // a fourth template: beta, matched least recently, leaves the leaf
        let e = d.add("job run delta moved somewhere");
        assert_eq!(d.evicted, 1);
        let leaf_of = |d: &Drain, i: usize| d.nodes.iter().position(|n| n.clusters.contains(&i));
        assert_eq!(leaf_of(&d, b), None);
        assert!([a, c, e].iter().all(|&i| leaf_of(&d, i).is_some()));
        // a line of the dropped template starts it again, under the same id
        let b2 = d.add("job run beta failed twice");
        assert_ne!(b2, b);
        assert_eq!(d.cluster(b2).id, d.cluster(b).id);
        // the leaf never holds more than its share, however many lines
        // fit none of its templates
        for i in 0..200 {
            d.add(&format!(
                "job run {}x ended {}y",
                letters(i),
                letters(i + 7)
            ));
        }
        assert!(d.clusters().len() > 200);
        assert!(d.nodes.iter().all(|n| n.clusters.len() <= 3));
    }

    #[test]
    fn a_long_line_counts_its_first_tokens_and_the_rest_as_one_variable() {
        let mut d = Drain::new(DrainConfig::default());
        // the i-th word of a line: its tag and a letter
        let nth = |i: usize, tag: &str| format!("{tag}{}", char::from(b'a' + (i % 26) as u8));
        let words = |n: usize, tag: &str| -> String {
            (0..n).map(|i| nth(i, tag)).collect::<Vec<_>>().join(" ")
        };
        let a = d.add(&words(5000, "w"));
        let t = d.cluster(a).text.split(' ').collect::<Vec<_>>();
        assert_eq!(t.len(), MAX_TOKENS);
        assert_eq!(t[MAX_TOKENS - 2], nth(MAX_TOKENS - 2, "w"));
        assert_eq!(t[MAX_TOKENS - 1], "<*>");
        // another tail of any length: the same template
        let b = d.add(&format!(
            "{} {}",
            words(MAX_TOKENS - 1, "w"),
            words(900, "x")
        ));
        assert_eq!(a, b);
        // exactly MAX_TOKENS tokens: nothing folded
        let c = d.add(&words(MAX_TOKENS, "v"));
        assert!(d.cluster(c).text.ends_with(&nth(MAX_TOKENS - 1, " v")));
    }

    #[test]
    fn templates_stop_being_added_once_they_hold_their_share_of_memory() {
        let cfg = DrainConfig {
            max_template_bytes: 4096,
            ..DrainConfig::default()
        };
        let mut d = Drain::new(cfg);
        for i in 0..2000 {
            // lengths 3 to 9, heads and words of their own: no two alike
            let n = 3 + i % 7;
            let line: Vec<String> = (0..n)
                .map(|k| format!("{}q{}", letters(i), letters(k)))
                .collect();
            d.add(&line.join(" "));
        }
        assert!(d.overflowed > 0);
        // the caps stop new templates: one past the budget at most, then
        // one all-wildcard template per length, shared by its leaves
        let biggest = d.clusters().iter().map(Cluster::bytes).max().unwrap();
        assert!(
            d.held_bytes <= 4096 + biggest + 7 * biggest,
            "{}",
            d.held_bytes
        );
        let wild: Vec<&Cluster> = d
            .clusters()
            .iter()
            .filter(|c| c.text.split(' ').all(|t| t == "<*>"))
            .collect();
        assert!(!wild.is_empty() && wild.len() <= 7, "{}", wild.len());
        assert!(d.clusters().len() < 60);
        // a checkpoint leaves the count out; the restored miner counts it again
        let mut restored: Drain =
            serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(restored.held_bytes, 0);
        restored.set_config(d.cfg.clone());
        assert_eq!(restored.held_bytes, d.held_bytes);
    }

    proptest! {
        /// A line remembered by its key lands where mining it afresh would,
        /// with the same template, counts and overflow, whatever came
        /// between (new templates, generalisations, a full miner).
        #[test]
        fn remembered_lines_land_where_fresh_ones_do(
            // few leaves and few words, so that templates in one leaf
            // compete for the same lines and generalise under them
            lines in proptest::collection::vec("[ab] [xy]( [a-d]| [0-9]| A| B){1,4}", 1..120),
            max_clusters in 1usize..12,
            leaf_templates in 1usize..5,
            similarity in 0.3f64..1.0,
        ) {
            let cfg = DrainConfig { max_clusters, leaf_templates, similarity, ..DrainConfig::default() };
            let (mut fresh, mut keyed) = (Drain::new(cfg.clone()), Drain::new(cfg));
            for line in &lines {
                let a = fresh.add(line);
                let b = keyed.add_keyed(line.as_bytes(), line.split_ascii_whitespace());
                prop_assert_eq!(a, b);
                prop_assert_eq!(fresh.cluster(a).id, keyed.cluster(b).id);
            }
            let sizes = |d: &Drain| d.clusters().iter().map(|c| (c.id, c.size)).collect::<Vec<_>>();
            prop_assert_eq!(sizes(&fresh), sizes(&keyed));
            prop_assert_eq!(
                (fresh.overflowed, fresh.generalized, fresh.evicted),
                (keyed.overflowed, keyed.generalized, keyed.evicted)
            );
        }

        /// Giving up on a template once the line differs too much never
        /// changes where a line goes: the same template is taken, or none.
        #[test]
        fn reading_templates_only_while_they_can_match_decides_as_reading_them_whole(
            lines in proptest::collection::vec("[ab] [xy]( [a-d]| [0-9]| A| [e-f]{2}){1,8}", 1..80),
            similarity in 0.0f64..1.0,
        ) {
            let cfg = DrainConfig { similarity, ..DrainConfig::default() };
            let mut d = Drain::new(cfg);
            for line in &lines {
                let mut hashes = Vec::new();
                let (keywords, qualified) = tokenize(
                    super::super::words::tokens(line),
                    &mut hashes,
                    &mut String::new(),
                    &mut TokenMemo::default(),
                    d.cfg.depth,
                );
                let leaf = d.leaf_for(&hashes, qualified);
                let fits = |m: Option<(usize, f64)>| m.filter(|&(_, s)| s >= similarity).map(|(c, _)| c);
                prop_assert_eq!(
                    fits(d.best_match(leaf, &hashes, keywords)),
                    fits(d.best_within(leaf, &hashes, keywords, usize::MAX))
                );
                d.add(line);
            }
        }

        /// Template stability: the same input gives the same ids in every run.
        #[test]
        fn ids_are_stable_across_runs(lines in proptest::collection::vec("[a-c]{1,2}( [0-9a-c]{1,3}){0,4}", 1..40)) {
            let run = |lines: &[String]| {
                let mut d = Drain::new(DrainConfig::default());
                lines.iter().map(|l| { let i = d.add(l); d.cluster(i).id }).collect::<Vec<_>>()
            };
            prop_assert_eq!(run(&lines), run(&lines));
        }
    }
}
