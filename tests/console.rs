//! The console in a real browser: Debian's headless Chromium driven over
//! WebDriver (its chromedriver, through fantoccini) against a running
//! `threatpilot run` that takes sshd lines over syslog and responds.
//!
//! A responder logs in, watches an incident raised by an attack appear on
//! the overview without reloading, approves its pending block and watches
//! the job tail reach verification; evidence full of markup stays text; a
//! page on another site cannot make the logged-in browser approve
//! anything; a viewer sees no approve button and a POST forged from the
//! viewer's own page is refused. Screenshots of every page are kept under
//! `out/test-artifacts/console/`.

#[path = "support/png.rs"]
mod png;
#[path = "support/service.rs"]
mod support;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::{Service, servers_required, ship_ssh_failures, temp_dir};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether the browser is installed; the test script installs it, so
/// there a missing one fails the test.
fn have_browser() -> bool {
    let ok = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    assert!(
        ok || !servers_required(),
        "chromium and chromedriver are needed (scripts/servers.sh installs them)"
    );
    ok
}

/// chromedriver, and the browser it started (which outlives it when a
/// test fails before closing its session).
struct Driver(Child, PathBuf);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(format!("--user-data-dir={}", self.1.display()))
            .status();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_driver(profile: &Path) -> (Driver, u16) {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Driver(child, profile.to_owned()), port)
}

async fn browser(port: u16, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a browser session")
}

