//! `cargo bench`: nanoseconds per event for each hot path (parse, dedupe,
//! cluster, detect) on simulated mixed traffic, median of seven passes.
//! `threatpilot bench` measures the whole pipeline; this isolates stages so
//! a change to one shows up on its own.

use std::hint::black_box;
use std::time::Instant;

use threatpilot::cluster::{Clusterer, DrainConfig};
use threatpilot::dedupe::Deduper;
use threatpilot::detect::{Engine, EngineConfig};
use threatpilot::event::Event;
use threatpilot::parse::{Format, SourceState, parse_into};
use threatpilot::simulate::{START_MS, SimConfig, generate};

const EVENTS: usize = 200_000;

fn median_ns_per_event(mut f: impl FnMut() -> usize) -> f64 {
    let mut samples: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            let n = f();
            t.elapsed().as_nanos() as f64 / n.max(1) as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[3]
}

fn parse_all(lines: &[String]) -> Vec<Event> {
    let mut st = SourceState::new(Format::Auto, START_MS + 86_400_000);
    let mut out = Vec::with_capacity(lines.len());
    for l in lines {
        parse_into(l, &mut st, 0, &mut out);
    }
    out
}

fn main() {
    let (sim, _) = generate(&SimConfig {
        events: EVENTS,
        seed: 7,
        events_per_sec: 500.0,
    });
    let lines: Vec<String> = sim.into_iter().map(|l| l.text).collect();
    let loaded =
        threatpilot::detect::load_dir(std::path::Path::new("detectors")).expect("detectors load");

    let parse = median_ns_per_event(|| black_box(parse_all(&lines)).len());
    let parsed = parse_all(&lines);
    let dedupe = median_ns_per_event(|| {
        let mut d = Deduper::new(1000, 100_000);
        let mut out = Vec::with_capacity(parsed.len());
        for chunk in parsed.chunks(1024) {
            d.process(chunk.to_vec(), &mut out);
        }
        black_box(out).len()
    });
    let cluster = median_ns_per_event(|| {
        let mut events = parsed.clone();
        let mut c = Clusterer::new(DrainConfig::default());
        c.process(&mut events);
        black_box(events).len()
    });
    let mut clustered = parsed.clone();
    Clusterer::new(DrainConfig::default()).process(&mut clustered);
    let detect = median_ns_per_event(|| {
        let mut engine = Engine::new(loaded.clone(), EngineConfig::default());
        let mut findings = Vec::new();
        for ev in &clustered {
            engine.process(ev, &mut findings);
        }
        black_box(findings);
        clustered.len()
    });
    println!(
        "hot paths, ns per event (simulated mixed traffic, {} events, median of 7):",
        lines.len()
    );
    println!("  parse   {parse:8.0}");
    println!("  dedupe  {dedupe:8.0}  (includes cloning each batch)");
    println!("  cluster {cluster:8.0}  (includes cloning the events)");
    println!("  detect  {detect:8.0}  (29 detectors, engine compiled each pass)");
}
