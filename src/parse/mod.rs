//! Parsing: raw lines in, ECS events out (SPEC 4.1).
//!
//! ```text
//! line ─> detect format (first bytes) ─> header parser ─> program parser
//!         syslog 3164/5424, access,        (syslog)        sshd, pam, sudo,
//!         error logs, JSON, logfmt,                         kernel, kubelet
//!         klog, kubectl events, dmesg
//! ```
//! Detection looks at the first bytes only, so it costs a few comparisons per
//! line; a source may name its format and skip it. A line no parser
//! understands still becomes an event with `error.type: parse_failure`
//! (counted by the parse stage): nothing is dropped. Every parser is a
//! function of the line and a small per-source [`SourceState`] (year
//! inference, JSON field mapping), so parsing is deterministic.

mod access;
mod alertmanager;
mod auditd;
mod auth;
mod elb;
mod envoy;
mod errorlog;
mod haproxy;
mod json;
mod kernel;
mod kube;
mod logfmt;
mod mail;
mod sshd;
mod syslog;
mod w3c;

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::{Event, Line};
use crate::name::Name;

pub use alertmanager::parse_webhook;
pub use json::JsonMapping;
pub use syslog::YearInference;

/// Formats a source may name; `auto` detects per line.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "kebab-case")]
pub enum Format {
    #[default]
    Auto,
    Syslog,
    /// nginx or apache access log, combined or common.
    Access,
    NginxError,
    ApacheError,
    Json,
    Logfmt,
    Kernel,
    Klog,
    KubeEvents,
    Alertmanager,
    /// W3C extended log (IIS): columns named by a `#Fields:` directive.
    W3c,
    /// AWS load balancer access log (Application or Classic).
    Elb,
    /// Envoy's or Istio's default text access log.
    Envoy,
    /// Linux audit records (`type=… msg=audit(…): …`).
    Auditd,
    /// No parsing: the event is the line (`message` = line).
    Raw,
}

/// Per-source parser state and settings.
#[derive(Clone, Debug)]
pub struct SourceState {
    pub format: Format,
    /// `event.dataset` for lines whose parser does not know it (e.g. `nginx.access`).
    pub dataset_hint: Option<Name>,
    /// `host.name` for formats that do not carry it.
    pub host_hint: Option<Name>,
    /// The program that wrote lines without a syslog header (`sshd`, from a
    /// pushed stream's labels); their message parser is chosen by it.
    pub program_hint: Option<Name>,
    pub json: JsonMapping,
    pub year: syslog::YearInference,
    pub file_path: Option<Name>,
    pub time_domain: u32,
    /// The columns of the last W3C `#Fields:` directive read.
    pub w3c: Option<w3c::Columns>,
}

impl SourceState {
    /// The format of `line`: the source's, or detected; below a W3C
    /// `#Fields:` directive, the columns it named.
    fn format_of(&self, line: &str) -> Format {
        match self.format {
            Format::Auto if self.w3c.is_some() => Format::W3c,
            Format::Auto => detect(line.as_bytes()),
            f => f,
        }
    }

    /// A source whose year-less timestamps are placed relative to `reference_ms`.
    pub fn new(format: Format, reference_ms: i64) -> SourceState {
        SourceState {
            format,
            dataset_hint: None,
            host_hint: None,
            program_hint: None,
            json: JsonMapping::default(),
            year: syslog::YearInference::new(reference_ms),
            file_path: None,
            time_domain: 0,
            w3c: None,
        }
    }
}

/// Parses one line into events: one, or one per alert for an Alertmanager
/// payload. Never fails: a line no parser understands is kept and marked.
pub fn parse_into(line: &str, state: &mut SourceState, ingested_ms: i64, out: &mut Vec<Event>) {
    parse_line_of(line, Line::from(line), state, ingested_ms, out);
}

/// [`parse_into`] for a line of a batch: `original` is the same text as
/// `line`, kept by the event as its `event.original` (a range of the
/// batch's buffer: see [`Line`]).
pub fn parse_line_of(
    line: &str,
    mut original: Line,
    state: &mut SourceState,
    ingested_ms: i64,
    out: &mut Vec<Event>,
) {
    let line = line.strip_suffix('\r').unwrap_or(line);
    original.truncate(line.len());
    let format = state.format_of(line);
    // a W3C directive is the source's state, not an event
    if format == Format::W3c && w3c::read_directive(line, state) {
        return;
    }
    if matches!(format, Format::Json | Format::Alertmanager)
        && alertmanager::looks_like_webhook(line)
        && let Ok(events) = parse_webhook(line, ingested_ms)
    {
        for mut ev in events {
            // each Alertmanager group is a time domain of its own
            ev.time_domain ^= state.time_domain;
            ev.file_path = state.file_path.clone();
            out.push(ev);
        }
        return;
    }
    // built in place: an event is large, and moving it costs a copy
    out.push(Event::raw(original, Cow::Borrowed("unknown")));
    if let Some(ev) = out.last_mut() {
        parse_as(ev, line, format, state, ingested_ms);
    }
}

