//! E-mail and incident analysis. A real SMTP receiver (Python's aiosmtpd)
//! that requires STARTTLS, with a certificate from a private CA, and AUTH:
//! it is down while an attack comes in, then incidents and the daily
//! report (made at start for the day missed) arrive, each once. Advice
//! comes from a stand-in of an OpenAI-compatible chat-completions
//! endpoint that records what it was sent (no secret may reach it), and
//! from the template when the endpoint does not answer in time.

#[path = "support/service.rs"]
mod support;
#[path = "support/tls.rs"]
mod tls;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Service;

/// An SMTP server that takes mail only after STARTTLS and AUTH, and writes
/// each message it accepts as a JSON file.
const SMTPD: &str = r#"
import json, os, ssl, sys, time, warnings
warnings.filterwarnings("ignore")
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
cert, key, out, port, user, pw = sys.argv[1:7]
class Handler:
    async def handle_DATA(self, server, session, envelope):
        n = len(os.listdir(out))
        with open(os.path.join(out, "%04d.json" % n), "w") as f:
            json.dump({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                       "tls": session.ssl is not None, "auth": bool(session.authenticated),
                       "data": envelope.content.decode("utf8", "replace")}, f)
        return "250 OK"
def auth(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == pw.encode()
    return AuthResult(success=ok)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
c = Controller(Handler(), hostname="127.0.0.1", port=int(port), tls_context=ctx,
               require_starttls=True, authenticator=auth, auth_require_tls=True)
c.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

fn have_aiosmtpd() -> bool {
    Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("openssl")
            .arg("version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_smtpd(dir: &std::path::Path, out: &std::path::Path, port: u16) -> Child {
    let mut c = Command::new("python3")
        .args(["-c", SMTPD])
        .arg(dir.join("server.pem"))
        .arg(dir.join("server.key"))
        .arg(out)
        .arg(port.to_string())
        .args(["threatpilot", "mail-secret"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(c.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    c
}

fn mails(out: &std::path::Path) -> Vec<Value> {
    let mut names: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    names
        .iter()
        .filter_map(|p| serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok())
        .collect()
}

fn header<'a>(data: &'a str, name: &str) -> Option<&'a str> {
    data.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

#[test]
fn incidents_and_the_daily_report_reach_smtp_over_starttls_through_an_outage() {
    if !have_aiosmtpd() {
        assert!(
            !support::servers_required(),
            "aiosmtpd and openssl are needed (scripts/servers.sh installs them)"
        );
        return;
    }
    let certs = support::temp_dir("email-ca");
    tls::private_ca(&certs);
    std::fs::write(certs.join("smtp-password"), "mail-secret\n").unwrap();
    let out = certs.join("mail");
    std::fs::create_dir_all(&out).unwrap();
    let port = free_port();
    let pipeline = format!(
        "version: 1
name: email
sources:
  - type: syslog
    id: relay
    udp: 127.0.0.1:0
sinks:
  - type: parquet
    dir: {{dir}}/data
api:
  listen: 127.0.0.1:0
respond:
  playbooks: [playbooks]
  state_dir: {{dir}}/respond
notify:
  state_dir: {{dir}}/notify
  ca_file: {c}/ca.pem
  retry: {{initial_ms: 200, max_ms: 1000, timeout_ms: 3000}}
  channels:
    - type: email
      name: oncall
      host: 127.0.0.1
      port: {port}
      security: starttls
      username: threatpilot
      password: {{file: {c}/smtp-password}}
      from: 'ThreatPilot <threatpilot@example.test>'
      to: [soc@example.test]
      rate_per_min: 600
report:
  at: '00:00'
  timezone: UTC
  dir: {{dir}}/reports
  channels: [oncall]
",
        c = certs.display(),
    );
    let svc = Service::start("email", &pipeline, Stdio::null());
    // the mail server is down while the attack comes in
    let user = "<b>x</b>|#admin";
    support::ship_ssh_failures(
        svc.syslog_udp.unwrap(),
        "127.0.0.2",
        "198.51.100.31",
        user,
        8,
    );
    support::ship_ssh_failures(
        svc.syslog_udp.unwrap(),
        "127.0.0.2",
        "198.51.100.32",
        "root",
        8,
    );
    svc.wait_for("two incidents", 20, |s| {
        s.get_json("/api/v1/incidents")["incidents"]
            .as_array()
            .is_some_and(|a| a.len() >= 2)
    });
    // the report of the day missed was made at start, and waits too
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let report = svc.dir.join(format!("reports/{yesterday}.html"));
    svc.wait_for("yesterday's report file", 20, |_| report.exists());
    std::thread::sleep(Duration::from_secs(2));
    assert!(mails(&out).is_empty());
    let mut smtpd = start_smtpd(&certs, &out, port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let subjects = |m: &[Value]| -> Vec<String> {
        m.iter()
            .filter_map(|m| header(m["data"].as_str()?, "Subject").map(str::to_owned))
            .collect()
    };
    loop {
        let m = mails(&out);
        let s = subjects(&m);
        let incidents = s.iter().filter(|s| s.starts_with("[ThreatPilot]")).count();
        let reports = s.iter().filter(|s| s.contains("daily report")).count();
        if incidents >= 2 && reports >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "mail after the outage: {s:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let stderr = svc.stop();
    let _ = smtpd.kill();
    let _ = smtpd.wait();
    let m = mails(&out);
    let mut ids = std::collections::BTreeSet::new();
    for mail in &m {
        assert_eq!(mail["tls"], true, "only after STARTTLS");
        assert_eq!(mail["auth"], true, "only after AUTH");
        assert_eq!(mail["to"], json!(["soc@example.test"]));
        let data = mail["data"].as_str().unwrap();
        let id = header(data, "Message-ID").expect("a Message-ID").to_owned();
        assert!(ids.insert(id.clone()), "{id} sent twice");
        // the attacker's markup is text in the HTML part
        assert!(!data.contains("<b>x</b>"), "{data}");
    }
    let s = subjects(&m);
    let reports: Vec<&String> = s.iter().filter(|s| s.contains("daily report")).collect();
    assert_eq!(reports.len(), 1, "{s:?}\n{stderr}");
    assert!(reports[0].contains(&yesterday));
    let report_mail = m
        .iter()
        .find(|m| m["data"].as_str().unwrap().contains("daily report"))
        .unwrap()["data"]
        .as_str()
        .unwrap();
    assert!(report_mail.contains("multipart/alternative"));
    assert!(report_mail.contains("text/html"));
    // the report's files were written whole
    assert!(
        std::fs::read_to_string(&report)
            .unwrap()
            .contains("</html>")
    );
    assert!(report.with_extension("md").exists());
}

/// A chat-completions stand-in: records each request body; answers with
/// advice, or never (while `hang` is set).
struct Model {
    port: u16,
    asked: Arc<Mutex<Vec<Value>>>,
    hooks: Arc<Mutex<Vec<Value>>>,
    hang: Arc<AtomicBool>,
}

fn model() -> Model {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let hooks = Arc::new(Mutex::new(Vec::new()));
    let hang = Arc::new(AtomicBool::new(false));
    let (a, h, hg) = (asked.clone(), hooks.clone(), hang.clone());
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (a, h, hg) = (a.clone(), h.clone(), hg.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                while let Some(req) = support::read_request(&mut r) {
                    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                    let answer = if req.target == "/v1/chat/completions" {
                        let ok = req.method == "POST"
                            && req.header("authorization") == Some("Bearer model-key")
                            && body["model"] == "tp-test"
                            && body["messages"][0]["role"] == "system"
                            && body["messages"][1]["role"] == "user";
                        a.lock().unwrap().push(body);
                        if hg.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_secs(5));
                            return;
                        }
                        if ok {
                            json!({"id": "c-1", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hypothesis: a credential-stuffing bot.\nImpact: none seen.\nNext steps: keep the block."}}]})
                        } else {
                            json!({"error": {"message": "bad request", "type": "invalid_request_error"}})
                        }
                    } else {
                        h.lock().unwrap().push(body);
                        json!({"ok": true})
                    };
                    let b = answer.to_string();
                    let mut w = &s;
                    let _ = write!(
                        w,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                        b.len()
                    );
                }
            });
        }
    });
    Model {
        port,
        asked,
        hooks,
        hang,
    }
}

fn analysis_run(m: &Model, timeout_ms: u64) -> String {
    let dir = support::temp_dir("analysis");
    // the user names carry a key and a password, as a careless client's do
    let log = dir.join("auth.log");
    let mut text = String::new();
    for i in 0..8 {
        text.push_str(&format!(
            "Dec  1 10:00:{:02} bastion sshd[{}]: Failed password for invalid user api_key=sk-live-abcdefghijklmnop1234 from 198.51.100.41 port {} ssh2\n",
            i * 2,
            500 + i,
            43000 + i
        ));
    }
    std::fs::write(&log, text).unwrap();
    std::fs::write(dir.join("model-key"), "model-key").unwrap();
    let p = dir.join("p.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1
name: analysis
sources:
  - type: file
    id: auth
    paths: [{log}]
sinks:
  - type: file
    path: {d}/findings.jsonl
respond:
  playbooks: [playbooks]
  state_dir: {d}/respond
notify:
  state_dir: {d}/notify
  retry: {{initial_ms: 100, max_ms: 400, timeout_ms: 2000}}
  channels:
    - type: webhook
      name: siem
      url: http://127.0.0.1:{port}/hook
analysis:
  url: http://127.0.0.1:{port}/v1
  model: tp-test
  api_key: {{file: {d}/model-key}}
  timeout_ms: {timeout_ms}
",
            log = log.display(),
            d = dir.display(),
            port = m.port,
        ),
    )
    .unwrap();
    let out = support::run_pipeline(&p);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn advice_comes_from_a_chat_completions_endpoint_without_secrets_or_from_the_template() {
    let m = model();
    let stderr = analysis_run(&m, 3000);
    let asked = m.asked.lock().unwrap().clone();
    assert!(!asked.is_empty(), "the endpoint was not asked\n{stderr}");
    for a in &asked {
        let prompt = a["messages"][1]["content"].as_str().unwrap();
        assert!(prompt.contains("198.51.100.41"), "{prompt}");
        assert!(
            prompt.contains("Evidence"),
            "the evidence is sent: {prompt}"
        );
        assert!(
            !prompt.contains("sk-live-abcdefghijklmnop1234"),
            "a key leaked: {prompt}"
        );
        assert!(prompt.contains("[REDACTED]"), "{prompt}");
    }
    let advice = |hooks: &[Value]| -> Vec<String> {
        hooks
            .iter()
            .filter_map(|h| {
                h["analysis"]
                    .as_str()
                    .filter(|_| h["type"] == "analysis" || h["type"] == "incident")
                    .map(str::to_owned)
            })
            .collect()
    };
    let got = advice(&m.hooks.lock().unwrap());
    assert!(
        got.iter().any(|a| a.contains("credential-stuffing bot")),
        "{got:?}\n{stderr}"
    );
    // an endpoint that does not answer in time: the template's advice
    m.hooks.lock().unwrap().clear();
    m.hang.store(true, Ordering::SeqCst);
    let stderr = analysis_run(&m, 500);
    let got = advice(&m.hooks.lock().unwrap());
    assert!(
        got.iter().any(|a| a.starts_with("Hypothesis:")
            && a.contains("Next steps:")
            && !a.contains("bot.")),
        "{got:?}\n{stderr}"
    );
}
