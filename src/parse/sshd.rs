//! OpenSSH server messages (`sshd`, and `sshd-session` / `sshd-auth` since 9.8).
//!
//! Sets `event.action`, `event.outcome`, `user.name`, `source.ip` and
//! `source.port`. Actions:
//! `ssh_login` (failure or success, with `labels.auth_method`),
//! `ssh_invalid_user`, `ssh_disconnect_preauth`, `ssh_too_many_auth_failures`,
//! `ssh_banner_error`, `ssh_no_identification`, `ssh_reverse_mapping_failed`,
//! `ssh_negotiation_failed`, `ssh_connection`, `ssh_connection_refused` (TCP
//! wrappers: `refused connect from HOST (IP)`, an address that
//! `hosts.deny` or `hosts.allow` keeps out), `ssh_auth_penalty_drop` and
//! `ssh_penalty_drop` (a connection of an address sshd penalised, for
//! failed logins or for anything else, with `labels.penalty`: see
//! [`dropped_connection`]), `ssh_maxstartups_drop`, `ssh_user_not_allowed`
//! (AllowUsers, DenyGroups, a locked account: `labels.reason`).
//!
//! What counts as a failure follows fail2ban's `sshd` filter (its normal
//! mode, and the protocol errors of its `ddos` mode as probing).

use std::borrow::Cow;

use super::{is_ip, token};
use crate::event::{Event, Outcome, Text};

