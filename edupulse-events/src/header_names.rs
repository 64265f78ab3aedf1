//! The NATS header names of a published event: CloudEvents binary mode (`ce-` attributes)
//! where one fits. Without the broker too, so the AsyncAPI document can name them.

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
pub(crate) const CE_AGGREGATE_TYPE: &str = "ce-aggregatetype";
pub(crate) const CE_AGGREGATE_ID: &str = "ce-aggregateid";
pub(crate) const CE_SEQUENCE: &str = "ce-sequence";
pub(crate) const CE_CORRELATION_ID: &str = "ce-correlationid";
pub(crate) const CE_CAUSATION_ID: &str = "ce-causationid";
pub(crate) const CE_ACTOR: &str = "ce-actor";

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
