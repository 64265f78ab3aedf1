//! Commands against aggregates: an aggregate's state folded from its events, a decision that
//! turns a command into new events against that state, and the append that checks nobody
//! wrote in between, retried with a fresh state when somebody did.
//!
//! ```
//! use edupulse_events::aggregate::Aggregate;
//! use edupulse_events::{DomainEvent, Uuid, aggregate_events};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, DomainEvent)]
//! #[event(name = "door.opened", aggregate = "door")]
//! pub struct DoorOpened {
//!     #[event(aggregate_id)]
//!     pub door_id: Uuid,
//! }
//!
//! #[derive(Serialize, Deserialize, DomainEvent)]
//! #[event(name = "door.closed", aggregate = "door")]
//! pub struct DoorClosed {
//!     #[event(aggregate_id)]
//!     pub door_id: Uuid,
//! }
//!
//! aggregate_events! {
//!     /// What happens to a door.
//!     pub enum DoorEvent for "door" by Uuid { DoorOpened, DoorClosed }
//! }
//!
//! #[derive(Default)]
//! pub struct Door {
//!     open: bool,
//! }
//!
//! impl Aggregate for Door {
//!     type Event = DoorEvent;
//!
//!     fn apply(&mut self, event: &DoorEvent) {
//!         self.open = matches!(event, DoorEvent::DoorOpened(_));
//!     }
//! }
//!
//! impl Door {
//!     /// A decision: the events a command makes, or why not. Pure, so it can run again.
//!     pub fn open(&self, door_id: Uuid) -> Result<Vec<DoorEvent>, &'static str> {
//!         if self.open {
//!             return Err("the door is already open");
//!         }
//!         Ok(vec![DoorOpened { door_id }.into()])
//!     }
//! }
//! ```
//!
//! With a store, [`Aggregates::execute`] loads the door, runs the decision and appends its
//! events with the loaded version as [`ExpectedVersion::Exact`](crate::store::ExpectedVersion),
//! retrying on a conflict:
//!
//! ```no_run
//! # use edupulse_events::aggregate::Aggregate;
//! # use edupulse_events::{DomainEvent, Uuid, aggregate_events};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize, DomainEvent)]
//! # #[event(name = "door.opened", aggregate = "door")]
//! # pub struct DoorOpened { #[event(aggregate_id)] pub door_id: Uuid }
//! # aggregate_events! { pub enum DoorEvent for "door" by Uuid { DoorOpened } }
//! # #[derive(Default)] pub struct Door { open: bool }
//! # impl Aggregate for Door {
//! #     type Event = DoorEvent;
//! #     fn apply(&mut self, _: &DoorEvent) { self.open = true; }
//! # }
//! # impl Door {
//! #     pub fn open(&self, door_id: Uuid) -> Result<Vec<DoorEvent>, &'static str> {
//! #         if self.open { Err("open") } else { Ok(vec![DoorOpened { door_id }.into()]) }
//! #     }
//! # }
//! # async fn run(store: edupulse_events::embedded::SqliteStore) -> Result<(), Box<dyn std::error::Error>> {
//! use edupulse_events::aggregate::Aggregates;
//!
//! let doors = Aggregates::<Door, _>::new(store);
//! let door_id = Uuid::now_v7();
//! doors.execute(&door_id, |door| door.open(door_id)).await?;
//! # Ok(()) }
//! ```

mod events;

#[cfg(feature = "store")]
mod cache;
#[cfg(feature = "store")]
mod command;

pub use events::{Aggregate, AggregateEvent, SnapshotState};

#[cfg(feature = "store")]
pub(crate) use cache::forget_subject;
#[cfg(feature = "store")]
pub use command::{Aggregates, CommandError, Executed};
