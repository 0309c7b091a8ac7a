//! Linux audit records: `/var/log/audit/audit.log` as auditd writes it,
//! with or without `node=HOST`, in its raw or enriched form, sent on
//! through syslog by audisp (`audisp-syslog: type=… msg=audit(…): …`), as
//! `ausearch -i` prints them, and the kernel's and the journal's copies
//! where no auditd runs (see [`parse_at`]).
//!
//! ```text
//! type=USER_AUTH msg=audit(1700000000.123:456): pid=3411 uid=0 auid=4294967295 ses=4294967295 msg='op=PAM:authentication grantors=? acct="root" exe="/usr/sbin/sshd" hostname=203.0.113.9 addr=203.0.113.9 terminal=ssh res=failed'
//! type=SYSCALL msg=audit(1684331127.071:3212): arch=c000003e syscall=59 success=yes exit=0 … ppid=26843 pid=27282 auid=1000 uid=1000 … comm="blitz64" exe="/tmp/blitz64" key=(null)
//! ```
//!
//! Every record is an event of its own, timed by its audit stamp, not by
//! when it was read (read as plain `key=value` pairs before, each record
//! had the time it was read and the client's name as its host). The record
//! type, in lower case, is `event.action` (`user_auth`, `user_login`,
//! `syscall`, `execve`, …); `res=` and `success=` its outcome. Fields are
//! named as ECS names them: `acct` is `user.name`, `addr` `source.ip`, `exe`
//! `process.executable`, `comm` `process.name`, `ppid`
//! `process.parent.pid`, `auid` `user.id` (the login user, whoever the
//! process became), `key` (the audit rule's) `rule.name`; an `execve`'s
//! arguments and a `proctitle` are `process.command_line`. The other keys
//! are labels, by their audit names. Strings audit wrote in hex (any that
//! hold a space, a quote or a control character) are decoded.

use std::borrow::Cow;

use super::is_ip;
use crate::event::{Event, Outcome};

/// `type=WORD msg=audit(` at the start, after an optional `node=HOST `.
pub fn looks_like_auditd(b: &[u8]) -> bool {
    let b = match b.strip_prefix(b"node=") {
        Some(rest) => match rest.iter().position(|&c| c == b' ') {
            Some(i) => &rest[i + 1..],
            None => return false,
        },
        None => b,
    };
    let Some(rest) = b.strip_prefix(b"type=") else {
        return false;
    };
    let word = rest
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    word > 0 && rest[word..].starts_with(b" msg=audit(")
}

/// Parses one record; false when `line` is not one.
pub fn parse(ev: &mut Event, line: &str) -> bool {
    parse_at(ev, line, 0)
}

/// Parses a record that starts `at` bytes into the event's line (after a
/// syslog header); false when it is not one.
///
/// Besides auditd's own lines, three forms: `ausearch -i`'s, with the
/// stamp as a date and a ` : ` after it (`msg=audit(08/31/2017
/// 22:59:50.870:756395) : pid=…`); the kernel's, where no auditd runs
/// (`audit: type=1100 audit(1614093720.123:456): pid=…`, numbered types);
/// and the journal's (`audit[3411]: USER_AUTH pid=…`, timed by the syslog
/// header).
pub(super) fn parse_at(ev: &mut Event, record: &str, at: usize) -> bool {
    let mut rest = record;
    if let Some(after) = rest.strip_prefix("node=") {
        let (node, after) = super::token(after);
        ev.set_host_name(node);
        rest = after;
    }
    let kernel = rest.strip_prefix("audit: ");
    let Some(after) = kernel.unwrap_or(rest).strip_prefix("type=") else {
        return false;
    };
    let (kind, after) = super::token(after);
    let Some(after) = after
        .strip_prefix("msg=audit(")
        .or_else(|| kernel.and_then(|_| after.strip_prefix("audit(")))
    else {
        return false;
    };
    let Some((stamp, body)) = super::split_once_str(after, ")") else {
        return false;
    };
    let Some(body) = body.strip_prefix(": ").or_else(|| body.strip_prefix(" : ")) else {
        return false;
    };
    let Some(ts) = stamp_ms(stamp) else {
        return false;
    };
    ev.timestamp = ts;
    record_fields(
        ev,
        type_name(kind),
        body,
        at + super::offset_in(record, body),
    );
    true
}

/// Parses the journal's form of a record (`USER_AUTH pid=… msg='…'`, the
/// message of syslog identifier `audit`); false when it is not one.
pub(super) fn parse_journal(ev: &mut Event, msg: &str, at: usize) -> bool {
    let (kind, body) = super::token(msg);
    if kind.is_empty()
        || !kind.bytes().all(|c| c.is_ascii_uppercase() || c == b'_')
        || !body.contains('=')
    {
        return false;
    }
    record_fields(ev, kind, body, at + super::offset_in(msg, body));
    true
}

