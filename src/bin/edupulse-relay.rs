//! A relay process: drains one store's outbox to JetStream until SIGINT or SIGTERM, then gives
//! its partitions back. Run several for fail-over: each leads the partitions it can lock.
//!
//! Configured by environment: `DATABASE_URL`, `NATS_URL`, `EDUPULSE_SCHEMA` (search path,
//! default `public`), `EDUPULSE_PREFIX` (default `edupulse`), `EDUPULSE_STREAM` (default
//! `EDUPULSE`), `EDUPULSE_PARTITIONS` (default 8), `EDUPULSE_BATCH` (default 10000).

use std::str::FromStr;

use edupulse_events::publish::{Publisher, StreamSettings};
use edupulse_events::relay::{Relay, RelayConfig};
use edupulse_events::store::Store;
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
    let prefix = var("EDUPULSE_PREFIX", "edupulse");
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
    let store =
        Store::new(pool, prefix.clone()).with_partitions(var("EDUPULSE_PARTITIONS", "8").parse()?);
    let publisher = Publisher::provision(
        nats,
        StreamSettings::new(var("EDUPULSE_STREAM", "EDUPULSE"), prefix),
    )
    .await?;
    let config = RelayConfig {
        batch_size: var("EDUPULSE_BATCH", "10000").parse()?,
        ..RelayConfig::default()
    };
    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    eprintln!("edupulse-relay: relaying schema {schema}");
    Relay::new(store, publisher, config).run(shutdown).await?;
    Ok(())
}
