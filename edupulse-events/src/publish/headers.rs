//! NATS headers of a published event: CloudEvents binary mode (`ce-` attributes, the payload
//! as body), plus `Nats-Msg-Id` so JetStream drops a republished duplicate.

use async_nats::{HeaderMap, HeaderName};

use chrono::SecondsFormat;
use uuid::Uuid;

use crate::envelope::Envelope;

use crate::header_names::names;
use crate::header_names::{
    CE_ACTOR, CE_AGGREGATE_ID, CE_AGGREGATE_TYPE, CE_CAUSATION_ID, CE_CORRELATION_ID, CE_SEQUENCE,
};

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
