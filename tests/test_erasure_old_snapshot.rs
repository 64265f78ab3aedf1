//! An erasure's compaction cannot remove a key row that an older snapshot still sees: the
//! receipt says so, and a later compaction finishes the job. A test binary of its own: the
//! old snapshot it holds would hold back every other erasure in the database meanwhile.

mod common;

use common::TestEnv;
use edupulse_domain::QuizSubmitted;
use edupulse_events::privacy::Pii;
use edupulse_events::privacy::canary::contains;
use edupulse_events::store::ExpectedVersion;
use edupulse_events::{Envelope, Uuid};

#[tokio::test]
async fn a_snapshot_older_than_the_erasure_is_reported_and_a_later_compaction_finishes() {
    let env = TestEnv::new().await;
    let erased = Uuid::now_v7();
    let event = Envelope::new(&QuizSubmitted {
        quiz_id: Uuid::now_v7(),
        student_id: erased,
        student_name: Pii::from("Ada"),
        score: 0.5,
        answers: vec![],
    })
    .unwrap();
    env.store
        .append_committed(ExpectedVersion::NoStream, &[event])
        .await
        .unwrap();
    let erased_key: Vec<u8> =
        sqlx::query_scalar("SELECT wrapped FROM subject_keys WHERE subject_id = $1")
            .bind(erased)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    // Another session holds a snapshot in which the key still exists.
    let mut reader = env.pool.begin().await.unwrap();
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *reader)
        .await
        .unwrap();
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM subject_keys")
        .fetch_one(&mut *reader)
        .await
        .unwrap();
    assert_eq!(seen, 1);

    let receipt = env
        .keys
        .erase_subject(&env.store, erased, "test")
        .await
        .unwrap();
    assert!(
        !receipt.key_bytes_purged,
        "the receipt claims what did not happen"
    );
    reader.rollback().await.unwrap();
    assert!(
        env.keys
            .compact(&env.pool, std::time::Duration::from_secs(10))
            .await
            .unwrap()
    );
    assert!(!contains(&env.key_table_files().await, &erased_key));
    env.cleanup().await;
}
