//! Frames async-nats cannot parse, stored in the stream under the runtime's prefix by someone
//! allowed to publish there, among valid events: a header value that is not UTF-8, a header
//! line without a colon, a bad status line, a subject that is not UTF-8. The client drops the
//! connection such a frame arrives on, and JetStream sends it again at every redelivery, so it
//! must be found and set aside by the subscriber, every valid event must still be applied
//! once, and the relay, on a connection of its own, must not notice. A carriage return inside
//! a header value, which async-nats 0.51 panicked on, now arrives and is set aside as
//! undecodable.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::TestEnv;
use common::raw_frames::{self, MALFORMED};
use edupulse_events::consume::Subscriber;
use edupulse_events::metrics as names;
use edupulse_events::{DomainEvent, Envelope, Uuid};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde::{Deserialize, Serialize};

/// A valid event; `n` tells them apart.
#[derive(Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "test_malformed_frames.counted", aggregate = "counter")]
struct Counted {
    #[event(aggregate_id)]
    counter_id: Uuid,
    n: i32,
}

/// Valid events before the first frame, between frames, and while the subscriber runs.
const BEFORE: i32 = 5;
const BETWEEN: i32 = 2;
const DURING: i32 = 10;

/// Waits until `done` holds, checking every few milliseconds, for `within` at most.
async fn eventually(
    env: &TestEnv,
    within: Duration,
    what: &str,
    done: impl AsyncFn(&TestEnv) -> bool,
) {
    let deadline = Instant::now() + within;
    while !done(env).await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Appends events `from..to`, each on an aggregate of its own, and waits until the running
/// relay has published them.
async fn append_relayed(env: &TestEnv, from: i32, to: i32) {
    for n in from..to {
        env.append(&[Counted {
            counter_id: Uuid::now_v7(),
            n,
        }])
        .await;
    }
    eventually(
        env,
        Duration::from_secs(20),
        "the relay published",
        async |env| env.count("outbox").await == 0,
    )
    .await;
}

/// Publishes a raw frame on `{prefix}.{subject}`, on a thread of its own (the publisher
/// blocks).
async fn publish_raw(env: &TestEnv, subject: &'static [u8], headers: &'static [u8]) -> u64 {
    let url = env.nats_url.clone();
    let mut full = format!("{}.", env.prefix).into_bytes();
    full.extend_from_slice(subject);
    tokio::task::spawn_blocking(move || raw_frames::publish(&url, &full, headers, b"{}"))
        .await
        .unwrap()
}

// Current-thread: the thread-local recorder sees the relay's and the subscriber's tasks.
#[tokio::test]
async fn unparseable_frames_are_set_aside_and_valid_events_flow_past_them_and_the_relay_does_not_notice()
 {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let env = TestEnv::new().await;
    sqlx::query("CREATE TABLE counted (n INTEGER NOT NULL)")
        .execute(&env.pool)
        .await
        .unwrap();
    let runtime = env.runtime().await;
    let (stop_relay, relay_stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = runtime.spawn_relay(async {
        let _ = relay_stopped.await;
    });

    append_relayed(&env, 0, BEFORE).await;
    let mut raw = Vec::new();
    let mut next = BEFORE;
    let frames = MALFORMED
        .into_iter()
        .map(|(what, headers)| (what, &b"raw"[..], headers))
        .chain([
            (
                "a subject that is not UTF-8",
                &b"raw.\xff"[..],
                &b"NATS/1.0\r\n\r\n"[..],
            ),
            (
                "a carriage return in a header value",
                b"raw",
                b"NATS/1.0\r\nX-Note: a\rb\r\n\r\n",
            ),
        ]);
    for (what, subject, headers) in frames {
        raw.push((what, publish_raw(&env, subject, headers).await));
        append_relayed(&env, next, next + BETWEEN).await;
        next += BETWEEN;
    }

    let subscriber = Subscriber::builder(&runtime, "counter")
        // What a dropped connection had been sent comes back after this wait.
        .ack_wait(Duration::from_secs(2))
        .on(|event: Counted, _: &Envelope, tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO counted (n) VALUES ($1)")
                    .bind(event.n)
                    .execute(&mut *tx)
                    .await?;
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
    // The relay goes on publishing while the subscriber meets the frames.
    append_relayed(&env, next, next + DURING).await;
    let valid = i64::from(next + DURING);
    let relay_connects = || {
        runtime
            .publisher()
            .context()
            .client()
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let applied = env.count("counted").await;
        let set_aside = env.count("consumer_dead_letters").await;
        if applied == valid && set_aside == raw.len() as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 20 s, {applied} of {valid} valid events applied, {set_aside} of {} frames \
             set aside; the relay's connection was opened {} times",
            raw.len(),
            relay_connects()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    stop_relay.send(()).unwrap();
    relay.await.unwrap().unwrap();

    // Each valid event applied once.
    let applied: Vec<(i32, i64)> =
        sqlx::query_as("SELECT n, count(*) FROM counted GROUP BY n ORDER BY n")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(
        applied,
        (0..next + DURING).map(|n| (n, 1)).collect::<Vec<_>>()
    );
    // Each frame set aside, saying why, at its own stream sequence.
    let set_aside: Vec<(i64, Option<Uuid>, String)> = sqlx::query_as(
        "SELECT stream_sequence, event_id, reason FROM consumer_dead_letters \
         WHERE consumer = 'counter' ORDER BY stream_sequence",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let expected_reasons = [
        "never received: its header block is not UTF-8",
        "never received: a header line has no colon",
        "never received: its header version line does not begin with `NATS/1.0`",
        "never received: its subject is not UTF-8",
        "cannot decode",
    ];
    assert_eq!(set_aside.len(), raw.len());
    for (((sequence, event_id, reason), (what, stored_at)), expected) in
        set_aside.iter().zip(&raw).zip(expected_reasons)
    {
        assert_eq!(*sequence as u64, *stored_at, "{what}");
        assert_eq!(*event_id, None, "{what}");
        assert!(reason.starts_with(expected), "{what}: {reason}");
    }

    // The relay's connection never dropped, so it never failed a step; the subscriber's did,
    // and came back steady.
    assert_eq!(relay_connects(), 1, "the relay's connection dropped");
    let values: HashMap<String, DebugValue> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
        .collect();
    assert_eq!(values.get(names::RELAY_FAILED_STEPS), None);
    assert!(
        matches!(values.get(names::CONSUMER_RECONNECTS), Some(DebugValue::Counter(n)) if *n >= 1),
        "{:?}",
        values.get(names::CONSUMER_RECONNECTS)
    );
    assert_eq!(
        values.get(names::CONSUMER_DEAD_LETTERS),
        Some(&DebugValue::Counter(raw.len() as u64))
    );
    assert_ne!(
        values.get(names::CONSUMER_RECONNECT_LOOP),
        Some(&DebugValue::Gauge(1.0.into())),
        "reported as a reconnect loop"
    );
    env.cleanup().await;
}