/// Bounds an event's time by when it was received: a record more than
/// `max_skew_ms` ahead (a wrong clock, or a spoofed datagram dated 2099)
/// is placed at `received_ms` and labelled with the time it claimed, so
/// it can never move its stream's watermark past the present and make
/// every later record late. Returns whether the time was clamped.
pub fn bound_to_receipt(ev: &mut Event, received_ms: i64, max_skew_ms: i64) -> bool {
    if ev.timestamp <= received_ms.saturating_add(max_skew_ms) {
        return false;
    }
    ev.push_extra(
        "event.time_clamped_from",
        crate::time::format_rfc3339(ev.timestamp),
    );
    ev.timestamp = received_ms;
    true
}

/// Parses one line into one event (Alertmanager payloads: see [`parse_into`]).
pub fn parse_line(line: &str, state: &mut SourceState, ingested_ms: i64) -> Event {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let format = state.format_of(line);
    let mut ev = Event::raw(line.into(), Cow::Borrowed("unknown"));
    parse_as(&mut ev, line, format, state, ingested_ms);
    ev
}

/// Parses `line` into `ev`, a raw event holding that same line.
///
/// Parsers fill the event from slices of `line`, which the event keeps as
/// ranges of its `original` (see [`Text`]); its fields read as set
/// meanwhile, since `original` holds the same text.
fn parse_as(ev: &mut Event, line: &str, format: Format, state: &mut SourceState, ingested_ms: i64) {
    ev.ingested = ingested_ms;
    ev.time_domain = state.time_domain;
    ev.file_path = state.file_path.clone();
    ev.parsing(line);
    let ok = parse_format(ev, line, format, state);
    let ok = ok
        || (format == Format::Auto
            && state
                .program_hint
                .as_deref()
                .is_some_and(|p| syslog::parse_bare(ev, line, p)));
    unmap_source_ip(ev);
    ev.parsed();
    if !ok && format != Format::Raw {
        ev.parse_error = Some(Cow::Borrowed(if format == Format::Auto {
            "no parser recognised the line"
        } else {
            "line does not match the source's format"
        }));
    }
    if ev.dataset == "unknown"
        && let Some(d) = &state.dataset_hint
    {
        ev.dataset = d.to_cow();
    }
    if ev.host_name.is_none() {
        ev.host_name = state.host_hint.as_ref().map(Name::to_text);
    }
    if ev.timestamp == 0 {
        ev.timestamp = ingested_ms;
    }
    ev.hash = fingerprint(ev);
}

/// A client reached over IPv4 on a dual-stack socket is logged as
/// `::ffff:203.0.113.5` (vsftpd, Dovecot, Java servers): the same address
/// as `203.0.113.5` in the next log, so one attacker would be two
/// offenders, and a block of the mapped form would miss its IPv4 traffic.
fn unmap_source_ip(ev: &mut Event) {
    let Some(v4) = ev
        .source_ip()
        .and_then(|ip| ip.strip_prefix("::ffff:"))
        .filter(|v4| v4.contains('.') && is_ip(v4))
    else {
        return;
    };
    ev.source_ip = Some(ev.text(v4));
}

/// Fills `ev` from `line` by the parser of `format`; false when it does
/// not fit.
fn parse_format(ev: &mut Event, line: &str, format: Format, state: &mut SourceState) -> bool {
    match format {
        // bare kernel lines (node-problem-detector, journal exports) have no header
        Format::Auto => kernel::parse_message(ev, line),
        Format::Raw => false,
        Format::Syslog => syslog::parse(ev, line, state),
        Format::Access => access::parse(ev, line, state),
        Format::NginxError => errorlog::parse_nginx(ev, line),
        Format::ApacheError => errorlog::parse_apache(ev, line),
        Format::Json | Format::Alertmanager => json::parse(ev, line, state),
        Format::Logfmt => logfmt::parse(ev, line),
        Format::Kernel => kernel::parse_dmesg(ev, line) || kernel::parse_message(ev, line),
        Format::Klog => kube::parse_klog_line(ev, line, state),
        Format::Elb => elb::parse(ev, line),
        Format::Envoy => envoy::parse(ev, line),
        Format::Auditd => auditd::parse(ev, line),
        Format::KubeEvents => kube::parse_events_line(ev, line),
        // a detected source's line that fits no W3C columns (files of
        // other formats after an IIS log on one stream) is detected anew
        Format::W3c => {
            w3c::parse(ev, line, state)
                || (state.format == Format::Auto
                    && !line.starts_with('#')
                    && match detect(line.as_bytes()) {
                        Format::W3c => false,
                        f => parse_format(ev, line, f, state),
                    })
        }
    }
}

