//! NATS headers of a published event: CloudEvents binary mode (`ce-` attributes, the payload
//! as body), plus `Nats-Msg-Id` so JetStream drops a republished duplicate.

use async_nats::{HeaderMap, HeaderName};

use chrono::SecondsFormat;
use uuid::Uuid;

use crate::envelope::Envelope;

/// Header names, CloudEvents' where one fits.
pub mod names {
    /// CloudEvents spec version.
    pub const SPEC_VERSION: &str = "ce-specversion";
    /// The event id.
    pub const ID: &str = "ce-id";
    /// The type string, e.g. `quiz.submitted.v2`.
    pub const TYPE: &str = "ce-type";
    /// The producer.
    pub const SOURCE: &str = "ce-source";
    /// The aggregate id.
    pub const SUBJECT: &str = "ce-subject";
    /// When it happened.
    pub const TIME: &str = "ce-time";
    /// Always `application/json`.
    pub const CONTENT_TYPE: &str = "content-type";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C trace state.
    pub const TRACESTATE: &str = "tracestate";
    /// The aggregate type.
    pub const AGGREGATE_TYPE: &str = super::CE_AGGREGATE_TYPE;
    /// The aggregate id.
    pub const AGGREGATE_ID: &str = super::CE_AGGREGATE_ID;
    /// The event's sequence in its aggregate.
    pub const SEQUENCE: &str = super::CE_SEQUENCE;
    /// The correlation id.
    pub const CORRELATION_ID: &str = super::CE_CORRELATION_ID;
    /// The causation id.
    pub const CAUSATION_ID: &str = super::CE_CAUSATION_ID;
    /// Who acted.
    pub const ACTOR: &str = super::CE_ACTOR;
}

// The `ce-` form of each extension attribute, spelled out so the hot path formats nothing.
const CE_AGGREGATE_TYPE: &str = "ce-aggregatetype";
const CE_AGGREGATE_ID: &str = "ce-aggregateid";
const CE_SEQUENCE: &str = "ce-sequence";
const CE_CORRELATION_ID: &str = "ce-correlationid";
const CE_CAUSATION_ID: &str = "ce-causationid";
const CE_ACTOR: &str = "ce-actor";

// Names built once, at compile time: a name from a `&str` is validated and copied per message.
const H_SPEC_VERSION: HeaderName = HeaderName::from_static(names::SPEC_VERSION);
const H_ID: HeaderName = HeaderName::from_static(names::ID);
const H_TYPE: HeaderName = HeaderName::from_static(names::TYPE);
const H_SOURCE: HeaderName = HeaderName::from_static(names::SOURCE);
const H_SUBJECT: HeaderName = HeaderName::from_static(names::SUBJECT);
const H_TIME: HeaderName = HeaderName::from_static(names::TIME);
const H_CONTENT_TYPE: HeaderName = HeaderName::from_static(names::CONTENT_TYPE);
const H_TRACEPARENT: HeaderName = HeaderName::from_static(names::TRACEPARENT);
const H_TRACESTATE: HeaderName = HeaderName::from_static(names::TRACESTATE);
const H_AGGREGATE_TYPE: HeaderName = HeaderName::from_static(CE_AGGREGATE_TYPE);
const H_AGGREGATE_ID: HeaderName = HeaderName::from_static(CE_AGGREGATE_ID);
const H_SEQUENCE: HeaderName = HeaderName::from_static(CE_SEQUENCE);
const H_CORRELATION_ID: HeaderName = HeaderName::from_static(CE_CORRELATION_ID);
const H_CAUSATION_ID: HeaderName = HeaderName::from_static(CE_CAUSATION_ID);
const H_ACTOR: HeaderName = HeaderName::from_static(CE_ACTOR);

/// The headers the relay sends with `envelope` (the message id is set separately).
pub fn event_headers(envelope: &Envelope, source: &str) -> HeaderMap {
    let mut buf = Uuid::encode_buffer();
    let mut h = HeaderMap::new();
    h.insert(H_SPEC_VERSION, "1.0");
    h.insert(H_ID, &*envelope.id.hyphenated().encode_lower(&mut buf));
    h.insert(H_TYPE, envelope.type_string());
    h.insert(H_SOURCE, source);
    let aggregate = envelope
        .aggregate_id
        .hyphenated()
        .encode_lower(&mut buf)
        .to_owned();
    h.insert(H_SUBJECT, aggregate.as_str());
    h.insert(
        H_TIME,
        envelope
            .occurred_at
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
    );
    h.insert(H_CONTENT_TYPE, "application/json");
    h.insert(H_AGGREGATE_TYPE, envelope.aggregate_type.as_str());
    h.insert(H_AGGREGATE_ID, aggregate);
    h.insert(H_SEQUENCE, envelope.sequence.to_string());
    let m = &envelope.metadata;
    if let Some(id) = m.correlation_id {
        h.insert(H_CORRELATION_ID, &*id.hyphenated().encode_lower(&mut buf));
    }
    if let Some(id) = m.causation_id {
        h.insert(H_CAUSATION_ID, &*id.hyphenated().encode_lower(&mut buf));
    }
    if let Some(actor) = &m.actor {
        h.insert(H_ACTOR, actor.as_str());
    }
    if let Some(trace) = &m.trace {
        h.insert(H_TRACEPARENT, trace.traceparent.as_str());
        if let Some(state) = &trace.tracestate {
            h.insert(H_TRACESTATE, state.as_str());
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudevents::attr;

    #[test]
    fn extension_header_names_are_the_cloudevents_attributes() {
        for (header, attribute) in [
            (CE_AGGREGATE_TYPE, attr::AGGREGATE_TYPE),
            (CE_AGGREGATE_ID, attr::AGGREGATE_ID),
            (CE_SEQUENCE, attr::SEQUENCE),
            (CE_CORRELATION_ID, attr::CORRELATION_ID),
            (CE_CAUSATION_ID, attr::CAUSATION_ID),
            (CE_ACTOR, attr::ACTOR),
        ] {
            assert_eq!(header, format!("ce-{attribute}"));
        }
    }
}