/// Parses an sshd message; false when it is not one sshd itself writes
/// (PAM lines are handled by the caller).
pub fn parse(ev: &mut Event, msg: &str) -> bool {
    // a failure that ends the session is logged as `fatal: …`
    let msg = msg
        .strip_prefix("error: ")
        .or_else(|| msg.strip_prefix("fatal: "))
        .unwrap_or(msg);
    let msg = msg.strip_prefix("PAM: ").unwrap_or(msg);
    let msg = msg.strip_suffix(" [preauth]").unwrap_or(msg);
    if let Some(rest) = msg.strip_prefix("User ")
        && let Some(i) = super::rfind_str(rest, NOT_ALLOWED)
    {
        user_not_allowed(ev, &rest[..i], &rest[i + NOT_ALLOWED.len()..]);
        return true;
    }
    if let Some(rest) = msg.strip_prefix("Failed ") {
        return login(ev, rest, Outcome::Failure);
    }
    if let Some(rest) = msg.strip_prefix("Accepted ") {
        return login(ev, rest, Outcome::Success);
    }
    for prefix in [
        "Authentication failure for ",
        "Authentication error for ",
        "Authentication failed for ",
        "authentication failure for ",
    ] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            // PAM's own failure, beside (or instead of) `Failed password`
            set(ev, "ssh_login", Outcome::Failure);
            user_from(ev, unqualified(rest));
            return true;
        }
    }
    if let Some(rest) =
        msg.strip_prefix("User not known to the underlying authentication module for ")
    {
        set(ev, "ssh_invalid_user", Outcome::Failure);
        user_from(ev, unqualified(rest));
        return true;
    }
    if let Some(rest) = msg
        .strip_prefix("ROOT LOGIN REFUSED")
        .and_then(|r| super::split_once_str(r, " FROM "))
    {
        set(ev, "ssh_login", Outcome::Failure);
        ev.user_name = Some(Text::Static("root"));
        ip_port(ev, rest.1);
        return true;
    }
    if let Some(rest) = msg
        .strip_prefix("Invalid user ")
        .or_else(|| msg.strip_prefix("Illegal user "))
        .or_else(|| msg.strip_prefix("illegal user "))
    {
        // "Invalid user NAME from IP [port N]"; NAME may be empty
        set(ev, "ssh_invalid_user", Outcome::Failure);
        user_from(ev, rest);
        return true;
    }
    if let Some(rest) = msg.strip_prefix("input_userauth_request: invalid user ") {
        set(ev, "ssh_invalid_user", Outcome::Failure);
        ev.user_name = Some(rest.trim())
            .filter(|u| !u.is_empty())
            .map(|u| ev.text(u));
        return true;
    }
    for prefix in [
        "Connection closed by ",
        "Disconnected from ",
        "Connection reset by ",
    ] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            // an authenticating (or invalid) user dropped before success is a failed attempt
            let attempt =
                rest.starts_with("authenticating user ") || rest.starts_with("invalid user ");
            set(
                ev,
                "ssh_disconnect_preauth",
                if attempt {
                    Outcome::Failure
                } else {
                    Outcome::Unknown
                },
            );
            user_then_ip(ev, rest);
            return true;
        }
    }
    if let Some(rest) = msg.strip_prefix("Received disconnect from ") {
        // reason 3 ("Auth fail"): the client gave up after its last
        // credential was refused
        let auth_fail = rest.contains(":3: ") && rest.ends_with("Auth fail");
        set(
            ev,
            "ssh_disconnect_preauth",
            if auth_fail {
                Outcome::Failure
            } else {
                Outcome::Unknown
            },
        );
        let (ip, tail) = ip_token(rest);
        ev.source_ip = ip.map(|ip| ev.text(ip));
        if let Some(p) = tail.strip_prefix("port ") {
            ev.source_port = p
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|p| p.parse().ok());
        }
        return true;
    }
    if let Some(rest) = msg.strip_prefix("Disconnecting ") {
        // "Disconnecting authenticating user root 1.2.3.4 port 22: Too many authentication failures"
        let (who, why) = super::split_once_str(rest, ": ").unwrap_or((rest, ""));
        if why.starts_with("Too many authentication failures") {
            set(ev, "ssh_too_many_auth_failures", Outcome::Failure);
        } else {
            set(ev, "ssh_disconnect_preauth", Outcome::Unknown);
        }
        user_then_ip(ev, who);
        return true;
    }
    if let Some(rest) = msg.strip_prefix("Disconnecting: Too many authentication failures") {
        set(ev, "ssh_too_many_auth_failures", Outcome::Failure);
        if let Some(u) = rest.trim().strip_prefix("for ") {
            ev.set_user_name(token(u).0);
        }
        return true;
    }
    if let Some(rest) = msg.strip_prefix("maximum authentication attempts exceeded for ") {
        set(ev, "ssh_too_many_auth_failures", Outcome::Failure);
        user_from(ev, rest.strip_prefix("invalid user ").unwrap_or(rest));
        return true;
    }
    if let Some(rest) = msg.strip_prefix("banner exchange: Connection from ") {
        set(ev, "ssh_banner_error", Outcome::Failure);
        ip_port(ev, rest);
        return true;
    }
    if let Some(rest) = msg.strip_prefix("Bad protocol version identification ") {
        // `'GET / HTTP/1.1' from IP port N`: something else than SSH
        set(ev, "ssh_banner_error", Outcome::Failure);
        if let Some(i) = super::rfind_str(rest, " from ") {
            ip_port(ev, &rest[i + 6..]);
        }
        return true;
    }
    if let Some(rest) = msg.strip_prefix("Protocol major versions differ") {
        // `for IP: SSH-2.0-… vs. SSH-1.5-…`: an SSH-1 probe
        set(ev, "ssh_banner_error", Outcome::Failure);
        if let Some(r) = rest.strip_prefix(" for ") {
            ip_port(ev, r);
        }
        return true;
    }
    if let Some(rest) = msg.strip_prefix("ssh_dispatch_run_fatal: Connection from ") {
        // a protocol error: mid-login it ends an attempt, before it the
        // client spoke no proper SSH
        let (who, _) = super::split_once_str(rest, ": ").unwrap_or((rest, ""));
        if who.starts_with("authenticating user ") || who.starts_with("invalid user ") {
            set(ev, "ssh_disconnect_preauth", Outcome::Failure);
        } else {
            set(ev, "ssh_negotiation_failed", Outcome::Failure);
        }
        user_then_ip(ev, who);
        return true;
    }
    if msg.starts_with("kex_exchange_identification:") {
        set(ev, "ssh_banner_error", Outcome::Failure);
        return true;
    }
    if let Some(rest) = msg.strip_prefix("Did not receive identification string from ") {
        set(ev, "ssh_no_identification", Outcome::Failure);
        ip_port(ev, rest);
        return true;
    }
    if let Some(rest) = msg.strip_prefix("Unable to negotiate with ") {
        set(ev, "ssh_negotiation_failed", Outcome::Failure);
        ip_port(ev, rest);
        return true;
    }
    if let Some(rest) = msg.strip_prefix("Timeout before authentication for ") {
        // `IP port N`; since 9.8 the listener's `connection from IP to IP, pid = N`
        set(ev, "ssh_disconnect_preauth", Outcome::Failure);
        ip_port(ev, rest.strip_prefix("connection from ").unwrap_or(rest));
        return true;
    }
    if msg.starts_with("reverse mapping checking getaddrinfo for ") {
        set(ev, "ssh_reverse_mapping_failed", Outcome::Unknown);
        if let (Some(a), Some(b)) = (msg.find('['), msg.find(']')) {
            ev.source_ip = msg
                .get(a + 1..b)
                .filter(|ip| is_ip(ip))
                .map(|ip| ev.text(ip));
        }
        return true;
    }
    if let Some(rest) = msg.strip_prefix("refused connect from ") {
        // "refused connect from HOST (IP)"; HOST is the name or the address
        set(ev, "ssh_connection_refused", Outcome::Failure);
        let inner = rest
            .rsplit_once('(')
            .and_then(|(_, ip)| ip.strip_suffix(')'))
            .unwrap_or(rest.trim());
        ev.source_ip = Some(inner).filter(|ip| is_ip(ip)).map(|ip| ev.text(ip));
        return true;
    }
    if let Some(rest) = msg.strip_prefix("drop connection #") {
        return dropped_connection(ev, rest);
    }
    if let Some(rest) = msg.strip_prefix("Connection from ") {
        set(ev, "ssh_connection", Outcome::Unknown);
        ip_port(ev, rest);
        return true;
    }
    false
}

