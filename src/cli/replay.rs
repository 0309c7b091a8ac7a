//! `threatpilot replay FILE...`: findings as JSON lines on stdout (each in its
//! final state; `--updates` for every version), a summary on stderr. Each
//! file is its own source with its own event-time progress, except that the
//! files of a rotation set (`auth.log.2.gz auth.log.1 auth.log`) are one,
//! read oldest first (see [`crate::rotation`]).
//!
//! `threatpilot run --pipeline FILE`: the same graph from a pipeline file.

use std::process::ExitCode;

use anyhow::Context;

use crate::parse::{Format, SourceState};
use crate::pipeline::config::{SinkConfig, SourceConfig};
use crate::pipeline::sinks::Sinks;
use crate::pipeline::{PipelineSpec, RunSummary, inputs};

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Log files to replay (`-` for stdin).
    #[arg(required = true)]
    files: Vec<String>,
    /// Print every version of each finding as it is emitted.
    #[arg(long)]
    updates: bool,
    /// Folder of detector files.
    #[arg(long, default_value = "detectors")]
    detectors: String,
    /// Folder of Sigma rules to run as well (repeatable).
    #[arg(long)]
    sigma: Vec<String>,
    /// Instant that year-less timestamps are placed before (RFC 3339; default now).
    #[arg(long)]
    reference_time: Option<String>,
    /// Replay each file at this many lines per second instead of as fast as possible.
    #[arg(long)]
    lines_per_sec: Option<f64>,
    /// Also correlate findings into incidents and plan actions with the
    /// playbooks (nothing executes); findings, incidents and actions are
    /// printed as JSON lines with a "type".
    #[arg(long)]
    respond: bool,
    /// Folder of playbook files (with --respond).
    #[arg(long, default_value = "playbooks")]
    playbooks: String,
    /// A policy file whose modes decide (with --respond); without it every
    /// action is observed only.
    #[arg(long)]
    policy: Option<String>,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Pipeline file.
    #[arg(long)]
    pipeline: String,
    /// NATS server URL for a nats pipeline (default: the file's, or THREATPILOT_NATS_URL).
    #[arg(long)]
    nats_url: Option<String>,
    /// Partitions this worker owns, for a partitioned nats pipeline (e.g. `0,2`).
    #[arg(long, value_delimiter = ',')]
    partitions: Vec<u32>,
    /// Stop a nats worker once the stream is drained and idle this many
    /// seconds, resolving open windows (batch use).
    #[arg(long)]
    until_idle_secs: Option<f64>,
}

fn reference(arg: Option<&str>) -> anyhow::Result<i64> {
    match arg {
        Some(t) => crate::time::parse_rfc3339(t.as_bytes())
            .map(|x| x.0)
            .with_context(|| format!("invalid --reference-time {t:?}")),
        None => Ok(crate::time::now_ms()),
    }
}

pub fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut spec = PipelineSpec::defaults("replay");
    spec.detect.paths = vec![args.detectors.clone()];
    spec.detect.sigma = args.sigma.clone();
    // files are bounded: a jump back in time (rotated logs in any order)
    // starts a new segment rather than losing what follows as late
    spec.detect.out_of_order = crate::pipeline::config::OutOfOrder::Segment;
    // as fast as the files read, throughput first; a paced replay stands
    // in for a live stream and keeps a live pipeline's batches
    if args.lines_per_sec.is_none() {
        spec.batch_size = PipelineSpec::REPLAY_BATCH;
    }
    spec.sinks = if args.respond {
        Vec::new()
    } else {
        vec![SinkConfig::Stdout {
            updates: args.updates,
        }]
    };
    if args.respond {
        spec.respond = Some(crate::respond::RespondConfig {
            playbooks: vec![args.playbooks.clone()],
            policy_file: args.policy.clone(),
            ..crate::respond::RespondConfig::default()
        });
    }
    let reference = reference(args.reference_time.as_deref())?;
    let mut ins = Vec::new();
    for (i, set) in crate::rotation::streams(&args.files)
        .into_iter()
        .enumerate()
    {
        if set.len() > 1 {
            eprintln!(
                "one stream, oldest first (a rotation set): {}",
                set.join(", ")
            );
        }
        let mut state = SourceState::new(Format::Auto, reference);
        state.time_domain = i as u32;
        let paths: Vec<String> = set.into_iter().filter(|f| f != "-").collect();
        state.file_path = paths.first().map(|f| f.as_str().into());
        ins.push(crate::pipeline::graph::SourceInput {
            paths,
            state,
            pace_lines_per_sec: args.lines_per_sec,
        });
    }
    execute(&spec, ins, Respond::Simulate, "replay")
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.pipeline)
        .with_context(|| format!("cannot read {}", args.pipeline))?;
    let spec = crate::pipeline::load_str(&text, &args.pipeline)?;
    if matches!(spec.sources.first(), Some(SourceConfig::Nats(_))) {
        return run_worker(&spec, args);
    }
    let ins = inputs(&spec, crate::time::now_ms());
    execute(&spec, ins, Respond::Live, &args.pipeline)
}

