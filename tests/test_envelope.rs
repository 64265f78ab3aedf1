//! The envelope: identity, metadata, serde round trip and the CloudEvents mapping.

use edupulse_domain::LearningPulseResponded;
use edupulse_events::{Envelope, TraceContext, Uuid, cloudevent_attr};
use serde_json::json;

fn pulse_response() -> LearningPulseResponded {
    LearningPulseResponded {
        pulse_id: Uuid::now_v7(),
        student_id: Uuid::now_v7(),
        choice: 2,
        comment: Some("too fast".into()),
    }
}

fn full_envelope() -> Envelope {
    let cause = Envelope::new(&pulse_response()).unwrap();
    Envelope::new(&pulse_response())
        .unwrap()
        .with_actor("student:7")
        .with_trace(TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: Some("edupulse=1".into()),
        })
        .caused_by(&cause)
        .with_extra("client", json!({"app": "ios", "build": 412}))
}

#[test]
fn ids_are_time_ordered_uuid_v7() {
    let first = Envelope::new(&pulse_response()).unwrap();
    let second = Envelope::new(&pulse_response()).unwrap();
    assert_eq!(first.id.get_version_num(), 7);
    assert!(first.id < second.id);
}

#[test]
fn the_envelope_carries_the_event_identity() {
    let event = pulse_response();
    let envelope = Envelope::new(&event).unwrap();
    assert_eq!(envelope.type_string(), "learning_pulse.responded.v1");
    assert_eq!(envelope.aggregate_type, "learning_pulse");
    assert_eq!(envelope.aggregate_id, event.pulse_id);
    assert_eq!(envelope.data_subjects, vec![event.student_id]);
    assert_eq!(envelope.sequence, 0);
    assert_eq!(envelope.payload["choice"], 2);
}

#[test]
fn causation_joins_the_cause_correlation() {
    let root = Envelope::new(&pulse_response()).unwrap();
    let child = Envelope::new(&pulse_response()).unwrap().caused_by(&root);
    let grandchild = Envelope::new(&pulse_response()).unwrap().caused_by(&child);
    assert_eq!(child.metadata.causation_id, Some(root.id));
    assert_eq!(child.metadata.correlation_id, Some(root.id));
    assert_eq!(grandchild.metadata.causation_id, Some(child.id));
    assert_eq!(grandchild.metadata.correlation_id, Some(root.id));
}

#[test]
fn serde_round_trip_preserves_everything() {
    let envelope = full_envelope();
    let text = serde_json::to_string(&envelope).unwrap();
    let back: Envelope = serde_json::from_str(&text).unwrap();
    assert_eq!(back, envelope);
}

#[test]
fn cloudevents_mapping_round_trips() {
    let envelope = full_envelope();
    let ce = envelope.to_cloudevent("/edupulse/pulse-service");
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["type"], "learning_pulse.responded.v1");
    assert_eq!(ce["source"], "/edupulse/pulse-service");
    assert_eq!(ce["id"], json!(envelope.id));
    assert_eq!(ce["subject"], json!(envelope.aggregate_id));
    assert_eq!(ce["datacontenttype"], "application/json");
    assert_eq!(
        ce[cloudevent_attr::TRACEPARENT],
        envelope.metadata.trace.as_ref().unwrap().traceparent
    );
    assert_eq!(ce["data"], envelope.payload);
    // Extension attribute names must be lowercase alphanumeric (CloudEvents 1.0 §3.1.1).
    for key in ce.as_object().unwrap().keys() {
        assert!(
            key.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{key} is not a valid CloudEvents attribute name"
        );
    }
    let back = Envelope::from_cloudevent(&ce).unwrap();
    // RFC 3339 keeps nanoseconds, so even the timestamp survives.
    assert_eq!(back, envelope);
}

#[test]
fn a_foreign_cloudevent_is_refused_with_the_attribute_named() {
    let err = Envelope::from_cloudevent(&json!({
        "specversion": "1.0", "id": Uuid::now_v7(), "source": "/x", "type": "com.example.thing"
    }))
    .unwrap_err();
    assert_eq!(err.attribute, "type");
}
