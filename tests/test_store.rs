//! The PostgreSQL store against a real server: append and read back, rollback, optimistic
//! concurrency under racing writers, and a whole-log read that never skips a late commit.

mod common;

use std::sync::Arc;

use common::TestEnv;
use edupulse_domain::{QuizSubmitted, QuizSubmittedV1};
use edupulse_events::store::{Appended, ExpectedVersion, LogCursor, StoreError};
use edupulse_events::{Envelope, Uuid};

fn submission(quiz_id: Uuid, n: u32) -> QuizSubmitted {
    QuizSubmitted {
        quiz_id,
        student_id: Uuid::now_v7(),
        student_name: format!("student {n}").into(),
        score: n as f32 / 100.0,
        answers: vec![],
    }
}

/// Submission `n` of `quiz`, appended alone in `tx`.
async fn append_submission(
    env: &TestEnv,
    tx: &mut sqlx::PgConnection,
    expected: ExpectedVersion,
    quiz: Uuid,
    n: u32,
) -> Result<Appended, StoreError> {
    let event = Envelope::new(&submission(quiz, n)).unwrap();
    env.store.append(tx, expected, &[event]).await
}

#[tokio::test]
async fn append_then_read_back_decoded_and_upcast() {
    let env = TestEnv::new().await;
    let quiz = Uuid::now_v7();
    let v1 = QuizSubmittedV1 {
        quiz_id: quiz,
        student_id: Uuid::now_v7(),
        student_name: "Ada".into(),
        correct: 1,
        total: 2,
    };
    let mut tx = env.pool.begin().await.unwrap();
    let first = env
        .store
        .append(
            &mut tx,
            ExpectedVersion::NoStream,
            &[Envelope::new(&v1).unwrap().with_actor("student:1")],
        )
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    let batch: Vec<Envelope> = (0..3)
        .map(|n| Envelope::new(&submission(quiz, n)).unwrap())
        .collect();
    let second = env
        .store
        .append(&mut tx, ExpectedVersion::Exact(1), &batch)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(second.version, 4);
    assert!(second.positions.windows(2).all(|w| w[0] < w[1]));

    let stream = env.store.load(quiz).await.unwrap();
    assert_eq!(stream.version, 4);
    assert_eq!(stream.events.len(), 4);
    let upcast = stream.events[0].downcast_ref::<QuizSubmitted>().unwrap();
    assert_eq!(upcast.score, 0.5);
    let stored = env.store.read_stream(quiz).await.unwrap();
    assert_eq!(stored[0].envelope.version, 1, "stored as written");
    assert_eq!(
        stored[0].envelope.metadata.actor.as_deref(),
        Some("student:1")
    );
    let sequences: Vec<u64> = stored.iter().map(|e| e.envelope.sequence).collect();
    assert_eq!(sequences, [1, 2, 3, 4]);
    assert_eq!(stored[3].envelope.payload, batch[2].payload);
    assert_eq!(env.count("outbox").await, 4);
    env.cleanup().await;
}

#[tokio::test]
async fn rollback_leaves_no_event_and_nothing_to_relay() {
    let env = TestEnv::new().await;
    let quiz = Uuid::now_v7();
    let mut tx = env.pool.begin().await.unwrap();
    env.store
        .append(
            &mut tx,
            ExpectedVersion::NoStream,
            &[Envelope::new(&submission(quiz, 1)).unwrap()],
        )
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(env.count("events").await, 0);
    assert_eq!(env.count("outbox").await, 0);
    assert_eq!(env.store.version(quiz).await.unwrap(), 0);
    env.cleanup().await;
}

