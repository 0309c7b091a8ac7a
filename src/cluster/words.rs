//! How a line is cut into the tokens the miner compares.
//!
//! Whitespace separates tokens, with two exceptions for quantities, whose
//! written form varies in length from line to line of one statement:
//! - a size or duration restated in brackets after the quantity it restates
//!   (`18846 bytes (18.4 KB) received`, next to `426 bytes received`) is
//!   left out: it appears only past some magnitude, so reading it would make
//!   one statement several templates of different lengths;
//! - a bound written as a comparison with its unit (`lifetime <1 sec`, next
//!   to `lifetime 00:01`) is one variable.
//!
//! Units are the usual size and duration names ([`is_unit`]). The message
//! itself is untouched; only the template leaves the restatement out.

use super::mask::WILDCARD;

/// The tokens of `content` (see the module doc).
pub fn tokens(content: &str) -> Tokens<'_> {
    Tokens {
        words: content.split_ascii_whitespace(),
        prev: "",
    }
}

/// Iterator over a line's tokens; cheap to clone (the miner reads a line
/// twice when it makes a new template).
#[derive(Clone)]
pub struct Tokens<'a> {
    words: std::str::SplitAsciiWhitespace<'a>,
    /// The last token given out: a bracket restates it when it ends a
    /// quantity (a number, or a unit that may follow one).
    prev: &'a str,
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let tok = self.words.next()?;
            match tok.as_bytes()[0] {
                b'(' if is_number(&tok[1..]) && ends_quantity(self.prev) => {
                    let mut ahead = self.words.clone();
                    if ahead
                        .next()
                        .and_then(|u| u.strip_suffix(')'))
                        .is_some_and(is_unit)
                    {
                        // a restatement: skip it and its unit
                        self.words = ahead;
                        continue;
                    }
                }
                b'<' | b'>' if is_number(&tok[1..]) => {
                    let mut ahead = self.words.clone();
                    if ahead.next().is_some_and(|u| is_unit(trim_end(u))) {
                        self.words = ahead;
                        self.prev = WILDCARD;
                        return Some(WILDCARD);
                    }
                }
                _ => {}
            }
            self.prev = tok;
            return Some(tok);
        }
    }
}

/// Whether `tok` ends a quantity: a number, a unit, or a bound read as one.
fn ends_quantity(tok: &str) -> bool {
    let core = trim_end(tok);
    is_number(core) || is_unit(core) || core == WILDCARD
}

/// Trailing punctuation removed (`MB,` → `MB`).
fn trim_end(tok: &str) -> &str {
    tok.trim_end_matches([',', ';', '.', ':'])
}

/// A plain decimal number (`426`, `18.4`).
fn is_number(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b[0].is_ascii_digit() && b.iter().all(|c| c.is_ascii_digit() || *c == b'.')
}

/// A size or duration unit.
fn is_unit(s: &str) -> bool {
    matches!(
        s,
        "B" | "KB"
            | "kB"
            | "MB"
            | "GB"
            | "TB"
            | "PB"
            | "KiB"
            | "MiB"
            | "GiB"
            | "TiB"
            | "byte"
            | "bytes"
            | "ns"
            | "us"
            | "ms"
            | "s"
            | "sec"
            | "secs"
            | "second"
            | "seconds"
            | "min"
            | "mins"
            | "minute"
            | "minutes"
            | "h"
            | "hour"
            | "hours"
            | "day"
            | "days"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(line: &str) -> Vec<&str> {
        tokens(line).collect()
    }

    #[test]
    fn a_restated_size_is_left_out_and_a_bound_with_its_unit_is_one_variable() {
        assert_eq!(
            cut("close, 451 bytes sent, 18846 bytes (18.4 KB) received, lifetime <1 sec"),
            cut("close, 451 bytes sent, 18846 bytes received, lifetime <*>"),
        );
        assert_eq!(
            cut("close, 1190 bytes (1.16 KB) sent, 0 bytes received, lifetime 00:02").len(),
            cut("close, 0 bytes sent, 0 bytes received, lifetime 00:02").len(),
        );
    }

    #[test]
    fn brackets_and_comparisons_that_are_not_quantities_stay() {
        // no quantity before the bracket, or no unit inside it
        assert_eq!(cut("found (3 MB) free").len(), 4);
        assert_eq!(cut("slot 7 (12 children)").len(), 4);
        assert_eq!(cut("count <5 items").len(), 3);
        assert_eq!(cut("<1 sec"), vec![WILDCARD]);
        assert_eq!(cut(""), Vec::<&str>::new());
    }
}
