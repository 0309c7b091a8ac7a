//! The stage graph's outcome counters add up: each stage's
//! `received + expanded == emitted + dropped`, and what one stage emits is
//! what the next receives.

use threatpilot::parse::{Format, SourceState};
use threatpilot::pipeline::config::SinkConfig;
use threatpilot::pipeline::graph::SourceInput;
use threatpilot::pipeline::sinks::Sinks;

#[test]
fn counters_add_up_across_the_graph() {
    let files = [
        "fixtures/detectors/crowdsec-ssh-bf/input.log",
        "fixtures/detectors/crowdsec-nginx_req_limit_exceeded/input.log",
        "fixtures/detectors/benign-apache-baseline/input.log",
        "fixtures/detectors/npd-oom-kill/input.log",
    ];
    let inputs: Vec<SourceInput> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut state = SourceState::new(
                Format::Auto,
                threatpilot::detect::fixtures::FIXTURE_REFERENCE_MS,
            );
            state.time_domain = i as u32;
            SourceInput {
                paths: vec![(*f).to_owned()],
                state,
                pace_lines_per_sec: None,
            }
        })
        .collect();
    let mut spec = threatpilot::pipeline::PipelineSpec::defaults("counters");
    spec.batch_size = 64;
    spec.channel_capacity = 2;
    let detectors = threatpilot::detect::load_dir(std::path::Path::new("detectors")).unwrap();
    let out = std::env::temp_dir().join(format!("tp-counters-{}.jsonl", std::process::id()));
    let sinks = Sinks::open(vec![SinkConfig::File {
        path: out.display().to_string(),
    }])
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let summary = rt
        .block_on(threatpilot::pipeline::run(&spec, inputs, detectors, sinks))
        .unwrap();
    let lines: u64 = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().lines().count() as u64)
        .sum();
    let st = &summary.stages;
    assert_eq!(st[0].received, lines);
    for s in st {
        assert!(s.adds_up(), "stage {} does not add up: {s:?}", s.stage);
    }
    for pair in st[..5].windows(2) {
        assert_eq!(
            pair[0].emitted, pair[1].received,
            "{} -> {}",
            pair[0].stage, pair[1].stage
        );
    }
    // nginx's repeated rate-limit lines collapse in dedupe
    assert!(st[2].dropped["merged_duplicate"] > 0);
    let written = std::fs::read_to_string(&out).unwrap().lines().count();
    assert_eq!(written, summary.finding_versions);
    assert_eq!(st[5].received as usize, summary.finding_versions);
    let _ = std::fs::remove_file(out);
}
