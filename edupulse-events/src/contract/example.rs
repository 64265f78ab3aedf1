//! A payload made from a JSON Schema: the golden fixture a snapshot keeps, so an old version
//! is still proven to decode (and upcast) long after the code that wrote it is gone.

use serde_json::{Map, Value, json};

/// Nesting followed before giving up on a recursive type.
const MAX_DEPTH: usize = 12;

/// A value the schema accepts, built from its first alternative of everything: every property
/// present (optional ones too, so they are exercised), one item per array. `None` when the
/// schema is recursive past [`MAX_DEPTH`] or uses a shape this cannot build.
pub(crate) fn example_of(schema: &Value) -> Option<Value> {
    build(schema, schema, 0)
}

fn build(schema: &Value, root: &Value, depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    let Value::Object(schema) = schema else {
        // `true`: anything goes.
        return Some(Value::Null);
    };
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = target.strip_prefix('#')?;
        return build(root.pointer(pointer)?, root, depth + 1);
    }
    if let Some(value) = schema.get("const") {
        return Some(value.clone());
    }
    if let Some(first) = schema.get("enum").and_then(|e| e.as_array()?.first()) {
        return Some(first.clone());
    }
    for alternatives in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(alternatives).and_then(Value::as_array) {
            return options
                .iter()
                .find_map(|option| build(option, root, depth + 1));
        }
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        let mut merged = Map::new();
        for part in parts {
            if let Value::Object(fields) = build(part, root, depth + 1)? {
                merged.extend(fields);
            }
        }
        return Some(Value::Object(merged));
    }
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        // `["string", "null"]`: the value, not its absence.
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|kind| *kind != "null")
            .unwrap_or("null"),
        _ if schema.contains_key("properties") => "object",
        _ => return Some(Value::Null),
    };
    Some(match kind {
        "null" => Value::Null,
        "boolean" => Value::Bool(false),
        "integer" => json!(
            schema
                .get("minimum")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .max(0)
        ),
        "number" => json!(0.5),
        "string" => Value::String(string_example(schema)),
        "array" => {
            let item = schema.get("items").unwrap_or(&Value::Bool(true));
            Value::Array(vec![build(item, root, depth + 1)?])
        }
        "object" => {
            let mut fields = Map::new();
            if let Some(Value::Object(properties)) = schema.get("properties") {
                for (name, property) in properties {
                    fields.insert(name.clone(), build(property, root, depth + 1)?);
                }
            }
            Value::Object(fields)
        }
        _ => return None,
    })
}

fn string_example(schema: &Map<String, Value>) -> String {
    match schema.get("format").and_then(Value::as_str) {
        Some("uuid") => "01900000-0000-7000-8000-000000000001".into(),
        Some("date-time") => "2026-01-01T00:00:00Z".into(),
        Some("date") => "2026-01-01".into(),
        Some("email") => "someone@example.org".into(),
        Some("uri") => "https://example.org/".into(),
        _ => "example".into(),
    }
}
