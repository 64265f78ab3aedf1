//! The trait every event type implements (through the derive), and the small value types its
//! constants are made of.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::descriptor::EventDescriptor;

/// An immutable fact of the domain, with its identity fixed at compile time.
///
/// Implemented by `#[derive(DomainEvent)]`, never by hand: the derive checks the attributes,
/// generates these constants and registers the type with the [`Registry`](crate::Registry).
/// The derive also implements `Debug` with every `#[event(pii)]` field shown as `<pii>`, so an
/// event can go into a log line or a panic message safely.
///
/// ```
/// use edupulse_events::privacy::Pii;
/// use edupulse_events::{DomainEvent, Uuid};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, DomainEvent)]
/// #[event(name = "quiz.submitted", version = 2, aggregate = "quiz")]
/// struct QuizSubmitted {
///     #[event(aggregate_id)]
///     quiz_id: Uuid,
///     #[event(data_subject)]
///     student_id: Uuid,
///     #[event(pii)]
///     student_name: Pii<String>,
///     score: f32,
/// }
///
/// assert_eq!(QuizSubmitted::TYPE, "quiz.submitted.v2");
/// assert_eq!(QuizSubmitted::subject("edupulse"), "edupulse.quiz.submitted.v2");
/// let event = QuizSubmitted {
///     quiz_id: Uuid::nil(),
///     student_id: Uuid::max(),
///     student_name: "Ada".into(),
///     score: 0.9,
/// };
/// assert_eq!(event.data_subjects(), vec![Uuid::max()]);
/// assert!(!format!("{event:?}").contains("Ada"));
/// ```
pub trait DomainEvent: Serialize + DeserializeOwned + fmt::Debug + Send + Sync + 'static {
    /// The event's name without version, e.g. `quiz.submitted`.
    const NAME: &'static str;
    /// The schema version of this payload shape, starting at 1.
    const VERSION: u32;
    /// Name and version together, e.g. `quiz.submitted.v2`: what the log and headers carry.
    const TYPE: &'static str;
    /// The aggregate type this event belongs to, e.g. `quiz`.
    const AGGREGATE: &'static str;
    /// The NATS subject below the runtime's prefix, e.g. `quiz.submitted.v2`.
    const SUBJECT: &'static str;
    /// [`SUBJECT`](Self::SUBJECT) split into its tokens.
    const SUBJECT_TOKENS: &'static [&'static str];
    /// The field marked `#[event(aggregate_id)]`.
    const AGGREGATE_ID_FIELD: FieldName;
    /// The fields marked `#[event(data_subject)]`: the people this event is about.
    const DATA_SUBJECT_FIELDS: &'static [FieldName];
    /// The fields marked `#[event(pii)]`, each with the data subject who owns it.
    const PII_FIELDS: &'static [PiiField];
    /// The type of the `#[event(aggregate_id)]` field: what an
    /// [`Aggregate`](crate::aggregate::Aggregate) of this event is identified by.
    type AggregateId: EntityId;

    /// The id of the aggregate this event belongs to.
    fn aggregate_id(&self) -> Uuid;

    /// The ids of every person this event is about, in field order.
    fn data_subjects(&self) -> Vec<Uuid>;

    /// The registered descriptor of this type.
    fn descriptor() -> &'static EventDescriptor;

    /// The full NATS subject under `prefix`, e.g. `edupulse.quiz.submitted.v2`.
    fn subject(prefix: &str) -> String {
        format!("{prefix}.{}", Self::SUBJECT)
    }
}

/// A field's Rust name and the key serde writes for it (they differ under `#[serde(rename)]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct FieldName {
    /// The name in the Rust struct.
    pub rust: &'static str,
    /// The key in the JSON payload.
    pub json: &'static str,
}

impl FieldName {
    #[doc(hidden)]
    pub const fn new(rust: &'static str, json: &'static str) -> Self {
        FieldName { rust, json }
    }
}

/// A personal-data field and the data subject whose key protects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct PiiField {
    /// The PII field itself.
    pub field: FieldName,
    /// The `#[event(data_subject)]` field holding its owner's id.
    pub owner: FieldName,
}

impl PiiField {
    #[doc(hidden)]
    pub const fn new(field: FieldName, owner: FieldName) -> Self {
        PiiField { field, owner }
    }
}

/// A value that identifies an aggregate or a person: a [`Uuid`] or a newtype over one.
///
/// Implement it for your id newtypes so they can be `#[event(aggregate_id)]` or
/// `#[event(data_subject)]` fields:
///
/// ```
/// use edupulse_events::{EntityId, Uuid};
///
/// struct StudentId(Uuid);
///
/// impl EntityId for StudentId {
///     fn entity_uuid(&self) -> Uuid {
///         self.0
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot identify an aggregate or a data subject",
    label = "expected a Uuid or a newtype implementing EntityId",
    note = "ids are stored in indexed uuid columns; use Uuid, or implement edupulse_events::EntityId for your newtype"
)]
pub trait EntityId {
    /// The id as a UUID.
    fn entity_uuid(&self) -> Uuid;
}

impl EntityId for Uuid {
    fn entity_uuid(&self) -> Uuid {
        *self
    }
}

impl<T: EntityId + ?Sized> EntityId for &T {
    fn entity_uuid(&self) -> Uuid {
        (**self).entity_uuid()
    }
}

/// What a `#[event(data_subject)]` field may hold: one id, an optional id, or several.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot hold data-subject ids",
    label = "expected a Uuid, an EntityId newtype, or an Option or Vec of them"
)]
pub trait SubjectIds {
    /// Appends every id this value holds.
    fn extend_subject_ids(&self, ids: &mut Vec<Uuid>);
}

impl<T: EntityId> SubjectIds for T {
    fn extend_subject_ids(&self, ids: &mut Vec<Uuid>) {
        ids.push(self.entity_uuid());
    }
}

impl<T: EntityId> SubjectIds for Option<T> {
    fn extend_subject_ids(&self, ids: &mut Vec<Uuid>) {
        ids.extend(self.iter().map(EntityId::entity_uuid));
    }
}

impl<T: EntityId> SubjectIds for Vec<T> {
    fn extend_subject_ids(&self, ids: &mut Vec<Uuid>) {
        ids.extend(self.iter().map(EntityId::entity_uuid));
    }
}

/// What `Debug` prints in place of a PII value.
#[doc(hidden)]
pub struct PiiMask;

impl fmt::Debug for PiiMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<pii>")
    }
}
