//! `threatpilot bench --loki`: Loki push throughput, with the load
//! generator (this process) and the pipeline (`threatpilot run`, a second
//! process) apart, as a log shipper and ThreatPilot would be.
//!
//! The simulated traffic is cut into snappy protobuf push requests of
//! `--batch-lines` lines per stream (built before timing), then sent over
//! `--connections` keep-alive connections. Two figures per run:
//! - accepted: lines per second answered 204 (503s are retried, and counted);
//! - end to end: from the first request to the pipeline's detect stage
//!   having taken the last line (read from its `/metrics`).
//!
//! Also the server's CPU seconds (from /proc), so events per CPU-second can
//! be compared across machines. Without `--loki-url` the server is started
//! here on an ephemeral port and stopped after.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::bench::median;
use crate::ingest::loki::{PushedStream, encode_protobuf};
use crate::simulate::{SimConfig, Stream, generate};

pub struct LokiBench {
    pub events: usize,
    pub runs: usize,
    pub detectors: String,
    pub url: Option<String>,
    pub batch_lines: usize,
    pub connections: usize,
    pub json: bool,
}

#[derive(serde::Serialize, Default, Clone)]
struct Report {
    events: usize,
    requests: usize,
    batch_lines: usize,
    connections: usize,
    request_bytes: usize,
    accepted_eps: f64,
    end_to_end_eps: f64,
    retries_503: usize,
    server_cpu_secs: f64,
    events_per_server_cpu_sec: f64,
}

/// `threatpilot run` over a push pipeline, stopped on drop.
struct Server {
    child: Child,
    dir: std::path::PathBuf,
    url: String,
}

impl Server {
    fn start(detectors: &str) -> anyhow::Result<Server> {
        let dir =
            std::env::temp_dir().join(format!("threatpilot-bench-loki-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let pipeline = dir.join("pipeline.yaml");
        std::fs::write(
            &pipeline,
            format!(
                "version: 1\nname: bench-loki\nsources:\n  - type: loki_push\n    id: loki\ndetect:\n  paths: [{detectors}]\nsinks:\n  - type: file\n    path: {}\napi:\n  listen: 127.0.0.1:0\n  limits:\n    requests_per_sec: 1000000\n    burst: 1000000\n",
                dir.join("findings.jsonl").display()
            ),
        )?;
        let mut child = Command::new(std::env::current_exe()?)
            .args(["run", "--pipeline"])
            .arg(&pipeline)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
        let mut lines = std::io::BufReader::new(stderr).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(a) = l.split("listening on ").nth(1) {
                        break a.trim().to_owned();
                    }
                }
                _ => anyhow::bail!("the pipeline did not start"),
            }
        };
        // keep draining its stderr so it never blocks on a full pipe
        std::thread::spawn(move || for _ in lines {});
        Ok(Server { child, dir, url })
    }

    /// CPU seconds the server has used so far.
    fn cpu_secs(&self) -> f64 {
        cpu_secs(self.child.id())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // fields after the command name, which may hold spaces
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat (11 and 12 after the name)
    (ticks(11) + ticks(12)) / 100.0
}

fn labels(s: Stream) -> Vec<(String, String)> {
    let (job, host) = match s {
        Stream::Sshd => ("sshd", "bastion-1"),
        Stream::Nginx => ("nginx", "web-1"),
        Stream::App => ("app", "api-1"),
        Stream::Kernel => ("kernel", "node-1"),
    };
    vec![("job".into(), job.into()), ("host".into(), host.into())]
}

/// The traffic as push request bodies, per stream in event order.
fn bodies(events: usize, per: usize) -> (Vec<bytes::Bytes>, usize) {
    let (lines, _) = generate(&SimConfig {
        events,
        seed: 7,
        events_per_sec: 500.0,
    });
    let mut by: BTreeMap<Vec<(String, String)>, Vec<String>> = BTreeMap::new();
    for l in lines {
        by.entry(labels(l.stream)).or_default().push(l.text);
    }
    let t0 = crate::time::now_ms() - 3_600_000;
    let mut out = Vec::new();
    let mut bytes = 0;
    for (labels, lines) in by {
        for chunk in lines.chunks(per.max(1)) {
            let body = encode_protobuf(&[PushedStream {
                labels: labels.clone(),
                lines: chunk.to_vec(),
                times: (0..chunk.len() as i64).map(|i| t0 + i).collect(),
                metadata: Vec::new(),
            }]);
            bytes += body.len();
            out.push(bytes::Bytes::from(body));
        }
    }
    let avg = bytes / out.len().max(1);
    (out, avg)
}

