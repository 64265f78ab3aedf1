//! A typed subscriber on the in-process bus, with its inbox in the embedded store's SQLite
//! database: the same handlers, batching, retries and setting aside as the JetStream
//! [`Subscriber`](super::Subscriber), through the same dispatcher. The bus delivers each
//! message once and keeps no history, so a failed event waits here for its retry, and a
//! subscriber that fell behind the bus catches up from the store's log.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use sqlx::{Sqlite, SqliteConnection};
use tokio::sync::broadcast::{self, error::TryRecvError};
use uuid::Uuid;

use crate::any_event::AnyEvent;
use crate::embedded::{BusMessage, InProcessBus, SqliteStore};
use crate::envelope::Envelope;
use crate::event::DomainEvent;
use crate::message::{Fault, MessageError};
use crate::registry::Registry;
use crate::store::flow::Backend;
use crate::store::{EventStore, LogCursor};

use super::dispatch::{AfterFailure, Delivery, Dispatcher, Outcome, Source};
use super::error::{ConsumeError, HandlerError};
use super::handlers::Handlers;

/// Log events read per page when catching up.
const PAGE: i64 = 1_000;

/// Configures a [`BusSubscriber`]; from [`BusSubscriber::builder`].
pub struct BusSubscriberBuilder {
    store: SqliteStore,
    messages: broadcast::Receiver<BusMessage>,
    name: String,
    handlers: Handlers<Sqlite>,
    max_batch: usize,
}

impl std::fmt::Debug for BusSubscriberBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusSubscriberBuilder")
            .field("name", &self.name)
            .field("handlers", &self.handlers.names())
            .finish_non_exhaustive()
    }
}

impl BusSubscriberBuilder {
    /// Calls `handler` for every event of type `T` (older versions arrive upcast) inside the
    /// inbox transaction on the store's database: its writes commit with the record that the
    /// event was applied. See [`SubscriberBuilder::on`](super::SubscriberBuilder::on).
    pub fn on<T, F>(mut self, handler: F) -> Self
    where
        T: DomainEvent,
        F: for<'c> Fn(
                T,
                &'c Envelope,
                &'c mut SqliteConnection,
            ) -> BoxFuture<'c, Result<(), HandlerError>>
            + Send
            + Sync
            + 'static,
    {
        self.handlers.on(handler);
        self
    }

    /// Calls `hook` when a data subject is erased, inside the inbox transaction, once the
    /// store confirms the erasure. See
    /// [`SubscriberBuilder::on_erasure`](super::SubscriberBuilder::on_erasure).
    pub fn on_erasure<F>(mut self, hook: F) -> Self
    where
        F: for<'c> Fn(Uuid, &'c mut SqliteConnection) -> BoxFuture<'c, Result<(), HandlerError>>
            + Send
            + Sync
            + 'static,
    {
        // The embedded store caches no keys: nothing to evict.
        self.handlers.on_erasure(None, hook);
        self
    }

    /// Calls `handler` for every event without a handler of its own (by default skipped).
    pub fn on_unhandled<F>(mut self, handler: F) -> Self
    where
        F: for<'c> Fn(
                AnyEvent,
                &'c Envelope,
                &'c mut SqliteConnection,
            ) -> BoxFuture<'c, Result<(), HandlerError>>
            + Send
            + Sync
            + 'static,
    {
        self.handlers.on_unhandled(handler);
        self
    }

    /// Attempts before a failing event is set aside (default 5, at least 1).
    pub fn max_deliveries(mut self, attempts: u32) -> Self {
        self.handlers.max_deliveries = i64::from(attempts.max(1));
        self
    }

    /// The wait before each new attempt of a failed event, the last repeating (default 0.1 s,
    /// 1 s, 5 s).
    pub fn backoff(mut self, waits: Vec<Duration>) -> Self {
        if !waits.is_empty() {
            self.handlers.backoff = waits;
        }
        self
    }

    /// Events applied in one transaction at most (default 100, at least 1).
    pub fn max_batch(mut self, events: usize) -> Self {
        self.max_batch = events.max(1);
        self
    }

    /// The subscriber, or the first mistake made registering its handlers.
    pub fn build(self) -> Result<BusSubscriber, ConsumeError> {
        Ok(BusSubscriber {
            dispatcher: self.handlers.dispatcher(self.name)?,
            store: self.store,
            messages: self.messages,
            max_batch: self.max_batch,
            waiting: VecDeque::new(),
        })
    }
}

