//! Configuration from the environment, as the workspace's processes and examples read it:
//! `DATABASE_URL`, `EDUPULSE_SCHEMA` (the schema, one name, default `public`), `NATS_URL`
//! (one server or several, comma-separated), `EDUPULSE_PREFIX` (default `edupulse`),
//! `EDUPULSE_STREAM` (default `EDUPULSE`), `EDUPULSE_REPLICAS`, `EDUPULSE_MAX_AGE_SECS`,
//! `EDUPULSE_DUPLICATE_WINDOW_SECS`, `EDUPULSE_PARTITIONS` (default 8) and
//! `EDUPULSE_MASTER_KEY` (32 bytes, base64).

use edupulse_events::async_nats;
use edupulse_events::sqlx;
use std::error::Error;
use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use edupulse_events::privacy::{KeyError, LocalKeyProvider, MASTER_KEY_ENV};
use edupulse_events::publish::StreamSettings;
use edupulse_events::sqlx::PgPool;
use edupulse_events::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use edupulse_events::{Runtime, RuntimeBuilder};

/// What the environment failed to give.
pub type ConfigError = Box<dyn Error + Send + Sync>;

/// `name`'s value, or `default` when it is unset.
pub fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The schema named by `EDUPULSE_SCHEMA`.
pub fn schema() -> String {
    var("EDUPULSE_SCHEMA", "public")
}

/// The subject prefix named by `EDUPULSE_PREFIX`.
pub fn prefix() -> String {
    var("EDUPULSE_PREFIX", "edupulse")
}

/// The stream named by `EDUPULSE_STREAM`.
pub fn stream() -> String {
    var("EDUPULSE_STREAM", "EDUPULSE")
}

/// The outbox partitions given by `EDUPULSE_PARTITIONS`.
pub fn partitions() -> Result<u16, ConfigError> {
    Ok(var("EDUPULSE_PARTITIONS", "8").parse()?)
}

/// How long a process waiting for its servers at start-up waits between attempts, at most.
const MAX_START_WAIT: Duration = Duration::from_secs(5);

/// Runs `attempt` until it succeeds or fails for a reason waiting cannot fix (`retry` says
/// which), waiting from 100 ms to 5 s between attempts and saying so on standard error each
/// time: a process started before its database or broker comes up on its own.
pub async fn at_start<T, E, F, Fut>(
    what: &str,
    retry: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut wait = Duration::from_millis(100);
    for tries in 1u64.. {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) if retry(&err) => {
                eprintln!("waiting for {what} (attempt {tries}, next in {wait:?}): {err}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_START_WAIT);
            }
            Err(err) => return Err(err),
        }
    }
    unreachable!("the attempts are counted in u64")
}

/// Whether a database error is the server being unreachable for now.
pub fn is_unreachable(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_)
    ) || err
        .as_database_error()
        // 57P03: cannot_connect_now (starting up or shutting down).
        .is_some_and(|db| db.code().as_deref() == Some("57P03"))
}

/// [`pool`], waiting for PostgreSQL to come up.
pub async fn pool_waiting(max_connections: u32) -> Result<PgPool, ConfigError> {
    let options = connect_options()?;
    Ok(at_start("PostgreSQL", is_unreachable, || {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options.clone())
    })
    .await?)
}

fn connect_options() -> Result<PgConnectOptions, ConfigError> {
    let database = var(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    // One quoted identifier, never a list: `a,public` must not quietly run in `public`.
    Ok(edupulse_events::store::in_schema(
        PgConnectOptions::from_str(&database)?,
        &schema(),
    )?)
}

/// A pool on `DATABASE_URL` with the schema first on the search path.
pub async fn pool(max_connections: u32) -> Result<PgPool, ConfigError> {
    let options = connect_options()?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await?)
}

