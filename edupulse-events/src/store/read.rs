//! Reading: what a stored event is, and PostgreSQL's statements for one aggregate's stream
//! and for the whole log in commit-safe order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use uuid::Uuid;

use crate::any_event::AnyEvent;
use crate::envelope::{Envelope, Metadata};
use crate::error::DecodeError;
use crate::registry::Registry;
#[cfg(feature = "postgres")]
use crate::store::Store;
use crate::store::StoreError;

/// An event as stored, with its place in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Global position (allocation order, not commit order).
    pub position: i64,
    /// The writing transaction's id: with `position`, the commit-safe order of the log.
    pub tx_id: i64,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
    /// The event itself, with its sequence set.
    pub envelope: Envelope,
}

impl StoredEvent {
    /// Decodes the payload through `registry`, upcast to the newest version.
    pub fn decode(&self, registry: &Registry) -> Result<AnyEvent, DecodeError> {
        registry.decode(
            &self.envelope.event_type,
            self.envelope.version,
            &self.envelope.payload,
        )
    }

    /// The cursor just after this event, for [`Store::read_all`].
    pub fn cursor(&self) -> LogCursor {
        LogCursor {
            tx_id: self.tx_id,
            position: self.position,
        }
    }
}

/// A place in the whole log. The log is read in `(tx_id, position)` order, restricted to
/// transactions older than every transaction still running: a position is allocated at insert
/// but becomes visible at commit, so reading by position alone would skip an event whose
/// transaction commits after a later position's did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LogCursor {
    /// The last read event's transaction id.
    pub tx_id: i64,
    /// The last read event's position.
    pub position: i64,
}

impl LogCursor {
    /// Before the first event.
    pub const START: LogCursor = LogCursor {
        tx_id: 0,
        position: 0,
    };
}

/// One aggregate's events and its current version.
#[derive(Debug)]
pub struct AggregateStream {
    /// The last sequence, 0 for a new aggregate: pass it as `ExpectedVersion::Exact`.
    pub version: u64,
    /// The events in sequence order, each decoded to the newest version of its type.
    pub events: Vec<AnyEvent>,
}

impl AggregateStream {
    /// One aggregate's stored events (in sequence order, after sequence `after`) decoded
    /// through the global registry.
    pub(crate) fn decoded(stored: &[StoredEvent], after: u64) -> Result<Self, LoadError> {
        let version = stored.last().map_or(after, |e| e.envelope.sequence);
        let registry = Registry::global();
        let events = stored
            .iter()
            .map(|e| e.decode(registry))
            .collect::<Result<_, _>>()?;
        Ok(AggregateStream { version, events })
    }

    /// The same from envelopes read for folding.
    pub(crate) fn from_envelopes(events: &[Envelope], after: u64) -> Result<Self, LoadError> {
        let version = events.last().map_or(after, |e| e.sequence);
        let registry = Registry::global();
        let events = events
            .iter()
            .map(|e| registry.decode(&e.event_type, e.version, &e.payload))
            .collect::<Result<_, _>>()?;
        Ok(AggregateStream { version, events })
    }
}

/// One row of the log in the database's own types, PostgreSQL's as they are, SQLite's once
/// parsed: what both backends check the same way on the way to a [`StoredEvent`].
#[derive(FromRow)]
pub(crate) struct LogRow {
    pub(crate) position: i64,
    pub(crate) tx_id: i64,
    pub(crate) event_id: Uuid,
    pub(crate) aggregate_type: String,
    pub(crate) aggregate_id: Uuid,
    pub(crate) sequence: i64,
    pub(crate) event_type: String,
    pub(crate) version: i64,
    pub(crate) data_subjects: Vec<Uuid>,
    pub(crate) payload: serde_json::Value,
    pub(crate) metadata: serde_json::Value,
    pub(crate) occurred_at: DateTime<Utc>,
    pub(crate) recorded_at: DateTime<Utc>,
}

/// A stored row that cannot be read back, at `position`.
pub(crate) fn corrupt(position: i64, reason: &str) -> StoreError {
    StoreError::Corrupt {
        position,
        reason: reason.into(),
    }
}

#[cfg(feature = "postgres")]
const COLUMNS: &str = "position, tx_id::text::bigint AS tx_id, event_id, aggregate_type, \
     aggregate_id, sequence, event_type, version::bigint AS version, data_subjects, payload, \
     metadata, occurred_at, recorded_at";

