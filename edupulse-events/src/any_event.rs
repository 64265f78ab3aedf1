//! A decoded event whose type is known only at run time.

use std::any::Any;
use std::fmt;

use uuid::Uuid;

use crate::descriptor::EventDescriptor;
use crate::event::DomainEvent;

/// Object-safe view of a [`DomainEvent`], so events of any type can travel in one value.
trait ErasedEvent: Any + Send + Sync + fmt::Debug {
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    fn as_any(&self) -> &dyn Any;
    fn aggregate_id(&self) -> Uuid;
    fn data_subjects(&self) -> Vec<Uuid>;
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error>;
}

impl<T: DomainEvent> ErasedEvent for T {
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn aggregate_id(&self) -> Uuid {
        DomainEvent::aggregate_id(self)
    }

    fn data_subjects(&self) -> Vec<Uuid> {
        DomainEvent::data_subjects(self)
    }

    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

/// An event decoded by the [`Registry`](crate::Registry): ask for the concrete type with
/// [`downcast`](Self::downcast) or [`downcast_ref`](Self::downcast_ref).
///
/// Its `Debug` output is the event's own, with PII masked.
pub struct AnyEvent {
    descriptor: &'static EventDescriptor,
    event: Box<dyn ErasedEvent>,
}

impl AnyEvent {
    /// Wraps a typed event.
    pub fn new<T: DomainEvent>(event: T) -> Self {
        AnyEvent {
            descriptor: T::descriptor(),
            event: Box::new(event),
        }
    }

    /// The descriptor of the event's type (after upcasting: the newest version).
    pub fn descriptor(&self) -> &'static EventDescriptor {
        self.descriptor
    }

    /// The type string, e.g. `quiz.submitted.v2`.
    pub fn type_name(&self) -> &'static str {
        self.descriptor.type_name()
    }

    /// The id of the aggregate this event belongs to.
    pub fn aggregate_id(&self) -> Uuid {
        self.event.aggregate_id()
    }

    /// The people this event is about.
    pub fn data_subjects(&self) -> Vec<Uuid> {
        self.event.data_subjects()
    }

    /// Whether the event is a `T`.
    pub fn is<T: DomainEvent>(&self) -> bool {
        self.event.as_any().is::<T>()
    }

    /// Borrows the event as a `T`, if it is one.
    pub fn downcast_ref<T: DomainEvent>(&self) -> Option<&T> {
        self.event.as_any().downcast_ref::<T>()
    }

    /// Takes the event as a `T`; hands it back unchanged if it is another type.
    pub fn downcast<T: DomainEvent>(self) -> Result<T, AnyEvent> {
        if self.is::<T>() {
            let any = self.event.into_any();
            Ok(*any.downcast::<T>().expect("type checked just above"))
        } else {
            Err(self)
        }
    }

    /// The payload as JSON, as the type serializes it. A present
    /// [`Pii`](crate::privacy::Pii) value refuses to serialize unless this is called inside
    /// [`privacy::reveal`](crate::privacy::reveal).
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        self.event.to_json()
    }
}

impl fmt::Debug for AnyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.event, f)
    }
}
