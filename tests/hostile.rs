//! Attacks on the service itself, each test named after one: hostile
//! clocks, decompression and line bombs, slow and hoarding clients. Every
//! test runs `threatpilot run` on ephemeral loopback ports, attacks it
//! with bounded loops, then checks that normal traffic is still detected
//! and, where memory is the target, that the process's own RSS stayed
//! under the ceiling.

#[path = "support/service.rs"]
mod support;

use std::net::UdpSocket;
use std::process::Stdio;

use serde_json::Value;
use support::Service;

fn pipeline(sources: &str, extra: &str) -> String {
    format!(
        "version: 1\nname: hostile\nsources:\n{sources}detect:\n  paths: [detectors]\nsinks:\n  - type: events\n    path: {{dir}}/events.jsonl\n  - type: file\n    path: {{dir}}/findings.jsonl\napi:\n  listen: 127.0.0.1:0\n{extra}"
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn rfc3339(ms: i64) -> String {
    threatpilot::time::format_rfc3339(ms)
}

/// A stage's count from `/api/v1/status` (`dropped` or `adjusted`, by reason).
fn stage_count(svc: &Service, stage: &str, kind: &str, reason: &str) -> u64 {
    let status = svc.get_json("/api/v1/status");
    status["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["stage"] == stage)
        .and_then(|s| s[kind][reason].as_u64())
        .unwrap_or(0)
}

fn findings_for(svc: &Service, offender: &str) -> Vec<Value> {
    svc.read_jsonl("findings.jsonl")
        .into_iter()
        .filter(|f| f["offender"]["value"] == offender)
        .collect()
}

#[test]
fn a_syslog_datagram_dated_2099_does_not_blind_its_peer() {
    let src = "  - type: syslog\n    id: syslog\n    udp: 127.0.0.1:0\n";
    let svc = Service::start("clock-syslog", &pipeline(src, ""), Stdio::null());
    let to = svc.syslog_udp.unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let future = "<38>1 2099-01-01T00:00:00Z bastion sshd 77 - - Failed password for root from 198.51.100.99 port 22 ssh2";
    udp.send_to(future.as_bytes(), to).unwrap();
    svc.wait_for("the future-dated event", 10, |s| {
        !s.read_jsonl("events.jsonl").is_empty()
    });
    let stamp = chrono::Utc::now().format("%b %e %H:%M:%S");
    for i in 0..10 {
        let line = format!(
            "<38>{stamp} bastion sshd[{}]: Failed password for root from 203.0.113.9 port {} ssh2",
            300 + i,
            42000 + i
        );
        udp.send_to(line.as_bytes(), to).unwrap();
    }
    svc.wait_for("the brute force from the same peer", 10, |s| {
        !findings_for(s, "203.0.113.9").is_empty()
    });
    let events = svc.read_jsonl("events.jsonl");
    let clamped: Vec<&Value> = events
        .iter()
        .filter(|e| e["event.time_clamped_from"] == "2099-01-01T00:00:00.000Z")
        .collect();
    assert_eq!(clamped.len(), 1, "the record is labelled with its claim");
    let t = threatpilot::time::parse_rfc3339(clamped[0]["@timestamp"].as_str().unwrap().as_bytes())
        .unwrap()
        .0;
    assert!((t - now_ms()).abs() < 60_000, "placed at its receipt");
    assert_eq!(stage_count(&svc, "parse", "adjusted", "time_clamped"), 1);
    assert_eq!(stage_count(&svc, "detect", "dropped", "late"), 0);
    let metrics = svc.get("/metrics").1;
    assert!(
        metrics.contains(
            "threatpilot_stage_adjusted_total{stage=\"parse\",reason=\"time_clamped\"} 1"
        ),
        "{metrics}"
    );
    svc.stop();
}

/// An Alertmanager webhook body for one group.
fn alert_group(group: &str, alerts: &[(&str, i64)]) -> Vec<u8> {
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|(instance, starts)| {
            serde_json::json!({
                "status": "firing",
                "labels": {"alertname": group, "instance": instance, "severity": "warning"},
                "annotations": {"summary": format!("{group} on {instance}")},
                "startsAt": rfc3339(*starts),
                "endsAt": "0001-01-01T00:00:00Z",
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{group}\"}}"),
        "status": "firing",
        "receiver": "tp",
        "groupLabels": {"alertname": group},
        "commonAnnotations": {},
        "alerts": alerts,
    }))
    .unwrap()
}

#[test]
fn an_alert_dated_2099_or_resent_with_an_older_start_is_never_dropped_as_late() {
    let src = "  - type: alertmanager\n    id: am\n";
    let svc = Service::start("clock-alerts", &pipeline(src, ""), Stdio::null());
    let json = [("Content-Type", "application/json")];
    let now = now_ms();
    let far = threatpilot::time::parse_rfc3339(b"2099-01-01T00:00:00Z")
        .unwrap()
        .0;
    let post = |body: Vec<u8>| {
        let r = svc.post("/alertmanager/webhook", &json, &body);
        assert_eq!(r.status, 200, "{}", r.text());
    };
    // a sender whose clock is 73 years fast
    post(alert_group("ClockSkewed", &[("db-1:9100", far)]));
    // a current group afterwards
    post(alert_group("HighLatency", &[("api-1:9100", now - 60_000)]));
    // the same group again, with an alert that started 10 minutes earlier
    post(alert_group(
        "HighLatency",
        &[("api-1:9100", now - 60_000), ("api-2:9100", now - 660_000)],
    ));
    // detect writes the events it evaluated, the sink stage after it the
    // findings: under load the second file lags the first
    svc.wait_for("the older alert evaluated and both groups found", 10, |s| {
        s.read_jsonl("events.jsonl")
            .iter()
            .any(|e| e["host.name"] == "api-2")
            && !findings_for(s, "alertname=ClockSkewed").is_empty()
            && !findings_for(s, "alertname=HighLatency").is_empty()
    });
    assert_eq!(stage_count(&svc, "detect", "dropped", "late"), 0);
    assert_eq!(stage_count(&svc, "parse", "adjusted", "time_clamped"), 1);
    let dir = svc.dir.clone();
    svc.stop();
    // the group's last version counts both of its alerts
    let last = std::fs::read_to_string(dir.join("findings.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .rfind(|f| f["offender"]["value"] == "alertname=HighLatency")
        .unwrap();
    assert_eq!(last["metrics"]["unique_targets"], 2, "{last}");
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// A Loki JSON push of `n` one-character entries: tens of bytes
/// gzipped per thousand entries.
fn entry_bomb(n: usize) -> Vec<u8> {
    let mut body = String::from(r#"{"streams":[{"stream":{"job":"bomb"},"values":["#);
    for i in 0..n {
        if i > 0 {
            body.push(',');
        }
        body.push_str(r#"["1","x"]"#);
    }
    body.push_str("]}]}");
    gzip(body.as_bytes())
}

/// A normal push: `n` failed SSH logins from `ip`, dated now.
fn ssh_push(ip: &str, n: usize) -> Vec<u8> {
    let t0 = now_ms();
    let values: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!([
                ((t0 + i as i64) * 1_000_000).to_string(),
                format!("Failed password for root from {ip} port {} ssh2", 40000 + i)
            ])
        })
        .collect();
    serde_json::to_vec(
        &serde_json::json!({"streams": [{"stream": {"job": "sshd"}, "values": values}]}),
    )
    .unwrap()
}

const LOKI: &str = "  - type: loki_push\n    id: loki\n";
const GZIP_JSON: [(&str, &str); 2] = [
    ("Content-Type", "application/json"),
    ("Content-Encoding", "gzip"),
];

#[test]
fn a_hundred_concurrent_gzip_bombs_and_entry_bombs_stay_under_the_memory_ceiling() {
    // a 128 MiB ingestion budget; the process's own RSS is the judge
    let extra = "  limits:\n    requests_per_sec: 100000\n    burst: 100000\n    max_connections_per_client: 200\n";
    let yaml = pipeline(LOKI, extra).replace("api:\n", "ingest_memory_mib: 128\napi:\n");
    let svc = Service::start("bombs", &yaml, Stdio::null());
    let base = support::rss_kb(svc.pid());
    // 6.5M entries: about 60 MB inflated, 60 KB sent
    let bomb = std::sync::Arc::new(entry_bomb(6_500_000));
    // 2.2M entries in one body (the Loki JSON that took 2 GB)
    let many = std::sync::Arc::new(entry_bomb(2_200_000));
    assert!(
        bomb.len() < 200_000 && many.len() < 200_000,
        "{}",
        bomb.len()
    );
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(base));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (peak, done, pid) = (peak.clone(), done.clone(), svc.pid());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(support::rss_kb(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let api = svc.api;
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hands: Vec<_> = (0..104)
            .map(|i| {
                let body = if i % 26 == 0 {
                    many.clone()
                } else {
                    bomb.clone()
                };
                s.spawn(move || {
                    let r = support::http(api, "POST", "/loki/api/v1/push", &GZIP_JSON, &body);
                    if r.status == 503 {
                        assert_eq!(r.header("retry-after"), Some("1"), "{}", r.text());
                    }
                    r.status
                })
            })
            .collect();
        hands.into_iter().map(|h| h.join().unwrap()).collect()
    });
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    // nothing was taken: each is too large (413) or waits for room (503)
    assert!(
        statuses.iter().all(|s| *s == 413 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&503),
        "the budget refused some: {statuses:?}"
    );
    let ceiling_kb = 128 * 1024 + 96 * 1024;
    eprintln!("bombs: RSS {base} kB at start, peak {peak} kB; answers {statuses:?}");
    assert!(
        peak < base + ceiling_kb,
        "RSS went from {base} kB to {peak} kB (ceiling {ceiling_kb} kB above the start)"
    );
    // normal traffic is still taken and detected
    let r = svc.post(
        "/loki/api/v1/push",
        &[("Content-Type", "application/json")],
        &ssh_push("203.0.113.50", 10),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    svc.wait_for("the brute force after the bombs", 10, |s| {
        !findings_for(s, "203.0.113.50").is_empty()
    });
    let metrics = svc.get("/metrics").1;
    assert!(
        metrics.contains("threatpilot_ingest_memory_budget_refusals_total"),
        "{metrics}"
    );
    svc.stop();
}

/// A connection from `from` (any 127/8 address: each is its own client).
fn connect_from(from: &str, to: std::net::SocketAddr) -> std::io::Result<std::net::TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.bind(format!("{from}:0").parse().unwrap())?;
        let c = tokio::time::timeout(std::time::Duration::from_secs(2), s.connect(to))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        c.into_std()
    })
    .and_then(|s| {
        s.set_nonblocking(false)?;
        Ok(s)
    })
}

/// Whether the server closed `s` within `secs` (reads end or fail).
fn closed_within(mut s: &std::net::TcpStream, secs: u64) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(std::time::Duration::from_secs(secs)))
        .unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Whether the server has already closed `s` (a read sees the end now).
fn closed_now(mut s: &std::net::TcpStream) -> bool {
    use std::io::Read;
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let closed = !matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    closed
}

#[test]
fn slowloris_headers_and_idle_connections_are_cut_and_one_client_cannot_hoard_connections() {
    use std::io::Write;
    let extra = "  limits:\n    header_read_timeout_secs: 2\n    idle_timeout_secs: 3\n    max_connections_per_client: 20\n";
    let svc = Service::start("slowloris", &pipeline(LOKI, extra), Stdio::null());
    // 50 clients each sending a header a byte at a time, slower than the timeout allows
    let mut slow: Vec<std::net::TcpStream> = (0..50)
        .map(|i| {
            let mut s = connect_from(&format!("127.0.2.{}", i + 1), svc.api).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
            s
        })
        .collect();
    let started = std::time::Instant::now();
    for _ in 0..2 {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        for s in &mut slow {
            let _ = s.write_all(b"s");
        }
        // the service still answers others meanwhile
        let t = std::time::Instant::now();
        assert_eq!(svc.get("/healthz").0, 200);
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }
    let cut = slow.iter().filter(|s| closed_within(s, 3)).count();
    assert_eq!(cut, 50, "every slow header was cut off");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // a keep-alive connection that goes quiet is closed after the idle timeout
    let mut idle = connect_from("127.0.3.1", svc.api).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 256];
    let n = std::io::Read::read(&mut idle, &mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let t = std::time::Instant::now();
    assert!(closed_within(&idle, 8), "the idle connection stays open");
    assert!(t.elapsed() >= std::time::Duration::from_millis(1500));
    // a body that stops halfway is cut after the idle timeout, whatever
    // the handler's own (longer) body timeout
    let mut stalled = connect_from("127.0.3.2", svc.api).unwrap();
    stalled
        .write_all(b"POST /loki/api/v1/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"streams\":")
        .unwrap();
    let t = std::time::Instant::now();
    assert!(closed_within(&stalled, 12), "the stalled body stays open");
    assert!(t.elapsed() >= std::time::Duration::from_secs(3));
    // one address opening 100 connections keeps 20; the rest are closed at once
    let hoard: Vec<std::net::TcpStream> = (0..100)
        .map(|_| connect_from("127.0.4.1", svc.api).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let refused = hoard.iter().filter(|s| closed_now(s)).count();
    assert_eq!(refused, 80, "past 20 per client, connections are closed");
    assert_eq!(svc.get("/healthz").0, 200);
    let metrics = svc.get("/metrics").1;
    for want in [
        "threatpilot_connections_refused_total{listener=\"api\",reason=\"client_full\"} 80",
        "threatpilot_connections_closed_total{listener=\"api\",reason=\"idle\"}",
    ] {
        assert!(metrics.contains(want), "{want} missing:\n{metrics}");
    }
    svc.stop();
}

#[test]
fn running_out_of_file_descriptors_backs_off_with_few_warnings_and_recovers() {
    let src = "  - type: syslog\n    id: syslog\n    tcp: 127.0.0.1:0\n    max_connections: 4000\n    max_connections_per_client: 4000\n";
    let extra = "  limits:\n    max_connections: 4000\n    max_connections_per_client: 4000\n";
    let svc = Service::start("emfile", &pipeline(src, extra), Stdio::null());
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &svc.pid().to_string(), "--nofile=256:256"])
        .status()
        .unwrap();
    assert!(limited.success());
    // more connections than the process has descriptors, to both listeners
    let tcp = svc.syslog_tcp.unwrap();
    let mut held = Vec::new();
    let flood = std::time::Instant::now();
    // once connects time out the backlogs are full: more would only wait
    let mut timeouts = 0;
    'flood: for i in 0..300 {
        for to in [svc.api, tcp] {
            match connect_from(&format!("127.0.5.{}", i % 250 + 1), to) {
                Ok(s) => held.push(s),
                Err(_) => {
                    timeouts += 1;
                    if timeouts >= 6 {
                        break 'flood;
                    }
                }
            }
        }
    }
    std::thread::sleep(std::time::Duration::from_secs(4));
    // at most one warning per listener per 10 s since the flood began
    let secs = flood.elapsed().as_secs();
    let allowed = 2 * (secs / 10 + 2) as usize;
    let warnings = svc
        .stderr_text()
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count();
    eprintln!(
        "{} connections held; {warnings} accept warnings in {secs} s",
        held.len()
    );
    assert!(
        (1..=allowed).contains(&warnings),
        "{warnings} accept warnings in {secs} s (at most {allowed}):\n{}",
        svc.stderr_text()
    );
    drop(held);
    // with descriptors back, both listeners serve again
    svc.wait_for("the api after the flood", 15, |s| {
        support::try_http(s.api, "GET", "/healthz").is_some_and(|r| r.status == 200)
    });
    let mut sys = connect_from("127.0.6.1", tcp).unwrap();
    let stamp = chrono::Utc::now().format("%b %e %H:%M:%S");
    for i in 0..8 {
        std::io::Write::write_all(
            &mut sys,
            format!("<38>{stamp} bastion sshd[1]: Failed password for root from 203.0.113.77 port {} ssh2\n", 41000 + i).as_bytes(),
        )
        .unwrap();
    }
    drop(sys);
    svc.wait_for("detection over syslog after the flood", 15, |s| {
        !findings_for(s, "203.0.113.77").is_empty()
    });
    svc.stop();
}

