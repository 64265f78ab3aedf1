//! The EduPulse flow end to end against PostgreSQL and NATS JetStream (start them with
//! `scripts/services`): a teacher publishes a lesson, students submit quizzes, a badge is
//! awarded; the relay moves every event to JetStream and a plain NATS subscriber reads them.
//!
//! ```text
//! scripts/services && cargo run --example classroom
//! ```
//!
//! It works in its own schema (`edupulse_example`), subject prefix and stream, which it removes
//! at the end.

use std::str::FromStr;
use std::time::Duration;

use edupulse_domain::{BadgeAwarded, LessonPublished, QuizSubmitted};
use edupulse_events::store::ExpectedVersion;
use edupulse_events::{Envelope, Runtime, Uuid};
use futures::StreamExt;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

const SCHEMA: &str = "edupulse_example";
const PREFIX: &str = "edupulse_example";
const STREAM: &str = "EDUPULSE_EXAMPLE";

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
    let nats = async_nats::connect(&nats_url).await?;

    let runtime = Runtime::builder()
        .postgres(pool.clone())
        .nats(nats.clone())
        .subject_prefix(PREFIX)
        .stream(STREAM)
        .build()
        .await?;
    // The business table the events commit with.
    sqlx::query("CREATE TABLE quiz_scores (quiz_id uuid, student_id uuid, score real)")
        .execute(&pool)
        .await?;

    // A plain NATS subscriber, as another team's service in any language would be.
    let mut subscriber = nats.subscribe(format!("{PREFIX}.>")).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = runtime.spawn_relay(async {
        let _ = stopped.await;
    });

    let teacher = Uuid::now_v7();
    let lesson = LessonPublished {
        lesson_id: Uuid::now_v7(),
        course_id: Uuid::now_v7(),
        teacher_id: teacher,
        teacher_name: "Ms Lovelace".into(),
        title: "Fractions, part 1".into(),
        published_at: edupulse_events::chrono::Utc::now(),
    };
    runtime
        .store()
        .append_committed(
            ExpectedVersion::NoStream,
            &[Envelope::new(&lesson)?.with_actor("teacher:42")],
        )
        .await?;

    let quiz_id = Uuid::now_v7();
    let students: Vec<(Uuid, &str, f32)> = vec![
        (Uuid::now_v7(), "Ada", 0.9),
        (Uuid::now_v7(), "Grace", 0.95),
        (Uuid::now_v7(), "Alan", 0.7),
    ];
    for (student_id, name, score) in &students {
        let event = QuizSubmitted {
            quiz_id,
            student_id: *student_id,
            student_name: (*name).into(),
            score: *score,
            answers: vec![],
        };
        // The score row and the event commit together, or neither does.
        let mut tx = pool.begin().await?;
        sqlx::query("INSERT INTO quiz_scores VALUES ($1, $2, $3)")
            .bind(quiz_id)
            .bind(student_id)
            .bind(score)
            .execute(&mut *tx)
            .await?;
        runtime
            .store()
            .append(&mut tx, ExpectedVersion::Any, &[Envelope::new(&event)?])
            .await?;
        tx.commit().await?;
    }

    let (best, best_name, _) = students
        .iter()
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .expect("three students");
    let badge = BadgeAwarded {
        award_id: Uuid::now_v7(),
        student_id: *best,
        teacher_id: teacher,
        student_name: (*best_name).into(),
        teacher_note: "Top score on the fractions quiz".into(),
        badge: "top-of-class".into(),
    };
    runtime
        .store()
        .append_committed(ExpectedVersion::NoStream, &[Envelope::new(&badge)?])
        .await?;

    for _ in 0..5 {
        let message = tokio::time::timeout(Duration::from_secs(10), subscriber.next())
            .await?
            .ok_or("subscription closed")?;
        let headers = message.headers.as_ref().ok_or("no headers")?;
        println!(
            "{:45} type {:28} aggregate {} seq {}",
            message.subject.as_str(),
            headers.get("ce-type").map(|v| v.as_str()).unwrap_or("?"),
            headers
                .get("ce-aggregateid")
                .map(|v| v.as_str())
                .unwrap_or("?"),
            headers
                .get("ce-sequence")
                .map(|v| v.as_str())
                .unwrap_or("?"),
        );
    }

    stop.send(()).ok();
    relay.await??;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await?;
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await?;
    println!("stored {stored} events, {pending} waiting in the outbox");

    async_nats::jetstream::new(nats)
        .delete_stream(STREAM)
        .await?;
    sqlx::query(&format!("DROP SCHEMA {SCHEMA} CASCADE"))
        .execute(&admin)
        .await?;
    Ok(())
}
