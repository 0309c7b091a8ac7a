//! What a notification says about an incident, and how log-derived text is
//! made safe for each format. Offenders, user names, URLs, reasons and
//! timeline texts come from logs an attacker writes; none of them may
//! become a mention (`<!channel>`), a link, markup or a second line.

use serde::Serialize;

use crate::respond::action::{Action, ActionStatus};
use crate::respond::incident::Incident;

/// An incident and its actions, as every channel sees them.
#[derive(Clone, Debug, Serialize)]
pub struct Notice {
    pub incident: Incident,
    pub actions: Vec<Action>,
    /// Advice on the incident (see `crate::analysis`), once written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<String>,
}

impl Notice {
    /// Actions waiting for a person (approval, or confirmation of a
    /// high-risk action's verification).
    /// One line per action: `block_ip 203.0.113.7: verified (reason)`,
    /// unescaped (each channel escapes for its format).
    pub fn action_lines(&self) -> Vec<String> {
        self.actions
            .iter()
            .map(|a| {
                format!(
                    "{} {}: {} ({})",
                    a.kind.as_str(),
                    a.target,
                    a.status.as_str(),
                    a.reason
                )
            })
            .collect()
    }

    pub fn waiting(&self) -> impl Iterator<Item = &Action> {
        self.actions.iter().filter(|a| {
            matches!(
                a.status,
                ActionStatus::PendingApproval | ActionStatus::AwaitingConfirmation
            )
        })
    }
}

/// Escapes text for Slack's mrkdwn: `&`, `<` and `>` (which make links
/// and mentions), and breaks the formatting characters and line breaks, so
/// a value renders as the characters it holds.
pub fn slack_mrkdwn(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // look-alikes, so *bold*, _italic_, ~strike~ and `code` do not start
            '*' => out.push('\u{2217}'),
            '_' => out.push('\u{02cd}'),
            '~' => out.push('\u{223c}'),
            '`' => out.push('\u{02cb}'),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Text for a Slack `plain_text` object: no markup is parsed there, but
/// `&`, `<` and `>` are still escaped as Slack asks of all text.
pub fn slack_plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' | '\t' => out.push(' '),
            c if c.is_control() && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Cuts `s` to at most `max` characters, saying how much was left out.
pub fn cut(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_owned();
    }
    // the note's own length depends on the count it states
    let note = |keep: usize| format!(" … and {} more characters", n - keep);
    let mut keep = max.saturating_sub(note(max).chars().count());
    for _ in 0..3 {
        keep = max.saturating_sub(note(keep).chars().count());
    }
    s.chars().take(keep).collect::<String>() + &note(keep)
}

/// Joins items into lines of at most `max` characters in all, ending with
/// "… and N more" when they do not fit.
pub fn list(items: &[String], max: usize) -> String {
    let mut out = String::new();
    for (i, it) in items.iter().enumerate() {
        let more = format!("… and {} more", items.len() - i);
        let need = out.len() + it.len() + 1;
        if need + more.len() + 1 > max && i + 1 < items.len() || need > max {
            out.push_str(&more);
            return out;
        }
        out.push_str(it);
        out.push('\n');
    }
    out.trim_end().to_owned()
}

/// A time in UTC, to the second.
pub fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_links_and_markup_do_not_survive() {
        let evil = "<!channel> *now* <https://evil|click> `x` _y_ ~z~ a&b\nline2";
        let m = slack_mrkdwn(evil);
        assert!(!m.contains('<') && !m.contains('>'), "{m}");
        assert!(!m.contains(['*', '_', '~', '`', '\n']), "{m}");
        assert!(
            m.contains("&lt;!channel&gt;") && m.contains("a&amp;b"),
            "{m}"
        );
        let p = slack_plain(evil);
        assert!(p.contains("&lt;!channel&gt;") && p.contains('\n'), "{p}");
    }

    #[test]
    fn long_text_and_lists_say_what_was_left_out() {
        let s = "x".repeat(5000);
        let c = cut(&s, 3000);
        assert!(c.chars().count() <= 3000, "{}", c.chars().count());
        let kept = c.chars().take_while(|&ch| ch == 'x').count();
        assert!(
            c.ends_with(&format!("… and {} more characters", 5000 - kept)),
            "{c}"
        );
        let items: Vec<String> = (0..1000)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .collect();
        let l = list(&items, 200);
        assert!(l.len() <= 200, "{}", l.len());
        assert!(l.ends_with(" more"), "{l}");
        let n: usize = l
            .rsplit("… and ")
            .next()
            .unwrap()
            .trim_end_matches(" more")
            .parse()
            .unwrap();
        assert_eq!(n + l.lines().count() - 1, 1000);
        assert_eq!(list(&items[..2], 200), "10.0.0.0\n10.0.0.1");
    }
}
