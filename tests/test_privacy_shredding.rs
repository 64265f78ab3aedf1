//! Crypto-shredding end to end, against real PostgreSQL and nats-server: personal data is sealed
//! before it is stored or published, never rests in clear anywhere, and after an erasure every
//! copy (the log, a fresh stream consumer) decodes with the subject's values erased and
//! everyone else's intact.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::TestEnv;
use edupulse_domain::{
    BadgeAwarded, LearningPulseResponded, PaymentProcessed, PaymentStatus, QuizSubmitted,
};
use edupulse_events::embedded::SqliteStore;
use edupulse_events::privacy::canary::{Canary, PlaintextScan};
use edupulse_events::privacy::{DataKey, LocalKeyProvider, Pii, PrivacyError, Scrub};
use edupulse_events::publish::envelope_from_message;
use edupulse_events::relay::{Relay, RelayConfig};
use edupulse_events::store::{EventStore, ExpectedVersion, LogCursor, Store, StoreError};
use edupulse_events::{AnyEvent, DomainEvent, Envelope, Registry, Runtime, Uuid};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde::{Deserialize, Serialize};

/// A PII field of a type that cannot say "erased" itself: the attribute declares what readers
/// get instead.
#[derive(Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "test_privacy.nickname_set", aggregate = "profile")]
struct NicknameSet {
    #[event(aggregate_id)]
    profile_id: Uuid,
    #[event(data_subject)]
    student_id: Uuid,
    #[event(pii(erased = String::from("[erased]")))]
    nickname: String,
}

/// One planted event of each shape with PII.
#[derive(Debug, Clone, PartialEq)]
enum Planted {
    Quiz(QuizSubmitted),
    Badge(BadgeAwarded),
    Payment(PaymentProcessed),
    Pulse(LearningPulseResponded),
    Nickname(NicknameSet),
}

fn erased_if<T>(value: Pii<T>, owner: Uuid, erased: &HashSet<Uuid>) -> Pii<T> {
    if erased.contains(&owner) {
        Pii::Erased
    } else {
        value
    }
}

impl Planted {
    /// An event of shape `kind` about `a` (and `b`), every PII field a fresh canary.
    fn new(kind: u8, a: Uuid, b: Uuid, canaries: &mut Vec<Canary>) -> Planted {
        let mut canary = || {
            let c = Canary::new();
            canaries.push(c.clone());
            c.as_str().to_owned()
        };
        match kind % 5 {
            0 => Planted::Quiz(QuizSubmitted {
                quiz_id: Uuid::now_v7(),
                student_id: a,
                student_name: canary().into(),
                score: 0.5,
                answers: vec![],
            }),
            1 => Planted::Badge(BadgeAwarded {
                award_id: Uuid::now_v7(),
                student_id: a,
                teacher_id: b,
                student_name: canary().into(),
                teacher_note: canary().into(),
                badge: "streak".into(),
            }),
            2 => Planted::Payment(PaymentProcessed {
                payment_id: Uuid::now_v7(),
                payer_id: a,
                cardholder_name: canary().into(),
                billing_email: canary().into(),
                amount_cents: 1200,
                currency: "EUR".into(),
                status: PaymentStatus::Captured,
            }),
            3 => Planted::Pulse(LearningPulseResponded {
                pulse_id: Uuid::now_v7(),
                student_id: a,
                choice: 1,
                comment: Some(canary().into()),
            }),
            _ => Planted::Nickname(NicknameSet {
                profile_id: Uuid::now_v7(),
                student_id: a,
                nickname: canary(),
            }),
        }
    }

    fn envelope(&self) -> Envelope {
        match self {
            Planted::Quiz(e) => Envelope::new(e),
            Planted::Badge(e) => Envelope::new(e),
            Planted::Payment(e) => Envelope::new(e),
            Planted::Pulse(e) => Envelope::new(e),
            Planted::Nickname(e) => Envelope::new(e),
        }
        .unwrap()
    }

