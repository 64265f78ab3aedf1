//! The inbox: a handler's database writes and the record that the event was applied commit
//! together, so applying an event twice is impossible rather than merely unlikely.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use thiserror::Error;
use uuid::Uuid;

use crate::database::DatabaseError;

use super::dialect::Dialect;

/// What [`Inbox::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The effect ran and committed with the event's inbox row.
    Now,
    /// The event was applied before (a redelivery, or a replay): the effect did not run.
    Already,
}

/// Why [`Inbox::apply`] did not apply an event. Nothing of the effect was committed.
#[derive(Debug, Error)]
pub enum InboxError<E> {
    /// The handler's effect failed; its writes were rolled back.
    #[error("the handler failed: {0}")]
    Handler(#[source] E),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] DatabaseError),
    /// A statement of the effect failed but the effect reported success: the transaction was
    /// aborted and could not commit.
    #[error(
        "a statement in the effect's transaction failed but the effect reported success; the \
         transaction could not commit"
    )]
    Aborted,
}

impl<E> From<sqlx::Error> for InboxError<E> {
    fn from(err: sqlx::Error) -> Self {
        InboxError::Database(err.into())
    }
}

/// One consumer's record of applied events (a read model, a projection, a side effect).
///
/// ```no_run
/// # async fn run(pool: edupulse_events::sqlx::PgPool, event_id: edupulse_events::Uuid) -> Result<(), Box<dyn std::error::Error>> {
/// use edupulse_events::consume::{Applied, Inbox};
///
/// let inbox = Inbox::new("leaderboard");
/// let applied = inbox
///     .apply(&pool, event_id, |tx| {
///         Box::pin(async move {
///             edupulse_events::sqlx::query("UPDATE leaderboard SET score = score + 1")
///                 .execute(&mut *tx)
///                 .await
///                 .map(|_| ())
///         })
///     })
///     .await?;
/// assert!(matches!(applied, Applied::Now | Applied::Already));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Inbox {
    consumer: String,
}

impl Inbox {
    /// The inbox of `consumer`: a stable name, since it is what makes a redelivery recognised.
    pub fn new(consumer: impl Into<String>) -> Self {
        Inbox {
            consumer: consumer.into(),
        }
    }

    /// The consumer's name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Runs `effect` for `event_id` in a transaction that also records the event as applied,
    /// unless it was applied before. Two deliveries racing each other apply it once: the
    /// second waits for the first's transaction, then finds the row (or, if the first failed,
    /// applies it itself).
    pub async fn apply<E, F>(
        &self,
        pool: &PgPool,
        event_id: Uuid,
        effect: F,
    ) -> Result<Applied, InboxError<E>>
    where
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<(), E>>,
    {
        let Some(mut tx) = self.begin(pool, event_id).await? else {
            return Ok(Applied::Already);
        };
        if let Err(err) = effect(&mut tx).await {
            tx.rollback().await?;
            return Err(InboxError::Handler(err));
        }
        // An effect that swallowed a failed statement left the transaction aborted, and
        // PostgreSQL answers COMMIT on it with a rollback that the driver reports as success.
        match <Postgres as Dialect>::still_open(&mut tx, &self.consumer, &[event_id]).await {
            Ok(true) => {}
            Ok(false) => {
                tx.rollback().await?;
                return Err(InboxError::Aborted);
            }
            Err(err) => {
                tx.rollback().await?;
                return Err(InboxError::Database(err.into()));
            }
        }
        tx.commit().await?;
        Ok(Applied::Now)
    }

    /// The transaction to apply `event_id` in, with the event already recorded in it; `None`
    /// when it was applied before. Commit it to apply the event, drop or roll it back to leave
    /// it for a later delivery. [`apply`](Self::apply) in two halves, for effects that borrow
    /// from the caller.
    pub async fn begin(
        &self,
        pool: &PgPool,
        event_id: Uuid,
    ) -> Result<Option<Transaction<'static, Postgres>>, DatabaseError> {
        let mut tx = pool.begin().await?;
        let recorded = sqlx::query(
            "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(&self.consumer)
        .bind(event_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if recorded == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        Ok(Some(tx))
    }

    /// Whether `event_id` was applied by this consumer.
    pub async fn contains(&self, pool: &PgPool, event_id: Uuid) -> Result<bool, DatabaseError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2)",
        )
        .bind(&self.consumer)
        .bind(event_id)
        .fetch_one(pool)
        .await
        .map_err(DatabaseError::from)
    }

    /// Forgets entries applied before `before`; returns how many. Only safe for events that
    /// can no longer be delivered again (older than the stream's redelivery horizon), and never
    /// while a projection is being rebuilt from the store.
    pub async fn forget_before(
        &self,
        pool: &PgPool,
        before: DateTime<Utc>,
    ) -> Result<u64, DatabaseError> {
        sqlx::query("DELETE FROM inbox WHERE consumer = $1 AND applied_at < $2")
            .bind(&self.consumer)
            .bind(before)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(DatabaseError::from)
    }
}
