//! Loki push bodies (`POST /loki/api/v1/push`), decoded as Loki decodes them.
//!
//! ```text
//! Content-Encoding: (none) | snappy | gzip | deflate   -> bytes
//! Content-Type: application/json        -> {"streams":[{"stream":{…},"values":[["<ns>","line",{meta}]]}]}
//!               anything else / absent  -> snappy block of logproto.PushRequest
//! ```
//! Every size is checked before memory is spent on it: a compressed body
//! inflates in steps that stop at `max_bytes`, a snappy block's declared
//! length is checked before it is allocated, entries are counted before
//! they are built, and each step is first taken from ingestion's memory
//! budget ([`super::budget`]): a bomb gets a 413, a crowd of them a 503,
//! never the heap. The protobuf messages are Loki's published
//! `push.proto`, declared here with prost's derive.

use std::io::Read;

use serde::Deserialize;

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`: labels in Prometheus text form, `{a="b"}`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

/// `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// One decoded stream: its labels and its entries.
#[derive(Debug, Default, PartialEq)]
pub struct PushedStream {
    pub labels: Vec<(String, String)>,
    pub lines: Vec<String>,
    /// Entry timestamps, epoch ms.
    pub times: Vec<i64>,
    /// Structured metadata: (entry index, name, value).
    pub metadata: Vec<(u32, String, String)>,
}

/// Why a body was refused; each maps to one HTTP status.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PushError {
    /// 400: the client must fix the body.
    #[error("{0}")]
    Invalid(String),
    /// 413: the body, or what it inflates or decodes to, is over a limit.
    #[error("{0}")]
    TooLarge(String),
    /// 415: an encoding this endpoint does not speak.
    #[error("{0}")]
    Unsupported(String),
    /// 503: ingestion's memory budget has no room for it now.
    #[error("{0}")]
    Overloaded(String),
}

/// How much one body may become.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Bytes a compressed body may inflate to.
    pub max_bytes: usize,
    /// Entries one body may carry, over all its streams.
    pub max_lines: usize,
}

/// What a decoded entry costs beyond its line's bytes (the `String`, its
/// timestamp, the vectors' slots).
const ENTRY_OVERHEAD: usize = 64;

fn over_budget(what: &str, n: usize) -> PushError {
    PushError::Overloaded(format!(
        "ingestion memory budget spent: no room to {what} ({n} bytes); retry later"
    ))
}

/// Decodes a push body into its streams, with no memory budget (tools
/// and tests; the API uses [`decode_within`]).
pub fn decode(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    max_bytes: usize,
) -> Result<Vec<PushedStream>, PushError> {
    let budget = super::budget::MemoryBudget::new(usize::MAX);
    let mut grant = budget.grant(0).expect("an empty grant");
    let limits = DecodeLimits {
        max_bytes,
        max_lines: usize::MAX,
    };
    decode_within(content_type, content_encoding, body, limits, &mut grant)
}

