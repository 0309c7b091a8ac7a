//! The metrics inventory: every metric ThreatPilot emits, with its unit and
//! description, registered in one place. Label values are bounded (stage,
//! reason, detector id), never an address or a user.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

pub const STAGE_RECEIVED: &str = "threatpilot_stage_received_total";
pub const STAGE_EMITTED: &str = "threatpilot_stage_emitted_total";
pub const STAGE_DROPPED: &str = "threatpilot_stage_dropped_total";
pub const STAGE_QUEUE_DEPTH: &str = "threatpilot_stage_queue_depth";
pub const PARSE_FAILURES: &str = "threatpilot_parse_failures_total";
pub const DETECT_EVICTED_KEYS: &str = "threatpilot_detect_evicted_keys_total";
pub const DETECT_TRACKED_KEYS: &str = "threatpilot_detect_tracked_keys";
pub const FINDINGS_EMITTED: &str = "threatpilot_findings_emitted_total";
pub const FINDING_LATENCY: &str = "threatpilot_finding_latency_seconds";
pub const TEMPLATES: &str = "threatpilot_templates";

/// Registers descriptions with whatever recorder is installed.
pub fn describe() {
    describe_counter!(
        STAGE_RECEIVED,
        Unit::Count,
        "items a stage received, by stage"
    );
    describe_counter!(
        STAGE_EMITTED,
        Unit::Count,
        "items a stage passed on, by stage"
    );
    describe_counter!(
        STAGE_DROPPED,
        Unit::Count,
        "items a stage did not pass on, by stage and reason"
    );
    describe_gauge!(
        STAGE_QUEUE_DEPTH,
        Unit::Count,
        "batches waiting in a stage's input channel"
    );
    describe_counter!(
        PARSE_FAILURES,
        Unit::Count,
        "lines no parser understood (kept, marked)"
    );
    describe_counter!(
        DETECT_EVICTED_KEYS,
        Unit::Count,
        "window keys evicted to bound memory"
    );
    describe_gauge!(
        DETECT_TRACKED_KEYS,
        Unit::Count,
        "window keys held by the detection engine"
    );
    describe_counter!(
        FINDINGS_EMITTED,
        Unit::Count,
        "finding versions emitted, by detector and status"
    );
    describe_histogram!(
        FINDING_LATENCY,
        Unit::Seconds,
        "from reading the crossing event to emitting its finding"
    );
    describe_gauge!(
        TEMPLATES,
        Unit::Count,
        "log templates known to the cluster stage"
    );
}
