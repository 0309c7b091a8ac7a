//! Response against real targets: nginx from Debian as the edge (its access
//! log sent over syslog to a running `threatpilot run`), Redis from Debian
//! as the session store, a small identity provider that checks the request
//! contract, a process the test supervises for restart_service, and
//! Prometheus from Debian for verification by query.

#[path = "support/service.rs"]
mod support;

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Service, servers_required, temp_dir, threatpilot};

const NGINX: &str = "/usr/sbin/nginx";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether the test's real targets are installed; outside the test script
/// a missing one skips the test, inside it fails it.
fn have(programs: &[&str]) -> bool {
    let ok = programs.iter().all(|p| {
        Path::new(p).exists()
            || Command::new("sh")
                .args(["-c", &format!("command -v {p}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    });
    assert!(ok || !servers_required(), "missing one of {programs:?}");
    ok
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server with worker processes (nginx), asked to stop: a master killed
/// outright leaves its workers running after the test. Killed after five
/// seconds if it has not stopped.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `curl` from a given local address; returns the HTTP status.
fn curl(from: &str, method: &str, url: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .args(["--interface", from, "-X", method, url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_brute_force_is_blocked_at_nginx_and_unblocked_after_its_ttl() {
    if !have(&[NGINX, "curl"]) {
        return;
    }
    let dir = temp_dir("nginx-block");
    let deny = dir.join("deny.conf");
    std::fs::write(&deny, "").unwrap();
    let conf = dir.join("nginx.conf");
    let playbooks = dir.join("playbooks");
    std::fs::create_dir_all(&playbooks).unwrap();
    std::fs::write(
        playbooks.join("edge.yaml"),
        "version: 1
playbooks:
  - id: block-login-brute-force
    title: Block a login brute force at the edge
    match:
      detector: [identity.web_login_brute_force]
    steps:
      - action: block_ip
        risk: medium
        ttl_secs: 5
        verify: {finding_quiet: true, after_secs: 1}
",
    )
    .unwrap();
    let pipeline = format!(
        "version: 1
name: edge
sources:
  - type: syslog
    id: nginx
    udp: 127.0.0.1:0
sinks:
  - type: file
    path: {{dir}}/findings.jsonl
api:
  listen: 127.0.0.1:0
respond:
  playbooks: [{playbooks}]
  state_dir: {{dir}}/respond
  policy:
    modes: {{low: auto, medium: auto, high: approve, critical: approve}}
    protected:
      cidrs: [10.0.0.0/8]
  connectors:
    - type: nginx
      name: edge
      deny_file: {deny}
      reload: {{program: {NGINX}, args: [-p, {dir}, -c, {conf}, -s, reload]}}
  routes:
    identity: {{block_ip: edge}}
    http: {{block_ip: edge}}
",
        playbooks = playbooks.display(),
        deny = deny.display(),
        dir = dir.display(),
        conf = conf.display(),
    );
    let svc = Service::start("nginx-respond", &pipeline, Stdio::null());
    let syslog = svc.syslog_udp.expect("a syslog udp port");
    let port = free_port();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "ok\n").unwrap();
    std::fs::write(dir.join("www/login"), "login page\n").unwrap();
    std::fs::write(
        &conf,
        format!(
            "user root root;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log warn;
events {{ worker_connections 64; }}
http {{
  client_body_temp_path {dir}/tmp-body;
  proxy_temp_path {dir}/tmp-proxy;
  fastcgi_temp_path {dir}/tmp-fastcgi;
  uwsgi_temp_path {dir}/tmp-uwsgi;
  scgi_temp_path {dir}/tmp-scgi;
  access_log syslog:server={syslog},tag=nginx combined;
  server {{
    listen 127.0.0.1:{port};
    root {dir}/www;
    # deny runs in the access phase, so the content comes from files
    # (a `return` would answer before any deny is checked)
    location = /login {{ include {deny}; error_page 405 =401 @failed; }}
    location @failed {{ return 401; }}
    location / {{ include {deny}; }}
  }}
}}
",
            dir = dir.display(),
            deny = deny.display(),
        ),
    )
    .unwrap();
    let _nginx = Stopped(
        Command::new(NGINX)
            .args([
                "-p",
                dir.to_str().unwrap(),
                "-c",
                conf.to_str().unwrap(),
                "-g",
                "daemon off;",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_until("nginx", 10, || {
        curl("127.0.0.1", "GET", &format!("{base}/")) == 200
    });
    assert_eq!(curl("127.0.0.23", "GET", &format!("{base}/")), 200);
    // the attacker guesses passwords from a second loopback address; the
    // block may land before the last guess, which then meets a 403
    let started = Instant::now();
    let mut failed = 0;
    for _ in 0..8 {
        match curl("127.0.0.23", "POST", &format!("{base}/login")) {
            401 => failed += 1,
            403 => break,
            other => panic!("a guess was answered {other}"),
        }
    }
    assert!(failed >= 6, "only {failed} guesses failed before the block");
    wait_until("the block to land", 15, || {
        curl("127.0.0.23", "GET", &format!("{base}/login")) == 403
    });
    let blocked_after = started.elapsed();
    assert!(
        std::fs::read_to_string(&deny)
            .unwrap()
            .contains("deny 127.0.0.23;")
    );
    // everyone else still gets through
    assert_eq!(curl("127.0.0.1", "GET", &format!("{base}/login")), 200);
    // the action is visible over the API, executed and then verified
    svc.wait_for("the block to verify", 15, |s| {
        let v = s.get_json("/api/v1/actions");
        v["actions"].as_array().unwrap().iter().any(|a| {
            a["action"] == "block_ip" && a["target"] == "127.0.0.23" && a["status"] == "verified"
        })
    });
    // after the TTL the block is undone and the attacker gets through again
    wait_until("the TTL undo", 20, || {
        curl("127.0.0.23", "GET", &format!("{base}/")) == 200
    });
    assert!(
        !std::fs::read_to_string(&deny)
            .unwrap()
            .contains("127.0.0.23")
    );
    // the reload lands before the connector's answer is recorded
    svc.wait_for("the block to be marked undone", 10, |s| {
        let v = s.get_json("/api/v1/actions");
        v["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "block_ip" && a["status"] == "undone")
    });
    let actions = svc.get_json("/api/v1/actions");
    let list = actions["actions"].as_array().unwrap();
    let block = list.iter().find(|a| a["action"] == "block_ip").unwrap();
    let unblock = list.iter().find(|a| a["action"] == "unblock_ip").unwrap();
    assert_eq!(unblock["undoes"], block["action_id"]);
    let incident = svc.get_json(&format!(
        "/api/v1/incidents/{}",
        block["incident_id"].as_str().unwrap()
    ));
    let phases: Vec<&str> = incident["incident"]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["phase"].as_str().unwrap())
        .collect();
    for p in [
        "detection",
        "proposal",
        "execution",
        "verification",
        "closure",
    ] {
        assert!(phases.contains(&p), "no {p} in {phases:?}");
    }
    let audit = svc.dir.join("respond").join("audit.log");
    let stderr = svc.stop();
    assert!(stderr.contains("threatpilot respond: "), "{stderr}");
    let out = threatpilot(["audit", "verify", audit.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!("block landed {blocked_after:?} after the first guess");
}

/// A small identity provider: `POST /api/users/{user}/lock|unlock` with a
/// bearer token, a JSON body and an `Idempotency-Key`; anything else is
/// refused. Every request is recorded.
/// (method, path, idempotency key, status answered) of one request.
type Seen = Vec<(String, String, String, String)>;

struct Idp {
    port: u16,
    seen: Arc<Mutex<Seen>>,
}

fn idp(token: &'static str) -> Idp {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let rec = rec.clone();
            std::thread::spawn(move || serve_idp(s, token, &rec));
        }
    });
    Idp { port, seen }
}

fn serve_idp(s: TcpStream, token: &str, rec: &Mutex<Seen>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let Some(req) = support::read_request(&mut r) else {
        return;
    };
    let body = String::from_utf8_lossy(&req.body).into_owned();
    let (method, path, headers) = (req.method, req.target, req.headers);
    let key = headers.get("idempotency-key").cloned().unwrap_or_default();
    let status =
        if headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {token}")) {
            "401 Unauthorized"
        } else if method != "POST"
            || !(path.starts_with("/api/users/")
                && (path.ends_with("/lock") || path.ends_with("/unlock")))
            || key.is_empty()
            || headers
                .get("content-type")
                .is_none_or(|c| !c.starts_with("application/json"))
            || serde_json::from_str::<serde_json::Value>(&body).is_err()
        {
            "400 Bad Request"
        } else {
            "200 OK"
        };
    rec.lock()
        .unwrap()
        .push((method, path, key, status.to_owned()));
    let mut w = s;
    let _ = write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{{\"ok\":true}}"
    );
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_compromised_account_has_its_sessions_revoked_and_is_locked_at_the_idp() {
    if !have(&["redis-server", "redis-cli"]) {
        return;
    }
    let dir = temp_dir("identity");
    let rport = free_port();
    let _redis = Killed(
        Command::new("redis-server")
            .args([
                "--port",
                &rport.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("redis", 10, || redis_cli(rport, &["PING"]).trim() == "PONG");
    // the fixture's compromised user is `deploy`; `deployer` and `*` are others
    for k in [
        "session:deploy:1",
        "session:deploy:2",
        "session:deployer:1",
        "session:alice:1",
        "session:*:1",
    ] {
        redis_cli(rport, &["SET", k, "x"]);
    }
    let idp = idp("s3cret-idp-token");
    let playbooks = dir.join("playbooks");
    std::fs::create_dir_all(&playbooks).unwrap();
    std::fs::write(
        playbooks.join("identity.yaml"),
        "version: 1
playbooks:
  - id: contain-account
    title: Contain a compromised account
    match:
      detector: [identity.success_after_failures]
    steps:
      - action: revoke_sessions
        target: '{context.user}'
        risk: high
        verify: {finding_quiet: true, after_secs: 1}
      - action: lock_account
        target: '{context.user}'
        risk: high
        ttl_secs: 600
        verify: {finding_quiet: true, after_secs: 1}
",
    )
    .unwrap();
    let pipeline = dir.join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "version: 1
name: identity
sources:
  - type: file
    id: auth
    paths: [fixtures/detectors/synthetic-success-after-failures/input.log]
sinks:
  - type: file
    path: {dir}/findings.jsonl
respond:
  playbooks: [{playbooks}]
  state_dir: {dir}/respond
  policy:
    modes: {{low: auto, medium: auto, high: auto, critical: auto}}
  connectors:
    - type: redis
      name: sessions
      address: 127.0.0.1:{rport}
      patterns: {{revoke_sessions: 'session:{{target}}:*'}}
    - type: http
      name: idp
      base_url: http://127.0.0.1:{iport}/api
      secret: {{env: TEST_IDP_TOKEN}}
      headers: {{Authorization: 'Bearer {{secret}}'}}
      requests:
        lock_account: {{path: '/users/{{target}}/lock', body: {{incident: '{{incident_id}}', reason: 'threatpilot'}}}}
        unlock_account: {{path: '/users/{{target}}/unlock', body: {{}}}}
  routes:
    identity: {{revoke_sessions: sessions, lock_account: idp}}
",
            dir = dir.display(),
            playbooks = playbooks.display(),
            iport = idp.port,
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_threatpilot"))
        .args(["run", "--pipeline"])
        .arg(&pipeline)
        .env("TEST_IDP_TOKEN", "s3cret-idp-token")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("s3cret"),
        "the secret was logged: {stderr}"
    );
    let keys = redis_cli(rport, &["KEYS", "*"]);
    let mut keys: Vec<&str> = keys.lines().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["session:*:1", "session:alice:1", "session:deployer:1"]
    );
    let seen = idp.seen.lock().unwrap().clone();
    let locks: Vec<_> = seen
        .iter()
        .filter(|r| r.1 == "/api/users/deploy/lock")
        .collect();
    assert_eq!(locks.len(), 1, "{seen:?}");
    assert_eq!(locks[0].3, "200 OK", "{seen:?}");
    assert!(
        locks[0].2.starts_with("a-"),
        "idempotency key {:?}",
        locks[0].2
    );
    let journal = std::fs::read_to_string(dir.join("respond/journal.jsonl")).unwrap();
    assert!(journal.contains(&locks[0].2));
    let out = threatpilot([
        "audit",
        "verify",
        dir.join("respond/audit.log").to_str().unwrap(),
    ]);
    assert!(out.status.success());
}

#[test]
fn a_crash_loop_restarts_the_service_and_its_health_url_verifies_it() {
    if !have(&["python3"]) {
        return;
    }
    let dir = temp_dir("restart");
    let port = free_port();
    let pidfile = dir.join("svc.pid");
    let script = dir.join("restart.sh");
    // the supervisor's restart: stop the old process, start a new one
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\n[ \"$1\" = \"$2\" ] || exit 3\nkill \"$(cat {pid})\" 2>/dev/null || true\nnohup python3 -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 &\necho $! > {pid}\nsleep 0.5\necho restarted \"$1\"\n",
            pid = pidfile.display()
        ),
    )
    .unwrap();
    let first = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(&pidfile, first.id().to_string()).unwrap();
    let fixture = "fixtures/detectors/k8s-crashloop-describe";
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{fixture}/expected.json")).unwrap())
            .unwrap();
    let pod = expected[0]["offender"].as_str().unwrap().to_owned();
    let playbooks = dir.join("playbooks");
    std::fs::create_dir_all(&playbooks).unwrap();
    std::fs::write(
        playbooks.join("infra.yaml"),
        format!(
            "version: 1
playbooks:
  - id: restart-crash-loop
    title: Restart a crash loop
    match:
      detector: [infrastructure.crash_loop]
    steps:
      - action: restart_service
        risk: high
        verify: {{http_url: 'http://127.0.0.1:{port}/', after_secs: 1}}
"
        ),
    )
    .unwrap();
    let pipeline = dir.join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "version: 1
name: restart
sources:
  - type: file
    id: k8s
    paths: [{fixture}/input.log]
sinks:
  - type: file
    path: {dir}/findings.jsonl
respond:
  playbooks: [{playbooks}]
  state_dir: {dir}/respond
  policy:
    modes: {{low: auto, medium: auto, high: auto, critical: auto}}
  connectors:
    - type: command
      name: supervisor
      commands:
        restart_service: {{program: /bin/sh, args: [{script}, '{{target}}', '{pod}'], timeout_secs: 10}}
  routes:
    infrastructure: {{restart_service: supervisor}}
",
            dir = dir.display(),
            playbooks = playbooks.display(),
            script = script.display(),
        ),
    )
    .unwrap();
    let out = threatpilot(["run", "--pipeline", pipeline.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let _first = Killed(first);
    let new_pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _second = KillPid(new_pid);
    assert_ne!(new_pid, _first.0.id(), "the service was not restarted");
    let journal = std::fs::read_to_string(dir.join("respond/journal.jsonl")).unwrap();
    let last = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect::<Vec<_>>()
        .into_iter()
        .rfind(|v| v["t"] == "action")
        .expect("an action in the journal");
    // high risk: verified by its health URL, then a person confirms
    assert_eq!(
        last["v"]["status"], "awaiting_confirmation",
        "{last}\n{stderr}"
    );
    assert!(
        last["v"]["verification"]
            .as_str()
            .unwrap()
            .contains("answered 200"),
        "{last}"
    );
    assert!(
        last["v"]["output"].as_str().unwrap().contains("restarted"),
        "{last}"
    );
}

struct KillPid(u32);

impl Drop for KillPid {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.to_string()).status();
    }
}

/// sshd lines dated now, over UDP syslog, as an attacker at `ip` guessing
/// (shipped from 127.0.0.2, an address no test acts on).
fn guess(svc: &Service, ip: &str, n: usize) {
    ship(svc, "127.0.0.2", ip, n);
}

/// `n` failed SSH logins from `attacker`, dated now, shipped over UDP
/// syslog from the local address `shipper`.
fn ship(svc: &Service, shipper: &str, attacker: &str, n: usize) {
    let udp = std::net::UdpSocket::bind((shipper, 0)).unwrap();
    let stamp = chrono::Utc::now().format("%b %e %H:%M:%S");
    for i in 0..n {
        let line = format!(
            "<38>{stamp} web-1 sshd[{}]: Failed password for root from {attacker} port {} ssh2",
            100 + i,
            40000 + i
        );
        udp.send_to(line.as_bytes(), svc.syslog_udp.unwrap())
            .unwrap();
    }
}

#[test]
fn approvals_go_through_the_api_and_the_cli_with_roles_and_expiry_of_nothing_late() {
    let dir = temp_dir("approvals");
    let deny = dir.join("deny.conf");
    let playbooks = dir.join("playbooks");
    std::fs::create_dir_all(&playbooks).unwrap();
    std::fs::write(
        playbooks.join("p.yaml"),
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
    let hash = |t: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_threatpilot"))
            .args(["token", "hash"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(t.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let pipeline = format!(
        "version: 1
name: approvals
sources:
  - type: syslog
    id: sshd
    udp: 127.0.0.1:0
sinks:
  - type: file
    path: {{dir}}/findings.jsonl
api:
  listen: 127.0.0.1:0
  auth:
    public_metrics: true
    tokens:
      - {{name: oncall, role: responder, sha256: {r}}}
      - {{name: dashboard, role: viewer, sha256: {v}}}
respond:
  playbooks: [{playbooks}]
  state_dir: {{dir}}/respond
  policy:
    modes: {{high: approve}}
  connectors:
    - {{type: nginx, name: edge, deny_file: {deny}}}
  routes:
    identity: {{block_ip: edge}}
",
        r = hash("responder-token"),
        v = hash("viewer-token"),
        playbooks = playbooks.display(),
        deny = deny.display(),
    );
    let svc = Service::start("approvals", &pipeline, Stdio::null());
    let api = format!("http://{}", svc.api);
    let auth = |t: &str| format!("Bearer {t}");
    guess(&svc, "203.0.113.50", 8);
    guess(&svc, "203.0.113.51", 8);
    let pending = |svc: &Service| -> Vec<serde_json::Value> {
        let r = support::http(
            svc.api,
            "GET",
            "/api/v1/actions?status=pending_approval",
            &[("Authorization", &auth("viewer-token"))],
            b"",
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["actions"].as_array().unwrap().clone()
    };
    svc.wait_for("two pending blocks", 15, |s| pending(s).len() == 2);
    let list = pending(&svc);
    let id_of = |ip: &str| {
        list.iter().find(|a| a["target"] == ip).unwrap()["action_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (a, b) = (id_of("203.0.113.50"), id_of("203.0.113.51"));
    // a viewer may look but not approve; no token is refused outright
    let r = svc.post(
        &format!("/api/v1/actions/{a}/approve"),
        &[("Authorization", &auth("viewer-token"))],
        b"",
    );
    assert_eq!(r.status, 403);
    let r = svc.post(&format!("/api/v1/actions/{a}/approve"), &[], b"");
    assert_eq!(r.status, 401);
    assert!(
        !deny.exists()
            || !std::fs::read_to_string(&deny)
                .unwrap()
                .contains("203.0.113.50")
    );
    // the CLI approves one and rejects the other, with the responder's token
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_threatpilot"))
            .args(args)
            .args(["--api", &api])
            .env("THREATPILOT_TOKEN", "responder-token")
            .output()
            .unwrap()
    };
    let listed = cli(&["actions", "list", "--status", "pending_approval"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 2);
    let ok = cli(&["actions", "approve", &a]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let no = cli(&[
        "actions",
        "reject",
        &b,
        "--reason",
        "a known scanner of ours",
    ]);
    assert!(
        no.status.success(),
        "{}",
        String::from_utf8_lossy(&no.stderr)
    );
    // approving twice is a conflict, not a second run
    let again = cli(&["actions", "approve", &a]);
    assert!(!again.status.success());
    wait_until("the approved block", 10, || {
        std::fs::read_to_string(&deny).is_ok_and(|t| t.contains("deny 203.0.113.50;"))
    });
    assert!(
        !std::fs::read_to_string(&deny)
            .unwrap()
            .contains("203.0.113.51")
    );
    let action = |id: &str| {
        let r = support::http(
            svc.api,
            "GET",
            "/api/v1/actions",
            &[("Authorization", &auth("viewer-token"))],
            b"",
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["action_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(action(&a)["approved_by"], "oncall");
    assert_eq!(action(&b)["status"], "rejected");
    assert!(
        action(&b)["reason"]
            .as_str()
            .unwrap()
            .contains("a known scanner of ours")
    );
    // the approver's own address is protected from then on
    guess(&svc, "127.0.0.1", 8);
    svc.wait_for("the self-lockout refusal", 15, |s| {
        let r = support::http(
            s.api,
            "GET",
            "/api/v1/actions",
            &[("Authorization", &auth("viewer-token"))],
            b"",
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["actions"].as_array().unwrap().iter().any(|x| {
            x["target"] == "127.0.0.1"
                && x["status"] == "skipped_by_policy"
                && x["reason"]
                    .as_str()
                    .unwrap()
                    .contains("sends to or steers this pipeline (an API approver)")
        })
    });
    // the job tail streams the incident's phases
    // the approved block's incident, phase by phase
    let approved_incident = action(&a)["incident_id"].as_str().unwrap().to_owned();
    let mut tail = Command::new(env!("CARGO_BIN_EXE_threatpilot"))
        .args(["incidents", "tail", &approved_incident, "--api", &api])
        .env("THREATPILOT_TOKEN", "viewer-token")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let _ = tail.kill();
    let out = tail.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for phase in ["detection", "proposal", "gate", "execution"] {
        assert!(text.contains(phase), "no {phase} in the tail:\n{text}");
    }
    let audit = svc.dir.join("respond/audit.log");
    svc.stop();
    let log = std::fs::read_to_string(&audit).unwrap();
    assert!(
        log.contains("\"actor\":\"oncall\",\"decision\":\"approved\""),
        "{log}"
    );
    assert!(log.contains("\"decision\":\"rejected\""));
}

/// Self-lockout: the host that ships the logs is never blocked, even when
/// its own address shows up as an attacker in what it ships; an attacker
/// it reports is.
#[test]
fn a_log_shipper_is_never_blocked_by_what_it_ships() {
    let svc = Service::start(
        "shipper-guard",
        "version: 1
name: guard
sources:
  - type: syslog
    id: relay
    udp: 127.0.0.1:0
sinks:
  - type: file
    path: {dir}/findings.jsonl
api:
  listen: 127.0.0.1:0
respond:
  playbooks: [playbooks]
  state_dir: {dir}/respond
  policy:
    modes: {low: auto, medium: auto, high: auto, critical: auto}
  connectors:
    - type: nginx
      name: edge
      deny_file: {dir}/deny.conf
      reload: {program: /bin/true}
  routes:
    identity: {block_ip: edge}
    http: {block_ip: edge}
",
        Stdio::null(),
    );
    // the relay ships from 127.0.0.9; the sshd it relays for sees guesses
    // from 127.0.0.9 itself (a NAT in front) and from 127.0.0.10
    ship(&svc, "127.0.0.9", "127.0.0.9", 8);
    ship(&svc, "127.0.0.9", "127.0.0.10", 8);
    svc.wait_for("both decisions", 20, |s| {
        let v = s.get_json("/api/v1/actions");
        let list = v["actions"].as_array().unwrap();
        let done = |t: &str| {
            list.iter()
                .any(|a| a["target"] == t && a["status"] != "proposed")
        };
        done("127.0.0.9") && done("127.0.0.10")
    });
    let v = svc.get_json("/api/v1/actions");
    let list = v["actions"].as_array().unwrap();
    let of = |t: &str| list.iter().find(|a| a["target"] == t).unwrap().clone();
    let shipper = of("127.0.0.9");
    assert_eq!(shipper["status"], "skipped_by_policy", "{shipper}");
    assert!(
        shipper["reason"]
            .as_str()
            .unwrap()
            .contains("a syslog sender of source relay"),
        "{shipper}"
    );
    let attacker = of("127.0.0.10");
    assert_ne!(attacker["status"], "skipped_by_policy", "{attacker}");
    svc.wait_for("the attacker's block", 10, |s| {
        std::fs::read_to_string(s.dir.join("deny.conf"))
            .is_ok_and(|d| d.contains("deny 127.0.0.10;"))
    });
    let deny = std::fs::read_to_string(svc.dir.join("deny.conf")).unwrap();
    assert!(!deny.contains("127.0.0.9;"), "{deny}");
    svc.stop();
}

/// A Prometheus query as the verification, against Prometheus from Debian
/// scraping the service: a restart that brings the error ratio under the
/// threshold verifies; one that does not fails, rolls back and escalates.
#[test]
fn a_restart_is_verified_by_a_prometheus_query() {
    const PROMETHEUS: &str = "/usr/bin/prometheus";
    if !have(&["python3", PROMETHEUS]) {
        return;
    }
    let dir = temp_dir("prometheus-verify");
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let fixture = "fixtures/detectors/k8s-crashloop-describe";
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{fixture}/expected.json")).unwrap())
            .unwrap();
    // every crash-looping pod of the fixture has its error ratio
    let pods: Vec<String> = expected
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["detector"] == "infrastructure.crash_loop")
        .map(|f| f["offender"].as_str().unwrap().to_owned())
        .collect();
    assert!(!pods.is_empty());
    let exposition = |ratio: &str| {
        pods.iter()
            .map(|p| format!("app_error_ratio{{pod=\"{p}\"}} {ratio}\n"))
            .collect::<String>()
    };
    std::fs::write(www.join("metrics"), exposition("0.9")).unwrap();
    let port = free_port();
    // the service's state is exported as a text file (as node_exporter's
    // textfile collector does) that stays served across restarts
    let _exporter = Killed(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // the restart leaves the state `next` describes
    let script = dir.join("restart.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\ncp {next} {www}/metrics.new\nmv {www}/metrics.new {www}/metrics\necho restarted \"$1\"\n",
            next = dir.join("next").display(),
            www = www.display(),
        ),
    )
    .unwrap();
    let prom_port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: app\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        ),
    )
    .unwrap();
    let _prometheus = Killed(
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}/prometheus.yml", dir.display()))
            .arg(format!("--storage.tsdb.path={}/tsdb", dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let query = |q: &str| {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", "-G"])
            .arg(format!("http://127.0.0.1:{prom_port}/api/v1/query"))
            .args(["--data-urlencode", &format!("query={q}")])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default()
    };
    wait_until("Prometheus to scrape the service", 30, || {
        query("app_error_ratio")["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    });
    let playbooks = dir.join("playbooks");
    std::fs::create_dir_all(&playbooks).unwrap();
    std::fs::write(
        playbooks.join("infra.yaml"),
        format!(
            "version: 1
playbooks:
  - id: restart-crash-loop
    title: Restart a crash loop
    match:
      detector: [infrastructure.crash_loop]
    steps:
      - action: restart_service
        risk: medium
        verify:
          after_secs: 4
          prometheus:
            url: http://127.0.0.1:{prom_port}
            query: 'max(app_error_ratio{{{{pod=\"{{offender}}\"}}}})'
            below: 0.05
"
        ),
    )
    .unwrap();
    let run = |state: &str, next_ratio: &str| {
        std::fs::write(dir.join("next"), exposition(next_ratio)).unwrap();
        let pipeline = dir.join(format!("{state}.yaml"));
        std::fs::write(
            &pipeline,
            format!(
                "version: 1
name: restart
sources:
  - type: file
    id: k8s
    paths: [{fixture}/input.log]
sinks:
  - type: file
    path: {dir}/{state}-findings.jsonl
respond:
  playbooks: [{playbooks}]
  state_dir: {dir}/{state}
  policy:
    modes: {{low: auto, medium: auto, high: auto, critical: auto}}
  connectors:
    - type: command
      name: supervisor
      commands:
        restart_service: {{program: /bin/sh, args: [{script}, '{{target}}'], timeout_secs: 10}}
  routes:
    infrastructure: {{restart_service: supervisor}}
",
                dir = dir.display(),
                playbooks = playbooks.display(),
                script = script.display(),
            ),
        )
        .unwrap();
        let out = threatpilot(["run", "--pipeline", pipeline.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        let journal = std::fs::read_to_string(dir.join(state).join("journal.jsonl")).unwrap();
        let records: Vec<serde_json::Value> = journal
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        // the last version of each action, and the incidents
        let mut actions = std::collections::BTreeMap::new();
        let mut incidents = std::collections::BTreeMap::new();
        for r in records {
            let id = |k: &str| r["v"][k].as_str().unwrap().to_owned();
            match r["t"].as_str() {
                Some("action") => drop(actions.insert(id("action_id"), r["v"].clone())),
                Some("incident") => drop(incidents.insert(id("incident_id"), r["v"].clone())),
                _ => {}
            }
        }
        assert_eq!(actions.len(), pods.len(), "{journal}\n{stderr}");
        actions
            .into_values()
            .map(|a| {
                let i = incidents[a["incident_id"].as_str().unwrap()].clone();
                (a, i)
            })
            .collect::<Vec<_>>()
    };
    // the restart does not help: the ratio stays high
    for (action, incident) in run("unhelpful", "0.9") {
        assert_eq!(action["status"], "rolled_back", "{action}");
        let why = action["verification"].as_str().unwrap();
        assert!(why.contains("= 0.9, not below 0.05"), "{action}");
        assert_eq!(incident["status"], "escalated", "{incident}");
    }
    // the restart fixes it
    for (action, incident) in run("helpful", "0.01") {
        assert_eq!(action["status"], "verified", "{action}");
        let why = action["verification"].as_str().unwrap();
        assert!(why.contains("= 0.01 < 0.05"), "{action}");
        assert_ne!(incident["status"], "escalated", "{incident}");
    }
}
