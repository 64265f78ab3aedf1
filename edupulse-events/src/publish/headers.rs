//! NATS headers of a published event: CloudEvents binary mode (`ce-` attributes, the payload
//! as body), plus `Nats-Msg-Id` so JetStream drops a republished duplicate.

use async_nats::HeaderMap;

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
}

// The `ce-` form of each extension attribute, spelled out so the hot path formats nothing.
const CE_AGGREGATE_TYPE: &str = "ce-aggregatetype";
const CE_AGGREGATE_ID: &str = "ce-aggregateid";
const CE_SEQUENCE: &str = "ce-sequence";
const CE_CORRELATION_ID: &str = "ce-correlationid";
const CE_CAUSATION_ID: &str = "ce-causationid";
const CE_ACTOR: &str = "ce-actor";

/// The headers the relay sends with `envelope` (the message id is set separately).
pub fn event_headers(envelope: &Envelope, source: &str) -> HeaderMap {
    let mut buf = Uuid::encode_buffer();
    let mut h = HeaderMap::new();
    h.insert(names::SPEC_VERSION, "1.0");
    h.insert(names::ID, &*envelope.id.hyphenated().encode_lower(&mut buf));
    h.insert(names::TYPE, envelope.type_string().as_str());
    h.insert(names::SOURCE, source);
    let aggregate = envelope
        .aggregate_id
        .hyphenated()
        .encode_lower(&mut buf)
        .to_owned();
    h.insert(names::SUBJECT, aggregate.as_str());
    h.insert(
        names::TIME,
        envelope
            .occurred_at
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
            .as_str(),
    );
    h.insert(names::CONTENT_TYPE, "application/json");
    h.insert(CE_AGGREGATE_TYPE, envelope.aggregate_type.as_str());
    h.insert(CE_AGGREGATE_ID, aggregate.as_str());
    h.insert(CE_SEQUENCE, envelope.sequence.to_string().as_str());
    let m = &envelope.metadata;
    if let Some(id) = m.correlation_id {
        h.insert(CE_CORRELATION_ID, &*id.hyphenated().encode_lower(&mut buf));
    }
    if let Some(id) = m.causation_id {
        h.insert(CE_CAUSATION_ID, &*id.hyphenated().encode_lower(&mut buf));
    }
    if let Some(actor) = &m.actor {
        h.insert(CE_ACTOR, actor.as_str());
    }
    if let Some(trace) = &m.trace {
        h.insert(names::TRACEPARENT, trace.traceparent.as_str());
        if let Some(state) = &trace.tracestate {
            h.insert(names::TRACESTATE, state.as_str());
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
