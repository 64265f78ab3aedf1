//! What privacy costs: seal + open of one PII field beside the JSON encode and decode of the
//! same value that every field pays anyway (the baseline), in the same run; and the time to
//! erase one data subject with 10,000 and with 1,000,000 events in the log (it must not grow);
//! and single-event appends of an event with a PII field beside the same shape without one.
//! And master-key rotation of 100,000 live keys beside a raw rewrite of the same table.
//! Run `scripts/services && cargo bench --bench privacy` (`BENCH_PART=field|erase|append|rotate`).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/plain_quiz.rs"]
mod plain_quiz;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::TestEnv;
use edupulse_domain::QuizSubmitted;
use edupulse_events::__private::keys::{FieldContext, SealedField, key_for_append, open, seal};
use edupulse_events::privacy::{DataKey, Scrub};
use edupulse_events::store::ExpectedVersion;
use edupulse_events::{Envelope, Uuid};

const ROUNDS: usize = 200_000;

/// Repetitions of each per-field measurement; the figure is their median, so a spell of the
/// (shared, two-core) machine being busy cannot decide it.
const REPETITIONS: usize = 7;

fn per_field(mut f: impl FnMut(usize)) -> Duration {
    for i in 0..ROUNDS / 10 {
        f(i);
    }
    let mut times: Vec<Duration> = (0..REPETITIONS)
        .map(|_| {
            let start = Instant::now();
            for i in 0..ROUNDS {
                f(i);
            }
            start.elapsed() / ROUNDS as u32
        })
        .collect();
    times.sort_unstable();
    times[REPETITIONS / 2]
}

#[tokio::main]
async fn main() {
    let part = std::env::var("BENCH_PART").unwrap_or_default();
    if part.is_empty() || part == "field" {
        field_cost();
    }
    if part.is_empty() || part == "append" {
        append_cost().await;
    }
    if part.is_empty() || part == "erase" {
        erasure_time().await;
    }
    if part.is_empty() || part == "rotate" {
        rotation_time().await;
    }
}

/// Live data keys for the rotation benchmark.
const ROTATED_KEYS: usize = 100_000;

/// Master-key rotation with 100,000 live data keys (unwrap with the old master, wrap with
/// the new, one UPDATE, then the key table compacted), beside the raw baseline of the same
/// table rewritten without any cryptography (one UPDATE of every row, the same compaction);
/// then erasing one subject with that many keys in the table (the erasure compacts one of
/// the sixteen partitions).
async fn rotation_time() {
    use edupulse_events::privacy::{KeyProvider, KeyStore, LocalKeyProvider};
    use std::sync::Arc;

    let env = TestEnv::new().await;
    let old = LocalKeyProvider::new(env.master.clone());
    for _ in 0..ROTATED_KEYS / 10_000 {
        let subjects: Vec<Uuid> = (0..10_000).map(|_| Uuid::now_v7()).collect();
        let mut wrapped = Vec::with_capacity(subjects.len());
        for subject in &subjects {
            wrapped.push(old.wrap(*subject, 1, &DataKey::generate()).await.unwrap());
        }
        sqlx::query(
            "INSERT INTO subject_keys (subject_id, key_version, wrapped) \
             SELECT s, 1, w FROM unnest($1::uuid[], $2::bytea[]) AS t(s, w)",
        )
        .bind(&subjects)
        .bind(&wrapped)
        .execute(&env.pool)
        .await
        .unwrap();
    }
    sqlx::query("VACUUM ANALYZE subject_keys")
        .execute(&env.pool)
        .await
        .unwrap();
    let start = Instant::now();
    sqlx::query("UPDATE subject_keys SET wrapped = wrapped || ''::bytea")
        .execute(&env.pool)
        .await
        .unwrap();
    sqlx::query("VACUUM (FULL) subject_keys")
        .execute(&env.pool)
        .await
        .unwrap();
    let raw = start.elapsed();
    let new_master = DataKey::generate();
    let rotating = Arc::new(KeyStore::new(Arc::new(
        LocalKeyProvider::new(new_master).with_previous(env.master.clone()),
    )));
    let rotated = env.store.clone().with_keys(rotating.clone());
    let start = Instant::now();
    let count = rotating.rotate_master_key(&env.pool).await.unwrap();
    let rotation = start.elapsed();
    assert_eq!(count, ROTATED_KEYS as u64);
    println!(
        "rotate the master key, {ROTATED_KEYS} live data keys: {rotation:?} ({:.0} keys/s) | raw rewrite of the same table (UPDATE + VACUUM FULL, no crypto) {raw:?} | ratio {:.2}",
        ROTATED_KEYS as f64 / rotation.as_secs_f64(),
        raw.as_secs_f64() / rotation.as_secs_f64()
    );
    let mut times = Vec::with_capacity(ERASURES);
    for _ in 0..ERASURES {
        let subject = Uuid::now_v7();
        let mut tx = env.pool.begin().await.unwrap();
        key_for_append(&rotating, &mut tx, subject).await.unwrap();
        tx.commit().await.unwrap();
        let start = Instant::now();
        let receipt = rotated
            .erase_subject(subject, "benchmark", Scrub::KeysOnly)
            .await
            .unwrap();
        times.push(start.elapsed());
        assert!(receipt.key_bytes_purged);
    }
    times.sort_unstable();
    println!(
        "  erase one subject with {ROTATED_KEYS} keys in the table (its partition compacted): median {:?}, slowest of {ERASURES} {:?}",
        times[ERASURES / 2],
        times[ERASURES - 1]
    );
    env.cleanup().await;
}

