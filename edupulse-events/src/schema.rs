//! JSON Schema of an event payload, assembled from its fields by generated code. The derive
//! builds the schema itself rather than requiring `#[derive(JsonSchema)]`, so an event type
//! needs no extra derive and a user's own `JsonSchema` impl never conflicts with ours.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

/// One payload field as the derive sees it.
#[doc(hidden)]
pub struct FieldSchema {
    /// The JSON key.
    pub name: &'static str,
    /// Whether serde requires the key (not `Option`, not `#[serde(default)]`).
    pub required: bool,
    /// Whether the field is `#[event(pii)]`: flagged `"x-pii": true`.
    pub pii: bool,
    /// `#[serde(flatten)]`: the field's properties join the parent's.
    pub flatten: bool,
    /// The field type's schema.
    pub schema: fn(&mut SchemaGenerator) -> Schema,
}

/// A payload field's type has a JSON Schema: `JsonSchema` under a name whose error says
/// where to get one (schemars's own error does not).
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no JSON Schema, which the event catalog needs for every payload field",
    label = "this field's type does not implement `JsonSchema`",
    note = "derive it through the runtime's re-export, no new dependency needed: \
            `#[derive(edupulse_events::schemars::JsonSchema)]` with \
            `#[schemars(crate = \"edupulse_events::schemars\")]` on the type"
)]
pub trait FieldSchemaOf: JsonSchema {}

impl<T: JsonSchema + ?Sized> FieldSchemaOf for T {}

/// The schema of a field's type; generic so generated code can name it as a fn pointer.
#[doc(hidden)]
pub fn field_schema<T: FieldSchemaOf + ?Sized>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// The draft 2020-12 schema of an object with these fields.
#[doc(hidden)]
pub fn object_schema(title: &str, fields: &[FieldSchema]) -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut flattened = Vec::new();
    for field in fields {
        let schema = (field.schema)(&mut generator);
        if field.flatten {
            flattened.push(schema.to_value());
            continue;
        }
        let mut value = schema.to_value();
        if field.pii {
            match value.as_object_mut() {
                Some(object) => {
                    object.insert("x-pii".into(), Value::Bool(true));
                }
                None => value = json!({ "x-pii": true }),
            }
        }
        properties.insert(field.name.to_owned(), value);
        if field.required {
            required.push(Value::String(field.name.to_owned()));
        }
    }
    let mut root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": properties,
        "required": required,
    });
    if !flattened.is_empty() {
        root["allOf"] = Value::Array(flattened);
    }
    let definitions = generator.take_definitions(true);
    if !definitions.is_empty() {
        root["$defs"] = Value::Object(definitions);
    }
    root
}
