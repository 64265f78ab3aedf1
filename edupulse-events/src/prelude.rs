//! What a service names most: `use edupulse_events::prelude::*;` brings the derive, the
//! envelope and registry, aggregates (and, with a store, their commands), `Pii`, the store
//! trait and its expected versions, erasure's `Scrub`, the master key provider, and (with
//! their features) the stores, the bus and the runtime.

pub use crate::aggregate::{Aggregate, SnapshotState};
pub use crate::aggregate_events;
pub use crate::privacy::{Pii, Scrub};
pub use crate::{DomainEvent, Envelope, Registry, Uuid};

#[cfg(feature = "store")]
pub use crate::Shutdown;
#[cfg(feature = "store")]
pub use crate::aggregate::{Aggregates, CommandError};
#[cfg(feature = "store")]
pub use crate::privacy::{KeyProvider, LocalKeyProvider};
#[cfg(feature = "store")]
pub use crate::store::{EventStore, ExpectedVersion, StoreError};

#[cfg(feature = "sqlite")]
pub use crate::consume::BusSubscriber;
#[cfg(feature = "sqlite")]
pub use crate::embedded::{InProcessBus, SqliteStore, relay_pending};

#[cfg(feature = "postgres")]
pub use crate::store::Store;

#[cfg(feature = "nats")]
pub use crate::Runtime;
#[cfg(feature = "nats")]
pub use crate::consume::Subscriber;
