//! HAProxy's HTTP log (`option httplog`), as it reaches syslog:
//!
//! ```text
//! 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {} "GET /index.html HTTP/1.1"
//! ```
//!
//! client address and port, accept date, frontend, backend/server, timers,
//! status, bytes, cookies, termination state, connection counts, queues,
//! captured headers (when configured), then the request line
//! (<https://docs.haproxy.org/2.8/configuration.html#8.2.3>). A load
//! balancer in front of the web servers sees every client first, so its
//! requests carry the same fields as an access log line and reach the same
//! detectors. The captured headers are left out: which header is which is
//! the configuration's, not the line's. Lines of other formats (TCP logs,
//! start-up messages) are left as the syslog message they are.

use std::borrow::Cow;

use crate::event::Event;

/// Parses an HTTP log message into `ev`; false when `msg` is not one.
pub fn parse(ev: &mut Event, msg: &str) -> bool {
    let mut words = msg.split(' ');
    let Some((ip, port)) = words.next().and_then(|w| w.rsplit_once(':')) else {
        return false;
    };
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if !super::is_ip(ip) || !words.next().is_some_and(|d| d.starts_with('[')) {
        return false;
    }
    let (Some(frontend), Some(backend), Some(timers), Some(status)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return false;
    };
    // the timers are five numbers (-1 where a phase never ran)
    if timers.split('/').count() != 5 || !backend.contains('/') {
        return false;
    }
    let Ok(status) = status.parse::<u16>() else {
        return false;
    };
    // the request line is the last quoted part (HAProxy writes a quote
    // inside it, or in a captured header, as `#22`)
    let Some(quoted) = msg.strip_suffix('"') else {
        return false;
    };
    let Some(open) = memchr::memrchr(b'"', quoted.as_bytes()) else {
        return false;
    };
    let request = &quoted[open + 1..];
    ev.set_source_ip(ip);
    ev.source_port = port.parse().ok();
    ev.http_status = Some(status);
    ev.http_body_bytes = words.next().and_then(|b| b.parse().ok());
    // `<BADREQ>`: nothing HAProxy could read as a request
    if !super::access::request_line(ev, request) && !request.starts_with('<') && !request.is_empty()
    {
        ev.set_url_original(request);
    }
    ev.push_label("frontend", frontend.trim_end_matches('~'));
    ev.push_label("backend", backend);
    ev.dataset = Cow::Borrowed("haproxy.access");
    super::access::mark_request(ev, status);
    true
}

#[cfg(test)]
mod tests {
    use crate::parse::tests::one;

    #[test]
    fn http_log_lines_carry_the_access_fields() {
        let ev = one(
            r#"Dec  4 10:00:00 lb1 haproxy[1234]: 203.0.113.10:51234 [04/Dec/2026:10:00:00.123] www~ be_web/web1 0/0/1/2/3 404 245 - - ---- 1/1/0/0/0 0/0 {example.com|curl/8.0} "GET /phpmyadmin/index.php?x=1 HTTP/1.1""#,
        );
        assert_eq!(ev.dataset, "haproxy.access");
        assert_eq!(ev.category, Some("web"));
        assert_eq!(ev.source_ip(), Some("203.0.113.10"));
        assert_eq!(ev.source_port, Some(51234));
        assert_eq!(ev.http_method.as_deref(), Some("GET"));
        assert_eq!(ev.url_original(), Some("/phpmyadmin/index.php?x=1"));
        assert_eq!(ev.http_status, Some(404));
        assert_eq!(ev.http_body_bytes, Some(245));
        assert_eq!(ev.label("frontend"), Some("www"));
        assert_eq!(ev.label("backend"), Some("be_web/web1"));
        assert_eq!(ev.action.as_deref(), Some("http_request"));
        assert_eq!(ev.process_name(), Some("haproxy"));
    }

    #[test]
    fn bad_requests_and_ipv6_clients() {
        let ev = one(
            r#"Dec  4 10:00:01 lb1 haproxy[1234]: 2001:db8::7:40000 [04/Dec/2026:10:00:01.000] www www/<NOSRV> -1/-1/-1/-1/0 400 187 - - PR-- 1/1/0/0/0 0/0 "<BADREQ>""#,
        );
        assert_eq!(ev.source_ip(), Some("2001:db8::7"));
        assert_eq!(ev.http_status, Some(400));
        assert_eq!(ev.url_original(), None);
        let ev = one(
            r#"Dec  4 10:00:02 lb1 haproxy[1234]: 198.51.100.9:40001 [04/Dec/2026:10:00:02.000] www be/web1 0/0/0/1/1 200 10 - - ---- 1/1/0/0/0 0/0 "CONNECT mail.example.net:25 HTTP/1.0""#,
        );
        assert_eq!(ev.extra("destination.domain"), Some("mail.example.net"));
        // start-up and TCP log lines stay plain messages
        let ev = one("Dec  4 10:00:03 lb1 haproxy[1234]: Proxy www started.");
        assert_eq!(ev.http_status, None);
        assert_eq!(ev.message(), "Proxy www started.");
    }
}
