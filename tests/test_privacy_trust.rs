//! What a reader believes about personal data, against real PostgreSQL and nats-server: only
//! an erasure record makes a value read as erased (a missing key is a typed error, and a
//! subscriber waits for it instead of applying or setting the event aside), and a consumer
//! believes neither an erasure event nor headers that the store and the payload do not back.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::{TestEnv, header};
use edupulse_domain::QuizSubmitted;
use edupulse_events::consume::{Subscriber, SubscriberHealth};
use edupulse_events::embedded::SqliteStore;
use edupulse_events::privacy::Scrub;
use edupulse_events::privacy::{
    DataKey, DataSubjectErased, KeyStore, LocalKeyProvider, Pii, PrivacyError,
};
use edupulse_events::publish::header_names;
use edupulse_events::store::{EventStore, ExpectedVersion, LogCursor, Store, StoreError};
use edupulse_events::{DomainEvent, Envelope, Runtime, Uuid};

fn quiz(student_id: Uuid) -> QuizSubmitted {
    QuizSubmitted {
        quiz_id: Uuid::now_v7(),
        student_id,
        student_name: Pii::from("Ada Lovelace"),
        score: 0.9,
        answers: vec![],
    }
}

async fn runtime(env: &TestEnv, master: DataKey) -> Runtime {
    Runtime::builder()
        .postgres(env.pool.clone())
        .nats(env.nats_url.as_str(), async_nats::ConnectOptions::new())
        .subject_prefix(env.prefix.clone())
        .stream(env.stream.clone())
        .partitions(4)
        .key_provider(Arc::new(LocalKeyProvider::new(master)))
        .build()
        .await
        .unwrap()
}

/// Waits until `done` holds, bounded in time.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A subscriber running until [`Running::stop`].
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), edupulse_events::consume::ConsumeError>>,
}

fn start(subscriber: Subscriber) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(subscriber.run(async {
        stopped.await.ok();
    }));
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// A `quizzes` subscriber that records each quiz's name, with two deliveries and a short
/// back-off.
async fn quiz_subscriber(
    runtime: &Runtime,
) -> (
    Running,
    Arc<Mutex<Vec<Pii<String>>>>,
    tokio::sync::watch::Receiver<SubscriberHealth>,
) {
    let applied: Arc<Mutex<Vec<Pii<String>>>> = Arc::default();
    let seen = applied.clone();
    let subscriber = Subscriber::builder(runtime, "quizzes")
        .max_deliveries(2)
        .backoff(vec![Duration::from_millis(20)])
        .on(move |event: QuizSubmitted, _: &Envelope, _tx| {
            seen.lock().unwrap().push(event.student_name);
            Box::pin(async { Ok(()) })
        })
        .build()
        .await
        .unwrap();
    let health = subscriber.health();
    (start(subscriber), applied, health)
}

/// How many deliveries the `quizzes` consumer has made, redeliveries included.
async fn deliveries(env: &TestEnv) -> u64 {
    jetstream::new(env.nats.clone())
        .get_stream(&env.stream)
        .await
        .unwrap()
        .consumer_info("quizzes")
        .await
        .unwrap()
        .delivered
        .consumer_sequence
}

fn assert_key_missing(err: StoreError, subject: Uuid) {
    match err {
        StoreError::Privacy(PrivacyError::KeyMissing {
            subject: named,
            key_version,
            ..
        }) => assert_eq!((named, key_version), (subject, 1)),
        other => panic!("expected KeyMissing, got {other}"),
    }
}

