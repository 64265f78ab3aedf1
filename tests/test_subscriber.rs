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
use edupulse_events::relay::{Relay, RelayConfig};
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
    Runtime::builder()
        .postgres(env.pool.clone())
        .nats(env.nats.clone())
        .subject_prefix(env.prefix.clone())
        .stream(env.stream.clone())
        .partitions(4)
        .key_provider(Arc::new(LocalKeyProvider::new(env.master.clone())))
        .build()
        .await
        .unwrap()
}

async fn relay_everything(env: &TestEnv) {
    let mut relay = Relay::new(
        env.store.clone(),
        env.publisher().await,
        RelayConfig::default(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.count("outbox").await > 0 {
        assert!(
            Instant::now() < deadline,
            "the relay left rows in the outbox"
        );
        relay.step().await.unwrap();
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
    let env = TestEnv::new().await;
    sqlx::query("CREATE TABLE awarded (award_id UUID, points INTEGER)")
        .execute(&env.pool)
        .await
        .unwrap();
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
    relay_everything(&env).await;

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
    assert!(applied.iter().any(|(id, _)| *id == flaky.award_id));
    assert!(!applied.iter().any(|(id, _)| *id == hopeless.award_id));
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(attempts[&flaky.award_id], 3);
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
