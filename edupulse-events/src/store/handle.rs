//! The PostgreSQL store's handle: its pool, subject prefix, outbox partitions and keys.

use std::sync::Arc;

use sqlx::PgPool;
use uuid::Uuid;

use crate::envelope::Envelope;
use crate::privacy::{ErasureReceipt, KeyStore, Scrub};
use crate::store::flow;
use crate::store::{
    AggregateStream, Appended, ErasureError, ExpectedVersion, LoadError, LogCursor, StoreError,
    StoredEvent,
};

/// The migrations in the crate's `migrations/`, embedded so an application can run them at
/// start-up (`sqlx migrate run --source edupulse-events/migrations` runs the same files).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Handle on one store (one schema of one database).
///
/// The outbox is split into `partitions` by aggregate, so several relay processes can each lead
/// some partitions while every aggregate keeps one owner. The count is fixed for the life of a
/// store: changing it re-assigns aggregates while their events may be in flight.
#[derive(Debug, Clone)]
pub struct Store {
    pub(super) pool: PgPool,
    pub(super) subject_prefix: String,
    pub(super) partitions: u16,
    pub(super) keys: Option<Arc<KeyStore>>,
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
    pub async fn unseal<E: AsMut<Envelope>>(&self, envelopes: &mut [E]) -> Result<(), StoreError> {
        flow::unseal(self, envelopes).await
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
    pub fn partition_of(&self, aggregate_id: Uuid) -> u16 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in aggregate_id.as_bytes() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        u16::try_from(hash % u64::from(self.partitions))
            .expect("a remainder of a u16 count fits in u16")
    }

    /// Appends events of one aggregate inside the caller's transaction, so they commit or roll
    /// back with the caller's own rows. Each event also gets an outbox row for the relay.
    ///
    /// On [`StoreError::Conflict`] roll the transaction back: after a lost race, and whenever a
    /// [`ExpectedVersion::NoStream`] stream already exists, PostgreSQL has already aborted it
    /// (the log's unique key refused the event), and the version the conflict names is read on
    /// another connection of the store's pool.
    #[tracing::instrument(name = "edupulse.append", level = "debug", skip_all, fields(events = events.len(), aggregate = ?events.first().map(|e| e.aggregate_id)))]
    pub async fn append(
        &self,
        tx: &mut sqlx::PgConnection,
        expected: ExpectedVersion,
        events: &[Envelope],
    ) -> Result<Appended, StoreError> {
        flow::append(self, tx, expected, events).await
    }

    /// Appends in a transaction of its own, committed before returning: for events that go
    /// with no business rows of the caller's.
    pub async fn append_committed(
        &self,
        expected: ExpectedVersion,
        events: &[Envelope],
    ) -> Result<Appended, StoreError> {
        flow::append_committed(self, expected, events).await
    }

    /// Every stored event of one aggregate, in sequence order, undecoded, PII opened (see
    /// [`Store::unseal`]).
    pub async fn read_stream(&self, aggregate_id: Uuid) -> Result<Vec<StoredEvent>, StoreError> {
        flow::read_stream(self, aggregate_id, 0).await
    }

    /// One aggregate's events decoded through the global registry (old versions upcast), with
    /// the version to expect when appending next.
    pub async fn load(&self, aggregate_id: Uuid) -> Result<AggregateStream, LoadError> {
        flow::load(self, aggregate_id, 0).await
    }

    /// Up to `limit` committed events after `after`, in commit-safe order, PII opened. Events
    /// of transactions still running (and of any transaction younger than the oldest running
    /// one) wait for the next call; none is ever skipped.
    pub async fn read_all(
        &self,
        after: LogCursor,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        flow::read_all(self, after, limit).await
    }

    /// Erases `subject`: destroys every key of theirs, records the tombstone with `reason`
    /// (kept in the store, never published), optionally scrubs the stored ciphertext, and
    /// appends a [`DataSubjectErased`](crate::privacy::DataSubjectErased) event, in one
    /// transaction. Waits for appends still holding the subject's key, so each either lands
    /// before the erasure (and is shredded with it) or is refused after it. Then rewrites the
    /// key table's files without the destroyed keys (see [`ErasureReceipt::key_bytes_purged`]).
    ///
    /// `reason` is kept for the audit trail: a ticket or request reference, not personal data.
    #[tracing::instrument(name = "edupulse.erase", level = "info", skip_all)]
    pub async fn erase_subject(
        &self,
        subject: Uuid,
        reason: &str,
        scrub: Scrub,
    ) -> Result<ErasureReceipt, ErasureError> {
        flow::erase_subject(self, subject, reason, scrub).await
    }

    /// Lets an erased subject have personal data again (a person who comes back under the
    /// same id): the next append creates a key of a version above every destroyed one, so
    /// nothing sealed before the erasure ever opens again. `false` when the subject was never
    /// erased.
    pub async fn allow_new_keys(&self, subject: Uuid) -> Result<bool, StoreError> {
        flow::allow_new_keys(self, subject).await
    }
}
