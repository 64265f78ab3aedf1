//! The README's tutorial as one program: a new service defines its own event, stores it with
//! its own row in one transaction, relays it, reads it from the bus as a consumer would, and
//! erases the student, all on the embedded backend (no server).
//!
//! ```text
//! cargo run --example tutorial
//! ```

use std::sync::Arc;

use edupulse_events::embedded::{InProcessBus, SqliteStore, relay_pending};
use edupulse_events::privacy::{DataKey, LocalKeyProvider, Pii, Scrub};
use edupulse_events::store::{EventStore, ExpectedVersion};
use edupulse_events::{DomainEvent, Envelope, Registry, Uuid};
use serde::{Deserialize, Serialize};

/// Step 1: the event. The derive checks the attributes at compile time and registers the type.
#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "tutorial.lesson_completed", aggregate = "lesson")]
struct LessonCompleted {
    #[event(aggregate_id)]
    lesson_id: Uuid,
    #[event(data_subject)]
    student_id: Uuid,
    #[event(pii)]
    student_name: Pii<String>,
    minutes: u32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Step 2: a store and a bus. A real service keeps its master key in EDUPULSE_MASTER_KEY
    // (`LocalKeyProvider::from_env()`) and moves to PostgreSQL and JetStream with
    // `Runtime::builder()`; the calls below stay the same through `store::EventStore`.
    let store = SqliteStore::in_memory("school")
        .await?
        .with_keys(Arc::new(LocalKeyProvider::new(DataKey::generate())));
    sqlx::query("CREATE TABLE progress (student_id TEXT PRIMARY KEY, minutes INTEGER)")
        .execute(store.pool())
        .await?;
    let bus = InProcessBus::default();
    let mut bus_reader = bus.subscribe();

    // Step 3: the business row and the event commit together, or neither does.
    let (lesson_id, student_id) = (Uuid::now_v7(), Uuid::now_v7());
    let mut tx = store.begin().await?;
    sqlx::query("INSERT INTO progress (student_id, minutes) VALUES (?, 25)")
        .bind(student_id.to_string())
        .execute(&mut *tx)
        .await?;
    let event = LessonCompleted {
        lesson_id,
        student_id,
        student_name: "Ada Lovelace".to_owned().into(),
        minutes: 25,
    };
    println!("appending {event:?}"); // the derive's Debug masks the name
    store
        .append(
            &mut tx,
            ExpectedVersion::NoStream,
            &[Envelope::new(&event)?],
        )
        .await?;
    tx.commit().await?;

    // Step 4: relay the outbox; a consumer decodes what arrives (the name is sealed on the bus
    // and opened with the student's key).
    relay_pending(&store, &bus).await?;
    let mut received = vec![bus_reader.recv().await?.envelope];
    store.unseal(&mut received).await?;
    let decoded: LessonCompleted = Registry::global()
        .decode(
            &received[0].event_type,
            received[0].version,
            &received[0].payload,
        )?
        .downcast()
        .map_err(|other| format!("unexpected {}", other.type_name()))?;
    println!(
        "consumed on {}: {} minutes by {:?}",
        LessonCompleted::subject("school"),
        decoded.minutes,
        decoded.student_name.present()
    );

    // Step 5: erase the student. Their key is destroyed: every copy now reads as erased.
    let receipt = store
        .erase_subject(student_id, "GDPR request 42", Scrub::KeysOnly)
        .await?;
    let reread: LessonCompleted = store
        .load(lesson_id)
        .await?
        .events
        .remove(0)
        .downcast()
        .map_err(|other| format!("unexpected {}", other.type_name()))?;
    println!(
        "after erasure ({} key destroyed): name is {:?}",
        receipt.keys_destroyed,
        reread.student_name.present()
    );
    assert!(reread.student_name.is_erased());
    Ok(())
}
