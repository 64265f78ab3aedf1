//! An application's own binary with the admin commands mounted under `events`: they run with
//! the application's event types (the catalog and contracts list them) and its configuration.
//!
//! ```text
//! cargo run --example admin -- events catalog            # AsyncAPI 3.0, no server needed
//! cargo run --example admin -- events contracts edupulse-domain/contracts
//! scripts/services && cargo run --example admin -- events status
//! cargo run --example admin -- events tail 'quiz.>' --from-start
//! cargo run --example admin -- events erase <student id> --reason "ticket 1234"
//! ```
//!
//! The servers and keys come from `DATABASE_URL`, `NATS_URL`, `EDUPULSE_SCHEMA`,
//! `EDUPULSE_PREFIX`, `EDUPULSE_STREAM`, `EDUPULSE_PARTITIONS` and `EDUPULSE_MASTER_KEY` (the
//! master key; without it a development key is kept in `target/edupulse-dev.key`).

use std::error::Error;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use edupulse_events::Runtime;
use edupulse_events::admin::AdminCommand;
use edupulse_events::privacy::{LocalKeyProvider, MASTER_KEY_ENV};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

#[derive(Parser)]
#[command(name = "edupulse", about = "EduPulse Live")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Event store and stream administration.
    #[command(subcommand)]
    Events(AdminCommand),
}

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The application's runtime, as its `main` builds it.
async fn runtime() -> Result<Runtime, Box<dyn Error + Send + Sync>> {
    let database = var(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    let schema = var("EDUPULSE_SCHEMA", "public");
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(
            PgConnectOptions::from_str(&database)?.options([("search_path", schema.as_str())]),
        )
        .await?;
    let nats = async_nats::connect(var("NATS_URL", "nats://127.0.0.1:4222")).await?;
    let keys = if std::env::var(MASTER_KEY_ENV).is_ok() {
        LocalKeyProvider::from_env()?
    } else {
        LocalKeyProvider::from_file_or_create(Path::new("target/edupulse-dev.key"))?
    };
    Ok(Runtime::builder()
        .postgres(pool)
        .nats(nats)
        .subject_prefix(var("EDUPULSE_PREFIX", "edupulse"))
        .stream(var("EDUPULSE_STREAM", "EDUPULSE"))
        .partitions(var("EDUPULSE_PARTITIONS", "8").parse()?)
        .key_provider(Arc::new(keys))
        .build()
        .await?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // The application's event types are linked, so the registry holds them.
    let _ = <edupulse_domain::QuizSubmitted as edupulse_events::DomainEvent>::NAME;
    match Cli::parse().command {
        Command::Events(admin) => admin.run(runtime, &mut std::io::stdout()).await?,
    }
    Ok(())
}
