//! Appending on PostgreSQL: one statement writes every event of the call and its outbox rows,
//! inside the caller's transaction, after checking the aggregate's version in the same
//! statement.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::envelope::Envelope;
use crate::store::flow::ToStore;
use crate::store::{Appended, ExpectedVersion, Store, StoreError};

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

// The six statements, one per call shape (one event; several, each column bound as an array)
// and kind of check. Each inserts the events and their outbox rows in one round trip; their
// bind order is `ONE_BINDS` and `MANY_BINDS`, the version an `Exact` checks last ($12).
//
// Why they read as they do:
// - The aggregate's version and the transaction's id are taken before the first position is
//   drawn: the relay relies on every uncommitted position belonging to a transaction its
//   snapshots show as running (relay/read.rs). The new stream's lookup has none, and OFFSET 0
//   keeps it from being merged into the insert (pg_current_xact_id is only STABLE), whose first
//   column, the position, would then be drawn first.
// - A new stream needs no lookup: the unique key (aggregate, sequence) refuses a second first
//   event, and `conflict_or` turns that refusal into the conflict.
// - Each outbox row wakes the relay only if it is parked (see `wake_parked_relay` in the
//   migrations, and `wakeup.rs` for the names both sides use); as a condition of the outbox
//   insert it runs only when events were inserted, and both branches keep the row.
// - Several events keep the caller's order (WITH ORDINALITY), so sequences and positions ascend
//   together, and an event's ordinal (sequence - version) picks its subject.
// - `Any` learns the one event's sequence from the insert; the other checks know it
//   beforehand, so their statement ends with the outbox insert itself, one step fewer.
const APPEND_ONE: Statements = Statements {
    any: include_str!("sql/append_one_any.sql"),
    new_stream: include_str!("sql/append_one_new_stream.sql"),
    exact: include_str!("sql/append_one_exact.sql"),
};

const APPEND_MANY: Statements = Statements {
    any: include_str!("sql/append_many_any.sql"),
    new_stream: include_str!("sql/append_many_new_stream.sql"),
    exact: include_str!("sql/append_many_exact.sql"),
};

/// What `Store::append` binds to a one-event statement, in order, with the type PostgreSQL
/// reads each as (the payload and metadata are bound as JSON text and cast); an `Exact`
/// statement also takes the expected version (`EXPECTED_BIND`).
pub(crate) const ONE_BINDS: [(&str, &str); 11] = [
    ("aggregate id", "UUID"),
    ("aggregate type", "TEXT"),
    ("event id", "UUID"),
    ("event type", "TEXT"),
    ("version", "INT4"),
    ("data subjects", "UUID[]"),
    ("payload", "JSONB"),
    ("metadata", "JSONB"),
    ("occurred at", "TIMESTAMPTZ"),
    ("subject", "TEXT"),
    ("outbox partition", "INT2"),
];

/// The same for several events: one array per column.
pub(crate) const MANY_BINDS: [(&str, &str); 11] = [
    ("aggregate id", "UUID"),
    ("aggregate type", "TEXT"),
    ("event ids", "UUID[]"),
    ("event types", "TEXT[]"),
    ("versions", "INT4[]"),
    ("data subjects, comma-joined", "TEXT[]"),
    ("payloads", "TEXT[]"),
    ("metadata", "TEXT[]"),
    ("occurred at", "TIMESTAMPTZ[]"),
    ("subjects", "TEXT[]"),
    ("outbox partition", "INT2"),
];

/// The expected version an `Exact` statement compares with, bound last.
pub(crate) const EXPECTED_BIND: (&str, &str) = ("expected version", "INT8");

/// Every append statement with its binds, for the tests that pin them.
pub fn statements() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    let mut all = Vec::new();
    for (statements, binds) in [(&APPEND_ONE, ONE_BINDS), (&APPEND_MANY, MANY_BINDS)] {
        for expected in [
            ExpectedVersion::Any,
            ExpectedVersion::NoStream,
            ExpectedVersion::Exact(0),
        ] {
            let mut binds = binds.to_vec();
            if let ExpectedVersion::Exact(_) = expected {
                binds.push(EXPECTED_BIND);
            }
            all.push((statements.checking(expected), binds));
        }
    }
    all
}

