//! An application's own binary with the admin commands mounted under `events`: they run with
//! the application's event types (the catalog and contracts list them) and its configuration.
//!
//! ```text
//! cargo run --example admin -- events catalog --prefix edupulse   # AsyncAPI 3.0, no server needed
//! cargo run --example admin -- events contracts edupulse-domain/contracts
//! scripts/services && cargo run --example admin -- events status
//! cargo run --example admin -- events tail 'quiz.>' --from-start
//! cargo run --example admin -- events erase <student id> --reason "ticket 1234"
//! ```
//!
//! The servers and keys come from `DATABASE_URL`, `NATS_URL`, `EDUPULSE_SCHEMA`,
//! `EDUPULSE_PREFIX`, `EDUPULSE_STREAM`, `EDUPULSE_PARTITIONS` and `EDUPULSE_MASTER_KEY` (the
//! master key; without it a development key is kept in `target/edupulse-dev.key`).

use clap::{Parser, Subcommand};
use edupulse_events::Runtime;
use edupulse_events::admin::AdminCommand;
use edupulse_suite::config;

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

/// The application's runtime, as its `main` builds it.
async fn runtime() -> Result<Runtime, config::ConfigError> {
    config::runtime(config::pool(4).await?, config::key_provider(true)?).await
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // The application's event types are linked, so the registry holds them.
    let _ = <edupulse_domain::QuizSubmitted as edupulse_events::DomainEvent>::NAME;
    let Command::Events(admin) = Cli::parse().command;
    match admin.run(runtime, &mut std::io::stdout()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // Display, not Debug: the message is meant for the operator.
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
