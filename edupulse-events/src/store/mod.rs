//! The event store: an append-only log, optimistic concurrency per aggregate, and a
//! transactional outbox written in the caller's own transaction.

// The contract both stores keep, and the one flow that keeps it.
mod backend;
mod erase;
mod error;
pub(crate) mod flow;
mod read;
pub(crate) mod sealing;
mod snapshot;
mod version;

// PostgreSQL's side of it.
#[cfg(feature = "postgres")]
mod append;
#[cfg(feature = "postgres")]
mod handle;
#[cfg(feature = "postgres")]
mod keys;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
pub(crate) mod schema_name;

pub use crate::database::DatabaseError;
#[cfg(feature = "postgres")]
#[doc(hidden)]
pub use append::statements as append_statements;
pub use backend::EventStore;
pub use erase::ErasureError;
pub use error::StoreError;
#[cfg(feature = "postgres")]
pub use handle::{MIGRATOR, Store};
pub use read::{AggregateStream, LoadError, LogCursor, StoredEvent};
#[cfg(feature = "sqlite")]
pub(crate) use read::{FoldRow, LogRow, corrupt};
#[cfg(feature = "postgres")]
pub use schema_name::{SchemaError, SchemaNameError, in_schema, pool_in_schema};
pub use snapshot::{Snapshot, StoredSnapshot};
pub(crate) use version::single_aggregate;
pub use version::{Appended, ExpectedVersion};
