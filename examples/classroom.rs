//! The EduPulse flow end to end against PostgreSQL and NATS JetStream (start them with
//! `scripts/services`): a teacher publishes a lesson and a quiz, students submit it (commands on
//! the quiz aggregate, one attempt each), a badge is awarded; the relay moves every event to JetStream and a plain NATS subscriber reads them.
//! Names are personal data: they are sealed before they leave the process, and once the
//! student is erased, the badge read back from the stream says `Erased`.
//!
//! ```text
//! scripts/services && cargo run --example classroom
//! ```
//!
//! It works in its own schema (`edupulse_example`), subject prefix and stream, which it removes
//! at the end.

use edupulse_events::async_nats;
use edupulse_events::sqlx;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use edupulse_domain::{Answer, BadgeAwarded, LessonPublished, Quiz, QuizEvent};
use edupulse_events::aggregate::Aggregates;
use edupulse_events::privacy::{LocalKeyProvider, Scrub};
use edupulse_events::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use edupulse_events::store::ExpectedVersion;
use edupulse_events::store::Store;
use edupulse_events::{Envelope, Runtime, Uuid};
use futures::StreamExt;

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

    // The master key wraps every data key. In production it comes from the environment (or a
    // KMS); here a development key file is created on first run.
    let master = LocalKeyProvider::from_env()
        .or_else(|_| LocalKeyProvider::from_file_or_create(Path::new("target/edupulse-dev.key")))?;
    let runtime = Runtime::builder()
        .postgres(pool.clone())
        .nats(nats_url.as_str(), async_nats::ConnectOptions::new())
        .key_provider(Arc::new(master))
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

    // The quiz is an aggregate: each command is decided on its current state (published?
    // attempts left?) and appended with the version it was decided on.
    let quizzes = Aggregates::<Quiz, Store>::new(runtime.store().clone());
    let quiz_id = Uuid::now_v7();
    quizzes
        .execute(&quiz_id, |quiz| {
            quiz.publish(quiz_id, lesson.lesson_id, teacher, 1)
        })
        .await?;
    // (name, correct answers out of 5)
    let students: Vec<(Uuid, &str, u32)> = vec![
        (Uuid::now_v7(), "Ada", 4),
        (Uuid::now_v7(), "Grace", 5),
        (Uuid::now_v7(), "Alan", 3),
    ];
    for (student_id, name, correct) in &students {
        let answers = || answers(*correct, 5);
        // The score row and the event commit together, or neither does.
        quizzes
            .execute_with(
                &quiz_id,
                |quiz| quiz.submit(quiz_id, *student_id, (*name).into(), answers()),
                |tx, events| {
                    Box::pin(async move {
                        for event in events {
                            if let QuizEvent::QuizSubmitted(submitted) = event {
                                sqlx::query("INSERT INTO quiz_scores VALUES ($1, $2, $3)")
                                    .bind(submitted.quiz_id)
                                    .bind(submitted.student_id)
                                    .bind(submitted.score)
                                    .execute(&mut **tx)
                                    .await?;
                            }
                        }
                        Ok(())
                    })
                },
            )
            .await?;
    }
    // One attempt each: a second submission is refused by the quiz, and nothing is stored.
    let (ada, _, _) = students[0];
    let again = quizzes
        .execute(&quiz_id, |quiz| {
            quiz.submit(quiz_id, ada, "Ada".into(), answers(5, 5))
        })
        .await;
    println!(
        "a second attempt by Ada: {}",
        again.expect_err("one attempt each")
    );

    let (best, best_name, _) = students
        .iter()
        .max_by_key(|student| student.2)
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

    let mut badge_message = None;
    // The lesson, the quiz, three submissions, the badge.
    for _ in 0..6 {
        let message = tokio::time::timeout(Duration::from_secs(10), subscriber.next())
            .await?
            .ok_or("subscription closed")?;
        let (envelope, event) = runtime.decode_message(&message).await?;
        // The raw body holds names only sealed; the decoded event has them, masked in Debug.
        println!(
            "{:45} seq {} {:?}",
            message.subject.as_str(),
            envelope.sequence,
            event
        );
        if event.is::<BadgeAwarded>() {
            badge_message = Some(message);
        }
    }

    // The best student asks to be forgotten: their key is destroyed, so every copy of their
    // name (the log, the stream, any backup) is unreadable from now on.
    let receipt = runtime
        .erase_subject(*best, "support ticket 1234", Scrub::KeysOnly)
        .await?;
    println!(
        "erased subject {} ({} key destroyed, event at position {})",
        receipt.subject, receipt.keys_destroyed, receipt.position
    );
    let badge_message = badge_message.ok_or("the badge was not received")?;
    let (_, badge) = runtime.decode_message(&badge_message).await?;
    let badge = badge
        .downcast::<BadgeAwarded>()
        .map_err(|_| "not a badge")?;
    println!(
        "badge read again from the stream: student name erased: {}, teacher note still there: {}",
        badge.student_name.is_erased(),
        badge.teacher_note.present().is_some()
    );
    // The erasure event itself is relayed like any other.
    let message = tokio::time::timeout(Duration::from_secs(10), subscriber.next())
        .await?
        .ok_or("subscription closed")?;
    println!(
        "{:45} (the erasure, free of personal data)",
        message.subject.as_str()
    );

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

/// `total` answers, the first `correct` of them right.
fn answers(correct: u32, total: u32) -> Vec<Answer> {
    (1..=total)
        .map(|question| Answer {
            question,
            choice: "a".into(),
            correct: question <= correct,
        })
        .collect()
}
