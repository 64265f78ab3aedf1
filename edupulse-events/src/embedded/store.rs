//! The event store on SQLite: the same contract as the PostgreSQL [`Store`](crate::store::Store)
//! (append in the caller's transaction with its outbox rows, optimistic concurrency per
//! aggregate, PII sealed per data subject, erasure by destroying keys) for a first run and for
//! unit tests, with no server. SQLite runs one writing transaction at a time, which is what
//! keeps positions in commit order and makes the ordering of appends and erasures trivial.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{FromRow, Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::envelope::Envelope;
use crate::privacy::{Destroyed, KeyProvider, erased_json, sealed_subject};
use crate::store::flow::{Backend, Batch, ToStore};
use crate::store::{
    Appended, ExpectedVersion, FoldRow, LogCursor, LogRow, Snapshot, StoreError, StoredEvent,
    StoredSnapshot, corrupt,
};

use super::keys::{self, SqliteKeys};
use super::schema::{ADDED_COLUMNS, SCHEMA};

/// The embedded event store; cheap to clone (the pool and the relay's wake-up are shared).
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    prefix: String,
    keys: Option<SqliteKeys>,
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

impl TryFrom<Row> for LogRow {
    type Error = StoreError;

    /// Parses what SQLite keeps as text into the types both backends check alike.
    fn try_from(row: Row) -> Result<Self, StoreError> {
        let position = row.position;
        let uuid = |text: &str| {
            Uuid::parse_str(text).map_err(|_| corrupt(position, "an id is not a UUID"))
        };
        Ok(LogRow {
            position,
            tx_id: 0,
            event_id: uuid(&row.event_id)?,
            aggregate_id: uuid(&row.aggregate_id)?,
            data_subjects: parse_json(
                position,
                &row.data_subjects,
                "data subjects are not a list of UUIDs",
            )?,
            payload: parse_json(position, &row.payload, "the payload is not JSON")?,
            metadata: parse_json(position, &row.metadata, "metadata is not JSON")?,
            aggregate_type: row.aggregate_type,
            sequence: row.sequence,
            event_type: row.event_type,
            version: row.version,
            occurred_at: row.occurred_at,
            recorded_at: row.recorded_at,
        })
    }
}

/// A JSON column of the row at `position`; `what` says what is wrong when it does not parse.
fn parse_json<T: serde::de::DeserializeOwned>(
    position: i64,
    text: &str,
    what: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|_| corrupt(position, what))
}

/// A row as SQLite returns it, checked on its way to a [`StoredEvent`].
fn stored(row: Row) -> Result<StoredEvent, StoreError> {
    StoredEvent::try_from(LogRow::try_from(row)?)
}

impl SqliteStore {
    /// How long the in-memory store waits for its one connection: long enough for a
    /// subscriber's handlers or a scrub holding it, far shorter than sqlx's 30 s, since a
    /// task that waits on a transaction it holds itself waits for ever.
    pub const IN_MEMORY_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

