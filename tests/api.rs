//! The service API of a running pipeline: `/healthz`, `/readyz` and
//! `/metrics` over real HTTP, on an ephemeral port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One HTTP/1.1 GET; returns (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let out = raw_get(port, path)?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// One HTTP/1.1 GET; the whole answer, head and body.
fn raw_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn a_running_pipeline_answers_health_readiness_and_metrics() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("tp-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pipe = dir.join("stdin.yaml");
    std::fs::write(
        &pipe,
        format!(
            "version: 1\nname: api-test\nsources:\n  - type: stdin\n    id: in\nsinks:\n  - type: file\n    path: {}\napi:\n  listen: 127.0.0.1:{port}\n",
            dir.join("findings.jsonl").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_threatpilot"))
        .args(["run", "--pipeline"])
        .arg(&pipe)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        if let Some(r) = get(port, "/healthz") {
            break r;
        }
        assert!(Instant::now() < deadline, "api never answered");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(health.0, 200);
    assert_eq!(get(port, "/readyz").unwrap().0, 200);
    assert_eq!(get(port, "/nope").unwrap().0, 404);
    // no answer, found or not, is sniffed by a browser into something else
    for path in ["/healthz", "/nope", "/api/v1/findings"] {
        let head = raw_get(port, path).unwrap().to_ascii_lowercase();
        assert!(
            head.contains("\r\nx-content-type-options: nosniff\r\n"),
            "{path}: {head}"
        );
    }

    let mut stdin = child.stdin.take().unwrap();
    for i in 0..2000 {
        writeln!(stdin, "Mar  3 10:00:{:02} h sshd[1]: Failed password for root from 203.0.113.{} port 4000 ssh2", i % 60, i % 7).unwrap();
    }
    stdin.flush().unwrap();
    // stage metrics appear, in Prometheus format, while the pipeline runs
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(port, "/metrics").unwrap();
        assert_eq!(status, 200);
        if body.contains("# TYPE threatpilot_stage_queue_depth gauge") {
            break;
        }
        assert!(Instant::now() < deadline, "no stage metrics: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}
