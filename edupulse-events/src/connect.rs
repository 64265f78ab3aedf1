//! How the runtime reaches NATS: not one connection but the means to open one per role.
//!
//! async-nats drops the whole connection when a frame it receives does not parse (a header
//! block that is not UTF-8, a header line without a colon, a status line other than
//! `NATS/1.0 ...`), and anyone allowed to publish under the prefix can store such a frame in
//! the stream. Whatever reads the subject space (a subscriber, the erasure follower) can
//! therefore be made to lose its connection, and a JetStream consumer loses it again at every
//! redelivery. With a connection per role that costs the reader alone: the relay publishes on
//! a connection that is never sent anything from the subject space.

use async_nats::{Client, ConnectError, ConnectOptions, ServerAddr};

/// The servers and options every connection of a runtime is opened with.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    servers: Vec<ServerAddr>,
    options: ConnectOptions,
}

impl Connector {
    pub(crate) fn new(servers: Vec<ServerAddr>, options: ConnectOptions) -> Self {
        Connector { servers, options }
    }

    /// A new connection, shared with no other role.
    pub(crate) async fn connect(&self) -> Result<Client, ConnectError> {
        self.options.clone().connect(self.servers.as_slice()).await
    }
}
