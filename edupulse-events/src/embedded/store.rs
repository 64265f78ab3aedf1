//! The event store on SQLite: the same contract as the PostgreSQL [`Store`](crate::store::Store)
//! (append in the caller's transaction with its outbox rows, optimistic concurrency per
//! aggregate, PII sealed per data subject, erasure by destroying keys) for a first run and for
//! unit tests, with no server. SQLite runs one writing transaction at a time, which is what
//! keeps positions in commit order and makes the ordering of appends and erasures trivial.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{FromRow, Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::envelope::{Envelope, Metadata};
use crate::privacy::{DataKey, DataSubjectErased, ErasureError, ErasureReceipt, KeyProvider};
use crate::registry::Registry;
use crate::store::sealing::{find_sealed, open_found, plan_seal, seal_planned};
use crate::store::single_aggregate;
use crate::store::{
    AggregateStream, Appended, ExpectedVersion, LoadError, LogCursor, StoreError, StoredEvent,
};

use super::keys;
use super::schema::SCHEMA;

/// The embedded event store; cheap to clone (the pool and the relay's wake-up are shared).
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    prefix: String,
    keys: Option<Arc<dyn KeyProvider>>,
    appended: Arc<Notify>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("prefix", &self.prefix)
            .field("sealing", &self.keys.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(FromRow)]
struct Row {
    position: i64,
    event_id: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    version: i64,
    data_subjects: String,
    payload: String,
    metadata: String,
    occurred_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
}

const COLUMNS: &str = "position, event_id, aggregate_type, aggregate_id, sequence, event_type, \
     version, data_subjects, payload, metadata, occurred_at, recorded_at";

impl TryFrom<Row> for StoredEvent {
    type Error = StoreError;

    fn try_from(row: Row) -> Result<Self, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            position: row.position,
            reason: reason.into(),
        };
        let uuid = |text: &str| Uuid::parse_str(text).map_err(|_| corrupt("an id is not a UUID"));
        let metadata: Metadata = serde_json::from_str(&row.metadata)
            .map_err(|_| corrupt("metadata is not an edupulse metadata object"))?;
        Ok(StoredEvent {
            position: row.position,
            tx_id: 0,
            recorded_at: row.recorded_at,
            envelope: Envelope {
                id: uuid(&row.event_id)?,
                event_type: row.event_type.clone(),
                version: row.version as u32,
                aggregate_type: row.aggregate_type.clone(),
                aggregate_id: uuid(&row.aggregate_id)?,
                sequence: row.sequence as u64,
                data_subjects: serde_json::from_str(&row.data_subjects)
                    .map_err(|_| corrupt("data subjects are not a list of UUIDs"))?,
                occurred_at: row.occurred_at,
                metadata,
                payload: serde_json::from_str(&row.payload)
                    .map_err(|_| corrupt("the payload is not JSON"))?,
            },
        })
    }
}

