//! Notifications against a Slack Web API stand-in that checks every
//! request against Slack's documented contract (methods, bearer token,
//! JSON bodies, Block Kit limits), with an outage injected while incidents
//! flow: 500s, then a 429 with `Retry-After`. Each incident gets exactly one
//! message, later states update it in place, approve / reject buttons come
//! back signed, and log-derived text never becomes a mention.

#[path = "support/service.rs"]
mod support;
#[path = "support/tls.rs"]
mod tls;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use support::{Service, http, read_request};

const TOKEN: &str = "xoxb-test-token";
const SIGNING: &str = "8f742231b10e8888abcd99yyyzzz85a5";
/// The channel id the stand-in gives `#soc`.
const CHANNEL_ID: &str = "C0SOC";

const OK: u8 = 0;
const FAIL_500: u8 = 1;
const ONE_429: u8 = 2;
/// Posts are taken (the message exists) but never answered.
const POSTS_HANG: u8 = 3;

#[derive(Default)]
struct Slack {
    /// ts → (incident id, last body)
    messages: BTreeMap<String, (String, Value)>,
    posts: BTreeMap<String, u32>,
    updates: BTreeMap<String, u32>,
    refused: u32,
    violations: Vec<String>,
    raw: Vec<String>,
}

struct Stand {
    port: u16,
    state: Arc<Mutex<Slack>>,
    mode: Arc<AtomicU8>,
}

fn stand_in() -> Stand {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(Slack::default()));
    let mode = Arc::new(AtomicU8::new(FAIL_500));
    let (st, md) = (state.clone(), mode.clone());
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (st, md) = (st.clone(), md.clone());
            std::thread::spawn(move || while serve(&s, &st, &md) {});
        }
    });
    Stand { port, state, mode }
}

/// One request on a kept-alive connection; false when the connection ends.
fn serve(s: &TcpStream, st: &Mutex<Slack>, mode: &AtomicU8) -> bool {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let Some(req) = read_request(&mut r) else {
        return false;
    };
    let (method, path, headers, body) = (req.method, req.target, req.headers, req.body);
    let reply = |status: &str, extra: &str, v: Value| {
        let b = v.to_string();
        let mut w = s;
        let _ = write!(
            w,
            "HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\n{extra}Content-Length: {}\r\n\r\n{b}",
            b.len()
        );
    };
    match mode.load(Ordering::SeqCst) {
        FAIL_500 => {
            st.lock().unwrap().refused += 1;
            reply("500 Internal Server Error", "", json!({"ok": false}));
            return true;
        }
        ONE_429 => {
            st.lock().unwrap().refused += 1;
            mode.store(OK, Ordering::SeqCst);
            reply(
                "429 Too Many Requests",
                "Retry-After: 1\r\n",
                json!({"ok": false, "error": "ratelimited"}),
            );
            return true;
        }
        _ => {}
    }
    if method == "GET" && path.starts_with("/api/conversations.history?") {
        let g = st.lock().unwrap();
        let q: BTreeMap<String, String> =
            form_urlencoded::parse(path.split_once('?').unwrap().1.as_bytes())
                .into_owned()
                .collect();
        let authed =
            headers.get("authorization").map(String::as_str) == Some(&format!("Bearer {TOKEN}"));
        if !authed || q.get("channel").map(String::as_str) != Some(CHANNEL_ID) {
            drop(g);
            reply(
                "200 OK",
                "",
                json!({"ok": false, "error": "channel_not_found"}),
            );
            return true;
        }
        let with_metadata = q.get("include_all_metadata").map(String::as_str) == Some("true");
        let messages: Vec<Value> = g
            .messages
            .iter()
            .rev()
            .map(|(ts, (_, m))| {
                let mut x = json!({"type": "message", "ts": ts, "text": m["text"]});
                if with_metadata {
                    x["metadata"] = m["metadata"].clone();
                }
                x
            })
            .collect();
        drop(g);
        reply(
            "200 OK",
            "",
            json!({"ok": true, "messages": messages, "has_more": false}),
        );
        return true;
    }
    let mut g = st.lock().unwrap();
    let text = String::from_utf8_lossy(&body).into_owned();
    g.raw.push(text.clone());
    let mut bad = |m: String| g.violations.push(format!("{path}: {m}"));
    if method != "POST" {
        bad(format!("method {method}"));
    }
    if headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {TOKEN}")) {
        bad("no bearer token".into());
    }
    if !headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        bad("not application/json".into());
    }
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    for m in check_message(&v) {
        bad(m);
    }
    match path.as_str() {
        "/api/chat.postMessage" => {
            if v["channel"] != "#soc" {
                g.violations
                    .push(format!("postMessage to {}", v["channel"]));
            }
            let incident = v["metadata"]["event_payload"]["incident_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if v["metadata"]["event_type"] != "threatpilot_incident" || incident.is_empty() {
                g.violations.push("postMessage without metadata".into());
            }
            let ts = format!("1700000000.{:06}", g.messages.len() + 1);
            *g.posts.entry(incident.clone()).or_default() += 1;
            g.messages.insert(ts.clone(), (incident, v.clone()));
            drop(g);
            if mode.load(Ordering::SeqCst) == POSTS_HANG {
                // the message is in the channel; the answer never comes
                std::thread::sleep(Duration::from_secs(60));
                return false;
            }
            reply(
                "200 OK",
                "",
                json!({"ok": true, "channel": CHANNEL_ID, "ts": ts, "message": {}}),
            );
        }
        "/api/chat.update" => {
            let ts = v["ts"].as_str().unwrap_or_default().to_owned();
            if v["channel"] != CHANNEL_ID {
                drop(g);
                reply(
                    "200 OK",
                    "",
                    json!({"ok": false, "error": "channel_not_found"}),
                );
                return true;
            }
            let Some((incident, _)) = g.messages.get(&ts).cloned() else {
                drop(g);
                reply(
                    "200 OK",
                    "",
                    json!({"ok": false, "error": "message_not_found"}),
                );
                return true;
            };
            *g.updates.entry(incident.clone()).or_default() += 1;
            g.messages.insert(ts.clone(), (incident, v.clone()));
            drop(g);
            reply(
                "200 OK",
                "",
                json!({"ok": true, "channel": CHANNEL_ID, "ts": ts}),
            );
        }
        other => {
            g.violations.push(format!("unknown method {other}"));
            drop(g);
            reply(
                "404 Not Found",
                "",
                json!({"ok": false, "error": "unknown_method"}),
            );
        }
    }
    true
}

