//! Loki push bodies (`POST /loki/api/v1/push`), decoded as Loki decodes them.
//!
//! ```text
//! Content-Encoding: (none) | snappy | gzip | deflate   -> bytes
//! Content-Type: application/json        -> {"streams":[{"stream":{…},"values":[["<ns>","line",{meta}]]}]}
//!               anything else / absent  -> snappy block of logproto.PushRequest
//! ```
//! Every size is checked before memory is spent on it: a compressed body
//! inflates through a reader that stops at `max_bytes`, and a snappy block's
//! declared length is checked before it is allocated (decompression bombs
//! get a 413, not the heap). The protobuf messages are Loki's published
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
    /// 413: the body, or what it inflates to, is over the limit.
    #[error("{0}")]
    TooLarge(String),
    /// 415: an encoding this endpoint does not speak.
    #[error("{0}")]
    Unsupported(String),
}

/// Decodes a push body into its streams.
pub fn decode(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    max_bytes: usize,
) -> Result<Vec<PushedStream>, PushError> {
    let inflated = inflate(content_encoding, body, max_bytes)?;
    let body: &[u8] = inflated.as_deref().unwrap_or(body);
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    let streams = match mime.as_deref() {
        Some("application/json") => decode_json(body)?,
        _ => decode_protobuf(body, max_bytes)?,
    };
    if let Some(s) = streams.iter().find(|s| s.labels.is_empty()) {
        return Err(PushError::Invalid(format!(
            "a stream with {} entries has no labels: at least one label pair is required per stream",
            s.lines.len()
        )));
    }
    Ok(streams)
}

/// Undoes `Content-Encoding`; `None` when the body is used as it is.
fn inflate(
    encoding: Option<&str>,
    body: &[u8],
    max_bytes: usize,
) -> Result<Option<Vec<u8>>, PushError> {
    let enc = encoding.map(|e| e.trim().to_ascii_lowercase());
    let reader: Box<dyn Read + '_> = match enc.as_deref() {
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
    };
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max_bytes));
    reader
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| PushError::Invalid(format!("cannot decompress the body: {e}")))?;
    if out.len() > max_bytes {
        return Err(PushError::TooLarge(format!(
            "the body decompresses to more than {max_bytes} bytes"
        )));
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

fn decode_protobuf(body: &[u8], max_bytes: usize) -> Result<Vec<PushedStream>, PushError> {
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
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| PushError::Invalid(format!("body is not a snappy block: {e}")))?;
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
    values: Vec<JsonEntry>,
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
