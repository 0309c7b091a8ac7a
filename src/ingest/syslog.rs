//! Syslog over UDP and TCP (RFC 3164 and 5424 payloads; RFC 6587 framing).
//!
//! ```text
//! UDP datagram ───────────────────────────────┐
//! TCP: "123 <34>1 2026-…" (octet-counted)     ├─> lines per peer ─> Ingress
//!      "<34>Oct 11 22:14:15 …\n" (newline)    ┘     (flushed by size or time)
//! ```
//! A TCP connection's framing is told by its first byte: a digit means
//! octet counting, `<` newline framing (what rsyslog sends by default).
//! Each peer address is its own stream (parser state, event-time domain).
//! A message over `max_message_bytes` is cut there and kept with
//! `labels.truncated: true`; the rest of it is skipped, never buffered.
//! Sends wait for the graph and for room in ingestion's memory budget
//! (backpressure): a TCP sender is slowed down, UDP overflow is the
//! kernel's to drop, as for any syslog daemon. TCP connections are capped
//! per listener and per peer address, and the accept loop backs off when
//! the process is out of file descriptors ([`crate::listen`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;

use super::config::SyslogConfig;
use super::{SourceStats, Stream};
use crate::flow::{Ingress, Origin, RawBatch, mono_ns};
use crate::parse::{Format, JsonMapping};

/// Bound listeners, before they run (so their addresses can be reported).
pub struct Listeners {
    pub udp: Option<UdpSocket>,
    pub tcp: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(cfg: &SyslogConfig) -> anyhow::Result<Listeners> {
        let udp = match &cfg.udp {
            Some(a) => Some(
                UdpSocket::bind(a)
                    .await
                    .map_err(|e| anyhow::anyhow!("syslog {}: cannot bind udp {a}: {e}", cfg.id))?,
            ),
            None => None,
        };
        let tcp = match &cfg.tcp {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .map_err(|e| anyhow::anyhow!("syslog {}: cannot bind tcp {a}: {e}", cfg.id))?,
            ),
            None => None,
        };
        Ok(Listeners { udp, tcp })
    }
}

/// Runs the listeners until `stop` turns true; returns when every
/// connection has flushed what it read.
pub async fn run(
    cfg: SyslogConfig,
    listeners: Listeners,
    ingress: Ingress,
    stats: Arc<SourceStats>,
    stop: watch::Receiver<bool>,
) {
    let mut tasks = Vec::new();
    if let Some(sock) = listeners.udp {
        let (cfg, ingress, stats, stop) =
            (cfg.clone(), ingress.clone(), stats.clone(), stop.clone());
        tasks.push(tokio::spawn(udp(cfg, sock, ingress, stats, stop)));
    }
    if let Some(l) = listeners.tcp {
        tasks.push(tokio::spawn(tcp(cfg, l, ingress, stats, stop)));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Lines gathered per peer until a flush.
struct Pending {
    source: String,
    /// How a sender is named to response's self-lockout protection.
    via: String,
    streams: HashMap<SocketAddr, (Arc<Stream>, RawBatch)>,
    lines: usize,
}

impl Pending {
    fn new(source: &str) -> Pending {
        Pending {
            source: source.to_owned(),
            via: format!("a syslog sender of source {source}"),
            streams: HashMap::new(),
            lines: 0,
        }
    }

    fn push(&mut self, peer: SocketAddr, line: String, truncated: bool) {
        let source = &self.source;
        let (_, b) = self.streams.entry(peer).or_insert_with(|| {
            let st = Arc::new(peer_stream(source, peer));
            (
                st.clone(),
                RawBatch::lines(Origin::Stream(st), crate::flow::Lines::default()),
            )
        });
        if truncated {
            b.metadata
                .push((b.lines.len() as u32, "truncated".into(), "true".into()));
        }
        b.lines.push(&line);
        self.lines += 1;
    }

    async fn flush(&mut self, ingress: &Ingress, stats: &SourceStats) {
        if self.lines == 0 {
            return;
        }
        let n = self.lines as u64;
        let now = mono_ns();
        for peer in self.streams.keys() {
            ingress.peer(peer.ip(), &self.via);
        }
        let mut group: Vec<RawBatch> = self
            .streams
            .drain()
            .map(|(_, (_, mut b))| {
                b.read_ns = now;
                b
            })
            .collect();
        self.lines = 0;
        let cost = group
            .iter()
            .flat_map(|b| b.lines.iter())
            .map(|l| super::budget::line_cost(l.len()))
            .sum();
        let grant = ingress.grant_waiting(cost).await;
        if let Some(first) = group.first_mut() {
            first.grant = Some(grant);
        }
        match ingress.send_all(group).await {
            Ok(()) => stats.emitted(n),
            Err(_) => stats.dropped("shutting_down", n),
        }
    }
}

/// One stream per peer address (not port: a restarted sender is the same host).
fn peer_stream(source: &str, peer: SocketAddr) -> Stream {
    Stream::from_labels(
        source,
        None,
        Vec::new(),
        Format::Syslog,
        &JsonMapping::default(),
    )
    .keyed_by(&peer.ip().to_string())
}

async fn udp(
    cfg: SyslogConfig,
    sock: UdpSocket,
    ingress: Ingress,
    stats: Arc<SourceStats>,
    mut stop: watch::Receiver<bool>,
) {
    // a datagram cannot exceed 64 KiB; the buffer holds one whole
    let mut buf = vec![0u8; 65_536];
    let mut pending = Pending::new(&cfg.id);
    let flush_every = Duration::from_millis(cfg.flush_ms.max(1));
    let mut tick = tokio::time::interval(flush_every);
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, peer)) => {
                    let (line, truncated) = message(&buf[..n], cfg.max_message_bytes);
                    pending.push(peer, line, truncated);
                    if pending.lines >= 1024 {
                        pending.flush(&ingress, &stats).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "syslog udp receive failed"),
            },
            _ = tick.tick() => pending.flush(&ingress, &stats).await,
            _ = super::stopped(&mut stop) => break,
        }
    }
    // what the kernel still holds was sent before the stop: take it
    while let Ok((n, peer)) = sock.try_recv_from(&mut buf) {
        let (line, truncated) = message(&buf[..n], cfg.max_message_bytes);
        pending.push(peer, line, truncated);
    }
    pending.flush(&ingress, &stats).await;
}

