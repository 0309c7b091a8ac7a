-- requires: ClickHouse 20.1
-- On servers that have them (18.16 does not): dictionary encoding for the
-- repetitive strings and compression codecs for the bulky ones. RowBinary
-- encodes LowCardinality(String) as String, so the sink is unchanged.
-- Older servers skip this migration; it applies once the server is
-- upgraded. Key and partition columns are left as they are.
ALTER TABLE {db}.events
    MODIFY COLUMN kind LowCardinality(String),
    MODIFY COLUMN category LowCardinality(String),
    MODIFY COLUMN action LowCardinality(String),
    MODIFY COLUMN outcome LowCardinality(String),
    MODIFY COLUMN dataset LowCardinality(String),
    MODIFY COLUMN host_name LowCardinality(String),
    MODIFY COLUMN service_name LowCardinality(String),
    MODIFY COLUMN process_name LowCardinality(String),
    MODIFY COLUMN http_method LowCardinality(String),
    MODIFY COLUMN log_level LowCardinality(String),
    MODIFY COLUMN timestamp_ms Int64 CODEC(Delta, ZSTD(1)),
    MODIFY COLUMN ingested_ms Int64 CODEC(Delta, ZSTD(1)),
    MODIFY COLUMN original String CODEC(ZSTD(3)),
    MODIFY COLUMN message String CODEC(ZSTD(3)),
    MODIFY COLUMN url_original String CODEC(ZSTD(3)),
    MODIFY COLUMN user_agent String CODEC(ZSTD(3)),
    MODIFY COLUMN labels String CODEC(ZSTD(3)),
    MODIFY COLUMN template_text String CODEC(ZSTD(3)),
    MODIFY COLUMN extra String CODEC(ZSTD(3));
ALTER TABLE {db}.findings
    MODIFY COLUMN detector_id LowCardinality(String),
    MODIFY COLUMN domain LowCardinality(String),
    MODIFY COLUMN classification LowCardinality(String),
    MODIFY COLUMN title LowCardinality(String),
    MODIFY COLUMN severity LowCardinality(String),
    MODIFY COLUMN status LowCardinality(String),
    MODIFY COLUMN offender_type LowCardinality(String),
    MODIFY COLUMN context String CODEC(ZSTD(3)),
    MODIFY COLUMN evidence Array(String) CODEC(ZSTD(3));
ALTER TABLE {db}.templates
    MODIFY COLUMN dataset LowCardinality(String),
    MODIFY COLUMN template_text String CODEC(ZSTD(3));
