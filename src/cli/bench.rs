//! `threatpilot bench [--json]`: simulated (or replicated real) traffic
//! through the whole in-process pipeline with every shipped detector.
//!
//! Reports events/s per stage on one core (each stage timed alone on the
//! previous stage's output), end to end on one core (all stages inline on
//! one thread), and through the threaded stage graph, with finding latency
//! (reading the crossing event to emitting its finding) and peak memory.
//! Each figure is the median of `--runs` runs.

use std::process::ExitCode;
use std::time::Instant;

use serde::Serialize;

use crate::cluster::Clusterer;
use crate::dedupe::Deduper;
use crate::detect::{Engine, EngineConfig};
use crate::parse::{Format, SourceState, parse_line_of};
use crate::simulate::{SimConfig, generate};

#[derive(clap::Args)]
pub struct Args {
    /// Events to run.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Replicate these real log files (varying addresses) instead of simulating.
    #[arg(long, num_args = 1..)]
    replicate: Vec<String>,
    #[arg(long, default_value = "detectors")]
    detectors: String,
    /// Folder of Sigma rules to run with the detectors (repeatable).
    #[arg(long)]
    sigma: Vec<String>,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long)]
    json: bool,
    /// Rate for the latency run: events fed to the stage graph per second.
    #[arg(long, default_value_t = 100_000.0)]
    latency_rate: f64,
    /// Measure through a real JetStream server instead (publish, consume,
    /// detect, publish findings, acknowledge).
    #[arg(long)]
    nats: bool,
    /// Server for --nats (default: a private nats-server started for the run).
    #[arg(long)]
    nats_url: Option<String>,
    /// Log lines per NATS message for --nats.
    #[arg(long, default_value_t = 100)]
    lines_per_message: usize,
    /// Measure Loki push ingestion instead: this process generates the
    /// load, a `threatpilot run` process ingests it.
    #[arg(long)]
    loki: bool,
    /// Push to this running pipeline for --loki (default: one started here).
    #[arg(long)]
    loki_url: Option<String>,
    /// Lines per push request for --loki.
    #[arg(long, default_value_t = 1000)]
    batch_lines: usize,
    /// Concurrent connections for --loki.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Measure rows/s inserted into this ClickHouse instead (a scratch
    /// database, dropped after).
    #[arg(long)]
    clickhouse_url: Option<String>,
    /// Rows per insert for --clickhouse-url, per index commit for --search.
    #[arg(long, default_value_t = 50_000)]
    batch_rows: usize,
    /// Measure the embedded store's search indexing instead (events/s,
    /// bytes per event) and query times over the result.
    #[arg(long)]
    search: bool,
    /// Measure event-to-action latency instead: the stage graph flooded
    /// with simulated traffic, response in auto mode with the shipped
    /// playbooks, every action through an HTTP connector to a local server.
    #[arg(long)]
    respond: bool,
    /// Measure the daily report instead: a day of --events findings in a
    /// scratch embedded store, reported (gather and render times).
    #[arg(long)]
    report: bool,
    /// Measure the notify outbox instead: a storm of --events incident
    /// updates, then deliveries to a local webhook receiver.
    #[arg(long)]
    notify: bool,
    /// Time `threatpilot replay` as a whole process over these files
    /// instead (each copied --copies times with varied addresses): lines
    /// per CPU-second, wall time and peak RSS.
    #[arg(long, num_args = 1..)]
    replay: Vec<String>,
    /// Copies of each --replay file, each a file of its own.
    #[arg(long, default_value_t = 1)]
    copies: usize,
    /// Time the console's pages instead, with --console-findings findings
    /// held by a running pipeline (--runs GETs of each page).
    #[arg(long)]
    console: bool,
    #[arg(long, default_value_t = 100_000)]
    console_findings: usize,
}

