//! What every event store promises, whichever database keeps it: the trait the PostgreSQL
//! [`Store`] and the embedded [`SqliteStore`](crate::embedded::SqliteStore) implement, so
//! domain code and its tests can be written once.

use std::future::Future;

use uuid::Uuid;

use crate::envelope::Envelope;
use crate::privacy::{ErasureError, ErasureReceipt, Scrub};
use crate::store::{
    AggregateStream, Appended, ExpectedVersion, LoadError, LogCursor, Store, StoreError,
    StoredEvent,
};

/// An event store: appends inside the caller's transaction with optimistic concurrency, reads
/// back decoded, erases data subjects.
pub trait EventStore: Send + Sync {
    /// The caller's transaction, in which its own rows and the events commit together.
    type Tx: Send;

    /// Begins a transaction suited to appending (PostgreSQL: READ COMMITTED; SQLite:
    /// IMMEDIATE).
    fn begin(&self) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send;

    /// Appends events of one aggregate in `tx`; see [`Store::append`].
    fn append(
        &self,
        tx: &mut Self::Tx,
        expected: ExpectedVersion,
        events: &[Envelope],
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send;

    /// Commits `tx`.
    fn commit(tx: Self::Tx) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Rolls `tx` back: nothing of it is stored or relayed.
    fn rollback(tx: Self::Tx) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// One aggregate's events decoded (old versions upcast), with its version.
    fn load(
        &self,
        aggregate_id: Uuid,
    ) -> impl Future<Output = Result<AggregateStream, LoadError>> + Send;

    /// Up to `limit` committed events after `after`, never skipping one that commits late.
    fn read_all(
        &self,
        after: LogCursor,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// Erases a data subject by destroying their keys, with `reason` in the audit trail.
    fn erase_subject(
        &self,
        subject: Uuid,
        reason: &str,
    ) -> impl Future<Output = Result<ErasureReceipt, ErasureError>> + Send;
}

impl EventStore for Store {
    type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

    async fn begin(&self) -> Result<Self::Tx, StoreError> {
        self.begin_read_committed().await
    }

    async fn append(
        &self,
        tx: &mut Self::Tx,
        expected: ExpectedVersion,
        events: &[Envelope],
    ) -> Result<Appended, StoreError> {
        Store::append(self, tx, expected, events).await
    }

    async fn commit(tx: Self::Tx) -> Result<(), StoreError> {
        Ok(tx.commit().await?)
    }

    async fn rollback(tx: Self::Tx) -> Result<(), StoreError> {
        Ok(tx.rollback().await?)
    }

    async fn load(&self, aggregate_id: Uuid) -> Result<AggregateStream, LoadError> {
        Store::load(self, aggregate_id).await
    }

    async fn read_all(&self, after: LogCursor, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        Store::read_all(self, after, limit).await
    }

    async fn erase_subject(
        &self,
        subject: Uuid,
        reason: &str,
    ) -> Result<ErasureReceipt, ErasureError> {
        let keys = self.keys().ok_or(ErasureError::NoKeyStore)?;
        keys.erase_subject_with(self, subject, reason, Scrub::KeysOnly)
            .await
    }
}

impl EventStore for crate::embedded::SqliteStore {
    type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

    async fn begin(&self) -> Result<Self::Tx, StoreError> {
        crate::embedded::SqliteStore::begin(self).await
    }

    async fn append(
        &self,
        tx: &mut Self::Tx,
        expected: ExpectedVersion,
        events: &[Envelope],
    ) -> Result<Appended, StoreError> {
        crate::embedded::SqliteStore::append(self, tx, expected, events).await
    }

    async fn commit(tx: Self::Tx) -> Result<(), StoreError> {
        Ok(tx.commit().await?)
    }

    async fn rollback(tx: Self::Tx) -> Result<(), StoreError> {
        Ok(tx.rollback().await?)
    }

    async fn load(&self, aggregate_id: Uuid) -> Result<AggregateStream, LoadError> {
        crate::embedded::SqliteStore::load(self, aggregate_id).await
    }

    async fn read_all(&self, after: LogCursor, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        crate::embedded::SqliteStore::read_all(self, after, limit).await
    }

    async fn erase_subject(
        &self,
        subject: Uuid,
        reason: &str,
    ) -> Result<ErasureReceipt, ErasureError> {
        crate::embedded::SqliteStore::erase_subject(self, subject, reason).await
    }
}