/// The dedup fingerprint: dataset, host and message, without the timestamp,
/// so a line repeated within the dedup window collapses.
///
/// Each part is hashed on its own and the three hashes once more: one-shot
/// hashes of short inputs cost a fraction of a streaming hasher's setup.
pub fn fingerprint(ev: &Event) -> u64 {
    use xxhash_rust::xxh3::xxh3_64;
    let parts = [
        ev.dataset.as_bytes(),
        ev.host_name().unwrap_or("").as_bytes(),
        ev.message().as_bytes(),
    ];
    let mut key = [0u8; 24];
    for (chunk, part) in key.chunks_exact_mut(8).zip(parts) {
        chunk.copy_from_slice(&xxh3_64(part).to_le_bytes());
    }
    xxh3_64(&key)
}

/// Guesses a line's format from its first bytes.
pub fn detect(b: &[u8]) -> Format {
    let Some(&first) = b.first() else {
        return Format::Raw;
    };
    match first {
        b'{' => Format::Json,
        b'<' => Format::Syslog,
        b'#' if w3c::is_directive(b) => Format::W3c,
        b'[' => {
            if b.get(1).is_some_and(|c| c.is_ascii_alphabetic()) {
                Format::ApacheError
            } else if envoy::looks_like_envoy(b) {
                Format::Envoy
            } else {
                Format::Kernel
            }
        }
        b'I' | b'W' | b'E' | b'F' if kube::looks_like_klog(b) => Format::Klog,
        b'A'..=b'Z' if crate::time::month_from_abbrev(b).is_some() && b.get(3) == Some(&b' ') => {
            Format::Syslog
        }
        b'0'..=b'9' => {
            if b.len() > 19 && b[4] == b'/' && b[7] == b'/' && b[10] == b' ' {
                Format::NginxError
            } else if b.len() > 19 && b[4] == b'-' && b[7] == b'-' && matches!(b[10], b'T' | b' ') {
                // ISO timestamp first: rsyslog's precise format, or an app log
                if syslog::looks_like_iso_syslog(b) {
                    Format::Syslog
                } else if b[10] == b'T' && elb::looks_like_elb(b) {
                    Format::Elb
                } else {
                    Format::Logfmt
                }
            } else if w3c::looks_like_cloudfront(b) {
                Format::W3c
            } else if access::looks_like_access(b) {
                Format::Access
            } else if kube::looks_like_events_line(b) {
                Format::KubeEvents
            } else {
                Format::Auto
            }
        }
        _ => {
            if auditd::looks_like_auditd(b) {
                Format::Auditd
            } else if elb::opens_like_alb(b) && elb::looks_like_elb(b) {
                Format::Elb
            } else if access::looks_like_access(b) {
                Format::Access
            } else if kube::looks_like_events_line(b) {
                Format::KubeEvents
            } else if logfmt::looks_like_logfmt(b) {
                Format::Logfmt
            } else {
                Format::Auto
            }
        }
    }
}

/// Splits off the next space-delimited token: (token, rest without leading spaces).
pub(crate) fn token(s: &str) -> (&str, &str) {
    match find_byte(s, b' ') {
        Some(i) => (&s[..i], s[i + 1..].trim_start_matches(' ')),
        None => (s, ""),
    }
}

// Parsers look for a byte or a short separator (`' '`, `'['`, `": "`,
// `" for "`) a few bytes into a short header or message. The standard
// `str::find` sets up a searcher on every call (a vector search for a
// char, a two-way searcher for a string), which costs more than a plain
// scan of those few bytes. Matches of an ASCII byte or a whole UTF-8
// string always lie on character boundaries, so the offsets below slice
// `s` safely.

/// Where the ASCII byte `b` first occurs in `s`.
pub(crate) fn find_byte(s: &str, b: u8) -> Option<usize> {
    s.bytes().position(|c| c == b)
}

