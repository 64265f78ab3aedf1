//! One relay step: read a batch from the outbox, publish it, record exactly what was acked.

use std::collections::HashMap;

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sqlx::FromRow;
use uuid::Uuid;

use crate::envelope::{Envelope, Metadata};
use crate::publish::{Publisher, event_headers};
use crate::store::{Store, StoreError};

#[derive(FromRow)]
pub struct OutboxRow {
    pub position: i64,
    pub subject: String,
    event_id: Uuid,
    aggregate_type: String,
    aggregate_id: Uuid,
    sequence: i64,
    event_type: String,
    version: i32,
    payload: String,
    metadata: String,
    occurred_at: DateTime<Utc>,
}

// The outbox rows first, then their events by a position range: joining the two tables
// directly lets the planner merge-join from the start of the log, which grows with it.
// A read starting above 0 leaves out aggregates with a row at or below its start (a late
// commit): their later rows must wait until that row is published.
const LOAD_BATCH: &str = "\
    WITH o AS MATERIALIZED ( \
        SELECT position, subject FROM outbox AS c \
        WHERE partition = ANY($1) AND position > $2 \
          AND ($2 = 0 OR NOT EXISTS ( \
              SELECT 1 FROM outbox AS b \
              WHERE b.aggregate_id = c.aggregate_id AND b.position <= $2)) \
        ORDER BY position LIMIT $3) \
    SELECT o.position, o.subject, e.event_id, e.aggregate_type, e.aggregate_id, e.sequence, \
           e.event_type, e.version, e.payload::text AS payload, e.metadata::text AS metadata, \
           e.occurred_at \
    FROM o JOIN events e ON e.position = o.position \
    WHERE e.position >= (SELECT min(position) FROM o) \
      AND e.position <= (SELECT max(position) FROM o) \
    ORDER BY o.position";

/// What one step achieved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    /// Rows read from the outbox.
    pub loaded: usize,
    /// Events JetStream acknowledged (duplicates included: they are already in the stream).
    pub published: usize,
    /// Events set aside as dead letters.
    pub dead_lettered: usize,
    /// Whether a publish failed and the rest of the batch was left for a retry.
    pub interrupted: bool,
}

/// Up to `limit` outbox rows of `partitions` after position `after`, in position order.
pub async fn load_batch(
    store: &Store,
    partitions: &[i16],
    after: i64,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    Ok(sqlx::query_as(LOAD_BATCH)
        .bind(partitions)
        .bind(after)
        .bind(limit)
        .fetch_all(store.pool())
        .await?)
}

impl OutboxRow {
    /// The message for this row. Takes the payload and strings out of the row (each row is
    /// published once per batch) so the hot path copies nothing it does not have to.
    fn take_message(&mut self, source: &str) -> PublishMessage {
        // Metadata is `{}` for most events: skip the parse then.
        let metadata = if self.metadata.len() <= 2 {
            Metadata::default()
        } else {
            serde_json::from_str(&self.metadata).unwrap_or_default()
        };
        let envelope = Envelope {
            id: self.event_id,
            event_type: std::mem::take(&mut self.event_type),
            version: self.version as u32,
            aggregate_type: std::mem::take(&mut self.aggregate_type),
            aggregate_id: self.aggregate_id,
            sequence: self.sequence as u64,
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

/// Publishes `rows` in waves (see [`waves`]): within a wave every aggregate appears once, so
/// all of a wave's publishes can be in flight together, and an aggregate's next event is sent only after its
/// previous one was acknowledged. A failed publish therefore can never be overtaken by a later
/// event of the same aggregate, even if the connection drops with messages in its buffers.
pub async fn publish_batch(
    store: &Store,
    publisher: &Publisher,
    source: &str,
    mut rows: Vec<OutboxRow>,
) -> Result<StepOutcome, StoreError> {
    let mut outcome = StepOutcome {
        loaded: rows.len(),
        ..Default::default()
    };
    let mut acked = Vec::with_capacity(rows.len());
    let mut dead: Vec<(usize, String)> = Vec::new();
    for wave in waves(&rows) {
        let mut pending: Vec<(usize, PublishAckFuture)> = Vec::with_capacity(wave.len());
        let mut failed = false;
        for i in wave {
            let message = rows[i].take_message(source);
            let row = &rows[i];
            match publisher
                .context()
                .send_publish(row.subject.clone(), message)
                .await
            {
                Ok(ack) => pending.push((i, ack)),
                Err(err) if err.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    dead.push((
                        i,
                        "message exceeds the NATS server's max_payload".to_owned(),
                    ));
                }
                Err(err) => {
                    tracing::warn!(position = row.position, error = %err, "publish failed");
                    failed = true;
                }
            }
        }
        for (i, ack) in pending {
            let row = &rows[i];
            match ack.await {
                Ok(_) => acked.push(row.position),
                Err(err) => {
                    tracing::warn!(position = row.position, error = %err, "publish not acknowledged");
                    failed = true;
                }
            }
        }
        if failed {
            outcome.interrupted = true;
            break;
        }
    }
    outcome.published = acked.len();
    outcome.dead_lettered = dead.len();
    let dead: Vec<(i64, String)> = dead
        .into_iter()
        .map(|(i, why)| (rows[i].position, why))
        .collect();
    record(store, &acked, &dead).await?;
    Ok(outcome)
}

/// Splits a batch (in position order) into waves: wave k holds the k-th row of every aggregate
/// in the batch, so each aggregate appears at most once per wave and in order across waves.
fn waves(rows: &[OutboxRow]) -> Vec<Vec<usize>> {
    let mut rank: HashMap<Uuid, usize> = HashMap::new();
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let k = rank.entry(row.aggregate_id).or_insert(0);
        if *k == waves.len() {
            waves.push(Vec::new());
        }
        waves[*k].push(i);
        *k += 1;
    }
    waves
}

/// Deletes acknowledged rows and moves dead letters out of the outbox, in one transaction.
///
/// The commit does not wait for the WAL flush: if it is lost in a crash, the rows are simply
/// published again, and JetStream drops them as duplicates of their `Nats-Msg-Id`.
async fn record(store: &Store, acked: &[i64], dead: &[(i64, String)]) -> Result<(), StoreError> {
    if acked.is_empty() && dead.is_empty() {
        return Ok(());
    }
    let mut tx = store.pool().begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    if !dead.is_empty() {
        let positions: Vec<i64> = dead.iter().map(|(position, _)| *position).collect();
        let reasons: Vec<&str> = dead.iter().map(|(_, r)| r.as_str()).collect();
        sqlx::query(
            "INSERT INTO dead_letters (position, event_id, aggregate_id, subject, reason) \
             SELECT e.position, e.event_id, e.aggregate_id, o.subject, d.reason \
             FROM unnest($1::bigint[], $2::text[]) AS d(position, reason) \
             JOIN events e USING (position) JOIN outbox o USING (position)",
        )
        .bind(&positions)
        .bind(&reasons)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM outbox WHERE position = ANY($1)")
            .bind(&positions)
            .execute(&mut *tx)
            .await?;
    }
    if !acked.is_empty() {
        sqlx::query("DELETE FROM outbox WHERE position = ANY($1)")
            .bind(acked)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
