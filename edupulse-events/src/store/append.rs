//! Appending: one statement writes every event of the call and its outbox rows, inside the
//! caller's transaction, after checking the aggregate's version in the same statement.

use std::fmt;

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::envelope::Envelope;
use crate::registry::Registry;
use crate::store::{Store, StoreError};

/// What the writer believes the aggregate's version (its last sequence) to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check: append after whatever is there.
    Any,
    /// The aggregate must have no events yet.
    NoStream,
    /// The aggregate's last sequence must be exactly this.
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("none (new stream)"),
            ExpectedVersion::Exact(n) => write!(f, "{n}"),
        }
    }
}

/// The one aggregate `events` belong to (`None` when there are none); an append holds one
/// aggregate's events, since its version check and sequence are per aggregate.
pub(crate) fn single_aggregate(events: &[Envelope]) -> Result<Option<Uuid>, StoreError> {
    let Some(first) = events.first() else {
        return Ok(None);
    };
    let aggregate = first.aggregate_id;
    match events.iter().find(|e| e.aggregate_id != aggregate) {
        Some(other) => Err(StoreError::MixedAggregates {
            first: aggregate,
            other: other.aggregate_id,
        }),
        None => Ok(Some(aggregate)),
    }
}

/// Where an append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The aggregate's version after the append: the last event's sequence.
    pub version: u64,
    /// The log positions of the appended events, in order.
    pub positions: Vec<i64>,
}

// The statements of one append shape, one per kind of version check, so each is planned for
// exactly its check: PostgreSQL sets up every node of a plan on each execution, so a check a
// call does not need still costs it.
struct Statements {
    any: &'static str,
    new_stream: &'static str,
    exact: &'static str,
}

impl Statements {
    fn checking(&self, expected: ExpectedVersion) -> &'static str {
        match expected {
            ExpectedVersion::Any => self.any,
            ExpectedVersion::NoStream => self.new_stream,
            ExpectedVersion::Exact(_) => self.exact,
        }
    }
}

// The aggregate's version, and the transaction's id taken before the first position is drawn:
// the relay relies on every uncommitted position belonging to a transaction its snapshots
// show as running (relay/read.rs). The lookup's aggregate keeps its subquery a step of its own
// below the insert; the new stream's has none, and OFFSET 0 keeps it from being merged into
// the insert (pg_current_xact_id is only STABLE), whose first column, the position, would
// then be drawn first.
// A new stream needs no lookup: the unique key (aggregate, sequence) refuses a second first
// event, and `conflict_or` turns that refusal into the conflict.
macro_rules! current_version {
    (lookup) => {
        "SELECT coalesce(max(sequence), 0) AS version, pg_current_xact_id() AS tx
    FROM events WHERE aggregate_id = $1"
    };
    (new_stream) => {
        "SELECT 0::bigint AS version, pg_current_xact_id() AS tx OFFSET 0"
    };
}

// Only `Exact` compares: `NoStream` relies on the unique key, `Any` appends after anything.
macro_rules! version_filter {
    (any) => {
        ""
    };
    (exact) => {
        "WHERE c.version = $12"
    };
}

// Each outbox row notifies the relay only if the relay is parked; otherwise it holds the
// partition's parking lock shared until the transaction ends, so the relay cannot park before
// this commit is visible. Why: the migration `wake_parked_relay`. As a condition of the outbox
// insert it runs only when events were inserted; both branches are true, so every row is kept.
macro_rules! wake_parked_relay {
    () => {
        wake_parked_relay!("false")
    };
    // Rows for which `$done` holds skip the check: one per statement is enough.
    ($done:literal) => {
        concat!(
            "WHERE CASE WHEN ",
            $done,
            " THEN true WHEN pg_try_advisory_xact_lock_shared(",
            parked_lock_class!(),
            ", $11) THEN true ELSE pg_notify(",
            notify_channel!(),
            ", '') IS NOT NULL END"
        )
    };
}

