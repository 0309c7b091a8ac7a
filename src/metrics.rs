//! The metrics inventory: every metric ThreatPilot emits, with its unit and
//! description, registered in one place. Label values are bounded (stage,
//! reason, detector id), never an address or a user.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

pub const STAGE_RECEIVED: &str = "threatpilot_stage_received_total";
pub const STAGE_EMITTED: &str = "threatpilot_stage_emitted_total";
pub const STAGE_DROPPED: &str = "threatpilot_stage_dropped_total";
pub const STAGE_ADJUSTED: &str = "threatpilot_stage_adjusted_total";
pub const STAGE_QUEUE_DEPTH: &str = "threatpilot_stage_queue_depth";
pub const STAGE_BUSY: &str = "threatpilot_stage_busy_microseconds_total";
pub const PARSE_FAILURES: &str = "threatpilot_parse_failures_total";
pub const DETECT_EVICTED_KEYS: &str = "threatpilot_detect_evicted_keys_total";
pub const DETECT_EXPIRED_KEYS: &str = "threatpilot_detect_expired_keys_total";
pub const DETECT_TRACKED_KEYS: &str = "threatpilot_detect_tracked_keys";
pub const FINDINGS_EMITTED: &str = "threatpilot_findings_emitted_total";
pub const FINDING_LATENCY: &str = "threatpilot_finding_latency_seconds";
pub const TEMPLATES: &str = "threatpilot_templates";
pub const NATS_CONSUMER_PENDING: &str = "threatpilot_nats_consumer_pending";
pub const NATS_REDELIVERIES: &str = "threatpilot_nats_redeliveries_total";
pub const NATS_DEAD_LETTERS: &str = "threatpilot_nats_dead_letters_total";
pub const NATS_ACK_LATENCY: &str = "threatpilot_nats_ack_latency_seconds";
pub const NATS_CONNECTS: &str = "threatpilot_nats_connects_total";
pub const NATS_CHECKPOINT_BYTES: &str = "threatpilot_nats_checkpoint_bytes";
pub const NATS_FINDINGS_DUPLICATE: &str = "threatpilot_nats_findings_duplicate_total";
pub const NATS_PUBLISH_ACKS_LOST: &str = "threatpilot_nats_publish_acks_lost_total";
pub const NATS_PUBLISHED_RECORD_ERRORS: &str = "threatpilot_nats_published_record_errors_total";
pub const INGEST_REQUESTS: &str = "threatpilot_ingest_requests_total";
pub const INGEST_BYTES: &str = "threatpilot_ingest_bytes_total";
pub const INGEST_STREAMS_EVICTED: &str = "threatpilot_ingest_streams_evicted_total";
pub const INGEST_BUDGET_USED: &str = "threatpilot_ingest_memory_budget_used_bytes";
pub const INGEST_BUDGET_REFUSALS: &str = "threatpilot_ingest_memory_budget_refusals_total";
pub const ACCEPT_ERRORS: &str = "threatpilot_accept_errors_total";
pub const CONNECTIONS_REFUSED: &str = "threatpilot_connections_refused_total";
pub const CONNECTIONS_CLOSED: &str = "threatpilot_connections_closed_total";
pub const SYSLOG_CONNECTIONS: &str = "threatpilot_syslog_connections";
pub const LOKI_QUERY_RUNS: &str = "threatpilot_loki_query_runs_total";
pub const STORE_ROWS_INSERTED: &str = "threatpilot_store_rows_inserted_total";
pub const STORE_INSERT_ERRORS: &str = "threatpilot_store_insert_errors_total";
pub const STORE_SPOOL_BYTES: &str = "threatpilot_store_spool_bytes";
pub const STORE_SPOOL_BATCHES: &str = "threatpilot_store_spool_batches";
pub const SEARCH_INDEXED: &str = "threatpilot_search_indexed_total";
pub const SEARCH_INDEX_ERRORS: &str = "threatpilot_search_index_errors_total";
pub const API_SSE_CLIENTS: &str = "threatpilot_api_sse_clients";
pub const CONSOLE_SESSIONS: &str = "threatpilot_console_sessions";
pub const CONSOLE_REFUSED: &str = "threatpilot_console_refused_total";
pub const RESPOND_FINDINGS_DROPPED: &str = "threatpilot_respond_findings_dropped_total";
pub const RESPOND_EXECUTIONS: &str = "threatpilot_respond_executions_total";
pub const NOTIFY_SENT: &str = "threatpilot_notify_sent_total";
pub const NOTIFY_RETRIES: &str = "threatpilot_notify_retries_total";
pub const NOTIFY_DEAD: &str = "threatpilot_notify_dead_total";

