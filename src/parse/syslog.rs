//! Syslog headers: RFC 3164 (`<34>Oct 11 22:14:15 host prog[pid]: msg`, PRI
//! optional), rsyslog's precise format (`2024-01-02T03:04:05.678+01:00 host
//! prog[pid]: msg`) and RFC 5424 (`<34>1 TS HOST APP PROCID MSGID SD MSG`).
//! After the header the program name picks the message parser.
//!
//! RFC 3164 has no year; [`YearInference`] places the first line in the year
//! of the reference instant (the previous year if that would put it in the
//! future) and advances the year when the month goes backwards (Dec -> Jan),
//! so a file that spans New Year keeps increasing timestamps.

use std::borrow::Cow;

use super::{SourceState, auditd, auth, haproxy, kernel, kube, mail, sshd, token};
use crate::event::{Event, Text};
use crate::time::{digits, epoch_ms, fraction_ms, month_from_abbrev, parse_rfc3339, year_month};

/// Year inference state for year-less timestamps, per source.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct YearInference {
    reference: (i64, u32),
    current: Option<(i64, u32)>,
}

impl YearInference {
    pub fn new(reference_ms: i64) -> YearInference {
        YearInference {
            reference: year_month(reference_ms),
            current: None,
        }
    }

    /// The year of a timestamp in `month`, advancing across New Year.
    pub fn year_for(&mut self, month: u32) -> i64 {
        let year = match self.current {
            None => {
                let (ry, rm) = self.reference;
                if month > rm { ry - 1 } else { ry }
            }
            Some((y, last)) => {
                if month + 6 <= last {
                    y + 1
                } else if month >= last + 6 {
                    y - 1
                } else {
                    y
                }
            }
        };
        self.current = Some((year, month));
        year
    }
}

/// True for `YYYY-MM-DDTHH:MM:SS… host prog…` lines.
pub fn looks_like_iso_syslog(b: &[u8]) -> bool {
    let Some((_, used)) = parse_rfc3339(b) else {
        return false;
    };
    let rest = &b[used..];
    // timestamp, space, host, space, then a program token ending in ':' or ']:'
    let s = std::str::from_utf8(rest).unwrap_or("");
    let (host, after) = token(s.trim_start());
    if host.is_empty() || host.contains('=') {
        return false;
    }
    let (prog, _) = token(after);
    prog.ends_with(':')
}

/// Parses a syslog line; false if the header is not syslog.
pub fn parse(ev: &mut Event, line: &str, state: &mut SourceState) -> bool {
    let ok = parse_header(ev, line, state);
    if ok {
        let (s, e) = (ev.message_range.0 as usize, ev.message_range.1 as usize);
        dispatch(ev, &line[s..e], s);
    }
    ok
}

fn parse_header(ev: &mut Event, line: &str, state: &mut SourceState) -> bool {
    let b = line.as_bytes();
    let mut at = 0;
    if b.first() == Some(&b'<') {
        // bytes, not str: the first six bytes may end inside a character
        let Some(close) = b[..b.len().min(6)].iter().position(|&c| c == b'>') else {
            return false;
        };
        let Ok(pri) = line[1..close].parse::<u16>() else {
            return false;
        };
        ev.log_level = Some(Cow::Borrowed(severity_name(pri % 8)));
        at = close + 1;
        // RFC 5424: version digit then space
        if b.get(at) == Some(&b'1') && b.get(at + 1) == Some(&b' ') {
            return parse_5424(ev, line, at + 2);
        }
    }
    let rest = &line[at..];
    let rb = rest.as_bytes();
    let header_end;
    if let Some(month) = month_from_abbrev(rb).filter(|_| rb.get(3) == Some(&b' ')) {
        // "Feb  2 14:10:21" or "Feb 12 14:10:21"
        let day_at = if rb.get(4) == Some(&b' ') { 5 } else { 4 };
        let day = match (digits(rb, day_at, 2), digits(rb, day_at, 1)) {
            (Some(d), _) => d,
            (None, Some(d)) if day_at == 5 => d,
            _ => return false,
        };
        let t = 7;
        let (Some(h), Some(mi), Some(s)) =
            (digits(rb, t, 2), digits(rb, t + 3, 2), digits(rb, t + 6, 2))
        else {
            return false;
        };
        if rb.get(t + 2) != Some(&b':') || !(1..=31).contains(&day) {
            return false;
        }
        let (ms, f) = fraction_ms(rb, t + 8);
        let year = state.year.year_for(month);
        ev.timestamp = epoch_ms(year, month, day, h, mi, s, ms);
        header_end = at + t + 8 + f;
    } else if let Some((ts, used)) = parse_rfc3339(rb) {
        ev.timestamp = ts;
        header_end = at + used;
    } else {
        return false;
    }
    let after_ts = line[header_end..].trim_start_matches(' ');
    let (host, after_host) = token(after_ts);
    if host.is_empty() {
        return false;
    }
    // Some senders omit the host: "Feb 12 14:10:21 sshd[1]: msg"
    let (host, prog_part) = if host.ends_with(':') || host.contains('[') {
        (None, after_ts)
    } else {
        (Some(host), after_host)
    };
    let Some((prog, pid, msg)) = split_program(prog_part).or_else(|| bare_tag(prog_part)) else {
        return false;
    };
    if let Some(h) = host {
        ev.set_host_name(h);
    }
    ev.set_process_name(prog);
    ev.process_pid = pid;
    ev.dataset = Cow::Borrowed("syslog");
    let start = super::offset_in(line, msg);
    ev.set_message_range(start, line.len());
    true
}

