//! Token masking: variable parts of a log token become `<*>` before
//! clustering, so `Failed password for root from 1.2.3.4 port 22` and the
//! same line from another address fall into one template.
//!
//! Masked, by hand-written byte checks (no regex on the hot path): numbers
//! (with sign, decimals, units like `ms`, `kB`), hex (`0x1f`, long hex ids),
//! IPv4/IPv6 with optional port, UUIDs, paths (`/a/b`), `key=value` values,
//! identifiers that carry digit runs (`blk_-1608`, `job_1445_0020`,
//! `node-246`), and day and month names. Surrounding punctuation is kept
//! (`[<*>]`, `(<*>)`), as the Loghub ground truth writes its templates.

/// The wildcard token.
pub const WILDCARD: &str = "<*>";

/// How a token is masked.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Masked {
    /// A constant: kept as it is.
    Keep,
    /// Wholly variable: `<*>`.
    Wild,
    /// Partly variable, e.g. `[<*>]` or `uid=<*>`: the masked text is in
    /// the buffer given to [`classify`].
    Partial,
}

/// Classifies `tok`; for a partly variable token, writes its masked form
/// into `out` (cleared first). The buffer is the caller's to reuse, so
/// masking allocates nothing once it has grown.
pub fn classify(tok: &str, out: &mut String) -> Masked {
    out.clear();
    if tok == WILDCARD {
        // a variable already (see words.rs)
        Masked::Wild
    } else if !mask_into(tok, out) {
        Masked::Keep
    } else if out == WILDCARD {
        Masked::Wild
    } else {
        Masked::Partial
    }
}

/// Returns the masked form of `tok`, or None when it is kept as is.
pub fn mask_token(tok: &str) -> Option<String> {
    let mut out = String::new();
    mask_into(tok, &mut out).then_some(out)
}

/// Appends the masked form of `tok` to `out`; false (and `out` untouched)
/// when the token is kept as it is.
fn mask_into(tok: &str, out: &mut String) -> bool {
    let b = tok.as_bytes();
    if !b.iter().any(|c| c.is_ascii_digit()) {
        // paths and urls without digits are still variable, in brackets
        // too, and so are the names of days and months
        let start = b.iter().position(|c| !is_wrap(*c)).unwrap_or(b.len());
        let end = b
            .iter()
            .rposition(|c| !is_wrap(*c))
            .map_or(start, |e| e + 1);
        if start < end && (is_path(&tok[start..end]) || is_calendar_name(&tok[start..end])) {
            out.push_str(&tok[..start]);
            out.push_str(WILDCARD);
            out.push_str(&tok[end..]);
            return true;
        }
        return false;
    }
    // key=value, in brackets or not (`uid=0`, `(uid=0)`): keep the key
    let eq = b.iter().position(|&c| c == b'=');
    if let Some(eq) = eq
        && let key = tok[..eq].trim_start_matches(|c: char| c.is_ascii() && is_wrap(c as u8))
        && !key.is_empty()
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
    {
        let v = &tok[eq + 1..];
        out.push_str(&tok[..=eq]);
        if !mask_into(v, out) {
            out.push_str(v);
        }
        return true;
    }
    if !is_wrap(b[0]) && !is_wrap(b[b.len() - 1]) && eq.is_none() && is_variable(tok) {
        out.push_str(WILDCARD);
        return true;
    }
    // strip surrounding punctuation
    let start = b.iter().position(|c| !is_wrap(*c)).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !is_wrap(*c))
        .map_or(start, |e| e + 1)
        .max(start);
    let core = &tok[start..end];
    if core.is_empty() {
        return false;
    }
    if is_variable(core) {
        out.push_str(&tok[..start]);
        out.push_str(WILDCARD);
        out.push_str(&tok[end..]);
        return true;
    }
    // compound ids split by ':' or ',' (host:port, a,b): mask the parts
    if core.contains([':', ',']) {
        let kept = out.len();
        out.push_str(&tok[..start]);
        let mut changed = false;
        for p in core.split_inclusive([':', ',']) {
            let body = p.strip_suffix([':', ',']).unwrap_or(p);
            if !body.is_empty() && is_variable(body) {
                changed = true;
                out.push_str(WILDCARD);
                out.push_str(&p[body.len()..]);
            } else {
                out.push_str(p);
            }
        }
        if changed {
            out.push_str(&tok[end..]);
            return true;
        }
        out.truncate(kept);
    }
    false
}

/// A day or month name, as dates are written inside messages (`at Sun Jul
/// 10 03:55:21 2005`, `Monday, 2 March`): part of a timestamp, so a
/// variable, however constant a capitalised word looks.
pub(super) fn is_calendar_name(s: &str) -> bool {
    matches!(
        s,
        "Mon"
            | "Tue"
            | "Wed"
            | "Thu"
            | "Fri"
            | "Sat"
            | "Sun"
            | "Monday"
            | "Tuesday"
            | "Wednesday"
            | "Thursday"
            | "Friday"
            | "Saturday"
            | "Sunday"
            | "Jan"
            | "Feb"
            | "Mar"
            | "Apr"
            | "May"
            | "Jun"
            | "Jul"
            | "Aug"
            | "Sep"
            | "Oct"
            | "Nov"
            | "Dec"
            | "January"
            | "February"
            | "March"
            | "April"
            | "June"
            | "July"
            | "August"
            | "September"
            | "October"
            | "November"
            | "December"
    )
}