const APPENDS: usize = 3_000;
/// Students whose keys exist: each append seals with one of them, as in a running school.
const STUDENTS: usize = 300;

/// One writer, one event per transaction: `QuizSubmitted` (its name sealed with the student's
/// key, taken and locked in the appending transaction) against `QuizScored`, the same shape
/// with the name in clear. Three alternating rounds, medians.
async fn append_cost() {
    let env = TestEnv::new().await;
    let students: Vec<Uuid> = (0..STUDENTS).map(|_| Uuid::now_v7()).collect();
    let with_pii = |n: usize| {
        Envelope::new(&QuizSubmitted {
            quiz_id: Uuid::now_v7(),
            student_id: students[n % STUDENTS],
            student_name: format!("student number {n}").into(),
            score: 0.5,
            answers: vec![],
        })
        .unwrap()
    };
    let without = |n: usize| {
        Envelope::new(&plain_quiz::QuizScored {
            quiz_id: Uuid::now_v7(),
            student_id: students[n % STUDENTS],
            student_label: format!("student number {n}"),
            score: 0.5,
            answers: vec![],
        })
        .unwrap()
    };
    // Warm-up: every student's key is created, and both statements are prepared.
    for n in 0..STUDENTS {
        for envelope in [with_pii(n), without(n)] {
            env.store
                .append_committed(ExpectedVersion::NoStream, &[envelope])
                .await
                .unwrap();
        }
    }
    let mut plain_rates = Vec::new();
    let mut pii_rates = Vec::new();
    for _ in 0..3 {
        for (rates, make) in [
            (&mut plain_rates, &without as &dyn Fn(usize) -> Envelope),
            (&mut pii_rates, &with_pii),
        ] {
            let envelopes: Vec<Envelope> = (0..APPENDS).map(make).collect();
            let start = Instant::now();
            for envelope in envelopes {
                env.store
                    .append_committed(ExpectedVersion::NoStream, &[envelope])
                    .await
                    .unwrap();
            }
            rates.push(APPENDS as f64 / start.elapsed().as_secs_f64());
        }
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[1]
    };
    let (plain, pii) = (median(&mut plain_rates), median(&mut pii_rates));
    println!(
        "append, 1 writer, 1 event per transaction: without PII {plain:.0} ev/s | with one PII field {pii:.0} ev/s | ratio {:.2}",
        pii / plain
    );
    env.cleanup().await;
}

/// Subjects erased at each log size; the figure is their median and slowest.
const ERASURES: usize = 50;