    /// What a reader must get once the subjects in `erased` are erased.
    fn after_erasure(&self, erased: &HashSet<Uuid>) -> Planted {
        match self.clone() {
            Planted::Quiz(mut e) => {
                e.student_name = erased_if(e.student_name, e.student_id, erased);
                Planted::Quiz(e)
            }
            Planted::Badge(mut e) => {
                e.student_name = erased_if(e.student_name, e.student_id, erased);
                e.teacher_note = erased_if(e.teacher_note, e.teacher_id, erased);
                Planted::Badge(e)
            }
            Planted::Payment(mut e) => {
                e.cardholder_name = erased_if(e.cardholder_name, e.payer_id, erased);
                e.billing_email = erased_if(e.billing_email, e.payer_id, erased);
                Planted::Payment(e)
            }
            Planted::Pulse(mut e) => {
                e.comment = e.comment.map(|c| erased_if(c, e.student_id, erased));
                Planted::Pulse(e)
            }
            Planted::Nickname(mut e) => {
                if erased.contains(&e.student_id) {
                    e.nickname = "[erased]".into();
                }
                Planted::Nickname(e)
            }
        }
    }

    fn decoded(event: AnyEvent) -> Planted {
        let event = match event.downcast::<QuizSubmitted>() {
            Ok(e) => return Planted::Quiz(e),
            Err(other) => other,
        };
        let event = match event.downcast::<BadgeAwarded>() {
            Ok(e) => return Planted::Badge(e),
            Err(other) => other,
        };
        let event = match event.downcast::<PaymentProcessed>() {
            Ok(e) => return Planted::Payment(e),
            Err(other) => other,
        };
        let event = match event.downcast::<LearningPulseResponded>() {
            Ok(e) => return Planted::Pulse(e),
            Err(other) => other,
        };
        match event.downcast::<NicknameSet>() {
            Ok(e) => Planted::Nickname(e),
            Err(other) => panic!("unexpected event {}", other.type_name()),
        }
    }
}

async fn append_all(env: &TestEnv, planted: &[Planted]) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for event in planted {
        let envelope = event.envelope();
        ids.push(envelope.id);
        env.store
            .append_committed(ExpectedVersion::NoStream, &[envelope])
            .await
            .unwrap();
    }
    ids
}

