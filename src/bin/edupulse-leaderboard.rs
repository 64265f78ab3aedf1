//! The leaderboard read model as a process of its own: applies `QuizSubmitted` events from the
//! stream until SIGINT or SIGTERM (or until killed: it resumes where it stopped, and applies
//! nothing twice).
//!
//! Configured by environment: `DATABASE_URL`, `NATS_URL`, `EDUPULSE_SCHEMA` (default
//! `public`), `EDUPULSE_PREFIX` (default `edupulse`), `EDUPULSE_STREAM` (default `EDUPULSE`),
//! `EDUPULSE_PARTITIONS` (default 8), `EDUPULSE_MASTER_KEY` (the master key, base64),
//! `EDUPULSE_CONSUMER` (default `leaderboard`).

use std::str::FromStr;
use std::sync::Arc;

use edupulse_events::Runtime;
use edupulse_events::privacy::LocalKeyProvider;
use edupulse_suite::leaderboard;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::signal::unix::{SignalKind, signal};

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database = var(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    let schema = var("EDUPULSE_SCHEMA", "public");
    let options =
        PgConnectOptions::from_str(&database)?.options([("search_path", schema.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    let nats = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(var("NATS_URL", "nats://127.0.0.1:4222"))
        .await?;
    let runtime = Runtime::builder()
        .postgres(pool.clone())
        .nats(nats)
        .subject_prefix(var("EDUPULSE_PREFIX", "edupulse"))
        .stream(var("EDUPULSE_STREAM", "EDUPULSE"))
        .partitions(var("EDUPULSE_PARTITIONS", "8").parse()?)
        .key_provider(Arc::new(LocalKeyProvider::from_env()?))
        .build()
        .await?;
    leaderboard::create_table(&pool).await?;
    let consumer = var("EDUPULSE_CONSUMER", "leaderboard");
    let subscriber = leaderboard::subscriber(&runtime, &consumer).build().await?;
    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    eprintln!("edupulse-leaderboard: consumer {consumer} on schema {schema}");
    subscriber.run(shutdown).await?;
    Ok(())
}
