//! Envoy access logs in the text formats proxies ship with: Envoy's default
//! and Istio's (its sidecars and gateways, Istio 1.8 and later):
//!
//! ```text
//! [2026-12-04T10:00:00.310Z] "POST /api/v1/login HTTP/2" 401 - 154 12 3 2 "203.0.113.7" "curl/8.0" "cc21d9b0-…" "shop.example" "10.0.2.1:80"
//! [2026-12-04T10:00:00.409Z] "GET /.env HTTP/1.1" 404 - via_upstream - "-" 0 135 4 4 "-" "zgrab/0.x" "84961386-…" "shop.example" "10.44.1.27:80" inbound|8000|| 127.0.0.1:41854 10.44.1.27:80 203.0.113.7:37652 - default
//! ```
//!
//! Envoy's default is `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%
//! %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
//! %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
//! "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"`
//! (<https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage#default-format-string>).
//! Istio's adds the response code details, the connection termination
//! details and the quoted upstream failure reason after the flags, and the
//! upstream cluster, the upstream local, downstream local and downstream
//! remote addresses, the SNI and the route at the end. Which of the two a
//! line is shows in its fifth field after the request: quoted in Istio's.
//! Other formats a user configured are not guessed at (use JSON).
//!
//! The client: Istio logs `%DOWNSTREAM_REMOTE_ADDRESS%`, Envoy's own view
//! of the client (through the proxies it trusts). Envoy's default logs no
//! peer address, only `X-Forwarded-For`: read as the access parser reads
//! it behind a local proxy, its rightmost entry that is not a local proxy
//! (the one the nearest proxy in front wrote), while the first can be
//! anything a client sent. A response code
//! of 0 (the client left before an answer) is no status.

use std::borrow::Cow;

use super::elb::{Fields, client};
use crate::event::Event;
use crate::time::parse_rfc3339;

/// Format detection: `[` and an RFC 3339 start time, then the quoted
/// request line.
pub fn looks_like_envoy(b: &[u8]) -> bool {
    let Some(rest) = b.strip_prefix(b"[") else {
        return false;
    };
    match parse_rfc3339(rest) {
        Some((_, used)) => rest[used..].starts_with(b"] \""),
        None => false,
    }
}

/// The most fields a line is read for (Istio's have 20 after the request).
const MOST: usize = 24;

