//! NATS headers of a published event: CloudEvents binary mode (`ce-` attributes, the payload
//! as body), plus `Nats-Msg-Id` so JetStream drops a republished duplicate.

use async_nats::HeaderMap;

use crate::cloudevents::attr;
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

fn ce(name: &str) -> String {
    format!("ce-{name}")
}

/// The headers the relay sends with `envelope` (the message id is set separately).
pub fn event_headers(envelope: &Envelope, source: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(names::SPEC_VERSION, "1.0");
    h.insert(names::ID, envelope.id.to_string().as_str());
    h.insert(names::TYPE, envelope.type_string().as_str());
    h.insert(names::SOURCE, source);
    h.insert(names::SUBJECT, envelope.aggregate_id.to_string().as_str());
    h.insert(names::TIME, envelope.occurred_at.to_rfc3339().as_str());
    h.insert(names::CONTENT_TYPE, "application/json");
    h.insert(
        ce(attr::AGGREGATE_TYPE).as_str(),
        envelope.aggregate_type.as_str(),
    );
    h.insert(
        ce(attr::AGGREGATE_ID).as_str(),
        envelope.aggregate_id.to_string().as_str(),
    );
    h.insert(
        ce(attr::SEQUENCE).as_str(),
        envelope.sequence.to_string().as_str(),
    );
    let m = &envelope.metadata;
    if let Some(id) = m.correlation_id {
        h.insert(ce(attr::CORRELATION_ID).as_str(), id.to_string().as_str());
    }
    if let Some(id) = m.causation_id {
        h.insert(ce(attr::CAUSATION_ID).as_str(), id.to_string().as_str());
    }
    if let Some(actor) = &m.actor {
        h.insert(ce(attr::ACTOR).as_str(), actor.as_str());
    }
    if let Some(trace) = &m.trace {
        h.insert(names::TRACEPARENT, trace.traceparent.as_str());
        if let Some(state) = &trace.tracestate {
            h.insert(names::TRACESTATE, state.as_str());
        }
    }
    h
}
