//! Isolation for integration tests against the real servers: each test gets its own schema,
//! subject prefix and stream, and removes them when done, so tests run in parallel and the
//! servers outlive the run. Servers are found through DATABASE_URL and NATS_URL, defaulting to
//! the ones `scripts/services` starts.

#![allow(dead_code)]

pub mod backlog;
pub mod frozen_relay;
pub mod own_servers;
pub mod raw_frames;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use async_nats::jetstream;
use edupulse_events::privacy::{DataKey, KeyStore, LocalKeyProvider};
use edupulse_events::publish::{Publisher, StreamSettings};
use edupulse_events::store::Store;
use edupulse_events::{DomainEvent, Envelope, Uuid};
use futures::StreamExt;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

/// Brings the servers up, once per test binary, when the local defaults are not answering:
/// `cargo test` on a machine where nothing runs yet behaves like `scripts/test`. Servers named
/// by DATABASE_URL or NATS_URL are the caller's business and are left alone.
pub fn ensure_services() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let local =
            std::env::var_os("DATABASE_URL").is_none() && std::env::var_os("NATS_URL").is_none();
        let up = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if local && !(up(5432) && up(4222)) {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services");
            let status = std::process::Command::new("bash")
                .arg(script)
                .status()
                .expect("run scripts/services");
            assert!(
                status.success(),
                "scripts/services could not start PostgreSQL and NATS"
            );
        }
    });
}

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// How long [`TestEnv::stream_messages`] may take to read the whole stream.
const STREAM_READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

