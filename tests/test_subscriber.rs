//! The typed subscriber against real PostgreSQL and nats-server: events relayed to the stream
//! are decoded, dispatched by type inside the inbox transaction, retried with back-off, and
//! set aside with their reason when they keep failing, without holding the others up.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestEnv;
use edupulse_events::consume::{ConsumeError, Subscriber};
use edupulse_events::privacy::LocalKeyProvider;
use edupulse_events::{DomainEvent, Envelope, Runtime, Uuid};
use serde::{Deserialize, Serialize};

/// Points for a student; `fail_first` deliveries of it fail in the handler.
#[derive(Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "test_subscriber.points_awarded", aggregate = "award")]
struct PointsAwarded {
    #[event(aggregate_id)]
    award_id: Uuid,
    student_id: Uuid,
    points: i32,
    fail_first: u32,
}

/// A type the subscriber has no handler for.
#[derive(Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "test_subscriber.ignored", aggregate = "award")]
struct Ignored {
    #[event(aggregate_id)]
    award_id: Uuid,
}

async fn runtime(env: &TestEnv) -> Runtime {
    builder(env)
        .nats(env.nats_url.as_str(), async_nats::ConnectOptions::new())
        .build()
        .await
        .unwrap()
}

/// A runtime over `env`'s store, stream and keys, its NATS connection still to choose.
fn builder(env: &TestEnv) -> edupulse_events::RuntimeBuilder {
    Runtime::builder()
        .postgres(env.pool.clone())
        .subject_prefix(env.prefix.clone())
        .stream(env.stream.clone())
        .partitions(4)
        .key_provider(Arc::new(LocalKeyProvider::new(env.master.clone())))
}

/// The table the award handlers write.
async fn create_awarded(env: &TestEnv) {
    sqlx::query("CREATE TABLE awarded (award_id UUID, points INTEGER)")
        .execute(&env.pool)
        .await
        .unwrap();
}

/// `points` for a new student's new award, never failing on purpose.
fn points(points: i32) -> PointsAwarded {
    PointsAwarded {
        award_id: Uuid::now_v7(),
        student_id: Uuid::now_v7(),
        points,
        fail_first: 0,
    }
}

