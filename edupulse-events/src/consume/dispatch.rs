//! Applying decoded events through their handlers, many to one inbox transaction: one commit
//! (one WAL flush) serves a whole batch, and a failing handler costs its own event a retry,
//! never the others: the batch is rolled back and applied again without it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool};

use crate::any_event::AnyEvent;
use crate::envelope::Envelope;
use crate::error::DecodeError;
use crate::registry::Registry;
use uuid::Uuid;

use crate::database::{DatabaseError, Redacted};

use super::error::HandlerError;
use super::inbox::Inbox;

/// A handler with its event type erased, as the subscriber stores it.
pub(super) type Handler = Box<
    dyn for<'c> Fn(
            AnyEvent,
            &'c Envelope,
            &'c mut PgConnection,
        ) -> BoxFuture<'c, Result<(), HandlerError>>
        + Send
        + Sync,
>;

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Applied now: acknowledged.
    Done,
    /// Applied before, or no handler wants it: acknowledged.
    Skipped,
    /// Failed; delivered again after this wait.
    Retry(Duration),
    /// Given up on, with the reason.
    SetAside(String),
}

/// One decoded event on its way through a handler.
pub(super) struct Delivery {
    pub(super) envelope: Envelope,
    name: &'static str,
    event: Option<AnyEvent>,
    /// How often it has been delivered, this time included.
    pub(super) delivered: i64,
    /// Set once the event is settled.
    pub(super) outcome: Option<Outcome>,
}

impl Delivery {
    pub(super) fn new(envelope: Envelope, event: AnyEvent, delivered: i64) -> Self {
        Delivery {
            envelope,
            name: event.descriptor().name(),
            event: Some(event),
            delivered,
            outcome: None,
        }
    }

    /// The decoded event, decoded again from the (already opened) envelope when a rolled-back
    /// attempt consumed it.
    fn take_event(&mut self) -> Result<AnyEvent, DecodeError> {
        match self.event.take() {
            Some(event) => Ok(event),
            None => Registry::global().decode(
                &self.envelope.event_type,
                self.envelope.version,
                &self.envelope.payload,
            ),
        }
    }
}

/// What a failed event means for the events after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterFailure {
    /// Live consumption: the failed event is retried on its own, the others go on.
    ApplyTheOthers,
    /// Rebuilding: a projection built past a hole would be wrong, so nothing after it applies.
    Stop,
}

/// How one transaction over a group of events ended.
enum Attempt {
    /// Committed; these indices were applied now, the rest had been applied before.
    Committed(HashSet<usize>),
    /// The handler of this index failed; nothing was committed.
    HandlerFailed(usize, String),
    /// A statement failed although every handler reported success (one swallowed an error),
    /// so PostgreSQL would have turned the commit into a rollback; nothing was committed.
    Aborted,
    /// PostgreSQL broke a deadlock or a serialization conflict by failing this transaction;
    /// nothing was committed.
    Conflict,
    /// The connection, the pool, the inbox's own statements or the commit failed; nothing was
    /// committed.
    Database,
}

/// The delivery count of an event replayed from the store: its first failure is final.
pub(super) const REPLAYED: i64 = i64::MAX;

/// Immediate retries of a group that lost a deadlock or serialization conflict.
const CONFLICT_RETRIES: u32 = 3;

/// The reason recorded for an event whose transaction a handler left aborted.
const ABORTED: &str = "a statement in the handler's transaction failed but the handler reported \
                       success; the transaction could not commit";

/// The handlers, the inbox and the retry policy: everything that turns decoded events into
/// committed effects.
pub(super) struct Dispatcher {
    pub(super) inbox: Inbox,
    pub(super) handlers: HashMap<&'static str, Handler>,
    /// For events without a handler of their own; `None` skips them.
    pub(super) unhandled: Option<Handler>,
    pub(super) max_deliveries: i64,
    pub(super) backoff: Vec<Duration>,
}

