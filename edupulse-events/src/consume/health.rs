//! What a running subscriber is doing, for a health endpoint: working, or stalled on an event
//! it cannot open and must not set aside.

use crate::message::Fault;

/// A subscriber's health, as [`Subscriber::health`](super::Subscriber::health) follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriberHealth {
    /// Applying events (or waiting for them).
    Running,
    /// Waiting in place on one event, retrying it: for [`Fault::Transient`] the database or
    /// key provider is failing; for [`Fault::Configuration`] an operator has to act (a wrong
    /// master key, keys missing). Nothing is lost meanwhile, and nothing after it is applied.
    Stalled {
        /// Why.
        fault: Fault,
        /// The event's message in the stream.
        stream_sequence: u64,
        /// How many times it was tried.
        attempts: u32,
    },
}

impl SubscriberHealth {
    /// Whether a health check should fail: stalled by configuration, which no retry fixes.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            SubscriberHealth::Stalled {
                fault: Fault::Configuration,
                ..
            }
        )
    }
}
