//! The embedded relay: moves committed outbox rows to the [`InProcessBus`] in position order
//! (which is commit order here), deleting each batch as it is published. Each batch is read
//! and deleted in one writing transaction, so two relays over one store take turns instead of
//! publishing the same rows twice.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::FromRow;

use crate::store::StoreError;

use super::bus::{BusMessage, InProcessBus};
use super::store::SqliteStore;

/// Rows moved per step.
const BATCH: i64 = 500;

#[derive(FromRow)]
struct Pending {
    position: i64,
    subject: String,
}

/// Publishes what is in the outbox now; returns how many events.
pub async fn relay_pending(store: &SqliteStore, bus: &InProcessBus) -> Result<usize, StoreError> {
    let mut moved = 0;
    loop {
        let mut tx = store.pool().begin_with("BEGIN IMMEDIATE").await?;
        let pending: Vec<Pending> =
            sqlx::query_as("SELECT position, subject FROM outbox ORDER BY position LIMIT ?")
                .bind(BATCH)
                .fetch_all(&mut *tx)
                .await?;
        let (Some(first), Some(last)) = (pending.first(), pending.last()) else {
            return Ok(moved);
        };
        // The events themselves, as stored (sealed): the bus carries what a stream would.
        let mut events: HashMap<i64, _> = store
            .sealed_between(&mut tx, first.position, last.position)
            .await?
            .into_iter()
            .map(|stored| (stored.position, stored.envelope))
            .collect();
        for p in &pending {
            let envelope = events.remove(&p.position).ok_or(StoreError::Corrupt {
                position: p.position,
                reason: "an outbox row without its event".into(),
            })?;
            bus.publish(BusMessage {
                subject: p.subject.clone(),
                envelope,
            });
        }
        sqlx::query("DELETE FROM outbox WHERE position BETWEEN ? AND ?")
            .bind(first.position)
            .bind(last.position)
            .execute(&mut *tx)
            .await?;
        // A lost commit republishes the batch: the bus, like JetStream, delivers at least once.
        tx.commit().await?;
        ::metrics::counter!(crate::metrics::RELAY_PUBLISHED).increment(pending.len() as u64);
        moved += pending.len();
    }
}

/// Relays until `shutdown` completes, then says how many events it published: woken by
/// appends, and every 100 ms for appends committed in a caller's own transaction. A failed
/// step is logged and tried again.
pub async fn run_relay(
    store: SqliteStore,
    bus: InProcessBus,
    shutdown: impl Future<Output = ()>,
) -> Result<usize, StoreError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut published = 0;
    loop {
        match relay_pending(&store, &bus).await {
            Ok(moved) => published += moved,
            Err(err) => tracing::warn!(error = %err, "embedded relay step failed; retrying"),
        }
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(published),
            () = store.appended().notified() => {}
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}