/// A long-lived JetStream worker (until stopped, or idle with --until-idle-secs).
fn run_worker(spec: &PipelineSpec, args: RunArgs) -> anyhow::Result<ExitCode> {
    let detectors = load_detectors(spec)?;
    let mut sinks = Sinks::open(spec.sinks.clone())?;
    let mut opts = crate::nats::WorkerOptions {
        url: args.nats_url,
        partitions: args.partitions,
        until_idle: args.until_idle_secs.map(std::time::Duration::from_secs_f64),
        ready: None,
    };
    let rt = super::runtime()?;
    let summary = rt.block_on(async {
        if let Some(api) = &spec.api {
            let hub = std::sync::Arc::new(crate::hub::FindingsHub::new(api.max_findings));
            sinks = sinks.with_subscriber(hub.clone());
            let routes = crate::api::Routes::basic(&spec.name, hub);
            opts.ready = Some(crate::api::start(api, routes).await?.ready);
        }
        crate::nats::run_worker(spec, detectors, sinks, opts).await
    })?;
    eprintln!("threatpilot worker: {}", serde_json::to_string(&summary)?);
    Ok(ExitCode::SUCCESS)
}

fn load_detectors(spec: &PipelineSpec) -> anyhow::Result<Vec<crate::detect::Detector>> {
    let mut detectors = Vec::new();
    for dir in &spec.detect.paths {
        match crate::detect::load_dir(std::path::Path::new(dir)) {
            Ok(d) => detectors.extend(d),
            Err(errs) => {
                for e in errs {
                    eprintln!("{e}");
                }
                anyhow::bail!("detectors under {dir} are invalid (run `threatpilot validate`)");
            }
        }
    }
    if !spec.detect.sigma.is_empty() {
        let load = crate::detect::sigma::load_dirs(&spec.detect.sigma)
            .map_err(|e| anyhow::anyhow!("cannot read Sigma rules: {e}"))?;
        eprintln!(
            "sigma: {} loaded, {} unsupported (`threatpilot validate --sigma DIR` says why)",
            load.loaded,
            load.refused.len()
        );
        detectors.extend(load.detectors);
    }
    Ok(detectors)
}

/// Compiles a pipeline's `respond:` section, printing every error.
pub(crate) fn compile_respond(
    spec: &PipelineSpec,
    path: &str,
) -> anyhow::Result<Option<crate::respond::Compiled>> {
    let Some(cfg) = &spec.respond else {
        return Ok(None);
    };
    match crate::respond::compile(cfg, path) {
        Ok(c) => Ok(Some(c)),
        Err(errs) => {
            for e in errs {
                eprintln!("{e}");
            }
            anyhow::bail!("the respond section is invalid (run `threatpilot validate`)");
        }
    }
}

/// Compiles a pipeline's `notify:` section, printing every error.
fn compile_notify(
    spec: &PipelineSpec,
    path: &str,
) -> anyhow::Result<Option<crate::notify::Compiled>> {
    let Some(cfg) = &spec.notify else {
        return Ok(None);
    };
    match crate::notify::compile(cfg, path) {
        Ok(c) => Ok(Some(c)),
        Err(errs) => {
            for e in errs {
                eprintln!("{e}");
            }
            anyhow::bail!("the notify section is invalid (run `threatpilot validate`)");
        }
    }
}

