//! The fences of the partitions a relay leads (see `publish::fence`): raised when a partition
//! is won, put on every event of it, dropped with the partition.

use std::collections::HashMap;

use async_nats::jetstream::message::PublishMessage;

use crate::publish::{Fence, FenceError, Publisher};

/// The fence of each led partition, when the server can fence.
pub(super) struct Fences {
    enabled: bool,
    raised: HashMap<i16, Fence>,
    /// Names this relay in its fence messages, for whoever reads them.
    relay: String,
}

impl Fences {
    pub(super) fn new(publisher: &Publisher) -> Self {
        Fences {
            enabled: publisher.can_fence(),
            raised: HashMap::new(),
            relay: format!("{}/{}", std::process::id(), uuid::Uuid::now_v7().simple()),
        }
    }

    /// Raises the fence of every partition in `held` that has none, and forgets those of
    /// partitions no longer held; `true` if it raised any (the caller then confirms it still
    /// holds the lock).
    pub(super) async fn raise_missing(
        &mut self,
        publisher: &Publisher,
        held: &[i16],
    ) -> Result<bool, FenceError> {
        if !self.enabled {
            return Ok(false);
        }
        let mut raised = false;
        self.raised.retain(|partition, _| held.contains(partition));
        for &partition in held {
            if self.raised.contains_key(&partition) {
                continue;
            }
            let fence = publisher.raise_fence(partition, &self.relay).await?;
            tracing::debug!(
                partition,
                fence = fence.sequence(),
                "relay raised its fence"
            );
            self.raised.insert(partition, fence);
            raised = true;
        }
        Ok(raised)
    }

    /// `message` guarded by `partition`'s fence; `None` if fencing is on and the partition has
    /// no fence (it was lost): such a message must not be sent.
    pub(super) fn guard(&self, partition: i16, message: PublishMessage) -> Option<PublishMessage> {
        if !self.enabled {
            return Some(message);
        }
        self.raised
            .get(&partition)
            .map(|fence| fence.guard(message))
    }

    /// Forgets every fence: the next step raises them again if it still leads.
    pub(super) fn clear(&mut self) {
        self.raised.clear();
    }
}