fn parse_5424(ev: &mut Event, line: &str, at: usize) -> bool {
    let rest = &line[at..];
    let (ts, rest) = token(rest);
    if ts != "-" {
        match parse_rfc3339(ts.as_bytes()) {
            Some((t, _)) => ev.timestamp = t,
            None => return false,
        }
    }
    let (host, rest) = token(rest);
    let (app, rest) = token(rest);
    let (procid, rest) = token(rest);
    let (_msgid, rest) = token(rest);
    // structured data: "-" or one or more [id k="v"] elements
    let msg = if let Some(r) = rest.strip_prefix('-') {
        r.trim_start_matches(' ')
    } else if rest.starts_with('[') {
        let mut depth_end = None;
        let bytes = rest.as_bytes();
        let mut i = 0;
        let mut in_quotes = false;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if in_quotes => i += 1,
                b'"' => in_quotes = !in_quotes,
                b']' if !in_quotes && bytes.get(i + 1) != Some(&b'[') => {
                    depth_end = Some(i + 1);
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        match depth_end {
            Some(e) => rest[e..].trim_start_matches(' '),
            None => return false,
        }
    } else {
        rest
    };
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    if host != "-" {
        ev.set_host_name(host);
    }
    if app != "-" {
        ev.set_process_name(app);
    }
    ev.process_pid = procid.parse().ok();
    ev.dataset = Cow::Borrowed("syslog");
    let start = super::offset_in(line, msg);
    ev.set_message_range(start, line.len());
    true
}

/// A tag without its colon, `sshd msg` (rsyslog forwarding an RFC 5424
/// message in its RFC 3164 format): taken only for a program the
/// dispatcher knows, since any first word could otherwise be a tag.
fn bare_tag(s: &str) -> Option<(&str, Option<u32>, &str)> {
    let (tag, msg) = s.split_once(' ')?;
    let (prog, pid) = match tag.find('[') {
        Some(i) if tag.ends_with(']') => (&tag[..i], tag[i + 1..tag.len() - 1].parse().ok()),
        _ => (tag, None),
    };
    (!program_kind(prog).is_empty()).then_some((prog, pid, msg))
}

/// Splits `prog[pid]: msg` / `prog: msg` / `prog(pam_unix)[pid]: msg`.
fn split_program(s: &str) -> Option<(&str, Option<u32>, &str)> {
    let colon = super::find_str(s, ": ").or_else(|| s.strip_suffix(':').map(|p| p.len()))?;
    let tag = &s[..colon];
    if tag.is_empty() || tag.contains(' ') {
        return None;
    }
    let msg = s.get(colon + 2..).unwrap_or("");
    match super::find_byte(tag, b'[') {
        Some(i) if tag.ends_with(']') => {
            Some((&tag[..i], tag[i + 1..tag.len() - 1].parse().ok(), msg))
        }
        _ => Some((tag, None, msg)),
    }
}

pub(super) fn severity_name(sev: u16) -> &'static str {
    [
        "emergency",
        "alert",
        "critical",
        "error",
        "warning",
        "notice",
        "info",
        "debug",
    ][sev as usize & 7]
}

