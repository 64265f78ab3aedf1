//! Store errors. They name aggregates, types and positions, never payload values.

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
        /// The version the aggregate had when the append was refused.
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
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A stored row could not be read back (a corrupt or foreign row).
    #[error("stored event at position {position} is unreadable: {reason}")]
    Corrupt {
        /// Its position.
        position: i64,
        /// What is wrong.
        reason: String,
    },
}
