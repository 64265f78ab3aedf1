//! Erasing a data subject: destroy their keys, record the tombstone, and tell every other
//! process and read model through an event, all in one transaction. Nothing here scans the log:
//! the time it takes does not grow with the number of events stored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::envelope::{EncodeError, Envelope};
use crate::store::{ExpectedVersion, Store, StoreError};

use super::keystore::{KeyStore, KeyStoreError};

/// Published when a data subject's keys were destroyed: other processes evict the subject's
/// cached keys, read models delete their rows. It carries no personal data (not even the
/// reason, which stays in the store's tombstone), so it outlives the erasure it reports.
#[derive(Clone, PartialEq, Serialize, Deserialize, crate::DomainEvent)]
#[event(
    name = "privacy.subject_erased",
    aggregate = "data_subject",
    crate = "crate"
)]
pub struct DataSubjectErased {
    /// This erasure's own stream: the subject's id may also be an application aggregate's
    /// (a student), whose stream must not receive this event.
    #[event(aggregate_id)]
    pub erasure_id: Uuid,
    /// The erased subject.
    #[event(data_subject)]
    pub subject_id: Uuid,
    /// How many key versions were destroyed.
    pub keys_destroyed: u32,
    /// When.
    pub erased_at: DateTime<Utc>,
}

/// How far an erasure goes beyond destroying the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scrub {
    /// Destroy the keys only: every copy of the sealed values becomes unreadable at once.
    #[default]
    KeysOnly,
    /// Also overwrite the subject's sealed values in the log with the erased marker, so the
    /// ciphertext itself is gone from the live table. Costs a write per event of the subject
    /// (found through the data-subject index, never by scanning the log); old row versions
    /// stay on disk until PostgreSQL vacuums them, and copies elsewhere (the stream, backups)
    /// are unreadable through the destroyed keys, not rewritten.
    StoredCiphertext,
}

impl DataSubjectErased {
    /// The event recording that `subject` was erased now, in a stream of its own, with when.
    pub(crate) fn envelope(
        subject: Uuid,
        keys_destroyed: u32,
    ) -> Result<(Envelope, DateTime<Utc>), EncodeError> {
        let erased_at = Utc::now();
        let envelope = Envelope::new(&DataSubjectErased {
            erasure_id: Uuid::now_v7(),
            subject_id: subject,
            keys_destroyed,
            erased_at,
        })?;
        Ok((envelope, erased_at))
    }
}

/// What an erasure did, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureReceipt {
    /// The erased subject.
    pub subject: Uuid,
    /// The id of the [`DataSubjectErased`] event.
    pub event_id: Uuid,
    /// Its position in the log.
    pub position: i64,
    /// How many key versions were destroyed.
    pub keys_destroyed: u32,
    /// How many stored events had sealed values overwritten ([`Scrub::StoredCiphertext`]).
    pub events_scrubbed: u64,
    /// The subject had been erased before and had no key since: this erasure destroyed
    /// nothing new (it is still recorded, with its own event).
    pub already_erased: bool,
    /// The store's maintenance after the erasure completed, so the destroyed keys' bytes are
    /// gone from the key table's live files: PostgreSQL rewrote the key table
    /// ([`KeyStore::compact`]), SQLite zeroed the deleted rows (`secure_delete`) and emptied
    /// its write-ahead log with a truncating checkpoint. `false` when it could not (the
    /// table or the log was busy): the erasure itself holds, and the next one, or a
    /// [`KeyStore::compact`], finishes the job.
    pub key_bytes_purged: bool,
    /// When.
    pub erased_at: DateTime<Utc>,
}

// Replaces each top-level value sealed for $1 with the erased marker. The trigger of migration
// 5 lets this through only while `edupulse.scrub` is on, and only for the payload.
const SCRUB_SQL: &str = r#"
UPDATE events SET payload = (
    SELECT jsonb_object_agg(k, CASE WHEN split_part(v ->> '$pii', '.', 2) = $1::text
                                    THEN '{"$pii": "erased"}'::jsonb ELSE v END)
    FROM jsonb_each(payload) AS f(k, v))
WHERE data_subjects @> ARRAY[$1::uuid]
  AND EXISTS (SELECT 1 FROM jsonb_each(payload) AS f(k, v)
              WHERE split_part(v ->> '$pii', '.', 2) = $1::text)
"#;

/// How long the key table's compaction after an erasure waits, in all, for older transactions
/// and for the partition's lock.
const COMPACT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why an erasure did not happen (nothing was changed).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ErasureError {
    /// The keys could not be destroyed.
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
    /// The erasure event could not be appended.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The erasure event could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// There are no keys to destroy: the runtime was built without a key provider.
    #[error("this runtime has no key store (RuntimeBuilder::key_provider), so it cannot erase")]
    NoKeyStore,
}

impl KeyStore {
    /// Erases `subject` in `store`: destroys every key of theirs, records the tombstone with
    /// `reason` (kept in the store, never published), and appends a [`DataSubjectErased`]
    /// event, in one transaction. Waits for appends still holding the subject's key, so each
    /// either lands before the erasure (and is shredded with it) or is refused after it.
    ///
    /// `reason` is kept for the audit trail: a ticket or request reference, not personal data.
    pub async fn erase_subject(
        &self,
        store: &Store,
        subject: Uuid,
        reason: &str,
    ) -> Result<ErasureReceipt, ErasureError> {
        self.erase_subject_with(store, subject, reason, Scrub::KeysOnly)
            .await
    }

    /// [`erase_subject`](Self::erase_subject), optionally scrubbing the stored ciphertext too.
    #[tracing::instrument(name = "edupulse.erase", level = "info", skip_all)]
    pub async fn erase_subject_with(
        &self,
        store: &Store,
        subject: Uuid,
        reason: &str,
        scrub: Scrub,
    ) -> Result<ErasureReceipt, ErasureError> {
        let mut tx = store.begin_read_committed().await?;
        let destroyed = self.destroy(&mut tx, subject, reason).await?;
        // One key per version of one subject: never near u32::MAX.
        let keys_destroyed = u32::try_from(destroyed.keys).unwrap_or(u32::MAX);
        let events_scrubbed = match scrub {
            Scrub::KeysOnly => 0,
            Scrub::StoredCiphertext => {
                sqlx::query("SELECT set_config('edupulse.scrub', 'on', true)")
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
                let scrubbed = sqlx::query(SCRUB_SQL)
                    .bind(subject)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from)?
                    .rows_affected();
                sqlx::query("SELECT set_config('edupulse.scrub', 'off', true)")
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
                scrubbed
            }
        };
        let (envelope, erased_at) = DataSubjectErased::envelope(subject, keys_destroyed)?;
        let appended = store
            .append(
                &mut tx,
                ExpectedVersion::Any,
                std::slice::from_ref(&envelope),
            )
            .await?;
        let committed = tx.commit().await;
        // A read racing the erasure may have cached a key after `destroy` evicted it; and a
        // commit that reports a lost connection may still have happened: evict either way.
        self.evict(subject);
        committed.map_err(StoreError::from)?;
        ::metrics::counter!(crate::metrics::ERASURES).increment(1);
        let key_bytes_purged = match self
            .compact_after(store.pool(), &destroyed, COMPACT_WAIT)
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
        };
        Ok(ErasureReceipt {
            subject,
            event_id: envelope.id,
            position: appended.positions[0],
            keys_destroyed,
            events_scrubbed,
            already_erased: destroyed.already_erased,
            key_bytes_purged,
            erased_at,
        })
    }
}
