//! What the store contract needs of PostgreSQL (see `flow.rs`): its transactions, statements
//! and maintenance. The statements themselves are in `append.rs` and `read.rs`.

use std::time::Duration;

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::envelope::Envelope;
use crate::privacy::{Destroyed, KeyStore, SEALED_MARKER, erased_json};
use crate::store::flow::{Backend, Batch};
use crate::store::{Appended, LogCursor, Snapshot, Store, StoreError, StoredEvent, StoredSnapshot};

// Replaces each top-level value sealed for $1 (under the member $2, `SEALED_MARKER`, the
// subject second in its form) with the erased marker $3. The trigger of migration 5 lets this
// through only while `edupulse.scrub` is on, and only for the payload.
const SCRUB: &str = "
UPDATE events SET payload = (
    SELECT jsonb_object_agg(k, CASE WHEN split_part(v ->> $2, '.', 2) = $1::text
                                    THEN $3::jsonb ELSE v END)
    FROM jsonb_each(payload) AS f(k, v))
WHERE data_subjects @> ARRAY[$1::uuid]
  AND EXISTS (SELECT 1 FROM jsonb_each(payload) AS f(k, v)
              WHERE split_part(v ->> $2, '.', 2) = $1::text)
";

/// How long the key table's compaction after an erasure waits, in all, for older transactions
/// and for the partition's lock.
const COMPACT_WAIT: Duration = Duration::from_secs(2);

impl Backend for Store {
    type Db = Postgres;
    type Keys = KeyStore;

    fn parts(&self) -> (&PgPool, Option<&KeyStore>) {
        (&self.pool, self.keys.as_deref())
    }

    /// READ COMMITTED whatever the database's default, as data keys are taken only in it (see
    /// `KeyStoreError::IsolationLevel`); said in the `BEGIN` itself, so it costs no round trip.
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await?)
    }

    async fn insert(
        &self,
        tx: &mut PgConnection,
        batch: &Batch<'_>,
    ) -> Result<Appended, StoreError> {
        Store::insert(self, tx, batch.expected, &batch.events).await
    }

    async fn select_stream(
        &self,
        aggregate: Uuid,
        after: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        Store::select_stream(self, aggregate, after).await
    }

    async fn select_for_fold(
        &self,
        tx: &mut PgConnection,
        aggregate: Uuid,
        after: u64,
    ) -> Result<Vec<Envelope>, StoreError> {
        Store::select_for_fold(tx, aggregate, after).await
    }

    async fn select_snapshot(
        &self,
        conn: &mut PgConnection,
        aggregate: Uuid,
        aggregate_type: &str,
        state_version: u32,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        let row: Option<(i64, serde_json::Value)> = sqlx::query_as(
            "SELECT version, state FROM snapshots \
             WHERE aggregate_id = $1 AND aggregate_type = $2 AND state_version = $3",
        )
        .bind(aggregate)
        .bind(aggregate_type)
        .bind(i32::try_from(state_version).unwrap_or(i32::MAX))
        .fetch_optional(conn)
        .await?;
        Ok(row.and_then(|(version, state)| {
            Some(StoredSnapshot {
                version: u64::try_from(version).ok()?,
                state,
            })
        }))
    }

    /// In a transaction holding its new subjects' locks shared, as appends do: an erasure
    /// holds a subject's lock exclusively until it commits, so a save either lands before the
    /// erasure (whose delete then removes it) or sees its tombstone and saves nothing. The
    /// subjects already on the row it was read from were checked when they were saved, and an
    /// erasure of one of them deletes the row under its row lock: the save then finds no row
    /// to build on and saves nothing. A snapshot is never saved for an aggregate any of whose
    /// subjects was ever erased: it is folded from the events instead.
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let out_of_range = |version| StoreError::VersionOutOfRange { version };
        let version =
            i64::try_from(snapshot.version).map_err(|_| out_of_range(snapshot.version))?;
        let base = i64::try_from(snapshot.base).map_err(|_| out_of_range(snapshot.base))?;
        let mut subjects = snapshot.data_subjects.clone();
        subjects.sort_unstable();
        subjects.dedup();
        // READ COMMITTED whatever the database's default: the tombstone check must see an
        // erasure that committed while this waited for its lock.
        let mut tx = Backend::begin(self).await?;
        if !subjects.is_empty() {
            sqlx::query(
                "SELECT pg_advisory_xact_lock_shared( \
                 hashtext(current_schema() || ':edupulse-subject'), hashtext(s::text)) \
                 FROM unnest($1::uuid[]) AS s",
            )
            .bind(&subjects)
            .execute(&mut *tx)
            .await?;
        }
        let statement = if base == 0 {
            include_str!("sql/save_snapshot.sql")
        } else {
            include_str!("sql/save_snapshot_after.sql")
        };
        sqlx::query(statement)
            .bind(snapshot.aggregate_id)
            .bind(&snapshot.aggregate_type)
            .bind(i32::try_from(snapshot.state_version).unwrap_or(i32::MAX))
            .bind(version)
            .bind(&snapshot.state)
            .bind(&subjects)
            .bind(base)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn drop_snapshots(
        &self,
        tx: &mut PgConnection,
        subject: Uuid,
    ) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM snapshots WHERE data_subjects @> ARRAY[$1::uuid]")
                .bind(subject)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
        )
    }

    async fn select_after(
        &self,
        after: LogCursor,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        Store::select_after(self, after, limit).await
    }

    /// Old row versions stay on disk until PostgreSQL vacuums them; copies elsewhere (the
    /// stream, backups) are unreadable through the destroyed keys, not rewritten.
    async fn scrub(&self, tx: &mut PgConnection, subject: Uuid) -> Result<u64, StoreError> {
        sqlx::query("SELECT set_config('edupulse.scrub', 'on', true)")
            .execute(&mut *tx)
            .await?;
        let scrubbed = sqlx::query(SCRUB)
            .bind(subject)
            .bind(SEALED_MARKER)
            .bind(erased_json())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("SELECT set_config('edupulse.scrub', 'off', true)")
            .execute(&mut *tx)
            .await?;
        Ok(scrubbed)
    }

    /// Rewrites the key table's partitions that held the destroyed keys, once no older
    /// transaction can still see them.
    async fn purge_keys(&self, destroyed: &Destroyed) -> bool {
        let Some(keys) = self.keys.as_deref() else {
            return false;
        };
        match keys
            .compact_after(&self.pool, destroyed, COMPACT_WAIT)
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!(
                    "the erasure committed, but an older transaction or the partition's lock \
                     kept the key table from being compacted: the destroyed key's bytes stay in \
                     its files until the next compaction"
                );
                false
            }
            Err(err) => {
                tracing::warn!(error = %err, "the erasure committed, but the key table was not compacted");
                false
            }
        }
    }
}
