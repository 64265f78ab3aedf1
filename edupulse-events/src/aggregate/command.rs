//! Executing a command: the state loaded (or taken from the cache), the decision run on it,
//! its events appended with the loaded version as `Exact`, and on a conflict the whole
//! attempt again on a fresh state, a bounded number of times.
//!
//! The read happens in the transaction the events are appended in: one connection taken from
//! the pool per attempt, not two (returning one to sqlx's pool costs a round trip of its own),
//! and on SQLite the writer's lock is already held, so no other writer can make the read
//! stale. The `Exact` check stays, for PostgreSQL and for states taken from the cache.
//!
//! Why a closure and not a `Command` trait: a decision needs the state and the command's own
//! data, which a closure captures where a trait would need a type per command; and a decision
//! is a plain function of the state, run again on a conflict, so it must have no effect of
//! its own. The caller's writes, which may have effects, go in `execute_with`'s second
//! closure, inside the transaction, redone with each attempt.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;
use thiserror::Error;
use uuid::Uuid;

use crate::envelope::{EncodeError, Envelope};
use crate::event::EntityId;
use crate::store::{EventStore, ExpectedVersion, LoadError, Snapshot, StoreError};

use super::cache::{Cache, Entry, erasures_seen};
use super::events::{Aggregate, AggregateEvent, SnapshotState};

/// Why a command appended nothing.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The decision refused the command (or the caller's writes failed): nothing was
    /// appended, and the transaction was rolled back.
    #[error("the command was refused: {0}")]
    Rejected(E),
    /// Every attempt lost a race with another writer of the aggregate.
    #[error(
        "aggregate {aggregate} changed under each of {attempts} attempt(s): other writers keep \
         winning; try again later"
    )]
    Contended {
        /// The aggregate.
        aggregate: Uuid,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The aggregate's history holds an event its `Aggregate::Event` does not list: a state
    /// folded without it would be wrong, so nothing is decided.
    #[error(
        "aggregate {aggregate} holds a `{type_name}` event, which the `{expected}` aggregate's \
         events do not list: add it to its aggregate_events! (or it is another aggregate's id)"
    )]
    UnknownEvent {
        /// The aggregate.
        aggregate: Uuid,
        /// The event's type.
        type_name: &'static str,
        /// The aggregate type the events were read as.
        expected: &'static str,
    },
    /// The decision returned an event of another aggregate.
    #[error(
        "the decision on aggregate {aggregate} returned a `{type_name}` event of aggregate \
         {other}: a command appends to the aggregate it was given"
    )]
    OtherAggregate {
        /// The aggregate the command was for.
        aggregate: Uuid,
        /// The event's type.
        type_name: &'static str,
        /// The aggregate the event names.
        other: Uuid,
    },
    /// An event could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The store failed. When it was the commit that failed, the server may still have
    /// committed (a connection lost on the way back): read the aggregate before running the
    /// command again, or its events may be stored twice.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The aggregate could not be read.
    #[error(transparent)]
    Load(#[from] LoadError),
}

