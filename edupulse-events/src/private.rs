//! Not public API. Used by generated code: every path `#[derive(DomainEvent)]` emits goes
//! through here, so a user's crate needs no direct dependency on what the runtime uses.

pub use ::core::option::Option;
pub use ::inventory;
pub use ::serde_json::Value as JsonValue;
pub use ::std::vec::Vec;
pub use ::uuid::Uuid;

pub use crate::descriptor::{EventDescriptor, Registration, Upcast};
pub use crate::event::{DomainEvent, EntityId, FieldName, PiiField, PiiMask, SubjectIds};
pub use crate::schema;
