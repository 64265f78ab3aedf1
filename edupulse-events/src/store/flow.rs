//! The store contract, written once: append (describe, seal, insert), read (select, unseal),
//! erase (destroy keys, scrub, record, purge). PostgreSQL ([`Store`](super::Store)) and SQLite
//! ([`SqliteStore`](crate::embedded::SqliteStore)) each implement [`Backend`] and
//! [`KeySource`] (their SQL dialect, locking and notification) and run these functions; what
//! the contract promises is therefore the same on both by construction.

use std::collections::HashMap;
use std::future::Future;

use sqlx::{Database, Pool, Transaction};
use uuid::Uuid;

use crate::descriptor::EventDescriptor;
use crate::envelope::Envelope;
use crate::privacy::{DataKey, DataSubjectErased, Destroyed, ErasureReceipt, Scrub};
use crate::store::sealing::{ReadKeys, describe, find_sealed, open_found, pii_owners, seal_all};
use crate::store::{
    AggregateStream, Appended, ErasureError, ExpectedVersion, LoadError, LogCursor, Snapshot,
    StoreError, StoredEvent, StoredSnapshot, single_aggregate,
};

/// The connection of a backend's transaction.
pub(crate) type Conn<B> = <<B as Backend>::Db as Database>::Connection;

/// One event ready for the log: what the registry says of it, and its payload as stored.
pub struct ToStore<'e> {
    pub(crate) event: &'e Envelope,
    pub(crate) descriptor: &'static EventDescriptor,
    /// The payload with its PII sealed; `None` when it has none (stored as it is).
    sealed: Option<serde_json::Value>,
}

impl ToStore<'_> {
    /// The payload to write.
    pub(crate) fn payload(&self) -> &serde_json::Value {
        self.sealed.as_ref().unwrap_or(&self.event.payload)
    }

    /// The subject the relay publishes it on, below `prefix`.
    pub(crate) fn subject(&self, prefix: &str) -> String {
        format!("{prefix}.{}", self.descriptor.subject())
    }
}

/// One append as the backend inserts it: the version it expects, and its events sealed.
pub struct Batch<'e> {
    pub(crate) expected: ExpectedVersion,
    pub(crate) events: Vec<ToStore<'e>>,
}

/// What a database provides so the contract can run on it. Public in a private module: the
/// stores' [`EventStore`](crate::store::EventStore) rests on it, and nothing outside the crate
/// can name or implement it.
pub trait Backend: Send + Sync {
    /// The sqlx database.
    type Db: Database;
    /// Where data keys come from.
    type Keys: KeySource<Self::Db>;

    /// The pool reads go through, and the key source: `None` when the store was built without
    /// one (then nothing personal may be appended, and nothing can be erased).
    fn parts(&self) -> (&Pool<Self::Db>, Option<&Self::Keys>);

    /// The key source alone.
    fn keys(&self) -> Option<&Self::Keys> {
        self.parts().1
    }