/// Every event in the log, decoded with PII opened, by event id. `read_all` holds back events
/// until every older transaction in the cluster has ended (other tests run beside this one),
/// so it is read until it has returned as many events as the table holds.
async fn replay_from_postgres(store: &Store) -> HashMap<Uuid, Planted> {
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = HashMap::new();
    let mut read = 0;
    let mut cursor = LogCursor::START;
    while read < stored {
        assert!(
            Instant::now() < deadline,
            "read_all returned {read} of {stored} events"
        );
        let batch = store.read_all(cursor, 500).await.unwrap();
        let Some(last) = batch.last() else {
            // Held back behind another test's open transaction: ask again shortly.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        cursor = last.cursor();
        read += batch.len() as i64;
        for stored in &batch {
            if stored.envelope.event_type.starts_with("privacy.") {
                continue;
            }
            let event = stored.decode(Registry::global()).unwrap();
            out.insert(stored.envelope.id, Planted::decoded(event));
        }
    }
    out
}

/// Every message of the stream, read by a fresh consumer from the first one, decoded.
async fn replay_from_stream(env: &TestEnv) -> HashMap<Uuid, Planted> {
    let mut out = HashMap::new();
    for message in env.stream_messages().await {
        let mut envelope =
            [envelope_from_message(message.headers.as_ref(), &message.payload).unwrap()];
        if envelope[0].event_type.starts_with("privacy.") {
            continue;
        }
        env.store.unseal(&mut envelope).await.unwrap();
        let [envelope] = envelope;
        let event = Registry::global()
            .decode(&envelope.event_type, envelope.version, &envelope.payload)
            .unwrap();
        out.insert(envelope.id, Planted::decoded(event));
    }
    out
}

async fn assert_no_plaintext(env: &TestEnv, canaries: &[Canary], when: &str) {
    let scan = PlaintextScan::new(canaries.iter().cloned())
        .postgres(&env.pool, &env.schema)
        .await
        .unwrap()
        .jetstream(&jetstream::new(env.nats.clone()), &env.stream)
        .await
        .unwrap();
    let (rows, messages) = scan.scanned();
    assert!(rows > 0 && messages > 0, "{when}: the scan saw nothing");
    let leaks = scan.leaks();
    assert!(leaks.is_empty(), "{when}: plaintext found: {leaks:?}");
}

/// One case of the property: events of random shapes over five subjects, every PII field a
/// fresh canary, and the subjects the case erases.
struct Case {
    planted: Vec<Planted>,
    canaries: Vec<Canary>,
    erased: HashSet<Uuid>,
}

impl Case {
    /// `shapes` are (kind, subject, other subject); bit `i` of `erase_mask` erases subject `i`.
    fn new(shapes: &[(u8, usize, usize)], erase_mask: u8) -> Case {
        let subjects: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        let mut canaries = Vec::new();
        let planted = shapes
            .iter()
            .map(|&(kind, a, b)| Planted::new(kind, subjects[a], subjects[b], &mut canaries))
            .collect();
        let erased = subjects
            .iter()
            .enumerate()
            .filter(|(i, _)| erase_mask & (1 << i) != 0)
            .map(|(_, s)| *s)
            .collect();
        Case {
            planted,
            canaries,
            erased,
        }
    }
}

/// Runs `check` on eight random cases (1 to 24 events, a random set of subjects erased).
fn for_cases(check: impl Fn(Case)) {
    let mut runner = TestRunner::new(Config {
        cases: 8,
        failure_persistence: None,
        ..Config::default()
    });
    let events = prop::collection::vec((0u8..5, 0usize..5, 0usize..5), 1..25);
    runner
        .run(&(events, any::<u8>()), |(shapes, erase_mask)| {
            check(Case::new(&shapes, erase_mask));
            Ok(())
        })
        .unwrap();
}

/// Random events over a few subjects, random erasures: no canary rests in clear in any table
/// or raw message, before or after; replays from both copies erase exactly the erased
/// subjects' values.
#[test]
fn planted_canaries_never_rest_in_clear_and_erasure_reaches_both_copies() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let env = runtime.block_on(TestEnv::new());
    for_cases(|case| {
        runtime.block_on(async {
            let Case {
                planted,
                canaries,
                erased,
            } = case;
            let ids = append_all(&env, &planted).await;
            env.relay_everything().await;
            assert_no_plaintext(&env, &canaries, "before erasure").await;

            for subject in &erased {
                env.store
                    .erase_subject(*subject, "property test", Scrub::KeysOnly)
                    .await
                    .unwrap();
            }
            env.relay_everything().await;
            assert_no_plaintext(&env, &canaries, "after erasure").await;

            let from_log = replay_from_postgres(&env.store).await;
            let from_stream = replay_from_stream(&env).await;
            for (id, event) in ids.iter().zip(&planted) {
                let expected = event.after_erasure(&erased);
                assert_eq!(from_log[id], expected, "log replay of {id}");
                assert_eq!(from_stream[id], expected, "stream replay of {id}");
            }
        });
    });
    runtime.block_on(env.cleanup());
}

/// The same property on the embedded store's file: no canary in the database, WAL or shm
/// file, before or after the erasures, and a replay erases exactly the erased subjects.
#[test]
fn planted_canaries_never_rest_in_clear_in_an_embedded_store_file() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = ["events.db", "events.db-wal", "events.db-shm"].map(|f| dir.path().join(f));
    let store = runtime.block_on(async {
        SqliteStore::open(&files[0], "test")
            .await
            .unwrap()
            .with_keys(Arc::new(LocalKeyProvider::new(DataKey::generate())))
    });
    let assert_no_plaintext = |canaries: &[Canary], when: &str| {
        let scan = PlaintextScan::new(canaries.iter().cloned())
            .files(&files)
            .unwrap();
        assert!(scan.scanned().0 > 0, "{when}: the scan saw nothing");
        let leaks = scan.leaks();
        assert!(leaks.is_empty(), "{when}: plaintext found: {leaks:?}");
    };
    for_cases(|case| {
        runtime.block_on(async {
            let Case {
                planted,
                canaries,
                erased,
            } = case;
            let mut ids = Vec::new();
            for event in &planted {
                let envelope = event.envelope();
                ids.push(envelope.id);
                store
                    .append_committed(ExpectedVersion::NoStream, &[envelope])
                    .await
                    .unwrap();
            }
            assert_no_plaintext(&canaries, "before erasure");
            for subject in &erased {
                store
                    .erase_subject(*subject, "property test", Scrub::KeysOnly)
                    .await
                    .unwrap();
            }
            assert_no_plaintext(&canaries, "after erasure");
            let mut replayed = HashMap::new();
            for stored in store.read_all(LogCursor::START, i64::MAX).await.unwrap() {
                if stored.envelope.event_type.starts_with("privacy.") {
                    continue;
                }
                let event = stored.decode(Registry::global()).unwrap();
                replayed.insert(stored.envelope.id, Planted::decoded(event));
            }
            for (id, event) in ids.iter().zip(&planted) {
                assert_eq!(replayed[id], event.after_erasure(&erased), "replay of {id}");
            }
        });
    });
}