/// A stage counter from the server's `/metrics` (the stage's own series).
fn stage_counter(text: &str, metric: &str, stage: &str) -> u64 {
    let want = format!("stage=\"{stage}\"");
    text.lines()
        .filter(|l| {
            l.starts_with(metric)
                && l.contains(&want)
                && !l.contains("source=")
                && !l.contains("reason=")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

struct Progress {
    parse_received: u64,
    settled: bool,
}

async fn progress(client: &reqwest::Client, url: &str) -> anyhow::Result<Progress> {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let r = |m: &str, s: &str| stage_counter(&text, m, s);
    use crate::metrics::{STAGE_EMITTED as E, STAGE_RECEIVED as R};
    Ok(Progress {
        parse_received: r(R, "parse"),
        // everything parsed has been through dedupe and cluster into detect
        settled: r(R, "dedupe") == r(E, "parse") && r(R, "detect") == r(E, "dedupe"),
    })
}

pub fn run(args: LokiBench) -> anyhow::Result<ExitCode> {
    let server = match &args.url {
        Some(_) => None,
        None => Some(Server::start(&args.detectors)?),
    };
    let url = args
        .url
        .clone()
        .or_else(|| server.as_ref().map(|s| s.url.clone()))
        .unwrap_or_default();
    let (bodies, avg_bytes) = bodies(args.events, args.batch_lines);
    let bodies = Arc::new(bodies);
    let rt = super::runtime()?;
    let mut runs = Vec::new();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(args.connections.max(1))
            .timeout(Duration::from_secs(60))
            .build()?;
        for _ in 0..args.runs.max(1) {
            let before = progress(&client, &url).await?;
            let cpu0 = server.as_ref().map_or(0.0, Server::cpu_secs);
            let next = Arc::new(AtomicUsize::new(0));
            let retries = Arc::new(AtomicUsize::new(0));
            let t = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..args.connections.max(1) {
                let (client, url, bodies, next, retries) = (
                    client.clone(),
                    url.clone(),
                    bodies.clone(),
                    next.clone(),
                    retries.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = bodies.get(i) else {
                            return Ok(());
                        };
                        loop {
                            let r = client
                                .post(format!("{url}/loki/api/v1/push"))
                                .header("Content-Type", "application/x-protobuf")
                                .body(body.clone())
                                .send()
                                .await?;
                            match r.status().as_u16() {
                                204 => break,
                                503 | 429 => {
                                    retries.fetch_add(1, Ordering::Relaxed);
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                                s => anyhow::bail!(
                                    "push answered {s}: {}",
                                    r.text().await.unwrap_or_default()
                                ),
                            }
                        }
                    }
                }));
            }
            for task in tasks {
                task.await??;
            }
            let accepted = t.elapsed().as_secs_f64();
            let target = before.parse_received + args.events as u64;
            loop {
                let p = progress(&client, &url).await?;
                if p.parse_received >= target && p.settled {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let e2e = t.elapsed().as_secs_f64();
            let cpu = server.as_ref().map_or(0.0, Server::cpu_secs) - cpu0;
            runs.push(Report {
                events: args.events,
                requests: bodies.len(),
                batch_lines: args.batch_lines,
                connections: args.connections,
                request_bytes: avg_bytes,
                accepted_eps: args.events as f64 / accepted,
                end_to_end_eps: args.events as f64 / e2e,
                retries_503: retries.load(Ordering::Relaxed),
                server_cpu_secs: cpu,
                events_per_server_cpu_sec: if cpu > 0.0 {
                    args.events as f64 / cpu
                } else {
                    0.0
                },
            });
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let first = runs.first().cloned().unwrap_or_default();
    let r = Report {
        accepted_eps: median(runs.iter().map(|r| r.accepted_eps).collect()),
        end_to_end_eps: median(runs.iter().map(|r| r.end_to_end_eps).collect()),
        server_cpu_secs: median(runs.iter().map(|r| r.server_cpu_secs).collect()),
        events_per_server_cpu_sec: median(
            runs.iter().map(|r| r.events_per_server_cpu_sec).collect(),
        ),
        retries_503: runs.iter().map(|r| r.retries_503).sum(),
        ..first
    };
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "input: simulated mixed traffic via Loki push ({} events in {} snappy protobuf requests of up to {} lines, ~{} bytes each, {} connections, median of {} runs)",
            r.events,
            r.requests,
            r.batch_lines,
            r.request_bytes,
            r.connections,
            runs.len()
        );
        println!(
            "  accepted       {:>10.0} events/s (answered 204)",
            r.accepted_eps
        );
        println!(
            "  end to end     {:>10.0} events/s (first request to the last line through detect)",
            r.end_to_end_eps
        );
        if r.server_cpu_secs > 0.0 {
            println!(
                "  server CPU     {:>10.2} s per run, {:.0} events per CPU-second",
                r.server_cpu_secs, r.events_per_server_cpu_sec
            );
        }
        println!("  503 retries    {:>10} (all runs)", r.retries_503);
    }
    Ok(ExitCode::SUCCESS)
}