    /// A store in memory: gone when the last clone is dropped. It has one connection, so
    /// every transaction takes its turn, and while one of yours is open the store's own reads
    /// (`load`, `read_all`, `version`) and your queries on its pool wait for it: read before
    /// you begin, or use [`open`](Self::open), whose file store has several connections. A
    /// wait that cannot end (the task holding the transaction is the one waiting) fails
    /// within [`IN_MEMORY_ACQUIRE_TIMEOUT`](Self::IN_MEMORY_ACQUIRE_TIMEOUT), saying so,
    /// rather than after sqlx's default 30 s.
    pub async fn in_memory(subject_prefix: impl Into<String>) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Self::IN_MEMORY_ACQUIRE_TIMEOUT)
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
            .busy_timeout(Duration::from_secs(10));
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
        add_columns(&pool).await?;
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
        self.keys = Some(SqliteKeys { provider });
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
    /// this (appending, reading and erasing are [`EventStore`](crate::store::EventStore)'s), so the version an append checks cannot change before it commits. (In a deferred
    /// transaction of a file store, a writer that committed since your first read makes the
    /// append fail with a database error, SQLite's busy snapshot, rather than a `Conflict`.)
    pub async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
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
        rows.into_iter().map(stored).collect()
    }

    /// The committed version of an aggregate.
    pub async fn version(&self, aggregate: Uuid) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        version_of(&mut conn, aggregate).await
    }

    /// Re-wraps every data key with the key provider's current master key in one
    /// transaction, then empties the write-ahead log; returns how many keys. See
    /// [`KeyStore::rotate_master_key`](crate::privacy::KeyStore::rotate_master_key) for the
    /// procedure: once this returns, retire the old master key, and copies of the database
    /// file taken before open nothing.
    pub async fn rotate_master_key(&self) -> Result<u64, StoreError> {
        let keys = self.keys.as_ref().ok_or_else(|| StoreError::NoKeyStore {
            needed_for: "rotating the master key".to_owned(),
        })?;
        let mut tx = self.begin().await?;
        let count = keys::rewrap_all(&mut tx, keys.provider.as_ref()).await?;
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
    u64::try_from(version).map_err(|_| StoreError::Corrupt {
        position: 0,
        reason: "a negative sequence".into(),
    })
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

impl Backend for SqliteStore {
    type Db = Sqlite;
    type Keys = SqliteKeys;

    fn parts(&self) -> (&SqlitePool, Option<&SqliteKeys>) {
        (&self.pool, self.keys.as_ref())
    }

    fn committed(&self) {
        self.appended.notify_one();
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        SqliteStore::begin(self).await
    }

    /// A failed statement undoes only itself in SQLite, not the transaction (PostgreSQL
    /// aborts it): the savepoint makes a failed append (its new keys included) leave nothing
    /// behind either way.
    async fn start_append(&self, tx: &mut SqliteConnection) -> Result<(), StoreError> {
        sqlx::query("SAVEPOINT edupulse_append")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    async fn end_append(
        &self,
        tx: &mut SqliteConnection,
        succeeded: bool,
    ) -> Result<(), StoreError> {
        if !succeeded {
            sqlx::query("ROLLBACK TO edupulse_append")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("RELEASE edupulse_append")
            .execute(&mut *tx)
            .await?;
        if succeeded {
            self.appended.notify_one();
        }
        Ok(())
    }

    async fn insert(
        &self,
        tx: &mut SqliteConnection,
        batch: &Batch<'_>,
    ) -> Result<Appended, StoreError> {
        self.insert_events(tx, batch.expected, &batch.events).await
    }

    async fn select_stream(
        &self,
        aggregate: Uuid,
        after: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let after =
            i64::try_from(after).map_err(|_| StoreError::VersionOutOfRange { version: after })?;
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM events WHERE aggregate_id = ? AND sequence > ? ORDER BY sequence"
        ))
        .bind(aggregate.to_string())
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(stored).collect()
    }

    async fn select_for_fold(
        &self,
        tx: &mut SqliteConnection,
        aggregate: Uuid,
        after: u64,
    ) -> Result<Vec<Envelope>, StoreError> {
        let after =
            i64::try_from(after).map_err(|_| StoreError::VersionOutOfRange { version: after })?;
        let rows: Vec<(i64, String, i64, String, i64, String, String)> = sqlx::query_as(
            "SELECT position, event_id, sequence, event_type, version, data_subjects, payload \
             FROM events WHERE aggregate_id = ? AND sequence > ? ORDER BY sequence",
        )
        .bind(aggregate.to_string())
        .bind(after)
        .fetch_all(&mut *tx)
        .await?;
        rows.into_iter()
            .map(
                |(position, id, sequence, event_type, version, subjects, payload)| {
                    FoldRow {
                        position,
                        event_id: Uuid::parse_str(&id)
                            .map_err(|_| corrupt(position, "an id is not a UUID"))?,
                        sequence,
                        event_type,
                        version,
                        data_subjects: parse_json(
                            position,
                            &subjects,
                            "data subjects are not a list of UUIDs",
                        )?,
                        payload: parse_json(position, &payload, "the payload is not JSON")?,
                    }
                    .into_envelope(aggregate)
                },
            )
            .collect()
    }

    async fn select_snapshot(
        &self,
        conn: &mut SqliteConnection,
        aggregate: Uuid,
        aggregate_type: &str,
        state_version: u32,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT version, state FROM snapshots \
             WHERE aggregate_id = ? AND aggregate_type = ? AND state_version = ?",
        )
        .bind(aggregate.to_string())
        .bind(aggregate_type)
        .bind(i64::from(state_version))
        .fetch_optional(conn)
        .await?;
        // A row this code did not write (or a corrupt one) is no snapshot: the events are.
        Ok(row.and_then(|(version, state)| {
            Some(StoredSnapshot {
                version: u64::try_from(version).ok()?,
                state: serde_json::from_str(&state).ok()?,
            })
        }))
    }

    /// One writer at a time: a save either lands before an erasure (whose delete then
    /// removes it) or sees its tombstone and saves nothing. A state read from a snapshot
    /// builds on that snapshot's row, whose subjects were checked when saved; with the row
    /// gone (erased) it saves nothing. A snapshot is never saved for an aggregate any of whose
    /// subjects was ever erased.
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let out_of_range = |version| StoreError::VersionOutOfRange { version };
        let version =
            i64::try_from(snapshot.version).map_err(|_| out_of_range(snapshot.version))?;
        let base = i64::try_from(snapshot.base).map_err(|_| out_of_range(snapshot.base))?;
        let subjects = serde_json::to_string(&snapshot.data_subjects).unwrap_or_default();
        let statement = if base == 0 {
            "INSERT INTO snapshots (aggregate_id, aggregate_type, state_version, version, state, \
             data_subjects, taken_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 \
             WHERE ?8 = 0 AND NOT EXISTS (SELECT 1 FROM erased_subjects \
                               WHERE subject_id IN (SELECT value FROM json_each(?6))) \
             ON CONFLICT (aggregate_id, aggregate_type) DO UPDATE SET \
             state_version = excluded.state_version, version = excluded.version, \
             state = excluded.state, data_subjects = excluded.data_subjects, \
             taken_at = excluded.taken_at \
             WHERE snapshots.version <= excluded.version"
        } else {
            "UPDATE snapshots SET state_version = ?3, version = ?4, state = ?5, taken_at = ?7, \
             data_subjects = (SELECT json_group_array(value) FROM ( \
                 SELECT value FROM json_each(snapshots.data_subjects) \
                 UNION SELECT value FROM json_each(?6))) \
             WHERE aggregate_id = ?1 AND aggregate_type = ?2 AND version >= ?8 \
               AND version <= ?4 AND json_valid(data_subjects) \
               AND NOT EXISTS (SELECT 1 FROM erased_subjects \
                               WHERE subject_id IN (SELECT value FROM json_each(?6)))"
        };
        sqlx::query(statement)
            .bind(snapshot.aggregate_id.to_string())
            .bind(&snapshot.aggregate_type)
            .bind(i64::from(snapshot.state_version))
            .bind(version)
            .bind(snapshot.state.to_string())
            .bind(subjects)
            .bind(Utc::now().to_rfc3339())
            .bind(base)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn drop_snapshots(
        &self,
        tx: &mut SqliteConnection,
        subject: Uuid,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM snapshots WHERE NOT json_valid(data_subjects) OR EXISTS \
             (SELECT 1 FROM json_each(snapshots.data_subjects) WHERE value = ?)",
        )
        .bind(subject.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected())
    }

    /// In position order, which is commit order here: one writer at a time.
    async fn select_after(
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
        rows.into_iter().map(stored).collect()
    }

    /// Finds the subject's events through `event_subjects`, rewrites each payload's values
    /// sealed for the subject, and writes them back under the subject's scrub permit (the
    /// only update the log's triggers let through). The old bytes are zeroed in place
    /// (`secure_delete`); the write-ahead log's copies go with the checkpoint after the
    /// commit.
    async fn scrub(&self, tx: &mut SqliteConnection, subject: Uuid) -> Result<u64, StoreError> {
        let id = subject.to_string();
        let payloads: Vec<(i64, String)> = sqlx::query_as(
            "SELECT e.position, e.payload FROM event_subjects s \
             JOIN events e USING (position) WHERE s.subject_id = ?",
        )
        .bind(&id)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("INSERT OR IGNORE INTO scrub_permits (subject_id) VALUES (?)")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        let mut scrubbed = 0;
        for (position, payload) in payloads {
            let Ok(mut payload) = serde_json::from_str::<serde_json::Value>(&payload) else {
                // One unreadable row must not keep the keys from being destroyed.
                tracing::warn!(
                    position,
                    "scrub passed over a stored payload that is not JSON"
                );
                continue;
            };
            let Some(fields) = payload.as_object_mut() else {
                continue;
            };
            let mut changed = false;
            for value in fields.values_mut() {
                if sealed_subject(value) == Some(subject) {
                    *value = erased_json();
                    changed = true;
                }
            }
            if changed {
                sqlx::query("UPDATE events SET payload = ? WHERE position = ?")
                    .bind(payload.to_string())
                    .bind(position)
                    .execute(&mut *tx)
                    .await?;
                scrubbed += 1;
            }
        }
        sqlx::query("DELETE FROM scrub_permits WHERE subject_id = ?")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        Ok(scrubbed)
    }

    async fn purge_keys(&self, _destroyed: &Destroyed) -> bool {
        match keys::purge_log(&self.pool).await {
            Ok(done) => done,
            Err(err) => {
                tracing::warn!(error = %err, "the erasure committed, but the log was not checkpointed");
                false
            }
        }
    }
}