pub struct TestEnv {
    pub schema: String,
    pub pool: PgPool,
    pub store: Store,
    /// The store's data keys, under a master key of this test's own.
    pub keys: Arc<KeyStore>,
    /// That master key, for a second key store over the same keys (another "process").
    pub master: DataKey,
    /// The same key in base64, as `EDUPULSE_MASTER_KEY` gives it to a child process.
    pub master_base64: String,
    pub prefix: String,
    pub stream: String,
    /// The nats-server's URL, for a runtime (which opens a connection per role).
    pub nats_url: String,
    /// A connection of the test's own.
    pub nats: async_nats::Client,
    cleaned: bool,
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::with_nats(&nats_url()).await
    }

    /// An environment whose broker is the nats-server at `nats_url` (e.g. one a fault test
    /// starts and kills itself), or the servers of a cluster, comma-separated.
    pub async fn with_nats(nats_url: &str) -> Self {
        ensure_services();
        let id = Uuid::now_v7().simple().to_string();
        // As long as PostgreSQL allows (63 bytes), so every test also covers names that do
        // not fit inside a derived identifier such as the NOTIFY channel.
        let schema = format!("t_{id}_{}", "s".repeat(63 - 3 - id.len()));
        let base = PgConnectOptions::from_str(&database_url()).expect("DATABASE_URL");
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(base.clone())
            .await
            .expect("PostgreSQL is not reachable: run scripts/services");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(24)
            .connect_with(base.options([("search_path", schema.as_str())]))
            .await
            .unwrap();
        let prefix = format!("t{id}");
        let master_base64 = {
            use base64ct::Encoding as _;
            let mut bytes = [0u8; 32];
            std::io::Read::read_exact(
                &mut std::fs::File::open("/dev/urandom").unwrap(),
                &mut bytes,
            )
            .unwrap();
            base64ct::Base64::encode_string(&bytes)
        };
        let master = {
            use base64ct::Encoding as _;
            let bytes = base64ct::Base64::decode_vec(&master_base64).unwrap();
            DataKey::from_bytes(bytes.try_into().unwrap())
        };
        let keys = Arc::new(KeyStore::new(Arc::new(LocalKeyProvider::new(
            master.clone(),
        ))));
        let store = Store::new(pool.clone(), prefix.clone())
            .with_partitions(4)
            .with_keys(keys.clone());
        store.migrate().await.unwrap();
        // One server, or a cluster's, comma-separated.
        let servers: Vec<async_nats::ServerAddr> = nats_url
            .split(',')
            .map(|url| url.parse().expect("a NATS server URL"))
            .collect();
        let nats = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(servers)
            .await
            .expect("NATS is not reachable: run scripts/services");
        // With retry_on_initial_connect the client returns before the server's INFO arrives;
        // a flush waits for the round trip, so server_info() is real from here on.
        nats.flush()
            .await
            .expect("NATS is not reachable: run scripts/services");
        TestEnv {
            schema,
            pool,
            store,
            keys,
            master,
            master_base64,
            stream: format!("T{id}").to_uppercase(),
            prefix,
            nats_url: nats_url.to_owned(),
            nats,
            cleaned: false,
        }
    }

    /// A runtime over this environment's schema, stream and master key, as an application
    /// builds it.
    pub async fn runtime(&self) -> edupulse_events::Runtime {
        edupulse_events::Runtime::builder()
            .postgres(self.pool.clone())
            .nats(self.nats_url.as_str(), async_nats::ConnectOptions::new())
            .subject_prefix(self.prefix.clone())
            .stream(self.stream.clone())
            .partitions(self.store.partitions())
            .key_provider(Arc::new(LocalKeyProvider::new(self.master.clone())))
            .build()
            .await
            .unwrap()
    }

    pub fn stream_settings(&self) -> StreamSettings {
        StreamSettings::new(&self.stream, &self.prefix)
    }

    pub async fn publisher(&self) -> Publisher {
        Publisher::provision(self.nats.clone(), self.stream_settings())
            .await
            .unwrap()
    }

    /// Relays the whole outbox to this environment's stream with a relay of its own.
    pub async fn relay_everything(&self) {
        let mut relay = edupulse_events::relay::Relay::new(
            self.store.clone(),
            self.publisher().await,
            edupulse_events::relay::RelayConfig::default(),
        );
        self.drain(&mut relay).await;
    }

    /// Steps `relay` until the outbox is empty: deterministic, no timers.
    pub async fn drain(&self, relay: &mut edupulse_events::relay::Relay) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while self.count("outbox").await > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the relay left rows in the outbox"
            );
            relay.step().await.unwrap();
        }
    }

    /// Appends typed events to one aggregate in a transaction of their own.
    pub async fn append<T: DomainEvent>(&self, events: &[T]) -> Vec<i64> {
        let envelopes: Vec<Envelope> = events.iter().map(|e| Envelope::new(e).unwrap()).collect();
        self.store
            .append_committed(edupulse_events::store::ExpectedVersion::Any, &envelopes)
            .await
            .unwrap()
            .positions
    }

    /// Connection options that put this test's schema first on the search path.
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&database_url())
            .expect("DATABASE_URL")
            .options([("search_path", self.schema.as_str())])
    }

    /// The bytes of the key table's relation files: see [`key_table_files`].
    pub async fn key_table_files(&self) -> Vec<u8> {
        key_table_files(&self.pool).await
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Every event in the stream (the relays' fences left out), in stream order, read by a
    /// plain pull consumer.
    pub async fn stream_messages(&self) -> Vec<jetstream::Message> {
        let js = jetstream::new(self.nats.clone());
        let stream = js.get_stream(&self.stream).await.unwrap();
        let config = jetstream::consumer::pull::Config {
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ack_policy: jetstream::consumer::AckPolicy::None,
            filter_subject: format!("{}.>", self.prefix),
            // One replica in memory: no quorum to wait for on a cluster.
            num_replicas: 1,
            memory_storage: true,
            ..Default::default()
        };
        // A cluster that just lost a server may take a few request timeouts to elect leaders.
        let mut attempts = 0;
        let mut consumer = loop {
            attempts += 1;
            match stream.create_consumer(config.clone()).await {
                Ok(consumer) => break consumer,
                Err(err) if attempts < 6 => eprintln!("creating the reading consumer: {err}"),
                Err(err) => panic!("creating the reading consumer: {err}"),
            }
        };
        let total = consumer.info().await.unwrap().num_pending as usize;
        let mut out = Vec::with_capacity(total);
        // A stream that loses messages while read fails the test instead of hanging it.
        let read = tokio::time::timeout(STREAM_READ_DEADLINE, async {
            while out.len() < total {
                let mut batch = consumer
                    .fetch()
                    .max_messages(1000)
                    .messages()
                    .await
                    .unwrap();
                while let Some(message) = batch.next().await {
                    out.push(message.unwrap());
                }
            }
        })
        .await;
        assert!(
            read.is_ok(),
            "read {} of the stream's {total} messages in {STREAM_READ_DEADLINE:?}",
            out.len()
        );
        out
    }

    pub async fn cleanup(mut self) {
        let js = jetstream::new(self.nats.clone());
        let _ = js.delete_stream(&self.stream).await;
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .execute(&self.pool)
            .await
            .unwrap();
        self.pool.close().await;
        self.cleaned = true;
    }
}

impl Drop for TestEnv {
    /// A test that panicked before `cleanup` still removes its schema and stream: on a thread
    /// and runtime of its own, since this may run inside the test's runtime, with a lock
    /// timeout so a transaction the test left open cannot hang it.
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let (schema, stream, nats) = (self.schema.clone(), self.stream.clone(), self.nats.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let _ = jetstream::new(nats).delete_stream(&stream).await;
                let options = PgConnectOptions::from_str(&database_url())
                    .unwrap()
                    .options([("lock_timeout", "5s")]);
                if let Ok(pool) = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await
                {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .execute(&pool)
                        .await;
                    pool.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

pub fn header<'a>(message: &'a jetstream::Message, name: &str) -> &'a str {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str())
        .unwrap_or_else(|| panic!("header {name} missing"))
}

/// The stream holds `expected` events, each once, and every aggregate's sequences ascend from 1
/// without a gap.
pub fn assert_exactly_once_in_order(messages: &[jetstream::Message], expected: usize) {
    let ids: HashSet<&str> = messages.iter().map(|m| header(m, "Nats-Msg-Id")).collect();
    assert_eq!(ids.len(), expected, "distinct events in the stream");
    assert_eq!(
        messages.len(),
        expected,
        "messages in the stream (duplicates stored?)"
    );
    let mut last: HashMap<&str, u64> = HashMap::new();
    for m in messages {
        let aggregate = header(m, "ce-aggregateid");
        let sequence: u64 = header(m, "ce-sequence").parse().unwrap();
        let previous = last.insert(aggregate, sequence).unwrap_or(0);
        assert_eq!(sequence, previous + 1, "aggregate {aggregate} out of order");
    }
}

/// The bytes of the key table's relation files (every partition's main fork and TOAST) in
/// `pool`'s schema, read by the server after a CHECKPOINT: what is on disk, dead rows
/// included.
pub async fn key_table_files(pool: &PgPool) -> Vec<u8> {
    sqlx::query("CHECKPOINT").execute(pool).await.unwrap();
    let files: Vec<Vec<u8>> = sqlx::query_scalar(
        "WITH parts AS (SELECT inhrelid AS oid FROM pg_inherits \
                        WHERE inhparent = 'subject_keys'::regclass) \
         SELECT pg_read_binary_file(pg_relation_filepath(c.oid)) FROM pg_class c \
         WHERE (c.oid IN (SELECT oid FROM parts) \
            OR c.oid IN (SELECT reltoastrelid FROM pg_class \
                         WHERE oid IN (SELECT oid FROM parts))) \
           AND pg_relation_filepath(c.oid) IS NOT NULL",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    files.concat()
}

/// A database of the test's own, with a store (and keys) migrated into it. What keeps a
/// deleted row from being vacuumed away is counted per database: other tests' transactions
/// in the shared one cannot hold this one's back.
pub struct OwnDatabase {
    name: String,
    pub pool: PgPool,
    pub store: Store,
    pub keys: Arc<KeyStore>,
    pub master: DataKey,
}

impl OwnDatabase {
    pub async fn new() -> Self {
        ensure_services();
        let name = format!("t_{}", Uuid::now_v7().simple());
        let base = PgConnectOptions::from_str(&database_url()).expect("DATABASE_URL");
        let mut admin = sqlx::PgConnection::connect_with(&base).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(base.database(&name))
            .await
            .unwrap();
        let master = DataKey::generate();
        let keys = Arc::new(KeyStore::new(Arc::new(LocalKeyProvider::new(
            master.clone(),
        ))));
        let store = Store::new(pool.clone(), "t").with_keys(keys.clone());
        store.migrate().await.unwrap();
        OwnDatabase {
            name,
            pool,
            store,
            keys,
            master,
        }
    }

    pub async fn drop_database(self) {
        self.pool.close().await;
        let base = PgConnectOptions::from_str(&database_url()).expect("DATABASE_URL");
        let mut admin = sqlx::PgConnection::connect_with(&base).await.unwrap();
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}