#[tokio::test]
async fn a_replacement_declared_on_the_attribute_comes_back_after_erasure() {
    let env = TestEnv::new().await;
    let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let mut canaries = Vec::new();
    let planted = [
        Planted::new(4, ada, ada, &mut canaries),
        Planted::new(4, bob, bob, &mut canaries),
    ];
    let ids = append_all(&env, &planted).await;
    env.store
        .erase_subject(ada, "ticket 7", Scrub::KeysOnly)
        .await
        .unwrap();
    let replay = replay_from_postgres(&env.store).await;
    let Planted::Nickname(erased) = &replay[&ids[0]] else {
        panic!()
    };
    assert_eq!(erased.nickname, "[erased]");
    assert_eq!(replay[&ids[1]], planted[1]);
    env.cleanup().await;
}

/// Overwrites one stored payload after `switch`: the scrub switch, or the replica role with
/// which someone with superuser access to the database bypasses the append-only trigger.
async fn update_payload(
    env: &TestEnv,
    switch: &str,
    event_id: Uuid,
    payload: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let mut tx = env.pool.begin().await?;
    sqlx::query(switch).execute(&mut *tx).await?;
    sqlx::query("UPDATE events SET payload = $2 WHERE event_id = $1")
        .bind(event_id)
        .bind(payload)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

async fn tamper(env: &TestEnv, event_id: Uuid, payload: serde_json::Value) {
    let switch = "SET LOCAL session_replication_role = replica";
    update_payload(env, switch, event_id, payload)
        .await
        .unwrap();
}

async fn update_while_scrubbing(
    env: &TestEnv,
    event_id: Uuid,
    payload: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let switch = "SELECT set_config('edupulse.scrub', 'on', true)";
    update_payload(env, switch, event_id, payload).await
}

async fn stored_payload(env: &TestEnv, event_id: Uuid) -> serde_json::Value {
    sqlx::query_scalar("SELECT payload FROM events WHERE event_id = $1")
        .bind(event_id)
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

fn undecryptable_field(
    result: Result<Vec<edupulse_events::store::StoredEvent>, StoreError>,
) -> String {
    match result {
        Err(StoreError::Privacy(PrivacyError::Undecryptable { field, .. })) => field,
        Err(other) => panic!("expected Undecryptable, got {other}"),
        Ok(_) => panic!("a swapped ciphertext opened"),
    }
}

#[tokio::test]
async fn a_ciphertext_swapped_between_fields_or_events_does_not_open() {
    let env = TestEnv::new().await;
    let payer = Uuid::now_v7();
    let mut canaries = Vec::new();
    let payment = Planted::new(2, payer, payer, &mut canaries);
    let quiz_a = Planted::new(0, payer, payer, &mut canaries);
    let quiz_b = Planted::new(0, payer, payer, &mut canaries);
    let ids = append_all(&env, &[payment, quiz_a.clone(), quiz_b]).await;

    // Between two fields of one event, same owner and key.
    let mut payload = stored_payload(&env, ids[0]).await;
    let name = payload["cardholderName"].take();
    payload["cardholderName"] = payload["billingEmail"].take();
    payload["billingEmail"] = name;
    tamper(&env, ids[0], payload).await;
    let aggregate: Uuid = sqlx::query_scalar("SELECT aggregate_id FROM events WHERE event_id = $1")
        .bind(ids[0])
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let field = undecryptable_field(env.store.read_stream(aggregate).await);
    assert!(
        field == "cardholderName" || field == "billingEmail",
        "{field}"
    );

    // Between two events, same field, same owner and key.
    let from_b = stored_payload(&env, ids[2]).await["student_name"].clone();
    let mut payload = stored_payload(&env, ids[1]).await;
    payload["student_name"] = from_b;
    tamper(&env, ids[1], payload).await;
    let Planted::Quiz(quiz) = quiz_a else {
        panic!()
    };
    let field = undecryptable_field(env.store.read_stream(quiz.quiz_id).await);
    assert_eq!(field, "student_name");
    env.cleanup().await;
}

#[tokio::test]
async fn a_scrub_also_overwrites_the_stored_ciphertext() {
    let env = TestEnv::new().await;
    let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let mut canaries = Vec::new();
    let planted = [
        Planted::new(1, ada, bob, &mut canaries),
        Planted::new(0, ada, ada, &mut canaries),
    ];
    let ids = append_all(&env, &planted).await;
    let receipt = env
        .store
        .erase_subject(ada, "ticket 8", Scrub::StoredCiphertext)
        .await
        .unwrap();
    assert_eq!(receipt.events_scrubbed, 2);
    let badge = stored_payload(&env, ids[0]).await;
    assert_eq!(
        badge["student_name"],
        edupulse_events::privacy::erased_json()
    );
    // Bob's note in the same event keeps its ciphertext and still opens.
    let note = badge["teacher_note"]["$pii"].as_str().unwrap();
    assert_eq!(note.split('.').nth(1), Some(bob.to_string().as_str()));
    let replay = replay_from_postgres(&env.store).await;
    let erased = HashSet::from([ada]);
    for (id, event) in ids.iter().zip(&planted) {
        assert_eq!(replay[id], event.after_erasure(&erased));
    }
    // The log stays append-only outside a scrub.
    let refused = sqlx::query("UPDATE events SET payload = '{}' WHERE event_id = $1")
        .bind(ids[1])
        .execute(&env.pool)
        .await;
    assert!(refused.is_err());
    // And the scrub switch lets nothing through but a sealed value becoming the marker: not
    // plaintext in its place, not another field, not another subject's value.
    let mut plaintext = badge.clone();
    plaintext["teacher_note"] = serde_json::json!("a note in clear");
    let mut other_field = badge.clone();
    other_field["badge"] = serde_json::json!("forged");
    let mut plain_to_marker = badge.clone();
    plain_to_marker["badge"] = edupulse_events::privacy::erased_json();
    let mut owner_to_marker = badge.clone();
    owner_to_marker["teacher_id"] = edupulse_events::privacy::erased_json();
    let mut removed = badge.clone();
    removed.as_object_mut().unwrap().remove("teacher_note");
    let mut added = badge.clone();
    added["extra"] = edupulse_events::privacy::erased_json();
    for forged in [
        plaintext,
        other_field,
        plain_to_marker,
        owner_to_marker,
        removed,
        added,
    ] {
        assert!(update_while_scrubbing(&env, ids[0], forged).await.is_err());
    }
    let mut outsider = stored_payload(&env, ids[1]).await;
    outsider["score"] = serde_json::json!(1.0);
    assert!(
        update_while_scrubbing(&env, ids[1], outsider)
            .await
            .is_err()
    );
    let mut bob_scrubbed = badge.clone();
    bob_scrubbed["teacher_note"] = edupulse_events::privacy::erased_json();
    update_while_scrubbing(&env, ids[0], bob_scrubbed)
        .await
        .unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn another_runtime_stops_decrypting_an_erased_subject_within_one_relay_round_trip() {
    let env = TestEnv::new().await;
    // A second process over the same database, stream and master key, with its own cache,
    // built as an application builds its runtime.
    let other = Runtime::builder()
        .postgres(env.pool.clone())
        .nats(env.nats_url.as_str(), async_nats::ConnectOptions::new())
        .subject_prefix(env.prefix.clone())
        .stream(env.stream.clone())
        .partitions(4)
        .key_provider(Arc::new(LocalKeyProvider::new(env.master.clone())))
        .build()
        .await
        .unwrap();
    let other_keys = other.keys().unwrap().clone();
    let mut evictions = other_keys.evictions();

    let student = Uuid::now_v7();
    let mut canaries = Vec::new();
    let quiz = Planted::new(0, student, student, &mut canaries);
    append_all(&env, std::slice::from_ref(&quiz)).await;
    let Planted::Quiz(q) = &quiz else { panic!() };
    // The other process reads it, and now holds the key in its cache.
    let before = other.store().load(q.quiz_id).await.unwrap();
    assert_eq!(
        Planted::decoded(before.events.into_iter().next().unwrap()),
        quiz
    );

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(
        Relay::new(
            env.store.clone(),
            env.publisher().await,
            RelayConfig::default(),
        )
        .run(async {
            let _ = stopped.await;
        }),
    );
    let erased_at = Instant::now();
    env.store
        .erase_subject(student, "ticket 9", Scrub::KeysOnly)
        .await
        .unwrap();
    // The cache's TTL is a minute; the erasure event must arrive long before.
    let evicted = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if evictions.recv().await.unwrap() == student {
                break;
            }
        }
    })
    .await;
    assert!(evicted.is_ok(), "the other process never saw the erasure");
    let took = erased_at.elapsed();
    assert!(
        took < edupulse_events::privacy::KEY_CACHE_TTL / 10,
        "{took:?}"
    );
    let after = other.store().load(q.quiz_id).await.unwrap();
    assert_eq!(
        Planted::decoded(after.events.into_iter().next().unwrap()),
        quiz.after_erasure(&HashSet::from([student]))
    );
    stop.send(()).unwrap();
    relay.await.unwrap().unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn an_append_racing_an_erasure_lands_before_it_or_is_refused() {
    let env = TestEnv::new().await;
    let student = Uuid::now_v7();
    let mut canaries = Vec::new();
    // The subject's key exists before the race, as in production.
    append_all(&env, &[Planted::new(0, student, student, &mut canaries)]).await;

    let appends: Vec<_> = (0..24)
        .map(|_| {
            let store = env.store.clone();
            let envelope = Planted::new(0, student, student, &mut canaries).envelope();
            tokio::spawn(async move {
                store
                    .append_committed(ExpectedVersion::NoStream, &[envelope])
                    .await
            })
        })
        .collect();
    let erasure = {
        let store = env.store.clone();
        tokio::spawn(async move {
            store
                .erase_subject(student, "ticket 10", Scrub::KeysOnly)
                .await
        })
    };
    let mut refused = 0;
    for append in appends {
        match append.await.unwrap() {
            Ok(_) => {}
            Err(StoreError::SubjectErased { subject }) => {
                assert_eq!(subject, student);
                refused += 1;
            }
            Err(other) => panic!("an append failed otherwise: {other}"),
        }
    }
    erasure.await.unwrap().unwrap();
    // Whatever landed is shredded: nothing of the subject reads back.
    let replay = replay_from_postgres(&env.store).await;
    for event in replay.values() {
        let Planted::Quiz(quiz) = event else { panic!() };
        assert!(quiz.student_name.is_erased());
    }
    assert_eq!(replay.len() + refused, 25);
    // And after the erasure, every append is refused.
    let late = Planted::new(0, student, student, &mut canaries).envelope();
    let err = env
        .store
        .append_committed(ExpectedVersion::NoStream, &[late])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::SubjectErased { .. }), "{err}");
    env.cleanup().await;
}

