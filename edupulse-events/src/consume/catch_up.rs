//! Rebuilding a projection from the store through the subscriber's own handlers and inbox.

use crate::error::DecodeError;
use crate::registry::Registry;
use crate::store::LogCursor;

use crate::privacy::DataSubjectErased;

use super::dispatch::{AfterFailure, Delivery, Outcome, Source};
use super::error::CatchUpError;
use super::subscriber::Subscriber;

/// How often a long catch-up says how far it got.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

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
        let saved = self.saved_position().await?;
        self.catch_up_from(saved.unwrap_or(LogCursor::START)).await
    }

    /// [`Subscriber::catch_up`] from the first event of the log, whatever this subscriber read
    /// before: for a projection rebuilt from nothing (its inbox rows deleted with it, or the
    /// inbox skips what it recorded).
    pub async fn catch_up_from_start(&self) -> Result<u64, CatchUpError> {
        // Forgotten first: a rebuild that stops early must resume from where it stopped,
        // not from where the projection it replaced had got to.
        sqlx::query("DELETE FROM consumer_positions WHERE consumer = $1")
            .bind(self.dispatcher.consumer.as_str())
            .execute(self.runtime.store().pool())
            .await
            .map_err(database)?;
        self.catch_up_from(LogCursor::START).await
    }

    async fn catch_up_from(&self, from: LogCursor) -> Result<u64, CatchUpError> {
        let store = self.runtime.store();
        let registry = Registry::global();
        let consumer = self.dispatcher.consumer.as_str();
        let mut cursor = from;
        let mut applied = 0;
        let mut skipped_unknown = 0u64;
        let mut last_said = std::time::Instant::now();
        // Every event committed when the catch-up begins is read before it ends: `read_all`
        // holds back events younger than any transaction still running (anywhere in the
        // cluster), so an empty page alone does not mean the end of the log.
        let mut unread: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE (tx_id, position) > ($1::text::xid8, $2)",
        )
        .bind(cursor.tx_id.to_string())
        .bind(cursor.position)
        .fetch_one(store.pool())
        .await
        .map_err(database)?;
        tracing::info!(consumer, unread, from = cursor.position, "catch-up begins");
        let mut held_since = None;
        loop {
            let page = store.read_all(cursor, PAGE).await?;
            if page.is_empty() {
                if unread <= 0 {
                    tracing::info!(consumer, applied, skipped_unknown, "catch-up done");
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
            let mut stop_with = None;
            let mut positions = Vec::with_capacity(page.len());
            let mut deliveries = Vec::with_capacity(page.len());
            for stored in page {
                let event = match stored.decode(registry) {
                    Ok(event) => event,
                    Err(DecodeError::UnknownType { .. }) if self.skip_unknown_types => {
                        skipped_unknown += 1;
                        cursor = stored.cursor();
                        unread -= 1;
                        continue;
                    }
                    Err(err) => {
                        // The events before it are applied first, as before a failing handler.
                        stop_with = Some(CatchUpError::Undecodable {
                            event_id: stored.envelope.id,
                            position: stored.position,
                            source: err,
                        });
                        break;
                    }
                };
                cursor = stored.cursor();
                positions.push(stored.position);
                unread -= 1;
                let erasure = event.is::<DataSubjectErased>();
                deliveries.push(Delivery::new(stored.envelope, event, Source::Replay));
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
            // Everything up to the cursor went through the handlers: a later catch-up starts
            // after it. (Lost with a crash before this line, it only means reading again,
            // and the inbox skips what was applied.)
            self.save_position(cursor).await?;
            if let Some(err) = stop_with {
                return Err(err);
            }
            if last_said.elapsed() >= PROGRESS_EVERY {
                last_said = std::time::Instant::now();
                tracing::info!(
                    consumer,
                    applied,
                    unread,
                    position = cursor.position,
                    "catch-up progress"
                );
            }
        }
    }

    /// Where this subscriber's last catch-up got to, if it ran before.
    async fn saved_position(&self) -> Result<Option<LogCursor>, CatchUpError> {
        let saved: Option<(i64, i64)> =
            sqlx::query_as("SELECT tx_id, position FROM consumer_positions WHERE consumer = $1")
                .bind(self.dispatcher.consumer.as_str())
                .fetch_optional(self.runtime.store().pool())
                .await
                .map_err(database)?;
        Ok(saved.map(|(tx_id, position)| LogCursor { tx_id, position }))
    }

    async fn save_position(&self, cursor: LogCursor) -> Result<(), CatchUpError> {
        sqlx::query(
            "INSERT INTO consumer_positions (consumer, tx_id, position) VALUES ($1, $2, $3) \
             ON CONFLICT (consumer) DO UPDATE \
             SET tx_id = excluded.tx_id, position = excluded.position, updated_at = now() \
             WHERE (consumer_positions.tx_id, consumer_positions.position) \
                 < (excluded.tx_id, excluded.position)",
        )
        .bind(self.dispatcher.consumer.as_str())
        .bind(cursor.tx_id)
        .bind(cursor.position)
        .execute(self.runtime.store().pool())
        .await
        .map_err(database)?;
        Ok(())
    }
}

fn database(err: sqlx::Error) -> CatchUpError {
    CatchUpError::Database(crate::database::DatabaseError::from(err).to_string())
}
