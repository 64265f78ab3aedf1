//! The inbox against real PostgreSQL: an effect and the record of its event commit together,
//! so redeliveries and racing deliveries apply an event exactly once.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::TestEnv;
use edupulse_events::Uuid;
use edupulse_events::consume::{Applied, Inbox, InboxError};

async fn with_scores(env: &TestEnv) {
    sqlx::query("CREATE TABLE scores (student UUID PRIMARY KEY, points INTEGER NOT NULL)")
        .execute(&env.pool)
        .await
        .unwrap();
}

/// The effect of one "quiz passed" event: a point for the student.
async fn add_point(tx: &mut sqlx::PgConnection, student: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO scores (student, points) VALUES ($1, 1) \
         ON CONFLICT (student) DO UPDATE SET points = scores.points + 1",
    )
    .bind(student)
    .execute(tx)
    .await
    .map(|_| ())
}

async fn points(env: &TestEnv, student: Uuid) -> i32 {
    sqlx::query_scalar("SELECT coalesce((SELECT points FROM scores WHERE student = $1), 0)")
        .bind(student)
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_redelivered_event_changes_nothing() {
    let env = TestEnv::new().await;
    with_scores(&env).await;
    let inbox = Inbox::new("leaderboard");
    let (event, student) = (Uuid::now_v7(), Uuid::now_v7());
    for expected in [Applied::Now, Applied::Already, Applied::Already] {
        let applied = inbox
            .apply(&env.pool, event, |tx| Box::pin(add_point(tx, student)))
            .await
            .unwrap();
        assert_eq!(applied, expected);
    }
    assert_eq!(points(&env, student).await, 1);
    // Another consumer has its own record of the same event.
    let other = Inbox::new("badges");
    let applied = other
        .apply(&env.pool, event, |tx| Box::pin(add_point(tx, student)))
        .await
        .unwrap();
    assert_eq!(applied, Applied::Now);
    assert_eq!(points(&env, student).await, 2);
    env.cleanup().await;
}

#[tokio::test]
async fn a_failing_effect_is_rolled_back_and_applied_once_when_retried() {
    let env = TestEnv::new().await;
    with_scores(&env).await;
    let inbox = Inbox::new("leaderboard");
    let (event, student) = (Uuid::now_v7(), Uuid::now_v7());
    let attempts = AtomicU32::new(0);
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        let outcome = inbox
            .apply(&env.pool, event, |tx| {
                let attempt = attempts.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    // The write happens, then the handler fails: it must not stick.
                    add_point(tx, student).await.map_err(|e| e.to_string())?;
                    if attempt < 2 {
                        return Err(format!("attempt {attempt} failed"));
                    }
                    Ok(())
                })
            })
            .await;
        outcomes.push(match outcome {
            Ok(applied) => Ok(applied),
            Err(InboxError::Handler(reason)) => Err(reason),
            Err(other) => panic!("{other}"),
        });
    }
    assert_eq!(
        outcomes,
        vec![
            Err("attempt 0 failed".to_owned()),
            Err("attempt 1 failed".to_owned()),
            Ok(Applied::Now),
            Ok(Applied::Already),
        ]
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(points(&env, student).await, 1);
    assert!(inbox.contains(&env.pool, event).await.unwrap());
    env.cleanup().await;
}

#[tokio::test]
async fn racing_deliveries_apply_an_event_once() {
    let env = TestEnv::new().await;
    with_scores(&env).await;
    let inbox = Arc::new(Inbox::new("leaderboard"));
    let (event, student) = (Uuid::now_v7(), Uuid::now_v7());
    let deliveries: Vec<_> = (0..16)
        .map(|_| {
            let (inbox, pool) = (inbox.clone(), env.pool.clone());
            tokio::spawn(async move {
                inbox
                    .apply(&pool, event, |tx| Box::pin(add_point(tx, student)))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut applied_now = 0;
    for delivery in deliveries {
        if delivery.await.unwrap() == Applied::Now {
            applied_now += 1;
        }
    }
    assert_eq!(applied_now, 1);
    assert_eq!(points(&env, student).await, 1);
    env.cleanup().await;
}

#[tokio::test]
async fn old_entries_can_be_forgotten_by_time() {
    let env = TestEnv::new().await;
    with_scores(&env).await;
    let inbox = Inbox::new("leaderboard");
    let (event, student) = (Uuid::now_v7(), Uuid::now_v7());
    inbox
        .apply(&env.pool, event, |tx| Box::pin(add_point(tx, student)))
        .await
        .unwrap();
    let before_it = chrono_now(&env).await - std::time::Duration::from_secs(3600);
    assert_eq!(inbox.forget_before(&env.pool, before_it).await.unwrap(), 0);
    let after_it = chrono_now(&env).await + std::time::Duration::from_secs(1);
    assert_eq!(inbox.forget_before(&env.pool, after_it).await.unwrap(), 1);
    assert!(!inbox.contains(&env.pool, event).await.unwrap());
    env.cleanup().await;
}

/// The database's clock, which stamped the entry.
async fn chrono_now(
    env: &TestEnv,
) -> edupulse_events::chrono::DateTime<edupulse_events::chrono::Utc> {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_effect_that_swallows_a_failed_statement_is_refused_not_committed() {
    let env = TestEnv::new().await;
    with_scores(&env).await;
    let (inbox, event, student) = (Inbox::new("scores"), Uuid::now_v7(), Uuid::now_v7());
    let applied = inbox
        .apply(&env.pool, event, |tx| {
            Box::pin(async move {
                add_point(&mut *tx, student).await?;
                // Fails, and the effect carries on as if it had not.
                let _ = sqlx::query("SELECT 1 / 0").execute(&mut *tx).await;
                Ok::<_, sqlx::Error>(())
            })
        })
        .await;
    assert!(matches!(applied, Err(InboxError::Aborted)), "{applied:?}");
    assert_eq!(points(&env, student).await, 0);
    assert!(!inbox.contains(&env.pool, event).await.unwrap());
    env.cleanup().await;
}
