//! Push ingestion over real connections: Loki push (protobuf, JSON, gzip,
//! deflate), limits and their answers, tokens and roles, the findings API
//! and its live stream, overload, and syslog over UDP and TCP. Each test
//! runs `threatpilot run` on ephemeral loopback ports.

#[path = "support/service.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Service;
use threatpilot::ingest::loki::{PushedStream, encode_protobuf};

fn pipeline(sources: &str, api_extra: &str) -> String {
    format!(
        "version: 1\nname: ingest-test\nsources:\n{sources}detect:\n  paths: [detectors]\nsinks:\n  - type: events\n    path: {{dir}}/events.jsonl\n  - type: file\n    path: {{dir}}/findings.jsonl\napi:\n  listen: 127.0.0.1:0\n{api_extra}"
    )
}

const LOKI: &str = "  - type: loki_push\n    id: loki\n";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn ssh_failures(ip: &str, n: usize, port0: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("Failed password for root from {ip} port {} ssh2", port0 + i))
        .collect()
}

fn json_push(labels: &str, lines: &[String], t0_ms: i64) -> Vec<u8> {
    let values: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| serde_json::json!([((t0_ms + i as i64) * 1_000_000).to_string(), l]))
        .collect();
    let stream: Value = serde_json::from_str(labels).unwrap();
    serde_json::to_vec(&serde_json::json!({"streams": [{"stream": stream, "values": values}]}))
        .unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    // best: a bomb must stay well under the body limit once compressed
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

const JSON: (&str, &str) = ("Content-Type", "application/json");
const PROTO: (&str, &str) = ("Content-Type", "application/x-protobuf");

