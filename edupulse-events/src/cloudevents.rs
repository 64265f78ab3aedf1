//! The envelope as a CloudEvents 1.0 event (JSON structured mode), so consumers written in any
//! language, with any CloudEvents SDK, can read what the relay publishes.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use thiserror::Error;
use uuid::Uuid;

use crate::envelope::{Envelope, Metadata, TraceContext};

/// Extension attribute names (CloudEvents allows only lowercase letters and digits).
pub mod attr {
    /// The aggregate type.
    pub const AGGREGATE_TYPE: &str = "aggregatetype";
    /// The aggregate id.
    pub const AGGREGATE_ID: &str = "aggregateid";
    /// The per-aggregate sequence.
    pub const SEQUENCE: &str = "sequence";
    /// Comma-separated data-subject ids.
    pub const DATA_SUBJECTS: &str = "datasubjects";
    /// Correlation id.
    pub const CORRELATION_ID: &str = "correlationid";
    /// Causation id.
    pub const CAUSATION_ID: &str = "causationid";
    /// Who acted.
    pub const ACTOR: &str = "actor";
    /// W3C `traceparent` (CloudEvents distributed-tracing extension).
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C `tracestate`.
    pub const TRACESTATE: &str = "tracestate";
    /// Free metadata, as a JSON object in a string.
    pub const EXTRA: &str = "edupulseextra";
}

/// A CloudEvent that does not carry what an envelope needs.
#[derive(Debug, Error)]
#[error("not an edupulse CloudEvent: attribute `{attribute}` {problem}")]
pub struct CloudEventError {
    /// The attribute at fault.
    pub attribute: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl Envelope {
    /// The CloudEvents 1.0 structured-mode JSON of this envelope. `source` names the producer,
    /// e.g. `/edupulse/quiz-service`; `type` is the full type string; `subject` the aggregate id.
    pub fn to_cloudevent(&self, source: &str) -> Value {
        let mut ce = json!({
            "specversion": "1.0",
            "id": self.id,
            "source": source,
            "type": self.type_string(),
            "subject": self.aggregate_id,
            "time": self.occurred_at.to_rfc3339(),
            "datacontenttype": "application/json",
            (attr::AGGREGATE_TYPE): self.aggregate_type,
            (attr::AGGREGATE_ID): self.aggregate_id,
            (attr::SEQUENCE): self.sequence,
            "data": self.payload,
        });
        let object = ce.as_object_mut().expect("built as an object");
        if !self.data_subjects.is_empty() {
            let ids: Vec<String> = self.data_subjects.iter().map(Uuid::to_string).collect();
            object.insert(attr::DATA_SUBJECTS.into(), ids.join(",").into());
        }
        let m = &self.metadata;
        let optional = [
            (
                attr::CORRELATION_ID,
                m.correlation_id.map(|id| id.to_string()),
            ),
            (attr::CAUSATION_ID, m.causation_id.map(|id| id.to_string())),
            (attr::ACTOR, m.actor.clone()),
            (
                attr::TRACEPARENT,
                m.trace.as_ref().map(|t| t.traceparent.clone()),
            ),
            (
                attr::TRACESTATE,
                m.trace.as_ref().and_then(|t| t.tracestate.clone()),
            ),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                object.insert(key.into(), Value::String(value));
            }
        }
        if !m.extra.is_empty() {
            let extra = serde_json::to_string(&m.extra).expect("a map of JSON values serializes");
            object.insert(attr::EXTRA.into(), Value::String(extra));
        }
        ce
    }

    /// Reads back what [`to_cloudevent`](Self::to_cloudevent) wrote.
    pub fn from_cloudevent(ce: &Value) -> Result<Envelope, CloudEventError> {
        let object = ce.as_object().ok_or(CloudEventError {
            attribute: "specversion",
            problem: "is missing: the value is not a JSON object",
        })?;
        if str_attr(object, "specversion")? != "1.0" {
            return Err(CloudEventError {
                attribute: "specversion",
                problem: "is not 1.0",
            });
        }
        let type_string = str_attr(object, "type")?;
        let (name, version) = type_string
            .rsplit_once(".v")
            .and_then(|(name, v)| Some((name, v.parse::<u32>().ok()?)))
            .ok_or(CloudEventError {
                attribute: "type",
                problem: "does not end in .v<version>",
            })?;
        let data_subjects = match object.get(attr::DATA_SUBJECTS) {
            None => Vec::new(),
            Some(_) => str_attr(object, attr::DATA_SUBJECTS)?
                .split(',')
                .map(|id| id.parse().map_err(|_| invalid(attr::DATA_SUBJECTS)))
                .collect::<Result<_, _>>()?,
        };
        let trace = opt_str(object, attr::TRACEPARENT)?.map(|traceparent| TraceContext {
            traceparent,
            tracestate: opt_str(object, attr::TRACESTATE).ok().flatten(),
        });
        let extra = match opt_str(object, attr::EXTRA)? {
            Some(text) => serde_json::from_str(&text).map_err(|_| invalid(attr::EXTRA))?,
            None => std::collections::BTreeMap::default(),
        };
        Ok(Envelope {
            id: uuid_attr(object, "id")?,
            event_type: name.to_owned(),
            version,
            aggregate_type: str_attr(object, attr::AGGREGATE_TYPE)?.to_owned(),
            aggregate_id: uuid_attr(object, attr::AGGREGATE_ID)?,
            sequence: object
                .get(attr::SEQUENCE)
                .and_then(Value::as_u64)
                .ok_or(invalid(attr::SEQUENCE))?,
            data_subjects,
            occurred_at: DateTime::parse_from_rfc3339(str_attr(object, "time")?)
                .map_err(|_| invalid("time"))?
                .with_timezone(&Utc),
            metadata: Metadata {
                correlation_id: opt_uuid(object, attr::CORRELATION_ID)?,
                causation_id: opt_uuid(object, attr::CAUSATION_ID)?,
                actor: opt_str(object, attr::ACTOR)?,
                trace,
                extra,
            },
            payload: object.get("data").cloned().unwrap_or(Value::Null),
        })
    }
}

fn invalid(attribute: &'static str) -> CloudEventError {
    CloudEventError {
        attribute,
        problem: "is missing or malformed",
    }
}

fn str_attr<'a>(
    object: &'a Map<String, Value>,
    key: &'static str,
) -> Result<&'a str, CloudEventError> {
    object.get(key).and_then(Value::as_str).ok_or(invalid(key))
}

fn opt_str(
    object: &Map<String, Value>,
    key: &'static str,
) -> Result<Option<String>, CloudEventError> {
    match object.get(key) {
        None => Ok(None),
        Some(value) => value
            .as_str()
            .map(|s| Some(s.to_owned()))
            .ok_or(invalid(key)),
    }
}

fn uuid_attr(object: &Map<String, Value>, key: &'static str) -> Result<Uuid, CloudEventError> {
    str_attr(object, key)?.parse().map_err(|_| invalid(key))
}

fn opt_uuid(
    object: &Map<String, Value>,
    key: &'static str,
) -> Result<Option<Uuid>, CloudEventError> {
    opt_str(object, key)?
        .map(|s| s.parse().map_err(|_| invalid(key)))
        .transpose()
}
