//! A relay process: drains one store's outbox to JetStream until SIGINT or SIGTERM, then gives
//! its partitions back. Run several for fail-over: each leads the partitions it can lock.
//!
//! Configured by environment: `DATABASE_URL`, `NATS_URL`, `EDUPULSE_SCHEMA` (search path,
//! default `public`), `EDUPULSE_PREFIX` (default `edupulse`), `EDUPULSE_STREAM` (default
//! `EDUPULSE`), `EDUPULSE_PARTITIONS` (default 8), `EDUPULSE_BATCH` (default 10000),
//! `EDUPULSE_NOTIFICATIONS` (`off` behind a pooler that does not carry NOTIFY).

use edupulse_events::publish::{PublishError, Publisher};
use edupulse_events::relay::{Relay, RelayConfig};
use edupulse_events::store::Store;
use edupulse_suite::config;

#[tokio::main]
async fn main() {
    config::log_to_stderr();
    // Said as a sentence: what is wrong and what to set, not the error's structure.
    if let Err(err) = run().await {
        eprintln!("edupulse-relay: {err}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), config::ConfigError> {
    // Started before its servers, it waits for them; a configuration error stops it at once.
    let store = Store::new(config::pool_waiting(4).await?, config::prefix())
        .with_partitions(config::partitions()?);
    store.check_partitions().await?;
    let nats = config::nats(true).await?;
    let settings = config::stream_settings()?;
    let publisher = config::at_start(
        "NATS JetStream",
        |err| matches!(err, PublishError::JetStream(_)),
        || Publisher::provision(nats.clone(), settings.clone()),
    )
    .await?;
    let relay_config = RelayConfig {
        batch_size: config::var("EDUPULSE_BATCH", "10000").parse()?,
        notifications: config::var("EDUPULSE_NOTIFICATIONS", "on") != "off",
        ..RelayConfig::default()
    };
    eprintln!("edupulse-relay: relaying schema {}", config::schema());
    Relay::new(store, publisher, relay_config)
        .run(config::terminated())
        .await?;
    Ok(())
}
