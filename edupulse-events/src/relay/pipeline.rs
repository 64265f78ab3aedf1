//! Publishing that runs on across batches: rows queue per aggregate, each aggregate has at
//! most one publish awaiting its acknowledgement, and the next batch joins while the last
//! one's long runs are still being sent. ("Aggregate" below is a row's gate: its aggregate,
//! or on a cluster its fence lane, which holds whole aggregates; see `relay::fencing`.)
//!
//! One unacknowledged publish per aggregate is what keeps order when things fail: a publish
//! that fails (even one lost with the connection, whose successors the client would send after
//! reconnecting) is never overtaken by a later event of its aggregate. Keeping many aggregates
//! in flight at once, across batch boundaries, is what keeps the stream busy.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use uuid::Uuid;

use crate::publish::Publisher;

use super::batch::Bookkeeping;
use super::fencing::Fences;
use super::read::OutboxRow;

/// How many publishes may await their acknowledgement at once.
const MAX_IN_FLIGHT: usize = 1024;

/// A publish awaiting its acknowledgement, with the row it was for. A named future rather than
/// a boxed `async` block: one allocation less per message.
struct Ack {
    position: i64,
    aggregate: Uuid,
    pending: <PublishAckFuture as IntoFuture>::IntoFuture,
}

impl Future for Ack {
    type Output = (i64, Uuid, Result<(), PublishError>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.pending
            .as_mut()
            .poll(cx)
            .map(|acked| (this.position, this.aggregate, acked.map(|_| ())))
    }
}

/// Rows on their way to the stream.
#[derive(Default)]
pub struct Pipeline {
    /// Rows that may be sent now: no earlier row of their aggregate is waiting or in flight.
    ready: VecDeque<OutboxRow>,
    /// Rows behind an earlier row of their aggregate, in order.
    waiting: HashMap<Uuid, VecDeque<OutboxRow>>,
    /// Aggregates with a row ready or in flight.
    active: HashSet<Uuid>,
    waiting_rows: usize,
    in_flight: FuturesUnordered<Ack>,
    book: Bookkeeping,
    failed: bool,
    /// Whether JetStream refused a publish because its partition's fence is no longer the
    /// last: another relay took the partition over, or the fence expired.
    fenced: bool,
    /// Set while a row is handed to the client: still set on entry means the last run was
    /// dropped mid-send (a cancelled step), and that row's fate is unknown.
    sending: bool,
}

impl Pipeline {
    /// Queues `rows` (in position order, after every row queued before).
    pub fn feed(&mut self, rows: Vec<OutboxRow>) {
        for row in rows {
            if self.active.insert(row.gate) {
                self.ready.push_back(row);
            } else {
                self.waiting.entry(row.gate).or_default().push_back(row);
                self.waiting_rows += 1;
            }
        }
    }

    /// Rows queued, not yet sent.
    pub fn queued(&self) -> usize {
        self.ready.len() + self.waiting_rows
    }

    /// Whether nothing is queued or in flight.
    pub fn is_idle(&self) -> bool {
        self.queued() == 0 && self.in_flight.is_empty()
    }

    /// Whether a publish failed since the last [`Pipeline::clear`].
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Whether a publish was fenced out since the last call.
    pub fn take_fenced(&mut self) -> bool {
        std::mem::take(&mut self.fenced)
    }

    /// Sends and collects acknowledgements until at most `low_water` rows are queued (0: until
    /// everything is acknowledged), or a publish fails; after a failure, nothing more is sent
    /// and the acknowledgements already on their way are collected.
    #[tracing::instrument(name = "edupulse.publish", level = "debug", skip_all)]
    pub async fn run(
        &mut self,
        publisher: &Publisher,
        fences: &Fences,
        source: &str,
        low_water: usize,
    ) {
        if self.sending {
            // The row being sent was dropped with its aggregate still marked active: treat it
            // as a failed publish, so the relay starts over and reads the rows again.
            self.sending = false;
            self.failed = true;
        }
        loop {
            while self.in_flight.len() < MAX_IN_FLIGHT && !self.failed {
                let Some(row) = self.ready.pop_front() else {
                    break;
                };
                self.send(publisher, fences, source, row).await;
            }
            if self.failed {
                if self.in_flight.is_empty() {
                    return;
                }
            } else if low_water > 0 && self.queued() <= low_water {
                return;
            }
            let Some((position, aggregate, ack)) = self.in_flight.next().await else {
                return;
            };
            match ack {
                Ok(()) => {
                    self.book.acked.push(position);
                    self.release(aggregate);
                }
                Err(err) => {
                    // Said once per outage by the relay's pacing, not once per message.
                    tracing::debug!(position, error = %err, "publish not acknowledged");
                    self.fenced |= crate::publish::is_fenced_out(&err);
                    self.failed = true;
                }
            }
        }
    }

    async fn send(
        &mut self,
        publisher: &Publisher,
        fences: &Fences,
        source: &str,
        mut row: OutboxRow,
    ) {
        let Some(message) = fences.guard(row.partition, row.aggregate_id, row.take_message(source))
        else {
            // Its partition was lost since the row was read: another relay publishes it.
            self.failed = true;
            return;
        };
        let subject = std::mem::take(&mut row.subject);
        let (position, aggregate) = (row.position, row.gate);
        self.sending = true;
        let sent = publisher.context().send_publish(subject, message).await;
        self.sending = false;
        match sent {
            Ok(ack) => self.in_flight.push(Ack {
                position,
                aggregate,
                pending: ack.into_future(),
            }),
            Err(err) if err.kind() == PublishErrorKind::MaxPayloadExceeded => {
                self.book.dead.push((
                    position,
                    "message exceeds the NATS server's max_payload".to_owned(),
                ));
                self.release(aggregate);
            }
            Err(err) => {
                tracing::debug!(position, error = %err, "publish failed");
                self.failed = true;
            }
        }
    }

    /// The aggregate's row is done: its next row, if any, may go.
    fn release(&mut self, aggregate: Uuid) {
        if let Some(next) = self
            .waiting
            .get_mut(&aggregate)
            .and_then(VecDeque::pop_front)
        {
            self.waiting_rows -= 1;
            self.ready.push_back(next);
        } else {
            self.waiting.remove(&aggregate);
            self.active.remove(&aggregate);
        }
    }

    /// What was acknowledged or set aside since the last call.
    pub fn take_bookkeeping(&mut self) -> Bookkeeping {
        std::mem::take(&mut self.book)
    }

    /// Waits for the publishes in flight, then drops every queued row (they are read again
    /// from the outbox) and the failure mark.
    pub async fn clear(&mut self, publisher: &Publisher, fences: &Fences, source: &str) {
        self.failed = true;
        self.run(publisher, fences, source, 0).await;
        self.ready.clear();
        self.waiting.clear();
        self.active.clear();
        self.waiting_rows = 0;
        self.failed = false;
    }
}
