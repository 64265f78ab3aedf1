//! Rebuilding a projection from the store through the subscriber's own handlers and inbox.

use crate::registry::Registry;
use crate::store::LogCursor;

use crate::privacy::DataSubjectErased;

use super::dispatch::{AfterFailure, Delivery, Outcome, REPLAYED};
use super::error::CatchUpError;
use super::subscriber::Subscriber;

/// Events read from the store per query.
const PAGE: i64 = 1_000;

/// How long a catch-up waits, at a stretch, for events that committed before it began but that
/// `read_all` holds back behind an older transaction still running.
const HELD_BACK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Subscriber {
    /// Applies every event already in the store, from the first, through the same handlers
    /// and inbox: how a new or rebuilt projection catches up before (or while) it runs live.
    /// Events it applies are skipped when the stream delivers them, and events the stream
    /// delivered before are skipped here, so together they apply each event once, with no
    /// gap. An event whose handler fails stops the catch-up with the handler's error, since a
    /// projection built past a hole would be wrong; the events before it stay applied, and
    /// running the catch-up again resumes. Returns how many events were applied now.
    pub async fn catch_up(&self) -> Result<u64, CatchUpError> {
        let store = self.runtime.store();
        let registry = Registry::global();
        let mut cursor = LogCursor::START;
        let mut applied = 0;
        // Every event committed when the catch-up begins is read before it ends: `read_all`
        // holds back events younger than any transaction still running (anywhere in the
        // cluster), so an empty page alone does not mean the end of the log.
        let mut unread: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(store.pool())
            .await
            .map_err(|err| {
                CatchUpError::Database(crate::store::DatabaseError::from(err).to_string())
            })?;
        let mut held_since = None;
        loop {
            let page = store.read_all(cursor, PAGE).await?;
            if page.is_empty() {
                if unread <= 0 {
                    return Ok(applied);
                }
                let since = *held_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= HELD_BACK_WAIT {
                    tracing::warn!(
                        unread,
                        "catch-up ends with events still held back behind an older open \
                         transaction; the subscription delivers them"
                    );
                    return Ok(applied);
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
            held_since = None;
            let mut positions = Vec::with_capacity(page.len());
            let mut deliveries = Vec::with_capacity(page.len());
            for stored in page {
                let event = stored.decode(registry)?;
                cursor = stored.cursor();
                positions.push(stored.position);
                unread -= 1;
                let erasure = event.is::<DataSubjectErased>();
                deliveries.push(Delivery::new(stored.envelope, event, REPLAYED));
                // The page was opened with the keys as they were; what follows an erasure is
                // read again once its hook has evicted the subject's key.
                if erasure {
                    break;
                }
            }
            for (chunk, positions) in deliveries
                .chunks_mut(self.max_batch)
                .zip(positions.chunks(self.max_batch))
            {
                self.dispatcher
                    .dispatch(store.pool(), chunk, AfterFailure::Stop)
                    .await;
                for (delivery, &position) in chunk.iter_mut().zip(positions) {
                    match delivery.outcome.take() {
                        Some(Outcome::Done) => applied += 1,
                        Some(Outcome::Skipped) => {}
                        Some(Outcome::Retry(_)) | None => {
                            return Err(CatchUpError::Database(
                                "the inbox transaction failed; run the catch-up again".into(),
                            ));
                        }
                        Some(Outcome::SetAside(reason)) => {
                            return Err(CatchUpError::Handler {
                                event_id: delivery.envelope.id,
                                position,
                                reason,
                            });
                        }
                    }
                }
            }
        }
    }
}
