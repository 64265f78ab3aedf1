//! A subscriber whose database goes away: events it cannot open for now (their keys are in
//! the database) wait until it is back and are applied once each; none is set aside. The
//! PostgreSQL cluster is the test's own, so it can be stopped.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::own_servers::OwnPostgres;
use edupulse_domain::QuizSubmitted;
use edupulse_events::consume::Subscriber;
use edupulse_events::privacy::{DataKey, LocalKeyProvider, Pii};
use edupulse_events::{Envelope, Runtime, Uuid};
use sqlx::postgres::PgPoolOptions;

const EVENTS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_met_while_postgres_is_down_wait_for_it_and_none_is_set_aside() {
    common::ensure_services();
    let mut postgres = OwnPostgres::init();
    postgres.start();
    // Short acquire timeouts: a pool with the server gone fails in two seconds, not thirty.
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&postgres.url())
        .await
        .unwrap();
    let id = Uuid::now_v7().simple().to_string();
    let nats = async_nats::connect(common::nats_url()).await.unwrap();
    let runtime = Runtime::builder()
        .postgres(pool.clone())
        .nats(common::nats_url(), async_nats::ConnectOptions::new())
        .subject_prefix(format!("t{id}"))
        .stream(format!("T{id}").to_uppercase())
        .partitions(2)
        .key_provider(Arc::new(LocalKeyProvider::new(DataKey::generate())))
        .build()
        .await
        .unwrap();
    for n in 0..EVENTS {
        let event = Envelope::new(&QuizSubmitted {
            quiz_id: Uuid::now_v7(),
            student_id: Uuid::now_v7(),
            student_name: Pii::from(format!("student {n}")),
            score: 0.5,
            answers: vec![],
        })
        .unwrap();
        runtime
            .store()
            .append_committed(edupulse_events::store::ExpectedVersion::NoStream, &[event])
            .await
            .unwrap();
    }
    let mut relay = runtime.relay();
    for step in 0.. {
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&pool)
            .await
            .unwrap();
        if waiting == 0 {
            break;
        }
        assert!(step < 1_000, "the outbox did not drain");
        relay.step().await.unwrap();
    }
    drop(relay);

    let applied: Arc<Mutex<Vec<Pii<String>>>> = Arc::default();
    let seen = applied.clone();
    let subscriber = Subscriber::builder(&runtime, "quizzes")
        .backoff(vec![Duration::from_millis(50), Duration::from_millis(200)])
        .on(move |event: QuizSubmitted, _: &Envelope, _tx| {
            seen.lock().unwrap().push(event.student_name);
            Box::pin(async { Ok(()) })
        })
        .build()
        .await
        .unwrap();
    // The database goes away before the subscriber reads anything: every message needs it,
    // to open its personal data.
    postgres.stop();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(subscriber.run(async {
        stopped.await.ok();
    }));
    // Long enough for several failed attempts (each waits the pool's 2 s).
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(applied.lock().unwrap().is_empty());
    postgres.start();

    let deadline = Instant::now() + Duration::from_secs(120);
    while applied.lock().unwrap().len() < EVENTS {
        assert!(
            Instant::now() < deadline,
            "applied {} of {EVENTS}",
            applied.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        applied
            .lock()
            .unwrap()
            .iter()
            .all(|name| name.present().is_some()),
        "applied as erased"
    );
    let set_aside: i64 = sqlx::query_scalar("SELECT count(*) FROM consumer_dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(set_aside, 0, "set aside while the database was down");
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    pool.close().await;
    let js = async_nats::jetstream::new(nats);
    js.delete_stream(format!("T{id}").to_uppercase())
        .await
        .unwrap();
}
