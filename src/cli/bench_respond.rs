//! `threatpilot bench --respond`: event-to-action latency, and what
//! responding costs detection. Simulated traffic (with its injected
//! attacks) flows through the threaded stage graph as fast as it is read,
//! three ways in each run:
//! - without response (the baseline);
//! - with response in auto mode, the shipped playbooks, and every action
//!   sent through an HTTP connector to a local server in this process. The
//!   latency of an action is from reading the event that crossed its
//!   finding's threshold to the server receiving the request (both on the
//!   process's monotonic clock);
//! - with a connector whose server never answers and a queue of two: the
//!   actions past the queue are skipped, and detection must not slow down.

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
    /// With response acting through a responsive connector.
    events_per_sec: f64,
    events_per_sec_without_response: f64,
    events_per_sec_stuck_connector: f64,
    findings: usize,
    actions: usize,
    action_latency_p50_ms: f64,
    action_latency_p99_ms: f64,
    action_latency_max_ms: f64,
    /// Actions skipped because the stuck connector's queue was full.
    actions_skipped_stuck_connector: usize,
}

/// How response is set up in one timed pass.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Off,
    Acting,
    Stuck,
}

/// One timed pass over the input.
struct Pass {
    elapsed_secs: f64,
    findings: usize,
    latencies_ms: Vec<f64>,
    skipped: usize,
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

/// A local server that accepts connections and never answers.
async fn stuck() -> anyhow::Result<std::net::SocketAddr> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    Ok(addr)
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

fn errors(e: Vec<impl ToString>) -> anyhow::Error {
    anyhow::anyhow!(
        "{}",
        e.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// The respond section of a pass: auto mode, the shipped playbooks, every
/// action kind routed to one HTTP connector at `addr`.
fn respond_config(
    addr: std::net::SocketAddr,
    state: &std::path::Path,
    stuck: bool,
) -> anyhow::Result<crate::respond::Compiled> {
    use crate::finding::Domain;
    use crate::respond::catalogue::ActionKind;
    let requests: String = ActionKind::ALL
        .iter()
        .map(|k| {
            format!(
                "        {}: {{path: '/act/{{action_id}}', body: {{finding: '{{finding_id}}'}}}}\n",
                k.as_str()
            )
        })
        .collect();
    let routes: String = [
        ("identity", Domain::Identity),
        ("http", Domain::Http),
        ("infrastructure", Domain::Infrastructure),
    ]
    .iter()
    .map(|(name, dom)| {
        let ks: Vec<String> = ActionKind::offered_by(*dom)
            .iter()
            .map(|k| format!("{k}: bench"))
            .collect();
        format!("    {name}: {{{}}}\n", ks.join(", "))
    })
    .collect();
    let (queue, drain, timeout) = if stuck {
        (2, 0, 600_000)
    } else {
        (100_000, 30, 5_000)
    };
    let yaml = format!(
        "playbooks: [playbooks]
state_dir: {state}
queue_capacity: {queue}
drain_secs: {drain}
policy:
  modes: {{low: auto, medium: auto, high: auto, critical: auto}}
  per_target: {{max: 1000000, per_secs: 1}}
  loop_detection: {{max_repeats: 1000000, window_secs: 1}}
connectors:
  - type: http
    name: bench
    base_url: http://{addr}
    timeout_ms: {timeout}
    requests:
{requests}routes:
{routes}",
        state = state.display()
    );
    let cfg: crate::respond::RespondConfig = serde_saphyr::from_str(&yaml)?;
    crate::respond::compile(&cfg, "bench").map_err(errors)
}

/// Actions in a state folder's journal skipped for a full queue.
fn skipped_for_full_queue(state: &std::path::Path) -> usize {
    let text = std::fs::read_to_string(state.join("journal.jsonl")).unwrap_or_default();
    let mut last = HashMap::new();
    for l in text.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(l)
            && v["t"] == "action"
        {
            let id = v["v"]["action_id"].as_str().unwrap_or("").to_owned();
            last.insert(id, v["v"]["reason"].as_str().unwrap_or("").to_owned());
        }
    }
    last.values().filter(|r| r.contains("full queue")).count()
}

fn pass(
    rt: &tokio::runtime::Runtime,
    b: &RespondBench,
    input: &std::path::Path,
    state: &std::path::Path,
    mode: Mode,
) -> anyhow::Result<Pass> {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let compiled = match mode {
        Mode::Off => None,
        Mode::Acting => Some(respond_config(
            rt.block_on(receiver(arrivals.clone()))?,
            state,
            false,
        )?),
        Mode::Stuck => Some(respond_config(rt.block_on(stuck())?, state, true)?),
    };
    let mut spec = crate::pipeline::PipelineSpec::defaults("bench-respond");
    spec.detect.paths = vec![b.detectors.clone()];
    let mut st = crate::parse::SourceState::new(
        crate::parse::Format::Auto,
        crate::simulate::START_MS + 86_400_000,
    );
    st.time_domain = 0;
    let ins = vec![crate::pipeline::graph::SourceInput {
        paths: vec![input.display().to_string()],
        state: st,
        pace_lines_per_sec: None,
    }];
    let crossings = Arc::new(Mutex::new(HashMap::new()));
    let sinks = crate::pipeline::sinks::Sinks::open(Vec::new())?
        .with_subscriber(Crossings(crossings.clone()));
    let dets = crate::detect::load_dir(std::path::Path::new(&b.detectors)).map_err(errors)?;
    let summary = rt.block_on(crate::pipeline::serve::serve(
        &spec,
        ins,
        dets,
        sinks,
        compiled,
        None,
        std::future::pending(),
    ))?;
    let crossed = crossings.lock().map(|m| m.clone()).unwrap_or_default();
    let mut lat: Vec<f64> = arrivals
        .lock()
        .map(|a| {
            a.iter()
                .filter_map(|(f, at)| crossed.get(f).map(|t| at.saturating_sub(*t) as f64 / 1e6))
                .collect()
        })
        .unwrap_or_default();
    lat.sort_by(f64::total_cmp);
    Ok(Pass {
        elapsed_secs: summary.elapsed_secs,
        findings: summary.findings,
        latencies_ms: lat,
        skipped: if mode == Mode::Stuck {
            skipped_for_full_queue(state)
        } else {
            0
        },
    })
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
    let rt = super::runtime()?;
    let mut runs = Vec::new();
    for run in 0..b.runs.max(1) {
        // interleaved, so a noisy moment hurts one mode no more than another
        let off = pass(&rt, &b, &input, &dir.join(format!("off-{run}")), Mode::Off)?;
        let on = pass(
            &rt,
            &b,
            &input,
            &dir.join(format!("on-{run}")),
            Mode::Acting,
        )?;
        let stuck = pass(
            &rt,
            &b,
            &input,
            &dir.join(format!("stuck-{run}")),
            Mode::Stuck,
        )?;
        if off.findings != on.findings || off.findings != stuck.findings {
            anyhow::bail!(
                "findings differ with response: {} without, {} acting, {} stuck",
                off.findings,
                on.findings,
                stuck.findings
            );
        }
        let lat = &on.latencies_ms;
        let rate = |p: &Pass| lines.len() as f64 / p.elapsed_secs;
        runs.push(Report {
            events: lines.len(),
            events_per_sec: rate(&on),
            events_per_sec_without_response: rate(&off),
            events_per_sec_stuck_connector: rate(&stuck),
            findings: on.findings,
            actions: lat.len(),
            action_latency_p50_ms: pct(lat, 0.5),
            action_latency_p99_ms: pct(lat, 0.99),
            action_latency_max_ms: lat.last().copied().unwrap_or(0.0),
            actions_skipped_stuck_connector: stuck.skipped,
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    let pick = |f: fn(&Report) -> f64| median(runs.iter().map(f).collect());
    let mut m = runs[0].clone();
    m.events_per_sec = pick(|r| r.events_per_sec);
    m.events_per_sec_without_response = pick(|r| r.events_per_sec_without_response);
    m.events_per_sec_stuck_connector = pick(|r| r.events_per_sec_stuck_connector);
    m.action_latency_p50_ms = pick(|r| r.action_latency_p50_ms);
    m.action_latency_p99_ms = pick(|r| r.action_latency_p99_ms);
    m.action_latency_max_ms = pick(|r| r.action_latency_max_ms);
    if b.json {
        println!("{}", serde_json::to_string(&m)?);
    } else {
        let ratio = |x: f64| x / m.events_per_sec_without_response.max(1.0);
        println!(
            "respond: {} simulated events, {} findings, {} actions executed over HTTP (auto mode), median of {} runs",
            m.events,
            m.findings,
            m.actions,
            runs.len()
        );
        println!(
            "  event to action: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            m.action_latency_p50_ms, m.action_latency_p99_ms, m.action_latency_max_ms
        );
        println!(
            "  detection: {:.0} events/s without response, {:.0} acting ({:.2}x), {:.0} with a connector that never answers ({:.2}x; {} actions skipped for its full queue)",
            m.events_per_sec_without_response,
            m.events_per_sec,
            ratio(m.events_per_sec),
            m.events_per_sec_stuck_connector,
            ratio(m.events_per_sec_stuck_connector),
            m.actions_skipped_stuck_connector
        );
    }
    Ok(ExitCode::SUCCESS)
}
