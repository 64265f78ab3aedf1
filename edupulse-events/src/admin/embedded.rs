//! `status` and `tail` against the embedded store and its bus: the same reports as on the
//! servers, from SQLite's tables and the bus instead of PostgreSQL's and the stream.

use std::io::Write;

use tokio::sync::broadcast::error::RecvError;

use crate::embedded::{InProcessBus, SqliteStore};
use crate::envelope::Envelope;
use crate::registry::Registry;
use crate::store::{EventStore, LogCursor};

use super::{AdminError, report};

/// Outbox depth and lag, the log's end, dead letters, the bus's subscribers.
pub(super) async fn status(
    store: &SqliteStore,
    bus: &InProcessBus,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let pool = store.pool();
    let (depth, oldest): (i64, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
        "SELECT count(*), min(e.recorded_at) FROM outbox o JOIN events e USING (position)",
    )
    .fetch_one(pool)
    .await?;
    let lag = oldest.map(|oldest| (chrono::Utc::now() - oldest).as_seconds_f64());
    report::outbox(out, depth, lag)?;
    let (events, last): (i64, Option<i64>) =
        sqlx::query_as("SELECT count(*), max(position) FROM events")
            .fetch_one(pool)
            .await?;
    report::log(out, events, last)?;
    let consumers: Vec<(String, i64)> = sqlx::query_as(report::CONSUMER_DEAD_LETTERS)
        .fetch_all(pool)
        .await?;
    report::consumer_dead_letters(out, &consumers)?;
    writeln!(
        out,
        "in-process bus: {} subscriber(s)",
        bus.subscriber_count()
    )?;
    Ok(())
}

/// Prints events as the bus carries them, decoded, personal data masked; `from_start` first
/// prints the store's log (the bus keeps no history).
pub(super) async fn tail(
    store: &SqliteStore,
    bus: &InProcessBus,
    filter: &str,
    from_start: bool,
    limit: Option<u64>,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let filter = if filter.starts_with(&format!("{}.", store.subject_prefix())) {
        filter.to_owned()
    } else {
        format!("{}.{filter}", store.subject_prefix())
    };
    let mut shown = 0;
    let more = |shown: u64| limit.is_none_or(|limit| shown < limit);
    // Events printed from the log, not printed again when the bus carries them.
    let mut printed = std::collections::HashSet::new();
    // Subscribed before the log is read: nothing published meanwhile is missed.
    let mut messages = bus.subscribe();
    if from_start {
        let mut cursor = LogCursor::START;
        while more(shown) {
            let page = store.read_all(cursor, 100).await?;
            let Some(last) = page.last() else { break };
            cursor = last.cursor();
            for stored in page {
                let subject = subject_of(store, &stored.envelope);
                if more(shown) && matches(&filter, &subject) {
                    print(out, stored.position, &stored.envelope)?;
                    printed.insert(stored.envelope.id);
                    shown += 1;
                }
            }
        }
        if limit.is_some() {
            // Fewer than asked for: the log holds no more, and waiting would not end.
            return Ok(());
        }
    }
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    while more(shown) {
        let message = tokio::select! {
            biased;
            _ = &mut interrupted => break,
            received = messages.recv() => match received {
                Ok(message) => message,
                Err(RecvError::Lagged(lost)) => {
                    writeln!(out, "(fell behind the bus: {lost} event(s) not shown)")?;
                    continue;
                }
                Err(RecvError::Closed) => break,
            },
        };
        if !matches(&filter, &message.subject) || printed.remove(&message.envelope.id) {
            continue;
        }
        let mut envelopes = [message.envelope];
        store.unseal(&mut envelopes).await?;
        let [envelope] = envelopes;
        print(out, 0, &envelope)?;
        shown += 1;
    }
    Ok(())
}

fn subject_of(store: &SqliteStore, envelope: &Envelope) -> String {
    Registry::global()
        .get(&envelope.event_type, envelope.version)
        .map_or_else(
            || format!("{}.{}", store.subject_prefix(), envelope.type_string()),
            |d| format!("{}.{}", store.subject_prefix(), d.subject()),
        )
}

/// One event as `tail` shows it (`position` 0 when it came from the bus).
fn print(out: &mut dyn Write, position: i64, envelope: &Envelope) -> Result<(), AdminError> {
    let at = if position > 0 {
        format!("@{position}")
    } else {
        "bus".to_owned()
    };
    match Registry::global().decode(&envelope.event_type, envelope.version, &envelope.payload) {
        Ok(event) => report::event(out, &at, envelope, &event)?,
        Err(err) => writeln!(out, "{at} {}: cannot decode: {err}", envelope.type_string())?,
    }
    out.flush()?;
    Ok(())
}

/// Whether `subject` matches the NATS-style `filter` (`*` one token, `>` the rest).
fn matches(filter: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for token in filter.split('.') {
        match (token, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (token, Some(part)) if token == part => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn filters_match_as_nats_subjects_do() {
        assert!(matches("edupulse.>", "edupulse.quiz.submitted.v2"));
        assert!(matches("edupulse.quiz.*.v2", "edupulse.quiz.submitted.v2"));
        assert!(!matches("edupulse.quiz.*", "edupulse.quiz.submitted.v2"));
        assert!(!matches("edupulse.lesson.>", "edupulse.quiz.submitted.v2"));
        assert!(!matches(
            "edupulse.quiz.submitted.v2.>",
            "edupulse.quiz.submitted.v2"
        ));
        assert!(matches(
            "edupulse.quiz.submitted.v2",
            "edupulse.quiz.submitted.v2"
        ));
    }
}
