//! Access logs: nginx and apache, combined and common
//! (`IP - user [30/Sep/2021:11:11:54 +0200] "GET /p HTTP/1.1" 404 162 "ref" "ua"`),
//! also with a leading virtual host (`vhost:port IP - - [...]`), and with
//! an `X-Forwarded-For` list or `-` where the client's address would be
//! (Apache's `%{X-Forwarded-For}i` in place of `%h`).
//!
//! Hand-written scanning instead of a regex: access logs are the bulk of web
//! traffic and this runs once per line.

use std::borrow::Cow;

use super::{SourceState, is_ip};
use crate::event::{Event, Outcome};
use crate::time::{digits, epoch_ms, month_from_abbrev, zone_offset_ms};

/// Cheap check used by format detection: `host ident user [` within the first bytes.
pub fn looks_like_access(b: &[u8]) -> bool {
    let head = &b[..b.len().min(120)];
    let Some(open) = head.iter().position(|&c| c == b'[') else {
        return false;
    };
    // `- - - [`: no client at all (an `X-Forwarded-For` field of a
    // request that came direct)
    open >= 6
        && head[open - 1] == b' '
        && head.get(open + 3) == Some(&b'/')
        && head[..open].iter().filter(|&&c| c == b' ').count() >= 3
}

/// Parses an access-log line.
pub fn parse(ev: &mut Event, line: &str, state: &SourceState) -> bool {
    let ok = parse_fields(ev, line);
    if ok {
        ev.dataset = match &state.dataset_hint {
            Some(d) => d.to_cow(),
            None => Cow::Borrowed("http.access"),
        };
    }
    ok
}

/// An access log line embedded in a syslog message (nginx `access_log syslog:`).
pub fn parse_embedded(ev: &mut Event, msg: &str, program: &str) -> bool {
    // values sliced from `msg` lie in `ev`'s line: `tmp` keeps them as
    // ranges of it, and holds the line meanwhile (moved, not copied) to
    // read them back
    let mut tmp = Event {
        original: std::mem::take(&mut ev.original),
        parsing: ev.parsing,
        ..Event::default()
    };
    let ok = parse_fields(&mut tmp, msg);
    ev.original = std::mem::take(&mut tmp.original);
    if !ok {
        return false;
    }
    let ts = ev.timestamp;
    ev.category = tmp.category;
    ev.outcome = tmp.outcome;
    ev.action = tmp.action;
    ev.source_ip = tmp.source_ip;
    ev.user_name = tmp.user_name;
    ev.http_method = tmp.http_method;
    ev.url_original = tmp.url_original;
    ev.http_status = tmp.http_status;
    ev.http_body_bytes = tmp.http_body_bytes;
    ev.user_agent = tmp.user_agent;
    ev.extra.extend(tmp.extra);
    ev.labels.extend(tmp.labels);
    ev.timestamp = if tmp.timestamp != 0 {
        tmp.timestamp
    } else {
        ts
    };
    ev.dataset = Cow::Borrowed(if program == "nginx" {
        "nginx.access"
    } else {
        "apache.access"
    });
    true
}

fn parse_fields(ev: &mut Event, line: &str) -> bool {
    let b = line.as_bytes();
    // the timestamp opens at the first " ["
    let Some(open) = memchr::memchr_iter(b'[', b).find(|&i| i > 0 && b[i - 1] == b' ') else {
        return false;
    };
    let open = open - 1;
    let mut head = [""; 4];
    let mut n = 0;
    // a field ending in a comma goes on in the next: Apache's
    // `%{X-Forwarded-For}i` in place of the peer logs a list, `a, b - -`
    let mut list_from = None;
    for t in line[..open].split(' ').filter(|s| !s.is_empty()) {
        let at = t.as_ptr() as usize - line.as_ptr() as usize;
        let from = list_from.take().unwrap_or(at);
        if t.ends_with(',') {
            list_from = Some(from);
            continue;
        }
        let Some(slot) = head.get_mut(n) else {
            return false;
        };
        *slot = &line[from..at + t.len()];
        n += 1;
    }
    if list_from.is_some() {
        return false;
    }
    // optional leading vhost: "vhost:443 1.2.3.4 - -"
    let (client, user) = match n {
        3 => (head[0], head[2]),
        4 => {
            let vhost = head[0];
            ev.push_extra("url.domain", vhost.split(':').next().unwrap_or(vhost));
            (head[1], head[3])
        }
        _ => return false,
    };
    let rest = &line[open + 2..];
    let Some(close) = memchr::memchr(b']', rest.as_bytes()) else {
        return false;
    };
    let Some(ts) = parse_clf_time(&rest.as_bytes()[..close]) else {
        return false;
    };
    ev.timestamp = ts;
    let rest = rest[close + 1..].trim_start();
    let Some(rest) = rest.strip_prefix('"') else {
        return false;
    };
    let Some((request, rest)) = split_quoted(rest) else {
        return false;
    };
    let (status, tail) = split_space(rest.trim_start());
    let Ok(status) = status.parse::<u16>() else {
        return false;
    };
    let (bytes, after) = split_space(tail);
    let bytes = bytes.parse::<u64>().ok();
    if client != "-" {
        if is_ip(client) {
            ev.set_source_ip(client);
        } else if client.contains(',') {
            // an `X-Forwarded-For` list logged as the client: read as the
            // header is read after the user agent
            if let Some(ip) = client_forwarded_for(client) {
                ev.set_source_ip(ip);
            }
        } else {
            ev.push_label("client_host", client);
        }
    }
    if user != "-" {
        ev.set_user_name(user);
    }
    // a malformed request line ("-", binary junk) is kept as the URL for probes
    if !request_line(ev, request) && request != "-" {
        ev.set_url_original(request);
    }
    ev.http_status = Some(status);
    ev.http_body_bytes = bytes;
    if let Some(r) = after.trim_start().strip_prefix('"')
        && let Some((referrer, r)) = split_quoted(r)
    {
        if referrer != "-" && !referrer.is_empty() {
            ev.push_extra("http.request.referrer", referrer);
        }
        if let Some(r) = r.trim_start().strip_prefix('"')
            && let Some((ua, r)) = split_quoted(r)
        {
            if ua != "-" && !ua.is_empty() {
                ev.set_user_agent(ua);
            }
            // nginx's stock `main` format ends with "$http_x_forwarded_for"
            if let Some(r) = r.trim_start().strip_prefix('"')
                && let Some((xff, _)) = split_quoted(r)
            {
                forwarded_client(ev, client, xff);
            }
        }
    }
    mark_request(ev, status);
    true
}

