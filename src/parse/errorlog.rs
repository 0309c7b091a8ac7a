//! Web server error logs.
//! nginx: `2021/12/02 11:53:15 [error] 4065777#4065777: *42 limiting requests,
//! excess: 5.428 by zone "z", client: ::1, server: , request: "GET / HTTP/1.1"`.
//! apache: `[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 35708:tid 4328]
//! [client 72.15.99.187:1234] File does not exist: /var/www/favicon.ico`.
//!
//! Actions: `nginx_rate_limited`, `http_error` (anything else), with
//! `log.level`, `source.ip` and the request where the line carries them.

use std::borrow::Cow;

use super::is_ip;
use crate::event::{Event, Outcome, Text};
use crate::time::{digits, epoch_ms, fraction_ms, month_from_abbrev};

pub fn parse_nginx(ev: &mut Event, line: &str) -> bool {
    nginx_fields(ev, line)
}

fn nginx_fields(ev: &mut Event, line: &str) -> bool {
    let b = line.as_bytes();
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s)) = (
        digits(b, 0, 4),
        digits(b, 5, 2),
        digits(b, 8, 2),
        digits(b, 11, 2),
        digits(b, 14, 2),
        digits(b, 17, 2),
    ) else {
        return false;
    };
    ev.timestamp = epoch_ms(y as i64, mo, d, h, mi, s, 0);
    let rest = &line[19..];
    let Some(rest) = rest.strip_prefix(" [") else {
        return false;
    };
    let Some((level, rest)) = rest.split_once("] ") else {
        return false;
    };
    ev.log_level = Some(Cow::Owned(level.to_ascii_lowercase()));
    // "pid#tid: *conn message"
    let (pidtid, msg) = rest.split_once(": ").unwrap_or(("", rest));
    ev.process_pid = pidtid.split('#').next().and_then(|p| p.parse().ok());
    ev.process_name = Some(Text::Static("nginx"));
    let msg_start = super::offset_in(line, msg);
    let msg = match msg.strip_prefix('*') {
        Some(m) => m.split_once(' ').map_or(m, |(_, m)| m),
        None => msg,
    };
    ev.set_message_range(super::offset_in(line, msg).max(msg_start), line.len());
    ev.dataset = Cow::Borrowed("nginx.error");
    ev.category = Some("web");
    ev.outcome = Outcome::Failure;
    if msg.starts_with("limiting requests") || msg.starts_with("limiting connections") {
        ev.action = Some(Cow::Borrowed("nginx_rate_limited"));
        if let Some(z) = msg
            .split_once("by zone \"")
            .and_then(|(_, r)| r.split_once('"'))
        {
            ev.push_extra("nginx.limit_zone", z.0);
        }
    } else if let Some(user) = nginx_auth_failure(msg) {
        ev.action = Some(Cow::Borrowed("http_auth_failure"));
        ev.set_user_name(user);
    } else {
        ev.action = Some(Cow::Borrowed("http_error"));
    }
    for part in msg.split(", ") {
        if let Some(c) = part.strip_prefix("client: ") {
            if is_ip(c) {
                ev.set_source_ip(c);
            }
        } else if let Some(r) = part.strip_prefix("request: \"") {
            let r = r.trim_end_matches('"');
            let mut it = r.splitn(3, ' ');
            if let (Some(m), Some(u)) = (it.next(), it.next()) {
                ev.http_method = Some(crate::event::http_method(m));
                ev.set_url_original(u);
            }
        } else if let Some(h) = part.strip_prefix("host: \"") {
            ev.push_extra("url.domain", h.trim_end_matches('"'));
        }
    }
    super::mark_proxy_target(ev);
    true
}

pub fn parse_apache(ev: &mut Event, line: &str) -> bool {
    apache_fields(ev, line)
}

