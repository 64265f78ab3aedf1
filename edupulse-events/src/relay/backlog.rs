//! Saying when the relay falls behind and when it has caught up: one line per change, so a
//! long backlog is visible in the log without a line per batch.

use std::time::{Duration, Instant};

/// A relay that found a full batch waiting is behind; one that then finds nothing is caught
/// up. Saying "behind" again waits this long, so a relay that keeps crossing the line under a
/// steady load does not fill the log.
const SAY_BEHIND_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub(super) struct Backlog {
    /// Since when the relay has been behind.
    behind_since: Option<Instant>,
    last_said_behind: Option<Instant>,
    /// Events published while behind.
    published_behind: usize,
}

/// What a step's read says about the backlog.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Change {
    None,
    FellBehind,
    CaughtUp { after: Duration, published: usize },
}

impl Backlog {
    /// Records a step that read `loaded` rows of at most `batch`, and published `published`.
    pub(super) fn record(&mut self, loaded: usize, batch: usize, published: usize) -> Change {
        match self.behind_since {
            None if loaded >= batch && loaded > 0 => {
                self.behind_since = Some(Instant::now());
                self.published_behind = published;
                let quiet = self
                    .last_said_behind
                    .is_none_or(|at| at.elapsed() >= SAY_BEHIND_EVERY);
                if quiet {
                    self.last_said_behind = Some(Instant::now());
                    return Change::FellBehind;
                }
                Change::None
            }
            Some(since) if loaded == 0 => {
                self.behind_since = None;
                Change::CaughtUp {
                    after: since.elapsed(),
                    published: self.published_behind + published,
                }
            }
            Some(_) => {
                self.published_behind += published;
                Change::None
            }
            None => Change::None,
        }
    }

    /// Logs `change`.
    pub(super) fn say(change: &Change) {
        match change {
            Change::None => {}
            Change::FellBehind => {
                tracing::info!("relay behind: a full batch was waiting in the outbox");
            }
            Change::CaughtUp { after, published } => tracing::info!(
                published,
                after = ?after,
                "relay caught up: the outbox is empty"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_on_a_full_batch_caught_up_on_an_empty_read_and_said_once_each() {
        let mut backlog = Backlog::default();
        assert_eq!(backlog.record(3, 500, 3), Change::None);
        assert_eq!(backlog.record(500, 500, 0), Change::FellBehind);
        assert_eq!(backlog.record(500, 500, 500), Change::None);
        assert!(matches!(
            backlog.record(0, 500, 200),
            Change::CaughtUp { published: 700, .. }
        ));
        // Behind again at once: not said again within the quiet period.
        assert_eq!(backlog.record(500, 500, 0), Change::None);
        assert!(matches!(backlog.record(0, 500, 0), Change::CaughtUp { .. }));
    }
}
