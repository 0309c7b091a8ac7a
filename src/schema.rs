//! JSON Schemas of every data file and record, generated from the Rust
//! types (schemars) so they cannot drift from the code: `schemas/` holds
//! the output of [`all`], and a test fails when the two differ or when a
//! shipped file or an emitted record does not validate.

use serde_json::{Map, Value, json};

use crate::detect::config::DetectorSpec;
use crate::finding::Finding;
use crate::pipeline::config::PipelineSpec;

/// (file name, schema) for every schema ThreatPilot ships.
pub fn all() -> Vec<(&'static str, Value)> {
    let to = |s: schemars::Schema| serde_json::to_value(s).unwrap_or(Value::Null);
    vec![
        ("event.schema.json", event_schema()),
        ("finding.schema.json", to(schemars::schema_for!(Finding))),
        (
            "detector.schema.json",
            to(schemars::schema_for!(DetectorSpec)),
        ),
        (
            "pipeline.schema.json",
            to(schemars::schema_for!(PipelineSpec)),
        ),
        (
            "playbook.schema.json",
            to(schemars::schema_for!(
                crate::respond::playbook::PlaybookFile
            )),
        ),
        (
            "policy.schema.json",
            to(schemars::schema_for!(crate::respond::policy::PolicySpec)),
        ),
        (
            "incident.schema.json",
            to(schemars::schema_for!(crate::respond::incident::Incident)),
        ),
        (
            "action.schema.json",
            to(schemars::schema_for!(crate::respond::action::Action)),
        ),
    ]
}

/// The event schema, from the field inventory in [`crate::event::FIELDS`].
fn event_schema() -> Value {
    let mut props = Map::new();
    for (name, ty, desc) in crate::event::FIELDS {
        props.insert((*name).to_owned(), json!({"type": ty, "description": desc}));
    }
    for name in crate::event::EXTRA_FIELDS {
        props
            .entry((*name).to_owned())
            .or_insert(json!({"type": "string"}));
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Event",
        "description": "A normalized log line or alert with flat, dotted ECS field names (SPEC 4.1).",
        "type": "object",
        "properties": props,
        "patternProperties": {"^labels\\.": {"type": "string"}},
        "required": ["@timestamp", "event.kind", "event.outcome", "event.dataset", "event.original", "message", "event.hash", "event.count"],
        "additionalProperties": false
    })
}

/// Writes every schema into `dir`.
pub fn write(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, schema) in all() {
        let text = serde_json::to_string_pretty(&schema).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(name), text + "\n")?;
    }
    Ok(())
}
