//! What both key tables (PostgreSQL's `KeyStore`, the embedded store's SQLite keys) report:
//! why a key could not be had, and what destroying a subject's keys did.

use thiserror::Error;
use uuid::Uuid;

use crate::database::DatabaseError;

use super::error::KeyError;

/// Why a key could not be had.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// The subject has no key of this version and no erasure record says it was destroyed
    /// (a wrong schema, a key table restored from an older backup, a forged value).
    #[error(
        "subject {subject} has no key of version {key_version} and no record of an erasure; \
         check that the store points at the right schema and that the key table was not \
         restored from an older backup"
    )]
    KeyMissing {
        /// The data subject.
        subject: Uuid,
        /// The key version asked for.
        key_version: u32,
    },
    /// Keys are taken and destroyed only in READ COMMITTED transactions.
    #[error(
        "personal data is appended and erased only in READ COMMITTED transactions (PostgreSQL's \
         default); this one is {isolation}"
    )]
    IsolationLevel {
        /// The transaction's level, as PostgreSQL names it.
        isolation: String,
    },
    /// A key could not be wrapped or unwrapped.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] DatabaseError),
}

impl From<sqlx::Error> for KeyStoreError {
    fn from(err: sqlx::Error) -> Self {
        KeyStoreError::Database(err.into())
    }
}

/// What a store's key destruction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destroyed {
    /// How many key versions were destroyed.
    pub keys: u64,
    /// The subject was erased before and had no key since: nothing new was destroyed.
    pub already_erased: bool,
    /// The key table's partitions the keys were deleted from, as quoted `schema.table`.
    pub(crate) relations: Vec<String>,
    /// The destroying transaction's id, on PostgreSQL.
    pub(crate) xid: Option<String>,
}

impl Destroyed {
    /// For a store whose key table is one file (no partitions to name).
    #[cfg(feature = "sqlite")]
    pub(crate) fn new(keys: u64, already_erased: bool) -> Self {
        Destroyed {
            keys,
            already_erased,
            relations: Vec::new(),
            xid: None,
        }
    }
}
