-- The ECS fields an event carries beyond the columns above (for example
-- kubernetes.pod.name, error.message, event.duration, log.file.path), as
-- one JSON object per row, like `labels`. Read them with
-- visitParamExtractString(extra, 'kubernetes.pod.name') on 18.16, or
-- JSONExtractString on servers that have it.
ALTER TABLE {db}.events ADD COLUMN extra String;
