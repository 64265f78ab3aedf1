//! Fencing: JetStream itself refuses the publishes of a relay that lost its leadership.
//!
//! A relay leads an outbox partition by holding a PostgreSQL advisory lock, but the lock
//! cannot stop a process that was frozen (SIGSTOP, a VM stall) with messages already handed to
//! its NATS client: when it wakes, those go out, long after a standby took over and
//! republished them. Past the duplicate window JetStream stores them again, out of order.
//! Checking the lock before each publish only narrows that gap (the freeze can fall between
//! the check and the write), and so does dropping rows older than some age; only a check made
//! by the server when the message arrives closes it.
//!
//! So each partition has a fence subject in the stream,
//! `_edupulse_fence.{prefix}.{partition}.{lane}`. A relay that takes a partition over
//! publishes a fence message there, conditional on the fence it saw being still the last one,
//! and sends every event of that partition with `Nats-Expected-Last-Subject-Sequence` pointing
//! at its fence (the `Nats-Expected-Last-Subject-Sequence-Subject` header, nats-server 2.11
//! and later). Once a new leader has raised its fence, the old leader's publishes fail with
//! "wrong last sequence", whenever they arrive. Fences live outside `{prefix}.>`, so consumers
//! of events never see them.
//!
//! On a single server a partition has one fence (lane 0). On a cluster, JetStream lets only
//! one publish checked against a given subject be in flight at a time (the next is refused
//! until the first is applied), so one fence per partition would serialise the partition:
//! there each partition has [`CLUSTER_LANES`] fences, an aggregate always publishes under
//! the same lane's, and the relay keeps one publish in flight per lane instead of per
//! aggregate.

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::{HeaderName, HeaderValue};
use bytes::Bytes;
use thiserror::Error;

use super::Publisher;

/// The first token of every fence subject.
const ROOT: &str = "_edupulse_fence";

/// Makes the server check `Nats-Expected-Last-Subject-Sequence` against this subject rather
/// than the message's own (nats-server 2.11).
const EXPECTED_SUBJECT: HeaderName =
    HeaderName::from_static("Nats-Expected-Last-Subject-Sequence-Subject");

/// The oldest nats-server that understands [`EXPECTED_SUBJECT`]; older ones ignore the header
/// and would check the event's own subject, refusing every event.
const FENCING_SINCE: (u64, u64) = (2, 11);

/// How often raising a fence is retried when another fence landed between reading the last
/// one and publishing: only a relay that lost the partition can do that, once.
const RAISE_ATTEMPTS: usize = 3;

/// How long a fence publish waits for its acknowledgement.
const RAISE_TIMEOUT: Duration = Duration::from_secs(5);

/// Fences per partition on a cluster: the publishes a partition can have in flight there.
pub const CLUSTER_LANES: u16 = 64;

/// The subjects of a stream's fences.
pub(super) fn fence_subjects(prefix: &str) -> String {
    format!("{ROOT}.{prefix}.>")
}

/// The fence subject of `partition`'s `lane` (lane 0 on a single server).
pub fn fence_subject(prefix: &str, partition: i16, lane: u16) -> String {
    format!("{ROOT}.{prefix}.{partition}.{lane}")
}

/// Whether a nats-server of `version` (as its INFO gives it, `2.11.3` or `v2.12.0-beta`)
/// checks a publish against another subject's last sequence.
pub(super) fn server_can_fence(version: &str) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= FENCING_SINCE,
        _ => false,
    }
}

/// A partition's fence as its leader raised it: the guard its events carry.
#[derive(Debug, Clone)]
pub struct Fence {
    subject: HeaderValue,
    sequence: u64,
}

impl Fence {
    /// The stream sequence of the fence message.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// `message`, to be stored only while this fence is the partition's last.
    pub(crate) fn guard(&self, message: PublishMessage) -> PublishMessage {
        message
            .expected_last_subject_sequence(self.sequence)
            .header(EXPECTED_SUBJECT, self.subject.clone())
    }
}

