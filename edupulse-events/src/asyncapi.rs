//! The catalog as an AsyncAPI 3.0 document: what other teams read to consume the events, with
//! the NATS subject of each version, its headers, its payload schema and its personal data.

use serde_json::{Map, Value, json};

use crate::catalog::{Catalog, CatalogEntry};
use crate::header_names::names as headers;

/// What the document says about the application that publishes the events.
#[derive(Debug, Clone)]
pub struct AsyncApiInfo {
    /// The application's name.
    pub title: String,
    /// The application's (API) version, not an event's.
    pub version: String,
    /// The runtime's subject prefix, so channel addresses are the real subjects.
    pub subject_prefix: String,
    /// The NATS server to list, `host:port`; none is listed when `None`.
    pub server: Option<String>,
}

impl AsyncApiInfo {
    /// An application with the default subject prefix (`edupulse`) and no server.
    pub fn new(title: impl Into<String>, version: impl Into<String>) -> Self {
        AsyncApiInfo {
            title: title.into(),
            version: version.into(),
            subject_prefix: "edupulse".into(),
            server: None,
        }
    }
}

impl Catalog {
    /// An AsyncAPI 3.0 document: a channel per event version (address: its subject), a `send`
    /// operation per channel, and a message per version whose payload is the JSON Schema of
    /// the body as published (the catalog's [`schema`](CatalogEntry::schema)): personal-data
    /// properties are the sealed form `{"$pii": "1.<owner>.<key version>.<base64>"}` or the
    /// erased marker, marked `x-pii` with their plaintext schema under `x-plaintext`, and
    /// listed in `x-pii-fields`.
    pub fn to_asyncapi(&self, info: &AsyncApiInfo) -> Value {
        let mut channels = Map::new();
        let mut operations = Map::new();
        let mut messages = Map::new();
        let mut schemas = Map::new();
        for entry in &self.events {
            // `a.b_c` and `a_b.c` would share an id: the later one (the catalog is sorted, so
            // always the same one) gets a suffix rather than replacing the other.
            let mut id = component_id(entry.type_name);
            while channels.contains_key(&id) {
                id.push('_');
            }
            channels.insert(
                id.clone(),
                json!({
                    "address": format!("{}.{}", info.subject_prefix, entry.subject),
                    "title": entry.type_name,
                    "messages": { &id: { "$ref": format!("#/components/messages/{id}") } },
                }),
            );
            operations.insert(
                format!("publish_{id}"),
                json!({
                    "action": "send",
                    "channel": { "$ref": format!("#/channels/{id}") },
                    "messages": [ { "$ref": format!("#/channels/{id}/messages/{id}") } ],
                }),
            );
            messages.insert(id.clone(), message(entry, &id, &mut schemas));
        }
        schemas.insert("Headers".into(), headers_schema());
        let mut document = json!({
            "asyncapi": "3.0.0",
            "info": {
                "title": info.title,
                "version": info.version,
                "description": "Domain events, relayed from the transactional outbox to NATS \
                                JetStream (CloudEvents binary mode: `ce-` headers, JSON body).",
            },
            "defaultContentType": "application/json",
            "channels": channels,
            "operations": operations,
            "components": { "messages": messages, "schemas": schemas },
        });
        if let Some(server) = &info.server {
            document["servers"] = json!({
                "nats": { "host": server, "protocol": "nats", "description": "NATS JetStream" }
            });
        }
        document
    }
}

/// `quiz.submitted.v2` → `quiz_submitted_v2` (component keys allow no dots in channels).
fn component_id(type_name: &str) -> String {
    type_name.replace(['.', '-'], "_")
}

fn message(entry: &CatalogEntry, id: &str, schemas: &mut Map<String, Value>) -> Value {
    let pii: Vec<Value> = entry
        .pii_fields
        .iter()
        .map(|p| json!({ "field": p.field.json, "owner": p.owner.json }))
        .collect();
    json!({
        "name": entry.type_name,
        "title": entry.type_name,
        "summary": format!(
            "`{}` version {} on aggregate `{}`{}",
            entry.name,
            entry.version,
            entry.aggregate,
            if entry.latest { "" } else { " (an older version, upcast by readers)" }
        ),
        "contentType": "application/json",
        "headers": { "$ref": "#/components/schemas/Headers" },
        "payload": payload(&entry.schema, id, schemas),
        "x-aggregate": entry.aggregate,
        "x-aggregate-id-field": entry.aggregate_id_field.json,
        "x-data-subject-fields": entry.data_subject_fields.iter().map(|f| f.json).collect::<Vec<_>>(),
        "x-pii-fields": pii,
        "x-latest": entry.latest,
        "x-upcast-from": entry.upcast_from,
    })
}

/// The payload schema with its `$defs` moved to `components/schemas` (named after the
/// message, so two events' same-named types stay apart) and its references pointed there.
fn payload(schema: &Value, id: &str, schemas: &mut Map<String, Value>) -> Value {
    let mut schema = schema.clone();
    let Some(object) = schema.as_object_mut() else {
        return schema;
    };
    object.remove("$schema");
    if let Some(Value::Object(defs)) = object.remove("$defs") {
        for (name, mut def) in defs {
            repoint(&mut def, id);
            schemas.insert(format!("{id}.{name}"), def);
        }
    }
    repoint(&mut schema, id);
    schema
}

fn repoint(value: &mut Value, id: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get_mut("$ref")
                && let Some(name) = target.strip_prefix("#/$defs/")
            {
                *target = format!("#/components/schemas/{id}.{name}");
            }
            map.values_mut().for_each(|v| repoint(v, id));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| repoint(v, id)),
        _ => {}
    }
}

/// The headers every published event carries.
fn headers_schema() -> Value {
    let text = |description: &str| json!({ "type": "string", "description": description });
    json!({
        "type": "object",
        "required": [headers::ID, headers::TYPE, headers::SOURCE, headers::SPEC_VERSION,
                     headers::AGGREGATE_ID, headers::SEQUENCE, "Nats-Msg-Id"],
        "properties": {
            headers::SPEC_VERSION: text("CloudEvents spec version, 1.0"),
            headers::ID: text("the event id (UUIDv7)"),
            "Nats-Msg-Id": text("the event id again: JetStream drops a republished duplicate"),
            headers::TYPE: text("the type string, e.g. quiz.submitted.v2"),
            headers::SOURCE: text("the publishing application"),
            headers::SUBJECT: text("the aggregate id"),
            headers::TIME: text("when the event happened (RFC 3339)"),
            headers::CONTENT_TYPE: text("application/json"),
            headers::AGGREGATE_TYPE: text("the aggregate type"),
            headers::AGGREGATE_ID: text("the aggregate id"),
            headers::SEQUENCE: text("the event's position in its aggregate, from 1"),
            headers::CORRELATION_ID: text("the correlation id, if any"),
            headers::CAUSATION_ID: text("the id of the event or command that caused this one"),
            headers::ACTOR: text("who caused it"),
            headers::TRACEPARENT: text("W3C trace context"),
            headers::TRACESTATE: text("W3C trace state"),
        },
    })
}
