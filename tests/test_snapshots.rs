//! Snapshots, on both backends: taken every N events off the command's path and read back
//! with only the events after them; ignored once the state's schema version changes; and
//! gone with the person whose events a state was folded from (a canary scan of every table).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestEnv;
use edupulse_domain::{Answer, QuizEvent};
use edupulse_events::Uuid;
use edupulse_events::aggregate::{Aggregate, Aggregates, SnapshotState};
use edupulse_events::embedded::SqliteStore;
use edupulse_events::privacy::canary::{Canary, PlaintextScan};
use edupulse_events::privacy::{DataKey, LocalKeyProvider, Scrub};
use edupulse_events::store::{EventStore, Snapshot, StoredSnapshot};
use serde::{Deserialize, Serialize};

/// Attempts per student, in the state's first shape. `folded` counts the events applied since
/// this value was made (from a snapshot or from nothing): it is not part of the snapshot.
#[derive(Default, Serialize, Deserialize)]
struct AttemptsV1 {
    attempts: HashMap<Uuid, u32>,
    #[serde(skip)]
    folded: u32,
}

impl Aggregate for AttemptsV1 {
    type Event = QuizEvent;

    fn apply(&mut self, event: &QuizEvent) {
        self.folded += 1;
        if let QuizEvent::QuizSubmitted(submitted) = event {
            *self.attempts.entry(submitted.student_id).or_default() += 1;
        }
    }
}

impl SnapshotState for AttemptsV1 {
    const STATE_VERSION: u32 = 1;
}

/// The same state after a change of shape: version 2.
#[derive(Default, Serialize, Deserialize)]
struct AttemptsV2 {
    submissions: u32,
    #[serde(skip)]
    folded: u32,
}

impl Aggregate for AttemptsV2 {
    type Event = QuizEvent;

    fn apply(&mut self, event: &QuizEvent) {
        self.folded += 1;
        self.submissions += u32::from(matches!(event, QuizEvent::QuizSubmitted(_)));
    }
}

impl SnapshotState for AttemptsV2 {
    const STATE_VERSION: u32 = 2;
}

/// The names of those who submitted, copied out of their `Pii` into plain text: the kind of
/// state an erasure must not leave behind in a snapshot.
#[derive(Default, Serialize, Deserialize)]
struct Names {
    names: Vec<String>,
}

impl Aggregate for Names {
    type Event = QuizEvent;

    fn apply(&mut self, event: &QuizEvent) {
        if let QuizEvent::QuizSubmitted(submitted) = event
            && let Some(name) = submitted.student_name.present()
        {
            self.names.push(name.clone());
        }
    }
}

impl SnapshotState for Names {
    const STATE_VERSION: u32 = 1;
}

fn publish(quiz_id: Uuid) -> QuizEvent {
    edupulse_domain::QuizPublished {
        quiz_id,
        lesson_id: Uuid::now_v7(),
        teacher_id: Uuid::now_v7(),
        max_attempts: 5,
    }
    .into()
}

fn submit(quiz_id: Uuid, student_id: Uuid, name: &str) -> QuizEvent {
    edupulse_domain::QuizSubmitted {
        quiz_id,
        student_id,
        student_name: name.to_owned().into(),
        score: 1.0,
        answers: vec![Answer {
            question: 1,
            choice: "a".into(),
            correct: true,
        }],
    }
    .into()
}

