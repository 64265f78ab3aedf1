//! Configuring a [`Subscriber`]: its handlers, what it listens to, how it retries.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::future::BoxFuture;
use sqlx::{PgConnection, Postgres};

use crate::any_event::AnyEvent;
use crate::envelope::Envelope;
use crate::event::DomainEvent;
use crate::runtime::Runtime;

use super::error::{ConsumeError, HandlerError};
use super::handlers::{EvictKeys, Handlers};
use super::subscriber::Subscriber;
use super::unreadable::Sweeper;

/// Configures a [`Subscriber`]; from [`Subscriber::builder`].
pub struct SubscriberBuilder {
    runtime: Runtime,
    name: String,
    filter: Option<String>,
    handlers: Handlers<Postgres>,
    max_batch: usize,
    ack_wait: Duration,
    skip_unknown_types: bool,
}

impl std::fmt::Debug for SubscriberBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberBuilder")
            .field("name", &self.name)
            .field("handlers", &self.handlers.names())
            .finish_non_exhaustive()
    }
}

impl SubscriberBuilder {
    pub(super) fn new(runtime: &Runtime, name: String) -> Self {
        SubscriberBuilder {
            runtime: runtime.clone(),
            name,
            filter: None,
            handlers: Handlers::default(),
            max_batch: 100,
            ack_wait: Duration::from_secs(30),
            skip_unknown_types: false,
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
    ///             edupulse_events::sqlx::query("INSERT INTO scores (student, score) VALUES ($1, $2)")
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
        self.handlers.on(handler);
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
        let mut this = self;
        let keys = this.runtime.keys().cloned();
        this.handlers
            .on_erasure(keys.map(|keys| keys as Arc<dyn EvictKeys>), hook);
        this
    }

    /// Calls `handler` for every event that has no handler of its own (by default those are
    /// acknowledged and skipped): to route them elsewhere, count them, or refuse them by
    /// returning an error, which retries and finally sets them aside.
    pub fn on_unhandled<F>(mut self, handler: F) -> Self
    where
        F: for<'c> Fn(
                AnyEvent,
                &'c Envelope,
                &'c mut PgConnection,
            ) -> BoxFuture<'c, Result<(), HandlerError>>
            + Send
            + Sync
            + 'static,
    {
        self.handlers.on_unhandled(handler);
        self
    }

    /// Only subjects matching `filter` (default: every event under the runtime's prefix).
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    /// Deliveries before a failing message is set aside (default 5, at least 1).
    pub fn max_deliveries(mut self, deliveries: u32) -> Self {
        self.handlers.max_deliveries = i64::from(deliveries.max(1));
        self
    }

    /// The wait before each redelivery of a failed message: the first entry after the first
    /// failure, and so on, the last repeating (default 0.1 s, 1 s, 5 s).
    pub fn backoff(mut self, waits: Vec<Duration>) -> Self {
        if !waits.is_empty() {
            self.handlers.backoff = waits;
        }
        self
    }

    /// Events applied in one transaction at most (default 100, at least 1). Messages already
    /// waiting are taken together, so a batch forms only under load and a lone message waits
    /// for nothing; one commit then serves many events. A failing handler does not fail its
    /// batch: the others are applied again without it.
    pub fn max_batch(mut self, events: usize) -> Self {
        self.max_batch = events.max(1);
        self
    }

    /// How long JetStream waits for a message's acknowledgement before it delivers the
    /// message again (default 30 s; at least 1 s), as the consumer is created: an existing
    /// durable consumer keeps its own. Messages sent on a connection that dropped were never
    /// received and come back only after this wait; a batch whose handlers take longer is
    /// delivered again meanwhile (the inbox still applies each event once).
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait.max(Duration::from_secs(1));
        self
    }

    /// Whether [`Subscriber::catch_up`] skips stored events of types this binary does not know
    /// (default: it stops with the event's position and id). For a projection that is meant
    /// to see only some of a store's events in a binary that links only their crate.
    pub fn skip_unknown_types(mut self, skip: bool) -> Self {
        self.skip_unknown_types = skip;
        self
    }

    /// Binds (creating if need be) the durable pull consumer, on a connection of the
    /// subscriber's own: a message it cannot parse then costs no other role its connection.
    pub async fn build(self) -> Result<Subscriber, ConsumeError> {
        let dispatcher = self.handlers.dispatcher(self.name.clone())?;
        let settings = self.runtime.publisher().settings().clone();
        let filter = self
            .filter
            .unwrap_or_else(|| format!("{}.>", settings.prefix));
        let client = self.runtime.connect_nats().await?;
        let context = jetstream::new(client.clone());
        let stream = context
            .get_stream(&settings.name)
            .await
            .map_err(|e| ConsumeError::JetStream(e.to_string()))?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                &self.name,
                jetstream::consumer::pull::Config {
                    durable_name: Some(self.name.clone()),
                    filter_subject: filter.clone(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: self.ack_wait,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| ConsumeError::JetStream(e.to_string()))?;
        // The wait the consumer has, which an existing one keeps.
        let ack_wait = consumer.cached_info().config.ack_wait;
        let sweeper = Sweeper::new(context, settings.name.clone(), self.name.clone(), filter);
        Ok(Subscriber::new(
            self.runtime,
            (client, consumer, sweeper),
            ack_wait,
            dispatcher,
            self.max_batch,
        )
        .skipping_unknown_types(self.skip_unknown_types))
    }
}
