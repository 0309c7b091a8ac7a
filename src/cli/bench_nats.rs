//! `threatpilot bench --nats`: simulated traffic end to end through a real
//! JetStream server, and where the time goes.
//!
//! Three measurements per run, each on fresh streams:
//! - publish: the traffic into the input stream (pipelined, acknowledged);
//! - consume: a worker over the filled stream (fetch, parse, dedupe,
//!   cluster, detect, publish findings, checkpoint, acknowledge);
//! - end to end: publisher and worker at once, from the first publish to
//!   the worker having handled the last message.
//!
//! Without `--nats-url` a private nats-server (from `NATS_SERVER_BIN` or the
//! PATH) is started in a temporary directory on an ephemeral port.

use std::collections::BTreeMap;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;

use super::bench::median;
use crate::detect::Detector;
use crate::nats::config::{NatsSinkConfig, NatsSourceConfig};
use crate::nats::sink::{Outgoing, Publisher};
use crate::nats::source::BATCH_HEADER;
use crate::nats::{WorkerOptions, run_worker};
use crate::pipeline::PipelineSpec;
use crate::pipeline::config::{SinkConfig, SourceConfig};
use crate::pipeline::sinks::Sinks;
use crate::simulate::{SimConfig, Stream, generate};

pub struct NatsBench {
    pub events: usize,
    pub runs: usize,
    pub detectors: String,
    pub url: Option<String>,
    pub lines_per_message: usize,
    pub json: bool,
}

#[derive(serde::Serialize, Default, Clone)]
struct Report {
    events: usize,
    messages: usize,
    lines_per_message: usize,
    detectors: usize,
    publish_eps: f64,
    consume_eps: f64,
    end_to_end_eps: f64,
    findings: u64,
}

/// A nats-server of our own, stopped on drop.
struct PrivateServer {
    child: Child,
    dir: std::path::PathBuf,
    url: String,
}

impl PrivateServer {
    fn start() -> anyhow::Result<PrivateServer> {
        let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("threatpilot-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("store"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot start {bin} ({e}); install nats-server-bin or pass --nats-url"
                )
            })?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(PrivateServer {
            child,
            dir,
            url: format!("nats://127.0.0.1:{port}"),
        })
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn subject(s: Stream) -> &'static str {
    match s {
        Stream::Sshd => "logs.sshd.bastion-1",
        Stream::Nginx => "logs.nginx.web-1",
        Stream::App => "logs.app.api-1",
        Stream::Kernel => "logs.kernel.node-1",
    }
}

/// The traffic as messages of up to `per` lines, per source in event order.
fn messages(events: usize, per: usize) -> Vec<Outgoing> {
    let (lines, _) = generate(&SimConfig {
        events,
        seed: 7,
        events_per_sec: 500.0,
    });
    let mut by: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for l in lines {
        by.entry(subject(l.stream)).or_default().push(l.text);
    }
    let mut out = Vec::new();
    for (subj, lines) in by {
        for (i, chunk) in lines.chunks(per.max(1)).enumerate() {
            let mut headers = HeaderMap::new();
            headers.insert(BATCH_HEADER, "lines");
            out.push(Outgoing {
                subject: subj.into(),
                id: format!("bench.{subj}.{i}"),
                headers,
                payload: Bytes::from(chunk.join("\n")),
            });
        }
    }
    out
}

fn spec(url: &str, detectors: &str) -> PipelineSpec {
    let mut spec = PipelineSpec::defaults("bench-nats");
    let mut src = NatsSourceConfig::with_url("bench", url);
    src.stream = "THREATPILOT_BENCH".into();
    src.consumer = "bench".into();
    src.checkpoint_bucket = "threatpilot-bench-checkpoints".into();
    src.dead_letter_prefix = "threatpilot.bench.deadletter".into();
    spec.sources = vec![SourceConfig::Nats(src)];
    spec.sinks = vec![SinkConfig::Nats(NatsSinkConfig {
        subject_prefix: "threatpilot.bench.findings".into(),
        stream: "THREATPILOT_BENCH_FINDINGS".into(),
    })];
    spec.detect.paths = vec![detectors.into()];
    spec
}

/// Removes the bench's streams and checkpoints (a fresh start per measurement).
async fn reset(js: &jetstream::Context) {
    for s in [
        "THREATPILOT_BENCH",
        "THREATPILOT_BENCH_DEADLETTER",
        "THREATPILOT_BENCH_FINDINGS",
    ] {
        let _ = js.delete_stream(s).await;
    }
    let _ = js
        .delete_object_store("threatpilot-bench-checkpoints")
        .await;
}

/// Creates the input stream the way the worker does, so publishing can start first.
async fn create_input(js: &jetstream::Context, spec: &PipelineSpec) -> anyhow::Result<()> {
    let Some(SourceConfig::Nats(src)) = spec.sources.first() else {
        anyhow::bail!("bench pipeline without a nats source");
    };
    crate::nats::source::ensure_stream(js, crate::nats::source::input_stream(src)).await?;
    Ok(())
}