fn hash(token: &str) -> String {
    let mut c = Command::new(env!("CARGO_BIN_EXE_threatpilot"))
        .args(["token", "hash"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn screenshots() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("out/test-artifacts/console");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Saves a screenshot of the page and checks it shows something.
async fn shoot(c: &Client, name: &str) {
    let bytes = c.screenshot().await.unwrap();
    let img = png::decode(&bytes).unwrap();
    let distinct: std::collections::BTreeSet<_> = img.rgb.iter().step_by(97).collect();
    assert!(distinct.len() > 8, "{name}: the screenshot is blank");
    std::fs::write(screenshots().join(format!("{name}.png")), bytes).unwrap();
}

async fn eval(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

/// Polls `f` until it holds or `secs` pass.
async fn until<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn login(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/console")).await.unwrap();
    let url = c.current_url().await.unwrap();
    assert!(url.path().ends_with("/console/login"), "{url}");
    c.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    c.find(Locator::Css("#login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("the overview after login", 10, || async {
        c.current_url().await.is_ok_and(|u| u.path() == "/console")
    })
    .await;
}

async fn text_of(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn action_of(svc: &Service, target: &str) -> Value {
    let r = support::http(
        svc.api,
        "GET",
        "/api/v1/actions",
        &[("Authorization", "Bearer responder-token")],
        b"",
    );
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["target"] == target)
        .cloned()
        .unwrap_or(Value::Null)
}

const MARKUP_USER: &str =
    r#"<script>window.__xss=1</script>"'{{7*7}}<img/src=x/onerror=window.__xss=2>"#;

#[test]
fn a_responder_and_a_viewer_use_the_console_in_headless_chromium() {
    if !have_browser() {
        return;
    }
    let pipeline = format!(
        "version: 1
name: console
sources:
  - type: syslog
    id: sshd
    udp: 127.0.0.1:0
sinks:
  - type: parquet
    dir: {{dir}}/data
    flush_ms: 200
api:
  listen: 127.0.0.1:0
  auth:
    tokens:
      - {{name: oncall, role: responder, sha256: {r}}}
      - {{name: dashboard, role: viewer, sha256: {v}}}
respond:
  playbooks: [{{dir}}/playbooks]
  state_dir: {{dir}}/respond
  policy:
    modes: {{high: approve}}
  connectors:
    - {{type: nginx, name: edge, deny_file: {{dir}}/deny.conf}}
  routes:
    identity: {{block_ip: edge}}
report:
  at: \"00:05\"
  dir: {{dir}}/reports
",
        r = hash("responder-token"),
        v = hash("viewer-token"),
    );
    let dir = temp_dir("console-playbooks");
    let pipeline = pipeline.replace("{dir}/playbooks", &dir.display().to_string());
    std::fs::write(
        dir.join("p.yaml"),
        "version: 1
playbooks:
  - id: block-ssh
    title: Block SSH brute force
    match: {detector: [identity.ssh_brute_force]}
    steps:
      - action: block_ip
        risk: high
        ttl_secs: 600
        verify: {finding_quiet: true, after_secs: 1}
",
    )
    .unwrap();
    let svc = Service::start("console", &pipeline, Stdio::null());
    let base = format!("http://{}", svc.api);
    let syslog = svc.syslog_udp.unwrap();
    let profile = temp_dir("console-chromium");
    let (_driver, port) = start_driver(&profile);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = browser(port, &profile).await;
        shoot_login(&c, &base).await;
        login(&c, &base, "responder-token").await;
        assert!(text_of(&c, "#who").await.contains("oncall"));
        assert!(text_of(&c, "#open-incidents").await.contains("No open incidents"));

        // the attack arrives while the overview is open: no reload
        eval(&c, "window.__still = 'the same page'; return 1").await;
        ship_ssh_failures(syslog, "127.0.0.2", "203.0.113.50", "root", 8);
        until("the incident on the overview", 20, || async {
            text_of(&c, "#incidents-table").await.contains("203.0.113.50")
                && text_of(&c, "#pending").await.contains("block_ip")
        })
        .await;
        assert_eq!(
            eval(&c, "return window.__still").await,
            json!("the same page"),
            "the overview reloaded instead of updating in place"
        );
        // the expiry counts down in the browser
        let first = text_of(&c, "#pending .countdown").await;
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let later = text_of(&c, "#pending .countdown").await;
        assert!(first.ends_with("left") && first != later, "{first} / {later}");
        shoot(&c, "overview").await;

        // the incident: approve its pending block, watch the tail verify it
        c.find(Locator::XPath(
            "//table[@id='incidents-table']//tr[contains(., '203.0.113.50')]//a",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
        until("the incident page", 10, || async {
            c.current_url()
                .await
                .is_ok_and(|u| u.path().starts_with("/console/incidents/i-"))
        })
        .await;
        let incident_url = c.current_url().await.unwrap();
        assert!(text_of(&c, "#incident-findings").await.contains("Failed password"));
        assert!(text_of(&c, "#tail").await.contains("proposal") || text_of(&c, "#tail").await.contains("gate"));
        shoot(&c, "incident-pending").await;
        // the form posts and comes back to the same address: a mark on the
        // old page tells the new one from it
        eval(&c, "window.__before_approval = 1; return 1").await;
        c.find(Locator::Css("#incident-actions button.approve"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until("back on the incident", 10, || async {
            let fresh = c
                .execute("return window.__before_approval === undefined && document.readyState === 'complete'", vec![])
                .await
                .is_ok_and(|v| v == json!(true));
            fresh && c.current_url().await.is_ok_and(|u| u == incident_url)
        })
        .await;
        eval(&c, "window.__still = 'after approval'; return 1").await;
        until("the job tail to reach verification", 30, || async {
            let t = text_of(&c, "#tail").await;
            t.contains("verification") && t.contains("execution")
        })
        .await;
        assert_eq!(eval(&c, "return window.__still").await, json!("after approval"));
        // high risk: a person confirms the verification too
        until("the confirm button", 10, || async {
            c.find(Locator::Css("#incident-actions button.confirm")).await.is_ok()
        })
        .await;
        assert!(text_of(&c, "#incident-actions").await.contains("awaiting_confirmation"));
        shoot(&c, "incident-confirm").await;
        c.find(Locator::Css("#incident-actions button.confirm"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until("the verification confirmed in the tail", 10, || async {
            text_of(&c, "#tail").await.contains("confirmed by oncall (console)")
        })
        .await;
        until("the action shown verified", 10, || async {
            text_of(&c, "#incident-actions").await.contains("verified")
                && !text_of(&c, "#incident-actions").await.contains("awaiting")
        })
        .await;
        assert_eq!(action_of(&svc, "203.0.113.50")["status"], "verified");
        let deny = std::fs::read_to_string(svc.dir.join("deny.conf")).unwrap();
        assert!(deny.contains("deny 203.0.113.50;"), "{deny}");
        shoot(&c, "incident").await;

        // evidence full of markup stays text, and nothing of it runs
        ship_ssh_failures(syslog, "127.0.0.2", "203.0.113.60", MARKUP_USER, 8);
        ship_ssh_failures(syslog, "127.0.0.2", "203.0.113.51", "admin", 8);
        until("the second and third incidents", 20, || async {
            action_of(&svc, "203.0.113.60")["status"] == "pending_approval"
                && action_of(&svc, "203.0.113.51")["status"] == "pending_approval"
        })
        .await;
        let marked = action_of(&svc, "203.0.113.60");
        for path in [
            format!("/console/incidents/{}", marked["incident_id"].as_str().unwrap()),
            format!("/console/findings/{}", marked["finding_id"].as_str().unwrap()),
            "/console/findings".to_owned(),
            "/console/actions".to_owned(),
        ] {
            c.goto(&format!("{base}{path}")).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let scripts = eval(&c, "return document.scripts.length").await;
            assert_eq!(scripts, json!(1), "{path}: only the console's own script");
            assert_eq!(eval(&c, "return window.__xss === undefined").await, json!(true), "{path}");
            let imgs = eval(&c, "return document.querySelectorAll('main img').length").await;
            assert_eq!(imgs, json!(0), "{path}");
            if path.contains("/incidents/") || path.contains("/findings/") {
                let body = text_of(&c, "main").await;
                assert!(body.contains("<script>window.__xss=1</script>"), "{path}: {body}");
                // a template engine would have made the marker `"'49<img…`;
                // a bare "49" may be part of any id or time on the page
                assert!(body.contains("\"'{{7*7}}") && !body.contains("\"'49"), "{path}");
            }
        }
        shoot(&c, "actions").await;
        c.goto(&format!("{base}/console/findings")).await.unwrap();
        shoot(&c, "findings").await;

        // a page on another site makes the logged-in browser post an approval
        let pending = action_of(&svc, "203.0.113.51");
        let pending_id = pending["action_id"].as_str().unwrap().to_owned();
        let evil = format!(
            "data:text/html,<form method=post action='{base}/console/actions/{pending_id}/approve'><input name=csrf value=x></form><script>document.forms[0].submit()</script>"
        );
        c.goto(&evil).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(action_of(&svc, "203.0.113.51")["status"], "pending_approval");

        // the query page, and a report made on demand
        c.goto(&format!("{base}/console/query")).await.unwrap();
        let area = c.find(Locator::Css("#query-text")).await.unwrap();
        area.clear().await.unwrap();
        area.send_keys("SELECT offender_value, count(*) AS versions FROM findings GROUP BY offender_value ORDER BY offender_value")
            .await
            .unwrap();
        c.find(Locator::Css("#run-query")).await.unwrap().click().await.unwrap();
        until("query rows", 10, || async {
            text_of(&c, "#query-result").await.contains("203.0.113.50")
        })
        .await;
        shoot(&c, "query").await;
        let area = c.find(Locator::Css("#query-text")).await.unwrap();
        area.clear().await.unwrap();
        area.send_keys("DELETE FROM findings").await.unwrap();
        c.find(Locator::Css("#run-query")).await.unwrap().click().await.unwrap();
        until("the refusal", 10, || async {
            text_of(&c, "#query-error").await.contains("only SELECT")
        })
        .await;
        let today = chrono::Utc::now().date_naive();
        c.goto(&format!("{base}/console/reports/{today}")).await.unwrap();
        // the frame is sandboxed (an origin of its own): its page is read apart
        let raw = eval(
            &c,
            &format!("return fetch('/console/reports/{today}/raw').then(r => r.text())"),
        )
        .await;
        let raw = raw.as_str().unwrap_or_default();
        assert!(raw.contains("<svg") && raw.contains("203.0.113.50"), "{}", &raw[..raw.len().min(500)]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        shoot(&c, "report").await;
        c.find(Locator::Css("form.who button")).await.unwrap().click().await.unwrap();
        until("logged out", 10, || async {
            c.current_url()
                .await
                .is_ok_and(|u| u.path() == "/console/login")
        })
        .await;

        // a viewer: no approve button, and a forged POST is refused
        login(&c, &base, "viewer-token").await;
        let inc = pending["incident_id"].as_str().unwrap();
        c.goto(&format!("{base}/console/incidents/{inc}")).await.unwrap();
        assert!(text_of(&c, "#incident-actions").await.contains("pending_approval"));
        assert!(
            c.find_all(Locator::Css("button.approve, button.reject, button.confirm, button.rollback"))
                .await
                .unwrap()
                .is_empty(),
            "a viewer sees no approve or reject button"
        );
        let forged = eval(
            &c,
            &format!(
                "const csrf = document.querySelector('input[name=csrf]').value;
                 return fetch('/console/actions/{pending_id}/approve', {{method: 'POST',
                   headers: {{'Content-Type': 'application/x-www-form-urlencoded'}},
                   body: 'csrf=' + encodeURIComponent(csrf)}}).then(r => r.status)"
            ),
        )
        .await;
        assert_eq!(forged, json!(403), "the viewer's forged approval");
        assert_eq!(action_of(&svc, "203.0.113.51")["status"], "pending_approval");
        shoot(&c, "incident-viewer").await;
        c.close().await.unwrap();
    });
    // every refusal is in the audit chain
    let audit = std::fs::read_to_string(svc.dir.join("respond/audit.log")).unwrap();
    let refused: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"decision\":\"refused\""))
        .collect();
    assert!(
        refused.iter().any(|l| l.contains("may not approve")),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|l| l.contains("log in first") || l.contains("another origin")),
        "the cross-site post is audited: {refused:?}"
    );
    eprintln!("screenshots in {}", screenshots().display());
}

async fn shoot_login(c: &Client, base: &str) {
    c.goto(&format!("{base}/console/login")).await.unwrap();
    shoot(c, "login").await;
}

/// Headers every console page carries, and what a page without a session
/// gets, over plain HTTP.
#[test]
fn console_pages_carry_a_strict_policy_and_need_a_session() {
    let svc = Service::start(
        "console-headers",
        "version: 1
name: console-headers
sources:
  - type: syslog
    id: sshd
    udp: 127.0.0.1:0
sinks:
  - type: file
    path: {dir}/findings.jsonl
api:
  listen: 127.0.0.1:0
  auth:
    tokens:
      - {name: ops, role: admin, sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8}
",
        Stdio::null(),
    );
    let r = support::http(svc.api, "GET", "/console/findings?severity=high", &[], b"");
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some("/console/login?next=%2Fconsole%2Ffindings%3Fseverity%3Dhigh")
    );
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    // a wrong token is refused, the right one gets a strict cookie
    let r = support::http(
        svc.api,
        "POST",
        "/console/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"token=guess",
    );
    assert_eq!(r.status, 401);
    let r = support::http(
        svc.api,
        "POST",
        "/console/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"token=password&next=https://evil.example/",
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/console"));
    let cookie = r.header("set-cookie").unwrap().to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = support::http(svc.api, "GET", "/console", &[("Cookie", &session)], b"");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("does not respond"));
    // a login posted from another origin is refused
    let r = support::http(
        svc.api,
        "POST",
        "/console/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "http://evil.example"),
        ],
        b"token=password",
    );
    assert_eq!(r.status, 403);
    let js = support::http(svc.api, "GET", "/console/assets/console.js", &[], b"");
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
}
