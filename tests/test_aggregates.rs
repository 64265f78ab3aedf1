//! Commands on aggregates, on both backends: a decision made on a stale state is decided
//! again and appended once; racing writers never exceed a rule the version check guards; a
//! refused command appends nothing and takes the caller's rows back with it; an erasure
//! evicts the cached states built from the person's events; an event the aggregate does not
//! list is a typed error. And the given / when / then harness on the quiz aggregate.

mod common;

use std::sync::Arc;

use common::TestEnv;
use edupulse_domain::{Answer, BadgeAwarded, Quiz, QuizError, QuizEvent, QuizPublished};
use edupulse_events::aggregate::{Aggregates, CommandError};
use edupulse_events::embedded::SqliteStore;
use edupulse_events::privacy::{DataKey, LocalKeyProvider, Scrub};
use edupulse_events::store::{EventStore, ExpectedVersion};
use edupulse_events::testing::given;
use edupulse_events::{DomainEvent, Envelope, Uuid};

async fn sqlite_file(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path().join("events.db"), "edupulse")
        .await
        .unwrap()
        .with_keys(Arc::new(LocalKeyProvider::new(DataKey::generate())))
}

fn answers(correct: bool) -> Vec<Answer> {
    vec![Answer {
        question: 1,
        choice: "b".into(),
        correct,
    }]
}

/// A published quiz allowing `max_attempts` per student.
async fn published<S: EventStore + Clone>(store: &S, max_attempts: u32) -> Uuid {
    let quiz_id = Uuid::now_v7();
    Aggregates::<Quiz, _>::new(store.clone())
        .execute(&quiz_id, |quiz| {
            quiz.publish(quiz_id, Uuid::now_v7(), Uuid::now_v7(), max_attempts)
        })
        .await
        .unwrap();
    quiz_id
}

async fn submissions_of<S: EventStore>(store: &S, quiz_id: Uuid, student: Uuid) -> usize {
    store
        .load(quiz_id)
        .await
        .unwrap()
        .events
        .iter()
        .filter(|e| e.data_subjects() == [student] && e.type_name() == "quiz.submitted.v2")
        .count()
}

async fn a_stale_decision_is_decided_again_and_appended_once<S: EventStore + Clone>(store: S) {
    let quiz_id = published(&store, 1).await;
    let (ada, grace) = (Uuid::now_v7(), Uuid::now_v7());
    let quizzes = Aggregates::<Quiz, _>::new(store.clone());
    let warm = quizzes
        .execute(&quiz_id, |quiz| {
            quiz.submit(quiz_id, ada, "Ada".to_owned().into(), answers(true))
        })
        .await
        .unwrap();
    assert_eq!((warm.attempts, warm.cached), (1, false));
    // Another process submits for Grace: this cache's state of the quiz is now stale.
    Aggregates::<Quiz, _>::new(store.clone())
        .cache(0)
        .execute(&quiz_id, |quiz| {
            quiz.submit(quiz_id, grace, "Grace".to_owned().into(), answers(false))
        })
        .await
        .unwrap();

    // Decided on the stale state, refused by the version check, decided again on the fresh
    // one: Grace's single attempt is used up, which only the fresh state knows.
    let mut decided_on = Vec::new();
    let refused = quizzes
        .execute(&quiz_id, |quiz| {
            decided_on.push(quiz.attempts_of(grace));
            quiz.submit(quiz_id, grace, "Grace".to_owned().into(), answers(true))
        })
        .await
        .unwrap_err();
    assert_eq!(
        decided_on,
        [0, 1],
        "the second decision must see the first writer's event"
    );
    assert!(
        matches!(
            refused,
            CommandError::Rejected(QuizError::NoAttemptsLeft { allowed: 1 })
        ),
        "{refused}"
    );
    assert_eq!(submissions_of(&store, quiz_id, grace).await, 1);

    // A stale state whose second decision succeeds appends its events once.
    let (alan, edsger) = (Uuid::now_v7(), Uuid::now_v7());
    quizzes
        .execute(&quiz_id, |quiz| {
            quiz.submit(quiz_id, alan, "Alan".to_owned().into(), answers(true))
        })
        .await
        .unwrap();
    Aggregates::<Quiz, _>::new(store.clone())
        .cache(0)
        .execute(&quiz_id, |quiz| {
            quiz.submit(quiz_id, edsger, "Edsger".to_owned().into(), answers(true))
        })
        .await
        .unwrap();
    let barbara = Uuid::now_v7();
    let executed = quizzes
        .execute(&quiz_id, |quiz| {
            quiz.submit(quiz_id, barbara, "Barbara".to_owned().into(), answers(true))
        })
        .await
        .unwrap();
    assert_eq!((executed.attempts, executed.events), (2, 1), "{executed:?}");
    assert_eq!(submissions_of(&store, quiz_id, barbara).await, 1);
    assert_eq!(store.load(quiz_id).await.unwrap().version, executed.version);
}

