//! What an erasure records and reports: the [`DataSubjectErased`] event every other process
//! and read model learns it from, how far it goes ([`Scrub`]), and its [`ErasureReceipt`]. The
//! erasure itself is the store's (`erase_subject` on either store): it destroys keys, which
//! live beneath the store, and appends to the log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
    /// ([`KeyStore::compact`](super::KeyStore::compact)), SQLite zeroed the deleted rows (`secure_delete`) and emptied
    /// its write-ahead log with a truncating checkpoint. `false` when it could not (the
    /// table or the log was busy): the erasure itself holds, and the next one, or a
    /// [`KeyStore::compact`](super::KeyStore::compact), finishes the job.
    pub key_bytes_purged: bool,
    /// When.
    pub erased_at: DateTime<Utc>,
}
