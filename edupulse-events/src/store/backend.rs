//! What every event store promises, whichever database keeps it: the trait the PostgreSQL
//! [`Store`](crate::store::Store) and the embedded
//! [`SqliteStore`](crate::embedded::SqliteStore) implement, so domain code and its tests can be
//! written once. Both implement it through the one flow of `flow.rs`.

use std::future::Future;

use uuid::Uuid;

use crate::envelope::Envelope;
use crate::privacy::{ErasureReceipt, Scrub};
use crate::store::flow::{self, Backend};
use crate::store::{
    AggregateStream, Appended, ErasureError, ExpectedVersion, LoadError, LogCursor, Snapshot,
    StoreError, StoredEvent, StoredSnapshot,
};

/// An event store: appends inside the caller's transaction with optimistic concurrency, reads
/// back decoded, erases data subjects.
pub trait EventStore: Send + Sync {
    /// The caller's transaction, in which its own rows and the events commit together.
    type Tx: Send;

    /// Begins a transaction suited to appending (PostgreSQL: READ COMMITTED; SQLite:
    /// IMMEDIATE).
    fn begin(&self) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send;

    /// Appends events of one aggregate in `tx`; a version other than `expected` is
    /// [`StoreError::Conflict`].
    fn append(
        &self,
        tx: &mut Self::Tx,
        expected: ExpectedVersion,
        events: &[Envelope],
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send;

    /// Appends in a transaction of its own, committed before returning: for events that go
    /// with no business rows of the caller's.
    fn append_committed(
        &self,
        expected: ExpectedVersion,
        events: &[Envelope],
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send;

    /// Commits `tx`.
    fn commit(&self, tx: Self::Tx) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Rolls `tx` back: nothing of it is stored or relayed.
    fn rollback(&self, tx: Self::Tx) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every stored event of one aggregate, in sequence order, undecoded, PII opened.
    fn read_stream(
        &self,
        aggregate_id: Uuid,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// One aggregate's events decoded (old versions upcast), with its version.
    fn load(
        &self,
        aggregate_id: Uuid,
    ) -> impl Future<Output = Result<AggregateStream, LoadError>> + Send;

    /// One aggregate's events after sequence `after`, decoded, with its version (`after`
    /// when there are none): what follows a snapshot.
    fn load_after(
        &self,
        aggregate_id: Uuid,
        after: u64,
    ) -> impl Future<Output = Result<AggregateStream, LoadError>> + Send;

    /// [`load_after`](Self::load_after), read in `tx`: a command reads what it decides on in
    /// the transaction it appends in (one connection, and on SQLite the writer's lock
    /// already held).
    fn load_in(
        &self,
        tx: &mut Self::Tx,
        aggregate_id: Uuid,
        after: u64,
    ) -> impl Future<Output = Result<AggregateStream, LoadError>> + Send;

    /// [`snapshot`](Self::snapshot), read in `tx`.
    fn snapshot_in(
        &self,
        tx: &mut Self::Tx,
        aggregate_id: Uuid,
        aggregate_type: &str,
        state_version: u32,
    ) -> impl Future<Output = Result<Option<StoredSnapshot>, StoreError>> + Send;

    /// The aggregate's latest snapshot of `aggregate_type` at `state_version`, if any.
    fn snapshot(
        &self,
        aggregate_id: Uuid,
        aggregate_type: &str,
        state_version: u32,
    ) -> impl Future<Output = Result<Option<StoredSnapshot>, StoreError>> + Send;

    /// Saves `snapshot` in place of an older one of its aggregate (never over a newer one);
    /// saves nothing when it names an erased person, or when it was read from a snapshot
    /// that is gone.
    fn save_snapshot(
        &self,
        snapshot: &Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Up to `limit` committed events after `after`, never skipping one that commits late.
    fn read_all(
        &self,
        after: LogCursor,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// Opens the sealed PII values of events read from the bus or stream, in place:
    /// plaintext where the owner's key exists, the field's erased form where it was destroyed.
    fn unseal<E: AsMut<Envelope> + Send>(
        &self,
        envelopes: &mut [E],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Erases a data subject by destroying their keys, with `reason` in the audit trail, and
    /// scrubbing the stored ciphertext too if asked.
    fn erase_subject(
        &self,
        subject: Uuid,
        reason: &str,
        scrub: Scrub,
    ) -> impl Future<Output = Result<ErasureReceipt, ErasureError>> + Send;

    /// Lets an erased subject have personal data again (a person who comes back under the
    /// same id): the next append creates a key of a version above every destroyed one, so
    /// nothing sealed before the erasure ever opens again. `false` when the subject was never
    /// erased.
    fn allow_new_keys(
        &self,
        subject: Uuid,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl<B: Backend> EventStore for B {
    type Tx = sqlx::Transaction<'static, B::Db>;

    async fn begin(&self) -> Result<Self::Tx, StoreError> {
        Backend::begin(self).await
    }

    async fn append(
        &self,
        tx: &mut Self::Tx,
        expected: ExpectedVersion,
        events: &[Envelope],
    ) -> Result<Appended, StoreError> {
        flow::append(self, tx, expected, events).await
    }

    async fn append_committed(
        &self,
        expected: ExpectedVersion,
        events: &[Envelope],
    ) -> Result<Appended, StoreError> {
        flow::append_committed(self, expected, events).await
    }

    async fn commit(&self, tx: Self::Tx) -> Result<(), StoreError> {
        tx.commit().await?;
        self.committed();
        Ok(())
    }

    async fn rollback(&self, tx: Self::Tx) -> Result<(), StoreError> {
        Ok(tx.rollback().await?)
    }

    async fn read_stream(&self, aggregate_id: Uuid) -> Result<Vec<StoredEvent>, StoreError> {
        flow::read_stream(self, aggregate_id, 0).await
    }

    async fn load(&self, aggregate_id: Uuid) -> Result<AggregateStream, LoadError> {
        flow::load(self, aggregate_id, 0).await
    }

    async fn load_after(
        &self,
        aggregate_id: Uuid,
        after: u64,
    ) -> Result<AggregateStream, LoadError> {
        flow::load(self, aggregate_id, after).await
    }

    async fn load_in(
        &self,
        tx: &mut Self::Tx,
        aggregate_id: Uuid,
        after: u64,
    ) -> Result<AggregateStream, LoadError> {
        flow::load_in(self, tx, aggregate_id, after).await
    }

    async fn snapshot_in(
        &self,
        tx: &mut Self::Tx,
        aggregate_id: Uuid,
        aggregate_type: &str,
        state_version: u32,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        self.select_snapshot(tx, aggregate_id, aggregate_type, state_version)
            .await
    }

    async fn snapshot(
        &self,
        aggregate_id: Uuid,
        aggregate_type: &str,
        state_version: u32,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        let mut conn = self.parts().0.acquire().await?;
        self.select_snapshot(&mut conn, aggregate_id, aggregate_type, state_version)
            .await
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        Backend::save_snapshot(self, snapshot).await
    }

    async fn read_all(&self, after: LogCursor, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        flow::read_all(self, after, limit).await
    }

    async fn unseal<E: AsMut<Envelope> + Send>(
        &self,
        envelopes: &mut [E],
    ) -> Result<(), StoreError> {
        flow::unseal(self, envelopes).await
    }

    async fn erase_subject(
        &self,
        subject: Uuid,
        reason: &str,
        scrub: Scrub,
    ) -> Result<ErasureReceipt, ErasureError> {
        flow::erase_subject(self, subject, reason, scrub).await
    }

    async fn allow_new_keys(&self, subject: Uuid) -> Result<bool, StoreError> {
        flow::allow_new_keys(self, subject).await
    }
}