/// The kernel numbers the types it prints; auditd names them.
fn type_name(kind: &str) -> &str {
    match kind {
        "1100" => "USER_AUTH",
        "1101" => "USER_ACCT",
        "1103" => "CRED_ACQ",
        "1104" => "CRED_DISP",
        "1105" => "USER_START",
        "1106" => "USER_END",
        "1107" => "USER_AVC",
        "1109" => "USER_CMD",
        "1110" => "CRED_REFR",
        "1112" => "USER_LOGIN",
        "1300" => "SYSCALL",
        "1302" => "PATH",
        "1307" => "CWD",
        "1309" => "EXECVE",
        "1326" => "SECCOMP",
        "1327" => "PROCTITLE",
        "1400" => "AVC",
        "1701" => "ANOM_ABEND",
        other => other,
    }
}

/// Fills `ev` from a record's type and body (`body_at` bytes into the line).
fn record_fields(ev: &mut Event, kind: &str, body: &str, body_at: usize) {
    ev.dataset = Cow::Borrowed("auditd");
    ev.action = Some(Cow::Owned(kind.to_ascii_lowercase()));
    ev.category = Some(category(kind));
    // as audit names it, for Sigma's `type: EXECVE`
    ev.push_label("type", kind);
    // the enriched form adds the names of ids after a group separator
    let (body, enriched) = match super::find_byte(body, 0x1d) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let body = body.trim_end();
    ev.set_message_range(body_at, body_at + body.len());
    let execve = kind == "EXECVE";
    let mut args: Vec<Cow<str>> = Vec::new();
    for (key, value) in pairs(body) {
        // a user-space record's own message: `msg='op=… acct=… res=failed'`
        if key == "msg" {
            for (key, value) in pairs(unquoted(value).unwrap_or(value)) {
                field(ev, key, value, false, &mut args);
            }
        } else {
            field(ev, key, value, execve, &mut args);
        }
    }
    if !args.is_empty() {
        ev.push_extra("process.command_line", args.join(" "));
    }
    if let Some(names) = enriched {
        for (key, value) in pairs(names) {
            let value = unquoted(value).unwrap_or(value);
            // the login user by name, where audit wrote only its number
            if key == "AUID" && ev.user_name.is_none() && value != "unset" {
                ev.set_user_name(value);
            }
        }
    }
}

/// `1700000000.123:456` as epoch milliseconds (the serial after the last
/// `:` dropped); also `ausearch -i`'s `08/31/2017 22:59:50.870:756395`
/// (its date in the C and US locales' order, read as UTC).
fn stamp_ms(stamp: &str) -> Option<i64> {
    let time = &stamp[..stamp.rfind(':')?];
    let (secs, frac) = time.split_once('.').unwrap_or((time, "0"));
    let secs: i64 = match secs.split_once(' ') {
        Some((date, clock)) => {
            let mut d = date.split('/').map(|p| p.parse::<u32>().ok());
            let (month, day, year) = (d.next()??, d.next()??, d.next()??);
            let year = if year < 100 { 2000 + year } else { year };
            let mut c = clock
                .split(':')
                .map(|p| p.parse::<u32>().ok().map(i64::from));
            let (h, m, sec) = (c.next()??, c.next()??, c.next()??);
            if !(1..=12).contains(&month)
                || !(1..=31).contains(&day)
                || year > 9999
                || h > 23
                || m > 59
                || sec > 60
            {
                return None;
            }
            crate::time::days_from_civil(i64::from(year), month, day) * 86_400
                + h * 3600
                + m * 60
                + sec
        }
        None => secs.parse().ok()?,
    };
    // milliseconds from the first three digits, however many were written
    let mut ms = 0;
    for place in 0..3 {
        let digit = match frac.as_bytes().get(place) {
            Some(d) if d.is_ascii_digit() => i64::from(d - b'0'),
            Some(_) => return None,
            None => 0,
        };
        ms = ms * 10 + digit;
    }
    secs.checked_mul(1000)?.checked_add(ms)
}

fn category(kind: &str) -> &'static str {
    if kind.starts_with("USER_")
        || kind.starts_with("CRED_")
        || kind.starts_with("LOGIN")
        || kind.starts_with("ANOM_LOGIN")
    {
        "authentication"
    } else {
        "process"
    }
}

/// Keys whose values audit writes in hex when they hold anything but
/// plain printable text (an `execve`'s arguments are among them).
fn may_be_hex(key: &str) -> bool {
    matches!(
        key,
        "acct" | "comm" | "exe" | "cmd" | "cwd" | "name" | "proctitle" | "path" | "new" | "old"
    )
}

