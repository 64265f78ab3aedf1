//! Why a subscriber could not start, go on, or catch up.

use thiserror::Error;

use crate::database::DatabaseError;

/// What a handler returns when it cannot apply an event; the message is retried, and set
/// aside with this as its reason once the deliveries run out. The text is stored in
/// `consumer_dead_letters` and shown by [`CatchUpError::Handler`], so keep personal data out
/// of it; a database error anywhere in its chain is shown by SQLSTATE, table and constraint
/// only, since PostgreSQL's own words quote values.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Why a subscriber could not start or go on.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConsumeError {
    /// A handler was registered for a type that is not the newest version of its event:
    /// messages are upcast to the newest before dispatch, so it would never be called.
    #[error(
        "handler for `{registered}` is never called: events are upcast to `{newest}` before \
         dispatch; register the handler for that type"
    )]
    NotNewestVersion {
        /// The type the handler was registered for.
        registered: &'static str,
        /// The newest version of its event.
        newest: &'static str,
    },
    /// Two handlers for one event.
    #[error("two handlers for `{0}`; an event has one handler per subscriber")]
    DuplicateHandler(&'static str),
    /// JetStream refused or failed.
    #[error("JetStream: {0}")]
    JetStream(String),
    /// The subscriber's own connection to NATS could not be opened.
    #[cfg(feature = "nats")]
    #[error("cannot connect to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] DatabaseError),
    /// The store could not be read (a catch-up of the in-process bus's subscriber).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Why [`Subscriber::catch_up`](super::Subscriber::catch_up) stopped.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CatchUpError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A stored event does not decode with this binary's types (an unknown type stops the
    /// catch-up too, unless the subscriber skips unknown types,
    /// [`SubscriberBuilder::skip_unknown_types`](super::SubscriberBuilder::skip_unknown_types)).
    #[error("event {event_id} (position {position}) does not decode: {source}")]
    Undecodable {
        /// The event.
        event_id: uuid::Uuid,
        /// Its position in the log.
        position: i64,
        /// Why.
        source: crate::error::DecodeError,
    },
    /// The database failed around a handler.
    #[error("database error: {0}")]
    Database(String),
    /// A handler failed on a stored event: the projection stops before it.
    #[error("the handler failed on event {event_id} (position {position}): {reason}")]
    Handler {
        /// The event.
        event_id: uuid::Uuid,
        /// Its position in the log.
        position: i64,
        /// The handler's error.
        reason: String,
    },
}
