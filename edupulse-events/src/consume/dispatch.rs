//! Applying decoded events through their handlers, many to one inbox transaction: one commit
//! (one WAL flush) serves a whole batch, and a failing handler costs its own event a retry,
//! never the others: the batch is rolled back and applied again without it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::{Database, Pool};

use crate::any_event::AnyEvent;
use crate::envelope::Envelope;
use crate::error::DecodeError;
use crate::registry::Registry;
use uuid::Uuid;

use crate::database::{DatabaseError, Redacted};

use super::dialect::Dialect;
use super::error::HandlerError;

/// A handler with its event type erased, as the subscriber stores it: it writes through the
/// connection of the inbox transaction on `DB`.
pub(super) type Handler<DB> = Box<
    dyn for<'c> Fn(
            AnyEvent,
            &'c Envelope,
            &'c mut <DB as Database>::Connection,
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
    /// Where it came from, which decides how often it may fail.
    pub(super) source: Source,
    /// Set once the event is settled.
    pub(super) outcome: Option<Outcome>,
}

impl Delivery {
    pub(super) fn new(envelope: Envelope, event: AnyEvent, source: Source) -> Self {
        Delivery {
            envelope,
            name: event.descriptor().name(),
            event: Some(event),
            source,
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
    /// (JetStream's subscriber rebuilds; the bus's catches up live.)
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    Stop,
}

/// How one transaction over a group of events ended.
#[derive(Debug)]
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

/// Where a delivery came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// The stream, delivering it for the `n`th time (1 the first).
    Stream(i64),
    /// A catch-up replaying the store: its first failure is final (nothing redelivers it).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    Replay,
}

/// What the dispatch loop does after settling an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// The group is settled; go on with the next group.
    Next,
    /// One event failed and is settled: the events `before` it are applied again at once,
    /// those `after` it in a group of their own (live) or not at all (rebuilding).
    Split {
        before: Vec<usize>,
        after: Vec<usize>,
    },
    /// Each of these events is tried in a transaction of its own.
    OneByOne(Vec<usize>),
    /// Apply nothing more: rebuilding past a hole would build a wrong projection.
    Stop,
}

/// Immediate retries of a group that lost a deadlock or serialization conflict.
const CONFLICT_RETRIES: u32 = 3;

/// The reason recorded for an event whose transaction a handler left aborted.
const ABORTED: &str = "a statement in the handler's transaction failed but the handler reported \
                       success; the transaction could not commit";

/// The handlers, the inbox and the retry policy: everything that turns decoded events into
/// committed effects.
pub(super) struct Dispatcher<DB: Dialect> {
    /// The consumer's name: its inbox rows and dead letters are recorded under it.
    pub(super) consumer: String,
    pub(super) handlers: HashMap<&'static str, Handler<DB>>,
    /// For events without a handler of their own; `None` skips them.
    pub(super) unhandled: Option<Handler<DB>>,
    pub(super) max_deliveries: i64,
    pub(super) backoff: Vec<Duration>,
}