/// Decodes a push body into its streams, growing `grant` before each
/// allocation: what inflating, decoding and the decoded entries will
/// hold is taken from the budget first, and a body whose needs the
/// budget cannot meet is refused (503) before anything is allocated for
/// it. On success the grant holds what the entries will cost until the
/// parse stage has made them events.
pub fn decode_within(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    limits: DecodeLimits,
    grant: &mut super::budget::Grant,
) -> Result<Vec<PushedStream>, PushError> {
    let base = grant.held();
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    let streams = if mime.as_deref() == Some("application/json") {
        // JSON is decoded as it inflates: no inflated copy is ever held,
        // and each entry is charged (and counted) as serde builds it
        match decompressor(content_encoding, body)? {
            None => metered(limits, grant, || decode_json(body))?,
            Some(r) => {
                let mut counted = Counted {
                    inner: r.take(limits.max_bytes as u64 + 1),
                    n: 0,
                };
                let r = metered(limits, grant, || {
                    decode_json_from(std::io::BufReader::with_capacity(64 << 10, &mut counted))
                });
                if counted.n > limits.max_bytes as u64 {
                    return Err(PushError::TooLarge(format!(
                        "the body decompresses to more than {} bytes",
                        limits.max_bytes
                    )));
                }
                r?
            }
        }
    } else {
        let inflated = inflate(content_encoding, body, limits.max_bytes, grant)?;
        let body: &[u8] = inflated.as_deref().unwrap_or(body);
        decode_protobuf(body, limits, grant)?
    };
    if let Some(s) = streams.iter().find(|s| s.labels.is_empty()) {
        return Err(PushError::Invalid(format!(
            "a stream with {} entries has no labels: at least one label pair is required per stream",
            s.lines.len()
        )));
    }
    let lines: usize = streams.iter().map(|s| s.lines.len()).sum();
    if lines > limits.max_lines {
        return Err(PushError::TooLarge(format!(
            "the body carries {lines} entries, more than the limit of {}: send smaller batches",
            limits.max_lines
        )));
    }
    // from here on only the entries are held, until the parse stage is done
    let cost: usize = streams
        .iter()
        .flat_map(|s| s.lines.iter())
        .map(|l| super::budget::line_cost(l.len()))
        .sum::<usize>()
        + streams
            .iter()
            .flat_map(|s| s.metadata.iter())
            .map(|(_, k, v)| k.len() + v.len() + ENTRY_OVERHEAD)
            .sum::<usize>();
    // past the decoding peak, so there is room for the entries unless
    // they cost more than their decoding did (they rarely do)
    if !grant.resize(base + cost) {
        return Err(over_budget("queue the entries", cost));
    }
    Ok(streams)
}