impl SqliteStore {
    async fn insert_events(
        &self,
        tx: &mut SqliteConnection,
        expected: ExpectedVersion,
        events: &[ToStore<'_>],
    ) -> Result<Appended, StoreError> {
        let aggregate = events[0].event.aggregate_id;
        let actual = version_of(&mut *tx, aggregate).await?;
        let wanted = match expected {
            ExpectedVersion::Any => actual,
            ExpectedVersion::NoStream => 0,
            ExpectedVersion::Exact(n) => n,
        };
        if wanted != actual {
            return Err(StoreError::Conflict {
                aggregate,
                expected,
                actual,
            });
        }
        let mut positions = Vec::with_capacity(events.len());
        let mut sequence = actual;
        for one in events {
            let event = one.event;
            sequence += 1;
            let inserted = sqlx::query_scalar::<_, i64>(
                "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, \
                 event_type, version, data_subjects, payload, metadata, occurred_at, \
                 recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING position",
            )
            .bind(event.id.to_string())
            .bind(&event.aggregate_type)
            .bind(aggregate.to_string())
            .bind(
                i64::try_from(sequence)
                    .map_err(|_| StoreError::VersionOutOfRange { version: sequence })?,
            )
            .bind(&event.event_type)
            .bind(i64::from(event.version))
            .bind(serde_json::to_string(&event.data_subjects).expect("UUIDs serialize"))
            .bind(one.payload().to_string())
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
                .bind(one.subject(&self.prefix))
                .execute(&mut *tx)
                .await?;
            positions.push(position);
        }
        Ok(Appended {
            version: sequence,
            positions,
        })
    }
}

/// Adds to a file created by an earlier version the columns it lacks. Two processes opening
/// one old file at once may both try: the second finds the column there.
async fn add_columns(pool: &SqlitePool) -> Result<(), StoreError> {
    for (table, column, add) in ADDED_COLUMNS {
        let present = |pool| async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?) WHERE name = ?)",
            )
            .bind(table)
            .bind(column)
            .fetch_one(pool)
            .await
        };
        if present(pool).await? {
            continue;
        }
        if let Err(err) = sqlx::query(add).execute(pool).await
            && !present(pool).await?
        {
            return Err(err.into());
        }
    }
    Ok(())
}
