//! A read model kept by a subscriber: students submit quizzes, the relay publishes them, and
//! the leaderboard subscriber applies each exactly once (its writes commit with its inbox);
//! when a student is erased, their row goes too.
//!
//! ```text
//! scripts/services && cargo run --example leaderboard
//! ```
//!
//! It works in its own schema, subject prefix and stream, which it removes at the end.

use edupulse_events::async_nats;
use edupulse_events::sqlx;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edupulse_domain::QuizSubmitted;
use edupulse_events::privacy::{LocalKeyProvider, Scrub};
use edupulse_events::sqlx::PgPool;
use edupulse_events::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use edupulse_events::store::ExpectedVersion;
use edupulse_events::{Envelope, Runtime, Uuid};
use edupulse_suite::leaderboard;

const SCHEMA: &str = "edupulse_leaderboard_example";
const PREFIX: &str = "edupulse_leaderboard_example";
const STREAM: &str = "EDUPULSE_LEADERBOARD_EXAMPLE";

/// Waits until the subscriber has applied `count` events.
async fn applied(pool: &PgPool, count: i64) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
            .fetch_one(pool)
            .await?;
        if done >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("only {done} of {count} events applied").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn print(pool: &PgPool) -> Result<(), sqlx::Error> {
    for (rank, s) in leaderboard::standings(pool).await?.iter().enumerate() {
        println!(
            "  {}. {:10} {} quizzes, {:.2} points",
            rank + 1,
            s.name.as_deref().unwrap_or("?"),
            s.quizzes,
            s.points as f64 / 100.0
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let options = PgConnectOptions::from_str(&url)?;
    let admin = PgPoolOptions::new().connect_with(options.clone()).await?;
    sqlx::raw_sql(&format!(
        "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}"
    ))
    .execute(&admin)
    .await?;
    let pool = PgPoolOptions::new()
        .connect_with(options.options([("search_path", SCHEMA)]))
        .await?;
    let master = LocalKeyProvider::from_env()
        .or_else(|_| LocalKeyProvider::from_file_or_create(Path::new("target/edupulse-dev.key")))?;
    let runtime = Runtime::builder()
        .postgres(pool.clone())
        .nats(nats_url.as_str(), async_nats::ConnectOptions::new())
        .subject_prefix(PREFIX)
        .stream(STREAM)
        .key_provider(Arc::new(master))
        .build()
        .await?;
    leaderboard::create_table(&pool).await?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let relay = runtime.spawn_relay(shutdown(stopped.clone()));
    let subscriber = leaderboard::subscriber(&runtime, "leaderboard")
        .build()
        .await?;
    let consuming = tokio::spawn(subscriber.run(shutdown(stopped.clone())));

    let students = [
        (Uuid::now_v7(), "Ada"),
        (Uuid::now_v7(), "Grace"),
        (Uuid::now_v7(), "Alan"),
    ];
    for (quiz, scores) in [[0.9, 0.7, 0.8], [0.95, 0.6, 0.85]].iter().enumerate() {
        let quiz_id = Uuid::now_v7();
        let submissions: Vec<Envelope> = students
            .iter()
            .zip(scores)
            .map(|((student_id, name), score)| {
                Envelope::new(&QuizSubmitted {
                    quiz_id,
                    student_id: *student_id,
                    student_name: (*name).into(),
                    score: *score,
                    answers: vec![],
                })
            })
            .collect::<Result<_, _>>()?;
        runtime
            .store()
            .append_committed(ExpectedVersion::NoStream, &submissions)
            .await?;
        println!("quiz {} submitted by {} students", quiz + 1, students.len());
    }
    applied(&pool, 6).await?;
    println!("leaderboard:");
    print(&pool).await?;

    // Grace asks to be forgotten: her key is destroyed, and the read model drops her row when
    // the erasure event reaches it.
    runtime
        .erase_subject(students[1].0, "support ticket 5678", Scrub::KeysOnly)
        .await?;
    applied(&pool, 7).await?;
    println!("after Grace's erasure:");
    print(&pool).await?;

    stop.send(true)?;
    relay.await??;
    consuming.await??;
    runtime.publisher().context().delete_stream(STREAM).await?;
    sqlx::query(&format!("DROP SCHEMA {SCHEMA} CASCADE"))
        .execute(&admin)
        .await?;
    Ok(())
}
