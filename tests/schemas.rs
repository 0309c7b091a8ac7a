//! `schemas/` matches the Rust types, and every shipped data file and
//! emitted record validates against its schema.

use std::path::Path;

use serde_json::Value;
use threatpilot::parse::{Format, SourceState, parse_into};

fn shipped(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(Path::new("schemas").join(name)).unwrap())
        .unwrap()
}

fn validator(name: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&shipped(name)).unwrap()
}

fn assert_valid(v: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{what} does not validate: {errors:?}");
}

#[test]
fn schemas_have_not_drifted_from_the_types() {
    for (name, schema) in threatpilot::schema::all() {
        assert_eq!(
            shipped(name),
            schema,
            "schemas/{name} is stale: run `threatpilot schemas`"
        );
    }
}

#[test]
fn shipped_detectors_and_pipelines_validate() {
    for (dir, schema) in [
        ("detectors", "detector.schema.json"),
        ("pipelines", "pipeline.schema.json"),
        ("playbooks", "playbook.schema.json"),
    ] {
        let v = validator(schema);
        for f in threatpilot::detect::detector_files(Path::new(dir)).unwrap() {
            let doc: Value = serde_saphyr::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
            assert_valid(&v, &doc, &f.display().to_string());
        }
    }
}

#[test]
fn emitted_findings_and_events_validate() {
    let findings = validator("finding.schema.json");
    let events = validator("event.schema.json");
    let mut n = 0;
    for d in threatpilot::detect::fixtures::fixture_dirs(Path::new("fixtures/detectors")).unwrap() {
        for f in threatpilot::detect::fixtures::run_fixture(&d, Path::new("detectors")).unwrap() {
            assert_valid(
                &findings,
                &serde_json::to_value(&f).unwrap(),
                &format!("finding from {}", d.display()),
            );
            n += 1;
        }
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "log" || e == "jsonl") {
                let mut st = SourceState::new(Format::Auto, 0);
                let mut out = Vec::new();
                for line in std::fs::read_to_string(&p).unwrap().lines().take(200) {
                    parse_into(line, &mut st, 0, &mut out);
                }
                for ev in out {
                    assert_valid(
                        &events,
                        &ev.to_json(),
                        &format!("event from {}", p.display()),
                    );
                }
            }
        }
    }
    assert!(n > 20);
}

#[test]
fn the_openapi_description_lists_every_route_the_api_serves() {
    let doc: Value =
        serde_saphyr::from_str(&std::fs::read_to_string("schemas/openapi.yaml").unwrap()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut served: Vec<(String, String)> = threatpilot::api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    served.sort();
    assert_eq!(documented, served);
    // every $ref inside the document resolves
    let text = std::fs::read_to_string("schemas/openapi.yaml").unwrap();
    for r in text.split("$ref: \"#/").skip(1) {
        let pointer = format!("/{}", r.split('"').next().unwrap());
        assert!(doc.pointer(&pointer).is_some(), "dangling $ref {pointer}");
    }
}

#[test]
fn emitted_incidents_and_actions_validate() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_threatpilot"))
        .args([
            "replay",
            "--respond",
            "--reference-time",
            "2026-06-01T00:00:00Z",
            "fixtures/detectors/synthetic-success-after-failures/input.log",
            "fixtures/detectors/crowdsec-nginx-http-sqli-probing/input.log",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let (incident, action) = (
        validator("incident.schema.json"),
        validator("action.schema.json"),
    );
    let mut seen = (0, 0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        match v["type"].as_str() {
            Some("incident") => {
                assert_valid(&incident, &v, "incident");
                seen.0 += 1;
            }
            Some("action") => {
                assert_valid(&action, &v, "action");
                seen.1 += 1;
            }
            _ => {}
        }
    }
    assert!(seen.0 > 0 && seen.1 > 0, "{seen:?}");
}