impl Store {
    /// Inserts sealed events of one aggregate and their outbox rows in `tx`, checking the
    /// aggregate's version in the same statement (see [`Store::append`]).
    pub(super) async fn insert(
        &self,
        tx: &mut PgConnection,
        expected: ExpectedVersion,
        events: &[ToStore<'_>],
    ) -> Result<Appended, StoreError> {
        let first = events[0].event;
        let aggregate = first.aggregate_id;
        let partition = i16::try_from(self.partition_of(aggregate))
            .expect("partition counts are clamped to i16 by with_partitions");
        let result = if let [one] = events {
            let row = Row::of(self, one)?;
            let event = one.event;
            let query = sqlx::query_as::<_, (i64, i64)>(APPEND_ONE.checking(expected))
                .bind(aggregate)
                .bind(&event.aggregate_type)
                .bind(event.id)
                .bind(&event.event_type)
                .bind(wire_version(event)?)
                .bind(&event.data_subjects)
                .bind(&row.payload)
                .bind(&row.metadata)
                .bind(event.occurred_at)
                .bind(&row.subject)
                .bind(partition);
            bind_expected(query, expected)?.fetch_all(&mut *tx).await
        } else {
            self.insert_many(tx, expected, events, partition).await?
        };
        let rows = match result {
            // Positions ascend with the events' order (see `append_many_*.sql`); the statement
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
        let version = rows.last().map_or(Ok(0), |r| stored_sequence(r.1, r.0))?;
        Ok(Appended {
            version,
            positions: rows.into_iter().map(|r| r.0).collect(),
        })
    }

    /// Several events of one aggregate in one statement, each column bound as one array.
    async fn insert_many(
        &self,
        tx: &mut PgConnection,
        expected: ExpectedVersion,
        events: &[ToStore<'_>],
        partition: i16,
    ) -> Result<Result<Vec<(i64, i64)>, sqlx::Error>, StoreError> {
        let first = events[0].event;
        let columns = Columns::of(self, events)?;
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
        Ok(bind_expected(query, expected)?.fetch_all(&mut *tx).await)
    }

    /// The committed version of an aggregate, read outside any transaction.
    pub async fn version(&self, aggregate: Uuid) -> Result<u64, StoreError> {
        version_of(&self.pool, aggregate).await
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

/// Binds the version an `Exact` statement compares with (`$12`); the others take none. A
/// version beyond PostgreSQL's `bigint` cannot be any aggregate's: refused, not wrapped.
fn bind_expected(
    query: AppendQuery<'_>,
    expected: ExpectedVersion,
) -> Result<AppendQuery<'_>, StoreError> {
    match expected {
        ExpectedVersion::Exact(n) => {
            let n = i64::try_from(n).map_err(|_| StoreError::VersionOutOfRange { version: n })?;
            Ok(query.bind(n))
        }
        ExpectedVersion::Any | ExpectedVersion::NoStream => Ok(query),
    }
}

/// An event's type version as the log's `int` column holds it.
fn wire_version(event: &Envelope) -> Result<i32, StoreError> {
    i32::try_from(event.version).map_err(|_| StoreError::Unstorable {
        type_name: event.type_string(),
        reason: "its version is beyond the log's range (2^31 - 1)",
    })
}

/// A sequence read back from the log, which only ever holds positive ones.
pub(super) fn stored_sequence(sequence: i64, position: i64) -> Result<u64, StoreError> {
    u64::try_from(sequence).map_err(|_| StoreError::Corrupt {
        position,
        reason: "a negative sequence".into(),
    })
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
    stored_sequence(version, 0)
}

/// What one event needs besides its own fields: its payload and metadata as JSON text, its
/// subject. Shared by both append statements, so both refuse the same payloads.
struct Row {
    payload: String,
    metadata: String,
    subject: String,
}

impl Row {
    fn of(store: &Store, one: &ToStore<'_>) -> Result<Self, StoreError> {
        let e = one.event;
        let payload = one.payload().to_string();
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
            subject: one.subject(&store.subject_prefix),
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
    fn of(store: &Store, events: &[ToStore<'_>]) -> Result<Self, StoreError> {
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
        for one in events {
            let row = Row::of(store, one)?;
            let e = one.event;
            c.event_ids.push(e.id);
            c.event_types.push(e.event_type.clone());
            c.versions.push(wire_version(e)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbered parameters a statement uses, in order of first use, deduplicated.
    fn parameters(sql: &str) -> std::collections::BTreeSet<usize> {
        let code: String = sql
            .lines()
            .map(|line| line.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        code.split('$')
            .skip(1)
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect()
    }

    #[test]
    fn every_statement_uses_exactly_the_parameters_bound_to_it() {
        let all = statements();
        assert_eq!(all.len(), 6);
        for (sql, binds) in all {
            let expected: std::collections::BTreeSet<usize> = (1..=binds.len()).collect();
            assert_eq!(parameters(sql), expected, "{sql}");
        }
    }

    #[test]
    fn every_statement_wakes_the_relay_by_the_names_the_relay_uses() {
        for (sql, _) in statements() {
            assert!(sql.contains(parked_lock_class!()), "{sql}");
            assert!(sql.contains(notify_channel!()), "{sql}");
        }
    }
}
