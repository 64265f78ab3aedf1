//! Store and relay throughput beside raw baselines measured in the same run, on the same
//! servers: single-event appends against a plain sqlx INSERT of the same envelope columns, and
//! draining an outbox backlog to JetStream against raw pipelined publishes of the same payloads
//! with `Nats-Msg-Id`. Run `scripts/services`, then `cargo bench --bench store_relay`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use async_nats::jetstream;
use async_nats::jetstream::context::PublishAckFuture;
use common::TestEnv;
use edupulse_domain::QuizSubmitted;
use edupulse_events::relay::{Relay, RelayConfig};
use edupulse_events::store::ExpectedVersion;
use edupulse_events::{Envelope, Uuid};

const APPENDS: usize = 3_000;
const BACKLOG: usize = 100_000;
const AGGREGATES: usize = 1_000;

fn event(quiz_id: Uuid, n: usize) -> Envelope {
    Envelope::new(&QuizSubmitted {
        quiz_id,
        student_id: Uuid::now_v7(),
        student_name: format!("student number {n}"),
        score: 0.5,
        answers: vec![],
    })
    .unwrap()
}

#[tokio::main]
async fn main() {
    let env = TestEnv::new().await;
    sqlx::query(
        "CREATE TABLE raw_events (position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
         event_id uuid, aggregate_type text, aggregate_id uuid, sequence bigint, event_type text, \
         version int, data_subjects uuid[], payload jsonb, metadata jsonb, occurred_at timestamptz)",
    )
    .execute(&env.pool)
    .await
    .unwrap();

    // Single-event appends, one per transaction, one writer.
    let envelopes: Vec<Envelope> = (0..APPENDS).map(|n| event(Uuid::now_v7(), n)).collect();
    let start = Instant::now();
    for e in &envelopes {
        let mut tx = env.pool.begin().await.unwrap();
        sqlx::query("INSERT INTO raw_events (event_id, aggregate_type, aggregate_id, sequence, event_type, version, data_subjects, payload, metadata, occurred_at) VALUES ($1,$2,$3,1,$4,$5,$6,$7::jsonb,$8::jsonb,$9)")
            .bind(e.id).bind(&e.aggregate_type).bind(e.aggregate_id).bind(&e.event_type)
            .bind(e.version as i32).bind(&e.data_subjects).bind(e.payload.to_string())
            .bind(serde_json::to_string(&e.metadata).unwrap()).bind(e.occurred_at)
            .execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }
    let raw_insert = APPENDS as f64 / start.elapsed().as_secs_f64();
    let envelopes: Vec<Envelope> = (0..APPENDS).map(|n| event(Uuid::now_v7(), n)).collect();
    let start = Instant::now();
    for e in &envelopes {
        let mut tx = env.pool.begin().await.unwrap();
        env.store
            .append(&mut tx, ExpectedVersion::NoStream, std::slice::from_ref(e))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let append = APPENDS as f64 / start.elapsed().as_secs_f64();
    println!(
        "append, 1 writer, 1 event/tx: {append:>9.0} ev/s   raw INSERT {raw_insert:>9.0} ev/s   ratio {:.2}",
        append / raw_insert
    );

    // Drain the outbox so the relay measurement starts from a known backlog.
    let publisher = env.publisher().await;
    let mut relay = Relay::new(env.store.clone(), publisher.clone(), RelayConfig::default());
    while env.count("outbox").await > 0 {
        relay.step().await.unwrap();
    }

    // Backlog: BACKLOG events over AGGREGATES aggregates, appended in batches of 100.
    let quizzes: Vec<Uuid> = (0..AGGREGATES).map(|_| Uuid::now_v7()).collect();
    let per = BACKLOG / AGGREGATES;
    for chunk in quizzes.chunks(10) {
        let mut tx = env.pool.begin().await.unwrap();
        for quiz in chunk {
            let batch: Vec<Envelope> = (0..per).map(|n| event(*quiz, n)).collect();
            env.store
                .append(&mut tx, ExpectedVersion::Any, &batch)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let payloads: Vec<(String, String, bytes::Bytes)> = sqlx::query_as::<_, (String, Uuid, String)>(
        "SELECT o.subject, e.event_id, e.payload::text FROM outbox o JOIN events e USING (position) ORDER BY position",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(s, id, p)| (s.replace(&env.prefix, &format!("{}.raw", env.prefix)), id.to_string(), bytes::Bytes::from(p)))
    .collect();

    // Raw: pipelined publishes of the same payloads with Nats-Msg-Id, 1,000 acks in flight.
    let js = jetstream::new(env.nats.clone());
    let start = Instant::now();
    for chunk in payloads.chunks(1000) {
        let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(chunk.len());
        for (subject, id, payload) in chunk {
            acks.push(
                js.send_publish(
                    subject.clone(),
                    jetstream::message::PublishMessage::build()
                        .payload(payload.clone())
                        .message_id(format!("raw-{id}")),
                )
                .await
                .unwrap(),
            );
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
    let raw_publish = payloads.len() as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    while env.count("outbox").await > 0 {
        relay.step().await.unwrap();
    }
    let relayed = BACKLOG as f64 / start.elapsed().as_secs_f64();
    println!(
        "relay, {BACKLOG} backlog over {AGGREGATES} aggregates: {relayed:>9.0} ev/s   raw pipelined publish {raw_publish:>9.0} ev/s   ratio {:.2}",
        relayed / raw_publish
    );
    env.cleanup().await;
}
