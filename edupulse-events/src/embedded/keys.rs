//! Data keys in the embedded store: one per data subject and version, wrapped by the
//! [`KeyProvider`], destroyed on erasure. SQLite runs one writing transaction at a time, so an
//! append and an erasure of the same subject are ordered without locks of their own.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::{Sqlite, SqliteConnection, SqlitePool};
use uuid::Uuid;

use crate::privacy::{DataKey, Destroyed, KeyProvider, KeyStoreError};
use crate::store::StoreError;
use crate::store::flow::KeySource;
use crate::store::sealing::ReadKeys;

/// The embedded store's key source: keys in its own tables, wrapped by `provider`.
#[derive(Clone)]
pub struct SqliteKeys {
    pub(super) provider: Arc<dyn KeyProvider>,
}

/// A subject's tombstone: whether new keys are allowed again, and the last destroyed version.
type Tombstone = (bool, i64);

/// A key version as SQLite returns it, checked against what a key version can be.
fn key_version(version: i64) -> Result<u32, StoreError> {
    u32::try_from(version).map_err(|_| StoreError::Corrupt {
        position: 0,
        reason: "a key row's version is out of range".into(),
    })
}

async fn tombstone(
    conn: &mut SqliteConnection,
    subject: &str,
) -> Result<Option<Tombstone>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT allow_new_keys, last_key_version FROM erased_subjects WHERE subject_id = ?",
    )
    .bind(subject)
    .fetch_optional(conn)
    .await?)
}

impl KeySource<Sqlite> for SqliteKeys {
    /// The subject's current key, created on first use; refused once the subject was erased,
    /// unless new keys were allowed since (then a version above every destroyed one).
    async fn key_for_append(
        &self,
        conn: &mut SqliteConnection,
        subject: Uuid,
    ) -> Result<(u32, DataKey), StoreError> {
        let id = subject.to_string();
        let erased = tombstone(&mut *conn, &id).await?;
        let current: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT key_version, wrapped FROM subject_keys WHERE subject_id = ? \
             ORDER BY key_version DESC LIMIT 1",
        )
        .bind(&id)
        .fetch_optional(&mut *conn)
        .await?;
        let version = match (current, erased) {
            (_, Some((false, _))) => return Err(StoreError::SubjectErased { subject }),
            (Some((version, _)), Some((true, last))) if version <= last => {
                return Err(StoreError::SubjectErased { subject });
            }
            (Some((version, wrapped)), _) => {
                let version = key_version(version)?;
                let key = self
                    .provider
                    .unwrap(subject, version, &wrapped)
                    .await
                    .map_err(KeyStoreError::from)?;
                return Ok((version, key));
            }
            (None, Some((true, last))) => key_version(last + 1)?,
            (None, None) => 1,
        };
        let key = DataKey::generate();
        let wrapped = self
            .provider
            .wrap(subject, version, &key)
            .await
            .map_err(KeyStoreError::from)?;
        sqlx::query("INSERT INTO subject_keys (subject_id, key_version, wrapped) VALUES (?, ?, ?)")
            .bind(&id)
            .bind(i64::from(version))
            .bind(&wrapped)
            .execute(&mut *conn)
            .await?;
        Ok((version, key))
    }

    /// The keys among `wanted`: `Some` key, or `None` where the subject's tombstone covers the
    /// version (every version while no new keys are allowed; those up to the last destroyed
    /// one after). A key neither there nor destroyed is absent from the map.
    async fn keys_for_read(
        &self,
        pool: &SqlitePool,
        wanted: &[(Uuid, u32)],
    ) -> Result<ReadKeys, StoreError> {
        let mut conn = pool.acquire().await?;
        self.keys_for_read_in(&mut conn, pool, wanted).await
    }

    /// On the reading transaction's connection: the in-memory store has no other.
    async fn keys_for_read_in(
        &self,
        conn: &mut SqliteConnection,
        _pool: &SqlitePool,
        wanted: &[(Uuid, u32)],
    ) -> Result<ReadKeys, StoreError> {
        let mut keys = HashMap::new();
        for &(subject, version) in wanted {
            if keys.contains_key(&(subject, version)) {
                continue;
            }
            // One statement: the key and the tombstone from one snapshot.
            let (wrapped, erased): (Option<Vec<u8>>, bool) = sqlx::query_as(
                "SELECT (SELECT wrapped FROM subject_keys WHERE subject_id = ?1 AND key_version = ?2), \
                 EXISTS (SELECT 1 FROM erased_subjects WHERE subject_id = ?1 \
                         AND (NOT allow_new_keys OR last_key_version >= ?2))",
            )
            .bind(subject.to_string())
            .bind(i64::from(version))
            .fetch_one(&mut *conn)
            .await?;
            match wrapped {
                Some(wrapped) => {
                    let key = self
                        .provider
                        .unwrap(subject, version, &wrapped)
                        .await
                        .map_err(KeyStoreError::from)?;
                    keys.insert((subject, version), Some(key));
                }
                None if erased => {
                    keys.insert((subject, version), None);
                }
                None => {}
            }
        }
        Ok(keys)
    }

    /// Destroys every key of `subject` and records the tombstone. The deleted rows are zeroed
    /// in place (every connection runs with `secure_delete`); the copies in the write-ahead log
    /// go with the checkpoint after the commit.
    async fn destroy(
        &self,
        conn: &mut SqliteConnection,
        subject: Uuid,
        reason: &str,
    ) -> Result<Destroyed, StoreError> {
        let id = subject.to_string();
        let erased_before = tombstone(&mut *conn, &id).await?.is_some();
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
             erased_at = excluded.erased_at, reason = excluded.reason, allow_new_keys = 0, \
             last_key_version = max(erased_subjects.last_key_version, excluded.last_key_version)",
        )
        .bind(&id)
        .bind(chrono::Utc::now())
        .bind(reason)
        .bind(last.unwrap_or(0))
        .execute(&mut *conn)
        .await?;
        Ok(Destroyed::new(destroyed, erased_before && destroyed == 0))
    }

    async fn allow_new_keys(&self, pool: &SqlitePool, subject: Uuid) -> Result<bool, StoreError> {
        let updated =
            sqlx::query("UPDATE erased_subjects SET allow_new_keys = 1 WHERE subject_id = ?")
                .bind(subject.to_string())
                .execute(pool)
                .await?
                .rows_affected();
        Ok(updated == 1)
    }

    /// Nothing is cached here: every read unwraps.
    fn evict(&self, _subject: Uuid) {}
}

