//! Data keys in the embedded store: one per data subject and version, wrapped by the
//! [`KeyProvider`], destroyed on erasure. SQLite runs one writing transaction at a time, so an
//! append and an erasure of the same subject are ordered without locks of their own.

use std::collections::HashMap;

use sqlx::{SqliteConnection, SqlitePool};
use uuid::Uuid;

use crate::privacy::{DataKey, KeyProvider, KeyStoreError};
use crate::store::StoreError;

/// The subject's current key, created on first use; refused once the subject was erased.
pub(super) async fn key_for_append(
    conn: &mut SqliteConnection,
    provider: &dyn KeyProvider,
    subject: Uuid,
) -> Result<(u32, DataKey), StoreError> {
    let id = subject.to_string();
    let erased: Option<i64> =
        sqlx::query_scalar("SELECT last_key_version FROM erased_subjects WHERE subject_id = ?")
            .bind(&id)
            .fetch_optional(&mut *conn)
            .await?;
    if erased.is_some() {
        return Err(StoreError::SubjectErased { subject });
    }
    let current: Option<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT key_version, wrapped FROM subject_keys WHERE subject_id = ? \
         ORDER BY key_version DESC LIMIT 1",
    )
    .bind(&id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((version, wrapped)) = current {
        let version = version as u32;
        let key = provider
            .unwrap(subject, version, &wrapped)
            .await
            .map_err(KeyStoreError::from)?;
        return Ok((version, key));
    }
    let key = DataKey::generate();
    let wrapped = provider
        .wrap(subject, 1, &key)
        .await
        .map_err(KeyStoreError::from)?;
    sqlx::query("INSERT INTO subject_keys (subject_id, key_version, wrapped) VALUES (?, 1, ?)")
        .bind(&id)
        .bind(&wrapped)
        .execute(&mut *conn)
        .await?;
    Ok((1, key))
}

/// The keys that still exist among `wanted`; a destroyed one is absent.
pub(super) async fn keys_for_read(
    pool: &SqlitePool,
    provider: &dyn KeyProvider,
    wanted: &[(Uuid, u32)],
) -> Result<HashMap<(Uuid, u32), DataKey>, StoreError> {
    let mut keys = HashMap::new();
    for &(subject, version) in wanted {
        if keys.contains_key(&(subject, version)) {
            continue;
        }
        let wrapped: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT wrapped FROM subject_keys WHERE subject_id = ? AND key_version = ?",
        )
        .bind(subject.to_string())
        .bind(i64::from(version))
        .fetch_optional(pool)
        .await?;
        if let Some(wrapped) = wrapped {
            let key = provider
                .unwrap(subject, version, &wrapped)
                .await
                .map_err(KeyStoreError::from)?;
            keys.insert((subject, version), key);
        }
    }
    Ok(keys)
}

/// Destroys every key of `subject` and records the tombstone; returns how many were destroyed.
pub(super) async fn destroy(
    conn: &mut SqliteConnection,
    subject: Uuid,
    reason: &str,
) -> Result<u32, StoreError> {
    let id = subject.to_string();
    let last: Option<i64> =
        sqlx::query_scalar("SELECT max(key_version) FROM subject_keys WHERE subject_id = ?")
            .bind(&id)
            .fetch_one(&mut *conn)
            .await?;
    let destroyed = sqlx::query("DELETE FROM subject_keys WHERE subject_id = ?")
        .bind(&id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    sqlx::query(
        "INSERT INTO erased_subjects (subject_id, erased_at, reason, last_key_version) \
         VALUES (?, ?, ?, ?) ON CONFLICT (subject_id) DO UPDATE SET \
         erased_at = excluded.erased_at, reason = excluded.reason, \
         last_key_version = max(erased_subjects.last_key_version, excluded.last_key_version)",
    )
    .bind(&id)
    .bind(chrono::Utc::now())
    .bind(reason)
    .bind(last.unwrap_or(0))
    .execute(&mut *conn)
    .await?;
    Ok(destroyed as u32)
}