/// Behind a load balancer or reverse proxy on the local network, the peer
/// is the proxy and the client is in `X-Forwarded-For`: as nginx's
/// `real_ip_recursive` with private addresses trusted, the client is the
/// rightmost entry that is not itself a local proxy (entries further left
/// are what the client claimed, and can be forged). Without this every
/// attacker behind the balancer would be one offender: the balancer. A
/// public peer is the client whatever the header says.
fn forwarded_client(ev: &mut Event, peer: &str, xff: &str) {
    if !super::is_ip(peer) || !is_local(peer) {
        return;
    }
    if let Some(client) = client_forwarded_for(xff) {
        ev.set_source_ip(client);
        ev.push_label("forwarded_by", peer);
    }
}

/// The client an `X-Forwarded-For` list names: its rightmost address that
/// is not a local proxy (entries further left are what the client claimed,
/// and can be forged), or the leftmost when all are local; none in `-` or
/// junk.
pub(super) fn client_forwarded_for(xff: &str) -> Option<&str> {
    let mut entries = xff.rsplit(',').map(str::trim).filter(|e| super::is_ip(e));
    let mut client = entries.next()?;
    while is_local(client) {
        match entries.next() {
            Some(e) => client = e,
            None => break,
        }
    }
    Some(client)
}

/// A loopback, private (RFC 1918, RFC 4193), shared (RFC 6598) or
/// link-local address: where a site's own proxies live.
pub(super) fn is_local(ip: &str) -> bool {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (a == 100 && (64..128).contains(&b))
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
        Err(_) => false,
    }
}

/// Marks `ev` an HTTP request answered with `status` (a failure from
/// 400 on), and a proxy probe where its target is another host.
pub(super) fn mark_request(ev: &mut Event, status: u16) {
    ev.category = Some("web");
    ev.outcome = if status >= 400 {
        Outcome::Failure
    } else {
        Outcome::Success
    };
    ev.action = Some(Cow::Borrowed(request_action(ev, status)));
    super::mark_proxy_target(ev);
}

/// `http_auth_failure` for a 401 answered to a request that carried a user
/// name (HTTP Basic credentials the server refused: the access log's user
/// field is only set when credentials came), `http_request` otherwise. A
/// 401 without one is the server asking for credentials, or a stale bearer
/// token retried by a client: neither is a guess at a password.
pub(super) fn request_action(ev: &Event, status: u16) -> &'static str {
    if status == 401 && ev.user_name.is_some() {
        "http_auth_failure"
    } else {
        "http_request"
    }
}

/// Sets the method, the URL and an unusual version from a request line
/// (`GET /x HTTP/1.1`); false when `request` is not one.
pub(super) fn request_line(ev: &mut Event, request: &str) -> bool {
    let Some((method, target)) =
        memchr::memchr(b' ', request.as_bytes()).map(|i| (&request[..i], &request[i + 1..]))
    else {
        return false;
    };
    if method.is_empty() || !method.bytes().all(|c| c.is_ascii_uppercase()) {
        return false;
    }
    ev.http_method = Some(crate::event::http_method(method));
    let (url, _) = split_space(target);
    ev.set_url_original(url);
    if let Some(protocol) = memchr::memrchr(b' ', target.as_bytes()).map(|i| &target[i + 1..])
        && let Some(version) = unusual_version(protocol)
    {
        ev.push_extra("http.version", version);
    }
    true
}

/// The version `protocol` (`HTTP/1.7`) claims when it is none a client
/// speaks: `http.version` is set only then, as the usual ones would cost
/// every request an allocation to say nothing.
pub(super) fn unusual_version(protocol: &str) -> Option<&str> {
    let version = protocol.strip_prefix("HTTP/")?;
    (!matches!(version, "1.1" | "1.0" | "2.0" | "2" | "3.0" | "3" | "0.9")).then_some(version)
}

/// Splits at the first space: (before, after); the whole and "" without one.
fn split_space(s: &str) -> (&str, &str) {
    match memchr::memchr(b' ', s.as_bytes()) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

/// Splits a quoted field body at its closing quote (honouring `\"`).
fn split_quoted(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let at = i + memchr::memchr2(b'\\', b'"', &b[i..])?;
        if b[at] == b'"' {
            return Some((&s[..at], &s[at + 1..]));
        }
        i = at + 2;
    }
    None
}

/// `30/Sep/2021:11:11:54 +0200`
pub fn parse_clf_time(b: &[u8]) -> Option<i64> {
    let day = digits(b, 0, 2)?;
    let month = month_from_abbrev(b.get(3..6)?)?;
    let year = digits(b, 7, 4)? as i64;
    let (h, mi, s) = (digits(b, 12, 2)?, digits(b, 15, 2)?, digits(b, 18, 2)?);
    let (off, _) = zone_offset_ms(b, 21);
    Some(epoch_ms(year, month, day, h, mi, s, 0) - off)
}