#[tokio::test]
async fn a_key_missing_without_an_erasure_is_an_error_not_erased_data_on_postgres() {
    let env = TestEnv::new().await;
    let student = Uuid::now_v7();
    let event = quiz(student);
    env.append(std::slice::from_ref(&event)).await;
    // As if the key table were restored from a backup older than the student's first event.
    sqlx::query("DELETE FROM subject_keys WHERE subject_id = $1")
        .bind(student)
        .execute(&env.pool)
        .await
        .unwrap();
    // Read as another process would, with no key cached from the append.
    let reader = Store::new(env.pool.clone(), env.prefix.clone()).with_keys(Arc::new(
        KeyStore::new(Arc::new(LocalKeyProvider::new(env.master.clone()))),
    ));
    // The aggregate's own stream: `read_all` may hold events back behind other tests'
    // transactions.
    let err = reader
        .read_stream(event.quiz_id)
        .await
        .expect_err("read as erased");
    assert_key_missing(err, student);

    // An erasure makes the same value read as erased.
    env.store
        .erase_subject(student, "test", Scrub::KeysOnly)
        .await
        .unwrap();
    let events = reader.read_stream(event.quiz_id).await.unwrap();
    let decoded: QuizSubmitted = edupulse_events::Registry::global()
        .decode("quiz.submitted", 2, &events[0].envelope.payload)
        .unwrap()
        .downcast()
        .unwrap_or_else(|_| panic!("not a quiz"));
    assert!(decoded.student_name.is_erased());
    // A second erasure says so, and destroys nothing.
    let again = env
        .store
        .erase_subject(student, "test again", Scrub::KeysOnly)
        .await
        .unwrap();
    assert!(again.already_erased);
    assert_eq!(again.keys_destroyed, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn a_key_missing_without_an_erasure_is_an_error_not_erased_data_on_sqlite() {
    let store = SqliteStore::in_memory("test")
        .await
        .unwrap()
        .with_keys(Arc::new(LocalKeyProvider::new(DataKey::generate())));
    let student = Uuid::now_v7();
    store
        .append_committed(
            ExpectedVersion::NoStream,
            &[Envelope::new(&quiz(student)).unwrap()],
        )
        .await
        .unwrap();
    sqlx::query("DELETE FROM subject_keys WHERE subject_id = ?")
        .bind(student.to_string())
        .execute(store.pool())
        .await
        .unwrap();
    let err = store.read_all(LogCursor::START, 10).await.unwrap_err();
    assert_key_missing(err, student);
    let receipt = store
        .erase_subject(student, "test", Scrub::KeysOnly)
        .await
        .unwrap();
    assert!(!receipt.already_erased);
    let events = store.read_all(LogCursor::START, 10).await.unwrap();
    assert_eq!(
        events[0].envelope.payload["student_name"],
        edupulse_events::privacy::erased_json()
    );
    // A second erasure says so.
    let again = store
        .erase_subject(student, "test again", Scrub::KeysOnly)
        .await
        .unwrap();
    assert!(again.already_erased);
    assert_eq!(again.keys_destroyed, 0);
}

/// Counts the subscriber's stalls, by fault, as they are recorded on this thread (a
/// snapshot drains the recorder, so the counts accumulate here).
struct Stalls {
    snapshotter: metrics_util::debugging::Snapshotter,
    counted: std::cell::Cell<u64>,
}

impl Stalls {
    fn new(recorder: &metrics_util::debugging::DebuggingRecorder) -> Self {
        Stalls {
            snapshotter: recorder.snapshotter(),
            counted: std::cell::Cell::new(0),
        }
    }

    /// Stalls of `fault` so far.
    fn of(&self, fault: &str) -> u64 {
        let new: u64 = self
            .snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| {
                key.key().name() == "edupulse_consumer_stalled_total"
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "fault" && l.value() == fault)
            })
            .map(|(.., value)| match value {
                metrics_util::debugging::DebugValue::Counter(n) => n,
                _ => 0,
            })
            .sum();
        self.counted.set(self.counted.get() + new);
        self.counted.get()
    }
}

