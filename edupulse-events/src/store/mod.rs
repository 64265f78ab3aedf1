//! The PostgreSQL event store: an append-only log, optimistic concurrency per aggregate, and a
//! transactional outbox written in the caller's own transaction.

mod append;
mod backend;
mod error;
mod read;
mod schema_name;
pub(crate) mod sealing;

use std::sync::Arc;

use sqlx::PgPool;

use crate::envelope::Envelope;
use crate::privacy::KeyStore;

pub(crate) use append::single_aggregate;
#[doc(hidden)]
pub use append::statements as append_statements;
pub use append::{Appended, ExpectedVersion};
pub use backend::EventStore;
pub(crate) use error::Redacted;
pub use error::{DatabaseError, StoreError};
pub use read::{AggregateStream, LoadError, LogCursor, StoredEvent};
pub use schema_name::{SchemaNameError, in_schema};

/// The migrations in `migrations/`, embedded so an application can run them at start-up.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Handle on one store (one schema of one database).
///
/// The outbox is split into `partitions` by aggregate, so several relay processes can each lead
/// some partitions while every aggregate keeps one owner. The count is fixed for the life of a
/// store: changing it re-assigns aggregates while their events may be in flight.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    subject_prefix: String,
    partitions: u16,
    keys: Option<Arc<KeyStore>>,
}

impl Store {
    /// The default outbox partition count: enough for a handful of relay processes.
    pub const DEFAULT_PARTITIONS: u16 = 8;

    /// A store over `pool`, publishing under subjects `{subject_prefix}.{event subject}`.
    pub fn new(pool: PgPool, subject_prefix: impl Into<String>) -> Self {
        Store {
            pool,
            subject_prefix: subject_prefix.into(),
            partitions: Self::DEFAULT_PARTITIONS,
            keys: None,
        }
    }

    /// Seals every `#[event(pii)]` value with its owner's key from `keys` on append, and opens
    /// them on read. Without a key store, appending an event with PII fails with
    /// [`StoreError::NoKeyStore`]: nothing personal is ever written in clear.
    pub fn with_keys(mut self, keys: Arc<KeyStore>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The key store, if the store has one.
    pub fn keys(&self) -> Option<&Arc<KeyStore>> {
        self.keys.as_ref()
    }

    /// Opens the sealed PII values of events read elsewhere (from a JetStream message, say) in
    /// place: plaintext where the owner's key exists, the field's erased form where it was
    /// destroyed. Fails with [`StoreError::Privacy`] when a value does not open with its key.
    pub async fn open(&self, envelopes: &mut [Envelope]) -> Result<(), StoreError> {
        sealing::open_events(self.keys.as_deref(), &self.pool, envelopes).await
    }

    /// Sets the number of outbox partitions (1 to 32,767: they are stored as `smallint`).
    pub fn with_partitions(mut self, partitions: u16) -> Self {
        self.partitions = partitions.clamp(1, i16::MAX as u16);
        self
    }

    /// Runs the embedded migrations in the pool's schema, then records this store's outbox
    /// partition count, or checks it against the one recorded (see
    /// [`check_partitions`](Self::check_partitions)).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(StoreError::Migrate)?;
        let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        tracing::info!(
            schema_version = latest,
            partitions = self.partitions,
            "event store migrated"
        );
        self.check_partitions().await
    }

    /// Records the outbox partition count on first use, and refuses a count other than the
    /// one recorded: writers and relays that disagree on it strand events in partitions no
    /// relay leads. [`migrate`](Self::migrate) and the runtime's builder call this; call it
    /// at start-up when a process builds its store without them.
    pub async fn check_partitions(&self) -> Result<(), StoreError> {
        // Bind order: $1 this store's count.
        const RECORD: &str = "INSERT INTO store_settings (outbox_partitions) VALUES ($1) \
             ON CONFLICT (only_row) DO UPDATE SET outbox_partitions = \
             coalesce(store_settings.outbox_partitions, excluded.outbox_partitions) \
             RETURNING outbox_partitions";
        let configured = i16::try_from(self.partitions).expect("clamped to i16 by with_partitions");
        let recorded: i16 = sqlx::query_scalar(RECORD)
            .bind(configured)
            .fetch_one(&self.pool)
            .await?;
        if recorded != configured {
            return Err(StoreError::PartitionMismatch {
                recorded: recorded.unsigned_abs(),
                configured: self.partitions,
            });
        }
        Ok(())
    }

    /// The pool this store reads with.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction for appending or erasing. READ COMMITTED whatever the database's default,
    /// as data keys are taken only in it (see `KeyStoreError::IsolationLevel`); said in the
    /// `BEGIN` itself, so it costs no round trip.
    pub(crate) async fn begin_read_committed(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        Ok(self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await?)
    }

    /// The subject prefix, e.g. `edupulse`.
    pub fn subject_prefix(&self) -> &str {
        &self.subject_prefix
    }

    /// The number of outbox partitions.
    pub fn partitions(&self) -> u16 {
        self.partitions
    }

    /// The outbox partition of an aggregate: FNV-1a over the id, stable across processes and
    /// Rust versions (unlike std's hasher), since it is stored.
    pub fn partition_of(&self, aggregate_id: uuid::Uuid) -> u16 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in aggregate_id.as_bytes() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (hash % u64::from(self.partitions)) as u16
    }
}
