//! Setting aside what a subscriber cannot apply, or cannot even receive (see
//! [`unreadable`](super::unreadable)): a row in `consumer_dead_letters` first (it is the only
//! trace left), then the message terminated, so JetStream does not send it again. A message
//! whose row could not be written is not terminated: it comes back and is set aside then.

use std::time::{Duration, Instant};

use async_nats::jetstream;

use crate::database::DatabaseError;

use super::error::ConsumeError;
use super::subscriber::Subscriber;

/// The wait before a failed sweep is made again.
const SWEEP_RETRY: Duration = Duration::from_secs(1);

/// What the next look at the connection does besides looking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NextLook {
    /// Only look.
    Look,
    /// Also look for messages that can never be received, from `not_before` on: the
    /// connection dropped, and that look has not happened yet or failed `failures` times.
    Sweep { not_before: Instant, failures: u32 },
}

impl NextLook {
    /// A sweep as soon as possible, after a drop.
    pub(super) fn sweep_now() -> Self {
        NextLook::Sweep {
            not_before: Instant::now(),
            failures: 0,
        }
    }
}

impl Subscriber {
    pub(super) async fn set_aside(
        &self,
        message: &jetstream::Message,
        sequence: u64,
        delivered: i64,
        reason: &str,
    ) -> Result<(), ConsumeError> {
        let event_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(crate::publish::header_names::ID))
            .and_then(|id| id.as_str().parse::<uuid::Uuid>().ok());
        self.record_dead_letter(
            sequence,
            event_id,
            message.subject.as_str(),
            delivered,
            reason,
        )
        .await
        .map(|_| ())
    }

    /// Sets aside the messages this consumer was sent and can never receive, when `next`
    /// says it is time; says when to try again if that failed (they would come back). The
    /// first failure of a series is reported, not each.
    /// Returns when to look next, and how many messages it set aside now.
    pub(super) async fn sweep(&self, next: NextLook) -> (NextLook, usize) {
        let NextLook::Sweep {
            not_before,
            failures,
        } = next
        else {
            return (next, 0);
        };
        if Instant::now() < not_before {
            return (next, 0);
        }
        let consumer = self.dispatcher.consumer.as_str();
        let again = NextLook::Sweep {
            not_before: Instant::now() + SWEEP_RETRY,
            failures: failures.saturating_add(1),
        };
        let found = match self.sweeper.find(&self.consumer).await {
            Ok(found) => found,
            Err(err) => {
                if failures == 0 {
                    tracing::warn!(consumer, error = %err, "could not look for messages the consumer cannot receive; trying again");
                }
                return (again, 0);
            }
        };
        let mut next = NextLook::Look;
        let mut set_aside = 0;
        for message in found {
            // Delivered at least once; how often, the server does not say.
            let reason = format!(
                "never received: {}, so async-nats drops the connection it arrives on",
                message.why
            );
            // Terminated whether or not it was recorded before (a later sweep finds it again
            // while an earlier message holds the acknowledgement floor); counted once.
            let settled = match self
                .record_dead_letter(message.sequence, None, &message.subject, 1, &reason)
                .await
            {
                Ok(recorded) => self
                    .sweeper
                    .terminate(message.sequence)
                    .await
                    .map(|()| recorded),
                Err(err) => Err(err),
            };
            match settled {
                Ok(true) => {
                    self.set_aside.increment(1);
                    set_aside += 1;
                }
                Ok(false) => {}
                Err(err) => {
                    if failures == 0 {
                        tracing::warn!(consumer, stream_sequence = message.sequence, error = %err, "could not set aside a message the consumer cannot receive; trying again");
                    }
                    next = again;
                }
            }
        }
        (next, set_aside)
    }

    /// Records a dead letter; `false` if it was recorded before.
    async fn record_dead_letter(
        &self,
        sequence: u64,
        event_id: Option<uuid::Uuid>,
        subject: &str,
        delivered: i64,
        reason: &str,
    ) -> Result<bool, ConsumeError> {
        let consumer = self.dispatcher.consumer.as_str();
        let inserted = sqlx::query(
            "INSERT INTO consumer_dead_letters \
             (consumer, stream_sequence, event_id, subject, deliveries, reason) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(consumer)
        // JetStream sequences stay far below i64::MAX; one beyond is recorded as the maximum.
        .bind(i64::try_from(sequence).unwrap_or(i64::MAX))
        .bind(event_id)
        .bind(subject)
        .bind(delivered)
        .bind(reason)
        .execute(self.runtime.store().pool())
        .await
        .map_err(DatabaseError::from)?
        .rows_affected()
            > 0;
        if inserted {
            tracing::warn!(
                consumer,
                stream_sequence = sequence,
                event_id = ?event_id,
                "message set aside in consumer_dead_letters"
            );
        }
        Ok(inserted)
    }
}
