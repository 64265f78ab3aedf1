//! What only the embedded SQLite backend needs proving (the shared behaviour is in
//! `test_backends.rs`): SQLite's statement-level rollback does not tear an append, an event
//! may name one person twice, and two relays over one store publish each event once, in order.

use std::collections::HashMap;
use std::sync::Arc;

use edupulse_domain::{BadgeAwarded, QuizSubmitted};
use edupulse_events::embedded::{InProcessBus, SqliteStore, relay_pending};
use edupulse_events::privacy::Scrub;
use edupulse_events::privacy::{DataKey, LocalKeyProvider};
use edupulse_events::store::{ExpectedVersion, StoreError};
use edupulse_events::{Envelope, Uuid};

async fn file_store(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path().join("events.db"), "edupulse")
        .await
        .unwrap()
        .with_keys(Arc::new(LocalKeyProvider::new(DataKey::generate())))
}

fn submitted(quiz_id: Uuid) -> Envelope {
    Envelope::new(&QuizSubmitted {
        quiz_id,
        student_id: Uuid::now_v7(),
        student_name: "Ada".to_owned().into(),
        score: 0.5,
        answers: vec![],
    })
    .unwrap()
}

#[tokio::test]
async fn a_failed_append_leaves_nothing_in_the_callers_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(&dir).await;
    let quiz = Uuid::now_v7();
    let first = submitted(quiz);
    store
        .append_committed(ExpectedVersion::NoStream, std::slice::from_ref(&first))
        .await
        .unwrap();

    let mut tx = store.begin().await.unwrap();
    // The second event re-sends the first's id: refused, and not as a concurrency conflict.
    let refused = store
        .append(
            &mut tx,
            ExpectedVersion::Exact(1),
            &[submitted(quiz), first.clone()],
        )
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::Database(_)), "{refused}");
    // The transaction goes on, without the refused batch's first event: version 1 still.
    let appended = store
        .append(&mut tx, ExpectedVersion::Exact(1), &[submitted(quiz)])
        .await
        .unwrap();
    assert_eq!(appended.version, 2);
    tx.commit().await.unwrap();
    assert_eq!(store.load(quiz).await.unwrap().events.len(), 2);
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(outbox, 2);
}

#[tokio::test]
async fn an_event_may_name_one_person_twice() {
    let store = SqliteStore::in_memory("edupulse")
        .await
        .unwrap()
        .with_keys(Arc::new(LocalKeyProvider::new(DataKey::generate())));
    let person = Uuid::now_v7();
    let award = Envelope::new(&BadgeAwarded {
        award_id: Uuid::now_v7(),
        student_id: person,
        teacher_id: person,
        student_name: "Ada".to_owned().into(),
        teacher_note: "well done, me".to_owned().into(),
        badge: "self-taught".into(),
    })
    .unwrap();
    store
        .append_committed(ExpectedVersion::NoStream, std::slice::from_ref(&award))
        .await
        .unwrap();
    let opened = read_award(&store, award.aggregate_id).await;
    assert_eq!(
        opened.student_name.present().map(String::as_str),
        Some("Ada")
    );
    assert_eq!(
        opened.teacher_note.present().map(String::as_str),
        Some("well done, me")
    );
    // Erasing the one person reaches both of their values, once each.
    let receipt = store
        .erase_subject(person, "ticket-2", Scrub::KeysOnly)
        .await
        .unwrap();
    assert_eq!(receipt.keys_destroyed, 1);
    let erased = read_award(&store, award.aggregate_id).await;
    assert!(erased.student_name.is_erased() && erased.teacher_note.is_erased());
}

async fn read_award(store: &SqliteStore, award: Uuid) -> BadgeAwarded {
    let stream = store.load(award).await.unwrap();
    assert_eq!(stream.version, 1);
    stream.events[0]
        .downcast_ref::<BadgeAwarded>()
        .expect("a badge award")
        .clone()
}

#[tokio::test]
async fn two_relays_publish_each_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(&dir).await;
    let quizzes: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    for round in 0..10 {
        for quiz in &quizzes {
            let expected = if round == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(round)
            };
            store
                .append_committed(expected, &[submitted(*quiz)])
                .await
                .unwrap();
        }
    }
    let bus = InProcessBus::new(1_000);
    let mut received = bus.subscribe();
    let (a, b) = tokio::join!(relay_pending(&store, &bus), relay_pending(&store, &bus));
    assert_eq!(a.unwrap() + b.unwrap(), 50);
    let mut last: HashMap<Uuid, u64> = HashMap::new();
    let mut seen = 0;
    while let Ok(message) = received.try_recv() {
        let envelope = message.envelope;
        let previous = last
            .insert(envelope.aggregate_id, envelope.sequence)
            .unwrap_or(0);
        assert_eq!(envelope.sequence, previous + 1, "in order, each once");
        seen += 1;
    }
    assert_eq!(seen, 50);
}
