//! The embedded relay: moves committed outbox rows to the [`InProcessBus`] in position order
//! (which is commit order here), deleting each batch as it is published.

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
        let pending: Vec<Pending> =
            sqlx::query_as("SELECT position, subject FROM outbox ORDER BY position LIMIT ?")
                .bind(BATCH)
                .fetch_all(store.pool())
                .await?;
        let Some(first) = pending.first() else {
            return Ok(moved);
        };
        // The events themselves, as stored (sealed): the bus carries what a stream would.
        let span = pending.last().map_or(0, |p| p.position) - first.position + 1;
        let rows = store.sealed_after(first.position - 1, span).await?;
        let mut tx = store.pool().begin_with("BEGIN IMMEDIATE").await?;
        for p in &pending {
            if let Some(stored) = rows.iter().find(|r| r.position == p.position) {
                store_bus_publish(bus, &p.subject, stored);
            }
            sqlx::query("DELETE FROM outbox WHERE position = ?")
                .bind(p.position)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        ::metrics::counter!(crate::metrics::RELAY_PUBLISHED).increment(pending.len() as u64);
        moved += pending.len();
    }
}

fn store_bus_publish(bus: &InProcessBus, subject: &str, stored: &crate::store::StoredEvent) {
    bus.publish(BusMessage {
        subject: subject.to_owned(),
        envelope: stored.envelope.clone(),
    });
}

/// Relays until `shutdown` completes: woken by appends, and every 100 ms for appends
/// committed in a caller's own transaction.
pub async fn run_relay(
    store: SqliteStore,
    bus: InProcessBus,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StoreError> {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        relay_pending(&store, &bus).await?;
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            () = store.appended().notified() => {}
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}