/// The servers of `NATS_URL`: one URL, or several separated by commas (a cluster's).
pub fn nats_servers() -> Result<Vec<async_nats::ServerAddr>, ConfigError> {
    let urls = var("NATS_URL", "nats://127.0.0.1:4222");
    let servers = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            url.parse::<async_nats::ServerAddr>()
                .map_err(|err| format!("NATS_URL: `{url}` is not a server address: {err}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err("NATS_URL names no server".into());
    }
    Ok(servers)
}

/// A client of `NATS_URL`'s servers. A long-running process `wait`s for a server that is not
/// up yet; a command is better told at once.
pub async fn nats(wait: bool) -> Result<async_nats::Client, ConfigError> {
    let options = if wait {
        async_nats::ConnectOptions::new().retry_on_initial_connect()
    } else {
        async_nats::ConnectOptions::new()
    };
    Ok(options.connect(nats_servers()?).await?)
}

/// The stream as `EDUPULSE_STREAM`, `EDUPULSE_PREFIX`, `EDUPULSE_REPLICAS` (default 1),
/// `EDUPULSE_MAX_AGE_SECS` (default 0: forever) and `EDUPULSE_DUPLICATE_WINDOW_SECS` (default
/// 120) configure it.
pub fn stream_settings() -> Result<StreamSettings, ConfigError> {
    let seconds = |name: &str, default: &str| -> Result<Duration, ConfigError> {
        let text = var(name, default);
        Ok(Duration::from_secs(text.parse().map_err(|_| {
            format!("{name}: `{text}` is not a whole number of seconds")
        })?))
    };
    let replicas = var("EDUPULSE_REPLICAS", "1");
    Ok(StreamSettings::new(stream(), prefix())
        .with_replicas(
            replicas
                .parse()
                .map_err(|_| format!("EDUPULSE_REPLICAS: `{replicas}` is not a number"))?,
        )
        .with_max_age(seconds("EDUPULSE_MAX_AGE_SECS", "0")?)
        .with_duplicate_window(seconds("EDUPULSE_DUPLICATE_WINDOW_SECS", "120")?))
}

/// The master key from `EDUPULSE_MASTER_KEY`; with `development` and the variable unset, a
/// key kept in `target/edupulse-dev.key` (created on first use) instead. A process holding
/// real data never wants that fallback: it would seal under a key nobody manages.
pub fn key_provider(development: bool) -> Result<LocalKeyProvider, KeyError> {
    if development && std::env::var(MASTER_KEY_ENV).is_err() {
        LocalKeyProvider::from_file_or_create(Path::new("target/edupulse-dev.key"))
    } else {
        LocalKeyProvider::from_env()
    }
}

/// [`runtime`], waiting for the broker to come up (the stream is provisioned at start); a
/// configuration error (a bad prefix, another partition count, a stream with other settings)
/// stops at once.
pub async fn runtime_waiting(pool: PgPool, keys: LocalKeyProvider) -> Result<Runtime, ConfigError> {
    use edupulse_events::RuntimeError;
    use edupulse_events::publish::PublishError;

    let (keys, partitions, settings) = (Arc::new(keys), partitions()?, stream_settings()?);
    let servers = nats_servers()?;
    let broker_down = |err: &RuntimeError| {
        matches!(
            err,
            RuntimeError::Connect(_) | RuntimeError::Publish(PublishError::JetStream(_))
        )
    };
    Ok(at_start("NATS JetStream", broker_down, || {
        builder(pool.clone(), servers.clone(), keys.clone(), partitions)
            .stream_settings(settings.clone())
            .build()
    })
    .await?)
}

/// The runtime over `pool` and `NATS_URL`'s servers as configured by the environment.
pub async fn runtime(pool: PgPool, keys: LocalKeyProvider) -> Result<Runtime, ConfigError> {
    Ok(
        builder(pool, nats_servers()?, Arc::new(keys), partitions()?)
            .stream_settings(stream_settings()?)
            .build()
            .await?,
    )
}

/// The runtime opens a connection per role (relay, erasure follower, each subscriber) to
/// `servers`, so a message one reader cannot parse never costs the relay its connection.
fn builder(
    pool: PgPool,
    servers: Vec<async_nats::ServerAddr>,
    keys: Arc<LocalKeyProvider>,
    partitions: u16,
) -> RuntimeBuilder {
    Runtime::builder()
        .postgres(pool)
        .nats(servers, async_nats::ConnectOptions::new())
        .subject_prefix(prefix())
        .stream(stream())
        .partitions(partitions)
        .key_provider(keys)
}

/// Completes on Ctrl-C or SIGTERM: how a process is asked to stop.
pub async fn terminated() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// Writes log lines at `info` and above (or the level `EDUPULSE_LOG` names, e.g. `warn`) to
/// standard error: what an operator of a shipped process reads and alerts on.
pub fn log_to_stderr() {
    let level = var("EDUPULSE_LOG", "info")
        .parse::<tracing_subscriber::filter::LevelFilter>()
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .init();
}
