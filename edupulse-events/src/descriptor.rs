//! The const description of one event type that the derive registers through `inventory`.

use serde_json::Value;

use crate::any_event::AnyEvent;
use crate::error::PayloadError;
use crate::event::{DomainEvent, FieldName, PiiField};

/// Everything the runtime knows about one event type, built at compile time.
pub struct EventDescriptor {
    name: &'static str,
    version: u32,
    type_name: &'static str,
    aggregate: &'static str,
    subject: &'static str,
    rust_type: &'static str,
    aggregate_id_field: FieldName,
    data_subject_fields: &'static [FieldName],
    pii_fields: &'static [PiiField],
    upcast: Option<Upcast>,
    decode: fn(&Value) -> Result<AnyEvent, PayloadError>,
    schema: fn() -> Value,
    erased_pii: fn(usize) -> Value,
}

impl EventDescriptor {
    // Not public API. Used by generated code.
    #[doc(hidden)]
    pub const fn new<T: DomainEvent>(
        rust_type: &'static str,
        upcast: Option<Upcast>,
        schema: fn() -> Value,
        erased_pii: fn(usize) -> Value,
    ) -> Self {
        EventDescriptor {
            name: T::NAME,
            version: T::VERSION,
            type_name: T::TYPE,
            aggregate: T::AGGREGATE,
            subject: T::SUBJECT,
            rust_type,
            aggregate_id_field: T::AGGREGATE_ID_FIELD,
            data_subject_fields: T::DATA_SUBJECT_FIELDS,
            pii_fields: T::PII_FIELDS,
            upcast,
            decode: decode_as::<T>,
            schema,
            erased_pii,
        }
    }

    /// The event name without version, e.g. `quiz.submitted`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The payload's schema version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// `name.v{version}`, e.g. `quiz.submitted.v2`.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The aggregate type, e.g. `quiz`.
    pub fn aggregate(&self) -> &'static str {
        self.aggregate
    }

    /// The subject below the runtime's prefix.
    pub fn subject(&self) -> &'static str {
        self.subject
    }

    /// The Rust type's path, for error messages that must name the culprit.
    pub fn rust_type(&self) -> &'static str {
        self.rust_type
    }

    /// The crate that defines the type, as Rust names it (`lesson_events` for the package
    /// `lesson-events`): what a binary must link for the type to be registered in it.
    pub fn crate_name(&self) -> &'static str {
        self.rust_type.split("::").next().unwrap_or(self.rust_type)
    }

    /// The `#[event(aggregate_id)]` field.
    pub fn aggregate_id_field(&self) -> FieldName {
        self.aggregate_id_field
    }

    /// The `#[event(data_subject)]` fields.
    pub fn data_subject_fields(&self) -> &'static [FieldName] {
        self.data_subject_fields
    }

    /// The `#[event(pii)]` fields with their owners.
    pub fn pii_fields(&self) -> &'static [PiiField] {
        self.pii_fields
    }

    /// What the `index`th of [`pii_fields`](Self::pii_fields) holds once its owner is erased:
    /// the erased marker of [`Pii`](crate::privacy::Pii), or the attribute's replacement.
    pub fn erased_pii(&self, index: usize) -> Value {
        (self.erased_pii)(index)
    }

    /// The older version this one is upcast from, if any.
    pub fn upcast(&self) -> Option<&Upcast> {
        self.upcast.as_ref()
    }

    /// A JSON Schema (draft 2020-12) of the payload as the Rust type reads it (PII in clear,
    /// marked `"x-pii": true`): what the contract snapshots compare. The catalog publishes the
    /// wire form, where PII is sealed.
    pub fn payload_schema(&self) -> Value {
        (self.schema)()
    }

    /// Decodes a payload of exactly this type and version, without upcasting.
    pub fn decode_exact(&self, payload: &Value) -> Result<AnyEvent, PayloadError> {
        (self.decode)(payload)
    }
}

impl std::fmt::Debug for EventDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventDescriptor")
            .field("type_name", &self.type_name)
            .field("rust_type", &self.rust_type)
            .field("aggregate", &self.aggregate)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Decodes without tracking where it is (every stored event passes here); only a payload
/// that fails is decoded again, with its path, for the error to name the field.
fn decode_as<T: DomainEvent>(payload: &Value) -> Result<AnyEvent, PayloadError> {
    if let Ok(event) = T::deserialize(payload) {
        return Ok(AnyEvent::new(event));
    }
    let event: T = serde_path_to_error::deserialize(payload).map_err(PayloadError::from_serde)?;
    Ok(AnyEvent::new(event))
}

/// How an older version of an event becomes this one: the `From` impl named by
/// `#[event(upcast_from = Older)]`.
pub struct Upcast {
    from_name: &'static str,
    from_version: u32,
    apply: fn(AnyEvent) -> Result<AnyEvent, AnyEvent>,
}

impl Upcast {
    // Not public API. Used by generated code; the bound is where a missing `From` is reported.
    #[doc(hidden)]
    pub const fn new<Older: DomainEvent, Newer: DomainEvent + From<Older>>() -> Self {
        Upcast {
            from_name: Older::NAME,
            from_version: Older::VERSION,
            apply: upcast_as::<Older, Newer>,
        }
    }

    /// The older event's name.
    pub fn from_name(&self) -> &'static str {
        self.from_name
    }

    /// The older event's version.
    pub fn from_version(&self) -> u32 {
        self.from_version
    }

    /// Converts an event of the older type; hands it back unchanged if it is another type.
    pub(crate) fn apply(&self, event: AnyEvent) -> Result<AnyEvent, AnyEvent> {
        (self.apply)(event)
    }
}

fn upcast_as<Older: DomainEvent, Newer: DomainEvent + From<Older>>(
    event: AnyEvent,
) -> Result<AnyEvent, AnyEvent> {
    event
        .downcast::<Older>()
        .map(|older| AnyEvent::new(Newer::from(older)))
}

/// The node `inventory` collects: one per derived type.
#[doc(hidden)]
pub struct Registration(pub &'static EventDescriptor);

inventory::collect!(Registration);
