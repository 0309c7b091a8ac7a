-- Room for the response side (SPEC 4.3): incidents (updated rows), actions
-- (one step of a playbook run, updated as it progresses) and the
-- append-only, hash-chained audit log.
CREATE TABLE IF NOT EXISTS {db}.incidents (
    incident_id String,
    version UInt64,
    status String,
    priority Float64,
    title String,
    offender_type String,
    offender_value String,
    service_name String,
    finding_ids Array(String),
    jira_key String,
    opened_ms Int64,
    updated_ms Int64,
    day Date
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(day)
ORDER BY incident_id;

CREATE TABLE IF NOT EXISTS {db}.actions (
    action_id String,
    version UInt64,
    incident_id String,
    finding_id String,
    playbook_id String,
    responder String,
    kind String,
    target String,
    parameters String,
    risk String,
    mode String,
    status String,
    approved_by String,
    approved_ms Int64,
    output String,
    verification String,
    expires_ms Int64,
    rollback_action_id String,
    created_ms Int64,
    updated_ms Int64,
    day Date
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(day)
ORDER BY action_id;

CREATE TABLE IF NOT EXISTS {db}.audit (
    seq UInt64,
    at_ms Int64,
    actor String,
    decision String,
    subject String,
    detail String,
    prev_hash String,
    hash String,
    day Date
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(day)
ORDER BY seq;
