//! AWS load balancer access logs: Application Load Balancer and Classic
//! Load Balancer entries, as Elastic Load Balancing writes them to S3:
//!
//! ```text
//! https 2026-12-04T10:00:00.186641Z app/web/50dc6c495c0c9188 203.0.113.7:44740 10.0.0.1:80 0.001 0.048 0.000 404 404 34 366 "GET https://www.example.com:443/.env HTTP/1.1" "curl/8.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:… "Root=1-…" "www.example.com" "arn:…" 0 2026-12-04T10:00:00.138000Z "forward" "-" "-" "10.0.0.1:80" "404" "-" "-"
//! 2026-12-04T10:00:00.945958Z my-elb 203.0.113.7:2817 10.0.0.1:80 0.000073 0.001048 0.000057 200 200 0 29 "GET http://www.example.com:80/ HTTP/1.1" "curl/8.0" - -
//! ```
//!
//! An ALB entry opens with the connection type (`http`, `https`, `h2`,
//! `grpcs`, `ws`, `wss`), then the response time, the load balancer, the
//! client and target `address:port`, three processing times in seconds
//! (`-1` where a phase never ran), the load balancer's and the target's
//! status, bytes received and sent, the quoted request line and user agent,
//! and further fields of which only the request's creation time is read
//! (<https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-access-logs.html>).
//! A Classic entry has no type and ends after the TLS protocol
//! (<https://docs.aws.amazon.com/elasticloadbalancing/latest/classic/access-log-collection.html>).
//!
//! The load balancer sees every client first, so a site behind one has
//! only these logs for its clients' addresses. The request line names the
//! scheme, host and port the balancer listened on (`GET
//! https://host:443/p`): the host becomes `url.domain` and the URL its
//! origin form (`/p`), as an access log writes it, so a request is not
//! taken for an open-proxy probe and path rules read the path. A TCP
//! listener's entries (`"- - - "`) and lines of other shapes are left
//! alone.

use std::borrow::Cow;

use super::is_ip;
use crate::event::Event;
use crate::time::parse_rfc3339;

/// The connection types an ALB entry opens with.
const ALB_TYPES: [&str; 6] = ["http", "https", "h2", "grpcs", "ws", "wss"];

/// Whether `b` opens with an ALB connection type and a space: a
/// comparison or two before [`looks_like_elb`] reads the fields.
pub fn opens_like_alb(b: &[u8]) -> bool {
    ALB_TYPES
        .iter()
        .any(|t| b.starts_with(t.as_bytes()) && b.get(t.len()) == Some(&b' '))
}

/// Format detection: the fixed fields an ALB or Classic entry opens with.
pub fn looks_like_elb(b: &[u8]) -> bool {
    // the fixed fields are ASCII and lie within the first 320 bytes, even
    // with a long balancer name and IPv6 client and target addresses
    let head = &b[..b.len().min(320)];
    let head = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""),
    };
    Header::read(head).is_some()
}

/// The fields every entry opens with, up to the request line.
struct Header<'a> {
    alb: bool,
    time_ms: i64,
    elb: &'a str,
    ip: &'a str,
    port: u16,
    /// Request, target and response processing, in seconds (-1: never ran).
    seconds: [f64; 3],
    /// The load balancer's status to the client (`-`: none sent).
    status: Option<u16>,
    sent: &'a str,
    /// The fields from the request line on.
    rest: Fields<'a>,
}