/// A failed event waiting for its next attempt.
struct Waiting {
    message: BusMessage,
    attempts: i64,
    due: Instant,
}

/// A subscriber on the [`InProcessBus`], applying each event once through its handlers and
/// the inbox in the store's database.
///
/// ```
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use edupulse_events::consume::BusSubscriber;
/// use edupulse_events::embedded::{InProcessBus, SqliteStore, relay_pending};
/// use edupulse_events::privacy::DataSubjectErased;
///
/// let store = SqliteStore::in_memory("edupulse").await?;
/// let bus = InProcessBus::default();
/// let mut subscriber = BusSubscriber::builder(&store, &bus, "audit")
///     .on(|erased: DataSubjectErased, _envelope, tx| {
///         Box::pin(async move {
///             edupulse_events::sqlx::query("SELECT ?").bind(erased.subject_id.to_string()).execute(&mut *tx).await?;
///             Ok(())
///         })
///     })
///     .build()?;
/// relay_pending(&store, &bus).await?;
/// subscriber.apply_waiting().await?;
/// # Ok(()) }
/// ```
pub struct BusSubscriber {
    store: SqliteStore,
    messages: broadcast::Receiver<BusMessage>,
    dispatcher: Dispatcher<Sqlite>,
    max_batch: usize,
    /// Failed events waiting for their next attempt, oldest first: the bus does not deliver
    /// again.
    waiting: VecDeque<Waiting>,
}

impl std::fmt::Debug for BusSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusSubscriber")
            .field("consumer", &self.dispatcher.consumer.as_str())
            .field("waiting", &self.waiting.len())
            .finish_non_exhaustive()
    }
}

/// What became of the messages a pass looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Settled now.
    pub applied: u64,
    /// Settled before (the inbox knew them), or without a handler.
    pub skipped: u64,
    /// Failed and waiting for another attempt.
    pub retrying: u64,
    /// Given up on and recorded in `consumer_dead_letters`.
    pub set_aside: u64,
}

impl BusSubscriber {
    /// A subscriber named `name` (its inbox's name: a stable one, since it is what makes an
    /// event applied before recognised) receiving what `bus` carries from now on, with its
    /// inbox in `store`'s database.
    pub fn builder(
        store: &SqliteStore,
        bus: &InProcessBus,
        name: impl Into<String>,
    ) -> BusSubscriberBuilder {
        BusSubscriberBuilder {
            store: store.clone(),
            messages: bus.subscribe(),
            name: name.into(),
            handlers: Handlers::default(),
            max_batch: 100,
        }
    }

    /// The failed events waiting for another attempt.
    pub fn retrying(&self) -> usize {
        self.waiting.len()
    }

