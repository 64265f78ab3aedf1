//! One relay step: read a batch from the outbox, publish it, record exactly what was acked.

use std::collections::{HashMap, HashSet, VecDeque};

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use uuid::Uuid;

use crate::envelope::{Envelope, Metadata};
use crate::publish::{Publisher, event_headers};
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
    /// Whether a publish failed and the rest of the batch was left for a retry.
    pub interrupted: bool,
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

/// How many publishes may await their acknowledgement at once.
const MAX_IN_FLIGHT: usize = 1024;

/// What a batch left to record in PostgreSQL: the acknowledged rows and the dead letters.
#[derive(Debug, Default)]
pub struct Bookkeeping {
    acked: Vec<i64>,
    dead: Vec<(i64, String)>,
}

/// Publishes `rows` with up to [`MAX_IN_FLIGHT`] acknowledgements outstanding, but at most one
/// per aggregate: an aggregate's next event is sent only once its previous one was
/// acknowledged (or set aside as a dead letter). A failed publish therefore can never be
/// overtaken by a later event of its aggregate, even if the connection drops with messages in
/// its buffers and the client sends them after reconnecting. After a failure nothing new is
/// sent; the acknowledgements already on their way are still counted.
pub async fn publish_batch(
    publisher: &Publisher,
    source: &str,
    mut rows: Vec<OutboxRow>,
) -> (StepOutcome, Bookkeeping) {
    let mut outcome = StepOutcome {
        loaded: rows.len(),
        ..Default::default()
    };
    let mut book = Bookkeeping {
        acked: Vec::with_capacity(rows.len()),
        dead: Vec::new(),
    };
    let successor = successors(&rows);
    let mut ready: VecDeque<usize> = first_of_each_aggregate(&rows);
    // Polled together: an acknowledgement's timeout runs from its first poll, so awaiting them
    // one after another would, with the server gone, wait out each timeout in turn.
    let mut in_flight = FuturesUnordered::new();
    loop {
        while in_flight.len() < MAX_IN_FLIGHT && !outcome.interrupted {
            let Some(i) = ready.pop_front() else { break };
            let message = rows[i].take_message(source);
            let subject = std::mem::take(&mut rows[i].subject);
            match publisher.context().send_publish(subject, message).await {
                Ok(ack) => in_flight.push(async move { (i, ack.await) }),
                Err(err) if err.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    book.dead.push((
                        rows[i].position,
                        "message exceeds the NATS server's max_payload".to_owned(),
                    ));
                    ready.extend(successor[i]);
                }
                Err(err) => {
                    tracing::warn!(position = rows[i].position, error = %err, "publish failed");
                    outcome.interrupted = true;
                }
            }
        }
        let Some((i, ack)) = in_flight.next().await else {
            break;
        };
        match ack {
            Ok(_) => {
                book.acked.push(rows[i].position);
                ready.extend(successor[i]);
            }
            Err(err) => {
                tracing::warn!(position = rows[i].position, error = %err, "publish not acknowledged");
                outcome.interrupted = true;
            }
        }
    }
    outcome.published = book.acked.len();
    outcome.dead_lettered = book.dead.len();
    (outcome, book)
}

/// For each row, the index of its aggregate's next row in the batch.
fn successors(rows: &[OutboxRow]) -> Vec<Option<usize>> {
    let mut last: HashMap<Uuid, usize> = HashMap::with_capacity(rows.len());
    let mut next = vec![None; rows.len()];
    for (i, row) in rows.iter().enumerate() {
        if let Some(previous) = last.insert(row.aggregate_id, i) {
            next[previous] = Some(i);
        }
    }
    next
}

/// The first row of every aggregate in the batch, in position order.
fn first_of_each_aggregate(rows: &[OutboxRow]) -> VecDeque<usize> {
    let mut seen: HashSet<Uuid> = HashSet::with_capacity(rows.len());
    (0..rows.len())
        .filter(|&i| seen.insert(rows[i].aggregate_id))
        .collect()
}

/// Deletes acknowledged rows and moves dead letters out of the outbox, in one transaction.
///
/// The commit does not wait for the WAL flush: if it is lost in a crash, the rows are simply
/// published again, and JetStream drops them as duplicates of their `Nats-Msg-Id`.
pub async fn record(store: &Store, book: Bookkeeping) -> Result<(), StoreError> {
    let Bookkeeping { acked, dead } = book;
    if acked.is_empty() && dead.is_empty() {
        return Ok(());
    }
    let mut tx = store.pool().begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    if !dead.is_empty() {
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
        delete(&mut tx, &positions).await?;
    }
    if !acked.is_empty() {
        delete(&mut tx, &acked).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn delete(tx: &mut sqlx::PgConnection, positions: &[i64]) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM outbox WHERE position = ANY($1)")
        .bind(positions)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