impl<'a> Header<'a> {
    fn read(line: &'a str) -> Option<Header<'a>> {
        let mut fields = Fields(line);
        let mut first = fields.next()?;
        let alb = ALB_TYPES.contains(&first);
        if alb {
            first = fields.next()?;
        }
        let (time_ms, used) = parse_rfc3339(first.as_bytes())?;
        if used != first.len() || !first.ends_with('Z') {
            return None;
        }
        let elb = fields.next()?;
        let (ip, port) = fields.next().and_then(client)?;
        let target = fields.next()?;
        if target != "-" && client(target).is_none() {
            return None;
        }
        let mut seconds = [0f64; 3];
        for s in &mut seconds {
            *s = fields.next()?.parse().ok()?;
        }
        let status = match fields.next()? {
            "-" => None,
            s => Some(s.parse::<u16>().ok()?),
        };
        let (_target_status, _received, sent) = (fields.next()?, fields.next()?, fields.next()?);
        Some(Header {
            alb,
            time_ms,
            elb,
            ip,
            port,
            seconds,
            status,
            sent,
            rest: fields,
        })
    }
}

/// `address:port`, IPv6 addresses included (`[2001:db8::1]:443`).
pub(crate) fn client(word: &str) -> Option<(&str, u16)> {
    let (ip, port) = word.rsplit_once(':')?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    Some((ip, port.parse().ok()?)).filter(|_| is_ip(ip))
}

/// Parses an ALB or Classic entry into `ev`; false when `line` is not one.
pub fn parse(ev: &mut Event, line: &str) -> bool {
    let Some(mut h) = Header::read(line) else {
        return false;
    };
    ev.timestamp = h.time_ms;
    ev.set_source_ip(h.ip);
    ev.source_port = Some(h.port);
    ev.http_status = h.status;
    ev.http_body_bytes = h.sent.parse().ok();
    if h.seconds.iter().all(|s| *s >= 0.0) {
        ev.duration_ns = Some((h.seconds.iter().sum::<f64>() * 1e9).round() as i64);
    }
    ev.push_label("load_balancer", h.elb);
    if let Some(request) = h.rest.next() {
        request_line(ev, request);
    }
    if let Some(ua) = h.rest.next().filter(|ua| !matches!(*ua, "" | "-")) {
        ev.set_user_agent(ua);
    }
    // the request's arrival (ALB only), eight fields past the user agent:
    // the response's time is when a slow target answered, or a WebSocket closed
    if h.alb
        && let Some((created, _)) = h.rest.nth(7).and_then(|t| parse_rfc3339(t.as_bytes()))
    {
        ev.timestamp = created;
    }
    ev.dataset = Cow::Borrowed(if h.alb { "aws.alb" } else { "aws.elb" });
    match h.status {
        Some(s) => super::access::mark_request(ev, s),
        // a request the balancer never answered (the client left)
        None if ev.http_method.is_some() => {
            ev.category = Some("web");
            ev.action = Some(Cow::Borrowed("http_request"));
        }
        None => {}
    }
    true
}

/// The method, the URL in origin form and an unusual version from
/// `GET https://host:443/p?q HTTP/1.1`; the host as `url.domain`.
fn request_line(ev: &mut Event, request: &str) {
    let mut parts = request.splitn(3, ' ');
    let (Some(method), Some(target), protocol) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    // `- - -`: a TCP listener, or nothing the balancer could read
    if method == "-" || method.is_empty() || !method.bytes().all(|c| c.is_ascii_uppercase()) {
        return;
    }
    ev.http_method = Some(crate::event::http_method(method));
    let url = match super::absolute_uri(target) {
        Some((host, rest)) => {
            if !host.is_empty() && host != "-" {
                ev.push_extra("url.domain", host);
            }
            if rest.is_empty() { "/" } else { rest }
        }
        None => target,
    };
    if url != "-" {
        ev.set_url_original(url);
    }
    if let Some(version) = protocol.and_then(|p| super::access::unusual_version(p.trim_end())) {
        ev.push_extra("http.version", version);
    }
}

/// The fields of an entry: space-separated words and quoted strings (the
/// quotes dropped, `\"` kept as written).
pub(super) struct Fields<'a>(pub(super) &'a str);

impl<'a> Iterator for Fields<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.0.trim_start_matches(' ');
        if s.is_empty() {
            return None;
        }
        if let Some(body) = s.strip_prefix('"') {
            let b = body.as_bytes();
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => {
                        self.0 = &body[i + 1..];
                        return Some(&body[..i]);
                    }
                    _ => i += 1,
                }
            }
            // an unterminated quote: the rest is the field
            self.0 = "";
            return Some(body);
        }
        let end = memchr::memchr(b' ', s.as_bytes()).unwrap_or(s.len());
        self.0 = &s[end..];
        Some(&s[..end])
    }
}

#[cfg(test)]
mod tests {
    use crate::event::Outcome;
    use crate::parse::tests::one;

