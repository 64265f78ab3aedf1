//! Reading the outbox in position order without ever letting a late commit be overtaken.
//!
//! Positions are drawn when a row is inserted, not when it commits, so a read that has moved
//! past position `p` can later find `p` committed below it. The relay must publish such a row
//! before any later event of its aggregate. Two facts make this cheap to get exactly right:
//!
//! - An append takes its transaction id before it draws a position (store/append.rs), so every
//!   position below a read's last row that the read could not see belongs to a transaction
//!   that was running at the read's snapshot: one in its xip list, or one whose id is at or
//!   above its xmax (PostgreSQL lists running transactions only below xmax, which is the
//!   newest finished id + 1, so a transaction that took its id after the newest one to finish
//!   is running but not listed).
//! - An aggregate's next event can only be inserted after the transaction holding its previous
//!   one committed (the version check and the unique `(aggregate_id, sequence)` key), so by the
//!   time any later event of that aggregate is visible, the late row is visible too.
//!
//! So each read also fetches the rows, at or below its start, of the transactions the previous
//! read's snapshot saw running (listed, or at or above its xmax), in the same statement (one
//! snapshot): a late row and its aggregate's later rows always land in the same batch, in
//! position order. Looking up ids at or above xmax costs an index range over the transactions
//! that began since the previous read, which is bounded by the append rate, not the backlog.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, Row};
use uuid::Uuid;

use crate::store::{Store, StoreError};

/// One outbox row with its event, as the relay publishes it.
pub struct OutboxRow {
    pub position: i64,
    pub subject: String,
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub sequence: i64,
    pub event_type: String,
    pub version: i32,
    pub payload: String,
    pub metadata: String,
    pub occurred_at: DateTime<Utc>,
    /// The outbox partition, whose fence the event is published under.
    pub partition: i16,
    /// What the pipeline orders by: one publish in flight per gate, an aggregate always
    /// behind the same gate (its own id, or its fence lane's; see `relay::fencing`).
    pub gate: Uuid,
    /// The read's snapshot, `xmin:xmax:xip,...` (the same on every row of a read).
    snapshot: String,
}

// By column position, in `LOAD_BATCH`'s order: the derived impl looks every column up by name,
// which the relay would pay on each of its rows.
impl FromRow<'_, PgRow> for OutboxRow {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(OutboxRow {
            position: row.try_get(0)?,
            subject: row.try_get(1)?,
            event_id: row.try_get(2)?,
            aggregate_type: row.try_get(3)?,
            aggregate_id: row.try_get(4)?,
            sequence: row.try_get(5)?,
            event_type: row.try_get(6)?,
            version: row.try_get(7)?,
            payload: row.try_get(8)?,
            metadata: row.try_get(9)?,
            occurred_at: row.try_get(10)?,
            snapshot: row.try_get(11)?,
            partition: row.try_get(12)?,
            gate: Uuid::nil(),
        })
    }
}

/// Where the next read starts: after `after`, plus whatever the transactions running at the
/// last read (those in `in_doubt`, and every id at or above `xmax`) have committed at or below
/// it. The default reads everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadFrom {
    after: i64,
    in_doubt: Vec<i64>,
    xmax: i64,
}

impl Default for ReadFrom {
    fn default() -> Self {
        // From the beginning there is nothing below the start to be in doubt about.
        ReadFrom {
            after: 0,
            in_doubt: Vec::new(),
            xmax: i64::MAX,
        }
    }
}

impl ReadFrom {
    /// Whether this read starts at the beginning of the outbox.
    pub fn is_from_start(&self) -> bool {
        self.after == 0
    }

    /// Where the read after `rows` starts (`rows` as returned by [`Reader::load_batch`] from
    /// `self`).
    pub fn after_batch(&self, rows: &[OutboxRow]) -> ReadFrom {
        let Some(last) = rows.last() else {
            return self.clone();
        };
        let (xmax, in_doubt) = running_transactions(&last.snapshot);
        ReadFrom {
            after: last.position.max(self.after),
            in_doubt,
            xmax,
        }
    }
}