async fn racing_writers_never_exceed_the_rule<S: EventStore + Clone + 'static>(store: S) {
    let quiz_id = published(&store, 3).await;
    let student = Uuid::now_v7();
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                Aggregates::<Quiz, _>::new(store)
                    .max_attempts(20)
                    .execute(&quiz_id, |quiz| {
                        quiz.submit(quiz_id, student, "Ada".to_owned().into(), answers(true))
                    })
                    .await
            })
        })
        .collect();
    let (mut appended, mut refused) = (0, 0);
    for writer in writers {
        match writer.await.unwrap() {
            Ok(_) => appended += 1,
            Err(CommandError::Rejected(QuizError::NoAttemptsLeft { allowed: 3 })) => refused += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!((appended, refused), (3, 5));
    assert_eq!(submissions_of(&store, quiz_id, student).await, 3);
}

async fn an_erasure_evicts_the_states_built_from_the_persons_events<S: EventStore + Clone>(
    store: S,
) {
    let quiz_id = published(&store, 2).await;
    let ada = Uuid::now_v7();
    let quizzes = Aggregates::<Quiz, _>::new(store.clone());
    quizzes
        .execute(&quiz_id, |quiz| {
            quiz.submit(quiz_id, ada, "Ada".to_owned().into(), answers(true))
        })
        .await
        .unwrap();
    assert_eq!(quizzes.cached(), 1);
    store
        .erase_subject(ada, "test", Scrub::KeysOnly)
        .await
        .unwrap();
    assert_eq!(
        quizzes.cached(),
        0,
        "a state built from Ada's events outlived her erasure"
    );
    // The next command reads the quiz again and goes on.
    let next = quizzes
        .execute(&quiz_id, |quiz| quiz.close(quiz_id, Uuid::now_v7()))
        .await
        .unwrap();
    assert!(!next.cached);
}

async fn an_event_the_aggregate_does_not_list_is_a_typed_error<S: EventStore + Clone>(store: S) {
    let quiz_id = published(&store, 1).await;
    let badge = BadgeAwarded {
        award_id: quiz_id, // another aggregate's event under the quiz's id
        student_id: Uuid::now_v7(),
        teacher_id: Uuid::now_v7(),
        student_name: "Ada".into(),
        teacher_note: "Well done".into(),
        badge: "b".into(),
    };
    store
        .append_committed(ExpectedVersion::Any, &[Envelope::new(&badge).unwrap()])
        .await
        .unwrap();
    let err = Aggregates::<Quiz, _>::new(store.clone())
        .execute(&quiz_id, |quiz| quiz.close(quiz_id, Uuid::now_v7()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CommandError::UnknownEvent { type_name, expected: "quiz", .. }
                if type_name == BadgeAwarded::TYPE
        ),
        "{err}"
    );
}

/// A refusal is checked by no append: made on a cached state, it is made again on a fresh
/// read. Replica B cached the quiz unpublished; after A publishes it, B's submission goes in.
async fn a_refusal_on_a_cached_state_is_decided_again_on_a_fresh_read<S>(store: S)
where
    S: EventStore + Clone,
{
    let (quiz_id, ada) = (Uuid::now_v7(), Uuid::now_v7());
    let replica_b = Aggregates::<Quiz, _>::new(store.clone());
    let submit = |quiz: &Quiz| quiz.submit(quiz_id, ada, "Ada".to_owned().into(), answers(true));
    let first = replica_b.execute(&quiz_id, submit).await.unwrap_err();
    assert!(
        matches!(first, CommandError::Rejected(QuizError::NotPublished)),
        "{first}"
    );
    assert_eq!(replica_b.cached(), 1);
    Aggregates::<Quiz, _>::new(store.clone())
        .execute(&quiz_id, |quiz| {
            quiz.publish(quiz_id, Uuid::now_v7(), Uuid::now_v7(), 1)
        })
        .await
        .unwrap();
    let second = replica_b.execute(&quiz_id, submit).await.unwrap();
    assert_eq!((second.version, second.cached), (2, false));
}

mod on_postgres {
    use super::*;

    /// A command reads what it decides on in its own transaction, the keys that open the
    /// events' personal data included: on a pool of one connection it never waits for a
    /// second (a pool of N, under N commands, would otherwise stall them all).
    #[tokio::test]
    async fn a_command_on_a_pool_of_one_reads_its_keys_on_its_own_connection() {
        use edupulse_events::privacy::KeyStore;
        use edupulse_events::sqlx::postgres::PgPoolOptions;
        use edupulse_events::store::Store;

        let env = TestEnv::new().await;
        let quiz_id = published(&env.store, 2).await;
        let ada = Uuid::now_v7();
        Aggregates::<Quiz, _>::new(env.store.clone())
            .execute(&quiz_id, |quiz| {
                quiz.submit(quiz_id, ada, "Ada".to_owned().into(), answers(true))
            })
            .await
            .unwrap();

        // Another process: one connection, and no key cached yet.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with((*env.pool.connect_options()).clone())
            .await
            .unwrap();
        let keys = KeyStore::new(Arc::new(LocalKeyProvider::new(env.master.clone())));
        let other = Store::new(pool.clone(), env.prefix.clone()).with_keys(Arc::new(keys));
        let done = Aggregates::<Quiz, _>::new(other)
            .execute(&quiz_id, |quiz| {
                quiz.submit(quiz_id, ada, "Ada".to_owned().into(), answers(false))
            })
            .await
            .unwrap();
        assert_eq!((done.version, done.cached), (3, false));
        pool.close().await;
        env.cleanup().await;
    }

    #[tokio::test]
    async fn a_refusal_on_a_cached_state_is_decided_again_on_a_fresh_read() {
        let env = TestEnv::new().await;
        super::a_refusal_on_a_cached_state_is_decided_again_on_a_fresh_read(env.store.clone())
            .await;
        env.cleanup().await;
    }

    #[tokio::test]
    async fn a_stale_decision_is_decided_again_and_appended_once() {
        let env = TestEnv::new().await;
        super::a_stale_decision_is_decided_again_and_appended_once(env.store.clone()).await;
        env.cleanup().await;
    }

    #[tokio::test]
    async fn racing_writers_never_exceed_the_rule() {
        let env = TestEnv::new().await;
        super::racing_writers_never_exceed_the_rule(env.store.clone()).await;
        env.cleanup().await;
    }

    #[tokio::test]
    async fn an_erasure_evicts_the_states_built_from_the_persons_events() {
        let env = TestEnv::new().await;
        super::an_erasure_evicts_the_states_built_from_the_persons_events(env.store.clone()).await;
        env.cleanup().await;
    }

    #[tokio::test]
    async fn an_event_the_aggregate_does_not_list_is_a_typed_error() {
        let env = TestEnv::new().await;
        super::an_event_the_aggregate_does_not_list_is_a_typed_error(env.store.clone()).await;
        env.cleanup().await;
    }

    /// A refusal by the caller's own writes rolls back their rows and appends nothing.
    #[tokio::test]
    async fn a_refused_command_appends_nothing_and_rolls_back_the_callers_rows() {
        let env = TestEnv::new().await;
        sqlx::query("CREATE TABLE grades (note TEXT)")
            .execute(&env.pool)
            .await
            .unwrap();
        let quiz_id = published(&env.store, 1).await;
        let before = env.store.load(quiz_id).await.unwrap().version;
        let err = Aggregates::<Quiz, _>::new(env.store.clone())
            .execute_with(
                &quiz_id,
                |quiz| quiz.close(quiz_id, Uuid::now_v7()),
                |tx, _events| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO grades (note) VALUES ('closing')")
                            .execute(&mut **tx)
                            .await?;
                        Err(CommandError::Rejected(QuizError::Closed))
                    })
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, CommandError::Rejected(QuizError::Closed)),
            "{err}"
        );
        assert_eq!(
            env.count("grades").await,
            0,
            "the caller's row outlived the refusal"
        );
        assert_eq!(env.store.load(quiz_id).await.unwrap().version, before);
        assert_eq!(
            env.count("outbox").await,
            1,
            "only the publication waits to be relayed"
        );
        env.cleanup().await;
    }
}

