//! What only the embedded SQLite backend needs proving (the shared behaviour is in
//! `test_backends.rs`): SQLite's statement-level rollback does not tear an append, an event
//! may name one person twice, and two relays over one store publish each event once, in order.

use std::collections::HashMap;
use std::sync::Arc;

use edupulse_domain::{BadgeAwarded, QuizSubmitted};
use edupulse_events::embedded::{InProcessBus, SqliteStore, relay_pending};
use edupulse_events::privacy::{DataKey, LocalKeyProvider, Scrub};
use edupulse_events::store::{EventStore, ExpectedVersion, StoreError};
use edupulse_events::{Envelope, Uuid};

async fn file_store(dir: &tempfile::TempDir) -> SqliteStore {
    file_store_at(&dir.path().join("events.db")).await
}

async fn file_store_at(path: &std::path::Path) -> SqliteStore {
    SqliteStore::open(path, "edupulse")
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

/// A file made before scrubbing and readmission existed (its log refused every update, its
/// tombstones had no `allow_new_keys`) is brought up to date when opened.
#[tokio::test]
async fn a_file_from_before_scrubbing_scrubs_and_readmits_once_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let old = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::raw_sql(OLD_TABLES).execute(&old).await.unwrap();
        old.close().await;
    }
    let store = file_store_at(&path).await;
    let (quiz, student) = (Uuid::now_v7(), Uuid::now_v7());
    let mut first = submitted(quiz);
    first.data_subjects = vec![student];
    first.payload["student_id"] = student.to_string().into();
    store
        .append_committed(ExpectedVersion::NoStream, &[first])
        .await
        .unwrap();
    let receipt = store
        .erase_subject(student, "ticket-3", Scrub::StoredCiphertext)
        .await
        .unwrap();
    assert_eq!(receipt.events_scrubbed, 1);
    assert!(store.allow_new_keys(student).await.unwrap());
}

/// The tables an earlier version created that have changed since.
const OLD_TABLES: &str = "
CREATE TABLE events (
    position INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
    aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL,
    sequence INTEGER NOT NULL CHECK (sequence >= 1), event_type TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1), data_subjects TEXT NOT NULL,
    payload TEXT NOT NULL, metadata TEXT NOT NULL, occurred_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL, UNIQUE (aggregate_id, sequence));
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TABLE erased_subjects (subject_id TEXT PRIMARY KEY, erased_at TEXT NOT NULL,
    reason TEXT NOT NULL, last_key_version INTEGER NOT NULL);
";

/// The bus delivers once and keeps no history: a failed event waits in the subscriber for its
/// retry, one that keeps failing is set aside with its reason, and a subscriber that fell
/// behind the bus catches up from the log, each event applied once.
#[tokio::test]
async fn a_bus_subscriber_retries_sets_aside_and_catches_up_after_falling_behind() {
    use edupulse_events::consume::BusSubscriber;
    use std::sync::atomic::{AtomicU32, Ordering};

    let store = SqliteStore::in_memory("edupulse")
        .await
        .unwrap()
        .with_keys(Arc::new(LocalKeyProvider::new(DataKey::generate())));
    sqlx::query("CREATE TABLE applied (quiz_id TEXT NOT NULL)")
        .execute(store.pool())
        .await
        .unwrap();
    // Room for two messages: five relayed at once leave the subscriber behind.
    let bus = InProcessBus::new(2);
    let (flaky, hopeless) = (Uuid::now_v7(), Uuid::now_v7());
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = attempts.clone();
    let mut subscriber = BusSubscriber::builder(&store, &bus, "applied")
        .max_deliveries(3)
        .backoff(vec![std::time::Duration::ZERO])
        .on(move |quiz: QuizSubmitted, _envelope: &Envelope, tx| {
            let attempt = if quiz.quiz_id == flaky {
                seen.fetch_add(1, Ordering::SeqCst) + 1
            } else {
                u32::MAX
            };
            Box::pin(async move {
                sqlx::query("INSERT INTO applied (quiz_id) VALUES (?)")
                    .bind(quiz.quiz_id.to_string())
                    .execute(&mut *tx)
                    .await?;
                if quiz.quiz_id == hopeless || attempt < 3 {
                    return Err("refused on purpose".into());
                }
                Ok(())
            })
        })
        .build()
        .unwrap();
    let mut quizzes = vec![flaky, hopeless];
    quizzes.extend((0..3).map(|_| Uuid::now_v7()));
    for quiz in &quizzes {
        store
            .append_committed(ExpectedVersion::NoStream, &[submitted(*quiz)])
            .await
            .unwrap();
    }
    relay_pending(&store, &bus).await.unwrap();
    let settled = subscriber.apply_waiting().await.unwrap();
    assert_eq!((settled.applied, settled.set_aside), (4, 1), "{settled:?}");
    assert_eq!(subscriber.retrying(), 0);
    // Refused twice, then applied (its handler may run again beside a later failure in its
    // transaction; the inbox applies it once).
    assert!(attempts.load(Ordering::SeqCst) >= 3);
    let applied: Vec<String> = sqlx::query_scalar("SELECT quiz_id FROM applied ORDER BY quiz_id")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(
        applied.len(),
        4,
        "each applied once, the failed writes rolled back"
    );
    assert!(!applied.contains(&hopeless.to_string()));
    let (event_id, reason): (String, String) =
        sqlx::query_as("SELECT event_id, reason FROM consumer_dead_letters WHERE consumer = ?")
            .bind("applied")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert!(reason.contains("refused on purpose"), "{reason}");
    // A catch-up now applies nothing again, and leaves the set-aside event set aside.
    let again = subscriber.catch_up().await.unwrap();
    assert_eq!((again.applied, again.set_aside), (0, 0), "{again:?}");
    let still: i64 =
        sqlx::query_scalar("SELECT count(*) FROM consumer_dead_letters WHERE event_id = ?")
            .bind(event_id)
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(still, 1);
}

/// The in-memory store's one connection, held by this task's own open transaction: a read of
/// the store waits for a connection that can never come back. It fails fast, naming the cause,
/// instead of hanging for sqlx's 30 s; once the transaction commits, the same read works.
#[tokio::test]
async fn reading_the_in_memory_store_inside_ones_own_transaction_fails_fast_and_says_why() {
    let store = SqliteStore::in_memory("edupulse")
        .await
        .unwrap()
        .with_keys(Arc::new(LocalKeyProvider::new(DataKey::generate())));
    let quiz_id = Uuid::now_v7();
    let mut tx = store.begin().await.unwrap();
    store
        .append(&mut tx, ExpectedVersion::NoStream, &[submitted(quiz_id)])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = store.load(quiz_id).await.unwrap_err().to_string();
    let waited = started.elapsed();
    assert!(err.contains("transaction still open"), "{err}");
    assert!(err.contains("single connection"), "{err}");
    assert!(
        waited < SqliteStore::IN_MEMORY_ACQUIRE_TIMEOUT * 3,
        "waited {waited:?} for a connection this task holds"
    );
    tx.commit().await.unwrap();
    assert_eq!(store.load(quiz_id).await.unwrap().events.len(), 1);
}