impl SqliteStore {
    /// A store in memory: gone when the last clone is dropped. It has one connection, so
    /// every transaction takes its turn, and while one of yours is open the store's own reads
    /// (`load`, `read_all`, `version`) wait for it: read before you begin, or use
    /// [`open`](Self::open), whose file store has several connections.
    pub async fn in_memory(subject_prefix: impl Into<String>) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::with_pool(pool, subject_prefix).await
    }

    /// A store in the file at `path`, created if missing (write-ahead log, so readers do not
    /// wait for the writer).
    pub async fn open(
        path: impl AsRef<std::path::Path>,
        subject_prefix: impl Into<String>,
    ) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Deleted rows are overwritten with zeros: an erased subject's key must not stay
            // readable in a page's free space.
            .pragma("secure_delete", "on")
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Self::with_pool(pool, subject_prefix).await
    }

    async fn with_pool(
        pool: SqlitePool,
        subject_prefix: impl Into<String>,
    ) -> Result<Self, StoreError> {
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(SqliteStore {
            pool,
            prefix: subject_prefix.into(),
            keys: None,
            appended: Arc::new(Notify::new()),
        })
    }

    /// Seals every `#[event(pii)]` value with its owner's key (wrapped by `provider`) on
    /// append, and opens them on read; required to store events with personal data.
    pub fn with_keys(mut self, provider: Arc<dyn KeyProvider>) -> Self {
        self.keys = Some(provider);
        self
    }

    /// The pool, for the caller's own tables.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The subject prefix events are published under.
    pub fn subject_prefix(&self) -> &str {
        &self.prefix
    }

    /// A transaction that writes from its first statement (`BEGIN IMMEDIATE`): begin yours with
    /// this, so the version an append checks cannot change before it commits. (In a deferred
    /// transaction of a file store, a writer that committed since your first read makes the
    /// append fail with a database error, SQLite's busy snapshot, rather than a `Conflict`.)
    pub async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Appends events of one aggregate inside the caller's transaction (begun with
    /// [`begin`](Self::begin)), with an outbox row each, so they commit or roll back with the
    /// caller's own rows. A version other than `expected` is [`StoreError::Conflict`].
    pub async fn append(
        &self,
        tx: &mut SqliteConnection,
        expected: ExpectedVersion,
        events: &[Envelope],
    ) -> Result<Appended, StoreError> {
        if single_aggregate(events)?.is_none() {
            return Ok(Appended {
                version: 0,
                positions: Vec::new(),
            });
        }
        // A failed statement undoes only itself in SQLite, not the transaction (PostgreSQL
        // aborts it): the savepoint makes a failed append leave nothing behind either way.
        sqlx::query("SAVEPOINT edupulse_append")
            .execute(&mut *tx)
            .await?;
        let appended = self.append_in_savepoint(tx, expected, events).await;
        if appended.is_err() {
            sqlx::query("ROLLBACK TO edupulse_append")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("RELEASE edupulse_append")
            .execute(&mut *tx)
            .await?;
        if appended.is_ok() {
            self.appended.notify_one();
        }
        appended
    }

    async fn append_in_savepoint(
        &self,
        tx: &mut SqliteConnection,
        expected: ExpectedVersion,
        events: &[Envelope],
    ) -> Result<Appended, StoreError> {
        let aggregate = events[0].aggregate_id;
        let sealed = self.seal(tx, events).await?;
        let actual = version_of(&mut *tx, aggregate).await?;
        if let ExpectedVersion::NoStream | ExpectedVersion::Exact(_) = expected {
            let wanted = match expected {
                ExpectedVersion::Exact(n) => n,
                _ => 0,
            };
            if wanted != actual {
                return Err(StoreError::Conflict {
                    aggregate,
                    expected,
                    actual,
                });
            }
        }
        let registry = Registry::global();
        let mut positions = Vec::with_capacity(events.len());
        for (n, (event, sealed)) in events.iter().zip(&sealed).enumerate() {
            let descriptor = registry
                .get(&event.event_type, event.version)
                .ok_or_else(|| StoreError::Unregistered(event.type_string()))?;
            let sequence = actual + 1 + n as u64;
            let inserted = sqlx::query_scalar::<_, i64>(
                "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, \
                 event_type, version, data_subjects, payload, metadata, occurred_at, \
                 recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING position",
            )
            .bind(event.id.to_string())
            .bind(&event.aggregate_type)
            .bind(aggregate.to_string())
            .bind(sequence as i64)
            .bind(&event.event_type)
            .bind(i64::from(event.version))
            .bind(serde_json::to_string(&event.data_subjects).expect("UUIDs serialize"))
            .bind(sealed.as_ref().unwrap_or(&event.payload).to_string())
            .bind(serde_json::to_string(&event.metadata).expect("metadata is plain JSON"))
            // PostgreSQL keeps microseconds: so does this store, so both read back alike.
            .bind(event.occurred_at.trunc_subsecs(6))
            .bind(Utc::now())
            .fetch_one(&mut *tx)
            .await;
            let position = match inserted {
                Ok(position) => position,
                // Another writer took the sequence (a transaction not begun IMMEDIATE).
                Err(err) if is_sequence_taken(&err) => {
                    return Err(StoreError::Conflict {
                        aggregate,
                        expected,
                        actual: version_of(&mut *tx, aggregate).await?,
                    });
                }
                Err(err) => return Err(err.into()),
            };
            for subject in &event.data_subjects {
                // An event may name one person twice (a student who is also the teacher).
                sqlx::query(
                    "INSERT OR IGNORE INTO event_subjects (subject_id, position) VALUES (?, ?)",
                )
                .bind(subject.to_string())
                .bind(position)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("INSERT INTO outbox (position, subject) VALUES (?, ?)")
                .bind(position)
                .bind(format!("{}.{}", self.prefix, descriptor.subject()))
                .execute(&mut *tx)
                .await?;
            positions.push(position);
        }
        Ok(Appended {
            version: actual + events.len() as u64,
            positions,
        })
    }

    /// Appends in a transaction of its own, committed before returning.
    pub async fn append_committed(
        &self,
        expected: ExpectedVersion,
        events: &[Envelope],
    ) -> Result<Appended, StoreError> {
        let mut tx = self.begin().await?;
        let appended = self.append(&mut tx, expected, events).await?;
        tx.commit().await?;
        self.appended.notify_one();
        Ok(appended)
    }

    async fn seal(
        &self,
        tx: &mut SqliteConnection,
        events: &[Envelope],
    ) -> Result<Vec<Option<serde_json::Value>>, StoreError> {
        let Some(plan) = plan_seal(events)? else {
            return Ok(vec![None; events.len()]);
        };
        let provider = self.keys.as_deref().ok_or_else(|| StoreError::NoKeyStore {
            type_name: events[0].type_string(),
        })?;
        let mut subject_keys: HashMap<Uuid, (u32, DataKey)> = HashMap::new();
        for &subject in &plan.owners {
            subject_keys.insert(
                subject,
                keys::key_for_append(&mut *tx, provider, subject).await?,
            );
        }
        seal_planned(events, plan, &subject_keys)
    }

    /// Opens the sealed PII values of `events` in place (erased ones become the field's
    /// erased form): for envelopes read from the bus.
    pub async fn open_envelopes<E: AsMut<Envelope>>(
        &self,
        events: &mut [E],
    ) -> Result<(), StoreError> {
        let found = find_sealed(events, self.keys.is_some())?;
        let Some(provider) = self.keys.as_deref().filter(|_| !found.is_empty()) else {
            return Ok(());
        };
        let wanted: Vec<(Uuid, u32)> = found.iter().map(|f| f.key_id()).collect();
        let data_keys = keys::keys_for_read(&self.pool, provider, &wanted).await?;
        open_found(events, found, &data_keys)
    }

    async fn opened(&self, rows: Vec<Row>) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events = rows
            .into_iter()
            .map(StoredEvent::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        self.open_envelopes(&mut events).await?;
        Ok(events)
    }

    /// Every stored event of one aggregate, in sequence order, PII opened.
    pub async fn read_stream(&self, aggregate_id: Uuid) -> Result<Vec<StoredEvent>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM events WHERE aggregate_id = ? ORDER BY sequence"
        ))
        .bind(aggregate_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        self.opened(rows).await
    }

    /// One aggregate's events decoded (old versions upcast), with its version.
    pub async fn load(&self, aggregate_id: Uuid) -> Result<AggregateStream, LoadError> {
        AggregateStream::decoded(&self.read_stream(aggregate_id).await?)
    }

    /// Up to `limit` committed events after `after`, in position order (which is commit order
    /// here: one writer at a time), PII opened.
    pub async fn read_all(
        &self,
        after: LogCursor,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
        ))
        .bind(after.position)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        self.opened(rows).await
    }

    /// The events at positions `first..=last`, as stored (personal data sealed): what the
    /// relay puts on the bus.
    pub(super) async fn sealed_between(
        &self,
        tx: &mut SqliteConnection,
        first: i64,
        last: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM events WHERE position BETWEEN ? AND ? ORDER BY position"
        ))
        .bind(first)
        .bind(last)
        .fetch_all(tx)
        .await?;
        rows.into_iter().map(StoredEvent::try_from).collect()
    }

    /// The committed version of an aggregate.
    pub async fn version(&self, aggregate: Uuid) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        version_of(&mut conn, aggregate).await
    }

    /// Erases a data subject: destroys their keys (every sealed copy, in the log and on the
    /// bus, becomes unreadable), records a tombstone with `reason` (new personal data of theirs
    /// is refused), and appends a [`DataSubjectErased`] event, all in one transaction.
    pub async fn erase_subject(
        &self,
        subject: Uuid,
        reason: &str,
    ) -> Result<ErasureReceipt, ErasureError> {
        if self.keys.is_none() {
            return Err(ErasureError::NoKeyStore);
        }
        let mut tx = self.begin().await?;
        let destroyed = keys::destroy(&mut tx, subject, reason).await?;
        // One key per version of one subject: never near u32::MAX.
        let keys_destroyed = u32::try_from(destroyed.keys).unwrap_or(u32::MAX);
        let (envelope, erased_at) = DataSubjectErased::envelope(subject, keys_destroyed)?;
        let appended = self
            .append(
                &mut tx,
                ExpectedVersion::NoStream,
                std::slice::from_ref(&envelope),
            )
            .await?;
        tx.commit().await.map_err(StoreError::from)?;
        self.appended.notify_one();
        ::metrics::counter!(crate::metrics::ERASURES).increment(1);
        let key_bytes_purged = match keys::purge_log(&self.pool).await {
            Ok(done) => done,
            Err(err) => {
                tracing::warn!(error = %err, "the erasure committed, but the log was not checkpointed");
                false
            }
        };
        Ok(ErasureReceipt {
            subject,
            event_id: envelope.id,
            position: appended.positions[0],
            keys_destroyed,
            events_scrubbed: 0,
            already_erased: destroyed.already_erased,
            key_bytes_purged,
            erased_at,
        })
    }

    /// Re-wraps every data key with the key provider's current master key in one
    /// transaction, then empties the write-ahead log; returns how many keys. See
    /// [`KeyStore::rotate_master_key`](crate::privacy::KeyStore::rotate_master_key) for the
    /// procedure: once this returns, retire the old master key, and copies of the database
    /// file taken before open nothing.
    pub async fn rotate_master_key(&self) -> Result<u64, StoreError> {
        let provider = self.keys.as_deref().ok_or_else(|| StoreError::NoKeyStore {
            type_name: "(master-key rotation)".to_owned(),
        })?;
        let mut tx = self.begin().await?;
        let count = keys::rewrap_all(&mut tx, provider).await?;
        tx.commit().await?;
        if !keys::purge_log(&self.pool).await? {
            tracing::warn!(
                "master key rotated, but the write-ahead log is busy: the old wrapped keys stay \
                 in it until the next checkpoint (they open only with the old master key)"
            );
        }
        Ok(count)
    }

    /// Wakes the relay after an append.
    pub(super) fn appended(&self) -> &Notify {
        &self.appended
    }
}

async fn version_of(conn: &mut SqliteConnection, aggregate: Uuid) -> Result<u64, StoreError> {
    let version: i64 =
        sqlx::query_scalar("SELECT coalesce(max(sequence), 0) FROM events WHERE aggregate_id = ?")
            .bind(aggregate.to_string())
            .fetch_one(conn)
            .await?;
    Ok(version as u64)
}

/// The aggregate's sequence was taken: the optimistic-concurrency check, as opposed to another
/// unique value (a re-sent event id).
fn is_sequence_taken(err: &sqlx::Error) -> bool {
    err.as_database_error().is_some_and(|db| {
        db.kind() == sqlx::error::ErrorKind::UniqueViolation
            && db
                .message()
                .contains("events.aggregate_id, events.sequence")
    })
}
