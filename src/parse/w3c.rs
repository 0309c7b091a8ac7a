//! W3C extended log files, IIS's access log: a `#Fields:` directive names
//! the columns of the lines after it (`date time c-ip cs-method
//! cs-uri-stem cs-uri-query sc-status cs(User-Agent) …`), values are
//! separated by spaces, spaces inside a value are written `+`, and `-` is
//! an empty value (<https://www.w3.org/TR/WD-logfile.html>, and IIS's
//! field list:
//! <https://learn.microsoft.com/en-us/windows/win32/http/w3c-logging>).
//!
//! The columns are the source's state: a file's directive applies to the
//! lines below it until the next (IIS writes one at every restart). In a
//! stream, directives are read, not kept as events (they are counted with
//! the lines that hold none, as `empty`): they carry no time of their own,
//! and one stamped with the time it was read would move the stream's clock
//! past the requests below it. Sigma's
//! webserver taxonomy is named after these columns, and the requests carry
//! the same ECS fields as an nginx or Apache line, so the same detectors
//! and rules read them. Columns without an ECS name become labels.
//!
//! Amazon CloudFront's standard logs are W3C logs too, with tabs between
//! the values, values percent-encoded (`Mozilla/5.0%20(…)`), `time-taken`
//! in seconds, and a fixed column order that only ever grew at the end
//! (<https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/standard-logs-reference.html>).
//! Collectors often drop the file's `#Fields:` line, so a tab-separated
//! line that opens with a date and holds no more columns than that order
//! is read by it.

use std::borrow::Cow;
use std::sync::Arc;

use crate::event::Event;

use super::SourceState;

/// What a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Date,
    Time,
    ClientIp,
    ClientPort,
    Method,
    UriStem,
    UriQuery,
    Status,
    BytesSent,
    UserAgent,
    Referer,
    User,
    Host,
    /// `time-taken`, in milliseconds.
    TimeTaken,
    Version,
    /// `s-computername`: the server.
    Server,
    /// Kept as a label under the column's name.
    Other,
}

/// The columns of a `#Fields:` directive, in order, with their names;
/// whether they are CloudFront's (tabs, percent-encoding, seconds).
#[derive(Clone, Debug, PartialEq)]
pub struct Columns(Arc<[(Kind, Box<str>)]>, bool);

impl Columns {
    fn parse(names: &str) -> Columns {
        let kind = |name: &str| match name.to_ascii_lowercase().as_str() {
            "date" => Kind::Date,
            "time" => Kind::Time,
            "c-ip" => Kind::ClientIp,
            "c-port" => Kind::ClientPort,
            "cs-method" => Kind::Method,
            "cs-uri-stem" => Kind::UriStem,
            "cs-uri-query" => Kind::UriQuery,
            "sc-status" => Kind::Status,
            "sc-bytes" => Kind::BytesSent,
            "cs(user-agent)" => Kind::UserAgent,
            "cs(referer)" => Kind::Referer,
            "cs-username" => Kind::User,
            "cs-host" | "cs(host)" => Kind::Host,
            "time-taken" => Kind::TimeTaken,
            "cs-version" => Kind::Version,
            "s-computername" => Kind::Server,
            _ => Kind::Other,
        };
        let columns: Arc<[(Kind, Box<str>)]> = names
            .split_ascii_whitespace()
            .map(|n| (kind(n), n.into()))
            .collect();
        let cloudfront = columns.iter().any(|(_, n)| &**n == "x-edge-location");
        Columns(columns, cloudfront)
    }

    /// CloudFront's first `n` columns, for a line without its directive.
    fn cloudfront(n: usize) -> Option<Columns> {
        static ALL: std::sync::OnceLock<Columns> = std::sync::OnceLock::new();
        let all = ALL.get_or_init(|| Columns::parse(CLOUDFRONT_FIELDS));
        // the oldest logs already had the query and the cookie (12 and 13)
        (12..=all.0.len())
            .contains(&n)
            .then(|| Columns(all.0[..n].into(), true))
    }
}

/// CloudFront's standard log columns, in the order it writes them.
const CLOUDFRONT_FIELDS: &str = "date time x-edge-location sc-bytes c-ip cs-method cs(Host) \
    cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type \
    x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol \
    ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields \
    c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len \
    sc-range-start sc-range-end";

/// Whether `b` opens as a CloudFront line: a date, then a tab.
pub fn looks_like_cloudfront(b: &[u8]) -> bool {
    b.len() > 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'\t'
}

/// Whether `b` is a directive line (`#Fields:`, `#Software:`, …).
pub fn is_directive(b: &[u8]) -> bool {
    const DIRECTIVES: [&[u8]; 7] = [
        b"#Fields:",
        b"#Software:",
        b"#Version:",
        b"#Date:",
        b"#Remark:",
        b"#Start-Date:",
        b"#End-Date:",
    ];
    DIRECTIVES.iter().any(|d| b.starts_with(d))
}