impl Dispatcher {
    /// Settles every delivery: applies those with a handler (in their order, in as few
    /// transactions as their failures allow), skips the rest. A failed event's handler does
    /// not run again for this delivery; the events before it are applied again and committed,
    /// those after it go on in a transaction of their own, so each handler runs at most twice.
    /// Live ([`AfterFailure::ApplyTheOthers`]) a failed event that will be retried holds back
    /// the later events of its aggregate, retried with it so they come back behind it; with
    /// [`AfterFailure::Stop`] the deliveries after the first failure are left unsettled.
    pub(super) async fn dispatch(
        &self,
        pool: &PgPool,
        items: &mut [Delivery],
        after_failure: AfterFailure,
    ) {
        let mut wanted = Vec::new();
        for (index, item) in items.iter_mut().enumerate() {
            if self.handler(item.name).is_some() {
                wanted.push(index);
            } else {
                item.outcome = Some(Outcome::Skipped);
            }
        }
        // Aggregates whose earlier event will be retried, with its wait.
        let mut held: HashMap<Uuid, Duration> = HashMap::new();
        let mut conflicts_retried = 0;
        // Groups still to apply, the next at the end.
        let mut groups = vec![wanted];
        while let Some(mut group) = groups.pop() {
            loop {
                group.retain(|&index| {
                    let item = &mut items[index];
                    match held.get(&item.envelope.aggregate_id) {
                        Some(&wait) => {
                            item.outcome = Some(Outcome::Retry(wait));
                            false
                        }
                        None => true,
                    }
                });
                if group.is_empty() {
                    break;
                }
                match self.attempt(pool, items, &group).await {
                    Attempt::Committed(applied) => {
                        for &index in &group {
                            items[index].outcome = Some(if applied.contains(&index) {
                                Outcome::Done
                            } else {
                                Outcome::Skipped
                            });
                        }
                        break;
                    }
                    Attempt::HandlerFailed(failed, reason) => {
                        let outcome = self.failed(items[failed].delivered, reason);
                        if let Outcome::Retry(wait) = outcome {
                            held.insert(items[failed].envelope.aggregate_id, wait);
                        }
                        items[failed].outcome = Some(outcome);
                        let at = group
                            .iter()
                            .position(|&index| index == failed)
                            .expect("the failed event is one of the group");
                        let rest = group.split_off(at + 1);
                        group.truncate(at);
                        match after_failure {
                            AfterFailure::ApplyTheOthers if !rest.is_empty() => groups.push(rest),
                            AfterFailure::ApplyTheOthers => {}
                            AfterFailure::Stop => groups.clear(),
                        }
                    }
                    // Which handler swallowed the error cannot be told inside one transaction:
                    // each event gets a transaction of its own.
                    Attempt::Aborted if group.len() > 1 => {
                        groups.extend(group.iter().rev().map(|&index| vec![index]));
                        break;
                    }
                    Attempt::Aborted => {
                        let index = group[0];
                        let outcome = self.failed(items[index].delivered, ABORTED.into());
                        if let Outcome::Retry(wait) = outcome {
                            held.insert(items[index].envelope.aggregate_id, wait);
                        }
                        items[index].outcome = Some(outcome);
                        if after_failure == AfterFailure::Stop {
                            groups.clear();
                        }
                        break;
                    }
                    // A deadlock or serialization failure says nothing about the events:
                    // the group is tried again as it is, a few times.
                    Attempt::Conflict if conflicts_retried < CONFLICT_RETRIES => {
                        conflicts_retried += 1;
                    }
                    Attempt::Conflict | Attempt::Database => {
                        for &index in &group {
                            items[index].outcome = Some(self.retry(items[index].delivered));
                        }
                        if after_failure == AfterFailure::Stop {
                            groups.clear();
                        }
                        break;
                    }
                }
            }
        }
    }

