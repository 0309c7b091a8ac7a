//! Loghub benchmark header syntax: `<Date> <Time> <Level> <Component>: <Content>`.
//!
//! As the published benchmark builds it: each `<Name>` becomes a lazy
//! capture, runs of spaces match any whitespace, the rest is a regex
//! fragment, and the whole is anchored. Only `<Content>` is clustered.

use regex::Regex;

#[derive(Debug)]
pub struct LogFormat {
    regex: Regex,
    content: String,
}

impl LogFormat {
    pub fn compile(format: &str) -> Result<LogFormat, String> {
        let placeholder = Regex::new(r"<([^<>]+)>").map_err(|e| e.to_string())?;
        let mut pattern = String::from("^");
        let mut last = 0;
        let mut names = Vec::new();
        for m in placeholder.captures_iter(format) {
            let whole = m.get(0).ok_or("bad format")?;
            let literal = &format[last..whole.start()];
            pattern.push_str(&spaces_to_ws(literal));
            let name = &m[1];
            pattern.push_str(&format!("(?P<{}>.*?)", sanitize(name, names.len())));
            names.push(name.to_owned());
            last = whole.end();
        }
        pattern.push_str(&spaces_to_ws(&format[last..]));
        pattern.push('$');
        let at = names
            .iter()
            .position(|n| n == "Content")
            .ok_or("the format has no <Content> field")?;
        let regex =
            Regex::new(&pattern).map_err(|e| format!("invalid log format {format:?}: {e}"))?;
        Ok(LogFormat {
            regex,
            content: sanitize("Content", at),
        })
    }

    /// The `<Content>` of a line, or None when the line does not match.
    pub fn content<'a>(&self, line: &'a str) -> Option<&'a str> {
        self.regex
            .captures(line.trim_end_matches(['\r', '\n']))
            .and_then(|c| c.name(&self.content))
            .map(|m| m.as_str())
    }
}

fn spaces_to_ws(s: &str) -> String {
    let mut out = String::new();
    let mut in_space = false;
    for c in s.chars() {
        if c == ' ' {
            if !in_space {
                out.push_str(r"\s+");
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out
}

fn sanitize(name: &str, i: usize) -> String {
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if clean.is_empty() {
        format!("f{i}")
    } else {
        format!("{clean}_{i}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_content() {
        let f = LogFormat::compile("<Date> <Time> <Pid> <Level> <Component>: <Content>").unwrap();
        assert_eq!(
            f.content("081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_3 terminating"),
            Some("PacketResponder 1 for block blk_3 terminating")
        );
        let f =
            LogFormat::compile(r"<Month> <Date> <Time> <Level> <Component>(\[<PID>\])?: <Content>")
                .unwrap();
        assert_eq!(
            f.content("Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass; user unknown"),
            Some("check pass; user unknown")
        );
    }
}
