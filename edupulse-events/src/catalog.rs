//! A serializable description of every event type, for documentation and for other teams.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::descriptor::EventDescriptor;
use crate::event::{FieldName, PiiField};
use crate::privacy::{SEALED_FORM_PATTERN, SEALED_MARKER, erased_json};

/// Every registered event type, sorted by name and version.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    /// One entry per `(name, version)`.
    pub events: Vec<CatalogEntry>,
}

/// One event type as other teams need to know it.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogEntry {
    /// e.g. `quiz.submitted`.
    pub name: &'static str,
    /// The payload's schema version.
    pub version: u32,
    /// e.g. `quiz.submitted.v2`.
    #[serde(rename = "type")]
    pub type_name: &'static str,
    /// Whether this is the newest version of its name (what decoding produces).
    pub latest: bool,
    /// The aggregate type.
    pub aggregate: &'static str,
    /// The subject below the runtime's prefix.
    pub subject: &'static str,
    /// The Rust type that defines it.
    pub rust_type: &'static str,
    /// The field holding the aggregate id.
    pub aggregate_id_field: FieldName,
    /// The fields naming the people the event is about.
    pub data_subject_fields: &'static [FieldName],
    /// Personal-data fields, encrypted per owner and erasable.
    pub pii_fields: &'static [PiiField],
    /// The type string this version is upcast from, if any.
    pub upcast_from: Option<String>,
    /// JSON Schema (draft 2020-12) of the payload as stored and published: each personal-data
    /// property is the sealed form or the erased marker (a pattern for the sealed form, a constant for the erased one), its plaintext
    /// schema kept under `x-plaintext`.
    pub schema: Value,
}

impl CatalogEntry {
    pub(crate) fn describe(d: &'static EventDescriptor, latest: bool) -> Self {
        CatalogEntry {
            name: d.name(),
            version: d.version(),
            type_name: d.type_name(),
            latest,
            aggregate: d.aggregate(),
            subject: d.subject(),
            rust_type: d.rust_type(),
            aggregate_id_field: d.aggregate_id_field(),
            data_subject_fields: d.data_subject_fields(),
            pii_fields: d.pii_fields(),
            upcast_from: d
                .upcast()
                .map(|u| format!("{}.v{}", u.from_name(), u.from_version())),
            schema: wire_schema(d.payload_schema(), d.pii_fields()),
        }
    }
}

/// `schema` (a payload's schema as the Rust type reads it) turned into the schema of what the
/// wire carries: each of `pii_fields` is `{"$pii": "<sealed form>"}` (matching
/// [`SEALED_FORM_PATTERN`]), the erased marker `{"$pii": "erased"}` (a scrubbed value), or
/// `null` where the plaintext schema allows it (the store leaves `null` unsealed). The
/// property keeps `"x-pii": true` and carries its plaintext schema under `x-plaintext`, so
/// readers still see what the value is once opened.
///
/// The derive refuses `#[event(pii)]` on a flattened field, so every PII field is a top-level
/// property; its plaintext schema (inline, a `$ref`, an `anyOf` with `null`) is replaced whole.
pub(crate) fn wire_schema(mut schema: Value, pii_fields: &[PiiField]) -> Value {
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return schema;
    };
    for pii in pii_fields {
        if let Some(property) = properties.get_mut(pii.field.json) {
            *property = sealed_property(property.take());
        }
    }
    schema
}

fn sealed_property(mut plaintext: Value) -> Value {
    let mut branches = vec![
        json!({
            "description": "sealed with the owner's data key",
            "type": "object",
            "properties": {
                SEALED_MARKER: { "type": "string", "pattern": SEALED_FORM_PATTERN },
            },
            "required": [SEALED_MARKER],
            "additionalProperties": false,
        }),
        json!({
            "description": "erased: the owner's keys destroyed and the stored ciphertext overwritten",
            "const": erased_json(),
        }),
    ];
    if admits_null(&plaintext) {
        branches.push(json!({ "description": "absent", "type": "null" }));
    }
    let mut property = Map::new();
    if let Some(object) = plaintext.as_object_mut() {
        object.remove("x-pii");
        if let Some(description) = object.get("description") {
            property.insert("description".into(), description.clone());
        }
    }
    property.insert("x-pii".into(), Value::Bool(true));
    property.insert("x-plaintext".into(), plaintext);
    property.insert("oneOf".into(), Value::Array(branches));
    Value::Object(property)
}

