//! `threatpilot bench --console`: how fast the console's pages answer with
//! many findings held, measured as a person meets them: a real
//! `threatpilot run` (sshd lines from a file, response planning every
//! block for approval, the API with the console), a real login, and
//! timed GETs of each page over loopback.
//!
//! The input is `--events` attacking addresses with six failed SSH logins
//! each, so the pipeline holds that many findings (and an incident and an
//! action for each the response queue took in). Pages are fetched
//! `--runs` times each once the pipeline is idle; the report gives the
//! median and the slowest answer and the page's size.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

pub struct ConsoleBench {
    pub findings: usize,
    pub runs: usize,
    pub detectors: String,
    pub json: bool,
}

#[derive(Serialize)]
struct Page {
    path: String,
    median_ms: f64,
    max_ms: f64,
    bytes: usize,
}

#[derive(Serialize)]
struct Report {
    findings_held: u64,
    incidents: u64,
    actions: u64,
    runs: usize,
    pages: Vec<Page>,
}

/// The number after `marker` in a page (the console prints totals so).
fn number_after(page: &str, marker: &str) -> u64 {
    page.split_once(marker)
        .map(|(_, rest)| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

const TOKEN: &str = "bench-console-token";

fn write_input(path: &Path, n: usize) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let start = crate::time::now_ms() - 2 * 3_600_000;
    for i in 0..n {
        let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        // one attacker every 50 ms: the whole set within two hours of now
        let t = crate::time::format_rfc3339(start + i as i64 * 50);
        for k in 0..6 {
            writeln!(
                w,
                "{t} bastion sshd[{}]: Failed password for root from {ip} port {} ssh2",
                1000 + k,
                40000 + k
            )?;
        }
    }
    w.flush()
}

pub fn run(b: ConsoleBench) -> anyhow::Result<ExitCode> {
    let dir = std::env::temp_dir().join(format!("tp-bench-console-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("playbooks"))?;
    let input = dir.join("auth.log");
    write_input(&input, b.findings)?;
    std::fs::write(
        dir.join("playbooks/p.yaml"),
        "version: 1\nplaybooks:\n  - id: block-ssh\n    title: Block SSH brute force\n    match: {detector: [identity.ssh_brute_force]}\n    steps:\n      - action: block_ip\n        risk: high\n        ttl_secs: 3600\n",
    )?;
    let d = dir.display();
    let pipeline = format!(
        "version: 1
name: bench-console
detect:
  paths: [{detectors}]
sources:
  - type: file
    id: auth
    paths: [{d}/auth.log]
  - type: syslog
    id: keepalive
    udp: 127.0.0.1:0
sinks:
  - type: file
    path: {d}/findings.jsonl
api:
  listen: 127.0.0.1:0
  max_findings: {max}
  auth:
    tokens:
      - {{name: bench, role: admin, sha256: {hash}}}
respond:
  playbooks: [{d}/playbooks]
  state_dir: {d}/respond
  policy:
    modes: {{high: approve}}
  connectors:
    - {{type: nginx, name: edge, deny_file: {d}/deny.conf}}
  routes:
    identity: {{block_ip: edge}}
",
        detectors = b.detectors,
        max = b.findings.max(1),
        hash = crate::api::auth::hash_token(TOKEN),
    );
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, pipeline)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["run", "--pipeline"])
        .arg(&file)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(a) = l.split("listening on http://").nth(1) {
                    break a.trim().to_owned();
                }
            }
            _ => {
                let _ = child.kill();
                anyhow::bail!("the pipeline did not start");
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let result = super::runtime()?.block_on(measure(&addr, &b, &dir));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    if b.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "console with {} findings, {} incidents, {} actions held; {} GETs per page",
            report.findings_held, report.incidents, report.actions, report.runs
        );
        for p in &report.pages {
            println!(
                "  {:<46} median {:>7.1} ms  max {:>7.1} ms  {:>8} bytes",
                p.path, p.median_ms, p.max_ms, p.bytes
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn measure(addr: &str, b: &ConsoleBench, dir: &Path) -> anyhow::Result<Report> {
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()?;
    let status = || async {
        let v: serde_json::Value = client
            .get(format!("{base}/api/v1/status"))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .json()
            .await?;
        anyhow::Ok(v)
    };
    // idle: every finding held and the audit chain no longer growing
    let deadline = Instant::now() + Duration::from_secs(600);
    let audit = dir.join("respond/audit.log");
    let mut last = (0u64, 0u64);
    loop {
        let s = status().await?;
        let held = s["findings_held"].as_u64().unwrap_or(0);
        let size = std::fs::metadata(&audit).map(|m| m.len()).unwrap_or(0);
        if held >= b.findings as u64 && (held, size) == last {
            break;
        }
        last = (held, size);
        anyhow::ensure!(Instant::now() < deadline, "the pipeline never settled");
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let login = client
        .post(format!("{base}/console/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await?;
    let cookie = login
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("login gave no session"))?
        .to_owned();
    let incident = client
        .get(format!("{base}/api/v1/incidents?limit=1"))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json::<serde_json::Value>()
        .await?["incidents"][0]["incident_id"]
        .as_str()
        .unwrap_or("none")
        .to_owned();
    let paths = [
        "/console".to_owned(),
        "/console/incidents".to_owned(),
        format!("/console/incidents/{incident}"),
        "/console/findings".to_owned(),
        "/console/findings?severity=high&offender=10.0.1.2".to_owned(),
        "/console/actions".to_owned(),
        "/console/actions?status=pending_approval".to_owned(),
    ];
    let mut pages = Vec::new();
    let (mut incidents, mut actions) = (0, 0);
    for path in paths {
        let mut ms = Vec::new();
        let mut bytes = 0;
        for _ in 0..b.runs.max(1) {
            let t = Instant::now();
            let r = client
                .get(format!("{base}{path}"))
                .header(reqwest::header::COOKIE, &cookie)
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "{path}: {}", r.status());
            let body = r.text().await?;
            bytes = body.len();
            if path == "/console/incidents" {
                incidents = number_after(&body, r#"<p class="sub">"#);
            }
            if path == "/console/actions" {
                actions = number_after(&body, r#"<span class="count">"#);
            }
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        pages.push(Page {
            path,
            median_ms: ms[ms.len() / 2],
            max_ms: ms[ms.len() - 1],
            bytes,
        });
    }
    Ok(Report {
        findings_held: status().await?["findings_held"].as_u64().unwrap_or(0),
        incidents,
        actions,
        runs: b.runs.max(1),
        pages,
    })
}