/// A reader that undoes `Content-Encoding`; `None` when the body is used
/// as it is.
fn decompressor<'a>(
    encoding: Option<&str>,
    body: &'a [u8],
) -> Result<Option<Box<dyn Read + 'a>>, PushError> {
    let enc = encoding.map(|e| e.trim().to_ascii_lowercase());
    Ok(Some(match enc.as_deref() {
        None | Some("") | Some("identity") | Some("snappy") => return Ok(None),
        Some("gzip") | Some("x-gzip") => Box::new(flate2::read::MultiGzDecoder::new(body)),
        // Loki reads raw DEFLATE; RFC 9110's deflate is zlib-wrapped: take both
        Some("deflate") if is_zlib(body) => Box::new(flate2::read::ZlibDecoder::new(body)),
        Some("deflate") => Box::new(flate2::read::DeflateDecoder::new(body)),
        Some(other) => {
            return Err(PushError::Unsupported(format!(
                "Content-Encoding {other:?} not supported (use gzip, deflate, snappy or none)"
            )));
        }
    }))
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Undoes `Content-Encoding` of a protobuf body; `None` when the body is
/// used as it is. The output grows in steps, each taken from `grant`
/// before it is allocated.
fn inflate(
    encoding: Option<&str>,
    body: &[u8],
    max_bytes: usize,
    grant: &mut super::budget::Grant,
) -> Result<Option<Vec<u8>>, PushError> {
    let Some(mut reader) = decompressor(encoding, body)? else {
        return Ok(None);
    };
    let base = grant.held();
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = reader
            .read(&mut chunk)
            .map_err(|e| PushError::Invalid(format!("cannot decompress the body: {e}")))?;
        if n == 0 {
            break;
        }
        if out.len() + n > max_bytes {
            return Err(PushError::TooLarge(format!(
                "the body decompresses to more than {max_bytes} bytes"
            )));
        }
        if out.len() + n > out.capacity() {
            let cap = (out.len() + n).max(2 * out.capacity()).min(max_bytes);
            if !grant.resize(base + cap) {
                return Err(over_budget("decompress the body", cap));
            }
            out.reserve_exact(cap - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(out))
}

/// A zlib header: deflate method, 32K window or less, valid check bits.
fn is_zlib(b: &[u8]) -> bool {
    b.len() >= 2
        && b[0] & 0x0f == 8
        && b[0] >> 4 <= 7
        && (u16::from(b[0]) << 8 | u16::from(b[1])) % 31 == 0
}

/// The most a raw snappy block can expand: 64 bytes out per 3 bytes in.
const SNAPPY_MAX_RATIO: usize = 22;

fn decode_protobuf(
    body: &[u8],
    limits: DecodeLimits,
    grant: &mut super::budget::Grant,
) -> Result<Vec<PushedStream>, PushError> {
    let max_bytes = limits.max_bytes;
    let len = snap::raw::decompress_len(body)
        .map_err(|e| PushError::Invalid(format!("body is not a snappy block: {e}")))?;
    if len > max_bytes {
        return Err(PushError::TooLarge(format!(
            "the snappy block declares {len} bytes, more than the limit of {max_bytes}"
        )));
    }
    // a snappy element expands at most 64 bytes from 3 (a copy with a
    // two-byte offset): a larger declared length is a lie, refused before
    // anything is allocated for it
    if len > body.len().saturating_mul(SNAPPY_MAX_RATIO) {
        return Err(PushError::Invalid(format!(
            "the snappy block declares {len} bytes, more than its {} bytes can encode",
            body.len()
        )));
    }
    if !grant.grow(len) {
        return Err(over_budget("decompress the body", len));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| PushError::Invalid(format!("body is not a snappy block: {e}")))?;
    // entries counted on the wire before prost builds them
    let entries = count_entries(&raw)
        .ok_or_else(|| PushError::Invalid("body is not a logproto.PushRequest".into()))?;
    if entries > limits.max_lines {
        return Err(PushError::TooLarge(format!(
            "the body carries {entries} entries, more than the limit of {}: send smaller batches",
            limits.max_lines
        )));
    }
    let decoded = raw.len() + entries.saturating_mul(ENTRY_OVERHEAD);
    if !grant.grow(decoded) {
        return Err(over_budget("decode the body", decoded));
    }
    let req = <PushRequest as prost::Message>::decode(raw.as_slice())
        .map_err(|e| PushError::Invalid(format!("body is not a logproto.PushRequest: {e}")))?;
    req.streams
        .into_iter()
        .map(|s| {
            let labels = parse_labels(&s.labels).map_err(PushError::Invalid)?;
            let mut out = PushedStream {
                labels,
                ..PushedStream::default()
            };
            for (i, e) in s.entries.into_iter().enumerate() {
                let ts = e.timestamp.unwrap_or_default();
                out.times
                    .push(ts.seconds.saturating_mul(1000) + i64::from(ts.nanos) / 1_000_000);
                out.lines.push(e.line);
                for m in e.structured_metadata {
                    out.metadata.push((i as u32, m.name, m.value));
                }
            }
            Ok(out)
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPush {
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
struct JsonStream {
    stream: std::collections::BTreeMap<String, String>,
    #[serde(deserialize_with = "metered_entries")]
    values: Vec<JsonEntry>,
}

/// The budget and count a JSON decode charges its entries to, set for
/// the decoding thread by [`metered`] (serde gives a `Deserialize` impl
/// no context of its own).
struct Meter {
    grant: super::budget::Grant,
    /// Bytes taken from the budget ahead of the entries that will use
    /// them: the shared counter is touched once per `CHARGE_STEP`, not
    /// once per entry.
    credit: usize,
    lines: usize,
    max_lines: usize,
    stopped: Option<PushError>,
}

thread_local! {
    static METER: std::cell::RefCell<Option<Meter>> = const { std::cell::RefCell::new(None) };
}

/// Runs a JSON decode with its entries charged to `grant` and counted
/// against `limits.max_lines`; a decode stopped by either says why.
fn metered<T>(
    limits: DecodeLimits,
    grant: &mut super::budget::Grant,
    decode: impl FnOnce() -> Result<T, PushError>,
) -> Result<T, PushError> {
    METER.with(|m| {
        *m.borrow_mut() = Some(Meter {
            grant: grant.empty(),
            credit: 0,
            lines: 0,
            max_lines: limits.max_lines,
            stopped: None,
        });
    });
    let r = decode();
    let meter = METER.with(|m| m.borrow_mut().take());
    if let Some(m) = meter {
        grant.absorb(m.grant);
        if let Some(why) = m.stopped {
            return Err(why);
        }
    }
    r
}

/// What the meter takes from the budget at a time (what is left unused
/// is given back when the decode ends: see [`decode_within`]).
const CHARGE_STEP: usize = 64 << 10;

/// Charges one decoded entry; `Err` stops the decode.
fn charge(cost: usize) -> Result<(), &'static str> {
    METER.with(|m| {
        let mut m = m.borrow_mut();
        let Some(m) = m.as_mut() else {
            return Ok(());
        };
        m.lines += 1;
        if m.lines > m.max_lines {
            m.stopped = Some(PushError::TooLarge(format!(
                "the body carries more than {} entries: send smaller batches",
                m.max_lines
            )));
            return Err("too many entries");
        }
        if cost > m.credit {
            let step = cost.max(CHARGE_STEP);
            if !m.grant.grow(step) {
                m.stopped = Some(over_budget("decode the body", m.grant.held() + step));
                return Err("over the memory budget");
            }
            m.credit += step;
        }
        m.credit -= cost;
        Ok(())
    })
}

/// A stream's `values`, each entry charged as it is built.
fn metered_entries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<JsonEntry>, D::Error> {
    struct Entries;
    impl<'de> serde::de::Visitor<'de> for Entries {
        type Value = Vec<JsonEntry>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of [timestamp, line] entries")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(e) = seq.next_element::<JsonEntry>()? {
                let meta: usize =
                    e.2.iter()
                        .map(|(k, v)| k.len() + v.len() + ENTRY_OVERHEAD)
                        .sum();
                charge(super::budget::line_cost(e.1.len()) + meta)
                    .map_err(serde::de::Error::custom)?;
                out.push(e);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Entries)
}

/// `["<ns>", "line"]` or `["<ns>", "line", {"name": "value"}]`.
#[derive(Deserialize)]
struct JsonEntry(
    NsTimestamp,
    String,
    #[serde(default)] std::collections::BTreeMap<String, String>,
);

/// Nanoseconds since the epoch, as a string (Loki's form) or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum NsTimestamp {
    Text(String),
    Number(i64),
}

fn decode_json(body: &[u8]) -> Result<Vec<PushedStream>, PushError> {
    let push: JsonPush = serde_json::from_slice(body)
        .map_err(|e| PushError::Invalid(format!("invalid Loki push JSON: {e}")))?;
    json_streams(push)
}

fn decode_json_from(r: impl Read) -> Result<Vec<PushedStream>, PushError> {
    let push: JsonPush = serde_json::from_reader(r)
        .map_err(|e| PushError::Invalid(format!("invalid Loki push JSON: {e}")))?;
    json_streams(push)
}

fn json_streams(push: JsonPush) -> Result<Vec<PushedStream>, PushError> {
    push.streams
        .into_iter()
        .map(|s| {
            let mut out = PushedStream {
                labels: s.stream.into_iter().collect(),
                ..PushedStream::default()
            };
            for (i, JsonEntry(ts, line, meta)) in s.values.into_iter().enumerate() {
                let ns = match ts {
                    NsTimestamp::Number(n) => n,
                    NsTimestamp::Text(t) => t.trim().parse::<i64>().map_err(|_| {
                        PushError::Invalid(format!(
                            "timestamp {t:?} is not nanoseconds since the epoch"
                        ))
                    })?,
                };
                out.times.push(ns / 1_000_000);
                out.lines.push(line);
                for (k, v) in meta {
                    out.metadata.push((i as u32, k, v));
                }
            }
            Ok(out)
        })
        .collect()
}

/// Counts the entries of a `logproto.PushRequest` by walking its wire
/// format (field 1 of the request: streams; field 2 of a stream:
/// entries); `None` where the bytes are not protobuf.
fn count_entries(mut b: &[u8]) -> Option<usize> {
    let mut n = 0;
    while !b.is_empty() {
        let (key, len, rest) = field(b)?;
        if key == (1 << 3 | 2) {
            let mut s = &rest[..len];
            while !s.is_empty() {
                let (k, l, r) = field(s)?;
                n += usize::from(k == (2 << 3 | 2));
                s = &r[l..];
            }
        }
        b = &rest[len..];
    }
    Some(n)
}

/// One field: its key, the length of its value, and the bytes from the
/// value on (varint values are skipped as zero-length, their bytes consumed).
fn field(b: &[u8]) -> Option<(u64, usize, &[u8])> {
    let (key, b) = varint(b)?;
    match key & 7 {
        0 => varint(b).map(|(_, r)| (key, 0, r)),
        1 => (b.len() >= 8).then_some((key, 8, b)),
        2 => {
            let (len, r) = varint(b)?;
            let len = usize::try_from(len).ok()?;
            (r.len() >= len).then_some((key, len, r))
        }
        5 => (b.len() >= 4).then_some((key, 4, b)),
        _ => None,
    }
}

fn varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, &b[i + 1..]));
        }
    }
    None
}

