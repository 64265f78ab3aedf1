//! A stored snapshot of an aggregate's state, as both backends keep it.

use serde_json::Value;
use uuid::Uuid;

/// An aggregate's state at a version, serialized, with the people its events were about.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The aggregate.
    pub aggregate_id: Uuid,
    /// Its type, e.g. `quiz`.
    pub aggregate_type: String,
    /// The state type's schema version: a snapshot of another version is ignored.
    pub state_version: u32,
    /// The aggregate's version the state was folded to.
    pub version: u64,
    /// The state, as JSON.
    pub state: Value,
    /// The data subjects of the events folded into it: erasing one deletes the snapshot.
    pub data_subjects: Vec<Uuid>,
}