#[test]
fn soak_ten_minutes_of_mixed_hostile_and_normal_traffic() {
    // THREATPILOT_SOAK_SECS shortens it for a quick local run
    let secs: u64 = std::env::var("THREATPILOT_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let src = "  - type: loki_push\n    id: loki\n  - type: syslog\n    id: syslog\n    udp: 127.0.0.1:0\n    tcp: 127.0.0.1:0\n";
    let extra = "  limits:\n    requests_per_sec: 100000\n    burst: 100000\n    header_read_timeout_secs: 2\n";
    let yaml = pipeline(src, extra).replace("api:\n", "ingest_memory_mib: 128\napi:\n");
    let svc = Service::start("soak", &yaml, Stdio::null());
    let base = support::rss_kb(svc.pid());
    let ceiling_kb = 128 * 1024 + 128 * 1024;
    let bomb = entry_bomb(1_000_000);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = std::time::Instant::now();
    let mut round = 0u32;
    let mut peak = base;
    let mut slow: Vec<std::net::TcpStream> = Vec::new();
    while started.elapsed() < std::time::Duration::from_secs(secs) {
        round += 1;
        let attacker = format!("198.18.{}.{}", round / 250, round % 250 + 1);
        std::thread::scope(|s| {
            // four bombs at once
            for _ in 0..4 {
                s.spawn(|| {
                    let r = support::http(svc.api, "POST", "/loki/api/v1/push", &GZIP_JSON, &bomb);
                    assert!(matches!(r.status, 413 | 503), "{}", r.status);
                });
            }
            // a future-dated datagram and a normal brute force by syslog
            s.spawn(|| {
                let to = svc.syslog_udp.unwrap();
                udp.send_to(
                    b"<38>1 2099-01-01T00:00:00Z bastion sshd 77 - - Failed password for root from 198.51.100.99 port 22 ssh2",
                    to,
                )
                .unwrap();
                support::ship_ssh_failures(to, "127.0.0.1", &attacker, "admin", 8);
            });
            // a normal push, retried after 503 as Loki clients do
            s.spawn(|| {
                let body = ssh_push(&format!("198.19.{}.{}", round / 250, round % 250 + 1), 8);
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                loop {
                    let r = svc.post(
                        "/loki/api/v1/push",
                        &[("Content-Type", "application/json")],
                        &body,
                    );
                    if r.status == 204 {
                        break;
                    }
                    assert_eq!(r.status, 503, "{}", r.text());
                    assert!(std::time::Instant::now() < deadline, "never taken");
                    let wait: u64 = r
                        .header("retry-after")
                        .and_then(|v| v.parse().ok())
                        .unwrap();
                    std::thread::sleep(std::time::Duration::from_secs(wait));
                }
            });
        });
        // slow clients come and go (the header timeout cuts them)
        slow.retain(|s| !closed_now(s));
        for i in 0..10 {
            if let Ok(mut s) = connect_from(&format!("127.0.7.{}", i + 1), svc.api) {
                let _ = std::io::Write::write_all(&mut s, b"GET /heal");
                slow.push(s);
            }
        }
        assert!(slow.len() < 200, "slow connections pile up: {}", slow.len());
        peak = peak.max(support::rss_kb(svc.pid()));
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    drop(slow);
    // normal detection still works, for both sources
    let fresh = "198.20.0.1";
    support::ship_ssh_failures(svc.syslog_udp.unwrap(), "127.0.0.1", fresh, "admin", 8);
    svc.wait_for("detection after the soak", 20, |s| {
        !findings_for(s, fresh).is_empty()
    });
    let found = svc
        .read_jsonl("findings.jsonl")
        .iter()
        .filter(|f| {
            f["offender"]["value"]
                .as_str()
                .is_some_and(|v| v.starts_with("198.1"))
        })
        .map(|f| f["offender"]["value"].as_str().unwrap().to_owned())
        .collect::<std::collections::HashSet<_>>()
        .len();
    assert!(
        found as u32 >= 2 * round - 2,
        "{found} attackers found of {} sent",
        2 * round
    );
    assert_eq!(stage_count(&svc, "detect", "dropped", "late"), 0);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let after = support::rss_kb(svc.pid());
    eprintln!(
        "soak: {round} rounds in {secs} s, RSS {base} kB at start, peak {peak} kB, {after} kB after"
    );
    assert!(
        peak < base + ceiling_kb,
        "peak RSS {peak} kB from {base} kB"
    );
    assert!(after < base + ceiling_kb, "RSS {after} kB after the soak");
    svc.stop();
}