/// The listener turned a connection away before it reached a session:
/// "N from [IP]:PORT on [IP]:PORT REASON". Since 9.8 sshd penalises an
/// address that fails to log in, connects without trying to, or overstays
/// the login grace time (`PerSourcePenalties`, on by default), and while
/// the penalty lasts it drops the address's connections with
/// `penalty: WHY`. A brute force against such a server shows a few failed
/// passwords and then only these; they are failures of the address.
/// `past MaxStartups` is the server shedding load, whoever connects: no
/// failure of anyone's.
fn dropped_connection(ev: &mut Event, rest: &str) -> bool {
    let Some((peer, tail)) = rest
        .split_once(" from [")
        .and_then(|(_, r)| r.split_once("]:"))
    else {
        return false;
    };
    let (port, tail) = token(tail);
    // "on [IP]:PORT REASON"
    let reason = tail
        .strip_prefix("on [")
        .and_then(|r| r.split_once("]:"))
        .map_or("", |(_, r)| token(r).1);
    match reason.strip_prefix("penalty: ") {
        Some(why) => {
            // failed logins are what a brute force leaves; the others
            // (connecting without trying, overstaying the grace time, a
            // crash) are probing
            let action = if why == "failed authentication" {
                "ssh_auth_penalty_drop"
            } else {
                "ssh_penalty_drop"
            };
            set(ev, action, Outcome::Failure);
            ev.push_label("penalty", why);
        }
        None => set(ev, "ssh_maxstartups_drop", Outcome::Unknown),
    }
    ev.source_ip = Some(peer).filter(|ip| is_ip(ip)).map(|ip| ev.text(ip));
    ev.source_port = port.parse().ok();
    true
}

const NOT_ALLOWED: &str = " not allowed because ";

/// "User NAME from IP not allowed because WHY" (AllowUsers, DenyUsers,
/// AllowGroups, DenyGroups, a locked account, no shell; no address for a
/// locked account): sshd refused a user its configuration keeps out,
/// before any password was checked. A failed attempt, as fail2ban counts
/// it.
fn user_not_allowed(ev: &mut Event, who: &str, why: &str) {
    set(ev, "ssh_user_not_allowed", Outcome::Failure);
    user_from(ev, who);
    ev.push_label("reason", why);
}

