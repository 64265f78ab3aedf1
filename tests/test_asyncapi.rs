//! The catalog as AsyncAPI 3.0, validated against the specification's own JSON Schema
//! (`@asyncapi/specs` 6.11.1 from the npm registry, fetched once into `target/`): every
//! registered event listed with its subject and payload schema, personal data flagged.

#[path = "common/contract_types.rs"]
mod contract_types;

use std::path::{Path, PathBuf};
use std::process::Command;

use edupulse_events::{AsyncApiInfo, DomainEvent, Registry};
use serde_json::Value;

const SPECS: &str = "6.11.1";

/// The AsyncAPI 3.0.0 schema (the variant with JSON pointers instead of `$id`s).
fn asyncapi_schema() -> Value {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/asyncapi-specs-{SPECS}"));
    let file = dir.join("package/schemas/3.0.0-without-$id.json");
    if !file.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let packed = Command::new("npm")
            .args([
                "pack",
                &format!("@asyncapi/specs@{SPECS}"),
                "--pack-destination",
            ])
            .arg(&dir)
            .output()
            .expect("npm (from the machine's Node.js) fetches the AsyncAPI schema");
        assert!(
            packed.status.success(),
            "npm pack: {}",
            String::from_utf8_lossy(&packed.stderr)
        );
        let tarball = dir.join(format!("asyncapi-specs-{SPECS}.tgz"));
        let unpacked = Command::new("tar")
            .arg("xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&dir)
            .arg("package/schemas/3.0.0-without-$id.json")
            .status()
            .unwrap();
        assert!(unpacked.success());
    }
    read_json(&file)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn document() -> Value {
    // The domain's types are linked, so the registry holds them.
    let _ = edupulse_domain::QuizSubmitted::NAME;
    let mut info = AsyncApiInfo::new("EduPulse Live", "1.0.0");
    info.subject_prefix = "edupulse".into();
    info.server = Some("127.0.0.1:4222".into());
    Registry::global().catalog().to_asyncapi(&info)
}

fn problems(validator: &jsonschema::Validator, document: &Value) -> Vec<String> {
    validator
        .iter_errors(document)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

#[test]
fn the_catalog_is_a_valid_asyncapi_3_document() {
    let validator = jsonschema::draft7::new(&asyncapi_schema()).unwrap();
    let document = document();
    let problems = problems(&validator, &document);
    assert!(problems.is_empty(), "{problems:#?}");

    // The validator does reject: a document without its info is not AsyncAPI.
    let mut broken = document.clone();
    broken.as_object_mut().unwrap().remove("info");
    assert!(!validator.is_valid(&broken));
    // Nor is a channel whose address is not a string.
    let mut broken = document.clone();
    broken["channels"]["quiz_submitted_v2"]["address"] = serde_json::json!(42);
    assert!(!validator.is_valid(&broken));
}

#[test]
fn every_registered_event_is_listed_with_its_subject_schema_and_personal_data() {
    let document = document();
    let catalog = Registry::global().catalog();
    let listed: std::collections::BTreeSet<String> = catalog
        .events
        .iter()
        .map(|e| e.type_name.to_owned())
        .collect();
    assert_eq!(listed, contract_types::contract_types());
    for entry in &catalog.events {
        let id = entry.type_name.replace('.', "_");
        let channel = &document["channels"][&id];
        assert_eq!(
            channel["address"],
            format!("edupulse.{}", entry.subject),
            "{}",
            entry.type_name
        );
        let message = &document["components"]["messages"][&id];
        assert_eq!(message["name"], entry.type_name);
        let payload = &message["payload"];
        let properties = payload["properties"].as_object().unwrap();
        assert_eq!(
            properties.keys().collect::<Vec<_>>(),
            entry.schema["properties"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>()
        );
        let flagged: Vec<&str> = message["x-pii-fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["field"].as_str().unwrap())
            .collect();
        let pii: Vec<&str> = entry.pii_fields.iter().map(|p| p.field.json).collect();
        assert_eq!(flagged, pii, "{}", entry.type_name);
        for field in pii {
            assert_eq!(
                properties[field]["x-pii"], true,
                "{}.{field}",
                entry.type_name
            );
            // The wire form (tests/test_asyncapi_wire.rs), with the plaintext kept for readers.
            let descriptor = Registry::global().get_type(entry.type_name).unwrap();
            let mut plaintext = descriptor.payload_schema()["properties"][field].clone();
            plaintext.as_object_mut().unwrap().remove("x-pii");
            assert_eq!(properties[field]["x-plaintext"], plaintext);
            assert!(properties[field]["oneOf"].is_array());
        }
        assert_eq!(
            document["operations"][format!("publish_{id}")]["action"],
            "send"
        );
    }
    // A nested type's schema moved to the components, its reference pointed there.
    let answers = &document["components"]["messages"]["quiz_submitted_v2"]["payload"]["properties"]
        ["answers"]["items"]["$ref"];
    assert_eq!(answers, "#/components/schemas/quiz_submitted_v2.Answer");
    assert!(document["components"]["schemas"]["quiz_submitted_v2.Answer"].is_object());
}