/// Registers descriptions with whatever recorder is installed.
pub fn describe() {
    describe_counter!(
        NOTIFY_SENT,
        Unit::Count,
        "notifications taken by their channel (Slack, webhook), by channel"
    );
    describe_counter!(
        NOTIFY_RETRIES,
        Unit::Count,
        "notification sends that failed and wait to be retried, by channel"
    );
    describe_counter!(
        NOTIFY_DEAD,
        Unit::Count,
        "notifications dropped on a permanent error (logged by name), by channel"
    );
    describe_counter!(
        RESPOND_FINDINGS_DROPPED,
        Unit::Count,
        "finding versions response could not take (its queue was full)"
    );
    describe_counter!(
        RESPOND_EXECUTIONS,
        Unit::Count,
        "actions carried out by connector and outcome (ok, failed)"
    );
    describe_counter!(
        INGEST_REQUESTS,
        Unit::Count,
        "push requests (Loki, Alertmanager) by source and HTTP status"
    );
    describe_counter!(
        INGEST_BYTES,
        Unit::Bytes,
        "request body bytes received by push sources, as sent (compressed)"
    );
    describe_counter!(
        INGEST_STREAMS_EVICTED,
        Unit::Count,
        "pushed streams whose parser state was forgotten to bound memory"
    );
    describe_gauge!(
        SYSLOG_CONNECTIONS,
        Unit::Count,
        "open syslog TCP connections"
    );
    describe_counter!(LOKI_QUERY_RUNS, Unit::Count, "Loki query runs by outcome");
    describe_counter!(
        STORE_ROWS_INSERTED,
        Unit::Count,
        "rows inserted into ClickHouse, by table (replayed spool included)"
    );
    describe_counter!(
        SEARCH_INDEXED,
        Unit::Count,
        "events added to the embedded store's search index"
    );
    describe_counter!(
        SEARCH_INDEX_ERRORS,
        Unit::Count,
        "events stored but not indexed (the index could not be written)"
    );
    describe_counter!(
        STORE_INSERT_ERRORS,
        Unit::Count,
        "ClickHouse inserts that failed (the batch was spooled)"
    );
    describe_gauge!(
        STORE_SPOOL_BYTES,
        Unit::Bytes,
        "bytes waiting in the ClickHouse spool"
    );
    describe_gauge!(
        STORE_SPOOL_BATCHES,
        Unit::Count,
        "batches waiting in the ClickHouse spool"
    );
    describe_gauge!(
        API_SSE_CLIENTS,
        Unit::Count,
        "clients following the live findings stream"
    );
    describe_gauge!(
        CONSOLE_SESSIONS,
        Unit::Count,
        "console sessions held (logged-in people)"
    );
    describe_counter!(
        CONSOLE_REFUSED,
        Unit::Count,
        "console requests refused, by reason (login, csrf, origin, role)"
    );
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
        INGEST_BUDGET_USED,
        Unit::Bytes,
        "bytes ingestion holds of its memory budget (bodies, decoded entries, queued lines)"
    );
    describe_counter!(
        INGEST_BUDGET_REFUSALS,
        Unit::Count,
        "times the ingestion memory budget had no room (the request got 503)"
    );
    describe_counter!(
        ACCEPT_ERRORS,
        Unit::Count,
        "failed accepts by listener (EMFILE: out of file descriptors)"
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        Unit::Count,
        "connections closed on accept by listener and reason (listener_full, client_full)"
    );
    describe_counter!(
        CONNECTIONS_CLOSED,
        Unit::Count,
        "connections closed by the server by listener and reason (idle, unresponsive)"
    );
    describe_counter!(
        STAGE_ADJUSTED,
        Unit::Count,
        "items a stage passed on changed, by stage and reason (time_clamped: a pushed record dated ahead of its receipt)"
    );
    describe_gauge!(
        STAGE_QUEUE_DEPTH,
        Unit::Count,
        "batches waiting in a stage's input channel"
    );
    describe_counter!(
        STAGE_BUSY,
        Unit::Microseconds,
        "time a stage spent working rather than waiting: its rate over wall time is the stage's utilisation"
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
    describe_counter!(
        DETECT_EXPIRED_KEYS,
        Unit::Count,
        "window keys dropped because their window emptied"
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
    describe_gauge!(
        NATS_CONSUMER_PENDING,
        Unit::Count,
        "messages in the stream not yet delivered to this worker (consumer lag)"
    );
    describe_counter!(
        NATS_REDELIVERIES,
        Unit::Count,
        "messages JetStream delivered more than once"
    );
    describe_counter!(
        NATS_DEAD_LETTERS,
        Unit::Count,
        "messages that could not be processed, by reason"
    );
    describe_histogram!(
        NATS_ACK_LATENCY,
        Unit::Seconds,
        "from receiving a message to acknowledging it (after its checkpoint)"
    );
    describe_counter!(
        NATS_CONNECTS,
        Unit::Count,
        "connections to the NATS server (the first and every reconnect)"
    );
    describe_gauge!(
        NATS_CHECKPOINT_BYTES,
        Unit::Bytes,
        "size of the last state checkpoint"
    );
    describe_counter!(
        NATS_FINDINGS_DUPLICATE,
        Unit::Count,
        "finding versions JetStream already had (replayed after a restart)"
    );
    describe_counter!(
        NATS_PUBLISH_ACKS_LOST,
        Unit::Count,
        "publishes whose acknowledgement never came (a server restart) and were resent with their ids"
    );
    describe_counter!(
        NATS_PUBLISHED_RECORD_ERRORS,
        Unit::Count,
        "published finding versions the worker could not record in its bucket (a later restart may publish them again)"
    );
}
