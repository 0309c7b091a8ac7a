-- Findings (SPEC 4.2): every version is inserted; the latest (highest
-- update_count) wins when parts merge, so `FINAL` gives one row per finding.
-- Partitioned by the day a finding was first seen, which never changes.
CREATE TABLE IF NOT EXISTS {db}.findings (
    finding_id String,
    update_count UInt32,
    execution_id String,
    detector_id String,
    detector_version UInt32,
    domain String,
    classification String,
    title String,
    severity String,
    confidence Float64,
    status String,
    offender_type String,
    offender_value String,
    event_count UInt64,
    unique_targets UInt64,
    success_count UInt64,
    failure_count UInt64,
    duration_sec UInt64,
    metric_value Float64,
    threshold Float64,
    window_start_ms Int64,
    window_end_ms Int64,
    first_seen DateTime,
    last_seen DateTime,
    first_seen_ms Int64,
    last_seen_ms Int64,
    crossed_at_ms Int64,
    emitted_at_ms Int64,
    context String,
    evidence Array(String),
    recommended_actions Array(String),
    attack Array(String),
    day Date
) ENGINE = ReplacingMergeTree(update_count)
PARTITION BY toYYYYMMDD(day)
ORDER BY finding_id;