fn field<'a>(
    ev: &mut Event,
    key: &str,
    value: &'a str,
    execve: bool,
    args: &mut Vec<Cow<'a, str>>,
) {
    let arg = execve
        && key.len() > 1
        && key.starts_with('a')
        && key[1..].bytes().all(|c| c.is_ascii_digit());
    let value: Cow<str> = match unquoted(value) {
        Some(q) => Cow::Borrowed(q),
        None if arg || may_be_hex(key) => hex(value).map_or(Cow::Borrowed(value), Cow::Owned),
        None => Cow::Borrowed(value),
    };
    if arg {
        // each by its name too, for Sigma's `a0: wget`
        ev.push_label(Cow::Owned(key.to_owned()), &value);
        args.push(value);
        return;
    }
    match key {
        "res" | "success" | "result" => {
            ev.outcome = match value.as_ref() {
                "success" | "yes" | "1" => Outcome::Success,
                "failed" | "no" | "0" => Outcome::Failure,
                _ => Outcome::Unknown,
            }
        }
        "acct"
            if !matches!(
                value.as_ref(),
                "?" | "(unknown)" | "(invalid user)" | "unknown"
            ) =>
        {
            ev.set_user_name(&value)
        }
        "addr" if is_ip(&value) => ev.set_source_ip(&value),
        "pid" => ev.process_pid = value.parse().ok(),
        "ppid" => ev.push_extra("process.parent.pid", &value),
        "comm" => ev.set_process_name(&value),
        "exe" => ev.push_extra("process.executable", &value),
        "auid" if !matches!(value.as_ref(), "4294967295" | "unset") => {
            ev.push_extra("user.id", &value)
        }
        "key" if value != "(null)" => ev.push_extra("rule.name", &value),
        "proctitle" => ev.push_extra("process.command_line", value.replace('\0', " ")),
        "acct" | "addr" | "auid" | "key" | "hostname" | "argc" => {}
        _ if value.is_empty() || value == "?" => {}
        _ => ev.push_label(Cow::Owned(key.to_owned()), &value),
    }
}

/// `"text"` without its quotes; None when the value is not quoted.
fn unquoted(value: &str) -> Option<&str> {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
}

/// A hex-encoded string decoded; None when `value` is not one.
fn hex(value: &str) -> Option<String> {
    if value.is_empty()
        || !value.len().is_multiple_of(2)
        || !value.bytes().all(|c| c.is_ascii_hexdigit())
    {
        return None;
    }
    let bytes: Vec<u8> = (0..value.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&value[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The `key=value` pairs of a record body; values quoted with `"` or `'`
/// keep their quotes (see [`unquoted`]), so that a quoted value is known
/// from a hex one.
fn pairs(body: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = body;
    std::iter::from_fn(move || {
        rest = rest.trim_start();
        let eq = rest.find('=')?;
        // words with no `=` before a key (free text in some records) are skipped
        let key = rest[..eq].rsplit(' ').next().unwrap_or("");
        let after = &rest[eq + 1..];
        let end = match after.as_bytes().first() {
            Some(&q @ (b'"' | b'\'')) => after[1..].find(q as char).map_or(after.len(), |i| i + 2),
            _ => after.find(' ').unwrap_or(after.len()),
        };
        rest = &after[end..];
        Some((key, &after[..end]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_keep_quotes_and_nest_a_user_record_message() {
        let got: Vec<_> =
            pairs(r#"pid=1 msg='op=PAM:auth acct="root" res=failed' comm="a b""#).collect();
        assert_eq!(
            got,
            [
                ("pid", "1"),
                ("msg", r#"'op=PAM:auth acct="root" res=failed'"#),
                ("comm", r#""a b""#)
            ]
        );
    }

    #[test]
    fn stamps_and_hex() {
        assert_eq!(stamp_ms("1684331127.039:3210"), Some(1_684_331_127_039));
        assert_eq!(stamp_ms("1684331127.5:1"), Some(1_684_331_127_500));
        assert_eq!(stamp_ms("x:1"), None);
        // out of range, never an overflow
        assert_eq!(stamp_ms("99999999999999999.000:1"), None);
        assert_eq!(stamp_ms("01/01/4294967295 00:00:00.000:1"), None);
        assert_eq!(stamp_ms("01/01/2026 -1:00:00.000:1"), None);
        assert_eq!(stamp_ms("01/02/26 03:04:05.6:1"), Some(1_767_323_045_600));
        assert_eq!(hex("2F746D702F61206220").as_deref(), Some("/tmp/a b "));
        assert_eq!(hex("abc"), None);
        assert_eq!(hex("/usr/bin/id"), None);
    }
}
