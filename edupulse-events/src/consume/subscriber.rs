//! A typed subscriber: a durable JetStream pull consumer whose messages are decoded through the
//! registry (PII opened, old versions upcast) and dispatched to the handler registered for
//! their type, inside the consumer's inbox transaction, so a handler's database writes happen
//! once however often the message is delivered.

use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;

use crate::message::{Fault, MessageError};
use crate::privacy::DataSubjectErased;
use crate::runtime::Runtime;

use super::builder::SubscriberBuilder;
use super::dispatch::{AfterFailure, Delivery, Dispatcher, Outcome, Source};
use super::error::ConsumeError;
use super::health::SubscriberHealth;
use super::link::{Link, Seen};
use super::set_aside::NextLook;
use super::unreadable::Sweeper;

/// A running consumer's configuration and handlers; see [`Subscriber::builder`].
pub struct Subscriber {
    pub(super) runtime: Runtime,
    pub(super) consumer: PullConsumer,
    /// This subscriber's own connection, the one `consumer` reads on.
    client: async_nats::Client,
    pub(super) sweeper: Sweeper,
    ack_wait: Duration,
    pub(super) dispatcher: Dispatcher<sqlx::Postgres>,
    pub(super) max_batch: usize,
    /// Registered once, labelled with the consumer: settling a message allocates nothing.
    applied: ::metrics::Counter,
    pub(super) set_aside: ::metrics::Counter,
    /// Where [`Subscriber::health`] watchers look.
    health: tokio::sync::watch::Sender<SubscriberHealth>,
    /// Whether a catch-up passes over stored events of types this binary does not know.
    pub(super) skip_unknown_types: bool,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("consumer", &self.dispatcher.consumer.as_str())
            .field(
                "handlers",
                &self.dispatcher.handlers.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// How often the subscriber looks whether its connection dropped. async-nats reconnects and
/// the pull consumer goes on without a word, so it is looked for; the look is an atomic load.
const LINK_LOOK: Duration = Duration::from_millis(200);

/// One message of a batch, once decoded or found undecodable.
struct Received {
    sequence: u64,
    delivered: i64,
    /// Where its event went in the batch's deliveries; `None` when it did not decode.
    delivery: Option<usize>,
    /// Why it did not decode.
    undecodable: Option<String>,
}

impl Subscriber {
    /// A subscriber named `name`: the durable consumer's name and the inbox's, so it resumes
    /// where it stopped and never applies an event twice.
    pub fn builder(runtime: &Runtime, name: impl Into<String>) -> SubscriberBuilder {
        SubscriberBuilder::new(runtime, name.into())
    }

    pub(super) fn new(
        runtime: Runtime,
        (client, consumer, sweeper): (async_nats::Client, PullConsumer, Sweeper),
        ack_wait: Duration,
        dispatcher: Dispatcher<sqlx::Postgres>,
        max_batch: usize,
    ) -> Self {
        let name = dispatcher.consumer.clone();
        Subscriber {
            runtime,
            consumer,
            client,
            sweeper,
            ack_wait,
            applied: ::metrics::counter!(crate::metrics::CONSUMER_APPLIED, "consumer" => name.clone()),
            set_aside: ::metrics::counter!(crate::metrics::CONSUMER_DEAD_LETTERS, "consumer" => name),
            dispatcher,
            max_batch,
            health: tokio::sync::watch::Sender::new(SubscriberHealth::Running),
            skip_unknown_types: false,
        }
    }

    pub(super) fn skipping_unknown_types(mut self, skip: bool) -> Self {
        self.skip_unknown_types = skip;
        self
    }

    /// Follows the subscriber's health once [`Subscriber::run`] has it: running, or stalled on
    /// an event it cannot open for now (see [`SubscriberHealth`]). Take it before `run`.
    pub fn health(&self) -> tokio::sync::watch::Receiver<SubscriberHealth> {
        self.health.subscribe()
    }

    /// Processes messages until `shutdown` completes; the batch in hand is finished first.
    /// Messages fetched but not yet begun are not acknowledged: JetStream delivers them again
    /// after the consumer's acknowledgement wait (30 s by default), to this subscriber or
    /// another. When the connection drops, the messages it was sent that can never be received
    /// (frames the client cannot parse, which is why it dropped) are set aside.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ConsumeError> {
        let messages = self
            .consumer
            .messages()
            .await
            .map_err(|e| ConsumeError::JetStream(e.to_string()))?;
        let mut batches = messages.ready_chunks(self.max_batch);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut link = Link::new(
            self.client.statistics(),
            self.dispatcher.consumer.as_str(),
            self.ack_wait,
        );
        let mut looks = tokio::time::interval(LINK_LOOK);
        looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_look = NextLook::Look;
        // Tells a batch waiting out a stall to stop; any other batch is finished first.
        let (stop, stopping) = tokio::sync::watch::channel(false);
        loop {
            let batch = tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                _ = looks.tick() => {
                    if link.look(Instant::now()) == Seen::Reconnected {
                        next_look = NextLook::sweep_now();
                    }
                    let set_aside;
                    (next_look, set_aside) = self.sweep(next_look).await;
                    if set_aside > 0 {
                        // The drop's cause is gone: a later drop is a new one, not a loop.
                        link.cause_removed();
                    }
                    continue;
                }
                next = batches.next() => match next {
                    Some(batch) => batch,
                    None => return Ok(()),
                },
            };
            let messages: Vec<_> = batch
                .into_iter()
                .filter_map(|next| {
                    next.inspect_err(|err| {
                        tracing::warn!(error = %err, "pull consumer error; continuing");
                    })
                    .ok()
                })
                .collect();
            let processing = self.process(&messages, stopping.clone());
            tokio::pin!(processing);
            tokio::select! {
                () = &mut processing => {}
                () = &mut shutdown => {
                    let _ = stop.send(true);
                    processing.await;
                    return Ok(());
                }
            }
        }
    }

