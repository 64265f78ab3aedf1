//! Consuming events with effects that happen exactly once, although JetStream delivers at
//! least once: a typed [`Subscriber`] whose handlers run inside an [`Inbox`] transaction.

mod inbox;
mod subscriber;

pub use inbox::{Applied, Inbox, InboxError};
pub use subscriber::{CatchUpError, ConsumeError, HandlerError, Subscriber, SubscriberBuilder};