/// Erasure time with the log at 10,000 and at 1,000,000 events, with and without a scrub.
async fn erasure_time() {
    let env = TestEnv::new().await;
    let keys = &env.keys;
    let mut stored = 0;
    let mut students = Vec::new();
    for size in [10_000, 1_000_000] {
        while stored < size {
            // A student's hundred attempts at one quiz: every name sealed with their key.
            let quiz = Uuid::now_v7();
            let student = Uuid::now_v7();
            students.push(student);
            let batch: Vec<Envelope> = (0..100)
                .map(|n| {
                    Envelope::new(&QuizSubmitted {
                        quiz_id: quiz,
                        student_id: student,
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
            stored += 100;
        }
        sqlx::query("VACUUM ANALYZE events, outbox, subject_keys")
            .execute(&env.pool)
            .await
            .unwrap();
        let mut times = Vec::with_capacity(ERASURES);
        for _ in 0..ERASURES {
            let subject = Uuid::now_v7();
            let mut tx = env.pool.begin().await.unwrap();
            key_for_append(keys, &mut tx, subject).await.unwrap();
            tx.commit().await.unwrap();
            let start = Instant::now();
            env.store
                .erase_subject(subject, "benchmark", Scrub::KeysOnly)
                .await
                .unwrap();
            times.push(start.elapsed());
        }
        times.sort_unstable();
        println!(
            "erase one subject, {size:>9} events in the log: median {:?}, slowest of {ERASURES} {:?} (target: under 50 ms, flat)",
            times[ERASURES / 2],
            times[ERASURES - 1]
        );
        // Scrubbing rewrites the subject's own events (100 each here), found by index.
        let mut scrubs = Vec::with_capacity(ERASURES);
        for subject in students.drain(..).rev().take(ERASURES) {
            let start = Instant::now();
            let receipt = env
                .store
                .erase_subject(subject, "benchmark", Scrub::StoredCiphertext)
                .await
                .unwrap();
            scrubs.push(start.elapsed());
            assert_eq!(receipt.events_scrubbed, 100);
        }
        scrubs.sort_unstable();
        println!(
            "  with scrub of the subject's 100 events: median {:?}, slowest {:?}",
            scrubs[scrubs.len() / 2],
            scrubs[scrubs.len() - 1]
        );
    }
    env.cleanup().await;
}

fn field_cost() {
    let key = DataKey::generate();
    let subject = Uuid::now_v7();
    let event_id = Uuid::now_v7();
    let ctx = FieldContext {
        event_id,
        event_type: "quiz.submitted",
        version: 2,
        field: "student_name",
    };
    let value = serde_json::Value::String("Ada Lovelace, class 4b".to_owned());

    let json = per_field(|_| {
        let text = serde_json::to_vec(black_box(&value)).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&text).unwrap();
        black_box(back);
    });
    let sealed = per_field(|_| {
        let text = serde_json::to_vec(black_box(&value)).unwrap();
        let sealed = seal(&key, subject, 1, &ctx, &text);
        let form = sealed.to_json();
        let parsed = SealedField::from_json(&form, &ctx).unwrap().unwrap();
        let plain = open(&key, &ctx, &parsed).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        black_box(back);
    });
    // The cipher alone: encrypt then decrypt, associated data included, no JSON form.
    let text = serde_json::to_vec(&value).unwrap();
    let cipher = per_field(|_| {
        let sealed = seal(&key, subject, 1, &ctx, black_box(&text));
        black_box(open(&key, &ctx, &sealed).unwrap());
    });
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        let one = seal(&key, subject, 1, &ctx, &text);
        let form = one.to_json();
        println!(
            "    to_json {:?} | from_json {:?}",
            per_field(|_| {
                black_box(one.to_json());
            }),
            per_field(|_| {
                black_box(SealedField::from_json(&form, &ctx));
            })
        );
    }
    println!(
        "per PII field: encrypt + decrypt (seal + open) {cipher:?} (target: under 2 µs) | \
         the whole round trip (JSON, seal, $pii form, parse, open) {sealed:?}, added over plain JSON {json:?}: {:?}",
        sealed.saturating_sub(json)
    );
}
