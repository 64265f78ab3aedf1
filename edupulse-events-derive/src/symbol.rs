//! Every key the derive understands, in one place, so parsing, checking and "did you mean"
//! suggestions can never disagree about spelling.

/// The attribute's own name: `#[event(...)]`.
pub const EVENT: &str = "event";
/// serde's attribute, read only for the names serde gives fields on the wire.
pub const SERDE: &str = "serde";

// Container keys.
pub const NAME: &str = "name";
pub const VERSION: &str = "version";
pub const AGGREGATE: &str = "aggregate";
pub const SUBJECT: &str = "subject";
pub const UPCAST_FROM: &str = "upcast_from";
pub const CRATE: &str = "crate";

// Field keys.
pub const AGGREGATE_ID: &str = "aggregate_id";
pub const DATA_SUBJECT: &str = "data_subject";
pub const PII: &str = "pii";
/// Inside `pii(...)`: the data-subject field whose key encrypts this value.
pub const OWNER: &str = "owner";
/// Inside `pii(...)`: the value readers get once the owner is erased.
pub const ERASED: &str = "erased";

pub const CONTAINER_KEYS: &[&str] = &[NAME, VERSION, AGGREGATE, SUBJECT, UPCAST_FROM, CRATE];
pub const FIELD_KEYS: &[&str] = &[AGGREGATE_ID, DATA_SUBJECT, PII];
pub const PII_KEYS: &[&str] = &[OWNER, ERASED];