/// Block Kit's documented limits.
fn check_message(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if v["text"].as_str().is_none_or(str::is_empty) {
        out.push("no fallback text".into());
    }
    let Some(blocks) = v["blocks"].as_array() else {
        out.push("no blocks".into());
        return out;
    };
    if blocks.len() > 50 {
        out.push(format!("{} blocks", blocks.len()));
    }
    for b in blocks {
        let text = b["text"]["text"].as_str().unwrap_or_default();
        match b["type"].as_str() {
            Some("header") => {
                if b["text"]["type"] != "plain_text" || text.chars().count() > 150 {
                    out.push("header not plain_text of at most 150".into());
                }
            }
            Some("section") => {
                if text.chars().count() > 3000 {
                    out.push(format!("section of {} characters", text.chars().count()));
                }
                if let Some(f) = b["fields"].as_array()
                    && (f.len() > 10
                        || f.iter()
                            .any(|x| x["text"].as_str().unwrap_or("").len() > 2000))
                {
                    out.push("section fields over their limits".into());
                }
                if b["text"].is_null() && b["fields"].is_null() {
                    out.push("section with neither text nor fields".into());
                }
            }
            Some("actions") => {
                let els = b["elements"].as_array().cloned().unwrap_or_default();
                if els.is_empty() || els.len() > 25 {
                    out.push("actions with 0 or over 25 elements".into());
                }
                for e in els {
                    if e["type"] != "button"
                        || e["action_id"]
                            .as_str()
                            .is_none_or(|a| a.is_empty() || a.len() > 255)
                        || e["value"].as_str().is_none_or(|a| a.len() > 2000)
                    {
                        out.push(format!("bad button {e}"));
                    }
                }
            }
            other => out.push(format!("unexpected block {other:?}")),
        }
        if b["block_id"].as_str().is_some_and(|id| id.len() > 255) {
            out.push("block_id over 255".into());
        }
    }
    out
}