#[test]
fn loki_push_in_protobuf_json_gzip_and_deflate_becomes_events_and_findings() {
    let svc = Service::start("loki", &pipeline(LOKI, ""), Stdio::null());
    let t0 = now_ms() - 60_000;
    // protobuf from Loki's push.proto, snappy block, with a tenant and structured metadata
    let proto = encode_protobuf(&[PushedStream {
        labels: labels(&[("job", "sshd"), ("host", "web-1"), ("service_name", "ssh")]),
        lines: ssh_failures("203.0.113.50", 12, 40000),
        times: (0..12).map(|i| t0 + i * 1000).collect(),
        metadata: vec![(3, "trace_id".into(), "4bf92f35".into())],
    }]);
    let r = svc.post(
        "/loki/api/v1/push",
        &[PROTO, ("X-Scope-OrgID", "acme")],
        &proto,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    // JSON, gzip: access lines named by a label
    let access: Vec<String> = (0..5)
        .map(|i| format!("198.51.100.9 - - [22/Nov/2026:10:00:0{i} +0000] \"GET /.env HTTP/1.1\" 404 153 \"-\" \"curl/8.0\""))
        .collect();
    let body = gzip(&json_push(
        r#"{"format":"access","host":"edge-1","dataset":"nginx.access"}"#,
        &access,
        t0,
    ));
    let r = svc.post(
        "/loki/api/v1/push",
        &[JSON, ("Content-Encoding", "gzip")],
        &body,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    // JSON, raw deflate as Loki reads it
    let oom = vec![
        "Out of memory: Killed process 4242 (java) total-vm:8388608kB, anon-rss:4194304kB"
            .to_string(),
    ];
    let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    d.write_all(&json_push(r#"{"job":"kernel","host":"db-1"}"#, &oom, t0))
        .unwrap();
    let r = svc.post(
        "/loki/api/v1/push",
        &[JSON, ("Content-Encoding", "deflate")],
        &d.finish().unwrap(),
    );
    assert_eq!(r.status, 204, "{}", r.text());

    svc.wait_for("18 events", 10, |s| {
        s.read_jsonl("events.jsonl").len() >= 18
    });
    let events = svc.read_jsonl("events.jsonl");
    assert_eq!(events.len(), 18);
    let ssh: Vec<&Value> = events
        .iter()
        .filter(|e| e["labels.job"] == "sshd")
        .collect();
    assert_eq!(ssh.len(), 12);
    for e in &ssh {
        assert_eq!(e["host.name"], "web-1");
        assert_eq!(e["service.name"], "ssh");
        assert_eq!(e["organization.id"], "acme");
        assert_eq!(e["event.dataset"], "sshd");
        assert_eq!(e["source.ip"], "203.0.113.50");
    }
    // a line without a timestamp takes its entry's
    let first = ssh.iter().find(|e| e["source.port"] == 40000).unwrap();
    assert_eq!(first["@timestamp"], threatpilot::time::format_rfc3339(t0));
    let traced: Vec<_> = ssh
        .iter()
        .filter(|e| e["labels.trace_id"] == "4bf92f35")
        .collect();
    assert_eq!(traced.len(), 1);
    assert_eq!(traced[0]["source.port"], 40003);
    let web: Vec<&Value> = events
        .iter()
        .filter(|e| e["event.dataset"] == "nginx.access")
        .collect();
    assert_eq!(web.len(), 5);
    assert_eq!(web[0]["http.response.status_code"], 404);
    assert_eq!(web[0]["host.name"], "edge-1");
    assert!(
        events
            .iter()
            .any(|e| e["event.action"] == "oom_kill" && e["host.name"] == "db-1")
    );

    // the findings API sees the brute force, and its updates
    svc.wait_for("a brute-force finding", 10, |s| {
        s.get_json("/api/v1/findings?offender=203.0.113.50&classification=brute_force")["count"]
            .as_u64()
            .unwrap()
            > 0
    });
    let list = svc.get_json("/api/v1/findings?offender=203.0.113.50&classification=brute_force");
    let id = list["findings"][0]["finding_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = svc.get_json(&format!("/api/v1/findings/{id}"));
    assert_eq!(one["finding"]["finding_id"], id.as_str());
    assert!(!one["updates"].as_array().unwrap().is_empty());
    assert_eq!(svc.get(&format!("/api/v1/findings/{id}x")).0, 404);
    assert_eq!(svc.get("/api/v1/findings?since=yesterday").0, 400);
    let none = svc.get_json("/api/v1/findings?domain=http&offender=203.0.113.50");
    assert_eq!(none["count"], 0);
    let status = svc.get_json("/api/v1/status");
    assert_eq!(status["sources"][0]["emitted"], 18);
    let metrics = svc.get("/metrics").1;
    assert!(
        metrics.contains("threatpilot_ingest_requests_total{source=\"loki\",status=\"204\"} 3"),
        "{metrics}"
    );
    let err = svc.stop();
    assert!(err.contains("source   received=18 emitted=18"), "{err}");
}

#[test]
fn bad_pushes_get_a_clear_4xx_and_lose_nothing_good() {
    let limits = "  limits:\n    max_body_bytes: 65536\n    max_decompressed_bytes: 1048576\n    request_timeout_secs: 1\n";
    let svc = Service::start("loki-bad", &pipeline(LOKI, limits), Stdio::null());
    let good = json_push(r#"{"job":"app"}"#, &["all good".to_string()], now_ms());
    // (what, headers, body, status, what the answer says)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "not JSON",
            vec![JSON],
            b"{\"streams\": [".to_vec(),
            400,
            "invalid Loki push JSON",
        ),
        (
            "no labels",
            vec![JSON],
            json_push("{}", &["x".into()], 1),
            400,
            "no labels",
        ),
        (
            "bad timestamp",
            vec![JSON],
            br#"{"streams":[{"stream":{"a":"b"},"values":[["soon","x"]]}]}"#.to_vec(),
            400,
            "nanoseconds",
        ),
        (
            "not snappy",
            vec![PROTO],
            b"\xff\xff\xff\xff\xff garbage".to_vec(),
            400,
            "snappy",
        ),
        (
            "brotli",
            vec![JSON, ("Content-Encoding", "br")],
            good.clone(),
            415,
            "not supported",
        ),
        (
            "too large",
            vec![JSON],
            vec![b' '; 70_000],
            413,
            "over 65536 bytes",
        ),
        (
            "gzip bomb",
            vec![JSON, ("Content-Encoding", "gzip")],
            gzip(&vec![b' '; 4 << 20]),
            413,
            "decompresses to more",
        ),
        // a snappy block whose header claims 1 GiB
        (
            "snappy bomb",
            vec![PROTO],
            b"\x80\x80\x80\x80\x04\x00zzzz".to_vec(),
            413,
            "declares",
        ),
    ];
    for (what, headers, body, status, says) in cases {
        let r = svc.post("/loki/api/v1/push", &headers, &body);
        assert_eq!(r.status, status, "{what}: {}", r.text());
        assert!(r.text().contains(says), "{what}: {}", r.text());
    }
    // a body that never finishes arriving
    let mut s = TcpStream::connect(svc.api).unwrap();
    write!(s, "POST /loki/api/v1/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"str").unwrap();
    let started = Instant::now();
    let r = support::read_response(&mut s);
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(5));
    // the good push after all that
    assert_eq!(svc.post("/loki/api/v1/push", &[JSON], &good).status, 204);
    svc.wait_for("the good line", 10, |s| {
        s.read_jsonl("events.jsonl").len() == 1
    });
    let metrics = svc.get("/metrics").1;
    assert!(metrics.contains("status=\"413\"} 3"), "{metrics}");
    svc.stop();
}

#[test]
fn a_flooding_client_gets_429_with_retry_after_and_others_are_served() {
    let limits = "  limits:\n    requests_per_sec: 1\n    burst: 3\n";
    let svc = Service::start("loki-rate", &pipeline(LOKI, limits), Stdio::null());
    let body = json_push(r#"{"job":"app"}"#, &["one line".to_string()], now_ms());
    let statuses: Vec<u16> = (0..8)
        .map(|_| svc.post("/loki/api/v1/push", &[JSON], &body).status)
        .collect();
    assert_eq!(&statuses[..3], &[204, 204, 204], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    let r = svc.post("/loki/api/v1/push", &[JSON], &body);
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // reads are not rate limited
    assert_eq!(svc.get("/api/v1/status").0, 200);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(svc.post("/loki/api/v1/push", &[JSON], &body).status, 204);
    svc.wait_for("4 events", 10, |s| s.read_jsonl("events.jsonl").len() == 4);
    svc.stop();
}

#[test]
fn tokens_and_roles_guard_every_route() {
    use threatpilot::api::auth::hash_token;
    let auth = format!(
        "  auth:\n    tokens:\n      - {{name: grafana, role: viewer, sha256: {}}}\n      - {{name: shipper, role: ingest, sha256: {}}}\n      - {{name: ops, role: admin, sha256: {}}}\n",
        hash_token("view-tok"),
        hash_token("push-tok"),
        hash_token("admin-tok")
    );
    let sources = format!("{LOKI}  - type: alertmanager\n    id: am\n");
    let svc = Service::start("auth", &pipeline(&sources, &auth), Stdio::null());
    let bearer = |t: &str| format!("Bearer {t}");
    let get = |path: &str, tok: Option<&str>| {
        let h = tok.map(bearer);
        let headers: Vec<(&str, &str)> = h.iter().map(|v| ("Authorization", v.as_str())).collect();
        support::http(svc.api, "GET", path, &headers, b"").status
    };
    assert_eq!(get("/healthz", None), 200);
    assert_eq!(get("/readyz", None), 200);
    assert_eq!(get("/metrics", None), 200);
    for path in ["/api/v1/findings", "/api/v1/status"] {
        assert_eq!(get(path, None), 401, "{path}");
        assert_eq!(get(path, Some("guess")), 401, "{path}");
        assert_eq!(get(path, Some("push-tok")), 403, "{path}");
        assert_eq!(get(path, Some("view-tok")), 200, "{path}");
        assert_eq!(get(path, Some("admin-tok")), 200, "{path}");
    }
    let body = json_push(r#"{"job":"app"}"#, &["x".to_string()], now_ms());
    let push = |tok: Option<&str>| {
        let h = tok.map(bearer);
        let mut headers = vec![JSON];
        if let Some(v) = &h {
            headers.push(("Authorization", v.as_str()));
        }
        svc.post("/loki/api/v1/push", &headers, &body)
    };
    let r = push(None);
    assert_eq!(r.status, 401);
    assert!(r.text().contains("bearer token"), "{}", r.text());
    assert_eq!(push(Some("view-tok")).status, 403);
    assert_eq!(push(Some("push-tok")).status, 204);
    assert_eq!(push(Some("admin-tok")).status, 204);
    svc.wait_for("2 events", 10, |s| s.read_jsonl("events.jsonl").len() == 2);
    // every documented route is served
    for (method, path) in threatpilot::api::ROUTES {
        if path.contains('{') || path.ends_with("/stream") {
            continue;
        }
        let auth = bearer("admin-tok");
        let r = support::http(
            svc.api,
            &method.to_uppercase(),
            path,
            &[("Authorization", &auth)],
            b"",
        );
        assert_ne!(r.status, 404, "{method} {path}");
        assert_ne!(r.status, 405, "{method} {path}");
    }
    svc.stop();
}

#[test]
fn the_live_stream_sends_each_finding_version_as_it_is_emitted() {
    let svc = Service::start("sse", &pipeline(LOKI, ""), Stdio::null());
    let mut s = TcpStream::connect(svc.api).unwrap();
    write!(
        s,
        "GET /api/v1/findings/stream?domain=identity HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while !seen.contains("203.0.113.77") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        seen
    });
    std::thread::sleep(Duration::from_millis(200));
    // an http finding first, which the filter keeps out
    let probes: Vec<String> = (0..30)
        .map(|i| format!("198.51.100.3 - - [22/Nov/2026:10:00:{:02} +0000] \"GET /.git/config{i} HTTP/1.1\" 404 10 \"-\" \"x\"", i % 60))
        .collect();
    let r = svc.post(
        "/loki/api/v1/push",
        &[JSON],
        &json_push(r#"{"format":"access"}"#, &probes, now_ms()),
    );
    assert_eq!(r.status, 204);
    let lines = ssh_failures("203.0.113.77", 12, 1000);
    let r = svc.post(
        "/loki/api/v1/push",
        &[JSON],
        &json_push(r#"{"job":"sshd"}"#, &lines, now_ms()),
    );
    assert_eq!(r.status, 204);
    let seen = reader.join().unwrap();
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert!(seen.contains("event: finding"), "{seen}");
    assert!(seen.contains("\"domain\":\"identity\""), "{seen}");
    assert!(!seen.contains("\"domain\":\"http\""), "{seen}");
    svc.stop();
}

#[test]
fn overload_is_answered_503_memory_stays_bounded_and_retries_lose_nothing() {
    // findings go to a stdout nobody reads yet: the sink blocks, and the
    // stages fill up behind it until pushes are refused
    let yaml = "version: 1\nname: overload\nsources:\n  - type: loki_push\n    id: loki\nbatch_size: 64\nchannel_capacity: 1\ndetect:\n  paths: [detectors]\nsinks:\n  - type: stdout\n    updates: true\n  - type: events\n    path: {dir}/events.jsonl\napi:\n  listen: 127.0.0.1:0\n  limits:\n    overload_wait_ms: 50\n    requests_per_sec: 100000\n    burst: 100000\n";
    let mut svc = Service::start("overload", yaml, Stdio::piped());
    let stdout = svc.stdout().unwrap();
    let body_for = |k: usize| {
        // 50 attackers, 6 failures each: dozens of finding versions per push
        let lines: Vec<String> = (0..50)
            .flat_map(|a| ssh_failures(&format!("10.{}.{}.{}", k / 250, k % 250, a + 1), 6, 2000))
            .collect();
        (
            lines.len(),
            json_push(r#"{"job":"sshd"}"#, &lines, now_ms()),
        )
    };
    let mut accepted = 0usize;
    let mut refused = Vec::new();
    let mut peak = 0;
    let base = support::rss_kb(svc.pid());
    for k in 0..400 {
        let (n, body) = body_for(k);
        let r = svc.post("/loki/api/v1/push", &[JSON], &body);
        peak = peak.max(support::rss_kb(svc.pid()));
        match r.status {
            204 => accepted += n,
            503 => {
                assert_eq!(r.header("retry-after"), Some("1"));
                refused.push(k);
                if refused.len() >= 5 {
                    break;
                }
            }
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    assert!(
        !refused.is_empty(),
        "never refused: {accepted} lines accepted"
    );
    assert!(
        peak < base + 256 * 1024,
        "memory grew from {base} kB to {peak} kB under overload"
    );
    // the reader catches up; the refused pushes are retried and taken
    let drain = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = { stdout }.read_to_end(&mut sink);
    });
    for k in refused {
        let (n, body) = body_for(k);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = svc.post("/loki/api/v1/push", &[JSON], &body);
            if r.status == 204 {
                accepted += n;
                break;
            }
            assert_eq!(r.status, 503);
            assert!(Instant::now() < deadline, "still refused");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    svc.wait_for("every accepted line", 30, |s| {
        s.read_jsonl("events.jsonl").len() == accepted
    });
    let err = svc.stop();
    drain.join().unwrap();
    let status_line = err
        .lines()
        .find(|l| l.trim_start().starts_with("source"))
        .unwrap();
    assert!(
        status_line.contains("dropped"),
        "refusals are counted: {status_line}"
    );
}

#[test]
fn syslog_over_udp_and_tcp_with_both_framings() {
    let src = "  - type: syslog\n    id: syslog\n    udp: 127.0.0.1:0\n    tcp: 127.0.0.1:0\n    max_message_bytes: 200\n";
    let svc = Service::start("syslog", &pipeline(src, ""), Stdio::null());
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let line = |host: &str, i: usize| {
        format!(
            "<38>Nov 22 10:00:{:02} {host} sshd[77]: Failed password for root from 192.0.2.{i} port 22 ssh2",
            i % 60
        )
    };
    for i in 0..5 {
        udp.send_to(line("udp-host", i).as_bytes(), svc.syslog_udp.unwrap())
            .unwrap();
    }
    // RFC 5424 with octet counting, split across writes
    let mut t = TcpStream::connect(svc.syslog_tcp.unwrap()).unwrap();
    let mut wire = Vec::new();
    for i in 0..5 {
        let m = format!(
            "<38>1 2026-11-22T10:00:0{i}Z tcp-counted sshd 77 - - Failed password for admin from 192.0.2.{} port 22 ssh2",
            50 + i
        );
        wire.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
    }
    t.write_all(&wire[..30]).unwrap();
    t.flush().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    t.write_all(&wire[30..]).unwrap();
    drop(t);
    // newline framing, with one message over the limit
    let mut t = TcpStream::connect(svc.syslog_tcp.unwrap()).unwrap();
    for i in 0..3 {
        writeln!(t, "{}", line("tcp-newline", 100 + i)).unwrap();
    }
    writeln!(
        t,
        "<38>Nov 22 10:00:09 tcp-newline app: {}",
        "x".repeat(1000)
    )
    .unwrap();
    writeln!(t, "{}", line("tcp-newline", 200)).unwrap();
    drop(t);
    svc.wait_for("15 syslog events", 10, |s| {
        s.read_jsonl("events.jsonl").len() >= 15
    });
    let events = svc.read_jsonl("events.jsonl");
    assert_eq!(events.len(), 15);
    let count = |h: &str| events.iter().filter(|e| e["host.name"] == h).count();
    assert_eq!(
        (
            count("udp-host"),
            count("tcp-counted"),
            count("tcp-newline")
        ),
        (5, 5, 5)
    );
    assert!(
        events
            .iter()
            .filter(|e| e["host.name"] != "tcp-newline" || e["source.ip"] != Value::Null)
            .all(|e| e["event.dataset"] == "sshd")
    );
    let cut: Vec<&Value> = events
        .iter()
        .filter(|e| e["labels.truncated"] == "true")
        .collect();
    assert_eq!(cut.len(), 1);
    assert!(cut[0]["event.original"].as_str().unwrap().len() <= 200);
    let err = svc.stop();
    assert!(err.contains("source   received=15 emitted=15"), "{err}");
}
