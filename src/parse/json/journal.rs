//! The systemd journal exported as JSON (`journalctl -o json`, and
//! collectors that keep its field names): the only log of a host without
//! a syslog daemon (Debian 12 and later ship none), so sshd's failures
//! live there. A record is read as the syslog line it stands for: time
//! from `__REALTIME_TIMESTAMP` (microseconds), host from `_HOSTNAME`,
//! program from `SYSLOG_IDENTIFIER` (else `_COMM`), pid, severity from
//! `PRIORITY`, and `MESSAGE` goes to the same program dispatcher as a
//! syslog message, so `sshd-session`'s failures are sshd events
//! (<https://www.freedesktop.org/software/systemd/man/latest/systemd.journal-fields.html>).

use std::borrow::Cow;

use super::Leaf;
use crate::event::Event;

/// Whether `flat` is a journal record.
pub(super) fn is_record(flat: &[Leaf<'_>]) -> bool {
    flat.iter()
        .any(|l| matches!(l.key.as_ref(), "__REALTIME_TIMESTAMP" | "SYSLOG_IDENTIFIER"))
        && flat.iter().any(|l| l.key == "MESSAGE")
}

/// Fills `ev` from a journal record of `line`.
pub(super) fn parse(ev: &mut Event, line: &str, flat: Vec<Leaf<'_>>) -> bool {
    ev.dataset = Cow::Borrowed("journal");
    let (mut program, mut comm, mut message) = (None, None, None);
    for Leaf { key, text, number } in flat {
        match key.as_ref() {
            "__REALTIME_TIMESTAMP" => {
                if let Some(us) = number.or_else(|| text.parse().ok()) {
                    ev.timestamp = (us / 1000.0) as i64;
                }
            }
            "_HOSTNAME" => ev.set_host_name(&text),
            "SYSLOG_IDENTIFIER" => program = Some(text),
            "_COMM" => comm = Some(text),
            "_PID" | "SYSLOG_PID" => ev.process_pid = text.parse().ok().or(ev.process_pid),
            "PRIORITY" => {
                if let Ok(p) = text.parse::<u16>() {
                    ev.log_level = Some(Cow::Borrowed(super::super::syslog::severity_name(p)));
                }
            }
            "_SYSTEMD_UNIT" => ev.push_label("systemd_unit", &text),
            // a message that is not text is a list of its bytes
            "MESSAGE" if !text.starts_with('[') => message = Some(text),
            _ => {}
        }
    }
    let Some(message) = message else {
        return false;
    };
    if let Some(p) = program.or(comm) {
        ev.set_process_name(&p);
    }
    match message {
        Cow::Borrowed(m) => {
            let at = super::super::offset_in(line, m);
            ev.set_message_range(at, at + m.len());
            super::super::syslog::dispatch(ev, m, at);
        }
        Cow::Owned(m) => {
            // unescaped: not a range of the line, so the message stays whole
            super::super::syslog::dispatch(ev, &m, 0);
            ev.message_owned = Some(m);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use crate::parse::tests::one;

    #[test]
    fn sshd_records_are_sshd_events() {
        let ev = one(
            r#"{"__CURSOR":"s=abc;i=1","__REALTIME_TIMESTAMP":"1764842400123456","PRIORITY":"6","SYSLOG_FACILITY":"4","SYSLOG_IDENTIFIER":"sshd-session","_PID":"4242","_COMM":"sshd-session","_SYSTEMD_UNIT":"ssh.service","_HOSTNAME":"web1","MESSAGE":"Failed password for root from 203.0.113.9 port 40001 ssh2","_TRANSPORT":"syslog"}"#,
        );
        assert!(ev.parse_error.is_none());
        assert_eq!(ev.dataset, "sshd");
        assert_eq!(ev.action.as_deref(), Some("ssh_login"));
        assert_eq!(ev.outcome, crate::event::Outcome::Failure);
        assert_eq!(ev.source_ip(), Some("203.0.113.9"));
        assert_eq!(ev.user_name(), Some("root"));
        assert_eq!(ev.host_name(), Some("web1"));
        assert_eq!(ev.process_name(), Some("sshd-session"));
        assert_eq!(ev.process_pid, Some(4242));
        assert_eq!(ev.log_level.as_deref(), Some("info"));
        assert_eq!(ev.timestamp, 1_764_842_400_123);
        assert_eq!(
            ev.message(),
            "Failed password for root from 203.0.113.9 port 40001 ssh2"
        );
        assert_eq!(ev.label("systemd_unit"), Some("ssh.service"));
    }

    #[test]
    fn escaped_messages_and_other_programs() {
        let ev = one(
            r#"{"__REALTIME_TIMESTAMP":"1764842401000000","SYSLOG_IDENTIFIER":"sshd","_HOSTNAME":"web1","MESSAGE":"Invalid user \"adm in\" from 198.51.100.3 port 50000"}"#,
        );
        assert_eq!(ev.dataset, "sshd");
        assert_eq!(ev.source_ip(), Some("198.51.100.3"));
        assert_eq!(
            ev.message(),
            r#"Invalid user "adm in" from 198.51.100.3 port 50000"#
        );
        let ev = one(
            r#"{"__REALTIME_TIMESTAMP":"1764842402000000","_COMM":"cron","_HOSTNAME":"web1","MESSAGE":"(root) CMD (run-parts /etc/cron.hourly)"}"#,
        );
        assert_eq!(ev.process_name(), Some("cron"));
        // as cron's syslog lines are
        assert_eq!(ev.dataset, "auth");
        let ev = one(
            r#"{"__REALTIME_TIMESTAMP":"1764842403000000","SYSLOG_IDENTIFIER":"myapp","MESSAGE":"started"}"#,
        );
        assert_eq!(ev.dataset, "journal");
        assert_eq!(ev.message(), "started");
        // not a journal record: plain JSON as before
        let ev = one(r#"{"ts":"2026-01-16T06:48:51Z","MESSAGE":"x"}"#);
        assert_eq!(ev.dataset, "json");
    }
}