/// Takes a directive's columns (`#Fields:`) into `state`; false when
/// `line` is no directive.
pub fn read_directive(line: &str, state: &mut SourceState) -> bool {
    if !is_directive(line.as_bytes()) {
        return false;
    }
    if let Some(names) = line.strip_prefix("#Fields:") {
        state.w3c = Some(Columns::parse(names));
    }
    true
}

/// Parses a directive (taking `#Fields:` into `state`) or a request line
/// of the columns last named; false when the line does not fit them.
pub fn parse(ev: &mut Event, line: &str, state: &mut SourceState) -> bool {
    if line.starts_with('#') {
        ev.dataset = Cow::Borrowed("iis.access");
        ev.set_message_range(0, line.len());
        return read_directive(line, state);
    }
    let sep = if line.contains('\t') { '\t' } else { ' ' };
    let n = line.split(sep).count();
    let Some(Columns(columns, cloudfront)) = state
        .w3c
        .clone()
        .or_else(|| (sep == '\t').then(|| Columns::cloudfront(n)).flatten())
    else {
        return false;
    };
    if n != columns.len() {
        return false;
    }
    ev.dataset = Cow::Borrowed(if cloudfront {
        "aws.cloudfront"
    } else {
        "iis.access"
    });
    let (mut date, mut time, mut stem, mut query) = ("", "", None, None);
    for ((kind, name), v) in columns.iter().zip(line.split(sep)) {
        if v == "-" || v.is_empty() {
            continue;
        }
        match kind {
            Kind::Date => date = v,
            Kind::Time => time = v,
            Kind::ClientIp => ev.set_source_ip(v),
            Kind::ClientPort => ev.source_port = v.parse().ok(),
            Kind::Method => ev.http_method = Some(crate::event::http_method(v)),
            Kind::UriStem => stem = Some(v),
            Kind::UriQuery => query = Some(v),
            Kind::Status => ev.http_status = v.parse().ok(),
            Kind::BytesSent => ev.http_body_bytes = v.parse().ok(),
            Kind::UserAgent if cloudfront => ev.set_user_agent(&percent_decoded(v)),
            Kind::UserAgent => ev.set_user_agent(&v.replace('+', " ")),
            Kind::Referer => ev.push_extra("http.request.referrer", v),
            Kind::User => ev.set_user_name(v),
            Kind::Host => ev.push_extra("url.domain", v),
            Kind::TimeTaken if cloudfront => {
                ev.duration_ns = v.parse::<f64>().ok().map(|s| (s * 1e9).round() as i64)
            }
            Kind::TimeTaken => {
                ev.duration_ns = v.parse::<i64>().ok().map(|ms| ms.saturating_mul(1_000_000))
            }
            Kind::Version => {
                if let Some(version) = super::access::unusual_version(v) {
                    ev.push_extra("http.version", version);
                }
            }
            Kind::Server => ev.set_host_name(v),
            Kind::Other => ev.push_label(Cow::Owned(name.to_string()), v),
        }
    }
    // the URL as the request line had it: the path, then the query
    match (stem, query) {
        (Some(s), Some(q)) => ev.set_url_original(&format!("{s}?{q}")),
        (Some(s), None) => ev.set_url_original(s),
        (None, Some(q)) => ev.set_url_original(&format!("?{q}")),
        (None, None) => {}
    }
    // W3C times are UTC
    let mut at = [0u8; 32];
    if date.len() == 10 && (8..=12).contains(&time.len()) {
        at[..10].copy_from_slice(date.as_bytes());
        at[10] = b'T';
        at[11..11 + time.len()].copy_from_slice(time.as_bytes());
        if let Some((t, _)) = crate::time::parse_rfc3339(&at[..11 + time.len()]) {
            ev.timestamp = t;
        }
    }
    if let Some(status) = ev.http_status {
        super::access::mark_request(ev, status);
    }
    true
}

