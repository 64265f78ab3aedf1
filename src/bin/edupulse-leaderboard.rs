//! The leaderboard read model as a process of its own: applies `QuizSubmitted` events from the
//! stream until SIGINT or SIGTERM (or until killed: it resumes where it stopped, and applies
//! nothing twice).
//!
//! Configured by environment: `DATABASE_URL`, `NATS_URL`, `EDUPULSE_SCHEMA` (default
//! `public`), `EDUPULSE_PREFIX` (default `edupulse`), `EDUPULSE_STREAM` (default `EDUPULSE`),
//! `EDUPULSE_PARTITIONS` (default 8), `EDUPULSE_MASTER_KEY` (the master key, base64),
//! `EDUPULSE_CONSUMER` (default `leaderboard`).

use edupulse_suite::{config, leaderboard};

#[tokio::main]
async fn main() {
    config::log_to_stderr();
    // Said as a sentence: what is wrong and what to set, not the error's structure.
    if let Err(err) = run().await {
        eprintln!("edupulse-leaderboard: {err}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), config::ConfigError> {
    // Started before its servers, it waits for them; a configuration error stops it at once.
    let pool = config::pool_waiting(4).await?;
    // The subscriber reads on a connection of its own, apart from the runtime's.
    let runtime = config::runtime_waiting(pool.clone(), config::key_provider(false)?).await?;
    leaderboard::create_table(&pool).await?;
    let consumer = config::var("EDUPULSE_CONSUMER", "leaderboard");
    let subscriber = leaderboard::subscriber(&runtime, &consumer).build().await?;
    eprintln!(
        "edupulse-leaderboard: consumer {consumer} on schema {}",
        config::schema()
    );
    subscriber.run(config::terminated()).await?;
    Ok(())
}