/// Parses Prometheus label text, `{job="sshd", host="web-1"}`.
pub fn parse_labels(text: &str) -> Result<Vec<(String, String)>, String> {
    let bad = |why: &str| format!("invalid stream labels {text:?}: {why}");
    let t = text.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| bad("expected {name=\"value\", …}"))?;
    let mut out = Vec::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or_else(|| bad("expected '='"))?;
        let name = rest[..eq].trim();
        let valid_name = name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if name.is_empty() || !valid_name {
            return Err(bad(&format!("{name:?} is not a label name")));
        }
        let after = rest[eq + 1..].trim_start();
        let body = after
            .strip_prefix('"')
            .ok_or_else(|| bad("expected a quoted value"))?;
        let mut value = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, c)) => value.push(c),
                    None => return Err(bad("unterminated value")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(bad("unterminated value")),
            }
        };
        out.push((name.to_owned(), value));
        rest = body[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(bad("expected ',' between labels"));
        }
    }
    Ok(out)
}

/// Encodes streams as a snappy-compressed `PushRequest` (load generator, tests).
pub fn encode_protobuf(streams: &[PushedStream]) -> Vec<u8> {
    let req = PushRequest {
        streams: streams
            .iter()
            .map(|s| StreamAdapter {
                labels: format_labels(&s.labels),
                entries: s
                    .lines
                    .iter()
                    .zip(&s.times)
                    .enumerate()
                    .map(|(i, (line, ms))| EntryAdapter {
                        timestamp: Some(Timestamp {
                            seconds: ms.div_euclid(1000),
                            nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
                        }),
                        line: line.clone(),
                        structured_metadata: s
                            .metadata
                            .iter()
                            .filter(|(j, _, _)| *j as usize == i)
                            .map(|(_, k, v)| LabelPairAdapter {
                                name: k.clone(),
                                value: v.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
    };
    let raw = prost::Message::encode_to_vec(&req);
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

/// Prometheus label text for a label set.
pub fn format_labels(labels: &[(String, String)]) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn stream() -> PushedStream {
        PushedStream {
            labels: vec![
                ("host".into(), "web-1".into()),
                ("job".into(), "sshd".into()),
            ],
            lines: vec!["first".into(), "second \"quoted\"".into()],
            times: vec![1_700_000_000_123, 1_700_000_001_000],
            metadata: vec![(1, "trace_id".into(), "abc".into())],
        }
    }

    #[test]
    fn protobuf_round_trips_with_metadata() {
        let body = encode_protobuf(&[stream()]);
        let got = decode(Some("application/x-protobuf"), None, &body, 1 << 20).unwrap();
        assert_eq!(got, vec![stream()]);
        // no content type is protobuf too, as in Loki
        assert_eq!(
            decode(None, Some("snappy"), &body, 1 << 20).unwrap(),
            vec![stream()]
        );
    }

    #[test]
    fn json_with_string_nanoseconds_and_metadata() {
        let body = br#"{"streams":[{"stream":{"job":"sshd","host":"web-1"},"values":[["1700000000123000000","first"],["1700000001000000000","second \"quoted\"",{"trace_id":"abc"}]]}]}"#;
        let got = decode(Some("application/json; charset=utf-8"), None, body, 1 << 20).unwrap();
        assert_eq!(got, vec![stream()]);
    }

    #[test]
    fn gzip_and_both_deflate_forms_inflate() {
        let body = br#"{"streams":[{"stream":{"a":"b"},"values":[["1","x"]]}]}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(body).unwrap();
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zl.write_all(body).unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(body).unwrap();
        for (enc, b) in [
            ("gzip", gz.finish().unwrap()),
            ("deflate", zl.finish().unwrap()),
            ("deflate", raw.finish().unwrap()),
        ] {
            let got = decode(Some("application/json"), Some(enc), &b, 1 << 20).unwrap();
            assert_eq!(got[0].lines, vec!["x"], "{enc}");
        }
    }

    #[test]
    fn bombs_are_refused_before_they_inflate() {
        let zeros = vec![b' '; 8 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&zeros).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 64 << 10);
        let e = decode(Some("application/json"), Some("gzip"), &bomb, 1 << 20).unwrap_err();
        assert!(matches!(e, PushError::TooLarge(_)), "{e}");
        let sn = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
        let e = decode(None, None, &sn, 1 << 20).unwrap_err();
        assert!(matches!(e, PushError::TooLarge(_)), "{e}");
    }

    #[test]
    fn a_snappy_length_its_body_cannot_encode_is_refused_before_allocating() {
        // 40 bytes declaring 64 MiB
        let mut lie = vec![0x80, 0x80, 0x80, 0x20];
        lie.extend_from_slice(&[0u8; 36]);
        let e = decode(None, None, &lie, 64 << 20).unwrap_err();
        assert!(
            e.to_string().contains("more than its 40 bytes can encode"),
            "{e}"
        );
        // the densest real block still decodes
        let zeros = vec![0u8; 1 << 20];
        let sn = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
        assert!(snap::raw::decompress_len(&sn).unwrap() <= sn.len() * SNAPPY_MAX_RATIO);
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let e = decode(
            Some("application/json"),
            None,
            b"{\"streams\":[{\"stream\":{\"a\":\"b\"},\"values\":[[\"soon\",\"x\"]]}]}",
            1 << 20,
        )
        .unwrap_err();
        assert!(e.to_string().contains("nanoseconds"), "{e}");
        let e = decode(None, None, b"not snappy at all", 1 << 20).unwrap_err();
        assert!(matches!(e, PushError::Invalid(_)));
        let e = decode(Some("application/json"), Some("br"), b"{}", 1 << 20).unwrap_err();
        assert!(matches!(e, PushError::Unsupported(_)));
        let e = decode(
            Some("application/json"),
            None,
            br#"{"streams":[{"stream":{},"values":[["1","x"]]}]}"#,
            1 << 20,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no labels"), "{e}");
    }

    #[test]
    fn label_text_parses_escapes_and_rejects_garbage() {
        assert_eq!(
            parse_labels(r#"{job="a\"b", host = "x,y"}"#).unwrap(),
            vec![("job".into(), "a\"b".into()), ("host".into(), "x,y".into())]
        );
        assert_eq!(parse_labels("{}").unwrap(), vec![]);
        for bad in [
            "job=\"a\"",
            "{job=a}",
            "{1x=\"a\"}",
            "{a=\"b\" c=\"d\"}",
            "{a=\"b}",
        ] {
            assert!(parse_labels(bad).is_err(), "{bad}");
        }
    }
}
