//! How long the relay waits before its next step after a failure, and what it says about it.
//!
//! A broker outage used to look like progress every other step (a pipelined batch reads and
//! sends before the failure of the one before it is known), which reset the back-off, so an
//! outage meant hundreds of outbox reads and thousands of warnings a second. The back-off now
//! resets only when JetStream acknowledged something, and the relay says once that it started
//! failing and once that it recovered.

use std::time::Duration;

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
                    match error {
                        Some(err) => {
                            tracing::warn!(error = %err, "relay failing; backing off and retrying")
                        }
                        None => tracing::warn!("relay publish failed; backing off and retrying"),
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