#[tokio::test]
async fn a_store_without_keys_refuses_personal_data_and_writes_nothing() {
    let env = TestEnv::new().await;
    let keyless = Store::new(env.pool.clone(), env.prefix.clone());
    let mut canaries = Vec::new();
    let student = Uuid::now_v7();
    let envelope = Planted::new(3, student, student, &mut canaries).envelope();
    let err = keyless
        .append_committed(ExpectedVersion::NoStream, &[envelope])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoKeyStore { .. }), "{err}");
    assert!(!err.to_string().contains(canaries[0].as_str()));
    assert_eq!(env.count("events").await, 0);
    // An absent optional PII value needs no key.
    let quiet = Envelope::new(&LearningPulseResponded {
        pulse_id: Uuid::now_v7(),
        student_id: student,
        choice: 0,
        comment: None,
    })
    .unwrap();
    keyless
        .append_committed(ExpectedVersion::NoStream, &[quiet])
        .await
        .unwrap();
    env.cleanup().await;
}

/// A provider whose first unwrap waits at a gate: a read caught between fetching a key and
/// caching it.
#[derive(Debug)]
struct GatedProvider {
    inner: LocalKeyProvider,
    entered: Arc<tokio::sync::Notify>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl edupulse_events::privacy::KeyProvider for GatedProvider {
    fn wrap<'a>(
        &'a self,
        subject: Uuid,
        key_version: u32,
        key: &'a DataKey,
    ) -> futures::future::BoxFuture<'a, Result<Vec<u8>, edupulse_events::privacy::KeyError>> {
        self.inner.wrap(subject, key_version, key)
    }

    fn unwrap<'a>(
        &'a self,
        subject: Uuid,
        key_version: u32,
        wrapped: &'a [u8],
    ) -> futures::future::BoxFuture<'a, Result<DataKey, edupulse_events::privacy::KeyError>> {
        Box::pin(async move {
            self.entered.notify_one();
            self.gate.acquire().await.unwrap().forget();
            self.inner.unwrap(subject, key_version, wrapped).await
        })
    }
}

