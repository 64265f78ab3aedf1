//! How long the relay waits before its next step after a failure, and what it says about it.
//!
//! A broker outage used to look like progress every other step (a pipelined batch reads and
//! sends before the failure of the one before it is known), which reset the back-off, so an
//! outage meant hundreds of outbox reads and thousands of warnings a second. The back-off now
//! resets only when JetStream acknowledged something, and the relay says once that it started
//! failing and once that it recovered.

use std::time::{Duration, Instant};

/// When an idle relay looks again: it lingers, unparked, for a while after finding events (more
/// are likely), and while an open appending transaction keeps it from parking it looks again
/// after a pause that doubles from `min_busy` to `max_busy`, starting over once it parks or
/// finds events.
#[derive(Debug)]
pub(super) struct Cadence {
    linger: Duration,
    min_busy: Duration,
    max_busy: Duration,
    busy: Duration,
    last_found: Option<Instant>,
}

impl Cadence {
    pub(super) fn new(linger: Duration, min_busy: Duration, max_busy: Duration) -> Self {
        Cadence {
            linger,
            min_busy,
            max_busy: max_busy.max(min_busy),
            busy: min_busy,
            last_found: None,
        }
    }

    /// A read found events at `now`.
    pub(super) fn found(&mut self, now: Instant) {
        self.last_found = Some(now);
        self.busy = self.min_busy;
    }

    /// Whether events were found less than the lingering time before `now`.
    pub(super) fn lingering(&self, now: Instant) -> bool {
        self.last_found
            .is_some_and(|at| now.saturating_duration_since(at) < self.linger)
    }

    /// The relay parked.
    pub(super) fn parked(&mut self) {
        self.busy = self.min_busy;
    }

    /// An open appending transaction kept the relay from parking: how long to pause before
    /// looking again.
    pub(super) fn kept_from_parking(&mut self) -> Duration {
        let pause = self.busy;
        self.busy = (self.busy * 2).min(self.max_busy);
        pause
    }
}

/// The back-off between failed steps, doubling from `min` to `max`.
#[derive(Debug)]
pub(super) struct Pacing {
    min: Duration,
    max: Duration,
    next: Duration,
    /// Consecutive failed steps; 0 while healthy.
    failures: u32,
}

/// What a step's result means for pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// A publish or the step itself failed.
    Failed,
    /// JetStream acknowledged events (or nothing was there to publish).
    Acknowledged,
    /// Rows went out but no acknowledgement is known yet: neither a failure nor a recovery.
    InFlight,
}

impl Pacing {
    pub(super) fn new(min: Duration, max: Duration) -> Self {
        Pacing {
            min,
            max: max.max(min),
            next: min,
            failures: 0,
        }
    }

    /// Records a step's result; `Some(wait)` after a failure: the back-off to wait.
    pub(super) fn record(
        &mut self,
        progress: Progress,
        error: Option<&dyn std::fmt::Display>,
    ) -> Option<Duration> {
        match progress {
            Progress::Failed => {
                if self.failures == 0 {
                    if let Some(err) = error {
                        tracing::warn!(error = %err, "relay failing; backing off and retrying");
                    } else {
                        tracing::warn!("relay publish failed; backing off and retrying");
                    }
                }
                self.failures = self.failures.saturating_add(1);
                ::metrics::counter!(crate::metrics::RELAY_FAILED_STEPS).increment(1);
                let wait = self.next;
                self.next = (self.next * 2).min(self.max);
                ::metrics::gauge!(crate::metrics::RELAY_BACKOFF_SECONDS).set(wait.as_secs_f64());
                Some(wait)
            }
            Progress::Acknowledged => {
                if self.failures > 0 {
                    tracing::info!(failed_steps = self.failures, "relay recovered");
                    ::metrics::gauge!(crate::metrics::RELAY_BACKOFF_SECONDS).set(0.0);
                }
                self.failures = 0;
                self.next = self.min;
                None
            }
            Progress::InFlight => None,
        }
    }

    /// Whether the last steps failed.
    #[cfg(test)]
    fn failing(&self) -> bool {
        self.failures > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn kept_from_parking_the_pause_doubles_to_its_cap_until_it_parks_or_finds_events() {
        let mut cadence = Cadence::new(ms(5), ms(1), ms(4));
        let pauses: Vec<_> = (0..4).map(|_| cadence.kept_from_parking()).collect();
        assert_eq!(pauses, [ms(1), ms(2), ms(4), ms(4)]);
        cadence.parked();
        assert_eq!(cadence.kept_from_parking(), ms(1));
        cadence.kept_from_parking();
        cadence.found(Instant::now());
        assert_eq!(cadence.kept_from_parking(), ms(1));
    }

    #[test]
    fn it_lingers_for_a_while_after_finding_events_and_not_before() {
        let mut cadence = Cadence::new(ms(5), ms(1), ms(4));
        let start = Instant::now();
        assert!(!cadence.lingering(start), "nothing found yet");
        cadence.found(start);
        assert!(cadence.lingering(start + ms(4)));
        assert!(!cadence.lingering(start + ms(5)));
        // Parking does not forget when events were last found.
        cadence.parked();
        assert!(cadence.lingering(start + ms(1)));
    }

    #[test]
    fn back_off_doubles_to_its_cap_and_resets_only_on_acknowledgement() {
        let mut pacing = Pacing::new(ms(20), ms(100));
        let waits: Vec<_> = (0..5)
            .map(|_| pacing.record(Progress::Failed, None).unwrap())
            .collect();
        assert_eq!(waits, [ms(20), ms(40), ms(80), ms(100), ms(100)]);
        // A step that only sent rows (the outage's pipelined reads) changes nothing.
        assert_eq!(pacing.record(Progress::InFlight, None), None);
        assert!(pacing.failing());
        assert_eq!(pacing.record(Progress::Failed, None), Some(ms(100)));
        assert_eq!(pacing.record(Progress::Acknowledged, None), None);
        assert!(!pacing.failing());
        assert_eq!(pacing.record(Progress::Failed, None), Some(ms(20)));
    }
}
