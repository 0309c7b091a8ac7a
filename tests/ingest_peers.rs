//! Ingestion from real peers nobody here wrote: Prometheus Alertmanager
//! calling the webhook, rsyslog forwarding over TCP and UDP, and the Loki
//! clients python-logging-loki (JSON) and winston-loki (snappy protobuf).
//! `scripts/test.sh` installs them; without one a test skips, unless
//! THREATPILOT_REQUIRE_SERVERS=1 makes that a failure.

#[path = "support/service.rs"]
mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{Service, servers_required};

fn have(cmd: &str, args: &[&str]) -> bool {
    let ok = Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(!servers_required(), "{cmd} is required but missing");
        eprintln!("skipped: {cmd} is not installed");
    }
    ok
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills a helper process when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pipeline(sources: &str) -> String {
    format!(
        "version: 1\nname: peers\nsources:\n{sources}detect:\n  paths: [detectors]\nsinks:\n  - type: events\n    path: {{dir}}/events.jsonl\n  - type: file\n    path: {{dir}}/findings.jsonl\napi:\n  listen: 127.0.0.1:0\n"
    )
}

fn rfc3339(offset_secs: i64) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    threatpilot::time::format_rfc3339(ms + offset_secs * 1000)
}

#[test]
fn alertmanager_groups_call_the_webhook_and_resolve_the_finding() {
    if !have("prometheus-alertmanager", &["--version"]) {
        return;
    }
    let svc = Service::start(
        "am",
        &pipeline("  - type: alertmanager\n    id: am\n"),
        Stdio::null(),
    );
    let port = free_port();
    let dir = svc.dir.join("alertmanager");
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "route:\n  receiver: tp\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: tp\n    webhook_configs:\n      - url: http://{}/alertmanager/webhook\n        send_resolved: true\n",
        svc.api
    );
    std::fs::write(dir.join("am.yml"), config).unwrap();
    let _am = Guard(
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", dir.join("am.yml").display()))
            .arg(format!("--storage.path={}", dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("am.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let am: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    svc.wait_for("alertmanager", 30, |_| {
        std::net::TcpStream::connect(am).is_ok()
            && support::http(am, "GET", "/-/ready", &[], b"").status == 200
    });
    let alerts = |ends: Option<String>| {
        let a: Vec<Value> = ["api-1:9100", "api-2:9100"]
            .iter()
            .map(|inst| {
                let mut v = serde_json::json!({
                    "labels": {"alertname": "HighLatency", "instance": inst, "severity": "warning"},
                    "annotations": {"summary": format!("p99 latency high on {inst}")},
                    "startsAt": rfc3339(-60),
                });
                if let Some(e) = &ends {
                    v["endsAt"] = Value::String(e.clone());
                }
                v
            })
            .collect();
        serde_json::to_vec(&a).unwrap()
    };
    let json = [("Content-Type", "application/json")];
    let r = support::http(am, "POST", "/api/v2/alerts", &json, &alerts(None));
    assert_eq!(r.status, 200, "{}", r.text());
    // one finding for the group
    svc.wait_for("the group's finding", 30, |s| {
        s.get_json("/api/v1/findings?detector=infrastructure.alert_firing")["count"] == 1
    });
    let findings = svc.get_json("/api/v1/findings?detector=infrastructure.alert_firing");
    assert_eq!(findings["count"], 1, "{findings}");
    let f = &findings["findings"][0];
    assert_eq!(f["offender"]["value"], "alertname=HighLatency");
    assert_ne!(f["status"], "resolved");
    // Alertmanager resends nothing new: still one finding
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        svc.get_json("/api/v1/findings?detector=infrastructure.alert_firing")["count"],
        1
    );
    // both alerts end: Alertmanager sends the group resolved
    let r = support::http(
        am,
        "POST",
        "/api/v2/alerts",
        &json,
        &alerts(Some(rfc3339(-1))),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    svc.wait_for("the group resolved", 30, |s| {
        s.get_json("/api/v1/findings?detector=infrastructure.alert_firing&status=resolved")["count"]
            == 1
    });
    // the resolved version counts both alerts of the group
    let done =
        svc.get_json("/api/v1/findings?detector=infrastructure.alert_firing&status=resolved");
    assert_eq!(
        done["findings"][0]["metrics"]["unique_targets"], 2,
        "{done}"
    );
    let events = svc.read_jsonl("events.jsonl");
    let firing = events
        .iter()
        .filter(|e| e["event.action"] == "alert_firing")
        .count();
    let resolved = events
        .iter()
        .filter(|e| e["event.action"] == "alert_resolved")
        .count();
    assert_eq!((firing, resolved), (2, 2), "each alert once per status");
    assert!(
        events
            .iter()
            .all(|e| e["alert.group"] == "alertname=HighLatency")
    );
    svc.stop();
}

#[test]
fn rsyslog_forwards_over_tcp_and_udp() {
    if !have("rsyslogd", &["-v"]) {
        return;
    }
    let src = "  - type: syslog\n    id: syslog\n    udp: 127.0.0.1:0\n    tcp: 127.0.0.1:0\n";
    let svc = Service::start("rsyslog", &pipeline(src), Stdio::null());
    let (udp, tcp) = (svc.syslog_udp.unwrap(), svc.syslog_tcp.unwrap());
    let input = free_port();
    let dir = svc.dir.join("rsyslog");
    std::fs::create_dir_all(&dir).unwrap();
    // rsyslog receives on its own TCP port and forwards everything twice:
    // octet-counted RFC 5424 over TCP, and classic RFC 3164 over UDP
    let conf = format!(
        r#"global(workDirectory="{d}")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{input}" ruleset="fwd")
ruleset(name="fwd") {{
  action(type="omfwd" target="127.0.0.1" port="{tp}" protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
  action(type="omfwd" target="127.0.0.1" port="{up}" protocol="udp" template="RSYSLOG_ForwardFormat")
}}
"#,
        d = dir.display(),
        tp = tcp.port(),
        up = udp.port()
    );
    std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
    let _rs = Guard(
        Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("rsyslog.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let target: std::net::SocketAddr = format!("127.0.0.1:{input}").parse().unwrap();
    svc.wait_for("rsyslog", 30, |_| {
        std::net::TcpStream::connect(target).is_ok()
    });
    for i in 0..12 {
        let st = Command::new("logger")
            .args([
                "--tcp",
                "--server",
                "127.0.0.1",
                "--port",
                &input.to_string(),
                "-t",
                "sshd",
                "-p",
                "auth.info",
            ])
            .arg(format!(
                "Failed password for invalid user user{i} from 203.0.113.9 port {} ssh2",
                5000 + i
            ))
            .status()
            .unwrap();
        assert!(st.success());
    }
    svc.wait_for("24 forwarded events", 30, |s| {
        s.read_jsonl("events.jsonl").len() >= 24
    });
    let events = svc.read_jsonl("events.jsonl");
    assert_eq!(events.len(), 24);
    for e in &events {
        assert_eq!(e["event.dataset"], "sshd", "{e}");
        assert_eq!(e["source.ip"], "203.0.113.9", "{e}");
        assert!(e["host.name"].is_string(), "{e}");
    }
    svc.wait_for("a finding", 10, |s| {
        s.get_json("/api/v1/findings?offender=203.0.113.9")["count"]
            .as_u64()
            .unwrap()
            > 0
    });
    svc.stop();
}

#[test]
fn python_logging_loki_pushes_json() {
    if !have("python3", &["-c", "import logging_loki"]) {
        return;
    }
    let svc = Service::start(
        "pyloki",
        &pipeline("  - type: loki_push\n    id: loki\n"),
        Stdio::null(),
    );
    let script = format!(
        r#"
import logging, logging_loki
h = logging_loki.LokiHandler(url="http://{}/loki/api/v1/push", tags={{"job": "sshd", "host": "py-1"}}, version="1")
log = logging.getLogger("sshd")
log.addHandler(h)
log.setLevel(logging.INFO)
for i in range(12):
    log.warning("Failed password for root from 198.51.100.23 port %d ssh2", 3000 + i, extra={{"tags": {{"service_name": "ssh"}}}})
"#,
        svc.api
    );
    let st = Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(st.success());
    svc.wait_for("12 events", 20, |s| {
        s.read_jsonl("events.jsonl").len() >= 12
    });
    let events = svc.read_jsonl("events.jsonl");
    assert_eq!(events.len(), 12);
    for e in &events {
        assert_eq!(e["host.name"], "py-1");
        assert_eq!(e["labels.severity"], "warning");
        assert_eq!(e["service.name"], "ssh");
        assert_eq!(e["source.ip"], "198.51.100.23");
    }
    svc.wait_for("a brute-force finding", 10, |s| {
        s.get_json("/api/v1/findings?offender=198.51.100.23&classification=brute_force")["count"]
            .as_u64()
            .unwrap()
            > 0
    });
    svc.stop();
}

#[test]
fn winston_loki_pushes_snappy_protobuf() {
    let node_path = std::env::var("THREATPILOT_NODE_PATH").unwrap_or_default();
    let probe = format!("module.paths.unshift('{node_path}'); require('winston-loki')");
    if !have("node", &["-e", &probe]) {
        return;
    }
    let svc = Service::start(
        "winston",
        &pipeline("  - type: loki_push\n    id: loki\n"),
        Stdio::null(),
    );
    let script = format!(
        r#"
module.paths.unshift('{node_path}');
const winston = require('winston');
const LokiTransport = require('winston-loki');
const t = new LokiTransport({{ host: 'http://{addr}', labels: {{ job: 'sshd', host: 'node-1' }}, batching: true, interval: 0.5,
  onConnectionError: (e) => {{ console.error(e); process.exitCode = 1; }} }});
const log = winston.createLogger({{ transports: [t] }});
for (let i = 0; i < 12; i++) log.warn('Failed password for admin from 192.0.2.44 port ' + (7000 + i) + ' ssh2');
setTimeout(() => log.close(), 2000);
"#,
        addr = svc.api
    );
    let st = Command::new("node").args(["-e", &script]).status().unwrap();
    assert!(st.success());
    svc.wait_for("12 events", 20, |s| {
        s.read_jsonl("events.jsonl").len() >= 12
    });
    let events = svc.read_jsonl("events.jsonl");
    assert_eq!(events.len(), 12);
    for e in &events {
        assert_eq!(e["host.name"], "node-1");
        assert_eq!(e["labels.level"], "warn");
        assert_eq!(e["source.ip"], "192.0.2.44");
    }
    let metrics = svc.get("/metrics").1;
    assert!(metrics.contains("status=\"204\""), "{metrics}");
    svc.stop();
}