fn apache_fields(ev: &mut Event, line: &str) -> bool {
    // "[Wed Oct 11 14:32:52.123456 2000] [module:level] [pid N:tid M] [client IP:port] msg"
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    let Some((ts, mut rest)) = rest.split_once("] ") else {
        return false;
    };
    let b = ts.as_bytes();
    let Some(month) = b.get(4..7).and_then(month_from_abbrev) else {
        return false;
    };
    let day = digits(b, 8, 2).or_else(|| digits(b, 9, 1));
    let (Some(day), Some(h), Some(mi), Some(s)) =
        (day, digits(b, 11, 2), digits(b, 14, 2), digits(b, 17, 2))
    else {
        return false;
    };
    let (ms, f) = fraction_ms(b, 19);
    let Some(year) = digits(b, 20 + f, 4) else {
        return false;
    };
    ev.timestamp = epoch_ms(year as i64, month, day, h, mi, s, ms);
    while let Some(r) = rest.strip_prefix('[') {
        let Some((tag, r)) = r.split_once("] ") else {
            break;
        };
        if let Some(client) = tag.strip_prefix("client ") {
            let ip = match client.rsplit_once(':') {
                Some((ip, port)) if port.bytes().all(|c| c.is_ascii_digit()) && is_ip(ip) => ip,
                _ => client,
            };
            if is_ip(ip) {
                ev.set_source_ip(ip);
            }
        } else if let Some(pid) = tag.strip_prefix("pid ") {
            ev.process_pid = pid.split(':').next().and_then(|p| p.parse().ok());
        } else if let Some((module, level)) = tag.split_once(':') {
            ev.log_level = Some(Cow::Owned(level.to_owned()));
            ev.push_label("apache_module", module);
        } else {
            ev.log_level = Some(Cow::Owned(tag.to_owned()));
        }
        rest = r;
    }
    let start = super::offset_in(line, rest);
    ev.set_message_range(start, line.len());
    if let Some(target) = apache_target(rest) {
        ev.set_url_original(target);
    }
    ev.process_name = Some(Text::Static("apache"));
    ev.dataset = Cow::Borrowed("apache.error");
    ev.category = Some("web");
    ev.outcome = Outcome::Failure;
    match apache_auth_failure(rest) {
        Some((user, target)) => {
            ev.action = Some(Cow::Borrowed("http_auth_failure"));
            ev.set_user_name(user);
            if !target.is_empty() {
                ev.set_url_original(target);
            }
        }
        None => ev.action = Some(Cow::Borrowed("http_error")),
    }
    true
}

/// The user whose HTTP Basic credentials nginx refused: `user "bob" was
/// not found in "/etc/nginx/.htpasswd"` or `user "bob": password
/// mismatch` (ngx_http_auth_basic_module). A request that sent none (`no
/// user/password was provided`) is the server asking, not a failure.
fn nginx_auth_failure(msg: &str) -> Option<&str> {
    let (user, rest) = msg.strip_prefix("user \"")?.split_once('"')?;
    (rest.starts_with(" was not found in ") || rest.starts_with(": password mismatch"))
        .then_some(user)
}

/// The user and path of refused HTTP Basic credentials in Apache's error
/// log (mod_authn_file, mod_auth_basic): `AH01618: user bob not found: /x`
/// and `AH01617: user bob: authentication failure for "/x": Password
/// Mismatch`, with or without the message code (2.2 wrote none).
fn apache_auth_failure(msg: &str) -> Option<(&str, &str)> {
    let msg = msg.trim_end();
    let msg = match msg.split_once(": ") {
        Some((code, rest))
            if code.starts_with("AH") && code[2..].bytes().all(|c| c.is_ascii_digit()) =>
        {
            rest
        }
        _ => msg,
    };
    let rest = msg.strip_prefix("user ")?;
    if let Some((user, path)) = rest.split_once(" not found: ")
        && !user.contains(' ')
    {
        return Some((user, path));
    }
    let (user, rest) = rest.split_once(": authentication failure for \"")?;
    let (path, _) = rest.split_once('"')?;
    (!user.contains(' ')).then_some((user, path))
}

/// The request target or file an Apache error names, so error logs carry
/// the same URL fields as access logs (`AH10244: invalid URI path (…)`,
/// `File does not exist: …`, `script '…' not found`, `client denied by
/// server configuration: …`, `Invalid URI in request GET … HTTP/1.1`).
fn apache_target(msg: &str) -> Option<&str> {
    let msg = msg.trim_end();
    if let Some((_, r)) = msg.split_once("invalid URI path (") {
        return r.rsplit_once(')').map(|(t, _)| t);
    }
    if let Some((_, r)) = msg.split_once("Invalid URI in request ") {
        let mut it = r.split(' ');
        return it.next().and(it.next());
    }
    if let Some((_, r)) = msg.split_once("script '") {
        return r.split_once('\'').map(|(t, _)| t);
    }
    [
        "File does not exist: ",
        "client denied by server configuration: ",
    ]
    .iter()
    .find_map(|p| msg.split_once(p))
    .map(|(_, t)| t.split([',', ' ']).next().unwrap_or(t))
    .filter(|t| !t.is_empty())
}