/// A signed interaction, as Slack sends it.
fn press(svc: &Service, user: &str, button: &str, action: &str, secret: &str, age: i64) -> u16 {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": "someone"},
        "actions": [{"action_id": button, "value": action, "type": "button"}],
    });
    let body = format!(
        "payload={}",
        form_urlencoded::byte_serialize(payload.to_string().as_bytes()).collect::<String>()
    );
    let ts = (chrono::Utc::now().timestamp() - age).to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    http(
        svc.api,
        "POST",
        "/slack/interactions",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Slack-Request-Timestamp", &ts),
            ("X-Slack-Signature", &format!("v0={sig}")),
        ],
        body.as_bytes(),
    )
    .status
}

/// `n` failed SSH logins for `user` from `attacker`, dated now, over UDP.
fn ship(svc: &Service, attacker: &str, user: &str, n: usize) {
    support::ship_ssh_failures(svc.syslog_udp.unwrap(), "127.0.0.2", attacker, user, n);
}

#[test]
fn incidents_reach_slack_once_each_through_an_outage_and_buttons_come_back_signed() {
    let slack = stand_in();
    let dir = support::temp_dir("notify-secrets");
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(dir.join("signing"), SIGNING).unwrap();
    let pipeline = format!(
        "version: 1
name: notify
sources:
  - type: syslog
    id: relay
    udp: 127.0.0.1:0
sinks:
  - type: file
    path: {{dir}}/findings.jsonl
api:
  listen: 127.0.0.1:0
respond:
  playbooks: [playbooks]
  state_dir: {{dir}}/respond
  policy:
    modes: {{low: approve, medium: approve, high: approve, critical: approve}}
  connectors:
    - type: nginx
      name: edge
      deny_file: {{dir}}/deny.conf
      reload: {{program: /bin/true}}
  routes:
    identity: {{block_ip: edge}}
notify:
  state_dir: {{dir}}/notify
  retry: {{initial_ms: 100, max_ms: 1000, timeout_ms: 2000}}
  channels:
    - type: slack
      name: soc
      token: {{file: {secrets}/token}}
      channel: '#soc'
      api_url: http://127.0.0.1:{port}/api
      signing_secret: {{file: {secrets}/signing}}
      approvers: {{U1: alice}}
      rate_per_min: 600
",
        secrets = dir.display(),
        port = slack.port,
    );
    let svc = Service::start("notify", &pipeline, Stdio::null());
    // Slack is down while the attack comes in: 500s
    let user = "*x*<!channel>";
    for k in 1..=6 {
        ship(&svc, &format!("198.51.100.{k}"), user, 8);
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        slack.state.lock().unwrap().refused > 0,
        "the outage was not met"
    );
    // then one 429 with Retry-After, then Slack is back
    slack.mode.store(ONE_429, Ordering::SeqCst);
    let incidents = || -> Vec<String> {
        svc.get_json("/api/v1/incidents")["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["incident_id"].as_str().unwrap().to_owned())
            .collect()
    };
    svc.wait_for("every incident in Slack", 30, |_| {
        let ids = incidents();
        let g = slack.state.lock().unwrap();
        !ids.is_empty() && ids.iter().all(|i| g.posts.contains_key(i))
    });
    // a pending block with buttons; an approver presses approve
    let actions = svc.get_json("/api/v1/actions");
    let pending = actions["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "block_ip" && a["status"] == "pending_approval")
        .cloned()
        .expect("a pending block");
    let id = pending["action_id"].as_str().unwrap();
    let incident = pending["incident_id"].as_str().unwrap().to_owned();
    {
        let g = slack.state.lock().unwrap();
        let (_, msg) = g.messages.values().find(|(i, _)| *i == incident).unwrap();
        assert!(
            msg.to_string().contains(&format!("\"value\":\"{id}\"")),
            "{msg}"
        );
    }
    // refused: a wrong secret, an old request, a user who is not an approver
    assert_eq!(press(&svc, "U1", "approve", id, "wrong-secret", 0), 401);
    assert_eq!(press(&svc, "U1", "approve", id, SIGNING, 600), 401);
    assert_eq!(press(&svc, "U9", "approve", id, SIGNING, 0), 403);
    assert_eq!(press(&svc, "U1", "approve", id, SIGNING, 0), 200);
    let target = pending["target"].as_str().unwrap().to_owned();
    svc.wait_for("the approved block in the message", 20, |s| {
        let a = s.get_json("/api/v1/actions");
        let approved = a["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action_id"] == id && a["approved_by"] == "alice (slack U1)");
        let g = slack.state.lock().unwrap();
        let shown = g.messages.values().any(|(i, m)| {
            let text = m.to_string();
            *i == incident
                && ["succeeded", "verified", "awaiting_confirmation"]
                    .iter()
                    .any(|st| text.contains(&format!("block_ip {target} — {st}")))
        });
        approved && shown
    });
    let audit = std::fs::read_to_string(svc.dir.join("respond/audit.log")).unwrap();
    assert!(
        audit.contains("\"decision\":\"refused\"") && audit.contains("U9"),
        "{audit}"
    );
    let stderr = svc.stop();
    let g = slack.state.lock().unwrap();
    assert!(g.violations.is_empty(), "{:?}", g.violations);
    eprintln!(
        "{} incidents posted, {} updates, {} requests refused during the outage",
        g.posts.len(),
        g.updates.values().sum::<u32>(),
        g.refused
    );
    // one message per incident, whatever the outage and the storm of updates
    for (i, n) in &g.posts {
        assert_eq!(*n, 1, "incident {i} posted {n} times");
    }
    assert!(g.updates.values().sum::<u32>() >= 1, "no update in place");
    // the user name is shown, escaped: never a mention
    assert!(g.raw.iter().all(|r| !r.contains("<!channel>")));
    assert!(g.raw.iter().any(|r| r.contains("&lt;!channel&gt;")));
    assert!(stderr.contains("\"left_in_outbox\":0"), "{stderr}");
}

#[test]
fn a_notify_section_with_bad_channels_or_routes_is_refused_with_its_line() {
    let dir = support::temp_dir("notify-invalid");
    let pipeline = dir.join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        "version: 1
name: bad
sources:
  - type: stdin
    id: in
sinks:
  - type: stdout
respond: {}
notify:
  channels:
    - type: slack
      name: soc
      channel: '#soc'
    - type: webhook
      name: siem
      url: ftp://siem.example/hook
      quiet_hours: [{start: '22:00', end: '07:00', timezone: Mars/Olympus}]
  routes:
    - {channels: [soc, pager]}
",
    )
    .unwrap();
    let out = support::threatpilot(["run", "--pipeline", pipeline.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let p = pipeline.display().to_string();
    for want in [
        format!("{p}:11: slack channel soc: give either token"),
        format!("{p}:14: webhook siem: url must be http:// or https://"),
        format!("{p}:14: quiet_hours: unknown time zone \"Mars/Olympus\""),
        format!("{p}:19: unknown channel `pager`"),
    ] {
        assert!(err.contains(&want), "no {want:?} in\n{err}");
    }
    let out = support::threatpilot(["validate", "--pipelines", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{p}:19: unknown channel `pager`")),
        "{text}"
    );
}

/// A webhook receiver over TLS (Python's `ssl`, that is OpenSSL) that
/// checks each request's HMAC signature and writes what it got to `out`.
const RECEIVER: &str = r#"
import hashlib, hmac, http.server, json, ssl, sys
cert, key, secret, out = sys.argv[1:5]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ts = self.headers.get("X-ThreatPilot-Timestamp", "")
        sig = self.headers.get("X-ThreatPilot-Signature", "")
        want = "sha256=" + hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        with open(out, "a") as f:
            f.write(json.dumps({"signed": hmac.compare_digest(want, sig),
                                "key": self.headers.get("Idempotency-Key"),
                                "body": json.loads(body)}) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

#[test]
fn a_signed_webhook_reaches_a_tls_receiver_with_a_private_ca() {
    use std::process::Command;
    let have = |p: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {p}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !(have("openssl") && have("python3")) {
        assert!(
            !support::servers_required(),
            "openssl and python3 are needed"
        );
        return;
    }
    let dir = support::temp_dir("notify-tls");
    tls::private_ca(&dir);
    std::fs::write(dir.join("hmac"), "webhook-secret").unwrap();
    let got = dir.join("received.jsonl");
    let mut receiver = Command::new("python3")
        .args(["-c", RECEIVER])
        .arg(dir.join("server.pem"))
        .arg(dir.join("server.key"))
        .arg("webhook-secret")
        .arg(&got)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    BufReader::new(receiver.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let port: u16 = port.trim().parse().unwrap();
    // one channel trusts the private CA, one only the system's roots
    let pipeline = format!(
        "version: 1
name: tls
sources:
  - type: file
    id: auth
    paths: [fixtures/detectors/synthetic-success-after-failures/input.log]
sinks:
  - type: file
    path: {{dir}}/findings.jsonl
respond:
  playbooks: [playbooks]
  state_dir: {{dir}}/respond
notify:
  state_dir: {{dir}}/notify
  ca_file: {d}/ca.pem
  retry: {{initial_ms: 100, max_ms: 400, timeout_ms: 2000}}
  channels:
    - type: webhook
      name: siem
      url: https://127.0.0.1:{port}/hooks/threatpilot
      secret: {{file: {d}/hmac}}
",
        d = dir.display(),
    );
    let run = |text: &str| {
        let d = support::temp_dir("notify-tls-run");
        let path = d.join("pipeline.yaml");
        std::fs::write(&path, text.replace("{dir}", &d.display().to_string())).unwrap();
        let out = support::run_pipeline(&path);
        (out, d)
    };
    let (out, _) = run(&pipeline);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("\"left_in_outbox\":0"), "{stderr}");
    let lines: Vec<Value> = std::fs::read_to_string(&got)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty(), "nothing received\n{stderr}");
    for l in &lines {
        assert_eq!(l["signed"], true, "{l}");
        assert_eq!(l["body"]["type"], "incident");
        assert!(
            l["key"].as_str().unwrap().starts_with("webhook:siem:i-"),
            "{l}"
        );
    }
    // without the private CA the receiver is not trusted: nothing is sent,
    // and what waits stays in the outbox for the next start
    let before = lines.len();
    let untrusted = pipeline.replace(&format!("  ca_file: {}/ca.pem\n", dir.display()), "");
    let (out, _) = run(&untrusted);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("\"left_in_outbox\":0"), "{stderr}");
    let after = std::fs::read_to_string(&got).unwrap().lines().count();
    assert_eq!(after, before);
    let _ = receiver.kill();
    let _ = receiver.wait();
}

/// A post lands in Slack but the process is killed before the answer
/// arrives: after the restart, the incident's message is found in the
/// channel's history by its metadata and updated, never posted twice.
#[test]
fn a_post_cut_short_by_kill_minus_nine_is_found_again_not_doubled() {
    let slack = stand_in();
    slack.mode.store(OK, Ordering::SeqCst);
    let dir = support::temp_dir("notify-crash");
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    let pipeline = format!(
        "version: 1
name: notify-crash
sources:
  - type: syslog
    id: relay
    udp: 127.0.0.1:0
sinks:
  - type: file
    path: {{dir}}/findings.jsonl
api:
  listen: 127.0.0.1:0
respond:
  playbooks: [playbooks]
  state_dir: {d}/respond
notify:
  state_dir: {d}/notify
  retry: {{initial_ms: 100, max_ms: 500, timeout_ms: 60000}}
  channels:
    - type: slack
      name: soc
      token: {{file: {d}/token}}
      channel: '#soc'
      api_url: http://127.0.0.1:{port}/api
",
        d = dir.display(),
        port = slack.port,
    );
    // a first incident teaches the channel's id
    let svc = Service::start("notify-crash", &pipeline, Stdio::null());
    ship(&svc, "198.51.100.21", "root", 8);
    svc.wait_for("the first post", 20, |_| {
        !slack.state.lock().unwrap().posts.is_empty()
    });
    // the next post lands, and the process dies waiting for its answer
    slack.mode.store(POSTS_HANG, Ordering::SeqCst);
    ship(&svc, "198.51.100.22", "admin", 8);
    svc.wait_for("the second post", 20, |_| {
        slack.state.lock().unwrap().posts.len() == 2
    });
    let _ = std::process::Command::new("kill")
        .args(["-9", &svc.pid().to_string()])
        .status();
    drop(svc);
    slack.mode.store(OK, Ordering::SeqCst);
    let svc = Service::start("notify-crash", &pipeline, Stdio::null());
    svc.wait_for("the cut post updated", 20, |_| {
        let g = slack.state.lock().unwrap();
        g.posts
            .keys()
            .any(|i| g.updates.contains_key(i) && g.posts.len() == 2)
    });
    let stderr = svc.stop();
    let g = slack.state.lock().unwrap();
    assert!(g.violations.is_empty(), "{:?}", g.violations);
    assert_eq!(g.posts.len(), 2, "{:?}", g.posts);
    for (i, n) in &g.posts {
        assert_eq!(*n, 1, "incident {i} posted {n} times\n{stderr}");
    }
}