/// Why a fence could not be raised.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FenceError {
    /// The broker did not answer or refused.
    #[error("raising the fence of partition {partition}: {reason}")]
    Broker {
        /// The partition.
        partition: i16,
        /// What went wrong.
        reason: String,
    },
    /// Other fences kept landing between reading the last one and raising this one.
    #[error(
        "raising the fence of partition {partition}: another relay keeps raising fences; \
         is a relay running without the partition's lock?"
    )]
    Contended {
        /// The partition.
        partition: i16,
    },
}

/// Whether a relay's events can be fenced, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fencing {
    /// Every event carries its partition's fence.
    On,
    /// On a cluster: every event carries the fence of its partition's lane (see the module
    /// documentation), one publish in flight per lane.
    Lanes,
    /// The server predates the header fencing needs (nats-server 2.11).
    OldServer,
}

impl Fencing {
    /// For a server of `version`, in a cluster or not.
    pub(super) fn for_server(version: &str, clustered: bool) -> Self {
        if !server_can_fence(version) {
            Fencing::OldServer
        } else if clustered {
            Fencing::Lanes
        } else {
            Fencing::On
        }
    }
}

impl Publisher {
    /// Whether the relay fences its events on this publisher's server (see [`Fencing`]).
    pub fn fencing(&self) -> Fencing {
        self.fencing
    }

    /// Whether the relay fences its events.
    pub fn can_fence(&self) -> bool {
        self.fencing != Fencing::OldServer
    }

    /// The nats-server version it was provisioned through.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// Raises the fence of `partition`'s `lane`: from now on, events guarded by an earlier
    /// fence of it are refused. Call only while holding the partition's leadership.
    pub async fn raise_fence(
        &self,
        partition: i16,
        lane: u16,
        relay: &str,
    ) -> Result<Fence, FenceError> {
        let broker = |reason: String| FenceError::Broker { partition, reason };
        let subject = fence_subject(&self.settings().prefix, partition, lane);
        let stream = self
            .context()
            .get_stream_no_info(&self.settings().name)
            .await
            .map_err(|e| broker(e.to_string()))?;
        let body = Bytes::from(
            serde_json::json!({ "partition": partition, "lane": lane, "relay": relay }).to_string(),
        );
        for _ in 0..RAISE_ATTEMPTS {
            let last = match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(message) => message.sequence,
                Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => 0,
                Err(err) => return Err(broker(err.to_string())),
            };
            let message = PublishMessage::build()
                .payload(body.clone())
                .expected_last_subject_sequence(last);
            let ack = self
                .context()
                .send_publish(subject.clone(), message)
                .await
                .map_err(|e| broker(e.to_string()))?;
            match tokio::time::timeout(RAISE_TIMEOUT, ack).await {
                Ok(Ok(ack)) => {
                    return Ok(Fence {
                        subject: subject
                            .parse::<HeaderValue>()
                            .map_err(|e| broker(e.to_string()))?,
                        sequence: ack.sequence,
                    });
                }
                // Another relay raised it meanwhile: read the last sequence again.
                Ok(Err(err)) if err.kind() == PublishErrorKind::WrongLastSequence => {}
                Ok(Err(err)) => return Err(broker(err.to_string())),
                Err(_) => return Err(broker("no acknowledgement within 5 s".to_owned())),
            }
        }
        Err(FenceError::Contended { partition })
    }
}

/// Whether `err` is JetStream refusing a publish guarded by a fence that is no longer the
/// partition's last: the relay lost the partition, or the fence expired.
pub(crate) fn is_fenced_out(err: &async_nats::jetstream::context::PublishError) -> bool {
    err.kind() == PublishErrorKind::WrongLastSequence
}

#[cfg(test)]
mod tests {
    use super::server_can_fence;

    #[test]
    fn fencing_needs_nats_server_2_11() {
        assert!(!server_can_fence("2.9.10"));
        assert!(!server_can_fence("2.10.29"));
        assert!(server_can_fence("2.11.0"));
        assert!(server_can_fence("v2.12.8"));
        assert!(server_can_fence("3.0.0-beta.1"));
        assert!(!server_can_fence("garbage"));
    }
}
