//! Compiled event matching: conditions resolved to [`Field`]s, keyword sets
//! built into Aho-Corasick automata and regexes compiled, all at load.

use std::borrow::Cow;

use aho_corasick::AhoCorasick;
use regex::Regex;

use super::config::{Condition, Located, MatchSpec};
use super::CompileError;
use crate::event::{Event, Field};

#[derive(Debug)]
enum Test {
    Equals(Vec<String>),
    Prefix(Vec<String>),
    Keywords(AhoCorasick),
    Regex(Regex),
    Range { gte: Option<f64>, lte: Option<f64> },
    Exists(bool),
}

#[derive(Debug)]
pub struct CompiledCondition {
    pub field: Field,
    test: Test,
    url_decode: bool,
}

#[derive(Debug, Default)]
pub struct Matcher {
    all: Vec<CompiledCondition>,
    any: Vec<CompiledCondition>,
    none: Vec<CompiledCondition>,
}

impl Matcher {
    pub fn compile(spec: &MatchSpec, path: &str) -> Result<Matcher, CompileError> {
        let c = |v: &[Located<Condition>]| v.iter().map(|c| compile_condition(c, path)).collect::<Result<Vec<_>, _>>();
        Ok(Matcher { all: c(&spec.all)?, any: c(&spec.any)?, none: c(&spec.none)? })
    }

    pub fn matches(&self, ev: &Event) -> bool {
        let mut buf = String::new();
        self.all.iter().all(|c| c.test(ev, &mut buf))
            && (self.any.is_empty() || self.any.iter().any(|c| c.test(ev, &mut buf)))
            && !self.none.iter().any(|c| c.test(ev, &mut buf))
    }

    /// The most selective field this matcher requires one of a few values
    /// of (an `all` condition with `equals` on action, dataset, log level or
    /// category), so the engine tests a detector only on events that can match.
    pub fn index_key(&self) -> Option<(Field, Vec<String>)> {
        [Field::Action, Field::Dataset, Field::LogLevel, Field::Category].into_iter().find_map(|want| {
            self.all.iter().find_map(|c| match &c.test {
                Test::Equals(v) if c.field == want => Some((want.clone(), v.clone())),
                _ => None,
            })
        })
    }
}

fn compile_condition(c: &Located<Condition>, path: &str) -> Result<CompiledCondition, CompileError> {
    let err = |message: String| CompileError { path: path.to_owned(), line: c.line, message };
    let cond = &c.value;
    let field = Field::resolve(&cond.field).map_err(err)?;
    let mut tests = Vec::new();
    if let Some(v) = &cond.equals {
        tests.push(Test::Equals(v.clone()));
    }
    if let Some(v) = &cond.prefix {
        tests.push(Test::Prefix(v.clone()));
    }
    if let Some(k) = &cond.keywords {
        if k.is_empty() || k.iter().any(String::is_empty) {
            return Err(err("`keywords` needs at least one non-empty keyword".into()));
        }
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(k)
            .map_err(|e| err(format!("cannot build keyword set: {e}")))?;
        tests.push(Test::Keywords(ac));
    }
    if let Some(r) = &cond.regex {
        let re = Regex::new(r).map_err(|e| {
            // the regex crate draws a caret diagram over several lines; keep the verdict
            let text = e.to_string();
            err(format!("invalid regex {r:?}: {}", text.lines().last().unwrap_or("").trim_start_matches("error: ")))
        })?;
        tests.push(Test::Regex(re));
    }
    if cond.gte.is_some() || cond.lte.is_some() {
        tests.push(Test::Range { gte: cond.gte, lte: cond.lte });
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
    Ok(CompiledCondition { field, test: tests.remove(0), url_decode: cond.url_decode })
}

impl CompiledCondition {
    fn test(&self, ev: &Event, buf: &mut String) -> bool {
        if let Test::Range { gte, lte } = &self.test {
            return match ev.get_number(&self.field) {
                Some(v) => gte.is_none_or(|g| v >= g) && lte.is_none_or(|l| v <= l),
                None => false,
            };
        }
        let Some(value) = ev.get(&self.field, buf) else {
            return matches!(self.test, Test::Exists(false));
        };
        let value: Cow<str> = if self.url_decode { url_decode(value) } else { Cow::Borrowed(value) };
        match &self.test {
            Test::Equals(v) => v.iter().any(|x| x == value.as_ref()),
            Test::Prefix(v) => v.iter().any(|x| value.starts_with(x.as_str())),
            Test::Keywords(ac) => ac.is_match(value.as_ref()),
            Test::Regex(r) => r.is_match(&value),
            Test::Exists(e) => *e,
            Test::Range { .. } => false,
        }
    }
}

/// Percent-decodes twice (catching `%252e`), `+` as space; invalid escapes stay.
pub fn url_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let once = decode_once(s.as_bytes());
    if !once.contains(&b'%') {
        return Cow::Owned(String::from_utf8_lossy(&once).into_owned());
    }
    Cow::Owned(String::from_utf8_lossy(&decode_once(&once)).into_owned())
}

fn decode_once(b: &[u8]) -> Vec<u8> {
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
            b'+' => {
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

    #[test]
    fn decodes_double_encoding() {
        assert_eq!(url_decode("/a%20b"), "/a b");
        assert_eq!(url_decode("%252e%252e%252f"), "../");
        assert_eq!(url_decode("%zz"), "%zz");
        assert_eq!(url_decode("50%"), "50%");
    }
}
