//! PAM (`pam_unix(sshd:auth): authentication failure; … rhost=… user=…`,
//! also as `sshd(pam_unix)[pid]: authentication failure; …`), sudo
//! (`alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/ls`) and
//! pkexec (`alice: Executing command [USER=root] [TTY=…] [CWD=…]
//! [COMMAND=…]`).
//!
//! Actions: `pam_auth_failure`, `pam_check_pass`, `session_opened`,
//! `session_closed`, `sudo_command`, `sudo_auth_failure`, `sudo_not_allowed`,
//! `pkexec_command`, `pkexec_not_authorized` and `pkexec_unsafe_environment`:
//! pkexec refusing an environment no honest caller sets, the trace the
//! public exploits of CVE-2021-4034 ("PwnKit") leave (`SHELL` not in
//! `/etc/shells`, `XAUTHORITY` or another variable with suspicious content).

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

/// Parses a pkexec message (`USER: TEXT [USER=…] [TTY=…] [CWD=…]
/// [COMMAND=…]`, pkexec's `log_message`); falls back to PAM lines pkexec
/// also writes.
pub fn parse_pkexec(ev: &mut Event, msg: &str) -> bool {
    if parse_pam(ev, msg) {
        return true;
    }
    let Some((user, rest)) = super::split_once_str(msg, ": ") else {
        return false;
    };
    if user.is_empty() || user.contains(' ') {
        return false;
    }
    let text = super::find_byte(rest, b'[')
        .map_or(rest, |i| &rest[..i])
        .trim_end();
    let (action, outcome) = if text.starts_with("Executing command") {
        ("pkexec_command", Outcome::Success)
    } else if text.starts_with("Error executing command as another user") {
        ("pkexec_not_authorized", Outcome::Failure)
    } else if text.starts_with("The value for the SHELL variable was not found")
        // pkexec's own spelling was long `suscipious`
        || text.starts_with("The value for environment variable") && text.contains(" contains sus")
    {
        ("pkexec_unsafe_environment", Outcome::Failure)
    } else {
        return false;
    };
    ev.set_user_name(user);
    set(ev, action, outcome);
    ev.category = Some("process");
    let mut tail = rest[text.len()..].trim_start();
    while let Some(body) = tail.strip_prefix('[') {
        let Some((key, after)) = super::split_once_str(body, "=") else {
            break;
        };
        if key == "COMMAND" {
            // the command runs to the last bracket: its arguments may hold some
            let command = after.trim_end();
            ev.push_extra(
                "process.command_line",
                command.strip_suffix(']').unwrap_or(command),
            );
            break;
        }
        let Some(end) = super::find_byte(after, b']') else {
            break;
        };
        if key == "USER" {
            ev.push_extra("user.target.name", &after[..end]);
        }
        tail = after[end + 1..].trim_start();
    }
    true
}
