-- Normalized events (SPEC 4.1), one row per event; all of them, a sample,
-- or those cited as evidence (the sink's `events` setting). A replayed
-- batch collapses by event_id when parts merge (query with FINAL for exact
-- counts). Partitioned by day, so retention drops whole days.
CREATE TABLE IF NOT EXISTS {db}.events (
    event_id String,
    timestamp DateTime,
    timestamp_ms Int64,
    ingested_ms Int64,
    day Date,
    kind String,
    category String,
    action String,
    outcome String,
    dataset String,
    original String,
    message String,
    source_ip String,
    source_port UInt16,
    user_name String,
    host_name String,
    service_name String,
    process_name String,
    process_pid UInt32,
    http_method String,
    url_original String,
    http_status UInt16,
    http_body_bytes UInt64,
    user_agent String,
    log_level String,
    labels String,
    template_id String,
    template_text String,
    event_count UInt32,
    parse_error String,
    truncated UInt8
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(day)
ORDER BY (timestamp, event_id);
