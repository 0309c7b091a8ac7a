-- Log templates from the cluster stage: a row when a template is first seen
-- and whenever its text generalizes; the newest version wins.
CREATE TABLE IF NOT EXISTS {db}.templates (
    template_id String,
    template_text String,
    dataset String,
    first_seen_ms Int64,
    last_seen_ms Int64,
    version UInt64,
    day Date
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(day)
ORDER BY template_id;