#[tokio::test]
async fn a_subscriber_waits_for_a_missing_key_in_order_and_uses_up_no_delivery() {
    // The test's runtime is single-threaded: a thread-local recorder sees the subscriber.
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let stalls = Stalls::new(&recorder);
    let _recording = metrics::set_default_local_recorder(&recorder);
    let env = TestEnv::new().await;
    // Two submissions of one quiz: the first student's key is missing, the second's is not.
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    let mut earlier = quiz(first);
    let mut later = quiz(second);
    later.quiz_id = earlier.quiz_id;
    later.student_name = Pii::from("Grace Hopper");
    earlier.student_name = Pii::from("Ada Lovelace");
    env.append(std::slice::from_ref(&earlier)).await;
    env.append(std::slice::from_ref(&later)).await;
    let (version, wrapped): (i32, Vec<u8>) = sqlx::query_as(
        "DELETE FROM subject_keys WHERE subject_id = $1 RETURNING key_version, wrapped",
    )
    .bind(first)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    env.relay_everything().await;

    let runtime = runtime(&env, env.master.clone()).await;
    let (running, applied, health) = quiz_subscriber(&runtime).await;
    eventually("the subscriber stalls again and again", async || {
        stalls.of("configuration") >= 3
    })
    .await;
    assert!(
        health.borrow().needs_operator(),
        "a health check sees the stall: {:?}",
        *health.borrow()
    );
    // Neither applied (the later one waits behind the earlier), nothing set aside, and no
    // message delivered again: waiting used up no delivery.
    assert!(applied.lock().unwrap().is_empty(), "applied out of order");
    assert_eq!(env.count("consumer_dead_letters").await, 0, "set aside");
    assert_eq!(deliveries(&env).await, 2, "redelivered while waiting");

    // The key comes back (the right backup restored): both are applied, in order.
    sqlx::query("INSERT INTO subject_keys (subject_id, key_version, wrapped) VALUES ($1, $2, $3)")
        .bind(first)
        .bind(version)
        .bind(wrapped)
        .execute(&env.pool)
        .await
        .unwrap();
    eventually("both are applied", async || {
        applied.lock().unwrap().len() == 2
    })
    .await;
    assert_eq!(*health.borrow(), SubscriberHealth::Running);
    let names: Vec<Option<String>> = applied
        .lock()
        .unwrap()
        .iter()
        .map(|name| name.present().cloned())
        .collect();
    assert_eq!(
        names,
        [
            Some("Ada Lovelace".to_owned()),
            Some("Grace Hopper".to_owned())
        ]
    );
    running.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_wrong_master_key_stalls_a_subscriber_and_sets_nothing_aside() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let stalls = Stalls::new(&recorder);
    let _recording = metrics::set_default_local_recorder(&recorder);
    let env = TestEnv::new().await;
    env.append(&[quiz(Uuid::now_v7())]).await;
    env.relay_everything().await;
    let runtime = runtime(&env, DataKey::generate()).await;
    let (running, applied, health) = quiz_subscriber(&runtime).await;
    eventually("the subscriber stalls again and again", async || {
        stalls.of("configuration") >= 3
    })
    .await;
    assert!(
        matches!(
            *health.borrow(),
            SubscriberHealth::Stalled { fault: edupulse_events::Fault::Configuration, attempts, .. }
                if attempts >= 3
        ),
        "{:?}",
        *health.borrow()
    );
    assert!(applied.lock().unwrap().is_empty());
    assert_eq!(env.count("consumer_dead_letters").await, 0, "set aside");
    // Stopping a stalled subscriber does not wait for the stall to end.
    running.stop().await;
    env.cleanup().await;
}