/// Parses a line of Envoy's or Istio's default format into `ev`; false when
/// `line` is neither.
pub fn parse(ev: &mut Event, line: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    let Some((time_ms, used)) = parse_rfc3339(rest.as_bytes()) else {
        return false;
    };
    let Some(rest) = rest[used..].strip_prefix("] ") else {
        return false;
    };
    let mut fields = Fields(rest);
    let Some(request) = fields.next() else {
        return false;
    };
    // the fields after the request, each with whether it was quoted
    let mut f: [(&str, bool); MOST] = [("", false); MOST];
    let mut n = 0;
    while n < MOST {
        let quoted = fields.0.trim_start_matches(' ').starts_with('"');
        let Some(field) = fields.next() else { break };
        f[n] = (field, quoted);
        n += 1;
    }
    let istio = n >= 18 && f[4].1;
    let envoy = n >= 11 && f[6].1 && !f[4].1;
    if !(istio || envoy) {
        return false;
    }
    let Ok(code) = f[0].0.parse::<u16>() else {
        return false;
    };
    // Istio's fields sit three further on, up to the upstream host
    let at = if istio { 3 } else { 0 };
    let (sent, duration, xff, ua, authority) = (
        f[at + 3].0,
        f[at + 4].0,
        f[at + 6].0,
        f[at + 7].0,
        f[at + 9].0,
    );
    ev.timestamp = time_ms;
    if !super::access::request_line(ev, request) && request != "- - -" && request != "-" {
        ev.set_url_original(request);
    }
    let peer = if istio { client(f[17].0) } else { None };
    match peer {
        Some((ip, port)) => {
            ev.set_source_ip(ip);
            ev.source_port = Some(port);
        }
        None => {
            if let Some(ip) = super::access::client_forwarded_for(xff) {
                ev.set_source_ip(ip);
            }
        }
    }
    if !matches!(ua, "" | "-") {
        ev.set_user_agent(ua);
    }
    if !matches!(authority, "" | "-") {
        ev.push_extra("url.domain", authority);
    }
    if f[1].0 != "-" {
        ev.push_label("envoy_response_flags", f[1].0);
    }
    if istio && f[14].0 != "-" {
        ev.push_label("upstream_cluster", f[14].0);
    }
    ev.http_body_bytes = sent.parse().ok();
    ev.duration_ns = duration.parse::<i64>().ok().map(|ms| ms * 1_000_000);
    ev.dataset = Cow::Borrowed("envoy.access");
    match code {
        // the client left before an answer: no status
        0 => {
            ev.category = Some("web");
            ev.action = Some(Cow::Borrowed("http_request"));
        }
        status => {
            ev.http_status = Some(status);
            super::access::mark_request(ev, status);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use crate::event::Outcome;
    use crate::parse::tests::one;

    const ENVOY: &str = r#"[2026-12-04T10:00:00.310Z] "POST /api/v1/login?next=%2F HTTP/2" 401 - 154 12 3 2 "198.51.100.9, 203.0.113.7" "curl/8.0" "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2" "shop.example" "10.0.2.1:80""#;
    const ISTIO: &str = r#"[2026-12-04T10:00:00.409Z] "GET /.env HTTP/1.1" 404 NR route_not_found - "-" 0 135 4 - "-" "zgrab/0.x" "84961386-6d84-929d-98bd-c5aee93b5c88" "shop.example" "-" - - 10.44.1.27:8080 203.0.113.8:37652 - -"#;

    #[test]
    fn envoys_default_format_carries_the_access_fields() {
        let ev = one(ENVOY);
        assert_eq!(ev.dataset, "envoy.access");
        assert_eq!(ev.category, Some("web"));
        assert_eq!(ev.outcome, Outcome::Failure);
        assert_eq!(ev.timestamp, 1_796_378_400_310);
        assert_eq!(ev.http_method.as_deref(), Some("POST"));
        assert_eq!(ev.url_original(), Some("/api/v1/login?next=%2F"));
        assert_eq!(ev.http_status, Some(401));
        assert_eq!(ev.http_body_bytes, Some(12));
        assert_eq!(ev.duration_ns, Some(3_000_000));
        // the entry the nearest proxy wrote, not the first a client can forge
        assert_eq!(ev.source_ip(), Some("203.0.113.7"));
        assert_eq!(ev.user_agent(), Some("curl/8.0"));
        assert_eq!(ev.extra("url.domain"), Some("shop.example"));
        assert_eq!(ev.action.as_deref(), Some("http_request"));
    }

    #[test]
    fn istios_format_gives_the_downstream_remote_address() {
        let ev = one(ISTIO);
        assert_eq!(ev.dataset, "envoy.access");
        assert_eq!(ev.source_ip(), Some("203.0.113.8"));
        assert_eq!(ev.source_port, Some(37652));
        assert_eq!(ev.url_original(), Some("/.env"));
        assert_eq!(ev.http_status, Some(404));
        assert_eq!(ev.http_body_bytes, Some(135));
        assert_eq!(ev.user_agent(), Some("zgrab/0.x"));
        assert_eq!(ev.label("envoy_response_flags"), Some("NR"));
        let with_cluster = ISTIO.replace(
            "\"-\" - - 10.44.1.27",
            "\"10.44.1.27:80\" inbound|8000|| 127.0.0.1:41854 10.44.1.27",
        );
        let ev = one(&with_cluster);
        assert_eq!(ev.label("upstream_cluster"), Some("inbound|8000||"));
        assert_eq!(ev.source_ip(), Some("203.0.113.8"));
    }

    #[test]
    fn tcp_entries_unanswered_requests_and_other_formats() {
        // a TCP proxy's entry: no request, no status
        let tcp =
            r#"[2026-12-04T10:00:01.000Z] "- - -" 0 - 0 0 10 - "-" "-" "-" "-" "10.0.2.1:5432""#;
        let ev = one(tcp);
        assert_eq!(ev.dataset, "envoy.access");
        assert_eq!(ev.http_status, None);
        assert_eq!(ev.url_original(), None);
        // a custom format with a bracketed ISO time is not taken for Envoy's
        let custom = r#"[2026-12-04T10:00:01.000Z] "GET / HTTP/1.1" 200 ok"#;
        assert_ne!(one(custom).dataset, "envoy.access");
        // dmesg lines keep their parser
        let dmesg = "[ 8123.456] EXT4-fs (sda1): Remounting filesystem read-only";
        assert_eq!(one(dmesg).action.as_deref(), Some("fs_read_only"));
    }
}
