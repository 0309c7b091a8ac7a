//! Mail servers' authentication, as they log it to syslog: Postfix's SMTP
//! AUTH and rejections (`postfix/smtpd`, `postfix/submission/smtpd`), and
//! Dovecot's IMAP and POP3 logins. After SSH, a mail server's login is
//! what password guessers try most; the grammar follows CrowdSec's
//! `postfix-logs` and `dovecot-logs` parsers and fail2ban's `postfix` and
//! `dovecot` filters.
//!
//! Actions: `smtp_auth` (a SASL login refused; failure), `smtp_reject` (a
//! client, sender or recipient refused, `labels.reason`; failure),
//! `smtp_lost_connection` (`labels.after`: the command the client hung up
//! after), `mail_login` (failure or success, with `labels.mail_protocol`).

use std::borrow::Cow;

use super::is_ip;
use crate::event::{Event, Outcome};

fn set(ev: &mut Event, action: &'static str, outcome: Outcome) {
    ev.category = Some("authentication");
    ev.action = Some(Cow::Borrowed(action));
    ev.outcome = outcome;
}

/// `HOST[IP]` (the host is `unknown` without reverse DNS): the address,
/// as the event's source.
fn set_client(ev: &mut Event, s: &str) {
    if let Some((_, rest)) = s.split_once('[')
        && let Some(ip) = rest.split(']').next()
        && is_ip(ip)
    {
        ev.set_source_ip(ip);
    }
}

/// Parses a message of Postfix's `smtpd`; false when it is none of these.
pub fn parse_postfix(ev: &mut Event, msg: &str) -> bool {
    // "warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
    if let Some(rest) = msg.strip_prefix("warning: ")
        && let Some((who, what)) = super::split_once_str(rest, ": SASL ")
        && let Some((mechanism, _)) = super::split_once_str(what, " authentication failed")
    {
        set(ev, "smtp_auth", Outcome::Failure);
        set_client(ev, who);
        ev.push_label("auth_method", mechanism);
        return true;
    }
    // "NOQUEUE: reject: RCPT from unknown[IP]: 554 5.7.1 <a@b>: Relay access denied; from=<…> to=<…> …"
    if let Some(rest) = msg.strip_prefix("NOQUEUE: reject: ")
        && let Some((command, rest)) = super::split_once_str(rest, " from ")
    {
        set(ev, "smtp_reject", Outcome::Failure);
        ev.category = Some("email");
        set_client(ev, rest);
        ev.push_label("smtp_command", command);
        let reply = rest.split_once("]: ").map_or("", |(_, r)| r);
        let reason = reply.split(';').next().unwrap_or("");
        // "554 5.7.1 <a@b>: Relay access denied": what follows the address
        let reason = reason.rsplit_once(">: ").map_or(reason, |(_, r)| r).trim();
        if !reason.is_empty() {
            ev.push_label("reason", reason);
        }
        return true;
    }
    // "lost connection after AUTH from unknown[IP]"
    if let Some(rest) = msg.strip_prefix("lost connection after ")
        && let Some((after, who)) = super::split_once_str(rest, " from ")
    {
        set(ev, "smtp_lost_connection", Outcome::Unknown);
        ev.category = Some("email");
        set_client(ev, who);
        ev.push_label("after", after);
        return true;
    }
    false
}

/// What Dovecot says of a login that failed, in the words its `auth`
/// process and its login processes use (as CrowdSec's parser reads them).
const FAILED: [&str; 6] = [
    "auth failed",
    "Authentication failure",
    "Password mismatch",
    "password mismatch",
    "unknown user",
    "tried to use disallowed",
];

/// Parses a Dovecot message; false when it is not a login's.
pub fn parse_dovecot(ev: &mut Event, msg: &str) -> bool {
    let msg = msg.strip_prefix("Info: ").unwrap_or(msg);
    // "imap-login: Disconnected (auth failed, 1 attempts in 6 secs): user=<u>, method=PLAIN, rip=IP, lip=IP, TLS, session=<…>"
    if let Some((protocol, rest)) = msg.split_once("-login: ")
        && !protocol.contains(' ')
    {
        let rest = rest.strip_prefix("Info: ").unwrap_or(rest);
        let Some((what, fields)) = split_fields(rest) else {
            return false;
        };
        let outcome = if what == "Login" {
            Outcome::Success
        } else if FAILED.iter().any(|f| what.contains(f)) {
            Outcome::Failure
        } else {
            // no attempt made (a scanner, a client that gave up): not a login
            return false;
        };
        set(ev, "mail_login", outcome);
        ev.push_label("mail_protocol", protocol);
        for field in fields.split(", ") {
            if let Some(user) = field
                .strip_prefix("user=<")
                .and_then(|u| u.strip_suffix('>'))
            {
                if !user.is_empty() {
                    ev.set_user_name(user);
                }
            } else if let Some(ip) = field.strip_prefix("rip=") {
                if is_ip(ip) {
                    ev.set_source_ip(ip);
                }
            } else if let Some(method) = field.strip_prefix("method=") {
                ev.push_label("auth_method", method);
            }
        }
        return true;
    }
    // "auth-worker(123): pam(u,IP,<session>): pam_authenticate() failed: Authentication failure (password mismatch?)"
    // "auth: passwd-file(u,IP): unknown user", the 2.3 `conn unix:auth-worker …: auth-worker<N>: pam(…)` form too
    if msg.starts_with("auth") {
        for (i, _) in msg.match_indices("(") {
            let inner = &msg[i + 1..];
            let Some((args, said)) = super::split_once_str(inner, "): ") else {
                continue;
            };
            let mut parts = args.split(',');
            let (Some(user), Some(ip)) = (parts.next(), parts.next()) else {
                continue;
            };
            if !is_ip(ip) {
                continue;
            }
            if !FAILED.iter().any(|f| said.contains(f)) {
                return false;
            }
            set(ev, "mail_login", Outcome::Failure);
            ev.push_label("mail_protocol", "auth");
            if !user.is_empty() && user != "?" {
                ev.set_user_name(user);
            }
            ev.set_source_ip(ip);
            return true;
        }
    }
    false
}

