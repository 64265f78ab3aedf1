//! Domain events for EduPulse Live: one derive gives an event type its name, version,
//! aggregate id, PII markers and NATS subject, checked at compile time and registered for the
//! runtime to decode, list and document.
//!
//! # Defining an event
//!
//! ```
//! use edupulse_events::privacy::Pii;
//! use edupulse_events::{DomainEvent, Uuid};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, DomainEvent)]
//! #[event(name = "quiz.submitted", version = 2, aggregate = "quiz")]
//! struct QuizSubmitted {
//!     #[event(aggregate_id)]
//!     quiz_id: Uuid,
//!     #[event(data_subject)]
//!     student_id: Uuid,
//!     #[event(pii)]
//!     student_name: Pii<String>,
//!     score: f32,
//! }
//!
//! assert_eq!(QuizSubmitted::TYPE, "quiz.submitted.v2");
//! assert_eq!(QuizSubmitted::AGGREGATE, "quiz");
//! assert_eq!(QuizSubmitted::PII_FIELDS[0].field.rust, "student_name");
//! ```
//!
//! # Attributes
//!
//! On the struct, all optional:
//! - `name = "quiz.submitted"`: dot-separated tokens of ASCII letters, digits, `_`, `-`.
//!   Default: the type name split at case changes (`QuizSubmitted` → `quiz.submitted`).
//! - `version = 2`: from 1 (the default). The type string is `{name}.v{version}`.
//! - `aggregate = "quiz"`: the aggregate type. Default: the name's first token.
//! - `subject = "quiz.submissions"`: the NATS subject below the runtime's prefix.
//!   Default: `{name}.v{version}`, so `edupulse.quiz.submitted.v2` under prefix `edupulse`.
//! - `upcast_from = QuizSubmittedV1`: the previous version's type (so `version` is 2 or more);
//!   requires `impl From<QuizSubmittedV1> for QuizSubmitted`. Old payloads decode into the
//!   newest type.
//! - `crate = "path::to::edupulse_events"`: where the runtime is, if re-exported elsewhere.
//!
//! On fields:
//! - `aggregate_id`: exactly one; a [`Uuid`] or a newtype implementing [`EntityId`].
//! - `data_subject`: the people the event is about (a `Uuid`, newtype, `Option` or `Vec`).
//! - `pii`: personal data, sealed with its owner's key before it is stored or published and
//!   masked in `Debug`; `pii(owner = field)` names its data subject when there are several.
//!   Its type must say when the value was erased: [`privacy::Pii<T>`](privacy::Pii) (or an
//!   `Option` of one), unless `pii(erased = expr)` declares what readers get instead.
//!
//! The derive also implements `Debug` (PII printed as `<pii>`, an erased `Pii` as `<erased>`):
//! do not derive `Debug` as well.
//!
//! # Commands and aggregates
//!
//! An aggregate's state is folded from its events ([`aggregate::Aggregate`], its event types
//! named once by [`aggregate_events!`]); a command is a decision on that state, and
//! [`Aggregates::execute`](aggregate::Aggregates::execute) reads the state (or takes it from
//! its cache), decides, appends with the version it read as the check (the read and the
//! append in one transaction), and decides again after a conflict; states are cached (the version check validates them) and, for
//! [`aggregate::SnapshotState`]s, snapshotted every N events. [`testing`] runs decisions in
//! given / when / then form.
//!
//! ```
//! use edupulse_events::aggregate::Aggregate;
//! use edupulse_events::{DomainEvent, Uuid, aggregate_events, testing};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, DomainEvent)]
//! #[event(name = "seat.booked", aggregate = "seat")]
//! struct SeatBooked {
//!     #[event(aggregate_id)]
//!     seat_id: Uuid,
//!     #[event(data_subject)]
//!     student_id: Uuid,
//! }
//!
//! aggregate_events! {
//!     /// What happens to a seat.
//!     enum SeatEvent for "seat" by Uuid { SeatBooked }
//! }
//!
//! #[derive(Default)]
//! struct Seat {
//!     booked: bool,
//! }
//!
//! impl Aggregate for Seat {
//!     type Event = SeatEvent;
//!     fn apply(&mut self, _: &SeatEvent) {
//!         self.booked = true;
//!     }
//! }
//!
//! fn book(seat: &Seat, seat_id: Uuid, student_id: Uuid) -> Result<Vec<SeatEvent>, &'static str> {
//!     if seat.booked {
//!         return Err("taken");
//!     }
//!     Ok(vec![SeatBooked { seat_id, student_id }.into()])
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (seat_id, ada, grace) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
//! testing::given::<Seat>([SeatBooked { seat_id, student_id: ada }.into()])
//!     .when(&seat_id, |seat| book(seat, seat_id, grace))
//!     .await
//!     .then_error(&"taken");
//! # }
//! ```
//!
//! # Decoding and listing
//!
//! [`Registry::global`] holds every derived type in the binary; [`Registry::decode`] turns a
//! stored payload into an [`AnyEvent`], upcasting old versions; [`Registry::catalog`] lists
//! every type with a JSON Schema of its payload.
//!
//! A payload field of your own type needs a JSON Schema: derive it through the re-export, no
//! new dependency needed.
//!
//! ```
//! use edupulse_events::schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, JsonSchema)]
//! #[schemars(crate = "edupulse_events::schemars")]
//! struct Answer {
//!     question: u32,
//!     choice: String,
//! }
//! ```