#[derive(Serialize, Default, Clone)]
struct Report {
    input: String,
    events: usize,
    detectors: usize,
    parse_eps: f64,
    dedupe_eps: f64,
    cluster_eps: f64,
    detect_eps: f64,
    end_to_end_one_core_eps: f64,
    graph_eps: f64,
    findings: usize,
    /// Flooded from a file as fast as it reads: queueing, not latency.
    flood_latency_p50_ms: f64,
    flood_latency_p99_ms: f64,
    /// Fed at `latency_rate` events/s, as a live stream.
    latency_rate: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    peak_rss_mib: f64,
    templates: usize,
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Lines of real logs repeated to `n`, with IPv4 addresses varied per copy.
fn replicate(files: &[String], n: usize) -> anyhow::Result<Vec<String>> {
    let mut base = Vec::new();
    for f in files {
        base.extend(
            std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("cannot read {f}: {e}"))?
                .lines()
                .map(str::to_owned),
        );
    }
    anyhow::ensure!(!base.is_empty(), "no lines to replicate");
    let ip = regex::Regex::new(r"\b(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\b")?;
    let mut out = Vec::with_capacity(n);
    let mut copy = 0usize;
    while out.len() < n {
        for l in &base {
            if out.len() >= n {
                break;
            }
            if copy == 0 {
                out.push(l.clone());
            } else {
                let c = copy;
                out.push(
                    ip.replace_all(l, |caps: &regex::Captures| {
                        format!(
                            "{}.{}.{}.{}",
                            10 + (c >> 16) % 200,
                            (c >> 8) & 255,
                            c & 255,
                            &caps[4]
                        )
                    })
                    .into_owned(),
                );
            }
        }
        copy += 1;
    }
    Ok(out)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.nats {
        return super::bench_nats::run(super::bench_nats::NatsBench {
            events: args.events,
            runs: args.runs,
            detectors: args.detectors,
            url: args.nats_url,
            lines_per_message: args.lines_per_message,
            json: args.json,
        });
    }
    if let Some(url) = args.clickhouse_url {
        return super::bench_clickhouse::run(super::bench_clickhouse::ClickhouseBench {
            events: args.events,
            runs: args.runs,
            url,
            batch_rows: args.batch_rows,
            json: args.json,
        });
    }
    if args.console {
        return super::bench_console::run(super::bench_console::ConsoleBench {
            findings: args.console_findings,
            runs: args.runs,
            detectors: args.detectors,
            json: args.json,
        });
    }
    if !args.replay.is_empty() {
        return super::bench_replay::run(super::bench_replay::ReplayBench {
            files: args.replay,
            copies: args.copies,
            runs: args.runs,
            detectors: args.detectors,
            sigma: args.sigma,
            json: args.json,
        });
    }
    if args.report || args.notify {
        let b = super::bench_outputs::OutputsBench {
            events: args.events,
            runs: args.runs,
            json: args.json,
        };
        return if args.report {
            super::bench_outputs::report(b)
        } else {
            super::bench_outputs::notify(b)
        };
    }
    if args.respond {
        return super::bench_respond::run(super::bench_respond::RespondBench {
            events: args.events,
            runs: args.runs,
            detectors: args.detectors,
            json: args.json,
        });
    }
    if args.search {
        return super::bench_search::run(super::bench_search::SearchBench {
            events: args.events,
            runs: args.runs,
            batch_rows: args.batch_rows,
            json: args.json,
        });
    }
    if args.loki {
        return super::bench_loki::run(super::bench_loki::LokiBench {
            events: args.events,
            runs: args.runs,
            detectors: args.detectors,
            url: args.loki_url,
            batch_lines: args.batch_lines,
            connections: args.connections,
            json: args.json,
        });
    }
    let (lines, input): (Vec<String>, String) = if args.replicate.is_empty() {
        let (sim, _) = generate(&SimConfig {
            events: args.events,
            seed: 7,
            events_per_sec: 500.0,
        });
        (
            sim.into_iter().map(|l| l.text).collect(),
            "simulated mixed traffic (sshd, nginx, JSON app, kernel)".into(),
        )
    } else {
        (
            replicate(&args.replicate, args.events)?,
            format!("replicated: {}", args.replicate.join(", ")),
        )
    };
    // loaded once, cloned for each run, so no timing includes reading files
    let loaded = crate::detect::load_dir(std::path::Path::new(&args.detectors)).map_err(|e| {
        anyhow::anyhow!(
            "{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let mut loaded = loaded;
    if !args.sigma.is_empty() {
        let load = crate::detect::sigma::load_dirs(&args.sigma)?;
        eprintln!(
            "sigma: {} loaded, {} unsupported",
            load.loaded,
            load.refused.len()
        );
        loaded.extend(load.detectors);
    }
    let detectors = || loaded.clone();
    let n_detectors = loaded.len();
    let mut spec = crate::pipeline::PipelineSpec::defaults("bench");
    if !args.replicate.is_empty() {
        // replicas repeat the same timestamps; evaluate them all instead of dropping them as late
        spec.detect.allowed_lateness_secs = 10 * 365 * 86_400;
    }
    let engine_cfg = EngineConfig {
        allowed_lateness_ms: spec.detect.allowed_lateness_secs as i64 * 1000,
        ..EngineConfig::default()
    };
    let n = lines.len() as f64;
    let mut runs: Vec<Report> = Vec::new();
    for _ in 0..args.runs.max(1) {
        let mut r = Report {
            input: input.clone(),
            events: lines.len(),
            detectors: n_detectors,
            ..Report::default()
        };
        // parse
        let t = Instant::now();
        let mut state = SourceState::new(Format::Auto, crate::simulate::START_MS + 86_400_000);
        let mut events = Vec::with_capacity(lines.len());
        let now = crate::time::now_ms();
        // in batches, as readers hand them over: the events share their buffer
        for chunk in lines.chunks(spec.batch_size.max(1)) {
            let chunk: crate::flow::Lines = chunk.iter().collect();
            for (l, original) in chunk.into_shared().iter() {
                parse_line_of(l, original, &mut state, now, &mut events);
            }
        }
        r.parse_eps = n / t.elapsed().as_secs_f64();
        // dedupe, batch by batch
        let t = Instant::now();
        let mut d = Deduper::new(1000, 100_000);
        let mut deduped = Vec::with_capacity(events.len());
        let mut batch = Vec::with_capacity(1024);
        let mut it = events.into_iter().peekable();
        while it.peek().is_some() {
            batch.extend(it.by_ref().take(1024));
            d.process(&mut batch);
            deduped.append(&mut batch);
        }
        r.dedupe_eps = n / t.elapsed().as_secs_f64();
        // cluster
        let t = Instant::now();
        let mut c = Clusterer::new(spec.transforms.cluster.clone());
        c.process(&mut deduped);
        r.cluster_eps = deduped.len() as f64 / t.elapsed().as_secs_f64();
        r.templates = c.template_count();
        // detect
        let dets = detectors();
        let t = Instant::now();
        let mut engine = Engine::new(dets, engine_cfg.clone());
        let mut findings = Vec::new();
        for ev in &deduped {
            engine.process(ev, &mut findings);
        }
        engine.flush(&mut findings);
        r.detect_eps = deduped.len() as f64 / t.elapsed().as_secs_f64();
        drop(deduped);
        // end to end on one thread
        let mut inputs = vec![(
            SourceState::new(Format::Auto, crate::simulate::START_MS + 86_400_000),
            lines.clone(),
        )];
        let dets = detectors();
        let t = Instant::now();
        let versions = crate::pipeline::run_inline(&spec, &mut inputs, dets, crate::time::now_ms());
        r.end_to_end_one_core_eps = n / t.elapsed().as_secs_f64();
        r.findings = crate::pipeline::graph::final_states(versions).len();
        // threaded graph from a file
        let dir = std::env::temp_dir().join(format!("threatpilot-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("input.log");
        std::fs::write(&path, lines.join("\n"))?;
        let mut state = SourceState::new(Format::Auto, crate::simulate::START_MS + 86_400_000);
        state.time_domain = 0;
        let ins = vec![crate::pipeline::graph::SourceInput {
            paths: vec![path.display().to_string()],
            state,
            pace_lines_per_sec: None,
        }];
        let sinks =
            crate::pipeline::sinks::Sinks::open(vec![crate::pipeline::config::SinkConfig::File {
                path: dir.join("findings.jsonl").display().to_string(),
            }])?;
        let rt = super::runtime()?;
        let summary = rt.block_on(crate::pipeline::run(&spec, ins, detectors(), sinks))?;
        r.graph_eps = n / summary.elapsed_secs;
        r.flood_latency_p50_ms = summary.latency_p50_ms;
        r.flood_latency_p99_ms = summary.latency_p99_ms;
        // latency: the same stream fed at a steady rate (at most 3 s of it)
        let paced_lines = lines.len().min((args.latency_rate * 3.0) as usize);
        std::fs::write(&path, lines[..paced_lines].join("\n"))?;
        let state = SourceState::new(Format::Auto, crate::simulate::START_MS + 86_400_000);
        let ins = vec![crate::pipeline::graph::SourceInput {
            paths: vec![path.display().to_string()],
            state,
            pace_lines_per_sec: Some(args.latency_rate),
        }];
        let sinks =
            crate::pipeline::sinks::Sinks::open(vec![crate::pipeline::config::SinkConfig::File {
                path: dir.join("paced.jsonl").display().to_string(),
            }])?;
        let mut paced_spec = spec.clone();
        paced_spec.batch_size = 256;
        let summary = rt.block_on(crate::pipeline::run(&paced_spec, ins, detectors(), sinks))?;
        r.latency_rate = args.latency_rate;
        r.latency_p50_ms = summary.latency_p50_ms;
        r.latency_p99_ms = summary.latency_p99_ms;
        let _ = std::fs::remove_dir_all(&dir);
        r.peak_rss_mib = crate::cli_support::peak_rss_mib();
        runs.push(r);
    }
    let pick = |f: fn(&Report) -> f64| median(runs.iter().map(f).collect());
    let mut m = runs[0].clone();
    m.parse_eps = pick(|r| r.parse_eps);
    m.dedupe_eps = pick(|r| r.dedupe_eps);
    m.cluster_eps = pick(|r| r.cluster_eps);
    m.detect_eps = pick(|r| r.detect_eps);
    m.end_to_end_one_core_eps = pick(|r| r.end_to_end_one_core_eps);
    m.graph_eps = pick(|r| r.graph_eps);
    m.flood_latency_p50_ms = pick(|r| r.flood_latency_p50_ms);
    m.flood_latency_p99_ms = pick(|r| r.flood_latency_p99_ms);
    m.latency_p50_ms = pick(|r| r.latency_p50_ms);
    m.latency_p99_ms = pick(|r| r.latency_p99_ms);
    m.peak_rss_mib = runs.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&m)?);
    } else {
        println!(
            "input: {} ({} events, {} detectors, median of {} runs)",
            m.input,
            m.events,
            m.detectors,
            runs.len()
        );
        println!(
            "  parse            {:>12.0} events/s (one core)",
            m.parse_eps
        );
        println!(
            "  dedupe           {:>12.0} events/s (one core)",
            m.dedupe_eps
        );
        println!(
            "  cluster          {:>12.0} events/s (one core)",
            m.cluster_eps
        );
        println!(
            "  detect           {:>12.0} events/s (one core)",
            m.detect_eps
        );
        println!(
            "  end to end       {:>12.0} events/s (one core, all stages inline)",
            m.end_to_end_one_core_eps
        );
        println!(
            "  stage graph      {:>12.0} events/s (tasks on 2 threads, from a file)",
            m.graph_eps
        );
        println!(
            "  finding latency at {:.0} events/s: p50 {:.1} ms, p99 {:.1} ms (flooded: p50 {:.0} ms, p99 {:.0} ms of queueing)",
            m.latency_rate,
            m.latency_p50_ms,
            m.latency_p99_ms,
            m.flood_latency_p50_ms,
            m.flood_latency_p99_ms
        );
        println!(
            "  findings {}, templates {}, peak RSS {:.0} MiB (the benchmark holds its input and every stage's output in memory)",
            m.findings, m.templates, m.peak_rss_mib
        );
    }
    Ok(ExitCode::SUCCESS)
}
