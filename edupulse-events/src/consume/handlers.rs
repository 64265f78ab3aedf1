//! A subscriber's handlers, registered by event type and checked as they are: the part of
//! building a subscriber that is the same whichever database keeps its inbox.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::Database;
use uuid::Uuid;

use crate::any_event::AnyEvent;
use crate::envelope::Envelope;
use crate::event::DomainEvent;
use crate::privacy::DataSubjectErased;
#[cfg(feature = "postgres")]
use crate::privacy::KeyStore;
use crate::registry::Registry;

use super::dialect::Dialect;
use super::dispatch::{Dispatcher, Handler};
use super::error::{ConsumeError, HandlerError};

/// The handlers and retry policy a builder collects; the first mistake is kept and reported
/// by `build`.
pub(super) struct Handlers<DB: Dialect> {
    by_name: HashMap<&'static str, Handler<DB>>,
    unhandled: Option<Handler<DB>>,
    errors: Vec<ConsumeError>,
    pub(super) max_deliveries: i64,
    pub(super) backoff: Vec<Duration>,
}

impl<DB: Dialect> Default for Handlers<DB> {
    fn default() -> Self {
        Handlers {
            by_name: HashMap::new(),
            unhandled: None,
            errors: Vec::new(),
            max_deliveries: 5,
            backoff: vec![
                Duration::from_millis(100),
                Duration::from_secs(1),
                Duration::from_secs(5),
            ],
        }
    }
}

impl<DB: Dialect> Handlers<DB> {
    /// The event names with a handler, for `Debug`.
    pub(super) fn names(&self) -> Vec<&'static str> {
        self.by_name.keys().copied().collect()
    }

    /// Registers `handler` for events of type `T`, refusing an older version (events are
    /// upcast to the newest before dispatch) and a second handler for one event.
    pub(super) fn on<T, F>(&mut self, handler: F)
    where
        T: DomainEvent,
        F: for<'c> Fn(
                T,
                &'c Envelope,
                &'c mut <DB as Database>::Connection,
            ) -> BoxFuture<'c, Result<(), HandlerError>>
            + Send
            + Sync
            + 'static,
    {
        let newest = Registry::global().latest(T::NAME);
        if let Some(newest) = newest.filter(|d| d.version() != T::VERSION) {
            self.errors.push(ConsumeError::NotNewestVersion {
                registered: T::TYPE,
                newest: newest.type_name(),
            });
        }
        if self.by_name.contains_key(T::NAME) {
            self.errors.push(ConsumeError::DuplicateHandler(T::NAME));
        }
        let erased: Handler<DB> =
            Box::new(move |event, envelope, tx| match event.downcast::<T>() {
                Ok(event) => handler(event, envelope, tx),
                Err(other) => {
                    let type_name = other.type_name();
                    Box::pin(async move {
                        Err(format!("`{type_name}` reached the handler of `{}`", T::TYPE).into())
                    })
                }
            });
        self.by_name.insert(T::NAME, erased);
    }

    /// Registers `hook` for erasures: run for a [`DataSubjectErased`] event the store
    /// confirms, after `keys` (this process's cache, if any) forgot the subject's keys.
    pub(super) fn on_erasure<F>(&mut self, keys: Option<Arc<dyn EvictKeys>>, hook: F)
    where
        F: for<'c> Fn(
                Uuid,
                &'c mut <DB as Database>::Connection,
            ) -> BoxFuture<'c, Result<(), HandlerError>>
            + Send
            + Sync
            + 'static,
    {
        let hook = Arc::new(hook);
        self.on(move |erased: DataSubjectErased, envelope: &Envelope, tx| {
            let (keys, hook, event_id) = (keys.clone(), hook.clone(), envelope.id);
            Box::pin(async move {
                // Anyone who can publish on the prefix can send a plausible erasure event;
                // only one the store wrote, with the erasure record committed beside it,
                // is believed. (The subscriber shares the store's database.)
                if !DB::confirmed_erasure(&mut *tx, event_id, erased.subject_id).await? {
                    return Err(UnconfirmedErasure {
                        subject: erased.subject_id,
                    }
                    .into());
                }
                if let Some(keys) = &keys {
                    keys.evict(erased.subject_id);
                }
                hook(erased.subject_id, tx).await
            })
        });
    }

    /// Registers `handler` for events without a handler of their own.
    pub(super) fn on_unhandled<F>(&mut self, handler: F)
    where
        F: for<'c> Fn(
                AnyEvent,
                &'c Envelope,
                &'c mut <DB as Database>::Connection,
            ) -> BoxFuture<'c, Result<(), HandlerError>>
            + Send
            + Sync
            + 'static,
    {
        self.unhandled = Some(Box::new(handler));
    }

    /// The dispatcher of the consumer `name`, or the first mistake made registering.
    pub(super) fn dispatcher(mut self, name: String) -> Result<Dispatcher<DB>, ConsumeError> {
        if let Some(first) = self.errors.drain(..).next() {
            return Err(first);
        }
        Ok(Dispatcher {
            consumer: name,
            handlers: self.by_name,
            unhandled: self.unhandled,
            max_deliveries: self.max_deliveries,
            backoff: self.backoff,
        })
    }
}

/// A cache of keys that must forget an erased subject's before their hook runs.
pub(super) trait EvictKeys: Send + Sync {
    fn evict(&self, subject: Uuid);
}

#[cfg(feature = "postgres")]
impl EvictKeys for KeyStore {
    fn evict(&self, subject: Uuid) {
        KeyStore::evict(self, subject);
    }
}

/// An erasure event the store did not write (no such erasure event in its log, or no erasure
/// record for the subject): forged, or read against another store. Its hook does not run.
#[derive(Debug, thiserror::Error)]
#[error(
    "erasure event for subject {subject} is not confirmed by the store (no such erasure event \
     in its log with an erasure record): not confirmed, so on_erasure did not run"
)]
pub struct UnconfirmedErasure {
    /// The subject the event names.
    pub subject: Uuid,
}
