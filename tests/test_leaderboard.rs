//! The leaderboard read model against real PostgreSQL and nats-server: built live from the
//! stream it equals the same projection rebuilt from the store, and a consumer process killed
//! mid-stream and restarted applies every event exactly once.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestEnv;
use edupulse_domain::QuizSubmitted;
use edupulse_events::privacy::Scrub;
use edupulse_events::store::ExpectedVersion;
use edupulse_events::{Envelope, Uuid};
use edupulse_suite::leaderboard;

const STUDENTS: usize = 300;

/// Students, each with one name.
fn students() -> Vec<(Uuid, String)> {
    (0..STUDENTS)
        .map(|n| (Uuid::now_v7(), format!("student {n}")))
        .collect()
}

/// The student of submission `k`: spread over all of `students`.
fn student_of(students: &[(Uuid, String)], k: usize) -> &(Uuid, String) {
    &students[(k * 7919) % students.len()]
}

/// `quizzes` quizzes of `per_quiz` submissions each, numbered from `first`, with scores that
/// differ per submission.
async fn submit(
    env: &TestEnv,
    students: &[(Uuid, String)],
    quizzes: usize,
    per_quiz: usize,
    first: usize,
) {
    for q in 0..quizzes {
        let quiz_id = Uuid::now_v7();
        let batch: Vec<Envelope> = (0..per_quiz)
            .map(|n| {
                let k = first + q * per_quiz + n;
                let (student_id, name) = student_of(students, k);
                Envelope::new(&QuizSubmitted {
                    quiz_id,
                    student_id: *student_id,
                    student_name: name.clone().into(),
                    score: (k % 101) as f32 / 100.0,
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
}

async fn applied(env: &TestEnv, consumer: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM inbox WHERE consumer = $1")
        .bind(consumer)
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

/// Waits until the consumer has applied at least `expected` events, checking every few
/// milliseconds; returns how many it had.
async fn until_applied(env: &TestEnv, consumer: &str, expected: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let now = applied(env, consumer).await;
        if now >= expected {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{consumer} applied {now} of {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_projection_rebuilt_from_the_store_equals_the_one_built_live() {
    let env = TestEnv::new().await;
    leaderboard::create_table(&env.pool).await.unwrap();
    let students = students();
    submit(&env, &students, 50, 100, 0).await;
    // Three students leave halfway: their rows must go, live and rebuilt alike.
    let erased: Vec<Uuid> = students[..3].iter().map(|s| s.0).collect();
    for student in &erased {
        env.store
            .erase_subject(*student, "leaderboard test", Scrub::KeysOnly)
            .await
            .unwrap();
    }
    submit(&env, &students[3..], 50, 100, 5_000).await;
    env.relay_everything().await;

    let runtime = env.runtime().await;
    let live = leaderboard::subscriber(&runtime, "leaderboard")
        .build()
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(live.run(async {
        let _ = stopped.await;
    }));
    let total = 10_000 + 3;
    assert_eq!(until_applied(&env, "leaderboard", total).await, total);
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let built_live = leaderboard::standings(&env.pool).await.unwrap();
    let by_erased = (0..5_000)
        .filter(|k| erased.contains(&student_of(&students, *k).0))
        .count() as i64;
    assert_eq!(built_live.len(), STUDENTS - 3);
    assert_eq!(
        built_live.iter().map(|s| s.quizzes).sum::<i64>(),
        10_000 - by_erased
    );
    assert!(built_live.iter().all(|s| !erased.contains(&s.student_id)));
    assert!(built_live.iter().all(|s| s.name.is_some()));

    // Rebuilt: the table and the consumer's inbox emptied, then the whole log replayed.
    sqlx::query("TRUNCATE leaderboard")
        .execute(&env.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM inbox WHERE consumer = 'leaderboard'")
        .execute(&env.pool)
        .await
        .unwrap();
    let rebuilder = leaderboard::subscriber(&runtime, "leaderboard")
        .build()
        .await
        .unwrap();
    assert_eq!(rebuilder.catch_up().await.unwrap(), total as u64);
    let rebuilt = leaderboard::standings(&env.pool).await.unwrap();
    let differing = rebuilt
        .iter()
        .zip(&built_live)
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        rebuilt.len() == built_live.len() && differing == 0,
        "rebuilt {} rows, live {}; {differing} differ",
        rebuilt.len(),
        built_live.len()
    );
    // Caught up, a second pass applies nothing.
    assert_eq!(rebuilder.catch_up().await.unwrap(), 0);
    env.cleanup().await;
}

/// A consumer process, killed when dropped, so a failing test leaves none behind.
struct Consumer(Child);

impl Consumer {
    fn start(env: &TestEnv) -> Self {
        Command::new(env!("CARGO_BIN_EXE_edupulse-leaderboard"))
            .env("DATABASE_URL", common::database_url())
            .env("NATS_URL", common::nats_url())
            .env("EDUPULSE_SCHEMA", &env.schema)
            .env("EDUPULSE_PREFIX", &env.prefix)
            .env("EDUPULSE_STREAM", &env.stream)
            .env("EDUPULSE_PARTITIONS", env.store.partitions().to_string())
            .env("EDUPULSE_MASTER_KEY", &env.master_base64)
            .stdout(Stdio::null())
            .spawn()
            .map(Consumer)
            .expect("the edupulse-leaderboard binary")
    }

    /// SIGKILL: no chance to finish the message in hand.
    fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_consumer_killed_mid_stream_applies_every_event_once_after_a_restart() {
    let env = TestEnv::new().await;
    leaderboard::create_table(&env.pool).await.unwrap();
    let students = students();
    submit(&env, &students, 40, 100, 0).await;
    env.relay_everything().await;

    let mut first = Consumer::start(&env);
    until_applied(&env, "leaderboard", 500).await;
    first.kill();
    let at_kill = applied(&env, "leaderboard").await;
    assert!(
        at_kill < 4_000,
        "the consumer finished before it was killed"
    );

    let mut second = Consumer::start(&env);
    assert_eq!(until_applied(&env, "leaderboard", 4_000).await, 4_000);
    second.kill();
    // Counting rows: a second application of any event would show as an extra quiz.
    let total: i64 = sqlx::query_scalar("SELECT sum(quizzes)::bigint FROM leaderboard")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(total, 4_000);
    env.cleanup().await;
}
