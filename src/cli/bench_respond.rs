//! `threatpilot bench --respond`: event-to-action latency. Simulated
//! traffic (with its injected attacks) flows through the threaded stage
//! graph as fast as it is read, response runs in auto mode with the
//! shipped playbooks, and every action goes through an HTTP connector to a
//! local server in this process. The latency of an action is from reading
//! the event that crossed its finding's threshold to the server receiving
//! the request (both on the process's monotonic clock).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use super::bench::median;
use crate::finding::{Finding, Status};
use crate::flow::mono_ns;
use crate::hub::Subscriber;
use crate::simulate::{SimConfig, generate};

pub struct RespondBench {
    pub events: usize,
    pub runs: usize,
    pub detectors: String,
    pub json: bool,
}

#[derive(serde::Serialize, Default, Clone)]
struct Report {
    events: usize,
    events_per_sec: f64,
    findings: usize,
    actions: usize,
    action_latency_p50_ms: f64,
    action_latency_p99_ms: f64,
    action_latency_max_ms: f64,
}

/// Remembers when each finding's crossing event was read.
struct Crossings(Arc<Mutex<HashMap<String, u64>>>);

impl Subscriber for Crossings {
    fn accept(&mut self, f: &Arc<Finding>) {
        if f.status == Status::Open
            && let Ok(mut m) = self.0.lock()
        {
            m.insert(f.finding_id.clone(), f.trigger_read_ns);
        }
    }
}

/// A local HTTP server that notes when each action's request arrives.
async fn receiver(
    arrivals: Arc<Mutex<Vec<(String, u64)>>>,
) -> anyhow::Result<std::net::SocketAddr> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(s);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let at = mono_ns();
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let finding = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["finding"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    if let Ok(mut a) = arrivals.lock() {
                        a.push((finding, at));
                    }
                    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if r.get_mut().write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn pct(v: &[f64], p: f64) -> f64 {
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

pub fn run(b: RespondBench) -> anyhow::Result<ExitCode> {
    let (sim, _) = generate(&SimConfig {
        events: b.events,
        seed: 7,
        events_per_sec: 500.0,
    });
    let lines: Vec<String> = sim.into_iter().map(|l| l.text).collect();
    let dir =
        std::env::temp_dir().join(format!("threatpilot-bench-respond-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("input.log");
    std::fs::write(&input, lines.join("\n"))?;
    let mut runs = Vec::new();
    let rt = super::runtime()?;
    for run in 0..b.runs.max(1) {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let addr = rt.block_on(receiver(arrivals.clone()))?;
        let state = dir.join(format!("state-{run}"));
        let kinds: Vec<&str> = crate::respond::catalogue::ActionKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect();
        let requests: String = kinds
            .iter()
            .map(|k| format!("        {k}: {{path: '/act/{{action_id}}', body: {{finding: '{{finding_id}}'}}}}\n"))
            .collect();
        let routes: String = ["identity", "http", "infrastructure"]
            .iter()
            .map(|d| {
                let dom = match *d {
                    "identity" => crate::finding::Domain::Identity,
                    "http" => crate::finding::Domain::Http,
                    _ => crate::finding::Domain::Infrastructure,
                };
                let ks: Vec<String> = crate::respond::catalogue::ActionKind::offered_by(dom)
                    .iter()
                    .map(|k| format!("{k}: bench"))
                    .collect();
                format!("    {d}: {{{}}}\n", ks.join(", "))
            })
            .collect();
        let yaml = format!(
            "playbooks: [playbooks]
state_dir: {state}
queue_capacity: 100000
policy:
  modes: {{low: auto, medium: auto, high: auto, critical: auto}}
  per_target: {{max: 1000000, per_secs: 1}}
  loop_detection: {{max_repeats: 1000000, window_secs: 1}}
connectors:
  - type: http
    name: bench
    base_url: http://{addr}
    requests:
{requests}routes:
{routes}",
            state = state.display()
        );
        let cfg: crate::respond::RespondConfig = serde_saphyr::from_str(&yaml)?;
        let compiled = crate::respond::compile(&cfg, "bench").map_err(|e| {
            anyhow::anyhow!(
                "{}",
                e.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
        let mut spec = crate::pipeline::PipelineSpec::defaults("bench-respond");
        spec.detect.paths = vec![b.detectors.clone()];
        let mut st = crate::parse::SourceState::new(
            crate::parse::Format::Auto,
            crate::simulate::START_MS + 86_400_000,
        );
        st.time_domain = 0;
        let ins = vec![crate::pipeline::graph::SourceInput {
            path: Some(input.display().to_string()),
            state: st,
            pace_lines_per_sec: None,
        }];
        let crossings = Arc::new(Mutex::new(HashMap::new()));
        let sinks = crate::pipeline::sinks::Sinks::open(Vec::new())?
            .with_subscriber(Crossings(crossings.clone()));
        let dets = crate::detect::load_dir(std::path::Path::new(&b.detectors)).map_err(|e| {
            anyhow::anyhow!(
                "{}",
                e.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
        let summary = rt.block_on(crate::pipeline::serve::serve(
            &spec,
            ins,
            dets,
            sinks,
            Some(compiled),
            std::future::pending(),
        ))?;
        let crossed = crossings.lock().map(|m| m.clone()).unwrap_or_default();
        let mut lat: Vec<f64> = arrivals
            .lock()
            .map(|a| {
                a.iter()
                    .filter_map(|(f, at)| {
                        crossed.get(f).map(|t| at.saturating_sub(*t) as f64 / 1e6)
                    })
                    .collect()
            })
            .unwrap_or_default();
        lat.sort_by(f64::total_cmp);
        runs.push(Report {
            events: lines.len(),
            events_per_sec: lines.len() as f64 / summary.elapsed_secs,
            findings: summary.findings,
            actions: lat.len(),
            action_latency_p50_ms: pct(&lat, 0.5),
            action_latency_p99_ms: pct(&lat, 0.99),
            action_latency_max_ms: lat.last().copied().unwrap_or(0.0),
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    let pick = |f: fn(&Report) -> f64| median(runs.iter().map(f).collect());
    let mut m = runs[0].clone();
    m.events_per_sec = pick(|r| r.events_per_sec);
    m.action_latency_p50_ms = pick(|r| r.action_latency_p50_ms);
    m.action_latency_p99_ms = pick(|r| r.action_latency_p99_ms);
    m.action_latency_max_ms = pick(|r| r.action_latency_max_ms);
    if b.json {
        println!("{}", serde_json::to_string(&m)?);
    } else {
        println!(
            "respond: {} simulated events through the stage graph at {:.0} events/s, {} findings, {} actions executed over HTTP (auto mode, median of {} runs)",
            m.events,
            m.events_per_sec,
            m.findings,
            m.actions,
            runs.len()
        );
        println!(
            "  event to action: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            m.action_latency_p50_ms, m.action_latency_p99_ms, m.action_latency_max_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}
