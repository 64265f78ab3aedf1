//! What changed between a snapshotted payload schema and today's, said field by field.
//! Documentation (descriptions, titles) is not part of the contract; everything a reader's
//! decoding depends on is.

use serde_json::{Map, Value};

/// The words documentation lives under, removed before comparing.
const DOCUMENTATION: [&str; 4] = ["description", "title", "$comment", "examples"];

/// Each difference between `before` and `after` (payload JSON Schemas), one line each;
/// empty when they are the same contract.
pub(crate) fn schema_changes(before: &Value, after: &Value) -> Vec<String> {
    let (before_root, after_root) = (undocumented(before), undocumented(after));
    let empty = Map::new();
    let properties = |root: &Value| -> Map<String, Value> {
        root.get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty)
            .clone()
    };
    let required = |root: &Value| -> Vec<String> {
        root.get("required")
            .and_then(Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (old, new) = (properties(&before_root), properties(&after_root));
    let (old_required, new_required) = (required(&before_root), required(&after_root));
    let mut changes = Vec::new();
    for (name, old_schema) in &old {
        let Some(new_schema) = new.get(name) else {
            changes.push(format!("field `{name}` was removed"));
            continue;
        };
        let (was, is) = (
            inline(old_schema, &before_root, &mut Vec::new()),
            inline(new_schema, &after_root, &mut Vec::new()),
        );
        if was != is {
            changes.push(format!(
                "field `{name}` changed from {} to {}",
                shape(&was),
                shape(&is)
            ));
        }
        match (old_required.contains(name), new_required.contains(name)) {
            (true, false) => changes.push(format!("field `{name}` became optional")),
            (false, true) => changes.push(format!("field `{name}` became required")),
            _ => {}
        }
    }
    for name in new.keys().filter(|name| !old.contains_key(*name)) {
        let required = if new_required.contains(name) {
            "required"
        } else {
            "optional"
        };
        changes.push(format!("field `{name}` was added ({required})"));
    }
    // Rules of the payload itself: unknown fields refused, a tagged layout, and so on.
    let rules = |root: &Value| -> Map<String, Value> {
        let mut rest = root.as_object().cloned().unwrap_or_default();
        for key in ["properties", "required", "$defs", "definitions", "$schema"] {
            rest.remove(key);
        }
        rest
    };
    // Flattened fields sit here (`allOf` of a reference): followed like a field's type.
    let rules_of = |root: &Value| inline(&Value::Object(rules(root)), root, &mut Vec::new());
    if rules_of(&before_root) != rules_of(&after_root) {
        changes.push("the payload's own rules changed (outside its fields)".into());
    }
    changes
}

/// Keywords whose value is a map from names (of fields, of types) to schemas: the names are
/// data, not keywords, so a field called `title` is kept.
const SCHEMA_MAPS: [&str; 4] = ["properties", "$defs", "definitions", "patternProperties"];

/// A copy of `schema` without documentation keywords.
fn undocumented(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| !DOCUMENTATION.contains(&key.as_str()))
                .map(|(key, value)| {
                    let value = match value {
                        Value::Object(named) if SCHEMA_MAPS.contains(&key.as_str()) => {
                            Value::Object(
                                named
                                    .iter()
                                    .map(|(name, schema)| (name.clone(), undocumented(schema)))
                                    .collect(),
                            )
                        }
                        other => undocumented(other),
                    };
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(undocumented).collect()),
        other => other.clone(),
    }
}

/// `schema` with its `$ref`s replaced by what they point to (keywords beside a `$ref`, such as
/// `x-pii`, kept), so a change inside a nested type shows on the field that uses it. A type
/// that refers to itself is compared by its reference from the second time on.
fn inline(schema: &Value, root: &Value, seen: &mut Vec<String>) -> Value {
    match schema {
        Value::Object(map) => {
            if let Some(reference) = map.get("$ref").and_then(Value::as_str)
                && !seen.iter().any(|s| s == reference)
                && let Some(target) = reference
                    .strip_prefix('#')
                    .and_then(|pointer| root.pointer(pointer))
            {
                seen.push(reference.to_owned());
                let mut resolved = inline(target, root, seen);
                seen.pop();
                if let Value::Object(out) = &mut resolved {
                    for (key, value) in map.iter().filter(|(key, _)| *key != "$ref") {
                        out.insert(key.clone(), inline(value, root, seen));
                    }
                }
                return resolved;
            }
            Value::Object(
                map.iter()
                    .map(|(key, value)| (key.clone(), inline(value, root, seen)))
                    .collect(),
            )
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| inline(item, root, seen)).collect())
        }
        other => other.clone(),
    }
}

/// A short name for a field's schema: its type and format, or the JSON when it has neither.
fn shape(schema: &Value) -> String {
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => return format!("`{schema}`"),
    };
    let format = schema
        .get("format")
        .and_then(Value::as_str)
        .map(|f| format!(" ({f})"))
        .unwrap_or_default();
    let pii = if schema.get("x-pii") == Some(&Value::Bool(true)) {
        ", personal data"
    } else {
        ""
    };
    let simple = format!("{kind}{format}{pii}");
    // Same type and format but another inner shape (an item type, a nested field): the JSON.
    let plain: Vec<&str> = ["type", "format", "x-pii", "minimum"].to_vec();
    let nested = schema
        .as_object()
        .is_some_and(|map| map.keys().any(|key| !plain.contains(&key.as_str())));
    if nested {
        format!("{simple} `{schema}`")
    } else {
        simple
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::schema_changes;

    // The cases read best as JSON literals passed straight in.
    #[allow(clippy::needless_pass_by_value)]
    fn object(properties: serde_json::Value) -> serde_json::Value {
        json!({ "type": "object", "properties": properties })
    }

    #[test]
    fn documentation_is_not_a_change_but_a_field_called_title_is() {
        let before = object(json!({ "title": { "type": "string", "description": "old words" } }));
        let reworded = object(json!({ "title": { "type": "string", "description": "new words" } }));
        assert!(schema_changes(&before, &reworded).is_empty());
        let removed = object(json!({}));
        assert_eq!(
            schema_changes(&before, &removed),
            vec!["field `title` was removed".to_owned()]
        );
    }

    #[test]
    fn a_change_inside_a_referenced_or_flattened_type_is_seen() {
        let with = |kind: &str| {
            json!({
                "type": "object",
                "properties": { "address": { "$ref": "#/$defs/Address" } },
                "allOf": [ { "$ref": "#/$defs/Extra" } ],
                "$defs": {
                    "Address": { "type": "object", "properties": { "city": { "type": kind } } },
                    "Extra": { "type": "object", "properties": { "note": { "type": kind } } }
                }
            })
        };
        let changes = schema_changes(&with("string"), &with("integer"));
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(
            changes[0].starts_with("field `address` changed"),
            "{changes:?}"
        );
        assert!(changes[1].contains("outside its fields"), "{changes:?}");
    }

    #[test]
    fn marking_a_referenced_field_personal_data_is_a_change() {
        let defs = json!({ "Address": { "type": "object" } });
        let plain = json!({
            "type": "object",
            "properties": { "address": { "$ref": "#/$defs/Address" } },
            "$defs": defs
        });
        let pii = json!({
            "type": "object",
            "properties": { "address": { "$ref": "#/$defs/Address", "x-pii": true } },
            "$defs": defs
        });
        assert_eq!(schema_changes(&plain, &pii).len(), 1);
    }
}