#[tokio::test]
async fn a_key_fetched_while_its_subject_is_erased_is_not_cached() {
    let env = TestEnv::new().await;
    let student = Uuid::now_v7();
    let mut canaries = Vec::new();
    let quiz = Planted::new(0, student, student, &mut canaries);
    append_all(&env, std::slice::from_ref(&quiz)).await;
    let Planted::Quiz(q) = &quiz else { panic!() };

    // Another process, whose read is caught between fetching the key and caching it.
    let entered = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let keys = Arc::new(edupulse_events::privacy::KeyStore::new(Arc::new(
        GatedProvider {
            inner: LocalKeyProvider::new(env.master.clone()),
            entered: entered.clone(),
            gate: gate.clone(),
        },
    )));
    let other = Store::new(env.pool.clone(), env.prefix.clone()).with_keys(keys.clone());
    let read = tokio::spawn({
        let other = other.clone();
        let quiz_id = q.quiz_id;
        async move { other.load(quiz_id).await }
    });
    entered.notified().await;
    env.store
        .erase_subject(student, "ticket 11", Scrub::KeysOnly)
        .await
        .unwrap();
    // The erasure event reaches the other process (as follow_erasures would deliver it).
    keys.evict(student);
    gate.add_permits(1_000);
    // The read that began before the erasure may finish with the value...
    read.await.unwrap().unwrap();
    // ...but the key it fetched must not outlive the erasure in the cache.
    let after = other.load(q.quiz_id).await.unwrap();
    assert_eq!(
        Planted::decoded(after.events.into_iter().next().unwrap()),
        quiz.after_erasure(&HashSet::from([student]))
    );
    env.cleanup().await;
}

#[tokio::test]
async fn personal_data_is_appended_only_in_read_committed_transactions() {
    let env = TestEnv::new().await;
    let student = Uuid::now_v7();
    let mut canaries = Vec::new();
    let envelope = Planted::new(0, student, student, &mut canaries).envelope();
    let mut tx = env.pool.begin().await.unwrap();
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = env
        .store
        .append(
            &mut tx,
            ExpectedVersion::NoStream,
            std::slice::from_ref(&envelope),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::Keys(edupulse_events::privacy::KeyStoreError::IsolationLevel { isolation })
                if isolation == "repeatable read"
        ),
        "{err}"
    );
    tx.rollback().await.unwrap();
    // A store's own transaction is READ COMMITTED whatever the database's default.
    let strict = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(
            env.connect_options()
                .options([("default_transaction_isolation", "serializable")]),
        )
        .await
        .unwrap();
    let store = Store::new(strict.clone(), env.prefix.clone())
        .with_partitions(4)
        .with_keys(env.keys.clone());
    store
        .append_committed(ExpectedVersion::NoStream, &[envelope])
        .await
        .unwrap();
    strict.close().await;
    env.cleanup().await;
}