/// `v` with its `%XX` escapes decoded once (an invalid one kept as it is).
fn percent_decoded(v: &str) -> Cow<'_, str> {
    if !v.contains('%') {
        return Cow::Borrowed(v);
    }
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex(b.get(i + 1)), hex(b.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use crate::parse::{Format, SourceState, parse_line};

    const HEADER: &[&str] = &[
        "#Software: Microsoft Internet Information Services 10.0",
        "#Version: 1.0",
        "#Date: 2026-12-04 10:00:00",
        "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken",
    ];

    #[test]
    fn requests_carry_the_access_fields_of_the_named_columns() {
        let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
        for h in HEADER {
            let ev = parse_line(h, &mut st, 0);
            assert!(ev.parse_error.is_none(), "{h}");
            assert_eq!(ev.category, None);
        }
        let ev = parse_line(
            "2026-12-04 10:00:01 10.0.0.5 GET /owa/auth/x.js a=1&b=2 443 - 203.0.113.11 Mozilla/5.0+(compatible;+zgrab/0.x) - 404 0 2 15",
            &mut st,
            0,
        );
        assert!(ev.parse_error.is_none());
        assert_eq!(ev.dataset, "iis.access");
        assert_eq!(ev.category, Some("web"));
        assert_eq!(ev.source_ip(), Some("203.0.113.11"));
        assert_eq!(ev.http_method.as_deref(), Some("GET"));
        assert_eq!(ev.url_original(), Some("/owa/auth/x.js?a=1&b=2"));
        assert_eq!(ev.url_query(), Some("a=1&b=2"));
        assert_eq!(ev.http_status, Some(404));
        assert_eq!(ev.user_agent(), Some("Mozilla/5.0 (compatible; zgrab/0.x)"));
        assert_eq!(ev.user_name(), None);
        assert_eq!(ev.duration_ns, Some(15_000_000));
        assert_eq!(ev.label("sc-win32-status"), Some("2"));
        assert_eq!(
            crate::time::format_rfc3339(ev.timestamp),
            "2026-12-04T10:00:01.000Z"
        );
    }

    #[test]
    fn a_new_directive_renames_the_columns_and_misfits_are_marked() {
        let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
        // no directive yet: nothing says what the columns are
        let ev = parse_line("2026-12-04 10:00:01 GET /", &mut st, 0);
        assert!(ev.url_original().is_none());
        parse_line(
            "#Fields: time c-ip cs-method cs-uri-stem sc-status",
            &mut st,
            0,
        );
        let ev = parse_line("10:00:02.5 198.51.100.7 POST /wp-login.php 200", &mut st, 0);
        assert_eq!(ev.source_ip(), Some("198.51.100.7"));
        assert_eq!(ev.url_original(), Some("/wp-login.php"));
        assert_eq!(ev.http_status, Some(200));
        // a line with a column too many is kept and marked
        let ev = parse_line("10:00:03 198.51.100.7 GET / 200 extra", &mut st, 0);
        assert!(ev.parse_error.is_some());
        assert_eq!(ev.original, "10:00:03 198.51.100.7 GET / 200 extra");
        // a line of another format is read as that format
        let ev = parse_line(
            r#"203.0.113.9 - - [04/Dec/2026:10:00:00 +0000] "GET /.env HTTP/1.1" 404 19 "-" "curl/8.0""#,
            &mut st,
            0,
        );
        assert!(ev.parse_error.is_none());
        assert_eq!(ev.url_original(), Some("/.env"));
        assert_ne!(ev.dataset, "iis.access");
    }

    /// A CloudFront line, without and with its file's directive.
    #[test]
    fn cloudfront_lines_are_read_by_its_column_order() {
        let line = "2026-12-04\t10:00:05\tCDG50-P2\t703\t203.0.113.21\tGET\td111111abcdef8.cloudfront.net\t/.git/config\t404\t-\tMozilla/5.0%20(compatible;%20Nuclei)\tv=1\t-\tError\t375WZmnR4hhhnlZKNn0D_Lvk==\tshop.example.com\thttps\t62\t0.113\t-\tTLSv1.3\tTLS_AES_128_GCM_SHA256\tError\tHTTP/2.0\t-\t-\t51754\t0.113\tError\ttext/plain\t20\t-\t-";
        let check = |ev: &crate::event::Event| {
            assert!(ev.parse_error.is_none());
            assert_eq!(ev.dataset, "aws.cloudfront");
            assert_eq!(ev.category, Some("web"));
            assert_eq!(ev.source_ip(), Some("203.0.113.21"));
            assert_eq!(ev.url_original(), Some("/.git/config?v=1"));
            assert_eq!(ev.http_status, Some(404));
            assert_eq!(ev.user_agent(), Some("Mozilla/5.0 (compatible; Nuclei)"));
            assert_eq!(ev.duration_ns, Some(113_000_000));
            assert_eq!(
                crate::time::format_rfc3339(ev.timestamp),
                "2026-12-04T10:00:05.000Z"
            );
        };
        // collectors often ship the lines without the file's directives
        let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
        check(&parse_line(line, &mut st, 0));
        // an older line, fewer columns: the order's first ones
        let old: Vec<&str> = line.split('\t').take(24).collect();
        let ev = parse_line(&old.join("\t"), &mut st, 0);
        assert_eq!(ev.source_ip(), Some("203.0.113.21"));
        let mut st = SourceState::new(Format::Auto, 1_780_000_000_000);
        parse_line("#Version: 1.0", &mut st, 0);
        parse_line(
            &format!("#Fields: {}", super::CLOUDFRONT_FIELDS),
            &mut st,
            0,
        );
        check(&parse_line(line, &mut st, 0));
    }
}
