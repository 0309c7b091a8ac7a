//! `threatpilot publish`: lines from files or stdin into JetStream.
//!
//! A reader thread cuts the input into messages (one line each, or up to
//! `lines_per_message` lines with the batch header), and the publisher sends
//! them in pipelined batches and waits for every acknowledgement. Message
//! ids are `<prefix>.<n>`: for a file the prefix derives from its path, size
//! and modification time, so publishing the same file twice stores it once
//! (the server drops the repeats within its duplicate window).

use std::io::BufRead;

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::sink::{Outgoing, Publisher};
use super::source::{BATCH_HEADER, FORMAT_HEADER};
use super::{NatsError, subject};

#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub subject: String,
    pub lines_per_message: usize,
    /// Message id prefix; derived from each file when absent.
    pub id_prefix: Option<String>,
    /// Parser for the receiving worker (sets the format header).
    pub format: Option<String>,
    /// Stream created, when no stream captures the subject yet.
    pub stream: String,
}

/// What a publish run did.
#[derive(Debug, Default, Clone, serde::Serialize, PartialEq, Eq)]
pub struct PublishReport {
    pub lines: u64,
    pub messages: u64,
    /// Messages the stream stored.
    pub stored: u64,
    /// Messages the stream already had (same id), dropped by the server.
    pub duplicate: u64,
}

/// Messages per pipelined batch (sent together, then all acks awaited).
const IN_FLIGHT: usize = 4096;

pub async fn publish(
    js: &jetstream::Context,
    files: &[String],
    opts: &PublishOptions,
) -> Result<PublishReport, NatsError> {
    if subject::route(&opts.subject).is_none() {
        return Err(NatsError::Setup(format!(
            "subject {} is not logs.<dataset>[.<host>] or alerts.<source>",
            opts.subject
        )));
    }
    ensure_capturing_stream(js, &opts.subject, &opts.stream).await?;
    let publisher = Publisher::new(js.clone());
    let mut report = PublishReport::default();
    for file in files {
        let prefix = match &opts.id_prefix {
            Some(p) if files.len() == 1 => p.clone(),
            Some(p) => format!("{p}.{}", subject::token(file)),
            None => id_prefix(&opts.subject, file)?,
        };
        let (tx, mut rx) = mpsc::channel::<(Vec<Vec<u8>>, u64)>(4);
        let (path, per) = (file.clone(), opts.lines_per_message.max(1));
        let reader = tokio::task::spawn_blocking(move || read_messages(&path, per, &tx));
        let mut batch = Vec::with_capacity(IN_FLIGHT);
        let mut n = 0u64;
        while let Some((lines, count)) = rx.recv().await {
            report.lines += count;
            for body in lines {
                n += 1;
                batch.push(message(opts, &prefix, n, body, per > 1));
                if batch.len() >= IN_FLIGHT {
                    tally(
                        &mut report,
                        publisher.publish_all(std::mem::take(&mut batch)).await?,
                    );
                }
            }
        }
        if !batch.is_empty() {
            tally(&mut report, publisher.publish_all(batch).await?);
        }
        reader
            .await
            .map_err(|e| NatsError::Io(std::io::Error::other(e)))??;
        report.messages += n;
    }
    Ok(report)
}

fn tally(r: &mut PublishReport, p: super::sink::Published) {
    r.stored += p.stored;
    r.duplicate += p.duplicate;
}

fn message(opts: &PublishOptions, prefix: &str, n: u64, body: Vec<u8>, batch: bool) -> Outgoing {
    let mut headers = HeaderMap::new();
    if batch {
        headers.insert(BATCH_HEADER, "lines");
    }
    if let Some(f) = &opts.format {
        headers.insert(FORMAT_HEADER, f.as_str());
    }
    Outgoing {
        subject: opts.subject.clone(),
        id: format!("{prefix}.{n}"),
        headers,
        payload: Bytes::from(body),
    }
}

/// Reads `path` (or stdin for `-`) into message bodies of `per` lines.
fn read_messages(
    path: &str,
    per: usize,
    tx: &mpsc::Sender<(Vec<Vec<u8>>, u64)>,
) -> Result<(), NatsError> {
    let reader: Box<dyn BufRead> = if path == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot open {path}: {e}")))?;
        Box::new(std::io::BufReader::with_capacity(1 << 16, f))
    };
    let mut reader = reader;
    let mut bodies = Vec::with_capacity(256);
    let (mut body, mut in_body, mut lines) = (Vec::new(), 0usize, 0u64);
    let send = |bodies: &mut Vec<Vec<u8>>, lines: &mut u64| {
        let out = (std::mem::take(bodies), std::mem::take(lines));
        tx.blocking_send(out).is_ok()
    };
    // lines go as the bytes they are: a line that is not UTF-8 is the
    // worker's to dead-letter, not a reason to stop sending the file
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines += 1;
        if in_body > 0 {
            body.push(b'\n');
        }
        body.extend_from_slice(&line);
        in_body += 1;
        if in_body >= per {
            bodies.push(std::mem::take(&mut body));
            in_body = 0;
            if bodies.len() >= 256 && !send(&mut bodies, &mut lines) {
                return Ok(());
            }
        }
    }
    if in_body > 0 {
        bodies.push(body);
    }
    if !bodies.is_empty() || lines > 0 {
        send(&mut bodies, &mut lines);
    }
    Ok(())
}

/// A stable id prefix for a file sent to a subject (subject, path, size,
/// mtime); a fresh one for stdin.
fn id_prefix(subject: &str, path: &str) -> Result<String, NatsError> {
    if path == "-" {
        return Ok(format!("stdin-{}", crate::time::now_ms()));
    }
    let meta = std::fs::metadata(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot open {path}: {e}")))?;
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.into());
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let key = format!(
        "{subject}\u{1f}{}\u{1f}{}\u{1f}{mtime}",
        abs.display(),
        meta.len()
    );
    Ok(format!(
        "f{:016x}",
        xxhash_rust::xxh3::xxh3_64(key.as_bytes())
    ))
}

/// Makes sure some stream stores `subject` (creating `stream` with the
/// default subjects when none does), so publishes are not refused.
async fn ensure_capturing_stream(
    js: &jetstream::Context,
    subject: &str,
    stream: &str,
) -> Result<(), NatsError> {
    if js.stream_by_subject(subject).await.is_ok() {
        return Ok(());
    }
    let mut defaults = super::config::NatsSourceConfig::with_url("publish", "");
    defaults.stream = stream.to_owned();
    // capture partitioned subjects too: a server with the partition mapping
    // stores `part.<n>.logs.…`, and a worker binding later finds its shape
    defaults.partitions = Some(1);
    super::source::ensure_stream(js, super::source::input_stream(&defaults)).await
}