/// The program names the dispatcher knows, as static strings, so the name
/// can be matched while the event is borrowed mutably (no copy per line).
fn program_kind(prog: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "sshd",
        "sshd-session",
        "sshd-auth",
        "sudo",
        "pkexec",
        "su",
        "login",
        "passwd",
        "systemd-logind",
        "gdm-password",
        "polkitd",
        "vsftpd",
        "cron",
        "CRON",
        "kernel",
        "kubelet",
        "containerd",
        "kube-apiserver",
        "kube-controller-manager",
        "nginx",
        "apache2",
        "httpd",
        "haproxy",
        "dovecot",
        "audispd",
        "audisp-syslog",
        "auditd",
        "audit",
    ];
    let base = super::find_byte(prog, b'(').map_or(prog, |i| &prog[..i]);
    // Postfix logs as its service: `postfix/smtpd`, `postfix/submission/smtpd`,
    // a second instance's `postfix-out/smtpd`
    if base.starts_with("postfix") && base.ends_with("/smtpd") {
        return "postfix";
    }
    KNOWN.iter().find(|k| **k == base).copied().unwrap_or("")
}

/// Parses a line without a syslog header as a message of `program` (a
/// pushed stream labelled `job="sshd"`, a journal unit); false when the
/// program is not one the dispatcher knows.
pub fn parse_bare(ev: &mut Event, line: &str, program: &str) -> bool {
    let prog = program.strip_suffix(".service").unwrap_or(program);
    if program_kind(prog).is_empty() {
        return false;
    }
    ev.set_process_name(prog);
    ev.set_message_range(0, line.len());
    dispatch(ev, line, 0);
    true
}

/// Picks the message parser by program name; `msg_at` is the message offset.
pub(super) fn dispatch(ev: &mut Event, msg: &str, msg_at: usize) {
    // rsyslog's repeat compression: "message repeated 5 times: [ Failed password …]"
    if let Some(rest) = msg.strip_prefix("message repeated ")
        && let Some((n, inner)) = rest.split_once(" times: [")
        && let (Ok(n), Some(inner)) = (n.parse::<u32>(), inner.strip_suffix(']'))
    {
        let inner = inner.trim_start();
        ev.count = n.max(1);
        let inner_at = msg_at + super::offset_in(msg, inner);
        ev.set_message_range(inner_at, inner_at + inner.len());
        return dispatch(ev, inner, inner_at);
    }
    let base = program_kind(ev.process_name().unwrap_or(""));
    match base {
        "sshd" | "sshd-session" | "sshd-auth" => {
            ev.dataset = Cow::Borrowed("sshd");
            if ev.service_name.is_none() {
                ev.service_name = Some(Text::Static("ssh"));
            }
            if !sshd::parse(ev, msg) {
                auth::parse_pam(ev, msg);
            }
        }
        "sudo" => {
            ev.dataset = Cow::Borrowed("sudo");
            auth::parse_sudo(ev, msg);
        }
        "pkexec" => {
            ev.dataset = Cow::Borrowed("auth");
            auth::parse_pkexec(ev, msg);
        }
        "su" | "login" | "passwd" | "systemd-logind" | "gdm-password" | "polkitd" | "vsftpd"
        | "cron" | "CRON" => {
            ev.dataset = Cow::Borrowed("auth");
            auth::parse_pam(ev, msg);
        }
        // where no auditd runs, the kernel prints the records it is sent
        "kernel" if msg.starts_with("audit: type=") => {
            auditd::parse_at(ev, msg, msg_at);
        }
        "kernel" => {
            ev.dataset = Cow::Borrowed("kernel");
            kernel::parse_message(ev, msg);
        }
        "kubelet" | "containerd" | "kube-apiserver" | "kube-controller-manager" => {
            ev.dataset = Cow::Owned(format!("kubernetes.{base}"));
            kube::parse_klog_message(ev, msg, msg_at);
        }
        "nginx" | "apache2" | "httpd" => {
            super::access::parse_embedded(ev, msg, base);
        }
        "haproxy" => {
            haproxy::parse(ev, msg);
        }
        // audit records sent on by audisp keep their own stamp and fields
        "audispd" | "audisp-syslog" | "auditd" => {
            auditd::parse_at(ev, msg, msg_at);
        }
        "audit" => {
            auditd::parse_journal(ev, msg, msg_at);
        }
        "postfix" => {
            ev.dataset = Cow::Borrowed("postfix");
            if ev.service_name.is_none() {
                ev.service_name = Some(Text::Static("smtp"));
            }
            mail::parse_postfix(ev, msg);
        }
        "dovecot" => {
            ev.dataset = Cow::Borrowed("dovecot");
            if ev.service_name.is_none() {
                ev.service_name = Some(Text::Static("imap"));
            }
            mail::parse_dovecot(ev, msg);
        }
        _ => {
            if msg.contains("pam_unix(") {
                ev.dataset = Cow::Borrowed("auth");
                auth::parse_pam(ev, msg);
            }
        }
    }
}