mod on_sqlite {
    use super::*;

    #[tokio::test]
    async fn a_refusal_on_a_cached_state_is_decided_again_on_a_fresh_read() {
        let dir = tempfile::tempdir().unwrap();
        super::a_refusal_on_a_cached_state_is_decided_again_on_a_fresh_read(
            sqlite_file(&dir).await,
        )
        .await;
    }

    #[tokio::test]
    async fn a_stale_decision_is_decided_again_and_appended_once() {
        let dir = tempfile::tempdir().unwrap();
        super::a_stale_decision_is_decided_again_and_appended_once(sqlite_file(&dir).await).await;
    }

    #[tokio::test]
    async fn racing_writers_never_exceed_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        super::racing_writers_never_exceed_the_rule(sqlite_file(&dir).await).await;
    }

    #[tokio::test]
    async fn an_erasure_evicts_the_states_built_from_the_persons_events() {
        let dir = tempfile::tempdir().unwrap();
        super::an_erasure_evicts_the_states_built_from_the_persons_events(sqlite_file(&dir).await)
            .await;
    }

    #[tokio::test]
    async fn an_event_the_aggregate_does_not_list_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        super::an_event_the_aggregate_does_not_list_is_a_typed_error(sqlite_file(&dir).await).await;
    }

    #[tokio::test]
    async fn a_refused_command_appends_nothing_and_rolls_back_the_callers_rows() {
        let store = edupulse_events::testing::store().await;
        sqlx::query("CREATE TABLE grades (note TEXT)")
            .execute(store.pool())
            .await
            .unwrap();
        let quiz_id = published(&store, 1).await;
        let err = Aggregates::<Quiz, _>::new(store.clone())
            .execute_with(
                &quiz_id,
                |quiz| quiz.close(quiz_id, Uuid::now_v7()),
                |tx, _events| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO grades (note) VALUES ('closing')")
                            .execute(&mut **tx)
                            .await?;
                        Err(CommandError::Rejected(QuizError::Closed))
                    })
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, CommandError::Rejected(QuizError::Closed)),
            "{err}"
        );
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM grades")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(rows, 0, "the caller's row outlived the refusal");
        assert_eq!(store.load(quiz_id).await.unwrap().version, 1);
    }
}

