//! Store errors. They name aggregates, types and positions, never payload values.

use std::fmt;

use thiserror::Error;
use uuid::Uuid;

use crate::store::append::ExpectedVersion;

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
    /// The event has `#[event(pii)]` fields but the store was built without a key store, so
    /// they cannot be sealed. Nothing is written in clear instead.
    #[error(
        "event `{type_name}` has personal-data fields but this store has no key store; \
         give it one with Store::with_keys (or RuntimeBuilder::key_provider)"
    )]
    NoKeyStore {
        /// The event's type string.
        type_name: String,
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
            crate::privacy::KeyStoreError::SubjectErased { subject } => {
                StoreError::SubjectErased { subject }
            }
            crate::privacy::KeyStoreError::Database(db) => StoreError::Database(db),
            other => StoreError::Keys(other),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::Database(DatabaseError(err))
    }
}

/// A failure of PostgreSQL or of the connection to it.
///
/// Shown by its SQLSTATE and the schema objects involved, never by PostgreSQL's own text: its
/// message and DETAIL quote the offending values (`invalid input syntax for type uuid:
/// "<value>"`, `Key (...)=(<values>)`), and values are where personal data lives. Call
/// [`DatabaseError::into_inner`] for the driver's full error where that is acceptable.
pub struct DatabaseError(sqlx::Error);

impl From<sqlx::Error> for DatabaseError {
    fn from(err: sqlx::Error) -> Self {
        DatabaseError(err)
    }
}

impl DatabaseError {
    /// The SQLSTATE, for errors the server reported.
    pub fn code(&self) -> Option<String> {
        self.0
            .as_database_error()
            .and_then(|db| db.code())
            .map(|code| code.into_owned())
    }

    /// The constraint that refused the statement, if any.
    pub fn constraint(&self) -> Option<&str> {
        self.0.as_database_error().and_then(|db| db.constraint())
    }

    /// The driver's error, with everything the server said.
    pub fn into_inner(self) -> sqlx::Error {
        self.0
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Redacted(&self.0), f)
    }
}

/// Shows a driver error the way [`DatabaseError`] does, without the values the server quoted,
/// for errors that are only borrowed (a handler's, before it is stored as a reason).
pub(crate) struct Redacted<'a>(pub(crate) &'a sqlx::Error);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(db) = self.0.as_database_error() else {
            // Connection, pool and protocol failures carry no row data.
            return fmt::Display::fmt(self.0, f);
        };
        write!(
            f,
            "the database refused the statement (SQLSTATE {})",
            db.code().as_deref().unwrap_or("unknown")
        )?;
        if let Some(table) = db.table() {
            write!(f, " on table {table}")?;
        }
        if let Some(constraint) = db.constraint() {
            write!(f, ", constraint {constraint}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseError")
            .field(&format_args!("{self}"))
            .finish()
    }
}

impl std::error::Error for DatabaseError {}
