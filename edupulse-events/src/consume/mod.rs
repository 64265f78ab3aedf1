//! Consuming events with effects that happen exactly once, although JetStream delivers at
//! least once: a typed [`Subscriber`] whose handlers run inside an [`Inbox`] transaction.

mod builder;
mod catch_up;
mod dispatch;
mod error;
mod frame;
mod health;
mod inbox;
mod link;
mod set_aside;
mod subscriber;
mod unreadable;

pub use builder::{SubscriberBuilder, UnconfirmedErasure};
pub use error::{CatchUpError, ConsumeError, HandlerError};
pub use health::SubscriberHealth;
pub use inbox::{Applied, Inbox, InboxError};
pub use subscriber::Subscriber;