fn is_wrap(c: u8) -> bool {
    matches!(
        c,
        b'[' | b']'
            | b'('
            | b')'
            | b'<'
            | b'>'
            | b'{'
            | b'}'
            | b'"'
            | b'\''
            | b','
            | b';'
            | b'.'
            | b':'
            | b'!'
            | b'?'
    )
}

/// Unix paths (`/a/b`), URLs (`x://`) and Windows paths (`C:\a`,
/// `\\server\share`).
fn is_path(s: &str) -> bool {
    // byte scans: a substring searcher's set-up costs more than these short tokens
    let b = s.as_bytes();
    (b.first() == Some(&b'/') && b.len() > 1 && b[1..].contains(&b'/'))
        || b.windows(3).any(|w| w == b"://")
        || (b.len() > 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\')
        || (b.len() > 2 && b[0] == b'\\' && b[1] == b'\\')
}

/// A core token (no surrounding punctuation) that is a variable.
///
/// Every test below only ever says yes, so they run cheapest first and one
/// byte pass gathers what most of them need: nearly every token is decided
/// there, before any address parsing.
fn is_variable(s: &str) -> bool {
    let b = s.as_bytes();
    let (mut digits, mut run, mut max_run) = (0, 0, 0);
    let (mut hexish, mut dot, mut colon) = (true, false, false);
    for &c in b {
        if c.is_ascii_digit() {
            digits += 1;
            run += 1;
            max_run = max_run.max(run);
        } else {
            run = 0;
            hexish &= c.is_ascii_hexdigit() || c == b'-';
            dot |= c == b'.';
            colon |= c == b':';
        }
    }
    if digits == 0 {
        return is_path(s);
    }
    // identifiers with a digit run of 2+ or mostly digits: blk_-1608, node246, job_1445_0020
    if max_run >= 2 || digits * 2 >= b.len() {
        return true;
    }
    // numbers; hex ids (0x.., long hex, uuids); paths
    if is_number(b) || s.starts_with("0x") || (hexish && b.len() >= 8) || is_path(s) {
        return true;
    }
    // identifiers with an all-digit segment: rdd_2_1, broadcast_9_piece0, task-12
    if s.split(['_', '-', '.', '/', '@', '#', '$'])
        .any(|seg| !seg.is_empty() && seg.bytes().all(|c| c.is_ascii_digit()))
    {
        return true;
    }
    // addresses need a dot (IPv4) or a colon (IPv6); ip:port
    (dot || colon) && crate::parse::is_ip(s)
        || colon
            && s.rsplit_once(':').is_some_and(|(ip, port)| {
                port.bytes().all(|c| c.is_ascii_digit()) && crate::parse::is_ip(ip)
            })
}

/// Numbers with optional sign, decimals and a short unit suffix (`12ms`, `3.5kB`, `-7`).
fn is_number(b: &[u8]) -> bool {
    let b = b
        .strip_prefix(b"-")
        .or_else(|| b.strip_prefix(b"+"))
        .unwrap_or(b);
    let digits_end = b
        .iter()
        .position(|c| !(c.is_ascii_digit() || *c == b'.'))
        .unwrap_or(b.len());
    if digits_end == 0 || !b[0].is_ascii_digit() {
        return false;
    }
    let unit = &b[digits_end..];
    unit.is_empty()
        || (unit.len() <= 3
            && unit.iter().all(|c| c.is_ascii_alphabetic())
            && digits_end >= 1
            && !(unit.len() == 1
                && digits_end == 1
                && !matches!(
                    unit[0],
                    b's' | b'm' | b'h' | b'k' | b'K' | b'M' | b'G' | b'B'
                )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask_token("173.234.31.186").as_deref(), Some("<*>"));
        assert_eq!(mask_token("[173.234.31.186]").as_deref(), Some("[<*>]"));
        assert_eq!(
            mask_token("blk_-6952295868487656571").as_deref(),
            Some("<*>")
        );
        assert_eq!(mask_token("10.251.42.84:50010").as_deref(), Some("<*>"));
        assert_eq!(mask_token("uid=0").as_deref(), Some("uid=<*>"));
        assert_eq!(mask_token("(uid=509)").as_deref(), Some("(uid=<*>)"));
        assert_eq!(mask_token("/var/log/x"), Some("<*>".to_owned()));
        assert_eq!(mask_token(r"C:\Windows\Temp").as_deref(), Some("<*>"));
        assert_eq!(mask_token(r"(\\fs\share\logs)").as_deref(), Some("(<*>)"));
        assert_eq!(mask_token("(Sun").as_deref(), Some("(<*>"));
        assert_eq!(mask_token("July,").as_deref(), Some("<*>,"));
        assert_eq!(mask_token("Sunday-school"), None);
        assert_eq!(mask_token("ssh2"), None);
        assert_eq!(mask_token("password"), None);
        assert_eq!(mask_token("123ms").as_deref(), Some("<*>"));
        assert_eq!(
            mask_token("c84db522-2001-46b4-8043-6cbcb1468935").as_deref(),
            Some("<*>")
        );
    }
}
