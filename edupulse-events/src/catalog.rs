//! A serializable description of every event type, for documentation and for other teams.

use serde::Serialize;
use serde_json::Value;

use crate::descriptor::EventDescriptor;
use crate::event::{FieldName, PiiField};

/// Every registered event type, sorted by name and version.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    /// One entry per `(name, version)`.
    pub events: Vec<CatalogEntry>,
}

/// One event type as other teams need to know it.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogEntry {
    /// e.g. `quiz.submitted`.
    pub name: &'static str,
    /// The payload's schema version.
    pub version: u32,
    /// e.g. `quiz.submitted.v2`.
    #[serde(rename = "type")]
    pub type_name: &'static str,
    /// Whether this is the newest version of its name (what decoding produces).
    pub latest: bool,
    /// The aggregate type.
    pub aggregate: &'static str,
    /// The subject below the runtime's prefix.
    pub subject: &'static str,
    /// The Rust type that defines it.
    pub rust_type: &'static str,
    /// The field holding the aggregate id.
    pub aggregate_id_field: FieldName,
    /// The fields naming the people the event is about.
    pub data_subject_fields: &'static [FieldName],
    /// Personal-data fields, encrypted per owner and erasable.
    pub pii_fields: &'static [PiiField],
    /// The type string this version is upcast from, if any.
    pub upcast_from: Option<String>,
    /// JSON Schema (draft 2020-12) of the payload.
    pub schema: Value,
}

impl CatalogEntry {
    pub(crate) fn describe(d: &'static EventDescriptor, latest: bool) -> Self {
        CatalogEntry {
            name: d.name(),
            version: d.version(),
            type_name: d.type_name(),
            latest,
            aggregate: d.aggregate(),
            subject: d.subject(),
            rust_type: d.rust_type(),
            aggregate_id_field: d.aggregate_id_field(),
            data_subject_fields: d.data_subject_fields(),
            pii_fields: d.pii_fields(),
            upcast_from: d
                .upcast()
                .map(|u| format!("{}.v{}", u.from_name(), u.from_version())),
            schema: d.payload_schema(),
        }
    }
}
