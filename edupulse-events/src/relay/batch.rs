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
    metadata: serde_json::Value,
    occurred_at: DateTime<Utc>,
}

const LOAD_BATCH: &str = "\
    SELECT o.position, o.subject, e.event_id, e.aggregate_type, e.aggregate_id, e.sequence, \
           e.event_type, e.version, e.payload::text AS payload, e.metadata, e.occurred_at \
    FROM outbox o JOIN events e USING (position) \
    WHERE o.partition = ANY($1) ORDER BY o.position LIMIT $2";

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

pub async fn load_batch(
    store: &Store,
    partitions: &[i16],
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    Ok(sqlx::query_as(LOAD_BATCH)
        .bind(partitions)
        .bind(limit)
        .fetch_all(store.pool())
        .await?)
}

impl OutboxRow {
    fn message(&self, source: &str) -> PublishMessage {
        let envelope = Envelope {
            id: self.event_id,
            event_type: self.event_type.clone(),
            version: self.version as u32,
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id,
            sequence: self.sequence as u64,
            data_subjects: Vec::new(),
            occurred_at: self.occurred_at,
            metadata: serde_json::from_value::<Metadata>(self.metadata.clone()).unwrap_or_default(),
            payload: serde_json::Value::Null,
        };
        PublishMessage::build()
            .payload(Bytes::from(self.payload.clone().into_bytes()))
            .headers(event_headers(&envelope, source))
            .message_id(self.event_id.to_string())
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
    rows: &[OutboxRow],
) -> Result<StepOutcome, StoreError> {
    let mut outcome = StepOutcome {
        loaded: rows.len(),
        ..Default::default()
    };
    for wave in waves(rows) {
        let wave: Vec<&OutboxRow> = wave.into_iter().map(|i| &rows[i]).collect();
        let mut pending: Vec<(usize, PublishAckFuture)> = Vec::with_capacity(wave.len());
        let mut acked = Vec::with_capacity(wave.len());
        let mut dead = Vec::new();
        let mut failed = false;
        for (i, row) in wave.iter().enumerate() {
            match publisher
                .context()
                .send_publish(row.subject.clone(), row.message(source))
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
            match ack.await {
                Ok(_) => acked.push(wave[i].position),
                Err(err) => {
                    tracing::warn!(position = wave[i].position, error = %err, "publish not acknowledged");
                    failed = true;
                }
            }
        }
        outcome.published += acked.len();
        outcome.dead_lettered += dead.len();
        record(store, &acked, &wave, &dead).await?;
        if failed {
            outcome.interrupted = true;
            break;
        }
    }
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
async fn record(
    store: &Store,
    acked: &[i64],
    wave: &[&OutboxRow],
    dead: &[(usize, String)],
) -> Result<(), StoreError> {
    if acked.is_empty() && dead.is_empty() {
        return Ok(());
    }
    let mut tx = store.pool().begin().await?;
    if !dead.is_empty() {
        let positions: Vec<i64> = dead.iter().map(|(i, _)| wave[*i].position).collect();
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
