//! `cargo bench`: nanoseconds per event for each hot path (parse, dedupe,
//! cluster, detect) on simulated mixed traffic, median of seven passes
//! (`--passes=N` for another count).
//! `threatpilot bench` measures the whole pipeline; this isolates stages so
//! a change to one shows up on its own.

use std::hint::black_box;
use std::time::Instant;

use threatpilot::cluster::{Clusterer, DrainConfig};
use threatpilot::dedupe::Deduper;
use threatpilot::detect::{Engine, EngineConfig};
use threatpilot::event::Event;
use threatpilot::parse::{Format, SourceState, parse_into};
use threatpilot::pipeline::{PipelineSpec, run_inline};
use threatpilot::simulate::{START_MS, SimConfig, generate};

// the allocator the binary ships with, so these figures are the binary's
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 200_000;

fn median_ns_per_event(passes: usize, mut f: impl FnMut() -> usize) -> f64 {
    let mut samples: Vec<f64> = (0..passes.max(1))
        .map(|_| {
            let t = Instant::now();
            let n = f();
            t.elapsed().as_nanos() as f64 / n.max(1) as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn parse_all(lines: &[String]) -> Vec<Event> {
    let mut st = SourceState::new(Format::Auto, START_MS + 86_400_000);
    let mut out = Vec::with_capacity(lines.len());
    for l in lines {
        parse_into(l, &mut st, 0, &mut out);
    }
    out
}

/// `cargo bench -- NAME...` runs only the named paths (parse, dedupe,
/// cluster, detect, inline), e.g. to profile one of them alone.
fn picked_paths() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect()
}

/// `--passes=N` (default 7): fewer for a slow profiler such as callgrind.
fn passes() -> usize {
    std::env::args()
        .find_map(|a| a.strip_prefix("--passes=")?.parse().ok())
        .unwrap_or(7)
}

fn main() {
    let picked = picked_paths();
    let passes = passes();
    let wanted = |name: &str| picked.is_empty() || picked.iter().any(|p| p == name);
    let (sim, _) = generate(&SimConfig {
        events: EVENTS,
        seed: 7,
        events_per_sec: 500.0,
    });
    let lines: Vec<String> = sim.into_iter().map(|l| l.text).collect();
    let loaded =
        threatpilot::detect::load_dir(std::path::Path::new("detectors")).expect("detectors load");

    let measure = |name: &str, f: &mut dyn FnMut() -> usize| {
        wanted(name).then(|| median_ns_per_event(passes, f))
    };
    let parse = measure("parse", &mut || black_box(parse_all(&lines)).len());
    // the later stages' inputs, prepared only when one of them is measured
    let parsed = if ["dedupe", "cluster", "detect"].iter().any(|n| wanted(n)) {
        parse_all(&lines)
    } else {
        Vec::new()
    };
    let dedupe = measure("dedupe", &mut || {
        let mut d = Deduper::new(1000, 100_000);
        let mut kept = 0;
        for chunk in parsed.chunks(1024) {
            let mut batch = chunk.to_vec();
            d.process(&mut batch);
            kept += black_box(batch).len();
        }
        black_box(kept);
        parsed.len()
    });
    let cluster = measure("cluster", &mut || {
        let mut events = parsed.clone();
        let mut c = Clusterer::new(DrainConfig::default());
        c.process(&mut events);
        black_box(events).len()
    });
    let mut clustered = parsed.clone();
    Clusterer::new(DrainConfig::default()).process(&mut clustered);
    let detect = measure("detect", &mut || {
        let mut engine = Engine::new(loaded.clone(), EngineConfig::default());
        let mut findings = Vec::new();
        for ev in &clustered {
            engine.process(ev, &mut findings);
        }
        black_box(findings);
        clustered.len()
    });
    let spec = PipelineSpec::defaults("bench");
    let mut inputs = vec![(
        SourceState::new(Format::Auto, START_MS + 86_400_000),
        lines.clone(),
    )];
    let inline = measure("inline", &mut || {
        inputs[0].0 = SourceState::new(Format::Auto, START_MS + 86_400_000);
        black_box(run_inline(&spec, &mut inputs, loaded.clone(), 0));
        lines.len()
    });
    println!(
        "hot paths, ns per event (simulated mixed traffic, {} events, median of {passes}):",
        lines.len()
    );
    let show = |name: &str, v: Option<f64>, note: &str| {
        if let Some(v) = v {
            println!("  {name:<8}{v:8.0}  {note}");
        }
    };
    show("parse", parse, "");
    show("dedupe", dedupe, "(includes cloning each batch)");
    show("cluster", cluster, "(includes cloning the events)");
    show(
        "detect",
        detect,
        "(every shipped detector, engine compiled each pass)",
    );
    show(
        "inline",
        inline,
        "(all stages on one thread, from raw lines to findings)",
    );
}