mod harness {
    use super::*;

    #[tokio::test]
    async fn given_a_published_quiz_when_a_student_submits_then_one_submission() {
        let (quiz_id, ada, teacher) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let published = QuizPublished {
            quiz_id,
            lesson_id: Uuid::now_v7(),
            teacher_id: teacher,
            max_attempts: 1,
        };
        let submitted = |name: &str| {
            QuizEvent::from(edupulse_domain::QuizSubmitted {
                quiz_id,
                student_id: ada,
                student_name: name.to_owned().into(),
                score: 1.0,
                answers: answers(true),
            })
        };
        given::<Quiz>([published.clone().into()])
            .when(&quiz_id, |quiz| {
                quiz.submit(quiz_id, ada, "Ada".to_owned().into(), answers(true))
            })
            .await
            .then([submitted("Ada")]);
        given::<Quiz>([published.clone().into(), submitted("Ada")])
            .when(&quiz_id, |quiz| {
                quiz.submit(quiz_id, ada, "Ada".to_owned().into(), answers(true))
            })
            .await
            .then_error(&QuizError::NoAttemptsLeft { allowed: 1 });

        // A wrong expectation fails naming the first differing event, both sides as JSON.
        let outcome = given::<Quiz>([published.into()])
            .when(&quiz_id, |quiz| {
                quiz.submit(quiz_id, ada, "Ada".to_owned().into(), answers(true))
            })
            .await;
        let failure = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            outcome.then([submitted("Grace")]);
        }))
        .expect_err("a wrong expectation must fail");
        let message = failure
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(message.contains("event 1 of 1"), "{message}");
        assert!(message.contains(r#""student_name":"Grace""#), "{message}");
        assert!(message.contains(r#""student_name":"Ada""#), "{message}");
    }
}

/// A subscriber's handlers given a history through `given_applied`: the read model they wrote
/// is there to assert on.
#[tokio::test]
async fn a_subscribers_handlers_are_given_a_history() {
    let store = edupulse_events::testing::store().await;
    let bus = edupulse_events::embedded::InProcessBus::default();
    sqlx::query("CREATE TABLE attempts (student TEXT)")
        .execute(store.pool())
        .await
        .unwrap();
    let mut subscriber = edupulse_events::consume::BusSubscriber::builder(&store, &bus, "attempts")
        .on(|submitted: edupulse_domain::QuizSubmitted, _envelope, tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO attempts (student) VALUES (?)")
                    .bind(submitted.student_id.to_string())
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            })
        })
        .build()
        .unwrap();
    let (quiz_id, ada) = (Uuid::now_v7(), Uuid::now_v7());
    let history: Vec<Envelope> = (0..3)
        .map(|_| {
            Envelope::new(&edupulse_domain::QuizSubmitted {
                quiz_id,
                student_id: ada,
                student_name: "Ada".into(),
                score: 1.0,
                answers: answers(true),
            })
            .unwrap()
        })
        .collect();
    let settled =
        edupulse_events::testing::given_applied(&store, &bus, &mut subscriber, history).await;
    assert_eq!((settled.applied, settled.set_aside), (3, 0));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts WHERE student = ?")
        .bind(ada.to_string())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 3);
}