    /// Decodes the messages in order and applies them; a data subject's erasure ends a group,
    /// so the messages after it decode once its key has left the cache.
    #[tracing::instrument(name = "edupulse.consume_batch", level = "debug", skip_all, fields(consumer = self.dispatcher.consumer.as_str(), messages = messages.len()))]
    async fn process(
        &self,
        messages: &[jetstream::Message],
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let pool = self.runtime.store().pool();
        let mut received = Vec::with_capacity(messages.len());
        let mut deliveries: Vec<Delivery> = Vec::with_capacity(messages.len());
        let mut applied_up_to = 0;
        for message in messages {
            let (sequence, delivered) = match message.info() {
                Ok(info) => (info.stream_sequence, info.delivered),
                Err(_) => (0, 1),
            };
            let mut entry = Received {
                sequence,
                delivered,
                delivery: None,
                undecodable: None,
            };
            let Some(decoded) = self.decode_waiting(message, messages, &mut stop).await else {
                // Stopped while waiting: this message and the rest stay unacknowledged and
                // come back, in order, after the acknowledgement wait.
                break;
            };
            match decoded {
                Ok((envelope, event)) => {
                    let erasure = event.is::<DataSubjectErased>();
                    entry.delivery = Some(deliveries.len());
                    deliveries.push(Delivery::new(envelope, event, Source::Stream(delivered)));
                    if erasure {
                        self.dispatcher
                            .dispatch(
                                pool,
                                &mut deliveries[applied_up_to..],
                                AfterFailure::ApplyTheOthers,
                            )
                            .await;
                        applied_up_to = deliveries.len();
                    }
                }
                // Never decodable here, however often it is delivered.
                Err(err) => entry.undecodable = Some(format!("cannot decode: {err}")),
            }
            received.push(entry);
        }
        self.dispatcher
            .dispatch(
                pool,
                &mut deliveries[applied_up_to..],
                AfterFailure::ApplyTheOthers,
            )
            .await;
        for (message, entry) in messages.iter().zip(received) {
            let outcome = match (entry.delivery, entry.undecodable) {
                (Some(index), _) => deliveries[index]
                    .outcome
                    .take()
                    .expect("dispatch settles every delivery"),
                (None, reason) => Outcome::SetAside(reason.unwrap_or_default()),
            };
            self.settle(message, entry.sequence, entry.delivered, outcome)
                .await;
        }
    }

