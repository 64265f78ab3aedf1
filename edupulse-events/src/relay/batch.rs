//! What a relay step reports, the message each outbox row becomes, and the bookkeeping that
//! records exactly what was acknowledged.

use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use uuid::Uuid;

use crate::envelope::{Envelope, Metadata};
use crate::publish::event_headers;
use crate::store::{Store, StoreError};

use super::read::OutboxRow;

/// What one step achieved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    /// Rows read from the outbox.
    pub loaded: usize,
    /// Events JetStream acknowledged (duplicates included: they are already in the stream).
    pub published: usize,
    /// Events set aside as dead letters.
    pub dead_lettered: usize,
    /// Whether a publish failed; the rows not acknowledged are read again on the next step.
    pub interrupted: bool,
}

impl OutboxRow {
    /// The message for this row. Takes the payload and strings out of the row (each row is
    /// published once per batch) so the hot path copies nothing it does not have to.
    pub(super) fn take_message(&mut self, source: &str) -> PublishMessage {
        // Metadata is `{}` for most events: skip the parse then.
        let metadata = if self.metadata.len() <= 2 {
            Metadata::default()
        } else {
            serde_json::from_str(&self.metadata).unwrap_or_default()
        };
        let envelope = Envelope {
            id: self.event_id,
            event_type: std::mem::take(&mut self.event_type),
            // Both positive by the log's CHECKs (version >= 1, sequence >= 1).
            version: self.version.unsigned_abs(),
            aggregate_type: std::mem::take(&mut self.aggregate_type),
            aggregate_id: self.aggregate_id,
            sequence: self.sequence.unsigned_abs(),
            data_subjects: Vec::new(),
            occurred_at: self.occurred_at,
            metadata,
            payload: serde_json::Value::Null,
        };
        PublishMessage::build()
            .payload(Bytes::from(std::mem::take(&mut self.payload)))
            .headers(event_headers(&envelope, source))
            .message_id(
                envelope
                    .id
                    .hyphenated()
                    .encode_lower(&mut Uuid::encode_buffer()),
            )
    }
}

/// What batches left to record in PostgreSQL: the acknowledged rows and the dead letters.
#[derive(Debug, Default)]
pub struct Bookkeeping {
    pub acked: Vec<i64>,
    pub dead: Vec<(i64, String)>,
}

impl Bookkeeping {
    /// Adds a later batch's bookkeeping to this one, to be recorded together.
    pub fn absorb(&mut self, later: Bookkeeping) {
        self.acked.extend(later.acked);
        self.dead.extend(later.dead);
    }

    /// Rows to delete from the outbox.
    pub fn rows(&self) -> usize {
        self.acked.len() + self.dead.len()
    }
}

