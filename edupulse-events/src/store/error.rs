//! Store errors. They name aggregates, types and positions, never payload values.

use thiserror::Error;
use uuid::Uuid;

use crate::database::DatabaseError;
use crate::store::ExpectedVersion;

/// Why an append or a read failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another writer appended to the aggregate first. Roll back, reload, decide again.
    #[error(
        "concurrency conflict on aggregate {aggregate}: expected version {expected}, \
         but it is at {actual}"
    )]
    Conflict {
        /// The aggregate written to.
        aggregate: Uuid,
        /// What the writer expected.
        expected: ExpectedVersion,
        /// The version the aggregate had when the append was refused. After PostgreSQL
        /// refused the event by the unique key (a lost race, or `NoStream` on a stream that
        /// exists), it is read again outside the aborted transaction: the committed version,
        /// or at least the refused sequence when the winner is the caller's own transaction.
        actual: u64,
    },
    /// One append call may only write to one aggregate.
    #[error("one append holds events of aggregates {first} and {other}; append them separately")]
    MixedAggregates {
        /// The first event's aggregate.
        first: Uuid,
        /// Another aggregate in the same call.
        other: Uuid,
    },
    /// The event type is not in the registry, so its subject is unknown.
    #[error("event type `{0}` is not registered; derive DomainEvent for it")]
    Unregistered(String),
    /// The event cannot be stored as it is.
    #[error("event `{type_name}` cannot be stored: {reason}")]
    Unstorable {
        /// The event's type string.
        type_name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Data keys were needed (to seal an event's `#[event(pii)]` fields, to erase, to rotate)
    /// but the store was built without a key store. Nothing is written in clear instead.
    #[error(
        "{needed_for} needs data keys, but this store has no key store; give it one with \
         Store::with_keys, SqliteStore::with_keys or RuntimeBuilder::key_provider"
    )]
    NoKeyStore {
        /// What needed the keys: an event type with personal-data fields (its type string),
        /// an erasure, a master-key rotation.
        needed_for: String,
    },
    /// A `#[event(pii)]` field holds a value but its owner field holds no data-subject id.
    #[error(
        "event `{type_name}`: personal-data field `{field}` has a value but its owner `{owner}` \
         holds no data-subject id, so there is no key to seal it with"
    )]
    PiiWithoutOwner {
        /// The event's type string.
        type_name: String,
        /// The PII field's wire name.
        field: &'static str,
        /// The owner field's wire name.
        owner: &'static str,
    },
    /// The data subject was erased: no personal data of theirs may be stored again (unless
    /// the tombstone allows new keys).
    #[error("data subject {subject} was erased; no new personal data may be stored for it")]
    SubjectErased {
        /// The erased subject.
        subject: Uuid,
    },
    /// A data key could not be had (other than for an erased subject).
    #[error(transparent)]
    Keys(crate::privacy::KeyStoreError),
    /// A stored sealed value does not open: moved, altered, or malformed.
    #[error(transparent)]
    Privacy(#[from] crate::privacy::PrivacyError),
    /// The database failed.
    #[error("database error: {0}")]
    Database(DatabaseError),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// This process's outbox partition count differs from the one the store recorded.
    #[error(
        "this store's outbox has {recorded} partitions, but this process was configured with \
         {configured}; configure {recorded} (EDUPULSE_PARTITIONS, Store::with_partitions, \
         RuntimeBuilder::partitions): with different counts, events land in partitions no relay \
         leads"
    )]
    PartitionMismatch {
        /// The count recorded by the first process.
        recorded: u16,
        /// This process's count.
        configured: u16,
    },
    /// An expected version beyond what the log can hold (2^63 - 1): no aggregate has it.
    #[error("expected version {version} is beyond any aggregate's (at most 2^63 - 1)")]
    VersionOutOfRange {
        /// The version asked for.
        version: u64,
    },
    /// A stored row could not be read back (a corrupt or foreign row).
    #[error("stored event at position {position} is unreadable: {reason}")]
    Corrupt {
        /// Its position.
        position: i64,
        /// What is wrong.
        reason: String,
    },
}

impl From<crate::privacy::KeyStoreError> for StoreError {
    fn from(err: crate::privacy::KeyStoreError) -> Self {
        match err {
            crate::privacy::KeyStoreError::Database(db) => StoreError::Database(db),
            other => StoreError::Keys(other),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::Database(DatabaseError::from(err))
    }
}
