//! The subscriber's own connection, watched for drops. async-nats reconnects on its own and the
//! pull consumer goes on, so a drop is silent; yet it is what a frame the client cannot parse
//! does, and a JetStream consumer is sent that frame again at every redelivery, so the drops
//! repeat forever. Each drop is counted and leads to a look for such a frame; drops that keep
//! coming although none was found are a loop, reported once when it starts and once when it
//! ends.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What the connection has been doing lately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No drop within the window.
    Steady,
    /// Dropped at `last`, once within the window: a restart, a network fault, or a frame
    /// found and set aside.
    Dropped { last: Instant },
    /// Dropped again within the window after a drop: something keeps dropping it.
    Looping { last: Instant, drops: u64 },
}

/// Whether the connection dropped since the last look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// Still the connection it was.
    Same,
    /// It was lost and opened again: messages sent on the old one may never have been read.
    Reconnected,
}

/// One subscriber's connection and what it has been doing.
pub(super) struct Link {
    /// The connection's counters; `connects` counts the first connection and each reconnect.
    statistics: Arc<async_nats::Statistics>,
    consumer: String,
    connects: u64,
    state: State,
    /// A loop is a second drop within this long of the last: twice the acknowledgement wait,
    /// since a frame nobody can read comes back once per wait.
    window: Duration,
    reconnects: ::metrics::Counter,
    looping: ::metrics::Gauge,
}

impl Link {
    pub(super) fn new(
        statistics: Arc<async_nats::Statistics>,
        consumer: &str,
        ack_wait: Duration,
    ) -> Self {
        let connects = statistics.connects.load(Ordering::Relaxed);
        Link {
            statistics,
            consumer: consumer.to_owned(),
            connects,
            state: State::Steady,
            window: ack_wait.saturating_mul(2),
            reconnects: ::metrics::counter!(crate::metrics::CONSUMER_RECONNECTS, "consumer" => consumer.to_owned()),
            looping: ::metrics::gauge!(crate::metrics::CONSUMER_RECONNECT_LOOP, "consumer" => consumer.to_owned()),
        }
    }

    /// Looks at the connection now; reports a state change, once, as it happens.
    pub(super) fn look(&mut self, now: Instant) -> Seen {
        let connects = self.statistics.connects.load(Ordering::Relaxed);
        let dropped = connects.saturating_sub(self.connects);
        self.connects = connects;
        if dropped > 0 {
            self.reconnects.increment(dropped);
        }
        self.state = match self.state {
            _ if dropped == 0 => self.quiet(now),
            State::Steady if dropped == 1 => {
                tracing::warn!(
                    consumer = self.consumer.as_str(),
                    "the consumer's connection to NATS dropped and is back; looking for a \
                     message it cannot read among those it was sent"
                );
                State::Dropped { last: now }
            }
            State::Steady => self.start_loop(now, dropped),
            State::Dropped { .. } => self.start_loop(now, dropped + 1),
            State::Looping { drops, .. } => State::Looping {
                last: now,
                drops: drops.saturating_add(dropped),
            },
        };
        if dropped > 0 {
            Seen::Reconnected
        } else {
            Seen::Same
        }
    }

    /// The message that made the connection drop was set aside.
    pub(super) fn cause_removed(&mut self) {
        if let State::Dropped { .. } = self.state {
            self.state = State::Steady;
        }
    }

    /// No drop since the last look: the state it stays in, or leaves once the window passed.
    fn quiet(&self, now: Instant) -> State {
        match self.state {
            State::Dropped { last } | State::Looping { last, .. }
                if now.duration_since(last) < self.window =>
            {
                self.state
            }
            State::Looping { drops, .. } => {
                tracing::warn!(
                    consumer = self.consumer.as_str(),
                    drops,
                    "the consumer's connection to NATS is steady again"
                );
                self.looping.set(0.0);
                State::Steady
            }
            State::Steady | State::Dropped { .. } => State::Steady,
        }
    }

    fn start_loop(&self, now: Instant, drops: u64) -> State {
        tracing::error!(
            consumer = self.consumer.as_str(),
            drops,
            window_secs = self.window.as_secs(),
            "the consumer's connection to NATS keeps dropping: a message it is sent may be one \
             the client cannot read and that was not found, or the server or the network is \
             failing"
        );
        self.looping.set(1.0);
        State::Looping { last: now, drops }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use super::{Link, Seen, State};

    fn reconnect(statistics: &async_nats::Statistics) {
        statistics.connects.fetch_add(1, Ordering::Relaxed);
    }

    #[test]
    fn one_drop_is_not_a_loop_and_is_forgotten_after_the_window() {
        let statistics = Arc::new(async_nats::Statistics::default());
        reconnect(&statistics);
        let mut link = Link::new(statistics.clone(), "c", Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(link.look(start), Seen::Same);
        reconnect(&statistics);
        assert_eq!(link.look(start), Seen::Reconnected);
        assert_eq!(link.state, State::Dropped { last: start });
        assert_eq!(link.look(start + Duration::from_secs(1)), Seen::Same);
        assert!(matches!(link.state, State::Dropped { .. }));
        link.look(start + Duration::from_secs(2));
        assert_eq!(link.state, State::Steady);
    }

    #[test]
    fn drops_that_keep_coming_are_a_loop_until_a_window_passes_without_one() {
        let statistics = Arc::new(async_nats::Statistics::default());
        let mut link = Link::new(statistics.clone(), "c", Duration::from_secs(1));
        let start = Instant::now();
        reconnect(&statistics);
        link.look(start);
        reconnect(&statistics);
        assert_eq!(link.look(start + Duration::from_secs(1)), Seen::Reconnected);
        assert!(matches!(link.state, State::Looping { drops: 2, .. }));
        reconnect(&statistics);
        reconnect(&statistics);
        link.look(start + Duration::from_secs(2));
        let last = start + Duration::from_secs(2);
        assert_eq!(link.state, State::Looping { last, drops: 4 });
        link.look(last + Duration::from_millis(1_999));
        assert!(matches!(link.state, State::Looping { .. }));
        link.look(last + Duration::from_secs(2));
        assert_eq!(link.state, State::Steady);
    }

    #[test]
    fn several_drops_between_two_looks_are_a_loop_at_once() {
        let statistics = Arc::new(async_nats::Statistics::default());
        let mut link = Link::new(statistics.clone(), "c", Duration::from_secs(30));
        reconnect(&statistics);
        reconnect(&statistics);
        link.look(Instant::now());
        assert!(matches!(link.state, State::Looping { drops: 2, .. }));
    }
}
