//! The global registry over the EduPulse domain types: validation, lookup, upcasting decode,
//! errors that list what is known, and the catalog.

#[path = "common/contract_types.rs"]
mod contract_types;

use edupulse_domain::{LessonPublished, QuizSubmitted, QuizSubmittedV1};
use edupulse_events::{DecodeError, DomainEvent, Envelope, Registry, Uuid};
use serde_json::json;

#[test]
fn the_domain_registry_is_valid() {
    Registry::global().validate().unwrap();
}

#[test]
fn a_v1_payload_decodes_into_v2_through_the_upcast() {
    let v1 = QuizSubmittedV1 {
        quiz_id: Uuid::now_v7(),
        student_id: Uuid::now_v7(),
        student_name: "Ada".into(),
        correct: 3,
        total: 4,
    };
    let stored = Envelope::new(&v1).unwrap();
    assert_eq!(stored.version, 1);

    let decoded = Registry::global()
        .decode(&stored.event_type, stored.version, &stored.payload)
        .unwrap();
    assert_eq!(decoded.type_name(), "quiz.submitted.v2");
    assert!(!decoded.is::<QuizSubmittedV1>());
    let v2 = decoded.downcast::<QuizSubmitted>().unwrap();
    assert_eq!(v2, QuizSubmitted::from(v1.clone()));
    assert_eq!(v2.score, 0.75);
    assert_eq!(v2.student_name, v1.student_name);
}

#[test]
fn the_newest_version_decodes_as_itself() {
    let lesson = LessonPublished {
        lesson_id: Uuid::now_v7(),
        course_id: Uuid::now_v7(),
        teacher_id: Uuid::now_v7(),
        teacher_name: "Ms Lovelace".into(),
        title: "Fractions".into(),
        published_at: edupulse_events::chrono::Utc::now(),
    };
    let payload = edupulse_events::privacy::reveal(|| serde_json::to_value(&lesson)).unwrap();
    let decoded = Registry::global()
        .decode("lesson.published", 1, &payload)
        .unwrap();
    assert_eq!(decoded.aggregate_id(), lesson.lesson_id);
    assert_eq!(decoded.data_subjects(), vec![lesson.teacher_id]);
    assert_eq!(decoded.downcast_ref::<LessonPublished>(), Some(&lesson));
    assert!(decoded.downcast::<QuizSubmitted>().is_err());
}

#[test]
fn an_unknown_type_lists_the_known_ones() {
    let err = Registry::global()
        .decode("quiz.abandoned", 1, &json!({}))
        .unwrap_err();
    let DecodeError::UnknownType { known, .. } = &err else {
        panic!("expected UnknownType, got {err:?}");
    };
    assert!(known.contains(&"quiz.submitted.v2"));
    assert!(known.windows(2).all(|w| w[0] <= w[1]), "sorted");
    let message = err.to_string();
    assert!(message.contains("quiz.abandoned.v1"));
    assert!(message.contains("lesson.published.v1"));
}

#[test]
fn a_newer_version_than_registered_is_named_as_such() {
    let err = Registry::global()
        .decode("quiz.submitted", 9, &json!({}))
        .unwrap_err();
    assert!(matches!(err, DecodeError::UnknownVersion { ref known, .. } if known == &[1, 2]));
}

#[test]
fn a_payload_error_names_the_path_but_not_the_value() {
    let payload = json!({
        "quiz_id": Uuid::now_v7(),
        "student_id": Uuid::now_v7(),
        "student_name": 12345,
        "score": "Ada Lovelace",
    });
    let err = Registry::global()
        .decode("quiz.submitted", 2, &payload)
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("quiz.submitted.v2"), "{message}");
    assert!(
        message.contains("student_name") || message.contains("score"),
        "{message}"
    );
    assert!(!message.contains("Ada"), "{message}");
    assert!(!message.contains("12345"), "{message}");
}

#[test]
fn lookup_by_type_string_and_by_subject() {
    let registry = Registry::global();
    let by_type = registry.get_type("quiz.submitted.v1").unwrap();
    assert_eq!(by_type.rust_type(), "edupulse_domain::QuizSubmittedV1");
    let by_subject = registry.by_subject(QuizSubmitted::SUBJECT).unwrap();
    assert!(std::ptr::eq(by_subject, QuizSubmitted::descriptor()));
    assert!(std::ptr::eq(
        registry.latest("quiz.submitted").unwrap(),
        QuizSubmitted::descriptor()
    ));
}

#[test]
fn the_catalog_describes_every_type_with_a_json_schema() {
    let catalog = Registry::global().catalog();
    let types: Vec<&str> = catalog.events.iter().map(|e| e.type_name).collect();
    for expected in [
        "lesson.published.v1",
        "quiz.submitted.v1",
        "quiz.submitted.v2",
        "badge.awarded.v1",
        "payment.processed.v1",
        "learning_pulse.created.v1",
        "learning_pulse.responded.v1",
        "user.erase_requested.v1",
    ] {
        assert!(
            types.contains(&expected),
            "{expected} missing from {types:?}"
        );
    }
    let quiz = catalog
        .events
        .iter()
        .find(|e| e.type_name == "quiz.submitted.v2")
        .unwrap();
    assert!(quiz.latest);
    assert_eq!(quiz.upcast_from.as_deref(), Some("quiz.submitted.v1"));
    let schema = &quiz.schema;
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["properties"]["quiz_id"]["format"], "uuid");
    assert_eq!(schema["properties"]["student_name"]["x-pii"], true);
    assert!(schema["properties"]["score"].get("x-pii").is_none());
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.contains(&"score"));
    assert!(!required.contains(&"answers"), "serde(default) is optional");
    // The custom payload type's schema is carried along as a definition.
    assert!(schema["$defs"]["Answer"]["properties"]["choice"].is_object());
    let v1 = catalog
        .events
        .iter()
        .find(|e| e.type_name == "quiz.submitted.v1")
        .unwrap();
    assert!(!v1.latest);
    // Serializes for export to other teams.
    let exported = serde_json::to_value(&catalog).unwrap();
    let listed = contract_types::listed(&exported);
    assert_eq!(listed, contract_types::contract_types());
}

#[test]
fn the_catalog_schema_accepts_real_payloads() {
    // A schema that disagrees with serde is worse than none: check key names and shapes.
    let catalog = Registry::global().catalog();
    let payment = catalog
        .events
        .iter()
        .find(|e| e.type_name == "payment.processed.v1")
        .unwrap();
    let properties = payment.schema["properties"].as_object().unwrap();
    for key in [
        "paymentId",
        "payerId",
        "cardholderName",
        "billingEmail",
        "amountCents",
    ] {
        assert!(
            properties.contains_key(key),
            "{key} missing: {properties:?}"
        );
    }
}