/// Where the non-empty `needle` first occurs in `s`.
pub(crate) fn find_str(s: &str, needle: &str) -> Option<usize> {
    let (mut starts, at) = needle_starts(s, needle)?;
    starts.find(|&i| at(i))
}

/// Where the non-empty `needle` last occurs in `s`.
pub(crate) fn rfind_str(s: &str, needle: &str) -> Option<usize> {
    let (starts, at) = needle_starts(s, needle)?;
    starts.rev().find(|&i| at(i))
}

/// The offsets where `needle` could start in `s`, and whether it does at
/// one; None for an empty needle or one longer than `s`.
fn needle_starts<'a>(
    s: &'a str,
    needle: &'a str,
) -> Option<(std::ops::RangeInclusive<usize>, impl Fn(usize) -> bool + 'a)> {
    let (h, n) = (s.as_bytes(), needle.as_bytes());
    let (&first, rest) = n.split_first()?;
    let last = h.len().checked_sub(n.len())?;
    Some((0..=last, move |i: usize| {
        h[i] == first && h[i + 1..i + n.len()] == *rest
    }))
}

/// `s` split at every ASCII byte `a` or `b`, as `s.split([a, b])` splits
/// it (without decoding each character to compare it).
pub(crate) fn split_either(s: &str, a: u8, b: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.bytes().position(|c| c == a || c == b) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// `s` split around the first `needle`, as `str::split_once` does.
pub(crate) fn split_once_str<'a>(s: &'a str, needle: &str) -> Option<(&'a str, &'a str)> {
    let i = find_str(s, needle)?;
    Some((&s[..i], &s[i + needle.len()..]))
}

/// Byte offset of `part` (a slice of `whole`) within `whole`.
pub(crate) fn offset_in(whole: &str, part: &str) -> usize {
    (part.as_ptr() as usize)
        .saturating_sub(whole.as_ptr() as usize)
        .min(whole.len())
}

/// Whether `s` is an IP address, exactly as `std::net::IpAddr` parses one.
/// Dotted quads, most of what logs hold, are checked in one byte pass;
/// anything with a colon goes to the standard parser.
/// `destination.domain` for a request that asks the server to go
/// elsewhere: a CONNECT's `host:port`, or an absolute URI (`GET
/// http://host/…`) naming another host than the server's own
/// (`url.domain`, where the log gives it). An origin server has no reason
/// to get either: it is a client testing for an open proxy.
pub(crate) fn mark_proxy_target(ev: &mut Event) {
    let Some(u) = ev.url_original() else {
        return;
    };
    let host = if ev.http_method.as_deref() == Some("CONNECT") {
        host_of(u)
    } else {
        match absolute_uri(u) {
            Some((host, _)) => host,
            None => return,
        }
    };
    if host.is_empty()
        || ev
            .extra("url.domain")
            .is_some_and(|d| d.eq_ignore_ascii_case(host))
    {
        return;
    }
    let host = host.to_owned();
    ev.push_extra("destination.domain", host);
}

/// An absolute URI's host and what follows its authority (`/p?q`, maybe
/// empty): `http://user@host:8080/p?q` is `("host", "/p?q")`; None for
/// any other request target.
pub(crate) fn absolute_uri(u: &str) -> Option<(&str, &str)> {
    let b = u.as_bytes();
    let skip = if b.len() > 7 && b[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else if b.len() > 8 && b[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else {
        return None;
    };
    let rest = &u[skip..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some((host_of(&rest[..end]), &rest[end..]))
}

/// The host of an authority (`user@host:port`).
fn host_of(authority: &str) -> &str {
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

pub(crate) fn is_ip(s: &str) -> bool {
    // dotted quads first: they are most addresses, and hold no `:`
    is_ipv4(s.as_bytes())
        || (s.as_bytes().contains(&b':') && s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// Four decimal octets of at most 255, without leading zeros (as std).
fn is_ipv4(b: &[u8]) -> bool {
    let mut i = 0;
    for octet in 0..4 {
        let start = i;
        let mut value = 0u32;
        while i < b.len() && i - start < 3 && b[i].is_ascii_digit() {
            value = value * 10 + u32::from(b[i] - b'0');
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || value > 255 || (digits > 1 && b[start] == b'0') {
            return false;
        }
        if octet < 3 {
            if b.get(i) != Some(&b'.') {
                return false;
            }
            i += 1;
        }
    }
    i == b.len()
}

#[cfg(test)]
pub(crate) mod tests;