/// A new stream's first event is refused by the log's unique key rather than looked up first;
/// starting one stream twice in one transaction still names the version it ran into.
#[tokio::test]
async fn a_stream_started_twice_in_one_transaction_is_a_conflict() {
    let env = TestEnv::new().await;
    let quiz = Uuid::now_v7();
    let mut tx = env.pool.begin().await.unwrap();
    let first = append_submission(&env, &mut tx, ExpectedVersion::NoStream, quiz, 1)
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    let err = append_submission(&env, &mut tx, ExpectedVersion::NoStream, quiz, 2)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { aggregate, expected: ExpectedVersion::NoStream, actual: 1 } if aggregate == quiz),
        "{err}"
    );
    tx.rollback().await.unwrap();
    assert_eq!(env.store.version(quiz).await.unwrap(), 0);
    assert_eq!(env.count("outbox").await, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn a_stale_expected_version_is_a_typed_conflict() {
    let env = TestEnv::new().await;
    let quiz = Uuid::now_v7();
    env.append(&[submission(quiz, 1), submission(quiz, 2)])
        .await;
    let mut tx = env.pool.begin().await.unwrap();
    let err = append_submission(&env, &mut tx, ExpectedVersion::Exact(1), quiz, 3)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { aggregate, expected: ExpectedVersion::Exact(1), actual: 2 } if aggregate == quiz),
        "{err}"
    );
    let err = append_submission(&env, &mut tx, ExpectedVersion::NoStream, quiz, 3)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: 2, .. }),
        "{err}"
    );
    tx.rollback().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn sixteen_racing_writers_leave_a_contiguous_sequence() {
    let env = Arc::new(TestEnv::new().await);
    let quiz = Uuid::now_v7();
    env.append(&[submission(quiz, 0)]).await;
    let rounds = 5;
    let mut wins = 0;
    let mut conflicts = 0;
    for round in 0..rounds {
        let expected = env.store.version(quiz).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let writers: Vec<_> = (0..16)
            .map(|w| {
                let env = env.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    let event = Envelope::new(&submission(quiz, round * 16 + w)).unwrap();
                    let mut tx = env.pool.begin().await.unwrap();
                    barrier.wait().await;
                    let result = env
                        .store
                        .append(&mut tx, ExpectedVersion::Exact(expected), &[event])
                        .await;
                    match result {
                        Ok(_) => {
                            tx.commit().await.unwrap();
                            Ok(())
                        }
                        Err(err) => {
                            tx.rollback().await.unwrap();
                            Err(err)
                        }
                    }
                })
            })
            .collect();
        let mut round_wins = 0;
        for writer in writers {
            match writer.await.unwrap() {
                Ok(()) => round_wins += 1,
                Err(StoreError::Conflict {
                    expected: e,
                    actual,
                    ..
                }) => {
                    assert_eq!(e, ExpectedVersion::Exact(expected));
                    assert!(actual > expected, "the loser sees the winner's version");
                    conflicts += 1;
                }
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        assert_eq!(round_wins, 1, "exactly one writer wins each race");
        wins += round_wins;
    }
    assert_eq!(wins, rounds);
    assert_eq!(conflicts, rounds * 15);
    let sequences: Vec<u64> = env
        .store
        .read_stream(quiz)
        .await
        .unwrap()
        .iter()
        .map(|e| e.envelope.sequence)
        .collect();
    assert_eq!(sequences, (1..=rounds as u64 + 1).collect::<Vec<_>>());
    Arc::into_inner(env).unwrap().cleanup().await;
}

#[tokio::test]
async fn read_all_never_skips_a_late_committing_lower_position() {
    let env = TestEnv::new().await;
    // The slow transaction takes the lower position, but commits last.
    let mut slow = env.pool.begin().await.unwrap();
    let slow_pos = env
        .store
        .append(
            &mut slow,
            ExpectedVersion::Any,
            &[Envelope::new(&submission(Uuid::now_v7(), 1)).unwrap()],
        )
        .await
        .unwrap()
        .positions[0];
    let fast_pos = env.append(&[submission(Uuid::now_v7(), 2)]).await[0];
    assert!(slow_pos < fast_pos);

    let mut seen = Vec::new();
    let mut cursor = LogCursor::START;
    // While the slow transaction runs, the fast one's event must wait too: handing it out now
    // would move the cursor past the slow one's position.
    let early = env.store.read_all(cursor, 100).await.unwrap();
    assert!(
        early.is_empty(),
        "got {:?}",
        early.iter().map(|e| e.position).collect::<Vec<_>>()
    );
    slow.commit().await.unwrap();
    // The snapshot's xmin is cluster-wide: a transaction another test holds open delays both
    // events too, so read until they arrive rather than expecting them at once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
    while seen.len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "read_all never returned {seen:?} + more"
        );
        let page = env.store.read_all(cursor, 1).await.unwrap();
        match page.last() {
            Some(last) => {
                cursor = last.cursor();
                seen.extend(page.iter().map(|e| e.position));
            }
            None => {
                tick.tick().await;
            }
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, [slow_pos, fast_pos]);
    env.cleanup().await;
}