/// "Disconnected (auth failed, 1 attempts): user=<u>, …" (2.3 adds a
/// reason: "Disconnected: Connection closed (auth failed, …): user=<u>,
/// …"): what happened, and the fields after it.
fn split_fields(s: &str) -> Option<(&str, &str)> {
    let at = super::find_str(s, ": user=<")
        .or_else(|| super::find_str(s, ": method="))
        .or_else(|| super::find_str(s, ": rip="))?;
    let fields = &s[at + 2..];
    fields.contains("rip=").then_some((&s[..at], fields))
}

#[cfg(test)]
mod tests {
    use crate::event::Outcome;
    use crate::parse::tests::one;

    #[test]
    fn postfix_sasl_failures_and_rejections_are_read() {
        for (msg, action, outcome, ip, label) in [
            (
                "warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
                "smtp_auth",
                Outcome::Failure,
                "203.0.113.5",
                ("auth_method", "LOGIN"),
            ),
            (
                "warning: mail.example.net[2001:db8::25]: SASL PLAIN authentication failed: authentication failure",
                "smtp_auth",
                Outcome::Failure,
                "2001:db8::25",
                ("auth_method", "PLAIN"),
            ),
            (
                "NOQUEUE: reject: RCPT from unknown[198.51.100.4]: 554 5.7.1 <x@example.org>: Relay access denied; from=<a@b.c> to=<x@example.org> proto=ESMTP helo=<WIN-X>",
                "smtp_reject",
                Outcome::Failure,
                "198.51.100.4",
                ("reason", "Relay access denied"),
            ),
            (
                "lost connection after AUTH from unknown[198.51.100.5]",
                "smtp_lost_connection",
                Outcome::Unknown,
                "198.51.100.5",
                ("after", "AUTH"),
            ),
        ] {
            let line = format!("Jan 28 10:16:13 mx postfix/submission/smtpd[4242]: {msg}");
            let ev = one(&line);
            assert_eq!(ev.dataset, "postfix", "{line}");
            assert_eq!(ev.action.as_deref(), Some(action), "{line}");
            assert_eq!(ev.outcome, outcome, "{line}");
            assert_eq!(ev.source_ip(), Some(ip), "{line}");
            assert_eq!(ev.label(label.0), Some(label.1), "{line}");
        }
        // the rest of what smtpd says is left as a message
        let ev = one("Jan 28 10:16:13 mx postfix/smtpd[4242]: connect from unknown[198.51.100.5]");
        assert_eq!(ev.action, None);
    }

    #[test]
    fn dovecot_logins_are_read_from_the_login_and_auth_processes() {
        for (msg, outcome, user, ip) in [
            (
                "imap-login: Disconnected (auth failed, 1 attempts in 6 secs): user=<toto@toto.com>, method=PLAIN, rip=4.4.4.4, lip=7.7.7.7, TLS, session=<3650VvK5bdIaW-iK>",
                Outcome::Failure,
                Some("toto@toto.com"),
                "4.4.4.4",
            ),
            (
                "pop3-login: Info: Aborted login (tried to use disallowed plaintext auth): user=<>, rip=203.0.113.7, lip=192.0.2.1, session=<x>",
                Outcome::Failure,
                None,
                "203.0.113.7",
            ),
            (
                "imap-login: Login: user=<alice>, method=PLAIN, rip=192.0.2.50, lip=192.0.2.1, mpid=4242, TLS, session=<y>",
                Outcome::Success,
                Some("alice"),
                "192.0.2.50",
            ),
            (
                "auth-worker(1234): pam(admin,203.0.113.8,<AbC>): pam_authenticate() failed: Authentication failure (password mismatch?)",
                Outcome::Failure,
                Some("admin"),
                "203.0.113.8",
            ),
            (
                "imap-login: Disconnected: Connection closed (auth failed, 3 attempts in 9 secs): user=<info@example.org>, method=PLAIN, rip=203.0.113.11, lip=192.0.2.1, TLS, session=<w>",
                Outcome::Failure,
                Some("info@example.org"),
                "203.0.113.11",
            ),
            (
                "auth: passwd-file(info@example.org,203.0.113.9): unknown user",
                Outcome::Failure,
                Some("info@example.org"),
                "203.0.113.9",
            ),
            (
                "auth-worker(77): Info: conn unix:auth-worker (pid=70,uid=97): auth-worker<3>: sql(bob,2001:db8::9,<Zz>): Password mismatch",
                Outcome::Failure,
                Some("bob"),
                "2001:db8::9",
            ),
        ] {
            let line = format!("Jan 28 10:16:13 mx dovecot[7508]: {msg}");
            let ev = one(&line);
            assert_eq!(ev.dataset, "dovecot", "{line}");
            assert_eq!(ev.action.as_deref(), Some("mail_login"), "{line}");
            assert_eq!(ev.outcome, outcome, "{line}");
            assert_eq!(ev.user_name(), user, "{line}");
            assert_eq!(ev.source_ip(), Some(ip), "{line}");
        }
        // a scanner that never tried to log in is no login
        let ev = one(
            "Jan 28 10:16:13 mx dovecot[7508]: imap-login: Disconnected (no auth attempts in 0 secs): user=<>, rip=203.0.113.10, lip=192.0.2.1, session=<z>",
        );
        assert_eq!(ev.action, None);
    }
}
