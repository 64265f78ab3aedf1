//! A lesson service on the embedded backend (no server): its own event, decided by a command
//! on the lesson's state and stored with its own row in one transaction, relayed, consumed
//! exactly once, and its student erased.

use std::path::Path;
use std::sync::Arc;

use edupulse_events::prelude::*;
use edupulse_events::sqlx; // the sqlx the library is built on: no version to match
use serde::{Deserialize, Serialize};

// Step 2: the event. The derive checks the attributes at compile time and registers the type.
#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "lesson.completed", aggregate = "lesson")]
struct LessonCompleted {
    #[event(aggregate_id)]
    lesson_id: Uuid,
    #[event(data_subject)]
    student_id: Uuid,
    #[event(pii)]
    student_name: Pii<String>,
    minutes: u32,
}

// Step 3: the lesson as an aggregate. Its events are named once; its state is folded from
// them; a command is a decision on that state (a student completes a lesson once).
aggregate_events! {
    enum LessonEvent for "lesson" by Uuid { LessonCompleted }
}

#[derive(Default)]
struct Lesson {
    completed_by: Vec<Uuid>,
}

impl Aggregate for Lesson {
    type Event = LessonEvent;

    fn apply(&mut self, event: &LessonEvent) {
        match event {
            LessonEvent::LessonCompleted(done) => self.completed_by.push(done.student_id),
        }
    }
}

impl Lesson {
    fn complete(&self, done: LessonCompleted) -> Result<Vec<LessonEvent>, String> {
        if self.completed_by.contains(&done.student_id) {
            return Err("this student already completed the lesson".into());
        }
        Ok(vec![done.into()])
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The store, with a master key for personal data: EDUPULSE_MASTER_KEY in production (32
    // random bytes in base64: `openssl rand -base64 32`), else a development key created in
    // target/ on first use. Then the service's own table.
    let keys = LocalKeyProvider::from_env_or_dev_file(Path::new("target/dev-master.key"))?;
    let store = SqliteStore::in_memory("lessons")
        .await?
        .with_keys(Arc::new(keys));
    sqlx::query("CREATE TABLE progress (student_id TEXT PRIMARY KEY, minutes INTEGER)")
        .execute(store.pool())
        .await?;

    // The command: the lesson's state read, the decision run on it, and its event appended
    // with your row in one transaction (both commit, or neither does). A writer that got
    // there first makes it read and decide again.
    let lessons = Aggregates::<Lesson, _>::new(store.clone());
    let (lesson_id, student_id) = (Uuid::now_v7(), Uuid::now_v7());
    let completed = || LessonCompleted {
        lesson_id,
        student_id,
        student_name: Pii::from("Ada Lovelace".to_owned()),
        minutes: 25,
    };
    println!("deciding on {:?}", completed()); // the derive's Debug prints the name as <pii>
    lessons
        .execute_with(
            &lesson_id,
            |lesson| lesson.complete(completed()),
            |tx, _events| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO progress (student_id, minutes) VALUES (?, ?)")
                        .bind(student_id.to_string())
                        .bind(25)
                        .execute(&mut **tx)
                        .await?;
                    Ok(())
                })
            },
        )
        .await?;
    // The same command again is refused, and appends nothing.
    let again = lessons
        .execute(&lesson_id, |lesson| lesson.complete(completed()))
        .await;
    if let Err(CommandError::Rejected(why)) = &again {
        println!("refused: {why}");
    }
    assert!(matches!(again, Err(CommandError::Rejected(_))));

    // Step 4: a bus, and a consumer subscribed to it before the relay publishes. It opens the
    // sealed name with the student's key, decodes the event and applies it exactly once.
    let bus = InProcessBus::default();
    sqlx::query("CREATE TABLE minutes_read (lesson_id TEXT, minutes INTEGER)")
        .execute(store.pool())
        .await?;
    let mut consumer = BusSubscriber::builder(&store, &bus, "lesson-stats")
        .on(|lesson: LessonCompleted, _envelope, tx| {
            Box::pin(async move {
                println!(
                    "consumed: {} minutes by {:?}",
                    lesson.minutes, lesson.student_name
                );
                sqlx::query("INSERT INTO minutes_read (lesson_id, minutes) VALUES (?, ?)")
                    .bind(lesson.lesson_id.to_string())
                    .bind(lesson.minutes)
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            })
        })
        .build()?;
    relay_pending(&store, &bus).await?;
    let settled = consumer.apply_waiting().await?;
    println!(
        "{} applied, {} set aside",
        settled.applied, settled.set_aside
    );
    assert_eq!(settled.applied, 1);

    // Step 5: erase the student. Their key is destroyed: every copy now reads as erased.
    let receipt = store
        .erase_subject(student_id, "GDPR request 42", Scrub::KeysOnly)
        .await?;
    let mut stream = store.load(lesson_id).await?;
    let reread: LessonCompleted = stream
        .events
        .remove(0)
        .downcast()
        .map_err(|other| format!("unexpected {}", other.type_name()))?;
    println!(
        "after erasure ({} key destroyed): the name is erased: {}",
        receipt.keys_destroyed,
        reread.student_name.is_erased()
    );
    assert!(reread.student_name.is_erased());
    Ok(())
}
