//! Master-key rotation: every live data key re-wrapped under the new master key, so that once
//! the old one is retired every older copy of the key table (WAL archives, base backups, a
//! replica's history) opens nothing. The data keys themselves, and so every sealed value,
//! stay as they are.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::keystore::{KeyStore, KeyStoreError};

impl KeyStore {
    /// Re-wraps every live data key with the provider's current master key, then, once no
    /// older transaction can still read the old wrapped forms (at most 10 s), compacts the key
    /// table so they leave its files (a warning says when they could not). Returns how many
    /// keys were re-wrapped.
    ///
    /// The procedure, so that no key is ever wrapped by a master key about to be retired:
    /// 1. give every process a provider whose current master key is the new one and which
    ///    still unwraps with the old one
    ///    ([`LocalKeyProvider::with_previous`](super::LocalKeyProvider::with_previous));
    /// 2. run this (again, if a process of step 1 was late: it is safe to repeat);
    /// 3. remove the old master key everywhere.
    ///
    /// Keys are unwrapped and wrapped without holding any lock (a KMS call may be slow); each
    /// is then written back only if its row still holds what was read, so an erasure or a
    /// concurrent rotation in between is never undone.
    pub async fn rotate_master_key(&self, pool: &PgPool) -> Result<u64, KeyStoreError> {
        let rows: Vec<(Uuid, i32, Vec<u8>)> =
            sqlx::query_as("SELECT subject_id, key_version, wrapped FROM subject_keys")
                .fetch_all(pool)
                .await?;
        let mut subjects = Vec::with_capacity(rows.len());
        let mut versions = Vec::with_capacity(rows.len());
        let mut read = Vec::with_capacity(rows.len());
        let mut rewrapped = Vec::with_capacity(rows.len());
        for (subject, version, wrapped) in rows {
            let key_version =
                u32::try_from(version).expect("key_version >= 1 by the table's CHECK");
            let key = self.provider.unwrap(subject, key_version, &wrapped).await?;
            rewrapped.push(self.provider.wrap(subject, key_version, &key).await?);
            subjects.push(subject);
            versions.push(version);
            read.push(wrapped);
        }
        // Bind order: $1 subjects, $2 versions, $3 the wrapped forms read, $4 the new ones.
        let mut tx = pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE subject_keys k SET wrapped = w.rewrapped \
             FROM unnest($1::uuid[], $2::int[], $3::bytea[], $4::bytea[]) \
                  AS w(subject_id, key_version, read, rewrapped) \
             WHERE k.subject_id = w.subject_id AND k.key_version = w.key_version \
               AND k.wrapped = w.read",
        )
        .bind(&subjects)
        .bind(&versions)
        .bind(&read)
        .bind(&rewrapped)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let xid: String = sqlx::query_scalar("SELECT pg_current_xact_id()::xid::text")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        // Once nothing can still see the old wrapped forms: a rewrite keeps a row that an
        // older transaction (an autovacuum's analyze, a long report) may still read.
        if !self
            .compact_after_xid(pool, &xid, Duration::from_secs(10))
            .await?
        {
            tracing::warn!(
                "master key rotated, but an older transaction or a lock held the key table: \
                 the old wrapped keys stay in its files until the next compaction (they open \
                 only with the old master key)"
            );
        }
        Ok(updated)
    }
}
