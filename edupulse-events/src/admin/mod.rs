//! The operator's commands, as a clap subcommand group an application mounts in its own
//! binary, so they run with the application's own event types, configuration and keys:
//!
//! ```no_run
//! use clap::{Parser, Subcommand};
//! use edupulse_events::admin::AdminCommand;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     command: Command,
//! }
//!
//! #[derive(Subcommand)]
//! enum Command {
//!     /// Event store and stream administration.
//!     #[command(subcommand)]
//!     Events(AdminCommand),
//!     // ... the application's own commands
//! }
//!
//! # async fn runtime() -> Result<edupulse_events::Runtime, edupulse_events::RuntimeError> {
//! #     edupulse_events::Runtime::builder().build().await // your pool, NATS client, keys
//! # }
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! match Cli::parse().command {
//!     Command::Events(admin) => admin.run(runtime, &mut std::io::stdout()).await?,
//! }
//! # Ok(()) }
//! ```
//!
//! `myapp events status`, `myapp events erase <subject-id> --reason "ticket 1234"`,
//! `myapp events catalog > asyncapi.json`, `myapp events tail 'quiz.>'`, and so on.
//!
//! The same commands run against the embedded backend: pass a [`Target::embedded`] instead
//! of a runtime (`migrate` has nothing to do there: the store creates its tables on open).

mod embedded;
mod report;
mod status;
mod tail;
mod target;

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use thiserror::Error;
use uuid::Uuid;

use crate::asyncapi::AsyncApiInfo;
use crate::contract::{ContractViolations, Contracts};
use crate::privacy::{ErasureReceipt, Scrub};
use crate::registry::Registry;
use crate::store::ErasureError;
use crate::store::{DatabaseError, EventStore, StoreError};

pub use target::Target;

/// The commands; mount with `#[command(subcommand)]`.
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum AdminCommand {
    /// Applies the embedded migrations (the runtime does at start too) and lists them.
    Migrate,
    /// Relays the outbox to JetStream until interrupted (Ctrl-C or SIGTERM finishes the batch
    /// in hand).
    Relay,
    /// Erases a data subject: destroys their keys, so every copy of their personal data in
    /// the log, the outbox and the stream becomes unreadable, and records why.
    Erase {
        /// The data subject's id.
        subject: Uuid,
        /// Why (a ticket, a request): kept in the audit trail, never published.
        #[arg(long)]
        reason: String,
        /// Also overwrite their sealed values in the stored log.
        #[arg(long)]
        scrub: bool,
    },
    /// Re-wraps every data key with the current master key (`EDUPULSE_MASTER_KEY`), opening
    /// those not yet re-wrapped with a retiring one (`EDUPULSE_PREVIOUS_MASTER_KEYS`, or the
    /// application's provider). Afterwards retire the old key: older copies of the key table
    /// (WAL archives, backups) then open nothing.
    RotateMasterKey,
    /// Prints every registered event type: an AsyncAPI 3.0 document, or the catalog as JSON.
    Catalog {
        /// Output format.
        #[arg(long, value_enum, default_value_t = CatalogFormat::Asyncapi)]
        format: CatalogFormat,
        /// The application's name, for the AsyncAPI info [default: the subject prefix].
        #[arg(long)]
        title: Option<String>,
        /// The application's version, for the AsyncAPI info.
        #[arg(long, default_value = "1.0.0")]
        api_version: String,
        /// The subject prefix the runtime publishes under [default: the runtime's (or the
        /// embedded store's), which connects to it; give it to run without servers].
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Prints events from the stream as they arrive, decoded, personal data masked.
    Tail {
        /// Subject filter below the runtime's prefix, NATS wildcards allowed (`quiz.>`).
        #[arg(default_value = ">")]
        filter: String,
        /// Start at the first event in the stream instead of the next one.
        #[arg(long)]
        from_start: bool,
        /// Stop after this many events; with `--from-start`, also when the stream holds no more.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Outbox depth and lag, dead letters, and the stream's state.
    Status,
    /// Checks the event contracts in a directory of snapshots, or writes the missing ones.
    Contracts {
        /// The snapshots' directory.
        dir: PathBuf,
        /// Write snapshots for versions that have none (never rewrites one).
        #[arg(long)]
        write: bool,
    },
}

/// How `catalog` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CatalogFormat {
    /// An AsyncAPI 3.0 document.
    Asyncapi,
    /// The registry's catalog as JSON.
    Json,
}

/// Why a command failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The runtime could not start (connecting, migrating, provisioning).
    #[error("cannot start the runtime: {0}")]
    Start(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// The erasure failed.
    #[error(transparent)]
    Erasure(#[from] ErasureError),
    /// Contracts are broken.
    #[error(transparent)]
    Contracts(#[from] ContractViolations),
    /// JetStream failed.
    #[error("JetStream: {0}")]
    JetStream(String),
    /// Writing the output failed.
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
    /// The binary registers no event type of the application's: the crate that defines
    /// them is not linked into it.
    #[error(
        "this binary registers no event types of its own (only the library's), so the catalog \
         would be empty: a binary links a crate only when it names something from it. Add \
         `use your_events_crate as _;` to the binary's main.rs"
    )]
    NoEventTypes,
}

impl From<sqlx::Error> for AdminError {
    fn from(err: sqlx::Error) -> Self {
        AdminError::Database(err.into())
    }
}

impl AdminCommand {
    /// Runs the command, writing its report to `out` (progress goes to standard error).
    /// `target` is called only by commands that need the store: `contracts`, and `catalog`
    /// given `--prefix` (or `--format json`), work from the binary's registry alone; the
    /// AsyncAPI `catalog` without `--prefix` asks the target for its prefix. It returns a [`Runtime`](crate::Runtime) (the
    /// servers) or a [`Target`].
    pub async fn run<F, Fut, T, E>(self, target: F, out: &mut dyn Write) -> Result<(), AdminError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: Into<Target>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let target = || async {
            target()
                .await
                .map(Into::into)
                .map_err(|e| AdminError::Start(e.into()))
        };
        match self {
            AdminCommand::Catalog {
                format,
                title,
                api_version,
                prefix,
            } => {
                // Before any connection: a binary without event types has nothing to list.
                refuse_without_event_types()?;
                // JSON lists subjects below the prefix: only AsyncAPI addresses need it.
                let prefix = match (prefix, format) {
                    (Some(prefix), _) => prefix,
                    (None, CatalogFormat::Json) => String::new(),
                    (None, CatalogFormat::Asyncapi) => target().await?.subject_prefix().to_owned(),
                };
                let title = title.unwrap_or_else(|| prefix.clone());
                catalog(format, title, api_version, prefix, out)
            }
            AdminCommand::Contracts { dir, write } => contracts(dir, write, out),
            AdminCommand::Migrate => {
                eprintln!("connecting and applying migrations...");
                match target().await? {
                    Target::Servers(runtime) => status::migrations(&runtime, out).await,
                    Target::Embedded { .. } => {
                        writeln!(
                            out,
                            "the embedded store creates its tables when it is opened; nothing to migrate"
                        )?;
                        Ok(())
                    }
                }
            }
            AdminCommand::Relay => relay(target().await?, out).await,
            AdminCommand::Erase {
                subject,
                reason,
                scrub,
            } => {
                let target = target().await?;
                let scrub = if scrub {
                    eprintln!("erasing {subject} and scrubbing their stored values...");
                    Scrub::StoredCiphertext
                } else {
                    Scrub::KeysOnly
                };
                let receipt = match &target {
                    Target::Servers(runtime) => {
                        runtime.erase_subject(subject, &reason, scrub).await?
                    }
                    Target::Embedded { store, .. } => {
                        store.erase_subject(subject, &reason, scrub).await?
                    }
                };
                report_erasure(&receipt, out)
            }
            AdminCommand::RotateMasterKey => {
                let target = target().await?;
                eprintln!("re-wrapping every data key with the current master key...");
                let count = match &target {
                    Target::Servers(runtime) => runtime.rotate_master_key().await?,
                    Target::Embedded { store, .. } => store.rotate_master_key().await?,
                };
                writeln!(
                    out,
                    "re-wrapped {count} data key(s); the previous master key can now be retired"
                )?;
                Ok(())
            }
            AdminCommand::Tail {
                filter,
                from_start,
                limit,
            } => match target().await? {
                Target::Servers(runtime) => {
                    tail::tail(&runtime, &filter, from_start, limit, out).await
                }
                Target::Embedded { store, bus } => {
                    embedded::tail(&store, &bus, &filter, from_start, limit, out).await
                }
            },
            AdminCommand::Status => match target().await? {
                Target::Servers(runtime) => status::status(&runtime, out).await,
                Target::Embedded { store, bus } => embedded::status(&store, &bus, out).await,
            },
        }
    }
}

/// `catalog`: every registered type, as AsyncAPI or as the catalog's JSON.
fn catalog(
    format: CatalogFormat,
    title: String,
    api_version: String,
    prefix: String,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let registry = Registry::global();
    if registry
        .crates()
        .iter()
        .all(|c| *c == env!("CARGO_CRATE_NAME"))
    {
        return Err(AdminError::NoEventTypes);
    }
    let catalog = registry.catalog();
    let document = match format {
        CatalogFormat::Json => serde_json::to_value(&catalog).expect("the catalog serializes"),
        CatalogFormat::Asyncapi => {
            let mut info = AsyncApiInfo::new(title, api_version);
            info.subject_prefix = prefix;
            catalog.to_asyncapi(&info)
        }
    };
    serde_json::to_writer_pretty(&mut *out, &document).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// The linking trap: a binary that names nothing of its events crate registers only the
/// library's own types.
fn refuse_without_event_types() -> Result<(), AdminError> {
    let crates = Registry::global().crates();
    if crates.iter().all(|c| *c == env!("CARGO_CRATE_NAME")) {
        return Err(AdminError::NoEventTypes);
    }
    Ok(())
}

/// `contracts`: checks the snapshots in `dir`, or writes the missing ones.
fn contracts(dir: PathBuf, write: bool, out: &mut dyn Write) -> Result<(), AdminError> {
    let contracts = Contracts::new(dir);
    let check = if write {
        contracts.write_new()?
    } else {
        contracts.check()?
    };
    for written in &check.written {
        writeln!(out, "wrote the snapshot of {written}")?;
    }
    writeln!(
        out,
        "{} event versions match their snapshots in {}",
        check.checked,
        contracts.dir().display()
    )?;
    Ok(())
}

/// `relay`: until Ctrl-C or SIGTERM, which finish the batch in hand.
async fn relay(target: Target, out: &mut dyn Write) -> Result<(), AdminError> {
    eprintln!("relaying; Ctrl-C stops after the batch in hand");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stopped = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    match target {
        Target::Servers(runtime) => {
            let relay = runtime.relay();
            let totals = relay.totals();
            let ran = relay.run(stopped).await;
            // Said even when it stopped on an error: what it did before still happened.
            writeln!(
                out,
                "relay stopped: {} event(s) published, {} set aside in dead_letters",
                totals.published(),
                totals.dead_lettered()
            )?;
            ran?;
        }
        Target::Embedded { store, bus } => {
            let published = crate::embedded::run_relay(store, bus, stopped).await?;
            writeln!(out, "relay stopped: {published} event(s) published")?;
        }
    }
    Ok(())
}

/// What an erasure did, as the operator reads it.
fn report_erasure(receipt: &ErasureReceipt, out: &mut dyn Write) -> Result<(), AdminError> {
    if receipt.already_erased {
        writeln!(
            out,
            "{} was already erased; nothing new to destroy",
            receipt.subject
        )?;
    }
    writeln!(
        out,
        "erased {}: {} key version(s) destroyed, {} stored event(s) scrubbed, \
         recorded as event {} at position {} ({})",
        receipt.subject,
        receipt.keys_destroyed,
        receipt.events_scrubbed,
        receipt.event_id,
        receipt.position,
        receipt.erased_at.to_rfc3339()
    )?;
    if !receipt.key_bytes_purged {
        writeln!(
            out,
            "warning: the key table was busy and was not compacted; the destroyed \
             key's bytes stay in its files until the next erasure or rotation"
        )?;
    }
    writeln!(
        out,
        "the erasure event waits in the outbox until a relay publishes it: other processes \
         evict the subject's keys and run their on_erasure hooks when it reaches them"
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runtime's own unit tests link no application crate: the catalog of such a binary
    /// is the linking trap, and must say so rather than print the library's types alone.
    #[test]
    fn a_catalog_of_a_binary_that_links_no_events_crate_names_the_fix() {
        let mut out = Vec::new();
        let err = catalog(
            CatalogFormat::Json,
            "t".into(),
            "1".into(),
            "p".into(),
            &mut out,
        )
        .unwrap_err();
        assert!(matches!(err, AdminError::NoEventTypes), "{err}");
        assert!(err.to_string().contains("use your_events_crate as _;"));
        assert!(out.is_empty());
    }
}