/// Deletes acknowledged rows and moves dead letters out of the outbox, in one transaction.
///
/// The commit does not wait for the WAL flush: if it is lost in a crash, the rows are simply
/// published again, and JetStream drops them as duplicates of their `Nats-Msg-Id`.
pub async fn record(store: &Store, book: Bookkeeping) -> Result<(), StoreError> {
    let Bookkeeping { mut acked, dead } = book;
    if acked.is_empty() && dead.is_empty() {
        return Ok(());
    }
    if dead.is_empty() {
        // The common case in one round trip and one transaction, where binding parameters
        // takes four (begin, settings, delete, commit): the statements of one simple query
        // run as one implicit transaction, which `SET LOCAL` applies to. The positions are
        // integers written by this function, nothing a user supplied.
        let statement = delete_acked(&acked);
        sqlx::raw_sql(&statement).execute(store.pool()).await?;
        return Ok(());
    }
    let mut tx = store.pool().begin().await?;
    sqlx::query(
        "SELECT set_config('synchronous_commit', 'off', true), set_config('jit', 'off', true)",
    )
    .execute(&mut *tx)
    .await?;
    let positions: Vec<i64> = dead.iter().map(|d| d.0).collect();
    let reasons: Vec<&str> = dead.iter().map(|d| d.1.as_str()).collect();
    sqlx::query(
        "INSERT INTO dead_letters (position, event_id, aggregate_id, subject, reason) \
         SELECT e.position, e.event_id, e.aggregate_id, o.subject, d.reason \
         FROM unnest($1::bigint[], $2::text[]) AS d(position, reason) \
         JOIN outbox o USING (position) JOIN events e USING (position)",
    )
    .bind(&positions)
    .bind(&reasons)
    .execute(&mut *tx)
    .await?;
    // Out of the outbox with the acknowledged rows, in one statement (dead letters are rare:
    // no runs).
    acked.extend(positions);
    sqlx::query("DELETE FROM outbox WHERE position = ANY($1)")
        .bind(&acked)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The acknowledged rows' delete as one simple query: the settings of its transaction (JIT
/// off too: the planner prices each run of the range delete at a share of the whole outbox,
/// and over a large backlog that estimate would compile the statement), then the delete.
fn delete_acked(positions: &[i64]) -> String {
    format!(
        "SET LOCAL synchronous_commit = off; SET LOCAL jit = off; {}",
        delete_statement(positions)
    )
}

/// Deletes the outbox rows at `positions`, as runs of consecutive positions: a backlog's rows
/// are acknowledged in long runs, and a range costs one index descent where a list of
/// positions costs one per row. A run holds only positions in `positions`, so nothing else is
/// deleted. Positions that make short runs (several relays sharing the partitions, rows set
/// aside, live traffic) are deleted by list.
fn delete_statement(positions: &[i64]) -> String {
    let (starts, ends) = runs(positions);
    if starts.len() * 2 > positions.len() {
        return format!(
            "DELETE FROM outbox WHERE position = ANY('{}'::bigint[])",
            array_literal(positions)
        );
    }
    format!(
        "DELETE FROM outbox o USING unnest('{}'::bigint[], '{}'::bigint[]) AS r(first, last) \
         WHERE o.position BETWEEN r.first AND r.last",
        array_literal(&starts),
        array_literal(&ends)
    )
}

/// `{1,2,3}`: a PostgreSQL array literal of integers.
fn array_literal(values: &[i64]) -> String {
    use std::fmt::Write as _;
    let mut literal = String::with_capacity(values.len() * 8 + 2);
    literal.push('{');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            literal.push(',');
        }
        let _ = write!(literal, "{value}");
    }
    literal.push('}');
    literal
}

/// The first and last position of each run of consecutive positions in `positions`.
fn runs(positions: &[i64]) -> (Vec<i64>, Vec<i64>) {
    let mut sorted = positions.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let (mut starts, mut ends) = (Vec::new(), Vec::<i64>::new());
    for position in sorted {
        match ends.last_mut() {
            Some(last) if *last + 1 == position => *last = position,
            _ => {
                starts.push(position);
                ends.push(position);
            }
        }
    }
    (starts, ends)
}

#[cfg(test)]
mod tests {
    use super::{delete_acked, runs};

    #[test]
    fn acknowledged_rows_are_deleted_in_one_statement_by_list_or_by_runs() {
        assert_eq!(
            delete_acked(&[9, 3, 5]),
            "SET LOCAL synchronous_commit = off; SET LOCAL jit = off; \
             DELETE FROM outbox WHERE position = ANY('{9,3,5}'::bigint[])"
        );
        assert_eq!(
            delete_acked(&[4, 1, 2, 3, 7, 8]),
            "SET LOCAL synchronous_commit = off; SET LOCAL jit = off; \
             DELETE FROM outbox o USING unnest('{1,7}'::bigint[], '{4,8}'::bigint[]) AS r(first, last) \
             WHERE o.position BETWEEN r.first AND r.last"
        );
    }

    #[test]
    fn positions_become_runs_of_consecutive_positions() {
        assert_eq!(
            runs(&[7, 3, 4, 5, 9, 10, 4, 1]),
            (vec![1, 3, 7, 9], vec![1, 5, 7, 10])
        );
        assert_eq!(runs(&[]), (vec![], vec![]));
    }
}
