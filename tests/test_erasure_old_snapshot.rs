//! An erasure's compaction cannot remove a key row that an older transaction or snapshot may
//! still see: the receipt says so, and a later compaction finishes the job. Each test has a
//! database of its own, so what it holds open holds back nothing else.

mod common;

use common::OwnDatabase;
use edupulse_domain::QuizSubmitted;
use edupulse_events::privacy::Pii;
use edupulse_events::privacy::Scrub;
use edupulse_events::privacy::canary::contains;
use edupulse_events::store::ExpectedVersion;
use edupulse_events::{Envelope, Uuid};

/// Erases a subject while another session of the database has run `hold` in a transaction
/// it keeps open; checks that the receipt does not claim the key's bytes are gone, and that
/// they are once the session is done and the table compacted again.
async fn erase_while_another_session_holds(hold: &[&str]) {
    let env = OwnDatabase::new().await;
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
    let mut other = env.pool.begin().await.unwrap();
    for statement in hold {
        sqlx::query(statement).execute(&mut *other).await.unwrap();
    }

    let receipt = env
        .store
        .erase_subject(erased, "test", Scrub::KeysOnly)
        .await
        .unwrap();
    assert!(
        !receipt.key_bytes_purged,
        "the receipt claims what did not happen"
    );
    other.rollback().await.unwrap();
    assert!(
        env.keys
            .compact(&env.pool, std::time::Duration::from_secs(10))
            .await
            .unwrap()
    );
    assert!(!contains(
        &common::key_table_files(&env.pool).await,
        &erased_key
    ));
    env.drop_database().await;
}

#[tokio::test]
async fn a_snapshot_older_than_the_erasure_is_reported_and_a_later_compaction_finishes() {
    erase_while_another_session_holds(&[
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "SELECT count(*) FROM subject_keys",
    ])
    .await;
}

#[tokio::test]
async fn an_older_transaction_idle_with_an_id_is_reported_too() {
    // READ COMMITTED and idle between statements: no snapshot, but a transaction id.
    erase_while_another_session_holds(&["SELECT pg_current_xact_id()"]).await;
}
