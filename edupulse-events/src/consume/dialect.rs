//! What a consumer's database provides: its SQL for the inbox, the check that an erasure
//! event is one the store wrote, and dead letters. PostgreSQL backs the JetStream
//! [`Subscriber`](super::Subscriber); SQLite the in-process bus's
//! [`BusSubscriber`](super::BusSubscriber). Everything else (handlers, batching, retries,
//! setting aside) is written once over this trait.

use std::collections::HashSet;

use futures::future::BoxFuture;
use sqlx::Database;
#[cfg(feature = "postgres")]
use sqlx::Postgres;
#[cfg(feature = "sqlite")]
use sqlx::Sqlite;
use uuid::Uuid;

/// A database a subscriber keeps its inbox in. Public in a private module: nothing outside the
/// crate can name or implement it.
// With PostgreSQL alone, only the `Inbox` uses it.
#[cfg_attr(not(any(feature = "sqlite", feature = "nats")), allow(dead_code))]
pub trait Dialect: Database {
    /// Records `event_ids` as applied by `consumer` in the transaction of `conn`; returns
    /// those not recorded before (a concurrent transaction recording one of them is waited
    /// for).
    fn record<'c>(
        conn: &'c mut Self::Connection,
        consumer: &'c str,
        event_ids: &'c [Uuid],
    ) -> BoxFuture<'c, Result<HashSet<Uuid>, sqlx::Error>>;

    /// Whether the transaction can still commit what it recorded: `false` when a statement
    /// whose error nobody reported ended it (PostgreSQL aborts the transaction; SQLite rolls
    /// some failures back whole, after which `recorded` is no longer in the inbox). Fails when
    /// the database does.
    fn still_open<'c>(
        conn: &'c mut Self::Connection,
        consumer: &'c str,
        recorded: &'c [Uuid],
    ) -> BoxFuture<'c, Result<bool, sqlx::Error>>;

    /// Whether the store wrote an erasure event `event_id` for `subject`, with the erasure's
    /// record beside it: a forged erasure event is not believed.
    fn confirmed_erasure(
        conn: &mut Self::Connection,
        event_id: Uuid,
        subject: Uuid,
    ) -> BoxFuture<'_, Result<bool, sqlx::Error>>;
}

#[cfg(feature = "postgres")]
impl Dialect for Postgres {
    /// Ids are inserted in sorted order, so two batches sharing ids cannot deadlock.
    fn record<'c>(
        conn: &'c mut sqlx::PgConnection,
        consumer: &'c str,
        event_ids: &'c [Uuid],
    ) -> BoxFuture<'c, Result<HashSet<Uuid>, sqlx::Error>> {
        Box::pin(async move {
            let fresh: Vec<Uuid> = sqlx::query_scalar(
                "INSERT INTO inbox (consumer, event_id) \
                 SELECT $1, id FROM unnest($2::uuid[]) AS id ORDER BY id \
                 ON CONFLICT DO NOTHING RETURNING event_id",
            )
            .bind(consumer)
            .bind(event_ids)
            .fetch_all(conn)
            .await?;
            Ok(fresh.into_iter().collect())
        })
    }

    /// An aborted transaction refuses every statement (SQLSTATE 25P02).
    fn still_open<'c>(
        conn: &'c mut sqlx::PgConnection,
        _consumer: &'c str,
        _recorded: &'c [Uuid],
    ) -> BoxFuture<'c, Result<bool, sqlx::Error>> {
        Box::pin(async move {
            match sqlx::query("SELECT 1").execute(conn).await {
                Ok(_) => Ok(true),
                Err(err)
                    if err
                        .as_database_error()
                        .and_then(sqlx::error::DatabaseError::code)
                        .as_deref()
                        == Some("25P02") =>
                {
                    Ok(false)
                }
                Err(err) => Err(err),
            }
        })
    }

    fn confirmed_erasure(
        conn: &mut sqlx::PgConnection,
        event_id: Uuid,
        subject: Uuid,
    ) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
        Box::pin(async move {
            let confirmed: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM events e \
                 JOIN erased_subjects t ON t.subject_id = $2 \
                 WHERE e.event_id = $1 AND e.event_type = 'privacy.subject_erased' \
                   AND e.data_subjects @> ARRAY[$2::uuid]",
            )
            .bind(event_id)
            .bind(subject)
            .fetch_optional(conn)
            .await?;
            Ok(confirmed.is_some())
        })
    }
}

#[cfg(feature = "sqlite")]
impl Dialect for Sqlite {
    /// SQLite runs one writing transaction at a time: no order to keep against deadlocks.
    fn record<'c>(
        conn: &'c mut sqlx::SqliteConnection,
        consumer: &'c str,
        event_ids: &'c [Uuid],
    ) -> BoxFuture<'c, Result<HashSet<Uuid>, sqlx::Error>> {
        Box::pin(async move {
            let mut fresh = HashSet::with_capacity(event_ids.len());
            for &id in event_ids {
                let recorded = sqlx::query(
                    "INSERT OR IGNORE INTO inbox (consumer, event_id, applied_at) \
                     VALUES (?, ?, ?)",
                )
                .bind(consumer)
                .bind(id.to_string())
                .bind(chrono::Utc::now())
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if recorded == 1 {
                    fresh.insert(id);
                }
            }
            Ok(fresh)
        })
    }

    /// SQLite never refuses statements after an error, but rolls the whole transaction back
    /// on some (a full disk, I/O errors): then the rows recorded are gone.
    fn still_open<'c>(
        conn: &'c mut sqlx::SqliteConnection,
        consumer: &'c str,
        recorded: &'c [Uuid],
    ) -> BoxFuture<'c, Result<bool, sqlx::Error>> {
        Box::pin(async move {
            for id in recorded {
                let there: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = ? AND event_id = ?)",
                )
                .bind(consumer)
                .bind(id.to_string())
                .fetch_one(&mut *conn)
                .await?;
                if !there {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    fn confirmed_erasure(
        conn: &mut sqlx::SqliteConnection,
        event_id: Uuid,
        subject: Uuid,
    ) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
        Box::pin(async move {
            let confirmed: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM events e \
                 JOIN erased_subjects t ON t.subject_id = ?2 \
                 JOIN event_subjects s ON s.position = e.position AND s.subject_id = ?2 \
                 WHERE e.event_id = ?1 AND e.event_type = 'privacy.subject_erased'",
            )
            .bind(event_id.to_string())
            .bind(subject.to_string())
            .fetch_optional(conn)
            .await?;
            Ok(confirmed.is_some())
        })
    }
}
