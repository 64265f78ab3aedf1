//! Consuming events with effects that happen exactly once, although JetStream delivers at
//! least once: a typed [`Subscriber`] whose handlers run inside an [`Inbox`] transaction; and
//! the same on the embedded backend, a [`BusSubscriber`] on the in-process bus with its inbox
//! in SQLite. Both dispatch through one dispatcher over a small `Dialect` of SQL.

mod dialect;
mod error;

// What both subscribers share.
#[cfg(any(feature = "sqlite", feature = "nats"))]
mod dispatch;
#[cfg(any(feature = "sqlite", feature = "nats"))]
mod handlers;

// The embedded bus's subscriber.
#[cfg(feature = "sqlite")]
mod bus;

// The inbox in PostgreSQL, and JetStream's subscriber.
#[cfg(feature = "nats")]
mod builder;
#[cfg(feature = "nats")]
mod catch_up;
#[cfg(feature = "nats")]
mod frame;
#[cfg(feature = "nats")]
mod health;
#[cfg(feature = "postgres")]
mod inbox;
#[cfg(feature = "nats")]
mod link;
#[cfg(feature = "nats")]
mod set_aside;
#[cfg(feature = "nats")]
mod subscriber;
#[cfg(feature = "nats")]
mod unreadable;

#[cfg(feature = "sqlite")]
pub use bus::{BusSubscriber, BusSubscriberBuilder, Settled};
pub use error::{CatchUpError, ConsumeError, HandlerError};
#[cfg(any(feature = "sqlite", feature = "nats"))]
pub use handlers::UnconfirmedErasure;
#[cfg(feature = "postgres")]
pub use inbox::{Applied, Inbox, InboxError};
#[cfg(feature = "nats")]
pub use {builder::SubscriberBuilder, health::SubscriberHealth, subscriber::Subscriber};