/// The crate's README (what crates.io shows), its Rust blocks compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(any(feature = "nats", all(test, feature = "postgres")))]
#[macro_use]
mod wakeup;

pub mod aggregate;
mod any_event;
mod asyncapi;
mod catalog;
mod cloudevents;
pub mod contract;
mod descriptor;
mod envelope;
mod error;
mod event;
mod header_names;
pub mod metrics;
pub mod prelude;
pub mod privacy;
mod registry;
#[doc(hidden)]
pub mod schema;

#[cfg(feature = "admin")]
pub mod admin;
#[cfg(feature = "nats")]
mod connect;
#[cfg(feature = "store")]
pub mod consume;
#[cfg(feature = "store")]
mod database;
#[cfg(feature = "sqlite")]
pub mod embedded;
#[cfg(feature = "store")]
mod message;
#[cfg(feature = "nats")]
pub mod publish;
#[cfg(feature = "nats")]
pub mod relay;
#[cfg(feature = "nats")]
mod runtime;
#[cfg(feature = "store")]
mod shutdown;
#[cfg(feature = "store")]
pub mod store;
#[cfg(feature = "sqlite")]
pub mod testing;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use any_event::AnyEvent;
pub use asyncapi::AsyncApiInfo;
pub use catalog::{Catalog, CatalogEntry};
pub use cloudevents::{CloudEventError, attr as cloudevent_attr};
pub use descriptor::{EventDescriptor, Upcast};
pub use envelope::{EncodeError, Envelope, Metadata, TraceContext};
pub use error::{DecodeError, PayloadError, RegistryError, RegistryProblem};
pub use event::{DomainEvent, EntityId, FieldName, PiiField, SubjectIds};
#[cfg(feature = "store")]
pub use message::{Fault, MessageError};
pub use registry::Registry;
#[cfg(feature = "nats")]
pub use runtime::{Runtime, RuntimeBuilder, RuntimeError};
#[cfg(feature = "store")]
pub use shutdown::Shutdown;

/// Derives [`DomainEvent`]: see the [crate documentation](crate) for the attributes.
pub use edupulse_events_derive::DomainEvent;

pub use chrono;
pub use schemars;
pub use uuid::{self, Uuid};

/// The sqlx this crate is built on: its pools, connections and transactions are what the
/// stores take, so use this one (`edupulse_events::sqlx`) rather than a `sqlx` of your own
/// whose version may differ.
#[cfg(feature = "store")]
pub use sqlx;

/// The async-nats this crate is built on, for the NATS client and connect options the
/// runtime takes.
#[cfg(feature = "nats")]
pub use async_nats;