    /// Applies what the bus holds for this subscriber now, and the failed events whose retry
    /// is due, then returns. A subscriber that fell behind the bus (which then dropped
    /// messages for it) catches up from the store's log first.
    pub async fn apply_waiting(&mut self) -> Result<Settled, ConsumeError> {
        let mut total = Settled::default();
        loop {
            let mut batch: Vec<(BusMessage, i64)> = Vec::new();
            while batch.len() < self.max_batch {
                match self.waiting.front() {
                    Some(waiting) if waiting.due <= Instant::now() => {
                        let waiting = self.waiting.pop_front().expect("looked at just above");
                        batch.push((waiting.message, waiting.attempts + 1));
                        continue;
                    }
                    _ => {}
                }
                match self.messages.try_recv() {
                    Ok(message) => batch.push((message, 1)),
                    Err(TryRecvError::Lagged(lost)) => {
                        tracing::warn!(
                            consumer = self.dispatcher.consumer.as_str(),
                            lost,
                            "fell behind the in-process bus; catching up from the log"
                        );
                        add(&mut total, self.catch_up().await?);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                }
            }
            if batch.is_empty() {
                return Ok(total);
            }
            add(&mut total, self.apply(batch).await);
        }
    }

    /// Runs until `shutdown` completes: catches up from the log first (failed events waiting
    /// for a retry live in memory, so a subscriber stopped before their retry applies them
    /// here when it runs again), then applies messages as the bus delivers them, and failed
    /// events when their retry is due. A failure to read the log is logged and tried again
    /// after the first back-off step; nothing taken from the bus is dropped.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ConsumeError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut behind = true;
        loop {
            if behind {
                match self.catch_up().await {
                    Ok(_) => behind = false,
                    Err(err) => tracing::warn!(
                        consumer = self.dispatcher.consumer.as_str(),
                        error = %err,
                        "could not catch up from the log; trying again"
                    ),
                }
            }
            self.apply_waiting().await?;
            let next = if behind {
                Some(Instant::now() + self.dispatcher.backoff[0])
            } else {
                self.waiting.front().map(|w| w.due)
            };
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                received = self.messages.recv() => match received {
                    Ok(message) => {
                        self.apply(vec![(message, 1)]).await;
                    }
                    Err(broadcast::error::RecvError::Lagged(lost)) => {
                        tracing::warn!(
                            consumer = self.dispatcher.consumer.as_str(),
                            lost,
                            "fell behind the in-process bus; catching up from the log"
                        );
                        behind = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                () = sleep_until(next) => {}
            }
        }
    }

    /// Applies every event of the store's log that this subscriber has not applied (the
    /// inbox skips the rest), except those waiting here for a retry and those it set aside:
    /// how it catches up after the bus dropped messages for it, or when it starts on a store
    /// that already holds events.
    pub async fn catch_up(&mut self) -> Result<Settled, ConsumeError> {
        let mut total = Settled::default();
        let mut cursor = LogCursor::START;
        let set_aside: Vec<String> =
            sqlx::query_scalar("SELECT event_id FROM consumer_dead_letters WHERE consumer = ?")
                .bind(self.dispatcher.consumer.as_str())
                .fetch_all(self.store.pool())
                .await
                .map_err(|err| ConsumeError::Database(err.into()))?;
        let mut passed_over: HashSet<Uuid> =
            set_aside.iter().filter_map(|id| id.parse().ok()).collect();
        passed_over.extend(self.waiting.iter().map(|w| w.message.envelope.id));
        loop {
            // As stored, sealed: `apply` opens them as it opens what the bus carries.
            let page = Backend::select_after(&self.store, cursor, PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(total);
            };
            cursor = last.cursor();
            let prefix = self.store.subject_prefix();
            let batch: Vec<(BusMessage, i64)> = page
                .into_iter()
                .filter(|stored| !passed_over.contains(&stored.envelope.id))
                .map(|stored| {
                    // An unknown type keeps its type string, and is set aside as undecodable.
                    let subject = Registry::global()
                        .get(&stored.envelope.event_type, stored.envelope.version)
                        .map_or_else(
                            || format!("{prefix}.{}", stored.envelope.type_string()),
                            |d| format!("{prefix}.{}", d.subject()),
                        );
                    let message = BusMessage {
                        subject,
                        envelope: stored.envelope,
                    };
                    (message, 1)
                })
                .collect();
            for chunk in batch.chunks(self.max_batch) {
                add(&mut total, self.apply(chunk.to_vec()).await);
            }
        }
    }

    /// Opens, decodes and dispatches `batch` (each message with its attempt count), then
    /// settles each: retries wait here, what cannot be applied is set aside.
    async fn apply(&mut self, batch: Vec<(BusMessage, i64)>) -> Settled {
        let mut applied = Settled::default();
        let mut deliveries = Vec::with_capacity(batch.len());
        let mut messages = Vec::with_capacity(batch.len());
        for (message, attempts) in batch {
            let mut envelopes = [message.envelope.clone()];
            let opened = self.store.unseal(&mut envelopes).await;
            let [envelope] = envelopes;
            let decoded = opened.map_err(MessageError::from).and_then(|()| {
                Registry::global()
                    .decode(&envelope.event_type, envelope.version, &envelope.payload)
                    .map_err(MessageError::from)
            });
            match decoded {
                Ok(event) => {
                    deliveries.push(Delivery::new(envelope, event, Source::Stream(attempts)));
                    messages.push((message, attempts));
                }
                Err(err) if err.fault() == Fault::Message => {
                    let reason = format!("cannot decode: {err}");
                    self.set_aside(message, attempts, &reason, &mut applied)
                        .await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "event not opened for now; retrying it");
                    let wait = self.dispatcher.backoff[0];
                    self.wait(message, attempts, wait);
                    applied.retrying += 1;
                }
            }
        }
        self.dispatcher
            .dispatch(
                self.store.pool(),
                &mut deliveries,
                AfterFailure::ApplyTheOthers,
            )
            .await;
        for (delivery, (message, attempts)) in deliveries.into_iter().zip(messages) {
            match delivery.outcome.expect("dispatch settles every delivery") {
                Outcome::Done => applied.applied += 1,
                Outcome::Skipped => applied.skipped += 1,
                Outcome::Retry(wait) => {
                    self.wait(message, attempts, wait);
                    applied.retrying += 1;
                }
                Outcome::SetAside(reason) => {
                    self.set_aside(message, attempts, &reason, &mut applied)
                        .await;
                }
            }
        }
        applied
    }

