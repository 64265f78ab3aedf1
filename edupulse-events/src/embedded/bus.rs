//! The in-process bus: what JetStream is to the PostgreSQL runtime, inside one process. Every
//! subscriber receives every published event, in publication order, as the stream would carry
//! it (personal data sealed).

use tokio::sync::broadcast;

use crate::envelope::Envelope;

/// A published event: its subject and its envelope, PII still sealed.
#[derive(Debug, Clone)]
pub struct BusMessage {
    /// e.g. `edupulse.quiz.submitted.v2`.
    pub subject: String,
    /// The event as published.
    pub envelope: Envelope,
}

/// A broadcast channel of [`BusMessage`]s. A subscriber that falls more than `capacity`
/// messages behind loses the oldest (and is told so by its receiver): the bus is for a
/// process's own projections and tests; the store's log is the record.
#[derive(Debug, Clone)]
pub struct InProcessBus {
    sender: broadcast::Sender<BusMessage>,
}

impl InProcessBus {
    /// A bus holding up to `capacity` messages for its slowest subscriber.
    pub fn new(capacity: usize) -> Self {
        InProcessBus {
            sender: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Receives every message published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
        self.sender.subscribe()
    }

    /// How many receivers the bus has now.
    pub fn subscriber_count(&self) -> usize {
        self.sender.receiver_count()
    }

    pub(super) fn publish(&self, message: BusMessage) {
        // No subscriber is not an error: the log keeps the event.
        let _ = self.sender.send(message);
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        InProcessBus::new(1024)
    }
}