/// Erasures take turns with the test that any erasure must evict a state: the cache is the
/// process's, and this binary's tests share it.
static ERASING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits (at most 30 s) until the aggregate has a snapshot of the state `A` at `version`:
/// snapshots are saved in a task of their own, after the command returned.
async fn snapshot_at<A: SnapshotState, S: EventStore>(store: &S, quiz_id: Uuid, version: u64) {
    // Keyed by the aggregate type and the state's Rust type.
    let key = format!("quiz/{}", std::any::type_name::<A>());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = store
            .snapshot(quiz_id, &key, A::STATE_VERSION)
            .await
            .unwrap();
        if found.as_ref().is_some_and(|s| s.version == version) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot at version {version}: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn snapshots_are_read_back_and_ignored_after_a_state_change<S>(store: S)
where
    S: EventStore + Clone + 'static,
{
    let quiz_id = Uuid::now_v7();
    let ada = Uuid::now_v7();
    // With its cache, the writer knows when its last snapshot was taken.
    let writer = Aggregates::<AttemptsV1, _>::new(store.clone()).snapshot_every(3);
    writer
        .execute(&quiz_id, |_| Ok::<_, String>(vec![publish(quiz_id)]))
        .await
        .unwrap();
    for _ in 0..3 {
        writer
            .execute(&quiz_id, |_| {
                Ok::<_, String>(vec![submit(quiz_id, ada, "Ada")])
            })
            .await
            .unwrap();
    }
    // Taken when the third event was appended, not at the fourth.
    snapshot_at::<AttemptsV1, _>(&store, quiz_id, 3).await;

    let (state, version) = Aggregates::<AttemptsV1, _>::new(store.clone())
        .snapshot_every(3)
        .load(&quiz_id)
        .await
        .unwrap();
    assert_eq!(version, 4);
    assert_eq!(
        state.attempts[&ada], 3,
        "the snapshot and the event after it, folded"
    );
    assert_eq!(
        state.folded, 1,
        "read from the snapshot, only the event after it applied"
    );

    // The state's shape changed: the version 1 snapshot is ignored, every event folded.
    let (state, version) = Aggregates::<AttemptsV2, _>::new(store.clone())
        .snapshot_every(3)
        .load(&quiz_id)
        .await
        .unwrap();
    assert_eq!((state.submissions, state.folded, version), (3, 4, 4));
}

/// A save that comes after a person's erasure (a task queued before it, a replica that has
/// not heard of it) stores nothing: the erasure's tombstone refuses every snapshot that names
/// them, so none is left for its delete to miss.
async fn a_snapshot_naming_an_erased_person_is_not_saved<S: EventStore>(store: S) {
    let ada = Uuid::now_v7();
    let _turn = ERASING.lock().await;
    store
        .erase_subject(ada, "test", Scrub::KeysOnly)
        .await
        .unwrap();
    let snapshot = Snapshot {
        aggregate_id: Uuid::now_v7(),
        aggregate_type: "quiz/late".into(),
        state_version: 1,
        version: 2,
        state: serde_json::json!({ "names": ["Ada"] }),
        base: 0,
        data_subjects: vec![Uuid::now_v7(), ada],
    };
    store.save_snapshot(&snapshot).await.unwrap();
    let saved = store
        .snapshot(snapshot.aggregate_id, "quiz/late", 1)
        .await
        .unwrap();
    assert_eq!(saved, None, "a snapshot naming an erased person was saved");
    // One naming nobody erased is saved.
    let other = Snapshot {
        data_subjects: vec![Uuid::now_v7()],
        ..snapshot
    };
    store.save_snapshot(&other).await.unwrap();
    assert_eq!(
        store
            .snapshot(other.aggregate_id, "quiz/late", 1)
            .await
            .unwrap(),
        Some(StoredSnapshot {
            version: other.version,
            state: other.state
        })
    );
}

/// A state read from a snapshot knows only the people of the events after it; its own
/// snapshot keeps the earlier snapshot's people with the new ones, so erasing someone named
/// only before the first snapshot still deletes the second.
async fn a_snapshot_built_on_another_keeps_its_people<S>(store: S)
where
    S: EventStore + Clone + 'static,
{
    let (quiz_id, ada, bob) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let first = Aggregates::<Names, _>::new(store.clone()).snapshot_every(2);
    first
        .execute(&quiz_id, |_| Ok::<_, String>(vec![publish(quiz_id)]))
        .await
        .unwrap();
    first
        .execute(&quiz_id, |_| {
            Ok::<_, String>(vec![submit(quiz_id, ada, "Ada")])
        })
        .await
        .unwrap();
    snapshot_at::<Names, _>(&store, quiz_id, 2).await;

    // Another process: no cache, so every command reads the snapshot and what follows it.
    let second = Aggregates::<Names, _>::new(store.clone())
        .cache(0)
        .snapshot_every(2);
    for _ in 0..2 {
        second
            .execute(&quiz_id, |_| {
                Ok::<_, String>(vec![submit(quiz_id, bob, "Bob")])
            })
            .await
            .unwrap();
    }
    snapshot_at::<Names, _>(&store, quiz_id, 4).await;

    let _turn = ERASING.lock().await;
    store
        .erase_subject(ada, "test", Scrub::KeysOnly)
        .await
        .unwrap();
    let key = format!("quiz/{}", std::any::type_name::<Names>());
    assert_eq!(
        store
            .snapshot(quiz_id, &key, Names::STATE_VERSION)
            .await
            .unwrap(),
        None,
        "the snapshot built on Ada's survived her erasure"
    );
    // The aggregate is folded from its events from then on, Ada's name erased in them.
    second
        .execute(&quiz_id, |_| {
            Ok::<_, String>(vec![submit(quiz_id, bob, "Bob")])
        })
        .await
        .unwrap();
    let (state, version) = second.load(&quiz_id).await.unwrap();
    assert_eq!(version, 5);
    assert_eq!(
        state.names, ["Bob"; 3],
        "folded from the events, Ada's name erased"
    );
}

/// A state read from a snapshot knows the people of the events after it, not those of the
/// snapshot's: any erasure evicts it from the cache, since it may hold the person's data.
async fn any_erasure_evicts_a_state_read_from_a_snapshot<S>(store: S)
where
    S: EventStore + Clone + 'static,
{
    // No other test's erasure in between: any would evict the state too.
    let _turn = ERASING.lock().await;
    let quiz_id = Uuid::now_v7();
    Aggregates::<Names, _>::new(store.clone())
        .snapshot_every(1)
        .execute(&quiz_id, |_| Ok::<_, String>(vec![publish(quiz_id)]))
        .await
        .unwrap();
    snapshot_at::<Names, _>(&store, quiz_id, 1).await;
    let names = Aggregates::<Names, _>::new(store.clone()).snapshot_every(100);
    names
        .execute(&quiz_id, |_| {
            Ok::<_, String>(vec![submit(quiz_id, Uuid::now_v7(), "Ada")])
        })
        .await
        .unwrap();
    assert_eq!(names.cached(), 1);
    // Someone the state's own events never named.
    store
        .erase_subject(Uuid::now_v7(), "test", Scrub::KeysOnly)
        .await
        .unwrap();
    assert_eq!(
        names.cached(),
        0,
        "a state read from a snapshot outlived an erasure"
    );
}

mod on_postgres {
    use super::*;

    #[tokio::test]
    async fn any_erasure_evicts_a_state_read_from_a_snapshot() {
        let env = TestEnv::new().await;
        super::any_erasure_evicts_a_state_read_from_a_snapshot(env.store.clone()).await;
        env.cleanup().await;
    }

    #[tokio::test]
    async fn a_snapshot_built_on_another_keeps_its_people() {
        let env = TestEnv::new().await;
        super::a_snapshot_built_on_another_keeps_its_people(env.store.clone()).await;
        env.cleanup().await;
    }

    #[tokio::test]
    async fn a_snapshot_naming_an_erased_person_is_not_saved() {
        let env = TestEnv::new().await;
        super::a_snapshot_naming_an_erased_person_is_not_saved(env.store.clone()).await;
        env.cleanup().await;
    }

    #[tokio::test]
    async fn snapshots_are_read_back_and_ignored_after_a_state_change() {
        let env = TestEnv::new().await;
        super::snapshots_are_read_back_and_ignored_after_a_state_change(env.store.clone()).await;
        env.cleanup().await;
    }

    #[tokio::test]
    async fn no_snapshot_keeps_an_erased_persons_plaintext() {
        let env = TestEnv::new().await;
        let (quiz_id, ada, canary) = (Uuid::now_v7(), Uuid::now_v7(), Canary::new());
        let names = Aggregates::<Names, _>::new(env.store.clone()).snapshot_every(1);
        names
            .execute(&quiz_id, |_| Ok::<_, String>(vec![publish(quiz_id)]))
            .await
            .unwrap();
        names
            .execute(&quiz_id, |_| {
                Ok::<_, String>(vec![submit(quiz_id, ada, canary.as_str())])
            })
            .await
            .unwrap();
        snapshot_at::<Names, _>(&env.store, quiz_id, 2).await;
        let scan = |canary: Canary| {
            let env = &env;
            async move {
                PlaintextScan::new([canary])
                    .postgres(&env.pool, &env.schema)
                    .await
                    .unwrap()
                    .leaks()
            }
        };
        let before = scan(canary.clone()).await;
        assert!(
            before
                .iter()
                .any(|leak| format!("{leak:?}").contains("snapshots")),
            "the scan must see the snapshot's copy before the erasure: {before:?}"
        );

        let _turn = ERASING.lock().await;
        env.store
            .erase_subject(ada, "test", Scrub::KeysOnly)
            .await
            .unwrap();
        assert_eq!(scan(canary).await, vec![], "plaintext survived the erasure");
        env.cleanup().await;
    }
}

mod on_sqlite {
    use super::*;

    #[tokio::test]
    async fn any_erasure_evicts_a_state_read_from_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        super::any_erasure_evicts_a_state_read_from_a_snapshot(file_store(&dir).await).await;
    }

    #[tokio::test]
    async fn a_snapshot_built_on_another_keeps_its_people() {
        let dir = tempfile::tempdir().unwrap();
        super::a_snapshot_built_on_another_keeps_its_people(file_store(&dir).await).await;
    }

    #[tokio::test]
    async fn a_snapshot_naming_an_erased_person_is_not_saved() {
        let dir = tempfile::tempdir().unwrap();
        super::a_snapshot_naming_an_erased_person_is_not_saved(file_store(&dir).await).await;
    }

    async fn file_store(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(dir.path().join("events.db"), "edupulse")
            .await
            .unwrap()
            .with_keys(Arc::new(LocalKeyProvider::new(DataKey::generate())))
    }

    #[tokio::test]
    async fn snapshots_are_read_back_and_ignored_after_a_state_change() {
        let dir = tempfile::tempdir().unwrap();
        super::snapshots_are_read_back_and_ignored_after_a_state_change(file_store(&dir).await)
            .await;
    }

    /// Every row of every table, as text, holding `text`.
    async fn rows_holding(store: &SqliteStore, text: &str) -> Vec<String> {
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(store.pool())
                .await
                .unwrap();
        let mut found = Vec::new();
        for table in tables {
            let columns: Vec<String> =
                sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}')"))
                    .fetch_all(store.pool())
                    .await
                    .unwrap();
            for column in columns {
                let hits: i64 = sqlx::query_scalar(&format!(
                    "SELECT count(*) FROM \"{table}\" WHERE CAST(\"{column}\" AS TEXT) LIKE ?"
                ))
                .bind(format!("%{text}%"))
                .fetch_one(store.pool())
                .await
                .unwrap();
                if hits > 0 {
                    found.push(format!("{table}.{column}"));
                }
            }
        }
        found
    }

    #[tokio::test]
    async fn no_snapshot_keeps_an_erased_persons_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        let (quiz_id, ada, canary) = (Uuid::now_v7(), Uuid::now_v7(), Canary::new());
        let names = Aggregates::<Names, _>::new(store.clone()).snapshot_every(1);
        names
            .execute(&quiz_id, |_| Ok::<_, String>(vec![publish(quiz_id)]))
            .await
            .unwrap();
        names
            .execute(&quiz_id, |_| {
                Ok::<_, String>(vec![submit(quiz_id, ada, canary.as_str())])
            })
            .await
            .unwrap();
        snapshot_at::<Names, _>(&store, quiz_id, 2).await;
        assert_eq!(
            rows_holding(&store, canary.as_str()).await,
            ["snapshots.state"]
        );
        let _turn = ERASING.lock().await;
        store
            .erase_subject(ada, "test", Scrub::KeysOnly)
            .await
            .unwrap();
        assert_eq!(
            rows_holding(&store, canary.as_str()).await,
            Vec::<String>::new()
        );
    }
}
