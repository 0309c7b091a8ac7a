-- The latest version of each finding and template: the same names the
-- embedded store's SQL offers, so analysts' queries run on both.
CREATE VIEW IF NOT EXISTS {db}.findings_latest AS SELECT * FROM {db}.findings FINAL;
CREATE VIEW IF NOT EXISTS {db}.templates_latest AS SELECT * FROM {db}.templates FINAL;