    /// Keeps `message` for another attempt after `wait`, in order of when each is due.
    fn wait(&mut self, message: BusMessage, attempts: i64, wait: Duration) {
        let due = Instant::now() + wait;
        let at = self.waiting.partition_point(|w| w.due <= due);
        self.waiting.insert(
            at,
            Waiting {
                message,
                attempts,
                due,
            },
        );
    }

    /// Records `message` in `consumer_dead_letters` with `reason`, the only trace of it left;
    /// when that fails, keeps it for another attempt instead (the bus does not deliver again).
    async fn set_aside(
        &mut self,
        message: BusMessage,
        attempts: i64,
        reason: &str,
        settled: &mut Settled,
    ) {
        match self.record_dead_letter(&message, attempts, reason).await {
            Ok(()) => settled.set_aside += 1,
            Err(err) => {
                tracing::warn!(
                    consumer = self.dispatcher.consumer.as_str(),
                    error = %err,
                    "could not record a dead letter; the event waits for another attempt"
                );
                let wait = self.dispatcher.backoff[0];
                // One attempt fewer counted, so the next failure sets it aside again.
                self.wait(message, attempts.saturating_sub(1), wait);
                settled.retrying += 1;
            }
        }
    }

    async fn record_dead_letter(
        &self,
        message: &BusMessage,
        attempts: i64,
        reason: &str,
    ) -> Result<(), ConsumeError> {
        let consumer = self.dispatcher.consumer.as_str();
        tracing::warn!(
            consumer,
            event_id = %message.envelope.id,
            reason,
            "event set aside"
        );
        sqlx::query(
            "INSERT OR REPLACE INTO consumer_dead_letters \
             (consumer, event_id, subject, deliveries, reason, failed_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(consumer)
        .bind(message.envelope.id.to_string())
        .bind(&message.subject)
        .bind(attempts)
        .bind(reason)
        .bind(chrono::Utc::now())
        .execute(self.store.pool())
        .await
        .map_err(|err| ConsumeError::Database(err.into()))?;
        Ok(())
    }
}

fn add(total: &mut Settled, more: Settled) {
    total.applied += more.applied;
    total.skipped += more.skipped;
    total.retrying += more.retrying;
    total.set_aside += more.set_aside;
}

/// Waits until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