fn set(ev: &mut Event, action: &'static str, outcome: Outcome) {
    ev.category = Some("authentication");
    ev.action = Some(Cow::Borrowed(action));
    ev.outcome = outcome;
}

/// "password for [invalid user ]NAME from IP port N ssh2[: KEY]"
fn login(ev: &mut Event, rest: &str, outcome: Outcome) -> bool {
    let Some((method, rest)) = super::split_once_str(rest, " for ") else {
        return false;
    };
    if method.contains(' ') {
        return false;
    }
    set(ev, "ssh_login", outcome);
    let rest = match rest.strip_prefix("invalid user ") {
        Some(r) => {
            ev.labels
                .push(("invalid_user".into(), Text::Static("true")));
            r
        }
        None => rest,
    };
    let (user, tail) = split_user_from(rest);
    ev.user_name = user.map(|v| ev.text(v));
    ev.push_label("auth_method", method);
    ip_port(ev, tail);
    true
}

/// "NAME from IP [port N]": the user (none when empty) and the address.
fn user_from(ev: &mut Event, s: &str) {
    let (user, tail) = split_user_from(s);
    ev.user_name = user.map(|v| ev.text(v));
    ip_port(ev, tail);
}

/// PAM's messages name an unknown user `illegal user NAME` (older) or
/// `invalid user NAME`: the name alone.
fn unqualified(s: &str) -> &str {
    s.strip_prefix("illegal user ")
        .or_else(|| s.strip_prefix("invalid user "))
        .unwrap_or(s)
}

/// Splits "NAME from TAIL" where NAME may contain spaces or be empty; uses the
/// last " from " so user names like "from" survive.
fn split_user_from(s: &str) -> (Option<&str>, &str) {
    if let Some(tail) = s.strip_prefix("from ")
        && is_ip(token(tail).0)
    {
        return (None, tail);
    }
    match super::rfind_str(s, " from ") {
        Some(i) => (Some(&s[..i]).filter(|u| !u.is_empty()), &s[i + 6..]),
        None => (Some(s.trim()).filter(|u| !u.is_empty()), ""),
    }
}

/// "IP port N ..." or "IP ..."
fn ip_port(ev: &mut Event, s: &str) {
    let (ip, rest) = ip_token(s);
    ev.source_ip = ip.map(|ip| ev.text(ip));
    if let Some(p) = rest.strip_prefix("port ") {
        ev.source_port = token(p).0.trim_end_matches(':').parse().ok();
    }
}

fn ip_token(s: &str) -> (Option<&str>, &str) {
    let (ip, rest) = token(s);
    let ip = ip.trim_end_matches(':');
    (Some(ip).filter(|ip| is_ip(ip)), rest)
}

/// "[authenticating |invalid ]user NAME IP port N" or "IP port N"
fn user_then_ip(ev: &mut Event, s: &str) {
    let s = s.strip_prefix("authenticating ").unwrap_or(s);
    let s = match s.strip_prefix("invalid ") {
        Some(r) => {
            ev.labels
                .push(("invalid_user".into(), Text::Static("true")));
            r
        }
        None => s,
    };
    if let Some(rest) = s.strip_prefix("user ") {
        // the user name ends where the address begins: find " <ip> port"
        let mut parts = rest.rsplitn(4, ' ');
        let tail: Vec<&str> = parts.by_ref().collect();
        // tail is reversed: [port_n, "port", ip, user...]
        if tail.len() == 4 && tail[1] == "port" && is_ip(tail[2]) {
            ev.set_user_name(tail[3]);
            ev.set_source_ip(tail[2]);
            ev.source_port = tail[0].parse().ok();
            return;
        }
        let (user, rest) = token(rest);
        ev.set_user_name(user);
        ip_port(ev, rest);
    } else {
        ip_port(ev, s);
    }
}