    /// One transaction: records the group's events in the inbox, runs the handlers of those
    /// not applied before, checks the transaction survived them, commits.
    async fn attempt(&self, pool: &PgPool, items: &mut [Delivery], group: &[usize]) -> Attempt {
        let mut tx = match pool.begin().await {
            Ok(tx) => tx,
            Err(err) => return database_failed(err),
        };
        let ids: Vec<_> = group
            .iter()
            .map(|&index| items[index].envelope.id)
            .collect();
        let fresh = match self.inbox.record(&mut tx, &ids).await {
            Ok(fresh) => fresh,
            Err(err) => return database_failed(err),
        };
        let mut applied = HashSet::new();
        let mut ran = HashSet::new();
        for &index in group {
            let item = &mut items[index];
            // Applied before, or a second copy of one in this group.
            if !fresh.contains(&item.envelope.id) || !ran.insert(item.envelope.id) {
                continue;
            }
            let handler = self
                .handler(item.name)
                .expect("only events with a handler are grouped");
            let event = match item.take_event() {
                Ok(event) => event,
                Err(err) => return Attempt::HandlerFailed(index, format!("cannot decode: {err}")),
            };
            if let Err(err) = handler(event, &item.envelope, &mut tx).await {
                // Dropping the transaction would roll it back too; saying so returns the
                // connection at once.
                let _ = tx.rollback().await;
                return match database_cause(&*err) {
                    // An earlier handler swallowed the statement failure; this one only met it.
                    Some(cause) if code_of(cause).as_deref() == Some("25P02") => Attempt::Aborted,
                    Some(cause) if is_conflict(cause) => Attempt::Conflict,
                    Some(cause) if is_unavailable(cause) => Attempt::Database,
                    Some(cause) => Attempt::HandlerFailed(index, describe(&*err, cause)),
                    None => Attempt::HandlerFailed(index, err.to_string()),
                };
            }
            applied.insert(index);
        }
        if applied.is_empty() {
            let _ = tx.rollback().await;
            return Attempt::Committed(applied);
        }
        if Inbox::still_open(&mut tx).await.is_err() {
            let _ = tx.rollback().await;
            return Attempt::Aborted;
        }
        match tx.commit().await {
            Ok(()) => Attempt::Committed(applied),
            Err(err) => database_failed(err),
        }
    }

    fn handler(&self, name: &str) -> Option<&Handler> {
        self.handlers.get(name).or(self.unhandled.as_ref())
    }

    /// A failure on the `delivered`th delivery: retried while deliveries remain.
    fn failed(&self, delivered: i64, reason: String) -> Outcome {
        if delivered == REPLAYED {
            Outcome::SetAside(reason)
        } else if delivered >= self.max_deliveries {
            Outcome::SetAside(format!("handler failed {delivered} times; last: {reason}"))
        } else {
            self.retry(delivered)
        }
    }

    fn retry(&self, delivered: i64) -> Outcome {
        let step = usize::try_from(delivered.max(1) - 1).unwrap_or(usize::MAX);
        Outcome::Retry(self.backoff[step.min(self.backoff.len() - 1)])
    }
}

fn database_failed(err: sqlx::Error) -> Attempt {
    let conflict = is_conflict(&err);
    tracing::warn!(error = %DatabaseError::from(err), "inbox transaction failed; retrying its events");
    if conflict {
        Attempt::Conflict
    } else {
        Attempt::Database
    }
}

/// The driver error in `err`'s chain, if there is one.
fn database_cause<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e sqlx::Error> {
    std::iter::successors(Some(err), |err| err.source())
        .find_map(|err| err.downcast_ref::<sqlx::Error>())
}

/// The SQLSTATE of an error PostgreSQL reported; `None` for the connection's and the pool's.
fn code_of(err: &sqlx::Error) -> Option<String> {
    err.as_database_error()
        .and_then(|db| db.code())
        .map(|code| code.into_owned())
}

/// The database could not be reached or the pool gave no connection: nothing to do with the
/// event, so it is retried without counting against it.
fn is_unavailable(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}

/// A deadlock or serialization failure (SQLSTATE class 40): the transaction, not the event.
fn is_conflict(err: &sqlx::Error) -> bool {
    code_of(err).is_some_and(|code| code.starts_with("40"))
}

/// A handler's error as stored in the dead letter: the handler's text, except that when it
/// carries a database error the server's own words (which quote values, where personal data
/// lives) give way to its SQLSTATE, table and constraint.
fn describe(err: &(dyn std::error::Error + 'static), cause: &sqlx::Error) -> String {
    if std::ptr::addr_eq(err, cause) {
        Redacted(cause).to_string()
    } else {
        format!("{} (caused by a database error)", Redacted(cause))
    }
}