// The version check and both inserts in one round trip. `input` keeps the caller's order
// (WITH ORDINALITY) so sequences and positions ascend together, and an event's ordinal
// (sequence - version) picks its subject for the outbox row.
macro_rules! append_many_sql {
    ($current:tt, $filter:tt) => {
        concat!(
            "WITH current AS (",
            current_version!($current),
            r#"), input AS (
    SELECT * FROM unnest($3::uuid[], $4::text[], $5::int[], $6::text[], $7::text[], $8::text[],
                         $9::timestamptz[])
        WITH ORDINALITY AS t(event_id, event_type, version, data_subjects, payload, metadata,
                             occurred_at, ord)
), inserted AS (
    INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, version,
                        data_subjects, payload, metadata, occurred_at, tx_id)
    SELECT i.event_id, $2, $1, c.version + i.ord, i.event_type, i.version,
           coalesce(string_to_array(nullif(i.data_subjects, ''), ',')::uuid[], '{}'),
           i.payload::jsonb, i.metadata::jsonb, i.occurred_at, c.tx
    FROM input i CROSS JOIN current c
    "#,
            version_filter!($filter),
            r#"
    ORDER BY i.ord
    RETURNING position, sequence
), outboxed AS (
    INSERT INTO outbox (position, partition, subject)
    SELECT ins.position, $11, ($10::text[])[ins.sequence - c.version]
    FROM inserted ins CROSS JOIN current c
    "#,
            wake_parked_relay!("ins.sequence - c.version > 1"),
            "
)
SELECT position, sequence FROM inserted"
        )
    };
}

const APPEND_MANY: Statements = Statements {
    any: append_many_sql!(lookup, any),
    new_stream: append_many_sql!(new_stream, any),
    exact: append_many_sql!(lookup, exact),
};

// One event's outbox row, with the wake-up.
macro_rules! outbox_one {
    () => {
        concat!(
            "INSERT INTO outbox (position, partition, subject)
    SELECT position, $11, $10 FROM inserted
    ",
            wake_parked_relay!()
        )
    };
}

// The same for the commonest call, one event: scalar parameters, no arrays to build or unnest.
// `Any` learns the sequence from the insert; the other checks know it beforehand
// (`$sequence`), so their statement ends with the outbox insert itself, one step fewer.
macro_rules! append_one_sql {
    (lookup, any) => {
        concat!(
            append_one_events!(lookup, any),
            ", outboxed AS (",
            outbox_one!(),
            ")
SELECT position, sequence FROM inserted"
        )
    };
    ($current:tt, $filter:tt, $sequence:literal) => {
        concat!(
            append_one_events!($current, $filter),
            "
",
            outbox_one!(),
            "
RETURNING position, ",
            $sequence
        )
    };
}

macro_rules! append_one_events {
    ($current:tt, $filter:tt) => {
        concat!(
            r#"WITH inserted AS (
    INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, version,
                        data_subjects, payload, metadata, occurred_at, tx_id)
    SELECT $3, $2, $1, c.version + 1, $4, $5, $6, $7::jsonb, $8::jsonb, $9, c.tx
    FROM ("#,
            current_version!($current),
            ") c
    ",
            version_filter!($filter),
            "
    RETURNING position, sequence
)"
        )
    };
}

const APPEND_ONE: Statements = Statements {
    any: append_one_sql!(lookup, any),
    new_stream: append_one_sql!(new_stream, any, "1::bigint"),
    exact: append_one_sql!(lookup, exact, "$12 + 1"),
};

