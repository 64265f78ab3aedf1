//! Snapshots of aggregates' states, as both backends keep them.

use serde_json::Value;
use uuid::Uuid;

/// An aggregate's state at a version, serialized, to be saved with the people its events
/// were about.
///
/// A state read from a snapshot knows only the subjects of the events folded after it
/// (`base`): the rest are on the snapshot's row. Saving such a state merges them there, so a
/// command's read never carries a long history's list of people; and it saves nothing once
/// that row is gone (an erasure deleted it), because the people it named are then unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The aggregate.
    pub aggregate_id: Uuid,
    /// The snapshot's key: the aggregate type and the state's type.
    pub aggregate_type: String,
    /// The state type's schema version: a snapshot of another version is ignored.
    pub state_version: u32,
    /// The aggregate's version the state was folded to.
    pub version: u64,
    /// The state, as JSON.
    pub state: Value,
    /// The version of the snapshot the state was read from; 0 when it was folded from the
    /// first event.
    pub base: u64,
    /// The data subjects of the events folded after `base`: every one of them when `base`
    /// is 0. Erasing any subject of the snapshot deletes it.
    pub data_subjects: Vec<Uuid>,
}

/// A snapshot as read back: what a command's read needs, without the people it names.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSnapshot {
    /// The aggregate's version the state was folded to.
    pub version: u64,
    /// The state, as JSON.
    pub state: Value,
}
