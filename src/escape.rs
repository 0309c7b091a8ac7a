//! Escaping of log-derived text for each place it is written. A user name,
//! URL or template comes from whoever wrote the log line, so it may hold
//! newlines, table pipes, Markdown or HTML markup, terminal escape
//! sequences or bidirectional overrides; each renderer passes every such
//! value through the function for its format.

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

#[cfg(test)]
mod tests {
    use super::*;

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
