//! Command figures beside raw baselines measured in the same run, on the same PostgreSQL.
//! Run `scripts/services`, then `cargo bench --bench commands`.
//!
//! - round trip, one event per command, 1,000 aggregates of 20 events, 1 and 8 writers, cache
//!   off: `Aggregates::execute` against the same work by hand with sqlx (read the aggregate's
//!   rows, insert one row at the next sequence, the unique key the check, commit);
//! - warm cache: `execute` on cached aggregates against a blind `append` of the same event
//!   with `ExpectedVersion::Any`;
//! - history length, cache off: command latency at histories of 10, 1,000 and 10,000 events,
//!   without snapshots and with one every 100 events (the histories taking turns);
//! - contention: 8 writers on one aggregate, 100 commands each: throughput, attempts, and
//!   how many ran out of attempts.
//!
//! Library and baseline take turns in slices within each of 6 rounds; the ratio printed is
//! the median of the rounds' ratios. `BENCH_PART=trip|warm|history|contention` runs one part.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/plain_quiz.rs"]
mod plain_quiz;
#[path = "support/stats.rs"]
mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestEnv;
use edupulse_events::aggregate::{Aggregate, Aggregates, CommandError, SnapshotState};
use edupulse_events::store::EventStore;
use edupulse_events::store::{ExpectedVersion, Store};
use edupulse_events::{Envelope, Uuid, aggregate_events};
use plain_quiz::QuizScored;
use stats::median;

aggregate_events! {
    /// The benchmark's aggregate: scores of one quiz.
    pub enum ScoreEvent for "quiz" by Uuid { QuizScored }
}

/// How many scores a quiz holds: the fold reads every event.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Scores {
    count: u64,
}

impl SnapshotState for Scores {
    const STATE_VERSION: u32 = 1;
}

impl Aggregate for Scores {
    type Event = ScoreEvent;

    fn apply(&mut self, _: &ScoreEvent) {
        self.count += 1;
    }
}

const AGGREGATES: usize = 1_000;
const HISTORY: usize = 20;
const COMMANDS: usize = 2_000;
const SLICES: usize = 10;
const ROUNDS: usize = 6;

fn scored(quiz_id: Uuid) -> QuizScored {
    QuizScored {
        quiz_id,
        student_id: Uuid::now_v7(),
        student_label: "student number 12".into(),
        score: 0.5,
        answers: vec![],
    }
}

fn decide(_: &Scores, quiz_id: Uuid) -> Result<Vec<ScoreEvent>, std::convert::Infallible> {
    Ok(vec![scored(quiz_id).into()])
}