/// How a run responds: a replay simulates, a pipeline acts.
enum Respond {
    Simulate,
    Live,
}

fn execute(
    spec: &PipelineSpec,
    ins: Vec<crate::pipeline::graph::SourceInput>,
    respond: Respond,
    path: &str,
) -> anyhow::Result<ExitCode> {
    let detectors = load_detectors(spec)?;
    let n_detectors = detectors.len();
    let mut sinks = Sinks::open(spec.sinks.clone())?;
    let mut live = None;
    if let Some(c) = compile_respond(spec, path)? {
        match respond {
            Respond::Simulate => {
                sinks = sinks.with_subscriber(crate::respond::offline::Offline::new(c))
            }
            Respond::Live => live = Some(c),
        }
    }
    let notify = match (&live, respond) {
        (Some(_), Respond::Live) => compile_notify(spec, path)?,
        _ => None,
    };
    let rt = super::runtime()?;
    let summary = rt.block_on(crate::pipeline::serve::serve(
        spec,
        ins,
        detectors,
        sinks,
        live,
        notify,
        crate::pipeline::serve::shutdown_signal(),
    ))?;
    print_summary(&summary, n_detectors);
    warn_late(&summary, spec);
    // a batch run whose rows did not all reach the store has not done its job
    let left: u64 = summary
        .stages
        .iter()
        .filter_map(|s| s.dropped.get("left_in_spool"))
        .sum();
    if left > 0 && !crate::pipeline::serve::long_lived(spec) {
        let spool = spec
            .sinks
            .iter()
            .find_map(|s| match s {
                crate::pipeline::config::SinkConfig::Clickhouse(c) => Some(c.spool_dir.clone()),
                _ => None,
            })
            .unwrap_or_default();
        eprintln!(
            "threatpilot: {left} rows did not reach ClickHouse before the end; they wait in the spool at {spool} and the next run with this sink inserts them first"
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

/// Says so on stderr, and why, when more than 1% of the lines that reached
/// detection were dropped as late.
fn warn_late(s: &RunSummary, spec: &PipelineSpec) {
    let Some(detect) = s.stages.iter().find(|st| st.stage == "detect") else {
        return;
    };
    let late = detect.dropped.get("late").copied().unwrap_or(0);
    if detect.received == 0 || late * 100 <= detect.received {
        return;
    }
    let why = format!(
        "their time was more than {} s behind the newest line of their stream (detect.out_of_order: drop; replay starts a new segment instead)",
        spec.detect.allowed_lateness_secs
    );
    eprintln!(
        "threatpilot: warning: {late} of {} lines ({:.1}%) were dropped as late and not evaluated: {why}; give each file on its own, in time order, or raise detect.allowed_lateness_secs",
        detect.received,
        late as f64 * 100.0 / detect.received as f64
    );
}

fn print_summary(s: &RunSummary, detectors: usize) {
    eprintln!(
        "threatpilot: {} detectors, {} findings ({} versions), {} templates ({} ids stored: a template that generalises gets a new one), {} unparsed lines, {:.2}s, peak memory {:.0} MiB",
        detectors,
        s.findings,
        s.finding_versions,
        s.templates,
        s.template_versions,
        s.parse_failures,
        s.elapsed_secs,
        crate::cli_support::peak_rss_mib()
    );
    for st in &s.stages {
        let dropped: Vec<String> = st
            .dropped
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let adjusted: Vec<String> = st
            .adjusted
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        eprintln!(
            "  {:<8} received={} emitted={}{}{}{}{}",
            st.stage,
            st.received,
            st.emitted,
            if st.expanded > 0 {
                format!(" expanded={}", st.expanded)
            } else {
                String::new()
            },
            if dropped.is_empty() {
                String::new()
            } else {
                format!(" dropped: {}", dropped.join(" "))
            },
            if adjusted.is_empty() {
                String::new()
            } else {
                format!(" adjusted: {}", adjusted.join(" "))
            },
            if st.busy_us > 0 {
                format!(" busy={:.2}s", st.busy_us as f64 / 1e6)
            } else {
                String::new()
            }
        );
        if st.replayed > 0 {
            eprintln!(
                "  {:<8} replayed_from_earlier_spool={} (rows an earlier run left)",
                st.stage, st.replayed
            );
        }
    }
}
