//! Crash safety of response: a running `threatpilot run` is killed with
//! SIGKILL at random points (while findings arrive, while blocks are under
//! way, while their TTLs run) and restarted on the same state. An edge
//! firewall API in the test records every request with its
//! `Idempotency-Key` and applies each key once, as such APIs do. In the
//! end every attacker was blocked by exactly one action and unblocked by
//! exactly one undo, each block came before its unblock, nobody is left
//! blocked, and the audit chain is whole.

#[path = "support/service.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Service, read_request, temp_dir, threatpilot};

/// (method, address, idempotency key) of each request, in arrival order.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// The edge's API: `POST /blocks/{ip}` and `DELETE /blocks/{ip}`, each
/// answered after a short delay (so a kill can land mid-request).
fn edge() -> (u16, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let rec = rec.clone();
            std::thread::spawn(move || serve(s, &rec));
        }
    });
    (port, seen)
}

fn serve(s: TcpStream, rec: &Mutex<Vec<(String, String, String)>>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let Some(req) = read_request(&mut r) else {
        return;
    };
    let key = req.header("idempotency-key").unwrap_or_default().to_owned();
    let (method, path) = (req.method, req.target);
    let ip = path.strip_prefix("/blocks/").unwrap_or("").to_owned();
    let ok = !ip.is_empty() && !key.is_empty() && (method == "POST" || method == "DELETE");
    if ok {
        rec.lock().unwrap().push((method, ip, key));
    }
    std::thread::sleep(Duration::from_millis(40));
    let status = if ok { "200 OK" } else { "400 Bad Request" };
    let mut w = s;
    let _ = write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
}

/// A small deterministic generator (the seed is printed, so a failing
/// run can be repeated with THREATPILOT_CRASH_SEED).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// `n` failed SSH logins from `attacker`, dated now, shipped over UDP
/// syslog from 127.0.0.2.
fn ship(port: u16, attacker: &str, n: usize) {
    let udp = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    let stamp = chrono::Utc::now().format("%b %e %H:%M:%S");
    for i in 0..n {
        let line = format!(
            "<38>{stamp} bastion sshd[{}]: Failed password for root from {attacker} port {} ssh2",
            200 + i,
            41000 + i
        );
        udp.send_to(line.as_bytes(), ("127.0.0.1", port)).unwrap();
    }
}

fn kill9(svc: Service) {
    let _ = Command::new("kill")
        .args(["-9", &svc.pid().to_string()])
        .stderr(Stdio::null())
        .status();
    drop(svc);
}

/// The actions the service reports, by id.
fn actions(svc: &Service) -> Vec<serde_json::Value> {
    svc.get_json("/api/v1/actions")["actions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn kill_minus_nine_at_random_points_loses_no_action_and_runs_none_twice() {
    let seed = std::env::var("THREATPILOT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("THREATPILOT_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = temp_dir("respond-crash");
    let (edge_port, seen) = edge();
    let syslog_port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let playbooks = dir.join("playbooks");
    std::fs::create_dir_all(&playbooks).unwrap();
    std::fs::write(
        playbooks.join("edge.yaml"),
        "version: 1
playbooks:
  - id: block-ssh-guessing
    title: Block SSH guessing at the edge
    match: {detector: [identity.ssh_brute_force]}
    steps:
      - action: block_ip
        risk: medium
        ttl_secs: 3
        verify: {finding_quiet: true, after_secs: 1}
",
    )
    .unwrap();
    let pipeline = format!(
        "version: 1
name: crash
sources:
  - type: syslog
    id: relay
    udp: 127.0.0.1:{syslog_port}
sinks:
  - type: file
    path: {{dir}}/findings.jsonl
api:
  listen: 127.0.0.1:0
respond:
  playbooks: [{playbooks}]
  state_dir: {state}
  policy:
    modes: {{low: auto, medium: auto, high: auto, critical: auto}}
  connectors:
    - type: http
      name: edge
      base_url: http://127.0.0.1:{edge_port}
      requests:
        block_ip: {{method: POST, path: '/blocks/{{target}}'}}
        unblock_ip: {{method: DELETE, path: '/blocks/{{target}}'}}
  routes:
    identity: {{block_ip: edge}}
",
        playbooks = playbooks.display(),
        state = dir.join("respond").display(),
    );
    let start = || Service::start("respond-crash-run", &pipeline, Stdio::null());
    let attackers: Vec<String> = (1..=12).map(|k| format!("198.51.100.{k}")).collect();
    let mut svc = start();
    let mut kills = 0;
    // findings arrive; kills land before, during and after their actions
    for a in &attackers {
        ship(syslog_port, a, 8);
        std::thread::sleep(Duration::from_millis(rng.below(250)));
        if rng.below(2) == 0 {
            kill9(svc);
            kills += 1;
            svc = start();
        }
    }
    // lines sent while the process was down or not yet evaluated at a kill
    // are gone with it (UDP, detection state in memory): send those again
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have: BTreeSet<String> = actions(&svc)
            .iter()
            .filter(|a| a["action"] == "block_ip")
            .map(|a| a["target"].as_str().unwrap().to_owned())
            .collect();
        let missing: Vec<&String> = attackers.iter().filter(|a| !have.contains(*a)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "never blocked: {missing:?}");
        for a in missing {
            ship(syslog_port, a, 8);
        }
        std::thread::sleep(Duration::from_millis(1500));
    }
    // kills while blocks are verified and their TTLs run
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(rng.below(2000)));
        kill9(svc);
        kills += 1;
        svc = start();
    }
    svc.wait_for("every block to be undone", 60, |s| {
        let list = actions(s);
        attackers.iter().all(|t| {
            list.iter()
                .any(|a| a["action"] == "block_ip" && a["target"] == *t && a["status"] == "undone")
        })
    });
    let list = actions(&svc);
    svc.stop();

    let seen = seen.lock().unwrap().clone();
    let mut keys: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (m, ip, key) in &seen {
        keys.entry((m.clone(), ip.clone()))
            .or_default()
            .insert(key.clone());
    }
    // the edge applies each key once: replay its effect
    let mut applied = BTreeSet::new();
    let mut blocked = BTreeSet::new();
    for (m, ip, key) in &seen {
        if applied.insert(key.clone()) {
            if m == "POST" {
                assert!(blocked.insert(ip.clone()), "{ip} blocked twice");
            } else {
                assert!(blocked.remove(ip), "{ip} unblocked while not blocked");
            }
        }
    }
    for a in &attackers {
        let block = &keys[&("POST".to_owned(), a.clone())];
        let unblock = &keys[&("DELETE".to_owned(), a.clone())];
        assert_eq!(block.len(), 1, "{a}: block keys {block:?}");
        assert_eq!(unblock.len(), 1, "{a}: unblock keys {unblock:?}");
        let action = list
            .iter()
            .find(|x| x["action"] == "block_ip" && x["target"] == *a)
            .unwrap();
        assert!(block.contains(action["action_id"].as_str().unwrap()));
    }
    assert!(blocked.is_empty(), "left blocked: {blocked:?}");
    let resent = seen.len() - applied.len();
    eprintln!(
        "{kills} kills, {} requests, {} distinct actions, {resent} resent with their key",
        seen.len(),
        applied.len()
    );
    assert!(kills >= 2);
    let audit = dir.join("respond").join("audit.log");
    let out = threatpilot(["audit", "verify", audit.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
