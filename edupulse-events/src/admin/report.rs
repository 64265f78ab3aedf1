//! The lines `status` and `tail` print, the same whichever backend they read.

use std::io::{self, Write};

use crate::any_event::AnyEvent;
use crate::envelope::Envelope;

/// The outbox's depth, and how long ago its oldest event was recorded.
pub(super) fn outbox(out: &mut dyn Write, depth: i64, lag_seconds: Option<f64>) -> io::Result<()> {
    match lag_seconds {
        Some(lag) => writeln!(
            out,
            "outbox: {depth} event(s) waiting, the oldest recorded {lag:.1} s ago"
        ),
        None => writeln!(out, "outbox: empty"),
    }
}

/// The log's size and end.
pub(super) fn log(out: &mut dyn Write, events: i64, last: Option<i64>) -> io::Result<()> {
    writeln!(
        out,
        "log: {events} event(s), last position {}",
        last.map_or("none".into(), |p| p.to_string())
    )
}

/// Each consumer's dead letters, or that there are none.
pub(super) fn consumer_dead_letters(
    out: &mut dyn Write,
    consumers: &[(String, i64)],
) -> io::Result<()> {
    if consumers.is_empty() {
        writeln!(out, "consumer dead letters: 0")?;
    }
    for (consumer, count) in consumers {
        writeln!(out, "consumer dead letters of {consumer}: {count}")?;
    }
    Ok(())
}

/// The SQL both databases answer with each consumer's dead-letter count.
pub(super) const CONSUMER_DEAD_LETTERS: &str =
    "SELECT consumer, count(*) FROM consumer_dead_letters GROUP BY consumer ORDER BY consumer";

/// One event as `tail` shows it, after `at` (where it was read: `#12` in the stream, `@12` in
/// the log, `bus`): personal data masked by the event's `Debug`.
pub(super) fn event(
    out: &mut dyn Write,
    at: &str,
    envelope: &Envelope,
    event: &AnyEvent,
) -> io::Result<()> {
    writeln!(
        out,
        "{at} {} {}.v{} aggregate {} seq {}: {event:?}",
        envelope.occurred_at.to_rfc3339(),
        envelope.event_type,
        envelope.version,
        envelope.aggregate_id,
        envelope.sequence
    )
}
