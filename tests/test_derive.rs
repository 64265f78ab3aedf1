//! What the derive generates, checked through the public API on the EduPulse domain types.

use edupulse_domain::{BadgeAwarded, PaymentProcessed, QuizSubmitted, UserEraseRequested};
use edupulse_events::{DomainEvent, FieldName, Uuid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
struct LearningStreakExtended {
    #[event(aggregate_id)]
    streak_id: Uuid,
    #[event(data_subject)]
    student_id: Option<Uuid>,
    #[event(data_subject)]
    mentors: Vec<Uuid>,
}

#[test]
fn constants_follow_the_attributes() {
    assert_eq!(QuizSubmitted::NAME, "quiz.submitted");
    assert_eq!(QuizSubmitted::VERSION, 2);
    assert_eq!(QuizSubmitted::TYPE, "quiz.submitted.v2");
    assert_eq!(QuizSubmitted::AGGREGATE, "quiz");
    assert_eq!(QuizSubmitted::SUBJECT, "quiz.submitted.v2");
    assert_eq!(QuizSubmitted::SUBJECT_TOKENS, ["quiz", "submitted", "v2"]);
    assert_eq!(
        QuizSubmitted::subject("edupulse"),
        "edupulse.quiz.submitted.v2"
    );
}

#[test]
fn defaults_come_from_the_type_name() {
    assert_eq!(LearningStreakExtended::NAME, "learning.streak.extended");
    assert_eq!(LearningStreakExtended::VERSION, 1);
    assert_eq!(LearningStreakExtended::AGGREGATE, "learning");
    assert_eq!(LearningStreakExtended::TYPE, "learning.streak.extended.v1");
}

#[test]
fn data_subjects_collect_single_optional_and_many() {
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let event = LearningStreakExtended {
        streak_id: Uuid::now_v7(),
        student_id: Some(a),
        mentors: vec![b, c],
    };
    assert_eq!(event.data_subjects(), vec![a, b, c]);
    let nobody = LearningStreakExtended {
        student_id: None,
        mentors: vec![],
        ..event
    };
    assert!(nobody.data_subjects().is_empty());
}

#[test]
fn pii_owners_are_resolved_per_field() {
    let owners: Vec<(&str, &str)> = BadgeAwarded::PII_FIELDS
        .iter()
        .map(|p| (p.field.rust, p.owner.rust))
        .collect();
    assert_eq!(
        owners,
        [
            ("student_name", "student_id"),
            ("teacher_note", "teacher_id")
        ]
    );
}

#[test]
fn field_paths_are_the_serialized_names() {
    // PaymentProcessed is `rename_all = "camelCase"`: encryption must find the wire keys.
    let event = PaymentProcessed {
        payment_id: Uuid::now_v7(),
        payer_id: Uuid::now_v7(),
        cardholder_name: "Grace Hopper".into(),
        billing_email: "grace@example.org".into(),
        amount_cents: 4_900,
        currency: "EUR".into(),
        status: edupulse_domain::PaymentStatus::Captured,
    };
    let json = edupulse_events::privacy::reveal(|| serde_json::to_value(&event)).unwrap();
    for pii in PaymentProcessed::PII_FIELDS {
        assert!(
            json.get(pii.field.json).is_some(),
            "{} not on the wire",
            pii.field.json
        );
        assert!(json.get(pii.field.rust).is_none() || pii.field.rust == pii.field.json);
    }
    assert_eq!(
        PaymentProcessed::DATA_SUBJECT_FIELDS,
        [FieldName::new("payer_id", "payerId")]
    );
    assert_eq!(
        json[PaymentProcessed::AGGREGATE_ID_FIELD.json],
        serde_json::json!(event.payment_id)
    );
}

#[test]
fn one_field_can_be_aggregate_and_subject() {
    let user = Uuid::now_v7();
    let event = UserEraseRequested {
        user_id: user,
        requested_by: Uuid::now_v7(),
        requested_at: edupulse_events::chrono::Utc::now(),
    };
    assert_eq!(event.aggregate_id(), user);
    assert_eq!(event.data_subjects(), vec![user]);
    assert!(UserEraseRequested::PII_FIELDS.is_empty());
}