    const ALB: &str = r#"https 2026-12-04T10:00:00.186641Z app/web/50dc6c495c0c9188 203.0.113.7:44740 10.0.0.1:80 0.001 0.048 0.000 404 404 34 366 "GET https://www.example.com:443/.env?x=1 HTTP/1.1" "curl/8.0" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/web/73e2d6bc24d8a067 "Root=1-58337281-1d84f3d73c47ec4e58577259" "www.example.com" "arn:aws:acm:us-east-2:123456789012:certificate/12345678-1234-1234-1234-123456789012" 0 2026-12-04T10:00:00.138000Z "forward" "-" "-" "10.0.0.1:80" "404" "-" "-""#;

    #[test]
    fn alb_entries_carry_the_access_fields() {
        let ev = one(ALB);
        assert_eq!(ev.dataset, "aws.alb");
        assert_eq!(ev.category, Some("web"));
        assert_eq!(ev.outcome, Outcome::Failure);
        assert_eq!(ev.source_ip(), Some("203.0.113.7"));
        assert_eq!(ev.source_port, Some(44740));
        assert_eq!(ev.http_method.as_deref(), Some("GET"));
        assert_eq!(ev.url_original(), Some("/.env?x=1"));
        assert_eq!(ev.url_path(), Some("/.env"));
        assert_eq!(ev.extra("url.domain"), Some("www.example.com"));
        // the balancer's own absolute URI is no proxy probe
        assert_eq!(ev.extra("destination.domain"), None);
        assert_eq!(ev.http_status, Some(404));
        assert_eq!(ev.http_body_bytes, Some(366));
        assert_eq!(ev.user_agent(), Some("curl/8.0"));
        assert_eq!(ev.duration_ns, Some(49_000_000));
        assert_eq!(ev.label("load_balancer"), Some("app/web/50dc6c495c0c9188"));
        // the request's creation time, not the response's
        assert_eq!(
            crate::time::format_rfc3339(ev.timestamp),
            "2026-12-04T10:00:00.138Z"
        );
        assert_eq!(ev.parse_error, None);
    }

    #[test]
    fn classic_entries_and_other_shapes() {
        let ev = one(
            r#"2026-12-04T10:00:01.945958Z my-classic-load-balancer-in-production-eu-west-1 [2001:db8:1234:5678:9abc:def0:1234:5678]:2817 [2001:db8:ffff:eeee:dddd:cccc:bbbb:aaaa]:80 0.000073 0.001048 0.000057 200 200 0 29 "GET http://www.example.com:80 HTTP/1.1" "Mozilla/5.0" - -"#,
        );
        assert_eq!(ev.dataset, "aws.elb");
        assert_eq!(
            ev.source_ip(),
            Some("2001:db8:1234:5678:9abc:def0:1234:5678")
        );
        assert_eq!(ev.url_original(), Some("/"));
        assert_eq!(ev.http_status, Some(200));
        assert_eq!(ev.outcome, Outcome::Success);
        // a WAF's fixed response: no target, times of -1; a doubly encoded traversal kept as sent
        let ev = one(
            r#"https 2026-12-04T10:00:02.679895Z app/web/50dc6c495c0c9188 198.51.100.4:44740 - -1 -1 -1 403 - 204 167 "GET https://api.example.com:443/%%32%65%%32%65/ HTTP/1.7" "-" ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 - "Root=1-6449814a" "api.example.com" "-" 0 2026-12-04T10:00:02.678000Z "waf,fixed-response" "-" "-" "-" "-" "-" "-""#,
        );
        assert_eq!(ev.source_ip(), Some("198.51.100.4"));
        assert_eq!(ev.url_original(), Some("/%%32%65%%32%65/"));
        assert_eq!(ev.http_status, Some(403));
        assert_eq!(ev.duration_ns, None);
        assert_eq!(ev.user_agent(), None);
        assert_eq!(ev.extra("http.version"), Some("1.7"));
        // a TCP listener's entry: the address, no request
        let ev = one(
            r#"2026-12-04T10:00:03.000000Z my-elb 192.0.2.8:2817 10.0.0.1:443 0.001 0.002 0.000 - - 57 502 "- - - " "-" - -"#,
        );
        assert_eq!(ev.dataset, "aws.elb");
        assert_eq!(ev.source_ip(), Some("192.0.2.8"));
        assert_eq!(ev.http_method, None);
        assert_eq!(ev.category, None);
        // an application's own ISO-dated line is not taken for one
        let ev = one("2026-12-04T10:00:04.000Z api 10.0.0.1:80 started in 0.5s");
        assert_ne!(ev.dataset, "aws.elb");
    }
}