#[tokio::test]
async fn the_log_refuses_updates_and_deletes() {
    let env = TestEnv::new().await;
    env.append(&[submission(Uuid::now_v7(), 1)]).await;
    let update = sqlx::query("UPDATE events SET payload = '{}'")
        .execute(&env.pool)
        .await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = sqlx::query("DELETE FROM events").execute(&env.pool).await;
    assert!(delete.is_err());
    env.cleanup().await;
}

#[tokio::test]
async fn a_payload_postgres_cannot_store_is_refused_by_name_without_its_value() {
    let env = TestEnv::new().await;
    let mut event = submission(Uuid::now_v7(), 1);
    // In a plain field: a sealed one carries only ciphertext, which jsonb stores fine.
    event.answers = vec![edupulse_domain::Answer {
        question: 1,
        choice: "Ada\0Lovelace".into(),
        correct: true,
    }];
    let mut tx = env.pool.begin().await.unwrap();
    let err = env
        .store
        .append(
            &mut tx,
            ExpectedVersion::Any,
            &[Envelope::new(&event).unwrap()],
        )
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("quiz.submitted.v2") && text.contains("NUL"),
        "{text}"
    );
    assert!(!text.contains("Lovelace"), "{text}");
    // The transaction is still usable.
    env.store
        .append(
            &mut tx,
            ExpectedVersion::Any,
            &[Envelope::new(&submission(Uuid::now_v7(), 2)).unwrap()],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn a_database_error_names_the_failure_without_the_values_postgres_quotes() {
    let env = TestEnv::new().await;
    let canary = format!("canary-{}", Uuid::now_v7().simple());
    // PostgreSQL's own message quotes the value: `invalid input syntax for type uuid: "..."`.
    let raw = sqlx::query("SELECT $1::text::uuid")
        .bind(&canary)
        .execute(&env.pool)
        .await
        .unwrap_err();
    assert!(
        raw.to_string().contains(&canary),
        "the server no longer quotes the value; pick another probe"
    );
    let err = StoreError::from(raw);
    let StoreError::Database(db) = &err else {
        panic!("not a database error: {err}");
    };
    assert_eq!(db.code().as_deref(), Some("22P02"));
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(&canary), "the value leaked: {shown}");
        assert!(shown.contains("22P02"), "the failure is not named: {shown}");
    }
    env.cleanup().await;
}

/// The append statements are text in `.sql` files bound from code: PostgreSQL's own reading
/// of each statement's parameters must be the bind list the code follows, in order.
#[tokio::test]
async fn each_append_statement_takes_its_binds_in_the_order_the_code_binds_them() {
    use sqlx::{Executor, TypeInfo};
    let env = TestEnv::new().await;
    let mut conn = env.pool.acquire().await.unwrap();
    for (sql, binds) in edupulse_events::__private::store::append_statements() {
        let described = conn.describe(sql).await.unwrap();
        let Some(sqlx::Either::Left(parameters)) = described.parameters() else {
            panic!("PostgreSQL names each parameter's type");
        };
        let described: Vec<&str> = parameters.iter().map(|t| t.name()).collect();
        let bound: Vec<&str> = binds.iter().map(|(_, ty)| *ty).collect();
        assert_eq!(described, bound, "{sql}");
    }
    drop(conn);
    env.cleanup().await;
}
