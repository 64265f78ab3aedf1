//! The first program to run, with no server: define events, wrap one in an envelope, decode a
//! stored v1 payload into today's v2 type, list every event type this binary knows, then store
//! events on the embedded SQLite store, relay them to the in-process bus, and erase a student.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::sync::Arc;

use edupulse_domain::{BadgeAwarded, QuizSubmitted, QuizSubmittedV1};
use edupulse_events::embedded::{InProcessBus, SqliteStore, relay_pending};
use edupulse_events::privacy::{DataKey, LocalKeyProvider, Scrub};
use edupulse_events::store::{EventStore, ExpectedVersion};
use edupulse_events::{DomainEvent, Envelope, Registry, Uuid};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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

    // Storing and publishing, embedded: SQLite in memory and an in-process bus, with the
    // PostgreSQL runtime's promises (the outbox in your transaction, names sealed per student).
    // A throwaway master key: a real one comes from EDUPULSE_MASTER_KEY.
    let store = SqliteStore::in_memory("edupulse")
        .await?
        .with_keys(Arc::new(LocalKeyProvider::new(DataKey::generate())));
    let bus = InProcessBus::default();
    let mut published = bus.subscribe();
    let quiz_id = Uuid::now_v7();
    let grace = Uuid::now_v7();
    for (n, (student_id, name)) in [(student, "Ada Lovelace"), (grace, "Grace Hopper")]
        .into_iter()
        .enumerate()
    {
        let mut tx = store.begin().await?;
        // Your own rows would be written through `tx` here, committing with the event.
        let expected = if n == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(n as u64)
        };
        let submitted = Envelope::new(&QuizSubmitted {
            quiz_id,
            student_id,
            student_name: name.into(),
            score: 0.9,
            answers: vec![],
        })?;
        store.append(&mut tx, expected, &[submitted]).await?;
        tx.commit().await?;
    }
    println!(
        "
relayed {} events to the bus",
        relay_pending(&store, &bus).await?
    );
    while let Ok(message) = published.try_recv() {
        // On the bus the name is sealed: this is what any consumer or log would see.
        println!(
            "  {}: {}",
            message.subject, message.envelope.payload["student_name"]
        );
    }

    let receipt = store
        .erase_subject(grace, "GDPR request 1", Scrub::KeysOnly)
        .await?;
    println!(
        "
erased {}: {} key destroyed, recorded at position {}",
        receipt.subject, receipt.keys_destroyed, receipt.position
    );
    for event in store.load(quiz_id).await?.events {
        let quiz: QuizSubmitted = event
            .downcast()
            .map_err(|other| format!("unexpected {}", other.type_name()))?;
        println!(
            "  {} scored {}: name {:?}",
            quiz.student_id,
            quiz.score,
            quiz.student_name.present()
        );
    }
    Ok(())
}
