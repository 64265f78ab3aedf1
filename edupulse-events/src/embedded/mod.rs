//! Running without servers: an event store on SQLite ([`SqliteStore`]) and an in-process bus
//! ([`InProcessBus`]) with its relay, keeping the PostgreSQL and JetStream runtime's promises
//! (optimistic concurrency, the outbox in the caller's transaction, personal data sealed per
//! subject and erased by destroying keys, per-aggregate order on the bus) for a first run and
//! for unit tests of domain logic.
//!
//! ```
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use edupulse_events::embedded::{InProcessBus, SqliteStore, relay_pending};
//! use edupulse_events::store::{EventStore, ExpectedVersion};
//!
//! let store = SqliteStore::in_memory("edupulse").await?;
//! let bus = InProcessBus::default();
//! let mut published = bus.subscribe();
//! # let events: Vec<edupulse_events::Envelope> = vec![];
//! store.append_committed(ExpectedVersion::NoStream, &events).await?;
//! relay_pending(&store, &bus).await?;
//! # Ok(()) }
//! ```
//!
//! Appending, reading, unsealing and erasing are [`EventStore`](crate::store::EventStore)'s
//! methods, written once for both stores (`store/flow.rs`): import the trait.

mod bus;
mod keys;
mod relay;
mod schema;
mod store;

pub use bus::{BusMessage, InProcessBus};
pub use relay::{relay_pending, run_relay};
pub use store::SqliteStore;