impl Store {
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
        tx: &mut PgConnection,
        expected: ExpectedVersion,
        events: &[Envelope],
    ) -> Result<Appended, StoreError> {
        let Some(aggregate) = single_aggregate(events)? else {
            // Nothing names an aggregate, so there is no version to report.
            return Ok(Appended {
                version: 0,
                positions: Vec::new(),
            });
        };
        let partition = self.partition_of(aggregate) as i16;
        let sealed = super::sealing::seal_payloads(self.keys.as_deref(), tx, events).await?;
        let result = if let [event] = events {
            let row = Row::of(self, event, sealed[0].as_ref())?;
            let query = sqlx::query_as::<_, (i64, i64)>(APPEND_ONE.checking(expected))
                .bind(aggregate)
                .bind(&event.aggregate_type)
                .bind(event.id)
                .bind(&event.event_type)
                .bind(event.version as i32)
                .bind(&event.data_subjects)
                .bind(&row.payload)
                .bind(&row.metadata)
                .bind(event.occurred_at)
                .bind(&row.subject)
                .bind(partition);
            bind_expected(query, expected).fetch_all(&mut *tx).await
        } else {
            self.append_many(tx, expected, events, &sealed, partition)
                .await?
        };
        let rows = match result {
            // Positions ascend with the events' order (see `append_many_sql`); the statement
            // returns them unsorted.
            Ok(mut rows) => {
                rows.sort_unstable();
                rows
            }
            Err(err) => return Err(self.conflict_or(err, aggregate, expected).await),
        };
        if rows.is_empty() {
            let actual = version_of(&mut *tx, aggregate).await?;
            return Err(StoreError::Conflict {
                aggregate,
                expected,
                actual,
            });
        }
        Ok(Appended {
            version: rows.last().map_or(0, |r| r.1 as u64),
            positions: rows.into_iter().map(|r| r.0).collect(),
        })
    }

    /// Several events of one aggregate in one statement, each column bound as one array.
    async fn append_many(
        &self,
        tx: &mut PgConnection,
        expected: ExpectedVersion,
        events: &[Envelope],
        sealed: &[Option<serde_json::Value>],
        partition: i16,
    ) -> Result<Result<Vec<(i64, i64)>, sqlx::Error>, StoreError> {
        let first = &events[0];
        let columns = Columns::of(self, events, sealed)?;
        let query = sqlx::query_as::<_, (i64, i64)>(APPEND_MANY.checking(expected))
            .bind(first.aggregate_id)
            .bind(&first.aggregate_type)
            .bind(&columns.event_ids)
            .bind(&columns.event_types)
            .bind(&columns.versions)
            .bind(&columns.data_subjects)
            .bind(&columns.payloads)
            .bind(&columns.metadata)
            .bind(&columns.occurred_at)
            .bind(&columns.subjects)
            .bind(partition);
        Ok(bind_expected(query, expected).fetch_all(&mut *tx).await)
    }

    /// The committed version of an aggregate, read outside any transaction.
    pub async fn version(&self, aggregate: Uuid) -> Result<u64, StoreError> {
        version_of(&self.pool, aggregate).await
    }

    /// Appends in a transaction of its own, committed before returning: for events that go
    /// with no business rows of the caller's.
    pub async fn append_committed(
        &self,
        expected: ExpectedVersion,
        events: &[Envelope],
    ) -> Result<Appended, StoreError> {
        let mut tx = self.begin_read_committed().await?;
        let appended = self.append(&mut tx, expected, events).await?;
        tx.commit().await?;
        Ok(appended)
    }

    /// Turns a unique-key violation from a lost race into the typed conflict it is.
    async fn conflict_or(
        &self,
        err: sqlx::Error,
        aggregate: Uuid,
        expected: ExpectedVersion,
    ) -> StoreError {
        let lost_race = err
            .as_database_error()
            .and_then(|db| db.constraint())
            .is_some_and(|c| c == "events_aggregate_sequence");
        if !lost_race {
            return err.into();
        }
        // The winner may be this very transaction (a new stream started twice in it), which a
        // read from outside cannot see; the refused sequence exists, so the version is at least
        // that (for `Any`, whose refused sequence is unknown here, at least 1).
        let refused = match expected {
            ExpectedVersion::Exact(n) => n + 1,
            ExpectedVersion::Any | ExpectedVersion::NoStream => 1,
        };
        match self.version(aggregate).await {
            Ok(committed) => StoreError::Conflict {
                aggregate,
                expected,
                actual: committed.max(refused),
            },
            Err(other) => other,
        }
    }
}