/// Whether `schema` lets a value be `null`, as schemars writes an `Option`: `"type"` with
/// `"null"`, or an `anyOf`/`oneOf` branch that does. A schema with no assertion at all (a
/// `serde_json::Value` field) admits it too.
fn admits_null(schema: &Value) -> bool {
    const ASSERTIONS: [&str; 7] = ["type", "const", "enum", "anyOf", "oneOf", "allOf", "$ref"];
    let Some(object) = schema.as_object() else {
        return schema == &Value::Bool(true);
    };
    let typed_null = match object.get("type") {
        Some(Value::String(t)) => t == "null",
        Some(Value::Array(types)) => types.iter().any(|t| t == "null"),
        _ => false,
    };
    let branch_null = ["anyOf", "oneOf"].iter().any(|keyword| {
        object
            .get(*keyword)
            .and_then(Value::as_array)
            .is_some_and(|branches| branches.iter().any(admits_null))
    });
    let unconstrained = !ASSERTIONS.iter().any(|k| object.contains_key(*k));
    let listed_null = object.get("const") == Some(&Value::Null)
        || object
            .get("enum")
            .and_then(Value::as_array)
            .is_some_and(|values| values.contains(&Value::Null));
    typed_null || branch_null || listed_null || unconstrained
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: PiiField =
        PiiField::new(FieldName::new("name", "name"), FieldName::new("id", "id"));

    // The cases read best as JSON literals passed straight in.
    #[allow(clippy::needless_pass_by_value)]
    fn wire_property(plaintext: Value) -> Value {
        let schema = json!({
            "type": "object",
            "properties": { "id": { "type": "string" }, "name": plaintext },
            "required": ["id", "name"],
        });
        let wire = wire_schema(schema, &[NAME]);
        assert_eq!(wire["properties"]["id"], json!({ "type": "string" }));
        assert_eq!(wire["required"], json!(["id", "name"]));
        wire["properties"]["name"].clone()
    }

    fn branch_types(property: &Value) -> Vec<Value> {
        property["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.get("type").cloned().unwrap_or(Value::Null))
            .collect()
    }

    #[test]
    fn a_pii_property_becomes_the_sealed_form_or_the_erased_marker_with_its_plaintext_kept() {
        let property = wire_property(json!({ "type": "string", "x-pii": true }));
        assert_eq!(property["x-pii"], true);
        assert_eq!(property["x-plaintext"], json!({ "type": "string" }));
        let sealed = &property["oneOf"][0];
        assert_eq!(
            sealed["properties"][SEALED_MARKER]["pattern"],
            SEALED_FORM_PATTERN
        );
        assert_eq!(sealed["required"], json!([SEALED_MARKER]));
        assert_eq!(sealed["additionalProperties"], false);
        assert_eq!(property["oneOf"][1]["const"], erased_json());
        assert_eq!(branch_types(&property), [json!("object"), Value::Null]);
    }

    #[test]
    fn null_stays_allowed_only_where_the_plaintext_allows_it() {
        let null = json!("null");
        for optional in [
            json!({ "type": ["string", "null"], "x-pii": true }),
            json!({ "anyOf": [{ "$ref": "#/$defs/Address" }, { "type": "null" }], "x-pii": true }),
            json!({ "x-pii": true }),
            Value::Bool(true),
        ] {
            let property = wire_property(optional.clone());
            assert_eq!(branch_types(&property).last(), Some(&null), "{optional}");
        }
        for required in [
            json!({ "type": "string", "x-pii": true }),
            json!({ "$ref": "#/$defs/Address", "x-pii": true }),
            json!({ "type": "integer", "format": "uint32", "minimum": 0, "x-pii": true }),
        ] {
            let property = wire_property(required.clone());
            assert!(!branch_types(&property).contains(&null), "{required}");
        }
        // A reference stays in the plaintext, where the AsyncAPI export repoints it.
        let property = wire_property(json!({ "$ref": "#/$defs/Address", "x-pii": true }));
        assert_eq!(
            property["x-plaintext"],
            json!({ "$ref": "#/$defs/Address" })
        );
    }

    #[test]
    fn properties_that_are_not_pii_are_left_as_they_are() {
        let schema = json!({ "type": "object", "properties": { "id": { "type": "string" } } });
        assert_eq!(wire_schema(schema.clone(), &[NAME]), schema);
        assert_eq!(wire_schema(schema.clone(), &[]), schema);
    }
}
