//! Tests of domain logic in given / when / then form, on the embedded store in memory: the
//! history is appended, the command runs through [`Aggregates`] as in production (read,
//! decide, append with the version check), and what it appended is compared with what was
//! expected, as readable JSON.
//!
//! ```
//! # use edupulse_events::aggregate::Aggregate;
//! # use edupulse_events::{DomainEvent, Uuid, aggregate_events};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize, DomainEvent, PartialEq)]
//! # #[event(name = "lamp.switched", aggregate = "lamp")]
//! # pub struct LampSwitched { #[event(aggregate_id)] pub lamp_id: Uuid, pub on: bool }
//! # aggregate_events! { pub enum LampEvent for "lamp" by Uuid { LampSwitched } }
//! # #[derive(Default)] pub struct Lamp { on: bool }
//! # impl Aggregate for Lamp {
//! #     type Event = LampEvent;
//! #     fn apply(&mut self, LampEvent::LampSwitched(e): &LampEvent) { self.on = e.on; }
//! # }
//! use edupulse_events::testing::given;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let lamp_id = Uuid::now_v7();
//! given::<Lamp>([LampSwitched { lamp_id, on: true }.into()])
//!     .when(&lamp_id, |lamp| {
//!         if lamp.on {
//!             Ok(vec![LampSwitched { lamp_id, on: false }.into()])
//!         } else {
//!             Err("already off")
//!         }
//!     })
//!     .await
//!     .then([LampSwitched { lamp_id, on: false }.into()]);
//! # }
//! ```
//!
//! Failure messages show the events' personal data in clear: it is the test's own.

use std::fmt;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::aggregate::{Aggregate, AggregateEvent, Aggregates, CommandError, Executed};
use crate::any_event::AnyEvent;
use crate::consume::{BusSubscriber, Settled};
use crate::embedded::{InProcessBus, SqliteStore, relay_pending};
use crate::envelope::Envelope;
use crate::event::EntityId;
use crate::privacy::{DataKey, LocalKeyProvider};
use crate::store::{EventStore, ExpectedVersion};

/// An in-memory store with a key provider of its own, for one test.
///
/// # Panics
/// When SQLite cannot open an in-memory database.
pub async fn store() -> SqliteStore {
    SqliteStore::in_memory("test")
        .await
        .expect("an in-memory SQLite store")
        .with_keys(Arc::new(LocalKeyProvider::new(DataKey::generate())))
}

/// The history of a test: events already stored when the command runs.
pub fn given<A: Aggregate>(history: impl IntoIterator<Item = A::Event>) -> Given<A> {
    Given {
        history: history.into_iter().collect(),
    }
}

/// A history, waiting for its command.
pub struct Given<A: Aggregate> {
    history: Vec<A::Event>,
}

impl<A: Aggregate> Given<A> {
    /// Stores the history on a fresh store, then runs `decide` on the aggregate `id` as
    /// [`Aggregates::execute`] does.
    ///
    /// # Panics
    /// When the history cannot be stored.
    pub async fn when<E, F>(self, id: &<A::Event as AggregateEvent>::Id, decide: F) -> Then<A, E>
    where
        E: Send,
        F: FnMut(&A) -> Result<Vec<A::Event>, E> + Send,
    {
        let store = store().await;
        let aggregate = id.entity_uuid();
        let mut before = 0;
        for event in &self.history {
            before += usize::from(event.aggregate_id() == aggregate);
            let envelope = event.to_envelope().expect("a history event encodes");
            store
                .append_committed(ExpectedVersion::Any, &[envelope])
                .await
                .expect("the history is stored");
        }
        let outcome = Aggregates::<A, _>::new(store.clone())
            .cache(0)
            .execute(id, decide)
            .await;
        let appended = match &outcome {
            Ok(_) => store
                .load(aggregate)
                .await
                .expect("the aggregate reads back")
                .events
                .into_iter()
                .skip(before)
                .map(|event| described(&event))
                .collect(),
            Err(_) => Vec::new(),
        };
        Then {
            outcome,
            appended,
            store,
            _aggregate: std::marker::PhantomData,
        }
    }
}

/// What a command did, to compare with what was expected.
pub struct Then<A: Aggregate, E> {
    outcome: Result<Executed, CommandError<E>>,
    appended: Vec<Value>,
    store: SqliteStore,
    _aggregate: std::marker::PhantomData<fn() -> A>,
}