impl AsMut<Envelope> for StoredEvent {
    fn as_mut(&mut self) -> &mut Envelope {
        &mut self.envelope
    }
}

impl TryFrom<LogRow> for StoredEvent {
    type Error = StoreError;

    fn try_from(row: LogRow) -> Result<Self, StoreError> {
        let position = row.position;
        let metadata: Metadata = serde_json::from_value(row.metadata)
            .map_err(|_| corrupt(position, "metadata is not an edupulse metadata object"))?;
        let version = u32::try_from(row.version)
            .map_err(|_| corrupt(position, "a type version out of range"))?;
        let sequence =
            u64::try_from(row.sequence).map_err(|_| corrupt(position, "a negative sequence"))?;
        Ok(StoredEvent {
            position: row.position,
            tx_id: row.tx_id,
            recorded_at: row.recorded_at,
            envelope: Envelope {
                id: row.event_id,
                event_type: row.event_type,
                version,
                aggregate_type: row.aggregate_type,
                aggregate_id: row.aggregate_id,
                sequence,
                data_subjects: row.data_subjects,
                occurred_at: row.occurred_at,
                metadata,
                payload: row.payload,
            },
        })
    }
}

/// An event read for folding: what decoding it and opening its PII need.
#[cfg_attr(feature = "postgres", derive(FromRow))]
pub(crate) struct FoldRow {
    pub(crate) position: i64,
    pub(crate) event_id: Uuid,
    pub(crate) sequence: i64,
    pub(crate) event_type: String,
    pub(crate) version: i64,
    pub(crate) data_subjects: Vec<Uuid>,
    pub(crate) payload: serde_json::Value,
}

impl FoldRow {
    /// As an envelope of `aggregate_id`, the rest (metadata, times) at their defaults: it
    /// never leaves the store's read.
    pub(crate) fn into_envelope(self, aggregate_id: Uuid) -> Result<Envelope, StoreError> {
        let position = self.position;
        Ok(Envelope {
            id: self.event_id,
            event_type: self.event_type,
            version: u32::try_from(self.version)
                .map_err(|_| corrupt(position, "a type version out of range"))?,
            aggregate_type: String::new(),
            aggregate_id,
            sequence: u64::try_from(self.sequence)
                .map_err(|_| corrupt(position, "a negative sequence"))?,
            data_subjects: self.data_subjects,
            occurred_at: DateTime::<Utc>::UNIX_EPOCH,
            metadata: Metadata::default(),
            payload: self.payload,
        })
    }
}

#[cfg(feature = "postgres")]
impl Store {
    /// One aggregate's events after `after` for folding, read in `tx`.
    pub(super) async fn select_for_fold(
        tx: &mut sqlx::PgConnection,
        aggregate_id: Uuid,
        after: u64,
    ) -> Result<Vec<Envelope>, StoreError> {
        let after =
            i64::try_from(after).map_err(|_| StoreError::VersionOutOfRange { version: after })?;
        let rows: Vec<FoldRow> = sqlx::query_as(
            "SELECT position, event_id, sequence, event_type, version::bigint AS version, \
             data_subjects, payload FROM events WHERE aggregate_id = $1 AND sequence > $2 \
             ORDER BY sequence",
        )
        .bind(aggregate_id)
        .bind(after)
        .fetch_all(&mut *tx)
        .await?;
        rows.into_iter()
            .map(|row| row.into_envelope(aggregate_id))
            .collect()
    }

    /// One aggregate's events as stored, in sequence order.
    pub(super) async fn select_stream(
        &self,
        aggregate_id: Uuid,
        after: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let after =
            i64::try_from(after).map_err(|_| StoreError::VersionOutOfRange { version: after })?;
        let rows: Vec<LogRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM events WHERE aggregate_id = $1 AND sequence > $2 \
             ORDER BY sequence"
        ))
        .bind(aggregate_id)
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(StoredEvent::try_from).collect()
    }

    /// Up to `limit` committed events after `after` as stored, in commit-safe order. Events of
    /// transactions still running (and of any transaction younger than the oldest running
    /// one) wait for the next call; none is ever skipped.
    pub(super) async fn select_after(
        &self,
        after: LogCursor,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows: Vec<LogRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM events \
             WHERE (tx_id, position) > ($1::text::xid8, $2) \
               AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY tx_id, position LIMIT $3"
        ))
        .bind(after.tx_id)
        .bind(after.position)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(StoredEvent::try_from).collect()
    }
}

/// Why [`Store::load`] failed: the store, or an event that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event does not decode with this binary's types.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}