impl<E> From<sqlx::Error> for CommandError<E> {
    fn from(err: sqlx::Error) -> Self {
        CommandError::Store(err.into())
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// The aggregate's version after the command (unchanged when it decided no events).
    pub version: u64,
    /// How many events it appended.
    pub events: usize,
    /// Attempts made: 1 unless a conflict made it decide again.
    pub attempts: u32,
    /// Whether the last attempt's state came from the cache (no read before deciding).
    pub cached: bool,
}

/// The type of "no writes of the caller's" in [`Aggregates::execute`].
type NoWrites<Tx, Ev, E> =
    for<'t> fn(&'t mut Tx, &'t [Ev]) -> BoxFuture<'t, Result<(), CommandError<E>>>;

/// Commands on one aggregate type `A`, over a store `S` (PostgreSQL's or the embedded one).
pub struct Aggregates<A: Aggregate, S> {
    store: S,
    max_attempts: u32,
    cache: Option<Arc<Cache<A>>>,
    snapshots: Option<Snapshots<A>>,
}

/// How `A`'s states are snapshotted (see [`Aggregates::snapshot_every`]).
struct Snapshots<A> {
    every: u64,
    /// The aggregate type and the state's Rust type: two state types folded from one
    /// aggregate's events keep snapshots of their own.
    key: String,
    state_version: u32,
    encode: fn(&A) -> Result<serde_json::Value, serde_json::Error>,
    decode: fn(serde_json::Value) -> Result<A, serde_json::Error>,
    /// Saves a snapshot in a task of its own: off the command's path.
    save: Arc<dyn Fn(Snapshot) + Send + Sync>,
    /// Whether the state's refusal to serialize was logged.
    warned: AtomicBool,
}

impl<A: SnapshotState, S: EventStore + Clone + 'static> Aggregates<A, S> {
    /// Snapshots an aggregate's state once `events` (at least 1) were appended since its last
    /// snapshot, in a task of its own after the command committed; reading it then takes the
    /// snapshot and the events after it. Snapshots of another
    /// [`STATE_VERSION`](SnapshotState::STATE_VERSION) are ignored.
    pub fn snapshot_every(mut self, events: u64) -> Self {
        const {
            assert!(
                A::STATE_VERSION >= 1,
                "a SnapshotState's STATE_VERSION starts at 1"
            );
        }
        let store = self.store.clone();
        let save = move |snapshot: Snapshot| {
            let store = store.clone();
            tokio::spawn(async move {
                if let Err(err) = store.save_snapshot(&snapshot).await {
                    tracing::warn!(
                        aggregate = %snapshot.aggregate_id,
                        error = %err,
                        "snapshot not saved; the next one will be tried after as many events"
                    );
                }
            });
        };
        self.snapshots = Some(Snapshots {
            every: events.max(1),
            key: format!(
                "{}/{}",
                <A::Event as AggregateEvent>::AGGREGATE,
                std::any::type_name::<A>()
            ),
            state_version: A::STATE_VERSION,
            encode: |state| serde_json::to_value(state),
            decode: serde_json::from_value,
            save: Arc::new(save),
            warned: AtomicBool::new(false),
        });
        self
    }
}

impl<A: Aggregate, S: EventStore> Aggregates<A, S> {
    /// The default number of attempts before [`CommandError::Contended`].
    pub const DEFAULT_ATTEMPTS: u32 = 5;
    /// The default number of states cached.
    pub const DEFAULT_CACHE: usize = 10_000;

    /// Commands on `A` over `store`, with a cache of [`DEFAULT_CACHE`](Self::DEFAULT_CACHE)
    /// states and [`DEFAULT_ATTEMPTS`](Self::DEFAULT_ATTEMPTS) attempts per command.
    pub fn new(store: S) -> Self {
        Aggregates {
            store,
            max_attempts: Self::DEFAULT_ATTEMPTS,
            cache: NonZeroUsize::new(Self::DEFAULT_CACHE).map(Cache::new),
            snapshots: None,
        }
    }