impl<A: Aggregate, E: fmt::Debug> Then<A, E> {
    /// Asserts that the command appended exactly `expected`, in order.
    ///
    /// # Panics
    /// When it did not, naming the first event that differs, with both lists as JSON.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> SqliteStore {
        if let Err(err) = &self.outcome {
            panic!("then: the command failed instead of appending events: {err:?}");
        }
        let expected: Vec<Value> = expected
            .into_iter()
            .map(|event| described(&event.into_any()))
            .collect();
        if let Some(report) = difference(&expected, &self.appended) {
            panic!("{report}");
        }
        self.store
    }

    /// Asserts that the decision refused the command with `expected`, appending nothing.
    ///
    /// # Panics
    /// When it appended events, failed otherwise, or refused with another error.
    #[track_caller]
    pub fn then_error(self, expected: &E) -> SqliteStore
    where
        E: PartialEq,
    {
        match self.outcome {
            Err(CommandError::Rejected(err)) if err == *expected => self.store,
            Err(CommandError::Rejected(err)) => {
                panic!("then_error: refused with {err:?}, expected {expected:?}")
            }
            Err(other) => panic!("then_error: failed with {other:?}, expected {expected:?}"),
            Ok(_) => panic!(
                "then_error: expected {expected:?}, but the command appended {}",
                pretty(&self.appended)
            ),
        }
    }
}

/// Appends `events` (each in a transaction of its own), relays them to `bus` and lets
/// `subscriber` (listening on `bus`) apply them: a subscriber's handlers given a history, so
/// a test can assert on the read model they wrote.
///
/// # Panics
/// When the events cannot be stored or relayed, or the subscriber fails.
pub async fn given_applied(
    store: &SqliteStore,
    bus: &InProcessBus,
    subscriber: &mut BusSubscriber,
    events: impl IntoIterator<Item = Envelope>,
) -> Settled {
    for event in events {
        store
            .append_committed(ExpectedVersion::Any, &[event])
            .await
            .expect("the event is stored");
    }
    relay_pending(store, bus)
        .await
        .expect("the outbox is relayed");
    subscriber
        .apply_waiting()
        .await
        .expect("the subscriber applies what the bus holds")
}

/// An event as the failure message shows it: its type and its payload, in clear.
fn described(event: &AnyEvent) -> Value {
    let payload = crate::privacy::reveal(|| event.to_json())
        .unwrap_or_else(|err| json!(format!("<does not serialize: {err}>")));
    json!({ "type": event.type_name(), "payload": payload })
}

/// `None` when the lists are equal, else what differs first, and both lists.
fn difference(expected: &[Value], actual: &[Value]) -> Option<String> {
    let first =
        (0..expected.len().max(actual.len())).find(|&i| expected.get(i) != actual.get(i))?;
    let show =
        |value: Option<&Value>| value.map_or_else(|| "(none)".to_owned(), ToString::to_string);
    Some(format!(
        "then: event {} of {} expected differs from what the command appended ({} event(s)):\n  \
         expected: {}\n  actual:   {}\nexpected, all: {}\nactual, all: {}",
        first + 1,
        expected.len(),
        actual.len(),
        show(expected.get(first)),
        show(actual.get(first)),
        pretty(expected),
        pretty(actual)
    ))
}

fn pretty(events: &[Value]) -> String {
    serde_json::to_string_pretty(events).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::difference;
    use serde_json::json;

    #[test]
    fn the_failure_names_the_first_differing_event_with_both_sides() {
        let a = json!({"type": "t.v1", "payload": {"n": 1}});
        let b = json!({"type": "t.v1", "payload": {"n": 2}});
        assert!(difference(std::slice::from_ref(&a), std::slice::from_ref(&a)).is_none());
        let report = difference(&[a.clone(), a.clone()], &[a.clone(), b]).unwrap();
        assert!(report.contains("event 2 of 2"), "{report}");
        assert!(
            report.contains(r#"expected: {"payload":{"n":1}"#),
            "{report}"
        );
        assert!(
            report.contains(r#"actual:   {"payload":{"n":2}"#),
            "{report}"
        );
        let report = difference(std::slice::from_ref(&a), &[]).unwrap();
        assert!(report.contains("actual:   (none)"), "{report}");
    }
}
