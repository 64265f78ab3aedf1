//! The first program to run: define events, wrap one in an envelope, decode a stored v1
//! payload into today's v2 type, and list every event type this binary knows.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use edupulse_domain::{BadgeAwarded, QuizSubmitted, QuizSubmittedV1};
use edupulse_events::{DomainEvent, Envelope, Registry, Uuid};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A binary whose event types disagree must not start.
    let registry = Registry::global();
    registry.validate()?;

    let student = Uuid::now_v7();
    let badge = BadgeAwarded {
        award_id: Uuid::now_v7(),
        student_id: student,
        teacher_id: Uuid::now_v7(),
        student_name: "Ada Lovelace".into(),
        teacher_note: "Five quizzes in a row!".into(),
        badge: "quiz-streak-5".into(),
    };
    // PII is masked in Debug, so this line is safe to log.
    println!("awarded: {badge:?}");

    let envelope = Envelope::new(&badge)?.with_actor("teacher:42");
    println!(
        "envelope {} of type {} for aggregate {} about {:?}",
        envelope.id,
        envelope.type_string(),
        envelope.aggregate_id,
        envelope.data_subjects
    );
    println!("subject: {}", BadgeAwarded::subject("edupulse"));

    // An event written by last year's code decodes into this year's type.
    let old = Envelope::new(&QuizSubmittedV1 {
        quiz_id: Uuid::now_v7(),
        student_id: student,
        student_name: "Ada Lovelace".into(),
        correct: 7,
        total: 8,
    })?;
    let current = registry
        .decode(&old.event_type, old.version, &old.payload)?
        .downcast::<QuizSubmitted>()
        .map_err(|other| format!("unexpected {}", other.type_name()))?;
    println!("v1 payload read as v2: score {}", current.score);

    println!("\nevent catalog:");
    for entry in registry.catalog().events {
        let pii: Vec<&str> = entry.pii_fields.iter().map(|p| p.field.json).collect();
        println!(
            "  {:32} aggregate {:15} subject edupulse.{:32} pii {:?}",
            entry.type_name, entry.aggregate, entry.subject, pii
        );
    }
    Ok(())
}