impl<DB: Dialect> Dispatcher<DB> {
    /// Settles every delivery: applies those with a handler (in their order, in as few
    /// transactions as their failures allow), skips the rest. A failed event's handler does
    /// not run again for this delivery; the events before it are applied again and committed,
    /// those after it go on in a transaction of their own, so each handler runs at most twice.
    /// Live ([`AfterFailure::ApplyTheOthers`]) a failed event that will be retried holds back
    /// the later events of its aggregate, retried with it so they come back behind it; with
    /// [`AfterFailure::Stop`] the deliveries after the first failure are left unsettled.
    pub(super) async fn dispatch(
        &self,
        pool: &Pool<DB>,
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
                hold_back(items, &mut group, &held);
                if group.is_empty() {
                    break;
                }
                let attempt = match self.attempt(pool, items, &group).await {
                    // A deadlock or serialization failure says nothing about the events: the
                    // group is tried again as it is, a few times.
                    Attempt::Conflict if conflicts_retried < CONFLICT_RETRIES => {
                        conflicts_retried += 1;
                        continue;
                    }
                    attempt => attempt,
                };
                match self.settle(attempt, items, &group, &mut held, after_failure) {
                    Step::Next => break,
                    Step::Split { before, after } => {
                        match after_failure {
                            AfterFailure::Stop => groups.clear(),
                            AfterFailure::ApplyTheOthers if !after.is_empty() => {
                                groups.push(after);
                            }
                            AfterFailure::ApplyTheOthers => {}
                        }
                        if before.is_empty() {
                            break;
                        }
                        group = before;
                    }
                    Step::OneByOne(singles) => {
                        groups.extend(singles.into_iter().rev().map(|index| vec![index]));
                        break;
                    }
                    Step::Stop => {
                        groups.clear();
                        break;
                    }
                }
            }
        }
    }

    /// Sets the outcomes `attempt` decides for `group` and says what the loop does next:
    /// - committed: each event is done (or skipped, applied before);
    /// - a handler failed: that event is retried or set aside, and holds back its aggregate's
    ///   later events; the group splits around it;
    /// - aborted by a handler that swallowed an error: each event of a larger group is tried
    ///   alone, to find which; alone, it failed;
    /// - a conflict that kept coming back, or the database failed: every event is retried on
    ///   a later delivery.
    fn settle(
        &self,
        attempt: Attempt,
        items: &mut [Delivery],
        group: &[usize],
        held: &mut HashMap<Uuid, Duration>,
        after_failure: AfterFailure,
    ) -> Step {
        let stop_or_next = match after_failure {
            AfterFailure::Stop => Step::Stop,
            AfterFailure::ApplyTheOthers => Step::Next,
        };
        match attempt {
            Attempt::Committed(applied) => {
                for &index in group {
                    items[index].outcome = Some(if applied.contains(&index) {
                        Outcome::Done
                    } else {
                        Outcome::Skipped
                    });
                }
                Step::Next
            }
            Attempt::HandlerFailed(failed, reason) => {
                self.fail(items, failed, reason, held);
                let at = group
                    .iter()
                    .position(|&index| index == failed)
                    .expect("the failed event is one of the group");
                Step::Split {
                    before: group[..at].to_vec(),
                    after: group[at + 1..].to_vec(),
                }
            }
            Attempt::Aborted if group.len() > 1 => Step::OneByOne(group.to_vec()),
            Attempt::Aborted => {
                self.fail(items, group[0], ABORTED.into(), held);
                stop_or_next
            }
            Attempt::Conflict | Attempt::Database => {
                for &index in group {
                    items[index].outcome = Some(self.retry(items[index].source));
                }
                stop_or_next
            }
        }
    }

    /// Settles the failed event at `index`; one that will be retried holds back the later
    /// events of its aggregate, so they come back behind it.
    fn fail(
        &self,
        items: &mut [Delivery],
        index: usize,
        reason: String,
        held: &mut HashMap<Uuid, Duration>,
    ) {
        let outcome = self.failed(items[index].source, reason);
        if let Outcome::Retry(wait) = outcome {
            held.insert(items[index].envelope.aggregate_id, wait);
        }
        items[index].outcome = Some(outcome);
    }

    /// One transaction: records the group's events in the inbox, runs the handlers of those
    /// not applied before, checks the transaction survived them, commits.
    async fn attempt(&self, pool: &Pool<DB>, items: &mut [Delivery], group: &[usize]) -> Attempt {
        let mut tx = match pool.begin().await {
            Ok(tx) => tx,
            Err(err) => return database_failed(err),
        };
        let ids: Vec<_> = group
            .iter()
            .map(|&index| items[index].envelope.id)
            .collect();
        let fresh = match DB::record(&mut tx, &self.consumer, &ids).await {
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
        let recorded: Vec<Uuid> = fresh.iter().copied().collect();
        if !matches!(
            DB::still_open(&mut tx, &self.consumer, &recorded).await,
            Ok(true)
        ) {
            let _ = tx.rollback().await;
            return Attempt::Aborted;
        }
        match tx.commit().await {
            Ok(()) => Attempt::Committed(applied),
            Err(err) => database_failed(err),
        }
    }

    fn handler(&self, name: &str) -> Option<&Handler<DB>> {
        self.handlers.get(name).or(self.unhandled.as_ref())
    }

    /// A failure of a delivery from `source`: retried while deliveries remain.
    fn failed(&self, source: Source, reason: String) -> Outcome {
        match source {
            Source::Replay => Outcome::SetAside(reason),
            Source::Stream(delivered) if delivered >= self.max_deliveries => {
                Outcome::SetAside(format!("handler failed {delivered} times; last: {reason}"))
            }
            Source::Stream(_) => self.retry(source),
        }
    }

    /// Retried after the back-off step of its delivery count (a replay has no delivery to wait
    /// for, and takes the first).
    fn retry(&self, source: Source) -> Outcome {
        let delivered = match source {
            Source::Stream(delivered) => delivered,
            Source::Replay => 1,
        };
        let step = usize::try_from(delivered.max(1) - 1).unwrap_or(usize::MAX);
        Outcome::Retry(self.backoff[step.min(self.backoff.len() - 1)])
    }
}