type AppendQuery<'q> =
    sqlx::query::QueryAs<'q, sqlx::Postgres, (i64, i64), sqlx::postgres::PgArguments>;

/// Binds the version an `Exact` statement compares with (`$12`); the others take none.
fn bind_expected(query: AppendQuery<'_>, expected: ExpectedVersion) -> AppendQuery<'_> {
    match expected {
        ExpectedVersion::Exact(n) => query.bind(n as i64),
        ExpectedVersion::Any | ExpectedVersion::NoStream => query,
    }
}

/// The last sequence of an aggregate (0 for none), in whatever transaction `executor` is.
async fn version_of<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    aggregate: Uuid,
) -> Result<u64, StoreError> {
    let version: i64 =
        sqlx::query_scalar("SELECT coalesce(max(sequence), 0) FROM events WHERE aggregate_id = $1")
            .bind(aggregate)
            .fetch_one(executor)
            .await?;
    Ok(version as u64)
}

/// What one event needs besides its own fields: its payload and metadata as JSON text, its
/// subject. Shared by both append statements, so both refuse the same payloads.
struct Row {
    payload: String,
    metadata: String,
    subject: String,
}

impl Row {
    /// `sealed` is the payload with its PII sealed, when it has any.
    fn of(
        store: &Store,
        e: &Envelope,
        sealed: Option<&serde_json::Value>,
    ) -> Result<Self, StoreError> {
        let descriptor = Registry::global()
            .get(&e.event_type, e.version)
            .ok_or_else(|| StoreError::Unregistered(e.type_string()))?;
        let payload = sealed.unwrap_or(&e.payload).to_string();
        // jsonb cannot hold U+0000; refusing here keeps the caller's transaction usable and
        // names the type, where PostgreSQL's error would quote the payload.
        if payload.contains("\\u0000") {
            return Err(StoreError::Unstorable {
                type_name: e.type_string(),
                reason: "a string in the payload contains a NUL character (U+0000)",
            });
        }
        Ok(Row {
            payload,
            metadata: serde_json::to_string(&e.metadata).expect("metadata is plain JSON"),
            subject: format!("{}.{}", store.subject_prefix, descriptor.subject()),
        })
    }
}

/// One array per column: UNNEST of bound arrays has no 65,535-parameter cap.
struct Columns {
    event_ids: Vec<Uuid>,
    event_types: Vec<String>,
    versions: Vec<i32>,
    data_subjects: Vec<String>,
    payloads: Vec<String>,
    metadata: Vec<String>,
    occurred_at: Vec<chrono::DateTime<chrono::Utc>>,
    subjects: Vec<String>,
}

impl Columns {
    fn of(
        store: &Store,
        events: &[Envelope],
        sealed: &[Option<serde_json::Value>],
    ) -> Result<Self, StoreError> {
        let mut c = Columns {
            event_ids: Vec::with_capacity(events.len()),
            event_types: Vec::with_capacity(events.len()),
            versions: Vec::with_capacity(events.len()),
            data_subjects: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            metadata: Vec::with_capacity(events.len()),
            occurred_at: Vec::with_capacity(events.len()),
            subjects: Vec::with_capacity(events.len()),
        };
        for (e, sealed) in events.iter().zip(sealed) {
            let row = Row::of(store, e, sealed.as_ref())?;
            c.event_ids.push(e.id);
            c.event_types.push(e.event_type.clone());
            c.versions.push(e.version as i32);
            let ids: Vec<String> = e.data_subjects.iter().map(Uuid::to_string).collect();
            c.data_subjects.push(ids.join(","));
            c.payloads.push(row.payload);
            c.metadata.push(row.metadata);
            c.occurred_at.push(e.occurred_at);
            c.subjects.push(row.subject);
        }
        Ok(c)
    }
}