    /// Decodes `message`; while that fails for a cause outside the message (the database, the
    /// key provider, a wrong master key, missing keys), waits and tries again, here, rather
    /// than letting JetStream redeliver it: the batch in hand (`holding`: the messages before
    /// it, waiting to be applied, and those behind it) stays in hand, in order, told to
    /// JetStream as in progress so none is redelivered meanwhile, and none uses up a
    /// delivery. `None` when `stop` was signalled while waiting.
    async fn decode_waiting(
        &self,
        message: &jetstream::Message,
        holding: &[jetstream::Message],
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Option<Result<(crate::Envelope, crate::AnyEvent), MessageError>> {
        let sequence = message.info().map_or(0, |i| i.stream_sequence);
        let mut attempt: i64 = 1;
        loop {
            let err = match self.runtime.decode_message(message).await {
                Err(err) if err.fault() != Fault::Message => err,
                decoded => {
                    if attempt > 1 {
                        tracing::info!(
                            consumer = self.dispatcher.consumer.as_str(),
                            stream_sequence = sequence,
                            attempts = attempt,
                            "consumer no longer stalled"
                        );
                        self.health.send_replace(SubscriberHealth::Running);
                    }
                    return Some(decoded);
                }
            };
            self.health.send_replace(SubscriberHealth::Stalled {
                fault: err.fault(),
                stream_sequence: sequence,
                attempts: u32::try_from(attempt).unwrap_or(u32::MAX),
            });
            let wait = self.stall(&err, sequence, attempt);
            for held in holding {
                if let Err(err) = held.ack_with(AckKind::Progress).await {
                    tracing::warn!(error = %err, "could not tell JetStream a held message is in progress");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|stopping| *stopping) => return None,
            }
            attempt = attempt.saturating_add(1);
        }
    }

    /// Reports a message that could not be decoded for a cause outside it, and how long to
    /// wait before the next attempt: the back-off grows with the attempts and stays at its
    /// last step, however many there are, since waiting loses nothing.
    fn stall(&self, err: &MessageError, sequence: u64, attempt: i64) -> Duration {
        let consumer = self.dispatcher.consumer.as_str();
        let fault = if err.fault() == Fault::Configuration {
            tracing::error!(
                consumer,
                stream_sequence = sequence,
                error = %err,
                "consumer stalled: this process cannot open the event; fix the configuration"
            );
            "configuration"
        } else {
            tracing::warn!(
                consumer,
                stream_sequence = sequence,
                error = %err,
                "event not decoded for now; retrying it"
            );
            "transient"
        };
        ::metrics::counter!(crate::metrics::CONSUMER_STALLED, "consumer" => consumer.to_owned(), "fault" => fault)
            .increment(1);
        let backoff = &self.dispatcher.backoff;
        let step = usize::try_from(attempt.max(1) - 1).unwrap_or(usize::MAX);
        backoff[step.min(backoff.len() - 1)]
    }

    /// Acknowledges, retries or sets aside one message, after its batch committed. A failure
    /// here loses nothing (an unacknowledged message comes back, and the inbox recognises it),
    /// so it is reported and the subscriber goes on.
    async fn settle(
        &self,
        message: &jetstream::Message,
        sequence: u64,
        delivered: i64,
        outcome: Outcome,
    ) {
        let ack = match outcome {
            Outcome::Done => {
                self.applied.increment(1);
                AckKind::Ack
            }
            Outcome::Skipped => AckKind::Ack,
            Outcome::Retry(wait) => AckKind::Nak(Some(wait)),
            Outcome::SetAside(reason) => {
                match self.set_aside(message, sequence, delivered, &reason).await {
                    Ok(()) => {
                        self.set_aside.increment(1);
                        AckKind::Term
                    }
                    // Not recorded, so not terminated: it comes back and is set aside then.
                    Err(err) => {
                        tracing::warn!(
                            consumer = self.dispatcher.consumer.as_str(),
                            stream_sequence = sequence,
                            error = %err,
                            "could not record a dead letter; the message will be redelivered"
                        );
                        AckKind::Nak(self.dispatcher.backoff.first().copied())
                    }
                }
            }
        };
        if let Err(err) = message.ack_with(ack).await {
            tracing::warn!(
                consumer = self.dispatcher.consumer.as_str(),
                stream_sequence = sequence,
                error = %err,
                "could not acknowledge; the message will be redelivered"
            );
        }
    }
}