/// Runs a worker until the stream is drained; returns its summary and when it began.
async fn worker(
    spec: &PipelineSpec,
    detectors: &[Detector],
) -> anyhow::Result<(crate::nats::WorkerSummary, Instant)> {
    let began = Instant::now();
    let summary = run_worker(
        spec,
        detectors.to_vec(),
        Sinks::open(Vec::new())?,
        WorkerOptions {
            until_idle: Some(Duration::from_millis(500)),
            ..WorkerOptions::default()
        },
    )
    .await?;
    Ok((summary, began))
}

pub fn run(args: NatsBench) -> anyhow::Result<ExitCode> {
    let private = match &args.url {
        Some(_) => None,
        None => Some(PrivateServer::start()?),
    };
    let url = args
        .url
        .clone()
        .or_else(|| private.as_ref().map(|p| p.url.clone()))
        .unwrap_or_default();
    // compiled once: each measurement gets a copy, outside its timed region
    let loaded = crate::detect::load_dir(std::path::Path::new(&args.detectors))
        .map_err(|_| anyhow::anyhow!("detectors under {} are invalid", args.detectors))?;
    let rt = super::runtime()?;
    let spec = spec(&url, &args.detectors);
    let mut runs = Vec::new();
    rt.block_on(async {
        let client = crate::nats::connect(&url, "threatpilot-bench").await?;
        let js = jetstream::new(client);
        // generated once; every measurement starts from fresh streams
        let msgs = messages(args.events, args.lines_per_message);
        for _ in 0..args.runs.max(1) {
            let n_msgs = msgs.len();
            let events: usize = msgs
                .iter()
                .map(|m| m.payload.iter().filter(|b| **b == b'\n').count() + 1)
                .sum();

            // publish alone, then consume alone
            reset(&js).await;
            create_input(&js, &spec).await?;
            let publisher = Publisher::new(js.clone());
            let t = Instant::now();
            for chunk in msgs.chunks(4096) {
                publisher.publish_all(chunk.to_vec()).await?;
            }
            let publish_secs = t.elapsed().as_secs_f64();
            let (consumed, _) = worker(&spec, &loaded).await?;

            // both at once: the live path
            reset(&js).await;
            create_input(&js, &spec).await?;
            let t = Instant::now();
            let feed = {
                let publisher = publisher.clone();
                let msgs = msgs.clone();
                tokio::spawn(async move {
                    let mut it = msgs.into_iter().peekable();
                    while it.peek().is_some() {
                        let chunk: Vec<Outgoing> = it.by_ref().take(4096).collect();
                        publisher.publish_all(chunk).await?;
                    }
                    Ok::<_, crate::nats::NatsError>(())
                })
            };
            let (live, began) = worker(&spec, &loaded).await?;
            feed.await??;
            // from the first publish to the worker handling the last message
            let e2e = (began - t).as_secs_f64() + live.busy_secs;
            anyhow::ensure!(
                live.counters.events as usize == events
                    && consumed.counters.events as usize == events,
                "the worker saw {} and {} of {events} events",
                consumed.counters.events,
                live.counters.events
            );
            runs.push(Report {
                events,
                messages: n_msgs,
                lines_per_message: args.lines_per_message,
                detectors: loaded.len(),
                publish_eps: events as f64 / publish_secs,
                consume_eps: events as f64 / consumed.busy_secs.max(1e-9),
                end_to_end_eps: events as f64 / e2e.max(1e-9),
                findings: live.counters.findings_published,
            });
        }
        reset(&js).await;
        Ok::<_, anyhow::Error>(())
    })?;
    let first = runs.first().cloned().unwrap_or_default();
    let r = Report {
        publish_eps: median(runs.iter().map(|r| r.publish_eps).collect()),
        consume_eps: median(runs.iter().map(|r| r.consume_eps).collect()),
        end_to_end_eps: median(runs.iter().map(|r| r.end_to_end_eps).collect()),
        ..first
    };
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "input: simulated mixed traffic via JetStream ({} events in {} messages of up to {} lines, {} detectors, median of {} runs)",
            r.events,
            r.messages,
            r.lines_per_message,
            r.detectors,
            runs.len()
        );
        println!(
            "  publish        {:>10.0} events/s (pipelined, acknowledged)",
            r.publish_eps
        );
        println!(
            "  consume        {:>10.0} events/s (fetch, all stages, findings published, checkpoint, ack)",
            r.consume_eps
        );
        println!(
            "  end to end     {:>10.0} events/s (publisher and worker at once)",
            r.end_to_end_eps
        );
        println!("  findings       {:>10}", r.findings);
    }
    Ok(ExitCode::SUCCESS)
}