    /// At most `attempts` attempts (at least 1) before [`CommandError::Contended`].
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Caches up to `states` aggregates' states (0: none, every command reads first).
    pub fn cache(mut self, states: usize) -> Self {
        self.cache = NonZeroUsize::new(states).map(Cache::new);
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// How many states the cache holds.
    pub fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, |cache| cache.len())
    }

    /// The aggregate's state and version, read from the store (the cache neither read nor
    /// filled).
    pub async fn load(
        &self,
        id: &<A::Event as AggregateEvent>::Id,
    ) -> Result<(A, u64), CommandError<std::convert::Infallible>> {
        // On the pool, not in a transaction: on SQLite one would take the writer's lock.
        let entry = self.read(None, id.entity_uuid()).await?;
        Ok((entry.state, entry.version))
    }

    /// Runs the command `decide` on the aggregate `id` and appends what it decides, in a
    /// transaction of its own.
    pub async fn execute<E, F>(
        &self,
        id: &<A::Event as AggregateEvent>::Id,
        decide: F,
    ) -> Result<Executed, CommandError<E>>
    where
        E: Send,
        F: FnMut(&A) -> Result<Vec<A::Event>, E> + Send,
    {
        self.run(
            id.entity_uuid(),
            decide,
            None::<&mut NoWrites<S::Tx, A::Event, E>>,
        )
        .await
    }

    /// [`execute`](Self::execute), with the caller's own writes in the same transaction:
    /// `writes` gets the transaction and the events decided, before they are appended. Both
    /// commit together, or neither does; after a conflict `writes` runs again, in the next
    /// attempt's transaction. Its error (a database error through `?`, or
    /// [`CommandError::Rejected`] for a rule the caller's rows enforce) rolls everything back
    /// and is returned.
    pub async fn execute_with<E, F, W>(
        &self,
        id: &<A::Event as AggregateEvent>::Id,
        decide: F,
        mut writes: W,
    ) -> Result<Executed, CommandError<E>>
    where
        E: Send,
        F: FnMut(&A) -> Result<Vec<A::Event>, E> + Send,
        W: for<'t> FnMut(
                &'t mut S::Tx,
                &'t [A::Event],
            ) -> BoxFuture<'t, Result<(), CommandError<E>>>
            + Send,
    {
        self.run(id.entity_uuid(), decide, Some(&mut writes)).await
    }

    async fn run<E, F, W>(
        &self,
        aggregate: Uuid,
        mut decide: F,
        mut writes: Option<&mut W>,
    ) -> Result<Executed, CommandError<E>>
    where
        E: Send,
        F: FnMut(&A) -> Result<Vec<A::Event>, E> + Send,
        W: for<'t> FnMut(
                &'t mut S::Tx,
                &'t [A::Event],
            ) -> BoxFuture<'t, Result<(), CommandError<E>>>
            + Send,
    {
        for attempt in 1..=self.max_attempts {
            let seen = erasures_seen();
            let cached = self.cache.as_ref().and_then(|cache| cache.take(aggregate));
            // The read, the decision and the append share one transaction (and connection).
            let mut tx = self.store.begin().await?;
            let mut was_cached = cached.is_some();
            let mut entry = match cached {
                Some(entry) => entry,
                None => self.read(Some(&mut tx), aggregate).await?,
            };
            let mut decided = decide(&entry.state);
            if was_cached && !decided.as_ref().is_ok_and(|events| !events.is_empty()) {
                // No append checks a refusal or a decision to do nothing: on a cached state,
                // they are made again on a fresh read before they are believed.
                entry = self.read(Some(&mut tx), aggregate).await?;
                was_cached = false;
                decided = decide(&entry.state);
            }
            let events = match decided {
                Ok(events) if !events.is_empty() => events,
                decided => {
                    // Nothing was written: a failed rollback (the connection lost) changes
                    // nothing, and must not hide the decision.
                    if let Err(err) = self.store.rollback(tx).await {
                        tracing::debug!(error = %err, "rolling back a command that wrote nothing");
                    }
                    let version = entry.version;
                    self.keep(aggregate, entry, seen);
                    return decided.map_err(CommandError::Rejected).map(|_| Executed {
                        version,
                        events: 0,
                        attempts: attempt,
                        cached: was_cached,
                    });
                }
            };
            let envelopes = envelopes(aggregate, &events)?;
            if let Some(writes) = writes.as_deref_mut()
                && let Err(failed) = writes(&mut tx, &events).await
            {
                // The caller's error is what they need; a failed rollback changes nothing
                // (the transaction is never committed) and must not replace it.
                if let Err(err) = self.store.rollback(tx).await {
                    tracing::debug!(error = %err, "rolling back a command whose writes failed");
                }
                self.keep(aggregate, entry, seen);
                return Err(failed);
            }
            let expected = ExpectedVersion::Exact(entry.version);
            match self.store.append(&mut tx, expected, &envelopes).await {
                Ok(appended) => {
                    self.store.commit(tx).await?;
                    for (event, envelope) in events.iter().zip(&envelopes) {
                        entry.state.apply(event);
                        entry.subjects.extend(&envelope.data_subjects);
                    }
                    entry.subjects.sort_unstable();
                    entry.subjects.dedup();
                    entry.version = appended.version;
                    entry.since = std::time::Instant::now();
                    // Not from a state an erasure overlapping this command concerns: the
                    // eviction passed it by while this command held it.
                    if !entry.erased_since(seen) {
                        self.snapshot(aggregate, &mut entry);
                    }
                    self.keep(aggregate, entry, seen);
                    return Ok(Executed {
                        version: appended.version,
                        events: events.len(),
                        attempts: attempt,
                        cached: was_cached,
                    });
                }
                Err(StoreError::Conflict { .. }) => {
                    // The state was stale: its entry stays out of the cache, and the next
                    // attempt reads the aggregate again, after a pause that spreads the
                    // writers that lost the same race.
                    self.store.rollback(tx).await?;
                    if attempt < self.max_attempts {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                }
                Err(err) => {
                    // Rolled back on drop; the entry stays out of the cache.
                    drop(tx);
                    return Err(err.into());
                }
            }
        }
        Err(CommandError::Contended {
            aggregate,
            attempts: self.max_attempts,
        })
    }

    /// Saves a snapshot of `entry` when enough events were appended since the last one.
    fn snapshot(&self, aggregate: Uuid, entry: &mut Entry<A>) {
        let Some(snapshots) = &self.snapshots else {
            return;
        };
        if entry.version < entry.snapshot_at + snapshots.every {
            return;
        }
        match (snapshots.encode)(&entry.state) {
            Ok(state) => {
                (snapshots.save)(Snapshot {
                    aggregate_id: aggregate,
                    aggregate_type: snapshots.key.clone(),
                    state_version: snapshots.state_version,
                    version: entry.version,
                    state,
                    base: entry.base,
                    data_subjects: entry.subjects.clone(),
                });
                entry.snapshot_at = entry.version;
            }
            // Once per `Aggregates`: the error names the type, never a value.
            Err(err) if !snapshots.warned.swap(true, Ordering::Relaxed) => tracing::warn!(
                aggregate_type = <A::Event as AggregateEvent>::AGGREGATE,
                error = %err,
                "the aggregate's state does not serialize (a Pii value refuses to): not \
                 snapshotted; keep personal data out of the state"
            ),
            Err(_) => {}
        }
    }

    fn keep(&self, aggregate: Uuid, entry: Entry<A>, seen: u64) {
        if let Some(cache) = &self.cache {
            cache.put(aggregate, entry, seen);
        }
    }

    /// The state folded from the store's events, after its snapshot when it has one, read in
    /// `tx`.
    async fn read<E>(
        &self,
        mut tx: Option<&mut S::Tx>,
        aggregate: Uuid,
    ) -> Result<Entry<A>, CommandError<E>> {
        let mut state = A::default();
        let mut subjects = Vec::new();
        let mut after = 0;
        let snapshot = match (&self.snapshots, tx.as_deref_mut()) {
            (None, _) => None,
            (Some(s), Some(tx)) => {
                self.store
                    .snapshot_in(tx, aggregate, &s.key, s.state_version)
                    .await?
            }
            (Some(s), None) => {
                self.store
                    .snapshot(aggregate, &s.key, s.state_version)
                    .await?
            }
        };
        if let (Some(snapshots), Some(snapshot)) = (&self.snapshots, snapshot) {
            match (snapshots.decode)(snapshot.state) {
                // Who the snapshot's events named stays on its row: a long history's list
                // of people is never read by a command.
                Ok(decoded) => {
                    state = decoded;
                    after = snapshot.version;
                }
                Err(err) => tracing::warn!(
                    %aggregate,
                    error = %err,
                    "a snapshot of this state version does not decode; folding the events"
                ),
            }
        }
        let stream = match tx {
            Some(tx) => self.store.load_in(tx, aggregate, after).await?,
            None => self.store.load_after(aggregate, after).await?,
        };
        for event in stream.events {
            // Who the state is about matters to the cache (erasures evict) and to snapshots
            // (erasures delete them); with neither, nothing keeps them.
            if self.cache.is_some() || self.snapshots.is_some() {
                subjects.extend(event.data_subjects());
            }
            let event = A::Event::from_any(event).map_err(|other| CommandError::UnknownEvent {
                aggregate,
                type_name: other.type_name(),
                expected: <A::Event as AggregateEvent>::AGGREGATE,
            })?;
            state.apply(&event);
        }
        subjects.sort_unstable();
        subjects.dedup();
        Ok(Entry {
            state,
            version: stream.version,
            subjects,
            base: after,
            snapshot_at: after,
            since: std::time::Instant::now(),
        })
    }
}

/// How long to wait after losing attempt `attempt`: a random time up to 1 ms, doubled with
/// each attempt (at most 32 ms), so writers that lost the same race do not meet again.
fn backoff(attempt: u32) -> std::time::Duration {
    let ceiling_us = 1_000u64 << attempt.clamp(1, 6).saturating_sub(1);
    // UUIDv4's random bits: the jitter needs no generator of its own.
    let random = Uuid::new_v4().as_u64_pair().0;
    std::time::Duration::from_micros(random % (ceiling_us + 1))
}

/// The events' envelopes, each checked to be of `aggregate`.
fn envelopes<Ev: AggregateEvent, E>(
    aggregate: Uuid,
    events: &[Ev],
) -> Result<Vec<Envelope>, CommandError<E>> {
    events
        .iter()
        .map(|event| {
            let other = event.aggregate_id();
            if other != aggregate {
                return Err(CommandError::OtherAggregate {
                    aggregate,
                    type_name: event.type_name(),
                    other,
                });
            }
            Ok(event.to_envelope()?)
        })
        .collect()
}
