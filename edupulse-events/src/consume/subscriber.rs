//! A typed subscriber: a durable JetStream pull consumer whose messages are decoded through the
//! registry (PII opened, old versions upcast) and dispatched to the handler registered for
//! their type, each inside the consumer's inbox transaction, so a handler's database writes
//! happen once however often the message is delivered.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;
use futures::future::BoxFuture;
use sqlx::PgConnection;
use thiserror::Error;

use crate::any_event::AnyEvent;
use crate::envelope::Envelope;
use crate::event::DomainEvent;
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::store::DatabaseError;

use super::inbox::Inbox;

/// What a handler returns when it cannot apply an event; the message is retried, and set
/// aside with this as its reason once the deliveries run out. Stored in the database, never
/// logged: it is the handler's own text.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

type Erased = Box<
    dyn for<'c> Fn(
            AnyEvent,
            &'c Envelope,
            &'c mut PgConnection,
        ) -> BoxFuture<'c, Result<(), HandlerError>>
        + Send
        + Sync,
>;

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
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] DatabaseError),
}

/// Why [`Subscriber::catch_up`] stopped.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CatchUpError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A stored event does not decode with this binary's types.
    #[error(transparent)]
    Decode(#[from] crate::error::DecodeError),
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

/// Configures a [`Subscriber`].
pub struct SubscriberBuilder {
    runtime: Runtime,
    name: String,
    filter: Option<String>,
    handlers: HashMap<&'static str, Erased>,
    errors: Vec<ConsumeError>,
    max_deliveries: i64,
    backoff: Vec<Duration>,
}

/// A running consumer's configuration and handlers; see [`Subscriber::builder`].
pub struct Subscriber {
    runtime: Runtime,
    consumer: PullConsumer,
    inbox: Inbox,
    handlers: HashMap<&'static str, Erased>,
    max_deliveries: i64,
    backoff: Vec<Duration>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("consumer", &self.inbox.consumer())
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    /// A subscriber named `name`: the durable consumer's name and the inbox's, so it resumes
    /// where it stopped and never applies an event twice.
    pub fn builder(runtime: &Runtime, name: impl Into<String>) -> SubscriberBuilder {
        SubscriberBuilder {
            runtime: runtime.clone(),
            name: name.into(),
            filter: None,
            handlers: HashMap::new(),
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

impl SubscriberBuilder {
    /// Calls `handler` for every event of type `T` (the newest version of its event; older
    /// versions arrive upcast), inside the inbox transaction: write through the connection
    /// given, and the writes commit with the record that the event was applied.
    ///
    /// ```no_run
    /// # async fn run(runtime: edupulse_events::Runtime) -> Result<(), Box<dyn std::error::Error>> {
    /// # use edupulse_events::{DomainEvent, Uuid};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize, DomainEvent)]
    /// # struct QuizSubmitted { #[event(aggregate_id)] quiz_id: Uuid, student_id: Uuid, score: f32 }
    /// use edupulse_events::consume::Subscriber;
    ///
    /// let subscriber = Subscriber::builder(&runtime, "leaderboard")
    ///     .on(|quiz: QuizSubmitted, _envelope, tx| {
    ///         Box::pin(async move {
    ///             sqlx::query("INSERT INTO scores (student, score) VALUES ($1, $2)")
    ///                 .bind(quiz.student_id)
    ///                 .bind(quiz.score)
    ///                 .execute(&mut *tx)
    ///                 .await?;
    ///             Ok(())
    ///         })
    ///     })
    ///     .build()
    ///     .await?;
    /// subscriber.run(async { tokio::signal::ctrl_c().await.ok(); }).await?;
    /// # Ok(()) }
    /// ```
    pub fn on<T, F>(mut self, handler: F) -> Self
    where
        T: DomainEvent,
        F: for<'c> Fn(
                T,
                &'c Envelope,
                &'c mut PgConnection,
            ) -> BoxFuture<'c, Result<(), HandlerError>>
            + Send
            + Sync
            + 'static,
    {
        let newest = Registry::global().latest(T::NAME);
        if newest.is_some_and(|d| d.version() != T::VERSION) {
            self.errors.push(ConsumeError::NotNewestVersion {
                registered: T::TYPE,
                newest: newest.expect("checked").type_name(),
            });
        }
        if self.handlers.contains_key(T::NAME) {
            self.errors.push(ConsumeError::DuplicateHandler(T::NAME));
        }
        let erased: Erased = Box::new(move |event, envelope, tx| match event.downcast::<T>() {
            Ok(event) => handler(event, envelope, tx),
            Err(other) => {
                let type_name = other.type_name();
                Box::pin(async move {
                    Err(format!("`{type_name}` reached the handler of `{}`", T::TYPE).into())
                })
            }
        });
        self.handlers.insert(T::NAME, erased);
        self
    }

    /// Calls `hook` when a data subject is erased (on the relayed
    /// [`DataSubjectErased`](crate::privacy::DataSubjectErased) event), inside the inbox
    /// transaction: delete or anonymise the subject's rows there. A read model keeps copies
    /// the destroyed keys cannot reach.
    ///
    /// The erasure event is not ordered after the subject's events in other aggregates, so
    /// some may arrive after it; they decode with their PII fields `Erased`, and a handler
    /// should skip (or anonymise) such events rather than recreate the subject's rows.
    pub fn on_erasure<F>(self, hook: F) -> Self
    where
        F: for<'c> Fn(uuid::Uuid, &'c mut PgConnection) -> BoxFuture<'c, Result<(), HandlerError>>
            + Send
            + Sync
            + 'static,
    {
        // The subject's key goes from this process's cache before the hook runs: events of
        // theirs still in flight (other aggregates are not ordered after the erasure) then
        // decode with their personal data erased, and a handler can tell and skip them.
        let keys = self.runtime.keys().cloned();
        self.on(
            move |erased: crate::privacy::DataSubjectErased, _envelope: &Envelope, tx| {
                if let Some(keys) = &keys {
                    keys.evict(erased.subject_id);
                }
                hook(erased.subject_id, tx)
            },
        )
    }

    /// Only subjects matching `filter` (default: every event under the runtime's prefix).
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    /// Deliveries before a failing message is set aside (default 5, at least 1).
    pub fn max_deliveries(mut self, deliveries: u32) -> Self {
        self.max_deliveries = i64::from(deliveries.max(1));
        self
    }

    /// The wait before each redelivery of a failed message: the first entry after the first
    /// failure, and so on, the last repeating (default 0.1 s, 1 s, 5 s).
    pub fn backoff(mut self, waits: Vec<Duration>) -> Self {
        if !waits.is_empty() {
            self.backoff = waits;
        }
        self
    }

    /// Binds (creating if need be) the durable pull consumer.
    pub async fn build(mut self) -> Result<Subscriber, ConsumeError> {
        if let Some(first) = self.errors.drain(..).next() {
            return Err(first);
        }
        let publisher = self.runtime.publisher();
        let settings = publisher.settings();
        let filter = self
            .filter
            .unwrap_or_else(|| format!("{}.>", settings.prefix));
        let stream = publisher
            .context()
            .get_stream(&settings.name)
            .await
            .map_err(|e| ConsumeError::JetStream(e.to_string()))?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                &self.name,
                jetstream::consumer::pull::Config {
                    durable_name: Some(self.name.clone()),
                    filter_subject: filter,
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| ConsumeError::JetStream(e.to_string()))?;
        Ok(Subscriber {
            runtime: self.runtime,
            consumer,
            inbox: Inbox::new(self.name),
            handlers: self.handlers,
            max_deliveries: self.max_deliveries,
            backoff: self.backoff,
        })
    }
}

/// What became of one message.
enum Outcome {
    /// Applied now: acknowledged.
    Done,
    /// Applied before, or no handler wants it: acknowledged.
    Skipped,
    /// Failed; delivered again after this wait.
    Retry(Duration),
    /// Given up on, with the reason.
    SetAside(String),
}

impl Subscriber {
    /// Processes messages until `shutdown` completes; a message in hand is finished first.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ConsumeError> {
        let mut messages = self
            .consumer
            .messages()
            .await
            .map_err(|e| ConsumeError::JetStream(e.to_string()))?;
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let message = tokio::select! {
                () = &mut shutdown => return Ok(()),
                next = messages.next() => match next {
                    Some(Ok(message)) => message,
                    Some(Err(err)) => {
                        tracing::warn!(error = %err, "pull consumer error; continuing");
                        continue;
                    }
                    None => return Ok(()),
                },
            };
            self.process(&message).await?;
        }
    }

    async fn process(&self, message: &jetstream::Message) -> Result<(), ConsumeError> {
        let (sequence, delivered) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered),
            Err(_) => (0, 1),
        };
        let outcome = self.apply(message, delivered).await;
        let ack = match outcome {
            Outcome::Done | Outcome::Skipped => AckKind::Ack,
            Outcome::Retry(wait) => AckKind::Nak(Some(wait)),
            Outcome::SetAside(reason) => {
                self.set_aside(message, sequence, delivered, &reason)
                    .await?;
                AckKind::Term
            }
        };
        message
            .ack_with(ack)
            .await
            .map_err(|e| ConsumeError::JetStream(e.to_string()))
    }

    async fn apply(&self, message: &jetstream::Message, delivered: i64) -> Outcome {
        let (envelope, event) = match self.runtime.decode_message(message).await {
            Ok(decoded) => decoded,
            // Never decodable here, however often it is delivered.
            Err(err) => return Outcome::SetAside(format!("cannot decode: {err}")),
        };
        self.dispatch(&envelope, event, delivered).await
    }

    /// Runs the event's handler in the inbox transaction; `delivered` is its delivery count.
    async fn dispatch(&self, envelope: &Envelope, event: AnyEvent, delivered: i64) -> Outcome {
        let Some(handler) = self.handlers.get(event.descriptor().name()) else {
            return Outcome::Skipped;
        };
        let pool = self.runtime.store().pool();
        let retry = || {
            let step = usize::try_from(delivered.max(1) - 1).unwrap_or(usize::MAX);
            Outcome::Retry(self.backoff[step.min(self.backoff.len() - 1)])
        };
        let mut tx = match self.inbox.begin(pool, envelope.id).await {
            Ok(Some(tx)) => tx,
            Ok(None) => return Outcome::Skipped,
            Err(_) => return retry(),
        };
        match handler(event, envelope, &mut tx).await {
            Ok(()) => match tx.commit().await {
                Ok(()) => Outcome::Done,
                Err(_) => retry(),
            },
            Err(err) => {
                // Dropping the transaction would roll it back too; saying so returns the
                // connection at once.
                let _ = tx.rollback().await;
                if delivered >= self.max_deliveries {
                    Outcome::SetAside(format!("handler failed {delivered} times; last: {err}"))
                } else {
                    retry()
                }
            }
        }
    }

    /// Applies every event already in the store, from the first, through the same handlers
    /// and inbox: how a new or rebuilt projection catches up before (or while) it runs live.
    /// Events it applies are skipped when the stream delivers them, and events the stream
    /// delivered before are skipped here, so together they apply each event once, with no
    /// gap. An event whose handler fails stops the catch-up with the handler's error, since a
    /// projection built past a hole would be wrong. Returns how many events were applied now.
    pub async fn catch_up(&self) -> Result<u64, CatchUpError> {
        let store = self.runtime.store();
        let registry = Registry::global();
        let mut cursor = crate::store::LogCursor::START;
        let mut applied = 0;
        loop {
            let batch = store.read_all(cursor, 1_000).await?;
            let Some(last) = batch.last() else {
                return Ok(applied);
            };
            cursor = last.cursor();
            for stored in &batch {
                let event = stored.decode(registry)?;
                match self.dispatch(&stored.envelope, event, i64::MAX).await {
                    Outcome::Done => applied += 1,
                    Outcome::Skipped => {}
                    Outcome::Retry(_) => {
                        return Err(CatchUpError::Database(
                            "the inbox transaction failed; run the catch-up again".into(),
                        ));
                    }
                    Outcome::SetAside(reason) => {
                        return Err(CatchUpError::Handler {
                            event_id: stored.envelope.id,
                            position: stored.position,
                            reason,
                        });
                    }
                }
            }
        }
    }

    async fn set_aside(
        &self,
        message: &jetstream::Message,
        sequence: u64,
        delivered: i64,
        reason: &str,
    ) -> Result<(), ConsumeError> {
        let event_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(crate::publish::header_names::ID))
            .and_then(|id| id.as_str().parse::<uuid::Uuid>().ok());
        tracing::warn!(
            consumer = self.inbox.consumer(),
            stream_sequence = sequence,
            event_id = ?event_id,
            "message set aside in consumer_dead_letters"
        );
        sqlx::query(
            "INSERT INTO consumer_dead_letters \
             (consumer, stream_sequence, event_id, subject, deliveries, reason) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(self.inbox.consumer())
        .bind(sequence as i64)
        .bind(event_id)
        .bind(message.subject.as_str())
        .bind(delivered)
        .bind(reason)
        .execute(self.runtime.store().pool())
        .await
        .map_err(DatabaseError::from)?;
        Ok(())
    }
}
