//! The envelope every layer passes around: the payload plus the facts about it that the store,
//! the relay and consumers need without decoding the payload.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use uuid::Uuid;

use crate::event::DomainEvent;
use crate::privacy;

/// One event with its identity, position and context.
///
/// `Debug` leaves the payload out: before encryption it holds PII in clear.
///
/// ```
/// use edupulse_events::{DomainEvent, Envelope, Uuid};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, DomainEvent)]
/// struct BadgeAwarded {
///     #[event(aggregate_id)]
///     badge_id: Uuid,
///     #[event(data_subject)]
///     student_id: Uuid,
/// }
///
/// let event = BadgeAwarded { badge_id: Uuid::nil(), student_id: Uuid::max() };
/// let envelope = Envelope::new(&event).unwrap().with_actor("teacher:42");
/// assert_eq!(envelope.type_string(), "badge.awarded.v1");
/// assert_eq!(envelope.data_subjects, vec![Uuid::max()]);
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// A UUIDv7: unique, and ordered by creation time.
    pub id: Uuid,
    /// The event name, e.g. `quiz.submitted`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload's schema version.
    pub version: u32,
    /// e.g. `quiz`.
    pub aggregate_type: String,
    /// The aggregate the event belongs to.
    pub aggregate_id: Uuid,
    /// Position in the aggregate's stream, from 1; 0 until the store assigns it.
    pub sequence: u64,
    /// The people the event is about: what erasure looks up.
    pub data_subjects: Vec<Uuid>,
    /// When the fact happened, as the writer saw it.
    pub occurred_at: DateTime<Utc>,
    /// Who did it, why, and within which trace.
    pub metadata: Metadata,
    /// The event itself, as JSON.
    pub payload: Value,
}

/// Context that travels with an event but is not part of its schema.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Shared by every event of one business operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The id of the event or command that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Who acted: an id such as `teacher:42`, never a name or an e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// W3C trace context, so a trace continues across the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
    /// Anything else the application wants to carry. Not encrypted: no PII here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Value>,
}

/// W3C Trace Context headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// `traceparent`, e.g. `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
    pub traceparent: String,
    /// `tracestate`, vendor-specific.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

/// Why an event could not be put in an envelope. Nothing was written anywhere.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The event does not serialize to JSON.
    #[error("event `{type_name}` could not be serialized to JSON ({category:?} error)")]
    Json {
        /// The event's type string.
        type_name: &'static str,
        /// serde_json's classification; the message is left out because it may quote a value.
        category: serde_json::error::Category,
    },
    /// A [`Pii`](crate::privacy::Pii) value sits where the store would not seal it: inside a
    /// field not marked `#[event(pii)]` (through a type alias, a renamed import, a nested or
    /// a flattened struct), or inside another personal-data value.
    #[error(
        "event `{type_name}` holds a Pii value at `{path}`, which is not a field marked \
         #[event(pii)], so it would be stored and published in clear; make it a top-level \
         field of the event marked #[event(pii)], or hold a plain value there"
    )]
    UnsealedPii {
        /// The event's type string.
        type_name: &'static str,
        /// Where in the payload, e.g. `details.student_name` (the JSON names).
        path: String,
    },
}

impl AsMut<Envelope> for Envelope {
    fn as_mut(&mut self) -> &mut Envelope {
        self
    }
}

impl Envelope {
    /// Wraps an event with a fresh UUIDv7 id, the current time and empty metadata.
    ///
    /// A [`Pii`](crate::privacy::Pii) value anywhere but in a field marked `#[event(pii)]` is
    /// [`EncodeError::UnsealedPii`]: the store seals only the fields the derive knows.
    pub fn new<T: DomainEvent>(event: &T) -> Result<Self, EncodeError> {
        let (payload, marked) = privacy::marking(|| serde_json::to_value(event));
        let mut payload = payload.map_err(|err| EncodeError::Json {
            type_name: T::TYPE,
            category: err.classify(),
        })?;
        let known: Vec<&str> = T::PII_FIELDS.iter().map(|pii| pii.field.json).collect();
        let names = std::cell::OnceCell::new();
        let unwrapped = privacy::unwrap_marked(&mut payload, &known, marked, &|name| {
            names
                .get_or_init(|| schema_names(T::descriptor()))
                .contains(name)
        });
        unwrapped.map_err(|path| EncodeError::UnsealedPii {
            type_name: T::TYPE,
            path,
        })?;
        Ok(Envelope {
            id: Uuid::now_v7(),
            event_type: T::NAME.to_owned(),
            version: T::VERSION,
            aggregate_type: T::AGGREGATE.to_owned(),
            aggregate_id: event.aggregate_id(),
            sequence: 0,
            data_subjects: event.data_subjects(),
            occurred_at: Utc::now(),
            metadata: Metadata::default(),
            payload,
        })
    }

    /// `name.v{version}`, e.g. `quiz.submitted.v2`.
    pub fn type_string(&self) -> String {
        format!("{}.v{}", self.event_type, self.version)
    }

    /// Sets who acted.
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.metadata.actor = Some(actor.into());
        self
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: Uuid) -> Self {
        self.metadata.correlation_id = Some(id);
        self
    }

    /// Records `cause` as this event's cause and joins its correlation (or starts one at it).
    pub fn caused_by(mut self, cause: &Envelope) -> Self {
        self.metadata.causation_id = Some(cause.id);
        self.metadata.correlation_id = Some(cause.metadata.correlation_id.unwrap_or(cause.id));
        if self.metadata.trace.is_none() {
            self.metadata.trace.clone_from(&cause.metadata.trace);
        }
        self
    }

    /// Sets the W3C trace context.
    pub fn with_trace(mut self, trace: TraceContext) -> Self {
        self.metadata.trace = Some(trace);
        self
    }

    /// Adds one free metadata entry.
    pub fn with_extra(mut self, key: impl Into<String>, value: Value) -> Self {
        self.metadata.extra.insert(key.into(), value);
        self
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("id", &self.id)
            .field("type", &self.type_string())
            .field("aggregate_type", &self.aggregate_type)
            .field("aggregate_id", &self.aggregate_id)
            .field("sequence", &self.sequence)
            .field("data_subjects", &self.data_subjects)
            .field("occurred_at", &self.occurred_at)
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metadata")
            .field("correlation_id", &self.correlation_id)
            .field("causation_id", &self.causation_id)
            .field("actor", &self.actor)
            .field("trace", &self.trace)
            .field("extra_keys", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Every property name in `descriptor`'s payload schema (its own and its nested types'):
/// the names an error may show, as opposed to a map's keys, which may be personal data.
/// Computed only when an error names a path.
fn schema_names(
    descriptor: &crate::descriptor::EventDescriptor,
) -> std::collections::BTreeSet<String> {
    fn collect(schema: &Value, names: &mut std::collections::BTreeSet<String>) {
        match schema {
            Value::Object(object) => {
                if let Some(Value::Object(properties)) = object.get("properties") {
                    names.extend(properties.keys().cloned());
                }
                object.values().for_each(|inner| collect(inner, names));
            }
            Value::Array(items) => items.iter().for_each(|inner| collect(inner, names)),
            _ => {}
        }
    }
    let mut names = std::collections::BTreeSet::new();
    collect(&descriptor.payload_schema(), &mut names);
    names
}
