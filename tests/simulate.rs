//! Simulated mixed traffic raises exactly the findings its injected attacks
//! call for: every one found, nothing invented from the benign background.

use std::collections::BTreeSet;

use threatpilot::parse::{Format, SourceState};
use threatpilot::simulate::{SimConfig, Stream, generate};

#[test]
fn simulated_attacks_are_found_and_nothing_else() {
    for seed in [3, 7] {
        let (lines, expected) = generate(&SimConfig {
            events: 60_000,
            seed,
            events_per_sec: 100.0,
        });
        let mut inputs: Vec<(SourceState, Vec<String>)> =
            [Stream::Sshd, Stream::Nginx, Stream::App, Stream::Kernel]
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut st = SourceState::new(
                        Format::Auto,
                        threatpilot::detect::fixtures::FIXTURE_REFERENCE_MS,
                    );
                    st.time_domain = i as u32;
                    (
                        st,
                        lines
                            .iter()
                            .filter(|l| l.stream == *s)
                            .map(|l| l.text.clone())
                            .collect(),
                    )
                })
                .collect();
        let spec = threatpilot::pipeline::PipelineSpec::defaults("simulate");
        let detectors = threatpilot::detect::load_dir(std::path::Path::new("detectors")).unwrap();
        let findings =
            threatpilot::pipeline::graph::final_states(threatpilot::pipeline::run_inline(
                &spec,
                &mut inputs,
                detectors,
                threatpilot::detect::fixtures::FIXTURE_REFERENCE_MS,
            ));
        let got: BTreeSet<(String, String)> = findings
            .iter()
            .map(|f| (f.detector.id.clone(), f.offender.value.clone()))
            .collect();
        let want: BTreeSet<(String, String)> = expected
            .iter()
            .map(|e| (e.detector.clone(), e.offender.clone()))
            .collect();
        assert_eq!(got, want, "seed {seed}");
        assert!(
            findings
                .iter()
                .all(|f| f.status == threatpilot::finding::Status::Resolved)
        );
    }
}
