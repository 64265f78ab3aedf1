//! Staying awake while events flow. A parked relay makes every append send a NOTIFY, and
//! PostgreSQL makes the commits of notifying transactions take turns; a relay that parked as
//! soon as a read came back short was woken by the next commit, read a row or two, and parked
//! again, so under load nearly every append notified and every event cost a whole relay step.
//! Awake (not parked), appends do not notify: the relay reads again on a short timer, which
//! lets each read gather what committed meanwhile, and parks only after a quiet period.

use std::time::{Duration, Instant};

/// The first wait between reads while awake: the latency an event sees then.
const MIN_TICK: Duration = Duration::from_millis(1);
/// The longest wait between reads while awake; the wait doubles over empty reads. Short: at
/// 1,000 events/s a longer one is what an event waits (8 ms gave a p50 of 2.25 ms).
const MAX_TICK: Duration = Duration::from_millis(2);
/// A read that finds this many rows keeps the relay awake: commits are coming faster than it
/// could be woken for each. Fewer (a light load) and it parks as before, where a NOTIFY per
/// commit costs little and wakes it at once (at 1,000 events/s from one writer, staying awake
/// on every row cost 1.3 ms of p50 latency: the timer's granularity).
const AWAKE_AT: usize = 3;
/// How long reads find too little before the relay parks.
const QUIET: Duration = Duration::from_millis(20);

/// What an awake relay does after a step that found no full batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterStep {
    /// Read again after this wait, without parking.
    LookAgain(Duration),
    /// Quiet long enough (or never awake): park.
    Park,
}

/// When the relay last found work, and its current wait between reads.
#[derive(Debug)]
pub(super) struct Awake {
    last_work: Option<Instant>,
    tick: Duration,
}

impl Awake {
    pub(super) fn new() -> Self {
        Awake {
            last_work: None,
            tick: MIN_TICK,
        }
    }

    /// A step read `loaded` rows at `now`.
    pub(super) fn after_step(&mut self, loaded: usize, now: Instant) -> AfterStep {
        if loaded >= AWAKE_AT {
            self.last_work = Some(now);
            self.tick = MIN_TICK;
            return AfterStep::LookAgain(MIN_TICK);
        }
        match self.last_work {
            Some(at) if now.duration_since(at) < QUIET => {
                let wait = self.tick;
                self.tick = (self.tick * 2).min(MAX_TICK);
                AfterStep::LookAgain(wait)
            }
            _ => AfterStep::Park,
        }
    }

    /// The relay parked: the next work starts a new awake period.
    pub(super) fn parked(&mut self) {
        self.last_work = None;
        self.tick = MIN_TICK;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_keeps_it_awake_on_a_short_timer_and_quiet_parks_it() {
        let start = Instant::now();
        let mut awake = Awake::new();
        let at = |ms| start + Duration::from_millis(ms);
        // Never awake: park at once; a light read does not wake it.
        assert_eq!(awake.after_step(0, start), AfterStep::Park);
        assert_eq!(awake.after_step(AWAKE_AT - 1, start), AfterStep::Park);
        assert_eq!(
            awake.after_step(AWAKE_AT, start),
            AfterStep::LookAgain(MIN_TICK)
        );
        // Light reads: the wait doubles up to its cap, until the quiet period has passed.
        assert_eq!(awake.after_step(0, at(1)), AfterStep::LookAgain(MIN_TICK));
        assert_eq!(awake.after_step(1, at(2)), AfterStep::LookAgain(MAX_TICK));
        assert_eq!(awake.after_step(0, at(4)), AfterStep::LookAgain(MAX_TICK));
        // Work again: back to the shortest wait.
        assert_eq!(
            awake.after_step(AWAKE_AT, at(10)),
            AfterStep::LookAgain(MIN_TICK)
        );
        assert_eq!(awake.after_step(0, at(29)), AfterStep::LookAgain(MIN_TICK));
        assert_eq!(awake.after_step(0, at(30)), AfterStep::Park);
        awake.parked();
        assert_eq!(awake.after_step(0, at(31)), AfterStep::Park);
    }
}
