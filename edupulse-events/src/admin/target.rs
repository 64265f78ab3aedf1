//! What the commands run against: the servers through the application's runtime, or the
//! embedded store and its in-process bus.

use crate::embedded::{InProcessBus, SqliteStore};
use crate::runtime::Runtime;

/// Where [`AdminCommand::run`](super::AdminCommand::run) finds the events.
///
/// The in-process bus lives in the application's process: mount the commands in that
/// process's binary to use [`Target::Embedded`] with its bus. A separate process given the
/// same database file has a bus of its own with no subscribers: its `relay` would move the
/// outbox to nobody, and its `tail` sees only what it relays itself.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Target {
    /// PostgreSQL and JetStream, through the application's runtime (boxed: it is large, and a
    /// target is made once per command).
    Servers(Box<Runtime>),
    /// The embedded store and its in-process bus, in this process.
    Embedded {
        /// The store.
        store: SqliteStore,
        /// The bus its relay publishes to.
        bus: InProcessBus,
    },
}

impl Target {
    /// The embedded store `store` and its bus `bus`.
    pub fn embedded(store: SqliteStore, bus: InProcessBus) -> Self {
        Target::Embedded { store, bus }
    }

    /// The subject prefix its events are published under.
    pub fn subject_prefix(&self) -> &str {
        match self {
            Target::Servers(runtime) => runtime.store().subject_prefix(),
            Target::Embedded { store, .. } => store.subject_prefix(),
        }
    }
}

impl From<Runtime> for Target {
    fn from(runtime: Runtime) -> Self {
        Target::Servers(Box::new(runtime))
    }
}
