//! A read model: each student's quiz count and points, built from `QuizSubmitted` events
//! through a [`Subscriber`], with the student's name, so an erasure must reach it too.

use edupulse_domain::QuizSubmitted;
use edupulse_events::consume::{Subscriber, SubscriberBuilder};
use edupulse_events::sqlx;
use edupulse_events::sqlx::PgPool;
use edupulse_events::{Runtime, Uuid};

/// One student's line.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Standing {
    /// The student.
    pub student_id: Uuid,
    /// Their name as last submitted (personal data: the row goes when they are erased).
    pub name: Option<String>,
    /// Quizzes submitted.
    pub quizzes: i64,
    /// Points: the sum of scores, in hundredths (integers, so the sum does not depend on the
    /// order events are applied in).
    pub points: i64,
}

/// Creates the table if it is missing.
pub async fn create_table(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS leaderboard (
             student_id UUID   PRIMARY KEY,
             name       TEXT,
             quizzes    BIGINT NOT NULL,
             points     BIGINT NOT NULL
         )",
    )
    .execute(pool)
    .await
    .map(|_| ())
}

/// The subscriber that maintains the leaderboard; `name` is its durable consumer and inbox.
pub fn subscriber(runtime: &Runtime, name: &str) -> SubscriberBuilder {
    Subscriber::builder(runtime, name)
        .on(|quiz: QuizSubmitted, _envelope, tx| {
            Box::pin(async move {
                // The student was erased: their submissions no longer count (a replay from the
                // store, or one still in flight behind the erasure, arrives like this).
                if quiz.student_name.is_erased() {
                    return Ok(());
                }
                sqlx::query(
                    "INSERT INTO leaderboard (student_id, name, quizzes, points) \
                     VALUES ($1, $2, 1, $3) \
                     ON CONFLICT (student_id) DO UPDATE SET \
                         name = coalesce(EXCLUDED.name, leaderboard.name), \
                         quizzes = leaderboard.quizzes + 1, \
                         points = leaderboard.points + EXCLUDED.points",
                )
                .bind(quiz.student_id)
                .bind(quiz.student_name.present())
                .bind((f64::from(quiz.score) * 100.0).round() as i64)
                .execute(&mut *tx)
                .await?;
                Ok(())
            })
        })
        .on_erasure(|student, tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM leaderboard WHERE student_id = $1")
                    .bind(student)
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            })
        })
}

/// The leaderboard, best first.
pub async fn standings(pool: &PgPool) -> Result<Vec<Standing>, sqlx::Error> {
    sqlx::query_as(
        "SELECT student_id, name, quizzes, points FROM leaderboard \
         ORDER BY points DESC, student_id",
    )
    .fetch_all(pool)
    .await
}
