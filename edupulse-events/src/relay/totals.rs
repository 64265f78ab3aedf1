//! What a relay has done since it was made, readable while it runs and after it stopped:
//! what an operator is told when `relay` ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals of one [`Relay`](super::Relay), from [`Relay::totals`](super::Relay::totals).
#[derive(Debug, Clone, Default)]
pub struct RelayTotals(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    published: AtomicU64,
    dead_lettered: AtomicU64,
}

impl RelayTotals {
    /// Events published and acknowledged by JetStream.
    pub fn published(&self) -> u64 {
        self.0.published.load(Ordering::Relaxed)
    }

    /// Events set aside in `dead_letters`.
    pub fn dead_lettered(&self) -> u64 {
        self.0.dead_lettered.load(Ordering::Relaxed)
    }

    pub(super) fn add(&self, published: usize, dead_lettered: usize) {
        let widen = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        self.0
            .published
            .fetch_add(widen(published), Ordering::Relaxed);
        self.0
            .dead_lettered
            .fetch_add(widen(dead_lettered), Ordering::Relaxed);
    }
}
