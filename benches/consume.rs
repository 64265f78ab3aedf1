//! Consuming: events/s decoded (PII opened), dispatched and applied through the inbox (one
//! transaction per event, its write and the inbox row committed together) beside a raw
//! JetStream pull consumer that only acknowledges, over the same stream in the same run.
//! Run `scripts/services && cargo bench --bench consume`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::TestEnv;
use edupulse_domain::QuizSubmitted;
use edupulse_events::consume::Subscriber;
use edupulse_events::store::ExpectedVersion;
use edupulse_events::{Envelope, Uuid};
use futures::StreamExt;

const EVENTS: u64 = 5_000;
const STUDENTS: usize = 200;

#[tokio::main]
async fn main() {
    let env = TestEnv::new().await;
    sqlx::query("CREATE TABLE scores (student UUID PRIMARY KEY, quizzes BIGINT NOT NULL)")
        .execute(&env.pool)
        .await
        .unwrap();
    let students: Vec<Uuid> = (0..STUDENTS).map(|_| Uuid::now_v7()).collect();
    for q in 0..(EVENTS as usize / 100) {
        let quiz_id = Uuid::now_v7();
        let batch: Vec<Envelope> = (0..100)
            .map(|n| {
                Envelope::new(&QuizSubmitted {
                    quiz_id,
                    student_id: students[(q * 100 + n) % STUDENTS],
                    student_name: format!("student {n}").into(),
                    score: 0.5,
                    answers: vec![],
                })
                .unwrap()
            })
            .collect();
        env.store
            .append_committed(ExpectedVersion::NoStream, &batch)
            .await
            .unwrap();
    }
    env.relay_everything().await;

    let raw = raw_acks(&env).await;
    let batched = with_inbox(&env, "batched", 100).await;
    let single = with_inbox(&env, "single", 1).await;
    println!(
        "consume {EVENTS} events | raw pull consumer, ack only: {raw:.0} ev/s | \
         decoded, PII opened, applied through the inbox in batches of up to 100: {batched:.0} ev/s \
         (ratio {:.3}) | one transaction per event: {single:.0} ev/s (ratio {:.3})",
        batched / raw,
        single / raw
    );
    env.cleanup().await;
}

/// A plain pull consumer that acknowledges each message and nothing else.
async fn raw_acks(env: &TestEnv) -> f64 {
    let js = jetstream::new(env.nats.clone());
    let stream = js.get_stream(&env.stream).await.unwrap();
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let start = Instant::now();
    let mut seen = 0;
    while seen < EVENTS {
        let message = messages.next().await.unwrap().unwrap();
        message.ack().await.unwrap();
        seen += 1;
    }
    EVENTS as f64 / start.elapsed().as_secs_f64()
}

/// The library's subscriber: a handler that counts the student's quiz in its own table,
/// at most `max_batch` events to a transaction; checks every event was applied once.
async fn with_inbox(env: &TestEnv, name: &str, max_batch: usize) -> f64 {
    sqlx::query("TRUNCATE scores")
        .execute(&env.pool)
        .await
        .unwrap();
    let runtime = env.runtime().await;
    let done = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(tokio::sync::Notify::new());
    let (count, notify) = (done.clone(), finished.clone());
    let subscriber = Subscriber::builder(&runtime, name)
        .max_batch(max_batch)
        .on(move |quiz: QuizSubmitted, _envelope: &Envelope, tx| {
            let (count, notify) = (count.clone(), notify.clone());
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO scores (student, quizzes) VALUES ($1, 1) \
                     ON CONFLICT (student) DO UPDATE SET quizzes = scores.quizzes + 1",
                )
                .bind(quiz.student_id)
                .execute(&mut *tx)
                .await?;
                if count.fetch_add(1, Ordering::SeqCst) + 1 == EVENTS {
                    notify.notify_one();
                }
                Ok(())
            })
        })
        .build()
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let start = Instant::now();
    let running = tokio::spawn(subscriber.run(async {
        let _ = stopped.await;
    }));
    tokio::time::timeout(Duration::from_secs(300), finished.notified())
        .await
        .expect("the subscriber applied every event");
    let rate = EVENTS as f64 / start.elapsed().as_secs_f64();
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT sum(quizzes)::BIGINT FROM scores")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(applied, EVENTS as i64, "every event applied once");
    rate
}
