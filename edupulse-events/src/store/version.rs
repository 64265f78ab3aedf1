//! What an append expects and what it returns: the optimistic-concurrency contract every
//! backend keeps.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::Envelope;
use crate::store::StoreError;

/// What the writer believes the aggregate's version (its last sequence) to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check: append after whatever is there.
    Any,
    /// The aggregate must have no events yet.
    NoStream,
    /// The aggregate's last sequence must be exactly this.
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("none (new stream)"),
            ExpectedVersion::Exact(n) => write!(f, "{n}"),
        }
    }
}

/// The one aggregate `events` belong to (`None` when there are none); an append holds one
/// aggregate's events, since its version check and sequence are per aggregate.
pub(crate) fn single_aggregate(events: &[Envelope]) -> Result<Option<Uuid>, StoreError> {
    let Some(first) = events.first() else {
        return Ok(None);
    };
    let aggregate = first.aggregate_id;
    match events.iter().find(|e| e.aggregate_id != aggregate) {
        Some(other) => Err(StoreError::MixedAggregates {
            first: aggregate,
            other: other.aggregate_id,
        }),
        None => Ok(Some(aggregate)),
    }
}

/// Where an append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The aggregate's version after the append: the last event's sequence.
    pub version: u64,
    /// The log positions of the appended events, in order.
    pub positions: Vec<i64>,
}