/// Re-wraps every data key with `provider`'s current master key inside `conn`'s
/// transaction; returns how many. The old wrapped forms are zeroed in place
/// (`secure_delete`); the write-ahead log's copies go with the checkpoint after the commit.
pub(super) async fn rewrap_all(
    conn: &mut SqliteConnection,
    provider: &dyn KeyProvider,
) -> Result<u64, StoreError> {
    let rows: Vec<(String, i64, Vec<u8>)> =
        sqlx::query_as("SELECT subject_id, key_version, wrapped FROM subject_keys")
            .fetch_all(&mut *conn)
            .await?;
    let count = u64::try_from(rows.len()).unwrap_or(u64::MAX);
    for (id, version, wrapped) in rows {
        let subject = Uuid::parse_str(&id).map_err(|_| StoreError::Corrupt {
            position: 0,
            reason: "a key row's subject id is not a UUID".into(),
        })?;
        let key_version = key_version(version)?;
        let key = provider
            .unwrap(subject, key_version, &wrapped)
            .await
            .map_err(KeyStoreError::from)?;
        let rewrapped = provider
            .wrap(subject, key_version, &key)
            .await
            .map_err(KeyStoreError::from)?;
        sqlx::query("UPDATE subject_keys SET wrapped = ? WHERE subject_id = ? AND key_version = ?")
            .bind(rewrapped)
            .bind(&id)
            .bind(version)
            .execute(&mut *conn)
            .await?;
    }
    Ok(count)
}

/// Moves the write-ahead log into the database file and truncates it to nothing, so the
/// page images that still hold destroyed keys leave the disk's live files. Waits (the pool's
/// busy timeout) for readers of older snapshots; `false` when some still held the log.
pub(super) async fn purge_log(pool: &SqlitePool) -> Result<bool, StoreError> {
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(pool)
        .await?;
    Ok(busy == 0)
}
