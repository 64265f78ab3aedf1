//! What the runtime reports through the `metrics` facade, read back with a debugging recorder
//! while the real relay publishes to nats-server and a subject is erased in PostgreSQL.

mod common;

use std::collections::HashMap;

use common::TestEnv;
use edupulse_domain::QuizSubmitted;
use edupulse_events::Uuid;
use edupulse_events::metrics as names;
use edupulse_events::privacy::Scrub;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[test]
fn the_relay_and_erasures_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // A local recorder is per thread: a current-thread runtime keeps every task on this one.
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let env = TestEnv::new().await;
                let student = Uuid::now_v7();
                for _ in 0..5 {
                    env.append(&[QuizSubmitted {
                        quiz_id: Uuid::now_v7(),
                        student_id: student,
                        student_name: "Ada".to_owned().into(),
                        score: 0.5,
                        answers: vec![],
                    }])
                    .await;
                }
                env.relay_everything().await;
                let runtime = env.runtime().await;
                runtime
                    .erase_subject(student, "metrics test", Scrub::KeysOnly)
                    .await
                    .unwrap();
                env.cleanup().await;
            });
    });
    let values: HashMap<String, DebugValue> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
        .collect();
    assert_eq!(
        values.get(names::RELAY_PUBLISHED),
        Some(&DebugValue::Counter(5))
    );
    assert_eq!(
        values.get(names::RELAY_DEAD_LETTERS),
        Some(&DebugValue::Counter(0))
    );
    assert_eq!(values.get(names::ERASURES), Some(&DebugValue::Counter(1)));
    let Some(DebugValue::Histogram(batches)) = values.get(names::RELAY_BATCH_EVENTS) else {
        panic!("no batch histogram: {values:?}");
    };
    assert_eq!(batches.iter().map(|b| b.into_inner()).sum::<f64>(), 5.0);
    assert!(
        matches!(values.get(names::RELAY_PUBLISH_SECONDS), Some(DebugValue::Histogram(h)) if !h.is_empty())
    );
    assert!(matches!(
        values.get(names::OUTBOX_LAG),
        Some(DebugValue::Gauge(_))
    ));
}