/// Publishes `body` with `headers` on `subject` (below the test's prefix), as anyone with
/// access to the broker could.
async fn publish_raw(env: &TestEnv, subject: &str, headers: async_nats::HeaderMap, body: Vec<u8>) {
    jetstream::new(env.nats.clone())
        .publish_with_headers(format!("{}.{subject}", env.prefix), headers, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_forged_erasure_event_does_not_run_on_erasure() {
    let env = TestEnv::new().await;
    let (real, forged) = (Uuid::now_v7(), Uuid::now_v7());
    env.append(&[quiz(real)]).await;
    env.append(&[quiz(forged)]).await;
    env.relay_everything().await;
    env.store
        .erase_subject(real, "test", Scrub::KeysOnly)
        .await
        .unwrap();
    env.relay_everything().await;
    // Plausible erasure events with the relay's headers: one for someone never erased, one
    // made up again for the real erasure's subject (who has a tombstone).
    for subject in [forged, real] {
        let fake: DataSubjectErased = serde_json::from_value(serde_json::json!({
            "erasure_id": Uuid::now_v7(),
            "subject_id": subject,
            "keys_destroyed": 1,
            "erased_at": "2026-12-04T12:00:00Z",
        }))
        .unwrap();
        let mut envelope = Envelope::new(&fake).unwrap();
        envelope.sequence = 1;
        publish_raw(
            &env,
            DataSubjectErased::SUBJECT,
            edupulse_events::publish::event_headers(&envelope, "forger"),
            serde_json::to_vec(&envelope.payload).unwrap(),
        )
        .await;
    }

    let runtime = runtime(&env, env.master.clone()).await;
    let hooked: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let seen = hooked.clone();
    let subscriber = Subscriber::builder(&runtime, "erasures")
        .max_deliveries(2)
        .backoff(vec![Duration::from_millis(20)])
        .on_erasure(move |subject, _tx| {
            seen.lock().unwrap().push(subject);
            Box::pin(async { Ok(()) })
        })
        .build()
        .await
        .unwrap();
    let running = start(subscriber);
    eventually("both forged events are set aside", async || {
        env.count("consumer_dead_letters").await == 2
    })
    .await;
    eventually("the real erasure is hooked", async || {
        !hooked.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(*hooked.lock().unwrap(), vec![real]);
    let reasons: Vec<String> = sqlx::query_scalar("SELECT reason FROM consumer_dead_letters")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert!(
        reasons.iter().all(|r| r.contains("not confirmed")),
        "{reasons:?}"
    );
    running.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn headers_that_contradict_the_payload_are_refused_with_a_reason() {
    let env = TestEnv::new().await;
    env.append(&[quiz(Uuid::now_v7())]).await;
    env.relay_everything().await;
    let original = env.stream_messages().await.remove(0);
    let body = original.payload.to_vec();
    let headers = original.headers.clone().unwrap();
    let altered = |name: &str, value: String| {
        let mut h = headers.clone();
        h.insert(name, value.as_str());
        h
    };
    let other = Uuid::now_v7().to_string();
    let subject = QuizSubmitted::SUBJECT;
    // Another aggregate in both id headers (the payload says otherwise), a sequence of 0.
    publish_raw(
        &env,
        subject,
        {
            let mut h = altered(header_names::AGGREGATE_ID, other.clone());
            h.insert(header_names::SUBJECT, other.as_str());
            fresh_ids(&mut h);
            h
        },
        body.clone(),
    )
    .await;
    publish_raw(
        &env,
        subject,
        {
            let mut h = altered(header_names::SEQUENCE, "0".to_owned());
            fresh_ids(&mut h);
            h
        },
        body.clone(),
    )
    .await;
    assert_eq!(header(&original, header_names::SEQUENCE), "1");

    let runtime = runtime(&env, env.master.clone()).await;
    let (running, applied, _health) = quiz_subscriber(&runtime).await;
    eventually("both altered messages are set aside", async || {
        env.count("consumer_dead_letters").await == 2
    })
    .await;
    eventually("the original is applied", async || {
        applied.lock().unwrap().len() == 1
    })
    .await;
    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT reason FROM consumer_dead_letters ORDER BY stream_sequence")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert!(
        reasons[0].contains(header_names::AGGREGATE_ID),
        "{reasons:?}"
    );
    assert!(reasons[1].contains(header_names::SEQUENCE), "{reasons:?}");
    running.stop().await;
    env.cleanup().await;
}

/// A new message id, so JetStream does not take the copy for a duplicate; the event id stays,
/// so its sealed values still open and only the altered header is wrong.
fn fresh_ids(headers: &mut async_nats::HeaderMap) {
    headers.insert("Nats-Msg-Id", Uuid::now_v7().to_string().as_str());
}
