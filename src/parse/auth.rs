//! PAM (`pam_unix(sshd:auth): authentication failure; … rhost=… user=…`,
//! also as `sshd(pam_unix)[pid]: authentication failure; …`) and sudo
//! (`alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/ls`).
//!
//! Actions: `pam_auth_failure`, `pam_check_pass`, `session_opened`,
//! `session_closed`, `sudo_command`, `sudo_auth_failure`, `sudo_not_allowed`.

use std::borrow::Cow;

use super::is_ip;
use crate::event::{Event, Outcome};

fn set(ev: &mut Event, action: &'static str, outcome: Outcome) {
    ev.category = Some("authentication");
    ev.action = Some(Cow::Borrowed(action));
    ev.outcome = outcome;
}

/// Parses a PAM message; false when it is not one.
pub fn parse_pam(ev: &mut Event, msg: &str) -> bool {
    let body = match msg.strip_prefix("pam_unix(") {
        Some(r) => match super::split_once_str(r, "): ") {
            Some((svc, body)) => {
                let service = super::find_byte(svc, b':').map_or(svc, |i| &svc[..i]);
                ev.push_label("pam_service", service);
                body
            }
            None => return false,
        },
        None => {
            // older systems name the module in the program: `sshd(pam_unix)[pid]`
            if let Some(service) = ev
                .process_name()
                .and_then(|p| p.strip_suffix("(pam_unix)"))
                .map(|s| ev.text(s))
            {
                ev.labels.push(("pam_service".into(), service));
            }
            msg
        }
    };
    if body.starts_with("authentication failure;")
        || body.starts_with("PAM ") && body.contains("authentication failure")
    {
        set(ev, "pam_auth_failure", Outcome::Failure);
        for kv in super::split_either(body, b' ', b';') {
            if let Some(host) = kv.strip_prefix("rhost=").filter(|h| !h.is_empty()) {
                if is_ip(host) {
                    ev.set_source_ip(host);
                } else {
                    ev.push_label("rhost", host);
                }
            } else if let Some(u) = kv.strip_prefix("user=").filter(|u| !u.is_empty()) {
                ev.set_user_name(u);
            }
        }
        return true;
    }
    if let Some(rest) = body.strip_prefix("check pass; user ") {
        set(ev, "pam_check_pass", Outcome::Failure);
        if rest != "unknown" {
            ev.set_user_name(rest.trim());
        }
        return true;
    }
    for (prefix, action) in [
        ("session opened for user ", "session_opened"),
        ("session closed for user ", "session_closed"),
    ] {
        if let Some(rest) = body.strip_prefix(prefix) {
            set(ev, action, Outcome::Success);
            let user = super::split_either(rest, b' ', b'(').next().unwrap_or(rest);
            ev.user_name = Some(user).filter(|u| !u.is_empty()).map(|u| ev.text(u));
            return true;
        }
    }
    false
}

/// Parses a sudo message; falls back to PAM lines sudo also writes.
pub fn parse_sudo(ev: &mut Event, msg: &str) -> bool {
    if parse_pam(ev, msg) {
        return true;
    }
    let Some((user, rest)) = super::split_once_str(msg, " : ") else {
        return false;
    };
    let user = user.trim();
    if user.is_empty() || user.contains(' ') {
        return false;
    }
    ev.set_user_name(user);
    let mut fields = rest.split(" ; ");
    let first = fields.next().unwrap_or("");
    if first.contains("incorrect password attempt") {
        set(ev, "sudo_auth_failure", Outcome::Failure);
    } else if first.contains("NOT in sudoers") || first.contains("command not allowed") {
        set(ev, "sudo_not_allowed", Outcome::Failure);
    } else {
        set(ev, "sudo_command", Outcome::Success);
    }
    ev.category = Some("process");
    for kv in std::iter::once(first).chain(fields) {
        if let Some(v) = kv.strip_prefix("USER=") {
            ev.push_extra("sudo.target_user", v);
        } else if let Some(v) = kv.strip_prefix("COMMAND=") {
            ev.push_extra("sudo.command", v);
        }
    }
    true
}
