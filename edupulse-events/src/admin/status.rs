//! `status` and `migrate`: what an operator asks first when events seem late or lost.

use std::io::Write;

use crate::runtime::Runtime;

use super::{AdminError, report};

/// Outbox depth and lag, dead letters, the log's end, the stream's state.
pub(super) async fn status(runtime: &Runtime, out: &mut dyn Write) -> Result<(), AdminError> {
    let pool = runtime.store().pool();
    let (depth, lag): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), EXTRACT(EPOCH FROM now() - min(e.recorded_at))::float8 \
         FROM outbox o JOIN events e USING (position)",
    )
    .fetch_one(pool)
    .await?;
    report::outbox(out, depth, lag)?;
    let (events, last): (i64, Option<i64>) =
        sqlx::query_as("SELECT count(*), max(position) FROM events")
            .fetch_one(pool)
            .await?;
    report::log(out, events, last)?;
    let relay_dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(pool)
        .await?;
    writeln!(out, "relay dead letters: {relay_dead}")?;
    let consumers: Vec<(String, i64)> = sqlx::query_as(report::CONSUMER_DEAD_LETTERS)
        .fetch_all(pool)
        .await?;
    report::consumer_dead_letters(out, &consumers)?;
    let publisher = runtime.publisher();
    let name = &publisher.settings().name;
    let mut stream = publisher
        .context()
        .get_stream(name)
        .await
        .map_err(|e| AdminError::JetStream(e.to_string()))?;
    let info = stream
        .info()
        .await
        .map_err(|e| AdminError::JetStream(e.to_string()))?;
    let state = &info.state;
    writeln!(
        out,
        "stream {name}: {} message(s), {} byte(s), sequences {}..{}, {} consumer(s)",
        state.messages,
        state.bytes,
        state.first_sequence,
        state.last_sequence,
        state.consumer_count
    )?;
    Ok(())
}

/// The migrations applied to the store's schema.
pub(super) async fn migrations(runtime: &Runtime, out: &mut dyn Write) -> Result<(), AdminError> {
    let applied: Vec<(i64, String)> = sqlx::query_as(
        "SELECT version, description FROM _sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(runtime.store().pool())
    .await?;
    for (version, description) in &applied {
        writeln!(out, "applied {version} {description}")?;
    }
    let embedded = crate::store::MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .count();
    let state = if applied.len() == embedded {
        "the schema is up to date"
    } else {
        "the schema does not match this binary's migrations"
    };
    writeln!(
        out,
        "{} of {embedded} migration(s) applied; {state}",
        applied.len()
    )?;
    Ok(())
}