/// The same command by hand: the aggregate's rows read and folded, one row inserted at the
/// next sequence (the unique key refuses a lost race), committed.
async fn raw_command(env: &TestEnv, quiz_id: Uuid) {
    let e = Envelope::new(&scored(quiz_id)).unwrap();
    let mut tx = env.pool.begin().await.unwrap();
    let rows: Vec<(i64, serde_json::Value)> = sqlx::query_as(
        "SELECT sequence, payload FROM raw_events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(quiz_id)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let mut state = Scores::default();
    for (_, payload) in &rows {
        let event: QuizScored = serde_json::from_value(payload.clone()).unwrap();
        state.apply(&event.into());
    }
    let next = rows.last().map_or(1, |(sequence, _)| sequence + 1);
    raw_insert(&mut tx, &e, next).await;
    tx.commit().await.unwrap();
}

/// The baseline's insert: one row at `sequence`, the unique key the check.
async fn raw_insert(tx: &mut sqlx::PgConnection, e: &Envelope, sequence: i64) {
    sqlx::query(
        "INSERT INTO raw_events (event_id, aggregate_type, aggregate_id, sequence, event_type, \
         version, data_subjects, payload, metadata, occurred_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10)",
    )
    .bind(e.id)
    .bind(&e.aggregate_type)
    .bind(e.aggregate_id)
    .bind(sequence)
    .bind(&e.event_type)
    .bind(1_i32)
    .bind(&e.data_subjects)
    .bind(e.payload.to_string())
    .bind(serde_json::to_string(&e.metadata).unwrap())
    .bind(e.occurred_at)
    .execute(tx)
    .await
    .unwrap();
}

/// `ids` aggregates with `history` events each, in the log and in `raw_events`.
async fn seed(env: &TestEnv, ids: &[Uuid], history: usize) {
    for &id in ids {
        let events: Vec<Envelope> = (0..history)
            .map(|_| Envelope::new(&scored(id)).unwrap())
            .collect();
        for chunk in events.chunks(500) {
            env.store
                .append_committed(ExpectedVersion::Any, chunk)
                .await
                .unwrap();
        }
    }
    sqlx::query(
        "INSERT INTO raw_events (event_id, aggregate_type, aggregate_id, sequence, event_type, \
         version, data_subjects, payload, metadata, occurred_at) \
         SELECT event_id, aggregate_type, aggregate_id, sequence, event_type, version, \
         data_subjects, payload, metadata, occurred_at FROM events WHERE aggregate_id = ANY($1)",
    )
    .bind(ids)
    .execute(&env.pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM outbox")
        .execute(&env.pool)
        .await
        .unwrap();
}

/// `count` commands shared by `writers` tasks over `ids` (each writer its own stride).
async fn slice<F, Fut>(writers: usize, count: usize, ids: &Arc<Vec<Uuid>>, one: F) -> Duration
where
    F: Fn(Uuid) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let per_writer = count / writers;
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (ids, one) = (ids.clone(), one.clone());
            tokio::spawn(async move {
                for n in 0..per_writer {
                    one(ids[(w + n * writers) % ids.len()]).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    start.elapsed()
}

/// Rounds of library and baseline taking turns; (library/s, baseline/s, median ratio).
async fn paired<L, LF, R, RF>(
    writers: usize,
    ids: &Arc<Vec<Uuid>>,
    lib: L,
    raw: R,
) -> (f64, f64, f64)
where
    L: Fn(Uuid) -> LF + Clone + Send + 'static,
    LF: Future<Output = ()> + Send,
    R: Fn(Uuid) -> RF + Clone + Send + 'static,
    RF: Future<Output = ()> + Send,
{
    let (mut libs, mut raws, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let per_slice = COMMANDS / SLICES;
    for _ in 0..ROUNDS {
        let (mut l, mut r) = (Duration::ZERO, Duration::ZERO);
        for turn in 0..SLICES {
            for library in [turn % 2 == 0, turn % 2 != 0] {
                if library {
                    l += slice(writers, per_slice, ids, lib.clone()).await;
                } else {
                    r += slice(writers, per_slice, ids, raw.clone()).await;
                }
            }
        }
        let done = (per_slice / writers * writers * SLICES) as f64;
        let (lps, rps) = (done / l.as_secs_f64(), done / r.as_secs_f64());
        libs.push(lps);
        raws.push(rps);
        ratios.push(lps / rps);
    }
    (median(libs), median(raws), median(ratios))
}

/// Command latency (cache off) on aggregates with histories of `histories` events, reading
/// a snapshot taken every 100 events when `snapshots`: the histories take turns, 20 commands
/// at a time, over 6 rounds (so a noisy moment falls on all of them); each figure is the
/// median of its rounds' means.
async fn latencies(env: &TestEnv, histories: &[usize], snapshots: bool) -> Vec<Duration> {
    let ids: Vec<Uuid> = histories.iter().map(|_| Uuid::now_v7()).collect();
    let mut scores = Aggregates::<Scores, Store>::new(env.store.clone()).cache(0);
    if snapshots {
        scores = scores.snapshot_every(100);
    }
    let key = format!("quiz/{}", std::any::type_name::<Scores>());
    for (&id, &history) in ids.iter().zip(histories) {
        seed(env, &[id], history).await;
        // The first command reads the whole history and snapshots it (in a task of its own).
        scores.execute(&id, |s| decide(s, id)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        // A history shorter than the interval has none to take yet.
        while snapshots
            && history + 1 >= 100
            && env.store.snapshot(id, &key, 1).await.unwrap().is_none()
        {
            assert!(Instant::now() < deadline, "no snapshot");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let mut means: Vec<Vec<f64>> = vec![Vec::new(); ids.len()];
    for _ in 0..ROUNDS {
        for (n, &id) in ids.iter().enumerate() {
            let start = Instant::now();
            for _ in 0..20 {
                scores.execute(&id, |s| decide(s, id)).await.unwrap();
            }
            means[n].push(start.elapsed().as_secs_f64() / 20.0);
        }
    }
    means
        .into_iter()
        .map(|m| Duration::from_secs_f64(median(m)))
        .collect()
}

#[tokio::main]
async fn main() {
    let env = Arc::new(TestEnv::new().await);
    sqlx::query("CREATE TABLE raw_events (LIKE events INCLUDING ALL)")
        .execute(&env.pool)
        .await
        .unwrap();
    let part = std::env::var("BENCH_PART").unwrap_or_default();
    let runs = |name: &str| part.is_empty() || part == name;
    let ids: Arc<Vec<Uuid>> = Arc::new((0..AGGREGATES).map(|_| Uuid::now_v7()).collect());
    if runs("trip") || runs("warm") || part == "split" {
        seed(&env, &ids, HISTORY).await;
    }
    if runs("trip") {
        for writers in [1, 8] {
            let scores = Arc::new(Aggregates::<Scores, Store>::new(env.store.clone()).cache(0));
            let lib = move |id: Uuid| {
                let scores = scores.clone();
                async move {
                    scores.execute(&id, |s| decide(s, id)).await.unwrap();
                }
            };
            let raw_env = env.clone();
            let raw = move |id: Uuid| {
                let env = raw_env.clone();
                async move { raw_command(&env, id).await }
            };
            let (l, r, ratio) = paired(writers, &ids, lib, raw).await;
            println!(
                "command round trip, {writers} writer(s), cache off: {l:>7.0} cmd/s | by hand {r:>7.0} cmd/s | ratio {ratio:.2} (target >= 0.8)"
            );
        }
    }
    if part == "split" {
        // Where a cold command's time goes, half by half: not part of the figures.
        let n = 2_000;
        let time = |took: Duration| took.as_secs_f64() * 1e6 / f64::from(n);
        let mut at = Instant::now();
        for i in 0..n {
            let id = ids[i as usize % ids.len()];
            env.store.load_after(id, 0).await.unwrap();
        }
        let lib_read = time(at.elapsed());
        at = Instant::now();
        for i in 0..n {
            let id = ids[i as usize % ids.len()];
            let rows: Vec<(i64, serde_json::Value)> = sqlx::query_as(
                "SELECT sequence, payload FROM raw_events WHERE aggregate_id = $1 \
                 ORDER BY sequence",
            )
            .bind(id)
            .fetch_all(&env.pool)
            .await
            .unwrap();
            for (_, payload) in &rows {
                let _: QuizScored = serde_json::from_value(payload.clone()).unwrap();
            }
        }
        let raw_read = time(at.elapsed());
        at = Instant::now();
        for _ in 0..n {
            let e = Envelope::new(&scored(Uuid::now_v7())).unwrap();
            let mut tx = env.store.begin().await.unwrap();
            env.store
                .append(&mut tx, ExpectedVersion::Exact(0), &[e])
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        let lib_write = time(at.elapsed());
        at = Instant::now();
        for _ in 0..n {
            let e = Envelope::new(&scored(Uuid::now_v7())).unwrap();
            let mut tx = env.pool.begin().await.unwrap();
            raw_insert(&mut tx, &e, 1).await;
            tx.commit().await.unwrap();
        }
        let raw_write = time(at.elapsed());
        let scores = Aggregates::<Scores, Store>::new(env.store.clone()).cache(0);
        at = Instant::now();
        for i in 0..n {
            let id = ids[i as usize % ids.len()];
            scores.execute(&id, |s| decide(s, id)).await.unwrap();
        }
        let lib_command = time(at.elapsed());
        at = Instant::now();
        for i in 0..n {
            raw_command(&env, ids[i as usize % ids.len()]).await;
        }
        let raw_command = time(at.elapsed());
        println!("split, us per command: {lib_command:.0} (by hand {raw_command:.0})");
        println!(
            "split, us per command: read {lib_read:.0} (by hand {raw_read:.0}), \
             begin+append+commit {lib_write:.0} (by hand {raw_write:.0})"
        );
    }
    if runs("warm") {
        let scores = Arc::new(Aggregates::<Scores, Store>::new(env.store.clone()));
        for &id in ids.iter() {
            scores.execute(&id, |s| decide(s, id)).await.unwrap();
        }
        let lib = {
            let scores = scores.clone();
            move |id: Uuid| {
                let scores = scores.clone();
                async move {
                    let done = scores.execute(&id, |s| decide(s, id)).await.unwrap();
                    assert!(done.cached, "a warm command read the aggregate");
                }
            }
        };
        let store = env.store.clone();
        // On aggregates of their own: a blind append to a cached aggregate would make its
        // cached state stale.
        let blind = move |_: Uuid| {
            let store = store.clone();
            async move {
                let e = Envelope::new(&scored(Uuid::now_v7())).unwrap();
                store
                    .append_committed(ExpectedVersion::Any, &[e])
                    .await
                    .unwrap();
            }
        };
        let (l, r, ratio) = paired(1, &ids, lib, blind).await;
        println!(
            "warm cache, 1 writer: {l:>7.0} cmd/s | blind append (Any) {r:>7.0} ev/s | ratio {ratio:.2} (target >= 0.85)"
        );
    }
    if runs("history") {
        let histories = [10, 1_000, 10_000];
        for snapshots in [false, true] {
            let took = latencies(&env, &histories, snapshots).await;
            for (history, took) in histories.iter().zip(&took) {
                println!(
                    "history of {history:>6} events, cache off, {}: {:>8.2} ms per command",
                    if snapshots {
                        "snapshot every 100"
                    } else {
                        "no snapshots     "
                    },
                    took.as_secs_f64() * 1e3
                );
            }
            let spread =
                took.iter().max().unwrap().as_secs_f64() / took.iter().min().unwrap().as_secs_f64();
            println!(
                "  slowest / fastest: {spread:.2}{}",
                if snapshots { " (target <= 1.5)" } else { "" }
            );
        }
    }
    if runs("contention") {
        let id = Uuid::now_v7();
        seed(&env, &[id], 1).await;
        let start = Instant::now();
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let store = env.store.clone();
                tokio::spawn(async move {
                    let scores = Aggregates::<Scores, Store>::new(store);
                    let (mut done, mut attempts, mut gave_up) = (0, 0, 0);
                    for _ in 0..100 {
                        match scores.execute(&id, |s| decide(s, id)).await {
                            Ok(executed) => {
                                done += 1;
                                attempts += executed.attempts;
                            }
                            Err(CommandError::Contended { attempts: a, .. }) => {
                                gave_up += 1;
                                attempts += a;
                            }
                            Err(other) => panic!("{other}"),
                        }
                    }
                    (done, attempts, gave_up)
                })
            })
            .collect();
        let (mut done, mut attempts, mut gave_up) = (0, 0, 0);
        for writer in writers {
            let (d, a, g) = writer.await.unwrap();
            done += d;
            attempts += a;
            gave_up += g;
        }
        let took = start.elapsed().as_secs_f64();
        println!(
            "contention, 8 writers x 100 commands on one aggregate: {done} appended, {gave_up} ran out of attempts (typed error), {attempts} attempts ({:.2} per command), {:.0} appended/s",
            f64::from(attempts) / 800.0,
            f64::from(done) / took
        );
    }
    let env = Arc::try_unwrap(env)
        .ok()
        .expect("no task holds the environment");
    env.cleanup().await;
}