// The outbox rows first, then their events by a position range: joining the two tables
// directly lets the planner merge-join from the start of the log, which grows with it. Late
// rows (see the module documentation) are few; they are looked up by key (`= ANY(ARRAY(..))`),
// as a join would let the planner scan a table whose deleted rows a long transaction keeps.
// Their positions come from `relay_late_positions` (migration 10), which keeps PostgreSQL
// from scanning the whole log for them.
const LOAD_BATCH: &str = "\
    WITH fresh AS MATERIALIZED ( \
        SELECT position, subject, partition FROM outbox \
        WHERE partition = ANY($1) AND position > $2 \
        ORDER BY position LIMIT $3 \
    ), late AS MATERIALIZED ( \
        SELECT position, subject, partition FROM outbox \
        WHERE position = ANY(ARRAY( \
                SELECT relay_late_positions($4::bigint[], $5::text::xid8, $2))) \
          AND partition = ANY($1) \
    ), snap AS MATERIALIZED ( \
        SELECT pg_current_snapshot()::text AS snapshot \
    ) \
    SELECT o.position, o.subject, e.event_id, e.aggregate_type, e.aggregate_id, \
           e.sequence, e.event_type, e.version, e.payload::text AS payload, \
           e.metadata::text AS metadata, e.occurred_at, snap.snapshot, o.partition \
    FROM fresh o JOIN events e ON e.position = o.position CROSS JOIN snap \
    WHERE e.position >= (SELECT min(position) FROM fresh) \
      AND e.position <= (SELECT max(position) FROM fresh) \
    UNION ALL \
    SELECT o.position, o.subject, e.event_id, e.aggregate_type, e.aggregate_id, \
           e.sequence, e.event_type, e.version, e.payload::text, e.metadata::text, \
           e.occurred_at, snap.snapshot, o.partition \
    FROM late o JOIN events e ON e.position = ANY(ARRAY(SELECT position FROM late)) \
                            AND e.position = o.position \
    CROSS JOIN snap";

/// The relay's own connection for its reads, taken from the store's pool (so it has whatever
/// the pool sets up on connecting, the schema included) and kept out of it, because it
/// changes session settings: it uses a generic plan for the read. PostgreSQL otherwise plans
/// this prepared statement afresh for each read's parameters, and planning was most of a
/// small read's cost (0.33 ms of 0.45 ms for a read of two rows); under live traffic the
/// relay makes a small read every few events.
#[derive(Default)]
pub struct Reader {
    connection: Option<PgConnection>,
}

impl Reader {
    /// Up to `limit` outbox rows of `partitions` from `from`, in position order. Takes the
    /// reader and gives it back, so a read can run in a task of its own.
    pub async fn load_batch(
        mut self,
        store: &Store,
        partitions: &[i16],
        from: &ReadFrom,
        limit: i64,
    ) -> (Self, Result<Vec<OutboxRow>, StoreError>) {
        let rows = self.load(store, partitions, from, limit).await;
        if rows.is_err() {
            // The connection may be what failed: the next read takes another.
            self.connection = None;
        }
        (self, rows)
    }

    async fn load(
        &mut self,
        store: &Store,
        partitions: &[i16],
        from: &ReadFrom,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let connection = if let Some(connection) = &mut self.connection {
            connection
        } else {
            let mut connection = store.pool().acquire().await?.detach();
            // A generic plan is priced for any parameters: never let it start parallel
            // workers or JIT compilation (tens of milliseconds each) for a read that
            // usually finds a few rows.
            for setting in [
                "SET plan_cache_mode = force_generic_plan",
                "SET max_parallel_workers_per_gather = 0",
                "SET jit = off",
            ] {
                sqlx::query(setting).execute(&mut connection).await?;
            }
            self.connection.insert(connection)
        };
        let mut rows: Vec<OutboxRow> = sqlx::query_as(LOAD_BATCH)
            .bind(partitions)
            .bind(from.after)
            .bind(limit)
            .bind(&from.in_doubt)
            .bind(from.xmax.to_string())
            .fetch_all(connection)
            .await?;
        // Sorted here rather than by the server: the rows come nearly in order, which costs a
        // stable sort one pass, where PostgreSQL would sort the whole batch with its payloads.
        rows.sort_by_key(|row| row.position);
        Ok(rows)
    }
}

/// The xmax and the xip list of a `pg_snapshot` in its text form `xmin:xmax:xip1,xip2,...`.
fn running_transactions(snapshot: &str) -> (i64, Vec<i64>) {
    let mut parts = snapshot.splitn(3, ':');
    let _xmin = parts.next();
    // A snapshot always has an xmax; if it could not be read, doubt every id.
    let xmax = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let xip = parts
        .next()
        .unwrap_or("")
        .split(',')
        .filter_map(|xid| xid.parse().ok())
        .collect();
    (xmax, xip)
}

#[cfg(test)]
mod tests {
    use super::running_transactions;

    #[test]
    fn the_running_transactions_are_the_snapshots_xip_list_and_everything_from_xmax() {
        assert_eq!(
            running_transactions("740:745:740,742"),
            (745, vec![740, 742])
        );
        assert_eq!(running_transactions("745:745:"), (745, Vec::<i64>::new()));
    }
}