    /// A transaction fit for appending and erasing.
    fn begin(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, StoreError>> + Send;

    /// Marks where an append starts in `tx`, so that a failed one can be undone by
    /// [`end_append`](Self::end_append) without the rest of the caller's transaction.
    /// PostgreSQL needs nothing: a failed statement aborts the whole transaction.
    fn start_append(
        &self,
        tx: &mut Conn<Self>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = tx;
        std::future::ready(Ok(()))
    }

    /// Ends what [`start_append`](Self::start_append) began: kept when `succeeded`, undone
    /// (keys created for it included) otherwise.
    fn end_append(
        &self,
        tx: &mut Conn<Self>,
        succeeded: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = (tx, succeeded);
        std::future::ready(Ok(()))
    }

    /// Inserts `events` (one aggregate's, sealed) and their outbox rows in `tx` after checking
    /// the aggregate's version.
    fn insert(
        &self,
        tx: &mut Conn<Self>,
        batch: &Batch<'_>,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send;

    /// One aggregate's events as stored after sequence `after` (0: all), in sequence order.
    fn select_stream(
        &self,
        aggregate: Uuid,
        after: u64,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// One aggregate's events after sequence `after`, read in `tx` with only what folding
    /// them needs (no metadata, times or log positions): a command's read.
    fn select_for_fold(
        &self,
        tx: &mut Conn<Self>,
        aggregate: Uuid,
        after: u64,
    ) -> impl Future<Output = Result<Vec<Envelope>, StoreError>> + Send;

    /// The aggregate's snapshot of `aggregate_type` at `state_version`, if one was saved,
    /// read on `conn`.
    fn select_snapshot(
        &self,
        conn: &mut Conn<Self>,
        aggregate: Uuid,
        aggregate_type: &str,
        state_version: u32,
    ) -> impl Future<Output = Result<Option<StoredSnapshot>, StoreError>> + Send;

    /// Saves `snapshot` in place of an older one of the aggregate (never over a newer one).
    fn save_snapshot(
        &self,
        snapshot: &Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes, in `tx`, every snapshot folded from `subject`'s events; how many.
    fn drop_snapshots(
        &self,
        tx: &mut Conn<Self>,
        subject: Uuid,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Up to `limit` committed events after `after` as stored, in commit-safe order.
    fn select_after(
        &self,
        after: LogCursor,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// Overwrites `subject`'s sealed values in the stored log with the erased marker, in
    /// `tx`; returns how many events changed. Finds them through the backend's index of data
    /// subjects, never by scanning the log.
    fn scrub(
        &self,
        tx: &mut Conn<Self>,
        subject: Uuid,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// After an append or erasure committed: wakes what waits for new events in this process.
    fn committed(&self) {}

    /// After an erasure committed: takes the destroyed keys' bytes out of the live files.
    /// `false` when it could not for now (said in a warning); the erasure holds either way.
    fn purge_keys(&self, destroyed: &Destroyed) -> impl Future<Output = bool> + Send;
}

/// A backend's data keys: created on first use inside the appending transaction, refused once
/// the subject is erased, destroyed by erasure.
pub trait KeySource<Db: Database>: Send + Sync {
    /// The key to seal `subject`'s data with, inside the appending transaction: the newest
    /// version, created if the subject has none. An erased subject is
    /// [`StoreError::SubjectErased`].
    fn key_for_append(
        &self,
        tx: &mut Db::Connection,
        subject: Uuid,
    ) -> impl Future<Output = Result<(u32, DataKey), StoreError>> + Send;

    /// The keys to open each of `wanted`: `Some` key, `None` where an erasure destroyed it;
    /// absent when neither.
    fn keys_for_read(
        &self,
        pool: &Pool<Db>,
        wanted: &[(Uuid, u32)],
    ) -> impl Future<Output = Result<ReadKeys, StoreError>> + Send;

    /// [`keys_for_read`](Self::keys_for_read) for a read made in `tx`: a store with one
    /// connection (SQLite in memory) reads them on it; one with a pool may use another.
    fn keys_for_read_in(
        &self,
        tx: &mut Db::Connection,
        pool: &Pool<Db>,
        wanted: &[(Uuid, u32)],
    ) -> impl Future<Output = Result<ReadKeys, StoreError>> + Send {
        let _ = tx;
        self.keys_for_read(pool, wanted)
    }

    /// Destroys every key of `subject` and records the tombstone with `reason`, inside `tx`,
    /// after any append still holding the subject's key.
    fn destroy(
        &self,
        tx: &mut Db::Connection,
        subject: Uuid,
        reason: &str,
    ) -> impl Future<Output = Result<Destroyed, StoreError>> + Send;

    /// Lets an erased subject have personal data again, under a key version above every
    /// destroyed one; `false` when the subject was never erased.
    fn allow_new_keys(
        &self,
        pool: &Pool<Db>,
        subject: Uuid,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Forgets `subject`'s keys held in memory.
    fn evict(&self, subject: Uuid);
}

/// Appends `events` of one aggregate inside `tx`: each registered type looked up once, PII
/// sealed with its owners' keys (taken in subject order), then inserted with its outbox row.
pub(crate) async fn append<B: Backend>(
    backend: &B,
    tx: &mut Conn<B>,
    expected: ExpectedVersion,
    events: &[Envelope],
) -> Result<Appended, StoreError> {
    if single_aggregate(events)?.is_none() {
        // Nothing names an aggregate, so there is no version to report.
        return Ok(Appended {
            version: 0,
            positions: Vec::new(),
        });
    }
    backend.start_append(tx).await?;
    let appended = seal_and_insert(backend, tx, expected, events).await;
    backend.end_append(tx, appended.is_ok()).await?;
    appended
}

/// [`append`]'s work between its start and its end: a failure anywhere leaves nothing.
async fn seal_and_insert<B: Backend>(
    backend: &B,
    tx: &mut Conn<B>,
    expected: ExpectedVersion,
    events: &[Envelope],
) -> Result<Appended, StoreError> {
    let descriptors = describe(events)?;
    let owners = pii_owners(events, &descriptors)?;
    let mut keys: HashMap<Uuid, (u32, DataKey)> = HashMap::with_capacity(owners.len());
    if !owners.is_empty() {
        let source = backend.keys().ok_or_else(|| StoreError::NoKeyStore {
            needed_for: format!("event `{}`, with personal data,", events[0].type_string()),
        })?;
        for subject in owners {
            keys.insert(subject, source.key_for_append(tx, subject).await?);
        }
    }
    let sealed = seal_all(events, &descriptors, &keys)?;
    let events = events
        .iter()
        .zip(descriptors)
        .zip(sealed)
        .map(|((event, descriptor), sealed)| ToStore {
            event,
            descriptor,
            sealed,
        })
        .collect();
    backend.insert(tx, &Batch { expected, events }).await
}

/// Appends in a transaction of its own, committed before returning.
pub(crate) async fn append_committed<B: Backend>(
    backend: &B,
    expected: ExpectedVersion,
    events: &[Envelope],
) -> Result<Appended, StoreError> {
    let mut tx = backend.begin().await?;
    let appended = append(backend, &mut tx, expected, events).await?;
    tx.commit().await?;
    backend.committed();
    Ok(appended)
}

/// Opens the sealed PII values of `events` in place: plaintext where the owner's key exists,
/// the field's erased form where it was destroyed. Without a key source sealed values stay as
/// they are (decoding them then says so).
pub(crate) async fn unseal<B: Backend, E: AsMut<Envelope>>(
    backend: &B,
    events: &mut [E],
) -> Result<(), StoreError> {
    unseal_on(backend, None, events).await
}

/// [`unseal`], its keys read in `tx` when the events were (see
/// [`KeySource::keys_for_read_in`]).
async fn unseal_on<B: Backend, E: AsMut<Envelope>>(
    backend: &B,
    tx: Option<&mut Conn<B>>,
    events: &mut [E],
) -> Result<(), StoreError> {
    let found = find_sealed(events, backend.keys().is_some())?;
    let Some(keys) = backend.keys().filter(|_| !found.is_empty()) else {
        return Ok(());
    };
    let wanted: Vec<(Uuid, u32)> = found.iter().map(super::sealing::Found::key_id).collect();
    let pool = backend.parts().0;
    let data_keys = match tx {
        Some(tx) => keys.keys_for_read_in(tx, pool, &wanted).await?,
        None => keys.keys_for_read(pool, &wanted).await?,
    };
    open_found(events, found, &data_keys)
}

/// One aggregate's events after sequence `after` (0: all), read in `tx`, decoded (old
/// versions upcast), with its version: what a command decides on.
pub(crate) async fn load_in<B: Backend>(
    backend: &B,
    tx: &mut Conn<B>,
    aggregate: Uuid,
    after: u64,
) -> Result<AggregateStream, LoadError> {
    let mut events = backend.select_for_fold(tx, aggregate, after).await?;
    unseal_on(backend, Some(tx), &mut events).await?;
    AggregateStream::from_envelopes(&events, after)
}

/// One aggregate's stored events after sequence `after` (0: all), in sequence order, PII
/// opened.
pub(crate) async fn read_stream<B: Backend>(
    backend: &B,
    aggregate: Uuid,
    after: u64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut events = backend.select_stream(aggregate, after).await?;
    unseal(backend, &mut events).await?;
    Ok(events)
}

/// One aggregate's events after sequence `after` (0: all) decoded (old versions upcast), with
/// its version.
pub(crate) async fn load<B: Backend>(
    backend: &B,
    aggregate: Uuid,
    after: u64,
) -> Result<AggregateStream, LoadError> {
    AggregateStream::decoded(&read_stream(backend, aggregate, after).await?, after)
}

/// Up to `limit` committed events after `after`, in commit-safe order, PII opened.
pub(crate) async fn read_all<B: Backend>(
    backend: &B,
    after: LogCursor,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut events = backend.select_after(after, limit).await?;
    unseal(backend, &mut events).await?;
    Ok(events)
}

/// Lets an erased subject have personal data again, under a key version above every
/// destroyed one; `false` when the subject was never erased.
pub(crate) async fn allow_new_keys<B: Backend>(
    backend: &B,
    subject: Uuid,
) -> Result<bool, StoreError> {
    let keys = backend.keys().ok_or_else(|| StoreError::NoKeyStore {
        needed_for: "allowing new keys".to_owned(),
    })?;
    keys.allow_new_keys(backend.parts().0, subject).await
}

/// Erases `subject`: destroys their keys (every sealed copy, in the log, on the bus and in
/// backups, becomes unreadable), records the tombstone with `reason`, scrubs the stored
/// ciphertext if asked, and appends a [`DataSubjectErased`] event in a stream of its own, all
/// in one transaction; then purges the destroyed keys' bytes from the key table's files.
pub(crate) async fn erase_subject<B: Backend>(
    backend: &B,
    subject: Uuid,
    reason: &str,
    scrub: Scrub,
) -> Result<ErasureReceipt, ErasureError> {
    let keys = backend
        .keys()
        .ok_or(ErasureError::Store(StoreError::NoKeyStore {
            needed_for: "erasing a data subject".to_owned(),
        }))?;
    let mut tx = backend.begin().await?;
    let destroyed = keys.destroy(&mut tx, subject, reason).await?;
    // One key per version of one subject: never near u32::MAX.
    let keys_destroyed = u32::try_from(destroyed.keys).unwrap_or(u32::MAX);
    let events_scrubbed = match scrub {
        Scrub::KeysOnly => 0,
        Scrub::StoredCiphertext => backend.scrub(&mut tx, subject).await?,
    };
    // A snapshot's state may hold what the subject's events said, in clear.
    backend.drop_snapshots(&mut tx, subject).await?;
    let erased_at = chrono::Utc::now();
    let envelope = Envelope::new(&DataSubjectErased {
        // A stream of its own: the subject's id may also be an application aggregate's.
        erasure_id: Uuid::now_v7(),
        subject_id: subject,
        keys_destroyed,
        erased_at,
    })?;
    let appended = append(
        backend,
        &mut tx,
        ExpectedVersion::NoStream,
        std::slice::from_ref(&envelope),
    )
    .await?;
    let committed = tx.commit().await;
    // A read racing the erasure may have cached a key after `destroy` evicted it; and a
    // commit that reports a lost connection may still have happened: evict either way.
    keys.evict(subject);
    crate::aggregate::forget_subject(subject);
    committed.map_err(StoreError::from)?;
    backend.committed();
    ::metrics::counter!(crate::metrics::ERASURES).increment(1);
    let key_bytes_purged = backend.purge_keys(&destroyed).await;
    Ok(ErasureReceipt {
        subject,
        event_id: envelope.id,
        position: appended.positions[0],
        keys_destroyed,
        events_scrubbed,
        already_erased: destroyed.already_erased,
        key_bytes_purged,
        erased_at,
    })
}
