//! A one-pass scanner for the JSON lines logs are made of: an object of
//! strings, numbers, booleans, nulls and nested objects.
//!
//! It yields the same leaves as the serde path beside it ([`super::flatten_raw`])
//! without that path's intermediate steps (a raw value per entry, a vector
//! per object, every string read twice), which made JSON the costliest
//! format to parse. It accepts only what it fully understands and gives up
//! (`None`) on anything else (arrays, escaped keys, deep nesting, malformed
//! input), so the serde path decides those lines and every error: a line
//! parses the same whichever path took it.

use std::borrow::Cow;

use super::{Leaf, MAX_DEPTH};

/// Flattens `line` into `out`, or None (with `out` partly filled) when the
/// serde path must decide.
pub(super) fn flatten<'a>(line: &'a str, out: &mut Vec<Leaf<'a>>) -> Option<()> {
    let mut sc = Scanner {
        s: line,
        b: line.as_bytes(),
        i: 0,
    };
    sc.skip_ws();
    sc.object(Cow::Borrowed(""), out, 0)?;
    sc.skip_ws();
    (sc.i == sc.b.len()).then_some(())
}

struct Scanner<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn skip_ws(&mut self) {
        while self
            .b
            .get(self.i)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    fn object(
        &mut self,
        prefix: Cow<'a, str>,
        out: &mut Vec<Leaf<'a>>,
        depth: usize,
    ) -> Option<()> {
        self.eat(b'{')?;
        self.skip_ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.skip_ws();
            let name = match self.string()? {
                Cow::Borrowed(k) => k,
                Cow::Owned(_) => return None,
            };
            self.skip_ws();
            self.eat(b':')?;
            self.skip_ws();
            let key = if prefix.is_empty() {
                Cow::Borrowed(name)
            } else {
                Cow::Owned(format!("{prefix}.{name}"))
            };
            match self.b.get(self.i)? {
                b'"' => {
                    let text = self.string()?;
                    out.push(Leaf {
                        key,
                        text,
                        number: None,
                    });
                }
                b'{' if depth < MAX_DEPTH => self.object(key, out, depth + 1)?,
                b'n' => self.literal("null").map(|_| ())?,
                b't' | b'f' => {
                    let text = self.literal(if self.b[self.i] == b't' {
                        "true"
                    } else {
                        "false"
                    })?;
                    out.push(Leaf {
                        key,
                        text: Cow::Borrowed(text),
                        number: None,
                    });
                }
                b'-' | b'0'..=b'9' => {
                    let text = self.number()?;
                    out.push(Leaf {
                        key,
                        number: text.parse().ok(),
                        text: Cow::Borrowed(text),
                    });
                }
                _ => return None,
            }
            self.skip_ws();
            match self.b.get(self.i)? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string at the cursor: borrowed when it has no escapes, else
    /// unescaped by serde (which also checks the escapes).
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        self.skip_plain();
        loop {
            match *self.b.get(self.i)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.i += 2;
                }
                c if c < 0x20 => return None,
                _ => self.i += 1,
            }
        }
        let body = self.s.get(start..self.i)?;
        self.i += 1;
        if !escaped {
            return Some(Cow::Borrowed(body));
        }
        let quoted = self.s.get(start - 1..self.i)?;
        serde_json::from_str::<String>(quoted).ok().map(Cow::Owned)
    }

    /// Skips eight bytes at a time while none is a quote, a backslash or a
    /// control character (keys and values are short: a vector search's
    /// set-up would cost more than it saves), leaving the rest to the byte loop.
    fn skip_plain(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let x = u64::from_le_bytes(word);
            // bytes below 0x20, or equal to `"` or `\`
            let special = x.wrapping_sub(ONES * 0x20) & !x & HIGHS
                | has_zero(x ^ (ONES * b'"' as u64))
                | has_zero(x ^ (ONES * b'\\' as u64));
            if special != 0 {
                return;
            }
            self.i += 8;
        }
    }

    fn literal(&mut self, word: &'static str) -> Option<&'static str> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word.as_bytes()).then(|| {
            self.i = end;
            word
        })
    }

    /// A number literal, checked against JSON's grammar:
    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.i;
        self.eat(b'-');
        match self.b.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            self.b.get(self.i).filter(|c| c.is_ascii_digit())?;
            self.digits();
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.b.get(self.i).filter(|c| c.is_ascii_digit())?;
            self.digits();
        }
        self.s.get(start..self.i)
    }

    fn digits(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    type Flat = Vec<(String, String, Option<f64>)>;

    fn owned(leaves: &[Leaf<'_>]) -> Flat {
        leaves
            .iter()
            .map(|l| (l.key.to_string(), l.text.to_string(), l.number))
            .collect()
    }

    fn by_serde(line: &str) -> Option<Flat> {
        let mut out = Vec::new();
        super::super::flatten_raw(Cow::Borrowed(""), line, &mut out, 0).then(|| owned(&out))
    }

    fn by_scan(line: &str) -> Option<Flat> {
        let mut out = Vec::new();
        flatten(line, &mut out).map(|_| owned(&out))
    }

    #[test]
    fn log_lines_take_the_fast_path_with_the_same_leaves() {
        for line in [
            r#"{"ts":"2026-03-03T10:00:00.006Z","level":"info","msg":"job 335 finished","n":-1.5e3}"#,
            r#" { "a" : { "b" : { "c" : true } }, "d" : null, "e" : false, "f" : 0 } "#,
            r#"{"msg":"quote \" and \u00e9 and \\ done","empty":{}}"#,
            "{}",
        ] {
            let fast = by_scan(line);
            assert!(fast.is_some(), "{line}");
            assert_eq!(fast, by_serde(line), "{line}");
        }
        // what the scanner leaves to serde
        for line in [
            r#"{"tags":["a","b"]}"#,
            r#"{"k\"ey":1}"#,
            r#"{"a":01}"#,
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":"\x"}"#,
        ] {
            assert_eq!(by_scan(line), None, "{line}");
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<String>().prop_map(Value::String),
            "[a-z %./\\\\\"]{0,12}".prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
        ];
        leaf.prop_recursive(10, 48, 5, |inner| {
            // mostly objects and plain keys: what the scanner takes on itself
            prop_oneof![
                1 => prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                1 => prop::collection::vec(("\\PC{1,4}", inner.clone()), 1..3)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
                8 => prop::collection::vec(("[a-z_.@]{1,6}", inner), 1..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    fn json_object() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(("[a-z_.@]{1,6}", json_value()), 1..6),
            any::<bool>(),
        )
            .prop_map(|(kv, pretty)| {
                let v = Value::Object(kv.into_iter().collect());
                if pretty {
                    serde_json::to_string_pretty(&v).unwrap_or_default()
                } else {
                    v.to_string()
                }
            })
    }

    proptest! {
        #[test]
        fn the_fast_path_agrees_with_serde(text in json_object()) {
            if let Some(fast) = by_scan(&text) {
                prop_assert_eq!(Some(fast), by_serde(&text));
            }
        }

        #[test]
        fn the_fast_path_accepts_nothing_serde_rejects(
            text in json_object(),
            at in any::<prop::sample::Index>(),
            junk in prop_oneof![Just(String::new()), "\\PC{1,2}", "[{}\\[\\],:\"\\\\0-9eE.+-]"],
            cut in any::<bool>(),
        ) {
            let mut at = at.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mutated = if cut {
                format!("{}{junk}", &text[..at])
            } else {
                format!("{}{junk}{}", &text[..at], &text[at..])
            };
            if let Some(fast) = by_scan(&mutated) {
                prop_assert_eq!(Some(fast), by_serde(&mutated), "{}", mutated);
            }
        }
    }
}