async fn tcp(
    cfg: SyslogConfig,
    listener: TcpListener,
    ingress: Ingress,
    stats: Arc<SourceStats>,
    mut stop: watch::Receiver<bool>,
) {
    let limits = crate::listen::ConnLimits {
        max_connections: cfg.max_connections.max(1),
        max_per_client: cfg.max_connections_per_client.max(1),
        header_read_timeout: Duration::from_secs(cfg.idle_timeout_secs.max(1)),
        idle_timeout: Duration::from_secs(cfg.idle_timeout_secs.max(1)),
    };
    let mut acceptor = crate::listen::Acceptor::new(listener, "syslog", &limits);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let conn = tokio::select! {
            c = acceptor.next() => c,
            _ = super::stopped(&mut stop) => break,
        };
        let (cfg, ingress, stats, stop) =
            (cfg.clone(), ingress.clone(), stats.clone(), stop.clone());
        conns.spawn(async move {
            metrics::gauge!(crate::metrics::SYSLOG_CONNECTIONS).increment(1.0);
            let crate::listen::Admitted {
                stream,
                peer,
                places,
            } = conn;
            connection(cfg, stream, peer, ingress, stats, stop).await;
            metrics::gauge!(crate::metrics::SYSLOG_CONNECTIONS).decrement(1.0);
            drop(places);
        });
        // finished connections are reaped as others arrive
        while conns.try_join_next().is_some() {}
    }
    while conns.join_next().await.is_some() {}
}

