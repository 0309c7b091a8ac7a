-- What the response side records beyond migration 005: an incident's
-- severity, domain, classifications, every offender and source address it
-- gathered, its host, whether the offender is a repeat one, when it was
-- mitigated and resolved, and its timeline (JSON); an action's reason (the
-- policy's decision in words) and the connector that carried it.
ALTER TABLE {db}.incidents ADD COLUMN severity String;
ALTER TABLE {db}.incidents ADD COLUMN domain String;
ALTER TABLE {db}.incidents ADD COLUMN classifications Array(String);
ALTER TABLE {db}.incidents ADD COLUMN offenders Array(String);
ALTER TABLE {db}.incidents ADD COLUMN host_name String;
ALTER TABLE {db}.incidents ADD COLUMN repeat_offender UInt8;
ALTER TABLE {db}.incidents ADD COLUMN mitigated_ms Int64;
ALTER TABLE {db}.incidents ADD COLUMN resolved_ms Int64;
ALTER TABLE {db}.incidents ADD COLUMN timeline String;
ALTER TABLE {db}.actions ADD COLUMN reason String;
ALTER TABLE {db}.actions ADD COLUMN connector String;
-- The latest version of each incident and action, as on the embedded store.
CREATE VIEW IF NOT EXISTS {db}.incidents_latest AS SELECT * FROM {db}.incidents FINAL;
CREATE VIEW IF NOT EXISTS {db}.actions_latest AS SELECT * FROM {db}.actions FINAL;