/// Waits until `done` holds, checking the database every few milliseconds.
async fn eventually(env: &TestEnv, what: &str, done: impl AsyncFn(&TestEnv) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(env).await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn failing_handlers_are_retried_or_set_aside_without_holding_up_the_others() {
    // The test's runtime is single-threaded: a thread-local recorder sees the subscriber.
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let env = TestEnv::new().await;
    create_awarded(&env).await;
    let award = |fail_first| PointsAwarded {
        award_id: Uuid::now_v7(),
        student_id: Uuid::now_v7(),
        points: 10,
        fail_first,
    };
    let flaky = award(2);
    let hopeless = award(u32::MAX);
    let mut events = vec![flaky.clone(), hopeless.clone()];
    events.extend((0..18).map(|_| award(0)));
    for event in &events {
        env.append(std::slice::from_ref(event)).await;
    }
    env.append(&[Ignored {
        award_id: Uuid::now_v7(),
    }])
    .await;
    env.relay_everything().await;

    let runtime = runtime(&env).await;
    let attempts: Arc<Mutex<HashMap<Uuid, u32>>> = Arc::default();
    let seen = attempts.clone();
    let subscriber = Subscriber::builder(&runtime, "awards")
        .max_deliveries(4)
        .backoff(vec![Duration::from_millis(20)])
        .on(move |event: PointsAwarded, _envelope: &Envelope, tx| {
            let attempt = {
                let mut seen = seen.lock().unwrap();
                let n = seen.entry(event.award_id).or_default();
                *n += 1;
                *n
            };
            Box::pin(async move {
                // The write happens before the failure: the inbox must roll it back.
                sqlx::query("INSERT INTO awarded (award_id, points) VALUES ($1, $2)")
                    .bind(event.award_id)
                    .bind(event.points)
                    .execute(&mut *tx)
                    .await?;
                if attempt <= event.fail_first {
                    return Err(format!("attempt {attempt} refused").into());
                }
                Ok(())
            })
        })
        .build()
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(subscriber.run(async {
        let _ = stopped.await;
    }));

    eventually(
        &env,
        "every good event applied and one set aside",
        async |env| {
            env.count("awarded").await == 19 && env.count("consumer_dead_letters").await == 1
        },
    )
    .await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();

    // Each applied once, the flaky one on its third delivery.
    let applied: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT award_id, count(*) FROM awarded GROUP BY award_id")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(applied.len(), 19);
    assert!(applied.iter().all(|(_, n)| *n == 1), "{applied:?}");
    let counted: HashMap<String, metrics_util::debugging::DebugValue> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| {
            key.key()
                .labels()
                .any(|l| l.key() == "consumer" && l.value() == "awards")
        })
        .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
        .collect();
    assert_eq!(
        counted.get(edupulse_events::metrics::CONSUMER_APPLIED),
        Some(&metrics_util::debugging::DebugValue::Counter(19))
    );
    assert_eq!(
        counted.get(edupulse_events::metrics::CONSUMER_DEAD_LETTERS),
        Some(&metrics_util::debugging::DebugValue::Counter(1))
    );
    assert!(applied.iter().any(|(id, _)| *id == flaky.award_id));
    assert!(!applied.iter().any(|(id, _)| *id == hopeless.award_id));
    // A failing handler runs once per delivery: the hopeless one four times, the flaky one
    // until its third. (A handler that succeeded may run again when another event of its
    // batch fails, its rolled-back writes then made again: attempts are not deliveries.)
    let attempts = attempts.lock().unwrap().clone();
    assert!(attempts[&flaky.award_id] >= 3, "{attempts:?}");
    assert_eq!(attempts[&hopeless.award_id], 4);
    let (event_id, deliveries, reason): (Uuid, i64, String) = sqlx::query_as(
        "SELECT event_id, deliveries, reason FROM consumer_dead_letters WHERE consumer = 'awards'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    let hopeless_id: Uuid =
        sqlx::query_scalar("SELECT event_id FROM events WHERE aggregate_id = $1")
            .bind(hopeless.award_id)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(event_id, hopeless_id);
    assert_eq!(deliveries, 4);
    assert!(
        reason.contains("handler failed 4 times") && reason.contains("attempt 4 refused"),
        "{reason}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn an_undecodable_message_is_set_aside_with_its_reason() {
    let env = TestEnv::new().await;
    let runtime = runtime(&env).await;
    let js = async_nats::jetstream::new(env.nats.clone());
    js.publish(
        format!("{}.test_subscriber.garbage.v1", env.prefix),
        "not an event".into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let subscriber = Subscriber::builder(&runtime, "awards")
        .on(|_: PointsAwarded, _envelope: &Envelope, _tx| Box::pin(async { Ok(()) }))
        .build()
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(subscriber.run(async {
        let _ = stopped.await;
    }));
    eventually(&env, "the message set aside", async |env| {
        env.count("consumer_dead_letters").await == 1
    })
    .await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let (deliveries, reason): (i64, String) =
        sqlx::query_as("SELECT deliveries, reason FROM consumer_dead_letters")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(deliveries, 1, "an undecodable message is not retried");
    assert!(reason.starts_with("cannot decode"), "{reason}");
    env.cleanup().await;
}

#[tokio::test]
async fn a_handler_for_an_old_version_or_a_second_handler_is_refused() {
    let env = TestEnv::new().await;
    let runtime = runtime(&env).await;
    let old = Subscriber::builder(&runtime, "scores")
        .on(
            |_: edupulse_domain::QuizSubmittedV1, _envelope: &Envelope, _tx| {
                Box::pin(async { Ok(()) })
            },
        )
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(old, ConsumeError::NotNewestVersion { newest, .. } if newest == "quiz.submitted.v2"),
        "{old}"
    );
    let twice = Subscriber::builder(&runtime, "scores")
        .on(|_: PointsAwarded, _envelope: &Envelope, _tx| Box::pin(async { Ok(()) }))
        .on(|_: PointsAwarded, _envelope: &Envelope, _tx| Box::pin(async { Ok(()) }))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(twice, ConsumeError::DuplicateHandler(_)),
        "{twice}"
    );
    env.cleanup().await;
}

/// Runs `subscriber` until `done` holds, then stops it and waits for it to finish.
async fn run_until(
    subscriber: Subscriber,
    env: &TestEnv,
    what: &str,
    done: impl AsyncFn(&TestEnv) -> bool,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(subscriber.run(async {
        let _ = stopped.await;
    }));
    eventually(env, what, done).await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}

/// Points of -1 make the handler swallow a failed statement, -2 return a database error that
/// quotes a value; any other number is recorded.
fn misbehaving_subscriber(runtime: &Runtime) -> edupulse_events::consume::SubscriberBuilder {
    Subscriber::builder(runtime, "awards")
        .max_deliveries(2)
        .backoff(vec![Duration::from_millis(10)])
        .on(|event: PointsAwarded, _envelope: &Envelope, tx| {
            Box::pin(async move {
                match event.points {
                    -1 => {
                        let _ignored = sqlx::query("SELECT 1 / 0").execute(&mut *tx).await;
                    }
                    -2 => {
                        sqlx::query("SELECT $1::text::uuid")
                            .bind("canary-quoted-value")
                            .execute(&mut *tx)
                            .await?;
                    }
                    points => {
                        sqlx::query("INSERT INTO awarded (award_id, points) VALUES ($1, $2)")
                            .bind(event.award_id)
                            .bind(points)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                Ok(())
            })
        })
}

#[tokio::test]
async fn a_swallowed_statement_failure_is_not_acknowledged_as_applied_and_reasons_quote_no_values()
{
    let env = TestEnv::new().await;
    create_awarded(&env).await;
    let award = points;
    let mut events: Vec<PointsAwarded> = (0..10).map(|_| award(5)).collect();
    events.insert(3, award(-1));
    events.insert(7, award(-2));
    for event in &events {
        env.append(std::slice::from_ref(event)).await;
    }
    env.relay_everything().await;
    let runtime = runtime(&env).await;
    let subscriber = misbehaving_subscriber(&runtime).build().await.unwrap();
    run_until(
        subscriber,
        &env,
        "ten applied and two set aside",
        async |env| env.count("consumer_dead_letters").await == 2,
    )
    .await;

    assert_eq!(env.count("awarded").await, 10);
    assert_eq!(
        env.count("inbox").await,
        10,
        "only applied events are recorded"
    );
    let reasons: Vec<(i64, String)> = sqlx::query_as(
        "SELECT deliveries, reason FROM consumer_dead_letters ORDER BY stream_sequence",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(reasons[0].0, 2);
    assert!(
        reasons[0].1.contains("the handler reported success"),
        "{}",
        reasons[0].1
    );
    assert!(reasons[1].1.contains("SQLSTATE 22P02"), "{}", reasons[1].1);
    assert!(!reasons[1].1.contains("canary"), "{}", reasons[1].1);
    env.cleanup().await;
}

#[tokio::test]
async fn events_without_a_handler_go_to_the_unhandled_handler_when_there_is_one() {
    let env = TestEnv::new().await;
    sqlx::query("CREATE TABLE routed (event_type TEXT)")
        .execute(&env.pool)
        .await
        .unwrap();
    let award_id = Uuid::now_v7();
    env.append(&[Ignored { award_id }, Ignored { award_id }])
        .await;
    env.append(&[PointsAwarded {
        award_id,
        student_id: Uuid::now_v7(),
        points: 1,
        fail_first: 0,
    }])
    .await;
    env.relay_everything().await;
    let runtime = runtime(&env).await;
    let subscriber = Subscriber::builder(&runtime, "router")
        .on(|_: PointsAwarded, _envelope: &Envelope, _tx| Box::pin(async { Ok(()) }))
        .on_unhandled(|event, _envelope: &Envelope, tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO routed (event_type) VALUES ($1)")
                    .bind(event.type_name())
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            })
        })
        .build()
        .await
        .unwrap();
    run_until(subscriber, &env, "all three applied", async |env| {
        env.count("inbox").await == 3
    })
    .await;
    let routed: Vec<String> = sqlx::query_scalar("SELECT event_type FROM routed")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(routed, vec![Ignored::TYPE; 2]);
    env.cleanup().await;
}

#[tokio::test]
async fn a_catch_up_stops_at_a_failing_event_and_applies_nothing_after_it() {
    let env = TestEnv::new().await;
    create_awarded(&env).await;
    let award = points;
    let mut positions = Vec::new();
    for points in [1, 2, 3, -2, 5, 6] {
        positions.extend(env.append(&[award(points)]).await);
    }
    let runtime = runtime(&env).await;
    let subscriber = misbehaving_subscriber(&runtime).build().await.unwrap();
    let err = subscriber.catch_up().await.unwrap_err();
    let edupulse_events::consume::CatchUpError::Handler {
        position, reason, ..
    } = err
    else {
        panic!("{err}");
    };
    assert_eq!(position, positions[3]);
    assert_eq!(
        reason,
        "the database refused the statement (SQLSTATE 22P02)"
    );
    let applied: Vec<i32> = sqlx::query_scalar("SELECT points FROM awarded ORDER BY points")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(applied, vec![1, 2, 3]);
    env.cleanup().await;
}

#[tokio::test]
async fn a_catch_up_resumes_where_the_last_one_ended_unless_told_to_start_over() {
    let env = TestEnv::new().await;
    create_awarded(&env).await;
    for award in 1..=4 {
        env.append(&[points(award)]).await;
    }
    let runtime = runtime(&env).await;
    let subscriber = misbehaving_subscriber(&runtime).build().await.unwrap();
    assert_eq!(subscriber.catch_up().await.unwrap(), 4);
    // Without its inbox rows the subscriber could not tell what it applied: a catch-up that
    // went back to the beginning would apply those four again.
    sqlx::query("DELETE FROM inbox WHERE consumer = 'awards'")
        .execute(&env.pool)
        .await
        .unwrap();
    for award in 5..=6 {
        env.append(&[points(award)]).await;
    }
    assert_eq!(subscriber.catch_up().await.unwrap(), 2, "resumed");
    assert_eq!(subscriber.catch_up().await.unwrap(), 0, "caught up");
    // A rebuild from nothing (the projection and its inbox rows emptied) reads the whole log.
    sqlx::query("TRUNCATE awarded")
        .execute(&env.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM inbox WHERE consumer = 'awards'")
        .execute(&env.pool)
        .await
        .unwrap();
    assert_eq!(subscriber.catch_up_from_start().await.unwrap(), 6);
    env.cleanup().await;
}

#[tokio::test]
async fn an_unknown_stored_type_stops_a_catch_up_with_its_place_unless_skipped() {
    let env = TestEnv::new().await;
    create_awarded(&env).await;
    env.append(&[points(1)]).await;
    // A type some other binary writes, which this one does not link (this binary's store
    // refuses to append a type it does not know).
    let unknown = Uuid::now_v7();
    let position: i64 = sqlx::query_scalar(
        "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, \
         version, payload, occurred_at) \
         VALUES ($1, 'award', $2, 1, 'award.revoked', 1, '{}', now()) RETURNING position",
    )
    .bind(unknown)
    .bind(Uuid::now_v7())
    .fetch_one(&env.pool)
    .await
    .unwrap();
    env.append(&[points(3)]).await;
    let runtime = runtime(&env).await;

    let strict = misbehaving_subscriber(&runtime).build().await.unwrap();
    let err = strict.catch_up().await.unwrap_err();
    let edupulse_events::consume::CatchUpError::Undecodable {
        event_id,
        position: at,
        ..
    } = err
    else {
        panic!("{err}");
    };
    assert_eq!((event_id, at), (unknown, position));
    assert!(err_text(&strict).await.contains("award.revoked"));
    let applied: Vec<i32> = sqlx::query_scalar("SELECT points FROM awarded ORDER BY points")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(applied, vec![1], "the event before it is applied");

    let lenient = misbehaving_subscriber(&runtime)
        .skip_unknown_types(true)
        .build()
        .await
        .unwrap();
    assert_eq!(lenient.catch_up().await.unwrap(), 1, "the one after it");
    let applied: Vec<i32> = sqlx::query_scalar("SELECT points FROM awarded ORDER BY points")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(applied, vec![1, 3]);
    env.cleanup().await;
}

/// The text of the error a catch-up by `subscriber` stops with.
async fn err_text(subscriber: &Subscriber) -> String {
    subscriber.catch_up().await.unwrap_err().to_string()
}

#[tokio::test]
async fn a_runtime_on_one_client_of_the_applications_relays_and_subscribes() {
    let env = TestEnv::new().await;
    create_awarded(&env).await;
    let runtime = builder(&env)
        .nats_client(env.nats.clone())
        .build()
        .await
        .unwrap();
    let subscriber = misbehaving_subscriber(&runtime).build().await.unwrap();
    env.append(&[points(7)]).await;
    env.drain(&mut runtime.relay()).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(subscriber.run(async {
        let _ = stopped.await;
    }));
    eventually(&env, "the event is applied", async |env: &TestEnv| {
        env.count("awarded").await == 1
    })
    .await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    env.cleanup().await;
}