async fn connection(
    cfg: SyslogConfig,
    mut sock: TcpStream,
    peer: SocketAddr,
    ingress: Ingress,
    stats: Arc<SourceStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut framer = Framer::new(cfg.max_message_bytes);
    let mut pending = Pending::new(&cfg.id);
    let mut buf = vec![0u8; 64 * 1024];
    let idle = Duration::from_secs(cfg.idle_timeout_secs.max(1));
    let flush_every = Duration::from_millis(cfg.flush_ms.max(1));
    let mut frames = Vec::new();
    loop {
        let read = tokio::select! {
            r = tokio::time::timeout(flush_every, sock.read(&mut buf)) => r,
            _ = super::stopped(&mut stop) => break,
        };
        match read {
            // nothing for a flush interval: send what waits, then keep waiting
            Err(_) => {
                pending.flush(&ingress, &stats).await;
                tokio::select! {
                    r = tokio::time::timeout(idle, sock.readable()) => match r {
                        Ok(Ok(())) => continue,
                        _ => break,
                    },
                    _ = super::stopped(&mut stop) => break,
                }
            }
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                framer.feed(&buf[..n], &mut frames);
                for (line, truncated) in frames.drain(..) {
                    pending.push(peer, line, truncated);
                }
                if pending.lines >= 1024 {
                    pending.flush(&ingress, &stats).await;
                }
            }
        }
    }
    if let Some((line, truncated)) = framer.finish() {
        pending.push(peer, line, truncated);
    }
    pending.flush(&ingress, &stats).await;
}

/// A datagram's message: cut at `max` (on a character boundary), without
/// trailing newline or NUL; invalid UTF-8 is replaced, not refused.
fn message(b: &[u8], max: usize) -> (String, bool) {
    let truncated = b.len() > max;
    let b = &b[..b.len().min(max)];
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b'\0' | b'\n' | b'\r'))
        .map_or(0, |i| i + 1);
    let b = &b[..end];
    (String::from_utf8_lossy(b).into_owned(), truncated)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Framing {
    OctetCounted,
    Newline,
}

/// Splits a TCP byte stream into messages, holding at most `max` bytes of
/// an unfinished one.
pub struct Framer {
    max: usize,
    framing: Option<Framing>,
    buf: Vec<u8>,
    /// Bytes of an oversized message still to skip (octet counting), or
    /// skip to the next newline (`usize::MAX`).
    skip: usize,
}

impl Framer {
    pub fn new(max: usize) -> Framer {
        Framer {
            max: max.max(1),
            framing: None,
            buf: Vec::new(),
            skip: 0,
        }
    }

