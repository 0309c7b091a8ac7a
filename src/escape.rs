//! Escaping of log-derived text for each place it is written. A user name,
//! URL or template comes from whoever wrote the log line, so it may hold
//! newlines, table pipes, Markdown or HTML markup, terminal escape
//! sequences or bidirectional overrides; each renderer passes every such
//! value through the function for its format.
//!
//! JSON strings ([`json_string`]) are the exception: JSON can carry any
//! text, so nothing is dropped, only escaped as `serde_json` does (same
//! bytes), but by vector searches rather than a byte at a time: findings
//! of attack traffic carry kilobytes of evidence lines, and a
//! byte-at-a-time escaper cost more than detecting them.

/// Control characters (C0, DEL, C1) and bidirectional overrides become a
/// space or vanish: a value is always one line of visible text.
fn visible(c: char) -> Option<char> {
    match c {
        '\n' | '\r' | '\t' => Some(' '),
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => None,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => None,
        c => Some(c),
    }
}

/// Text for a Markdown table cell, list item or sentence: one line, with
/// every character that has a meaning in Markdown or HTML escaped.
pub fn markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars().filter_map(visible) {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '#' | '&' | '!' | '$'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Text for HTML element content or a quoted attribute value.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars().filter_map(visible) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text for a terminal: no escape sequences, one line.
pub fn terminal(s: &str) -> String {
    s.chars().filter_map(visible).collect()
}

/// Whether a byte must be escaped in a JSON string.
fn json_escaped(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Appends `s` as a JSON string, quotes included, byte for byte as
/// `serde_json` writes it (`\"`, `\\`, `\n`-style escapes where JSON has
/// them, `\u00XX` for the other control bytes, everything else as is).
///
/// Log lines are full of quotes (an access log line holds six or more)
/// and almost never hold a control byte. So a first pass asks whether
/// there is any control byte at all, a whole chunk at a time (it
/// vectorises); without one, the quotes and backslashes are found by a
/// vector search and escaped, and the runs between them copied whole.
pub fn json_string(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    if has_control(b) {
        escape_each(out, b);
    } else {
        let mut start = 0;
        for at in memchr::memchr2_iter(b'"', b'\\', b) {
            out.extend_from_slice(&b[start..at]);
            out.extend_from_slice(&[b'\\', b[at]]);
            start = at + 1;
        }
        out.extend_from_slice(&b[start..]);
    }
    out.push(b'"');
}

/// Whether `b` holds a control byte (below 0x20).
fn has_control(b: &[u8]) -> bool {
    const CHUNK: usize = 32;
    b.chunks(CHUNK)
        .any(|c| c.iter().fold(false, |any, &x| any | (x < 0x20)))
}

/// [`json_string`]'s body for text with control bytes, a byte at a time.
fn escape_each(out: &mut Vec<u8>, b: &[u8]) {
    let mut start = 0;
    for (at, &c) in b.iter().enumerate() {
        if !json_escaped(c) {
            continue;
        }
        out.extend_from_slice(&b[start..at]);
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.extend_from_slice(&[HEX[(c >> 4) as usize], HEX[(c & 0xf) as usize]]);
            }
        }
        start = at + 1;
    }
    out.extend_from_slice(&b[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped_as_serde_json_escapes_them() {
        let all_bytes: String = (0u8..128).map(char::from).collect();
        for s in [
            "",
            "plain",
            "GET /a?b=\"c\" HTTP/1.1",
            "tab\there\r\nand \\ back",
            "\u{0}\u{1f}\u{7f}\u{8}\u{c}",
            "é ✓ \u{202e} 𝄞",
            "a long line of thirty-two bytes!\"then a quote and more text after it",
            &all_bytes,
            &all_bytes.repeat(3),
        ] {
            let mut out = Vec::new();
            json_string(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_escaped_as_serde_json_escapes_it(s in "(\\PC|[\\x00-\\x1f\"\\\\]){0,80}") {
            let mut out = Vec::new();
            json_string(&mut out, &s);
            proptest::prop_assert_eq!(out, serde_json::to_vec(&s).unwrap());
        }
    }

    #[test]
    fn markdown_cannot_add_rows_headings_or_markup() {
        let hostile = "bob\n| fake | row |\n## Injected <script>alert(1)</script> \u{1b}[31mred";
        let out = markdown(hostile);
        assert!(!out.contains('\n'));
        assert!(!out.contains('\u{1b}'));
        assert!(!out.replace("\\<", "").contains("<script"));
        assert!(out.contains("\\| fake \\| row \\|"));
        assert!(out.contains("\\#\\# Injected"));
    }

    #[test]
    fn html_escapes_markup_and_quotes() {
        assert_eq!(
            html("<img src=x onerror='a'>\"&\u{202e}"),
            "&lt;img src=x onerror=&#39;a&#39;&gt;&quot;&amp;"
        );
    }

    #[test]
    fn terminal_drops_escape_sequences() {
        assert_eq!(terminal("a\u{1b}[2Jb\u{9b}c\r\nd"), "a[2Jbc  d");
    }
}
