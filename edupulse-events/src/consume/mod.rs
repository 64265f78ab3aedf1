//! Consuming events with effects that happen exactly once, although JetStream delivers at
//! least once: a typed [`Subscriber`] whose handlers run inside an [`Inbox`] transaction; and
//! the same on the embedded backend, a [`BusSubscriber`] on the in-process bus with its inbox
//! in SQLite. Both dispatch through one dispatcher over a small `Dialect` of SQL.

mod builder;
mod bus;
mod catch_up;
mod dialect;
mod dispatch;
mod error;
mod frame;
mod handlers;
mod health;
mod inbox;
mod link;
mod set_aside;
mod subscriber;
mod unreadable;

pub use builder::SubscriberBuilder;
pub use bus::{BusSubscriber, BusSubscriberBuilder, Settled};
pub use error::{CatchUpError, ConsumeError, HandlerError};
pub use handlers::UnconfirmedErasure;
pub use health::SubscriberHealth;
pub use inbox::{Applied, Inbox, InboxError};
pub use subscriber::Subscriber;