/// Settles, and takes out of `group`, the events whose aggregate has an earlier event waiting
/// for a retry: they are retried with it, so they come back behind it.
fn hold_back(items: &mut [Delivery], group: &mut Vec<usize>, held: &HashMap<Uuid, Duration>) {
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
        .and_then(sqlx::error::DatabaseError::code)
        .map(std::borrow::Cow::into_owned)
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

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;
    use crate::privacy::DataSubjectErased;

    fn dispatcher() -> Dispatcher<sqlx::Postgres> {
        Dispatcher {
            consumer: "test".to_owned(),
            handlers: HashMap::new(),
            unhandled: None,
            max_deliveries: 3,
            backoff: vec![Duration::from_millis(10), Duration::from_millis(20)],
        }
    }

    /// `count` deliveries from `source`, the first two of one aggregate.
    fn deliveries(count: usize, source: Source) -> Vec<Delivery> {
        let shared = Uuid::now_v7();
        (0..count)
            .map(|n| {
                let event = DataSubjectErased {
                    erasure_id: if n < 2 { shared } else { Uuid::now_v7() },
                    subject_id: Uuid::now_v7(),
                    keys_destroyed: 1,
                    erased_at: chrono::Utc::now(),
                };
                let envelope = Envelope::new(&event).unwrap();
                let decoded = Registry::global()
                    .decode(&envelope.event_type, envelope.version, &envelope.payload)
                    .unwrap();
                Delivery::new(envelope, decoded, source)
            })
            .collect()
    }

    fn outcomes(items: &[Delivery]) -> Vec<Option<Outcome>> {
        items.iter().map(|item| item.outcome.clone()).collect()
    }

    const LIVE: AfterFailure = AfterFailure::ApplyTheOthers;
    const REBUILDING: AfterFailure = AfterFailure::Stop;

    #[test]
    fn a_commit_settles_the_group_as_done_or_applied_before() {
        let mut items = deliveries(3, Source::Stream(1));
        let mut held = HashMap::new();
        let applied = HashSet::from([0, 2]);
        let step = dispatcher().settle(
            Attempt::Committed(applied),
            &mut items,
            &[0, 1, 2],
            &mut held,
            LIVE,
        );
        assert_eq!(step, Step::Next);
        assert_eq!(
            outcomes(&items),
            [
                Some(Outcome::Done),
                Some(Outcome::Skipped),
                Some(Outcome::Done)
            ]
        );
    }

    #[test]
    fn a_failed_handler_splits_the_group_and_holds_back_its_aggregate() {
        let mut items = deliveries(4, Source::Stream(2));
        let mut held = HashMap::new();
        let step = dispatcher().settle(
            Attempt::HandlerFailed(1, "no".into()),
            &mut items,
            &[0, 1, 2, 3],
            &mut held,
            LIVE,
        );
        assert_eq!(
            step,
            Step::Split {
                before: vec![0],
                after: vec![2, 3]
            }
        );
        // The second delivery waits the second back-off step.
        let wait = Duration::from_millis(20);
        assert_eq!(items[1].outcome, Some(Outcome::Retry(wait)));
        assert_eq!(held.get(&items[1].envelope.aggregate_id), Some(&wait));
        // Its aggregate's earlier event, retried with the rest, is held back too.
        let mut group = vec![0, 2, 3];
        hold_back(&mut items, &mut group, &held);
        assert_eq!(group, [2, 3]);
        assert_eq!(items[0].outcome, Some(Outcome::Retry(wait)));
    }

    #[test]
    fn the_last_delivery_or_a_replay_fails_for_good() {
        let mut held = HashMap::new();
        let mut last = deliveries(1, Source::Stream(3));
        dispatcher().settle(
            Attempt::HandlerFailed(0, "no".into()),
            &mut last,
            &[0],
            &mut held,
            LIVE,
        );
        assert_eq!(
            last[0].outcome,
            Some(Outcome::SetAside("handler failed 3 times; last: no".into()))
        );
        let mut replayed = deliveries(1, Source::Replay);
        dispatcher().settle(
            Attempt::HandlerFailed(0, "no".into()),
            &mut replayed,
            &[0],
            &mut held,
            REBUILDING,
        );
        assert_eq!(replayed[0].outcome, Some(Outcome::SetAside("no".into())));
        assert!(
            held.is_empty(),
            "nothing set aside holds back its aggregate"
        );
    }

    #[test]
    fn an_aborted_group_is_tried_one_by_one_and_an_aborted_event_fails() {
        let mut items = deliveries(3, Source::Stream(1));
        let mut held = HashMap::new();
        let group = [0, 1, 2];
        let step = dispatcher().settle(Attempt::Aborted, &mut items, &group, &mut held, LIVE);
        assert_eq!(step, Step::OneByOne(vec![0, 1, 2]));
        assert_eq!(outcomes(&items), [None, None, None]);
        let step = dispatcher().settle(Attempt::Aborted, &mut items, &[2], &mut held, REBUILDING);
        assert_eq!(step, Step::Stop);
        assert_eq!(
            items[2].outcome,
            Some(Outcome::Retry(Duration::from_millis(10)))
        );
    }

    #[test]
    fn a_failed_database_retries_every_event_and_stops_a_rebuild() {
        for (after_failure, expected) in [(LIVE, Step::Next), (REBUILDING, Step::Stop)] {
            for attempt in [Attempt::Database, Attempt::Conflict] {
                let mut items = deliveries(2, Source::Stream(1));
                let mut held = HashMap::new();
                let step =
                    dispatcher().settle(attempt, &mut items, &[0, 1], &mut held, after_failure);
                assert_eq!(step, expected);
                let retry = Some(Outcome::Retry(Duration::from_millis(10)));
                assert_eq!(outcomes(&items), [retry.clone(), retry]);
                assert!(held.is_empty(), "the events are not at fault");
            }
        }
    }
}