    /// Adds bytes; complete messages go to `out` as (text, truncated).
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<(String, bool)>) {
        while !data.is_empty() {
            if self.skip > 0 {
                if self.skip == usize::MAX {
                    match data.iter().position(|&c| c == b'\n') {
                        Some(i) => {
                            data = &data[i + 1..];
                            self.skip = 0;
                        }
                        None => return,
                    }
                } else {
                    let n = self.skip.min(data.len());
                    data = &data[n..];
                    self.skip -= n;
                }
                continue;
            }
            let framing = *self.framing.get_or_insert(if data[0].is_ascii_digit() {
                Framing::OctetCounted
            } else {
                Framing::Newline
            });
            data = match framing {
                Framing::Newline => self.newline(data, out),
                Framing::OctetCounted => self.octets(data, out),
            };
        }
    }

    fn newline<'a>(&mut self, data: &'a [u8], out: &mut Vec<(String, bool)>) -> &'a [u8] {
        match data.iter().position(|&c| c == b'\n') {
            Some(i) => {
                self.buf.extend_from_slice(&data[..i]);
                let truncated = self.buf.len() > self.max;
                if !self.buf.is_empty() {
                    out.push(message(&std::mem::take(&mut self.buf), self.max));
                    out.last_mut().unwrap().1 = truncated;
                }
                &data[i + 1..]
            }
            None => {
                self.buf.extend_from_slice(data);
                if self.buf.len() > self.max {
                    let (line, _) = message(&self.buf, self.max);
                    out.push((line, true));
                    self.buf.clear();
                    self.skip = usize::MAX;
                }
                &[]
            }
        }
    }

    fn octets<'a>(&mut self, data: &'a [u8], out: &mut Vec<(String, bool)>) -> &'a [u8] {
        self.buf.extend_from_slice(data);
        let mut used = 0;
        loop {
            let rest = &self.buf[used..];
            // skip separators some senders put between frames
            let lead = rest
                .iter()
                .take_while(|c| matches!(c, b'\n' | b'\r' | b' ' | b'\0'))
                .count();
            let rest = &rest[lead..];
            let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == rest.len() || digits > 10 {
                // no full length yet (or a garbage one): fall back to newlines
                if digits > 10 || (digits == 0 && !rest.is_empty()) {
                    self.framing = Some(Framing::Newline);
                    let left = self.buf.split_off(used + lead);
                    self.buf.clear();
                    return self.newline_then(left, out);
                }
                used += lead;
                break;
            }
            if rest[digits] != b' ' || digits == 0 {
                self.framing = Some(Framing::Newline);
                let left = self.buf.split_off(used + lead);
                self.buf.clear();
                return self.newline_then(left, out);
            }
            let len: usize = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|d| d.parse().ok())
                .unwrap_or(usize::MAX);
            let body = &rest[digits + 1..];
            if len > self.max {
                if body.len() < self.max {
                    used += lead;
                    break;
                }
                out.push((message(&body[..self.max], self.max).0, true));
                let have = body.len().min(len);
                used += lead + digits + 1 + have;
                self.skip = len - have;
                let left = self.buf.split_off(used);
                self.buf.clear();
                return self.pass_on(left, out);
            }
            if body.len() < len {
                used += lead;
                break;
            }
            out.push(message(&body[..len], self.max));
            used += lead + digits + 1 + len;
        }
        self.buf.drain(..used);
        &[]
    }

    /// Continues with bytes left over after a framing switch or a skip.
    fn newline_then<'a>(&mut self, left: Vec<u8>, out: &mut Vec<(String, bool)>) -> &'a [u8] {
        self.feed(&left, out);
        &[]
    }

    fn pass_on<'a>(&mut self, left: Vec<u8>, out: &mut Vec<(String, bool)>) -> &'a [u8] {
        self.feed(&left, out);
        &[]
    }

    /// What is left when the connection closes (a last line without newline).
    pub fn finish(&mut self) -> Option<(String, bool)> {
        if self.buf.is_empty() || self.skip > 0 {
            return None;
        }
        let b = std::mem::take(&mut self.buf);
        let start = match self.framing {
            // an incomplete counted frame: keep its text, not its length
            Some(Framing::OctetCounted) => b.iter().position(|c| *c == b' ').map_or(0, |i| i + 1),
            _ => 0,
        };
        let (line, truncated) = message(&b[start..], self.max);
        (!line.trim().is_empty()).then_some((line, truncated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut f = Framer::new(max);
        let mut out = Vec::new();
        for c in chunks {
            f.feed(c, &mut out);
        }
        out.extend(f.finish());
        out
    }

    #[test]
    fn newline_framing_across_reads() {
        let got = frames(100, &[b"<13>Oct 11 a\n<13>Oc", b"t 11 b\r\n", b"<13>tail"]);
        let lines: Vec<&str> = got.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(lines, ["<13>Oct 11 a", "<13>Oct 11 b", "<13>tail"]);
    }

    #[test]
    fn octet_counting_across_reads_and_with_newlines_inside() {
        let got = frames(100, &[b"5 hello11 multi\nline", b"x 3 abc"]);
        let lines: Vec<&str> = got.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(lines, ["hello", "multi\nlinex", "abc"]);
    }

    #[test]
    fn oversized_messages_are_cut_and_the_rest_skipped() {
        let long = vec![b'a'; 50];
        let mut nl = long.clone();
        nl.extend_from_slice(b"\n<13>next\n");
        let got = frames(10, &[&nl[..20], &nl[20..]]);
        assert_eq!(
            got,
            vec![("a".repeat(10), true), ("<13>next".into(), false)]
        );
        let counted = [b"50 ".as_slice(), &long, b"4 next"].concat();
        let got = frames(10, &[&counted[..15], &counted[15..]]);
        assert_eq!(got, vec![("a".repeat(10), true), ("next".into(), false)]);
    }

    proptest::proptest! {
        #[test]
        fn any_split_of_counted_frames_gives_the_same_messages(
            msgs in proptest::collection::vec("[a-z <>\n]{1,40}", 1..8),
            cut in 0usize..400,
        ) {
            let mut wire = Vec::new();
            for m in &msgs {
                wire.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
            }
            let cut = cut.min(wire.len());
            let got = frames(1000, &[&wire[..cut], &wire[cut..]]);
            let want: Vec<(String, bool)> = msgs
                .iter()
                .map(|m| (m.trim_end_matches(['\n', '\r']).to_owned(), false))
                .collect();
            proptest::prop_assert_eq!(got, want);
        }
    }
}
