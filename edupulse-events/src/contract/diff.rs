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
            inline(old_schema, &before_root, 0),
            inline(new_schema, &after_root, 0),
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
    if rules(&before_root) != rules(&after_root) {
        changes.push("the payload's own rules changed (outside its fields)".into());
    }
    changes
}

/// A copy of `schema` without documentation keywords.
fn undocumented(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| !DOCUMENTATION.contains(&key.as_str()))
                .map(|(key, value)| (key.clone(), undocumented(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(undocumented).collect()),
        other => other.clone(),
    }
}

/// `schema` with its `$ref`s replaced by what they point to, so a change inside a nested
/// type shows on the field that uses it. Recursion stops at a fixed depth.
fn inline(schema: &Value, root: &Value, depth: usize) -> Value {
    if depth > 16 {
        return schema.clone();
    }
    match schema {
        Value::Object(map) => {
            if let Some(target) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix('#'))
                .and_then(|pointer| root.pointer(pointer))
            {
                return inline(target, root, depth + 1);
            }
            Value::Object(
                map.iter()
                    .map(|(key, value)| (key.clone(), inline(value, root, depth + 1)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| inline(item, root, depth + 1))
                .collect(),
        ),
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
