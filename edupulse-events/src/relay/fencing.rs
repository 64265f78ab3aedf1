//! The fences of the partitions a relay leads (see `publish::fence`): raised when a partition
//! is won, put on every event of it, dropped with the partition.

use std::collections::HashMap;

use async_nats::jetstream::message::PublishMessage;
use futures::future::join_all;
use uuid::Uuid;

use crate::publish::{CLUSTER_LANES, Fence, FenceError, Fencing, Publisher};

/// The fence of each lane of each led partition, when the server can fence.
pub(super) struct Fences {
    enabled: bool,
    /// Fences per partition: 1 on a single server, [`CLUSTER_LANES`] on a cluster.
    lanes: u16,
    raised: HashMap<(i16, u16), Fence>,
    /// Names this relay in its fence messages, for whoever reads them.
    relay: String,
}

impl Fences {
    pub(super) fn new(publisher: &Publisher) -> Self {
        Fences {
            enabled: publisher.can_fence(),
            lanes: match publisher.fencing() {
                Fencing::Lanes => CLUSTER_LANES,
                _ => 1,
            },
            raised: HashMap::new(),
            relay: format!("{}/{}", std::process::id(), Uuid::now_v7().simple()),
        }
    }

    /// Raises the fences of every partition in `held` that has none, and forgets those of
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
        self.raised
            .retain(|(partition, _), _| held.contains(partition));
        let missing: Vec<(i16, u16)> = held
            .iter()
            .flat_map(|&partition| (0..self.lanes).map(move |lane| (partition, lane)))
            .filter(|key| !self.raised.contains_key(key))
            .collect();
        if missing.is_empty() {
            return Ok(false);
        }
        // Each lane's fence is a subject of its own: raised side by side.
        let relay = &self.relay;
        let raised = join_all(missing.iter().map(|&(partition, lane)| async move {
            let fence = publisher.raise_fence(partition, lane, relay).await;
            ((partition, lane), fence)
        }))
        .await;
        let mut failed = None;
        for (key, fence) in raised {
            match fence {
                Ok(fence) => {
                    self.raised.insert(key, fence);
                }
                Err(err) => failed = Some(err),
            }
        }
        tracing::debug!(fences = missing.len(), "relay raised its fences");
        match failed {
            Some(err) => Err(err),
            None => Ok(true),
        }
    }

    /// The lane an aggregate publishes under.
    fn lane(&self, aggregate: Uuid) -> u16 {
        u16::try_from(aggregate.as_u128() % u128::from(self.lanes))
            .expect("a remainder of a u16 count fits in u16")
    }

    /// What the pipeline keeps one publish in flight for: the aggregate itself, or on a
    /// cluster its partition's lane (a subject JetStream checks one publish at a time).
    pub(super) fn gate(&self, partition: i16, aggregate: Uuid) -> Uuid {
        if !self.enabled || self.lanes == 1 {
            return aggregate;
        }
        let lane = u128::from(self.lane(aggregate));
        Uuid::from_u128((u128::from(partition.unsigned_abs()) << 16) | lane)
    }

    /// `message` guarded by its lane's fence; `None` if fencing is on and the partition has
    /// no fence (it was lost): such a message must not be sent.
    pub(super) fn guard(
        &self,
        partition: i16,
        aggregate: Uuid,
        message: PublishMessage,
    ) -> Option<PublishMessage> {
        if !self.enabled {
            return Some(message);
        }
        self.raised
            .get(&(partition, self.lane(aggregate)))
            .map(|fence| fence.guard(message))
    }

    /// Forgets every fence: the next step raises them again if it still leads.
    pub(super) fn clear(&mut self) {
        self.raised.clear();
    }
}
