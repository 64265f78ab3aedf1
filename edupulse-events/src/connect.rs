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

/// Where every connection of a runtime comes from.
#[derive(Debug, Clone)]
pub(crate) enum Connector {
    /// Opened per role with these servers and options.
    PerRole {
        servers: Vec<ServerAddr>,
        options: Box<ConnectOptions>,
    },
    /// One client the application gave, shared by every role.
    Shared(Client),
}

impl Connector {
    pub(crate) fn new(servers: Vec<ServerAddr>, options: ConnectOptions) -> Self {
        Connector::PerRole {
            servers,
            options: Box::new(options),
        }
    }

    /// A connection for one role: a new one, or the shared client.
    pub(crate) async fn connect(&self) -> Result<Client, ConnectError> {
        match self {
            Connector::PerRole { servers, options } => {
                (**options).clone().connect(servers.as_slice()).await
            }
            Connector::Shared(client) => Ok(client.clone()),
        }
    }
}
