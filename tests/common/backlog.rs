//! A backlog of events in a test's outbox, and ways to watch a relay move it.

use std::time::{Duration, Instant};

use edupulse_domain::LearningPulseResponded;
use edupulse_events::store::ExpectedVersion;
use edupulse_events::{Envelope, Uuid};
use futures::StreamExt;

use super::TestEnv;

pub const EVENTS: usize = 20_000;
pub const AGGREGATES: usize = 200;

/// EVENTS events over AGGREGATES aggregates, interleaved in runs of 5 per aggregate.
pub async fn fill_outbox(env: &TestEnv) {
    let pulses: Vec<Uuid> = (0..AGGREGATES).map(|_| Uuid::now_v7()).collect();
    for round in 0..EVENTS / AGGREGATES / 5 {
        let mut tx = env.pool.begin().await.unwrap();
        for pulse in &pulses {
            let batch: Vec<Envelope> = (0..5)
                .map(|n| {
                    Envelope::new(&LearningPulseResponded {
                        pulse_id: *pulse,
                        student_id: Uuid::now_v7(),
                        choice: (round * 5 + n) as u32,
                        comment: None,
                    })
                    .unwrap()
                })
                .collect();
            env.store
                .append(&mut tx, ExpectedVersion::Any, &batch)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
}

/// Waits until `n` events have reached the stream's subjects.
pub async fn until_published(nats: &async_nats::Client, prefix: &str, n: usize) {
    let mut subscription = nats.subscribe(format!("{prefix}.>")).await.unwrap();
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(60), subscription.next())
            .await
            .expect("the relay made progress")
            .unwrap();
    }
}

/// Waits until the outbox is empty, checking at each relay NOTIFY-independent interval.
pub async fn until_outbox_empty(env: &TestEnv) {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    while env.count("outbox").await > 0 {
        assert!(Instant::now() < deadline, "outbox not drained in time");
        interval.tick().await;
    }
}

/// The stream sequences of the partitions' fences as they stand.
pub async fn fences(env: &TestEnv) -> Vec<u64> {
    let stream = async_nats::jetstream::new(env.nats.clone())
        .get_stream(&env.stream)
        .await
        .unwrap();
    let mut sequences = Vec::new();
    for partition in 0..env.store.partitions() as i16 {
        // Lane 0 alone on a single server, every lane on a cluster; none on a server that
        // cannot fence (then every message counts as the woken relay's).
        for lane in 0..edupulse_events::publish::CLUSTER_LANES {
            let subject = edupulse_events::publish::fence_subject(&env.prefix, partition, lane);
            match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(fence) => sequences.push(fence.sequence),
                Err(_) => break,
            }
        }
    }
    sequences
}
