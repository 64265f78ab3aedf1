//! What an application's `main` builds: the registry checked, the schema migrated, the stream
//! provisioned, and a relay ready to run.

use std::future::Future;
use std::sync::Arc;

use sqlx::PgPool;
use thiserror::Error;

use crate::any_event::AnyEvent;
use crate::connect::Connector;
use crate::error::RegistryError;
use crate::message::MessageError;
use crate::privacy::{ErasureReceipt, KeyProvider, KeyStore, Scrub};
use crate::publish::{PublishError, Publisher, StreamSettings};
use crate::publish::{envelope_from_message, header_names};
use crate::registry::Registry;
use crate::relay::{Relay, RelayConfig};
use crate::store::{ErasureError, Store, StoreError};

/// Why the runtime could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The binary's event types are inconsistent.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Migrations or the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stream could not be provisioned.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A required part was not given to the builder.
    #[error("the runtime builder needs {0}")]
    Missing(&'static str),
    /// The schema given to [`RuntimeBuilder::schema`] cannot be used.
    #[error("schema: {0}")]
    Schema(#[from] crate::store::SchemaError),
    /// The erasure follower could not subscribe.
    #[error("cannot follow erasures: {0}")]
    Follow(#[from] async_nats::SubscribeError),
    /// The NATS server addresses given to [`RuntimeBuilder::nats`] do not parse.
    #[error("the NATS server addresses do not parse: {0}")]
    NatsServers(#[source] std::io::Error),
    /// A connection to NATS could not be opened.
    #[error("cannot connect to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
}

/// The store, the publisher and the registry of one application.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use edupulse_events::Runtime;
///
/// let pool = edupulse_events::sqlx::PgPool::connect("postgres://postgres@127.0.0.1/postgres").await?;
/// let runtime = Runtime::builder()
///     .postgres(pool)
///     .nats("127.0.0.1:4222", edupulse_events::async_nats::ConnectOptions::new())
///     .build()
///     .await?;
/// let relay = tokio::spawn(runtime.relay().run(async { tokio::signal::ctrl_c().await.ok(); }));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Runtime {
    store: Store,
    publisher: Publisher,
    nats: Connector,
    relay_config: RelayConfig,
    keys: Option<Arc<KeyStore>>,
}

/// Configures a [`Runtime`].
#[derive(Debug)]
pub struct RuntimeBuilder {
    pool: Option<PgPool>,
    schema: Option<String>,
    nats: Option<Result<Connector, std::io::Error>>,
    prefix: String,
    stream: String,
    partitions: u16,
    migrate: bool,
    relay_config: RelayConfig,
    key_provider: Option<Arc<dyn KeyProvider>>,
    /// Replicas, max age and duplicate window of the stream (its name and subjects come from
    /// `stream` and `prefix`).
    stream_settings: StreamSettings,
}

impl Runtime {
    /// Starts configuring: prefix `edupulse`, stream `EDUPULSE`, migrations on.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            pool: None,
            schema: None,
            nats: None,
            prefix: "edupulse".to_owned(),
            stream: "EDUPULSE".to_owned(),
            partitions: Store::DEFAULT_PARTITIONS,
            migrate: true,
            relay_config: RelayConfig::default(),
            key_provider: None,
            stream_settings: StreamSettings::new("", ""),
        }
    }

    /// The data keys sealing `#[event(pii)]` fields, if a key provider was given.
    pub fn keys(&self) -> Option<&Arc<KeyStore>> {
        self.keys.as_ref()
    }

    /// Re-wraps every data key with the key provider's current master key: see
    /// [`KeyStore::rotate_master_key`].
    pub async fn rotate_master_key(&self) -> Result<u64, ErasureError> {
        let keys = self.keys.as_ref().ok_or_else(|| StoreError::NoKeyStore {
            needed_for: "rotating the master key".to_owned(),
        })?;
        Ok(keys.rotate_master_key(self.store.pool()).await?)
    }

    /// Erases a data subject everywhere: see [`Store::erase_subject`].
    pub async fn erase_subject(
        &self,
        subject: crate::Uuid,
        reason: &str,
        scrub: Scrub,
    ) -> Result<ErasureReceipt, ErasureError> {
        self.store.erase_subject(subject, reason, scrub).await
    }

    /// Decodes a message read from the stream: envelope from its headers, PII opened (or
    /// erased), payload decoded through the registry and upcast to the newest version.
    #[tracing::instrument(name = "edupulse.decode", level = "trace", skip_all, fields(subject = %message.subject))]
    pub async fn decode_message(
        &self,
        message: &async_nats::Message,
    ) -> Result<(crate::Envelope, AnyEvent), MessageError> {
        let envelope = envelope_from_message(message.headers.as_ref(), &message.payload)?;
        Self::check_headers(message, &envelope)?;
        let mut envelopes = [envelope];
        self.store.unseal(&mut envelopes).await?;
        let [mut envelope] = envelopes;
        let event =
            Registry::global().decode(&envelope.event_type, envelope.version, &envelope.payload)?;
        if event.aggregate_id() != envelope.aggregate_id {
            return Err(MessageError::Inconsistent {
                header: header_names::AGGREGATE_ID,
                reason: "names another aggregate than the payload's aggregate id",
            });
        }
        envelope.data_subjects = event.data_subjects();
        Ok((envelope, event))
    }

    /// The headers a consumer relies on agree with each other, with the message's subject and
    /// with the type's descriptor, as the relay publishes them; a message made up by someone
    /// else with a plausible body is refused rather than applied.
    fn check_headers(
        message: &async_nats::Message,
        envelope: &crate::Envelope,
    ) -> Result<(), MessageError> {
        let inconsistent = |header, reason| Err(MessageError::Inconsistent { header, reason });
        if envelope.sequence == 0 {
            return inconsistent(header_names::SEQUENCE, "is 0; stored events start at 1");
        }
        let headers = message.headers.as_ref();
        let subject_header = headers.and_then(|h| h.get(header_names::SUBJECT));
        if subject_header.map(|v| v.as_str().parse::<crate::Uuid>().ok())
            != Some(Some(envelope.aggregate_id))
        {
            return inconsistent(header_names::AGGREGATE_ID, "differs from `ce-subject`");
        }
        let Some(descriptor) = Registry::global().get(&envelope.event_type, envelope.version)
        else {
            // Decoding reports the unknown type with the list of known ones.
            return Ok(());
        };
        if descriptor.aggregate() != envelope.aggregate_type {
            return inconsistent(
                header_names::AGGREGATE_TYPE,
                "differs from the event type's aggregate",
            );
        }
        // The type's subject below any prefix: a subscriber may read a stream whose prefix is
        // not its own runtime's.
        let subject = message.subject.as_str();
        let on_its_subject = subject
            .strip_suffix(descriptor.subject())
            .is_some_and(|prefix| prefix.ends_with('.'));
        if !on_its_subject {
            return inconsistent(
                header_names::TYPE,
                "does not match the subject the message was published on",
            );
        }
        Ok(())
    }

    /// The event store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The JetStream publisher: the relay's connection, never sent anything from the subject
    /// space.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// A new connection to NATS, shared with no other role: what reads the subject space
    /// reads it on a connection of its own.
    pub(crate) async fn connect_nats(
        &self,
    ) -> Result<async_nats::Client, async_nats::ConnectError> {
        self.nats.connect().await
    }

    /// The registry of every event type in the binary (validated at build).
    pub fn registry(&self) -> &'static Registry {
        Registry::global()
    }

    /// A relay over this runtime's outbox; run it with [`Relay::run`].
    pub fn relay(&self) -> Relay {
        Relay::new(
            self.store.clone(),
            self.publisher.clone(),
            self.relay_config.clone(),
        )
    }

    /// Spawns a relay on the current tokio runtime until `shutdown` completes.
    pub fn spawn_relay(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<(), StoreError>> {
        tokio::spawn(self.relay().run(shutdown))
    }
}

impl RuntimeBuilder {
    /// The PostgreSQL pool (its `search_path` chooses the schema).
    pub fn postgres(mut self, pool: PgPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The NATS servers, and the options of every connection the runtime opens: one for the
    /// relay, one for the erasure follower, one for each subscriber. A frame async-nats cannot
    /// parse drops the connection it arrives on, and anyone who may publish under the prefix
    /// can store one in the stream; apart, such a frame costs only the reader it reaches,
    /// never the relay.
    pub fn nats(
        mut self,
        servers: impl async_nats::ToServerAddrs,
        options: async_nats::ConnectOptions,
    ) -> Self {
        self.nats = Some(
            servers
                .to_server_addrs()
                .map(|servers| Connector::new(servers.collect(), options)),
        );
        self
    }

    /// One NATS client for every role, instead of [`RuntimeBuilder::nats`]: for a client the
    /// application must build itself (its own connection code, an account that limits
    /// connections). The roles then share its fate: a frame async-nats cannot parse, reaching
    /// a subscriber, drops the connection the relay publishes on too.
    pub fn nats_client(mut self, client: async_nats::Client) -> Self {
        self.nats = Some(Ok(Connector::Shared(client)));
        self
    }

    /// The PostgreSQL schema the store lives in (its tables, keys and outbox; your own
    /// tables too, if you take your transactions from `runtime.store().pool()`): checked as
    /// one identifier and quoted, and created if missing while migrations are on (with
    /// [`migrate(false)`](Self::migrate) a missing schema is an error). Without it the store
    /// uses the pool's `search_path` as it is (usually `public`).
    ///
    /// The runtime then connects through a pool of its own, made like the one given to
    /// [`postgres`](Self::postgres), whose connections look only in this schema: tables and
    /// extension types in `public` need qualifying there. Close the pool you gave if you
    /// kept no other use for it, or both stay open. One service, one schema, one
    /// [`subject_prefix`](Self::subject_prefix) and one [`stream`](Self::stream).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// The subject prefix: events go to `{prefix}.{subject}` (default `edupulse`).
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The JetStream stream name (default `EDUPULSE`); it holds every subject under the
    /// prefix.
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self
    }

    /// The stream's replicas, max age and duplicate window, as provisioned when the stream
    /// does not exist yet (an existing stream with other replicas or max age is reported,
    /// one with a shorter duplicate window refused). Its name and prefix here are ignored:
    /// [`stream`](Self::stream) and [`subject_prefix`](Self::subject_prefix) set those.
    ///
    /// ```
    /// use std::time::Duration;
    /// use edupulse_events::Runtime;
    /// use edupulse_events::publish::StreamSettings;
    ///
    /// let builder = Runtime::builder().stream_settings(
    ///     StreamSettings::new("", "")
    ///         .with_replicas(3)
    ///         .with_duplicate_window(Duration::from_secs(600)),
    /// );
    /// # let _ = builder;
    /// ```
    pub fn stream_settings(mut self, settings: StreamSettings) -> Self {
        self.stream_settings = settings;
        self
    }

    /// Outbox partitions (relay leaders); fixed for the life of a store.
    pub fn partitions(mut self, partitions: u16) -> Self {
        self.partitions = partitions;
        self
    }

    /// Whether `build` runs the embedded migrations (default: yes).
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Relay pacing.
    pub fn relay_config(mut self, config: RelayConfig) -> Self {
        self.relay_config = config;
        self
    }

    /// Who wraps the data keys of `#[event(pii)]` fields (e.g.
    /// [`LocalKeyProvider`](crate::privacy::LocalKeyProvider)). Required when any registered
    /// event has such fields: the runtime never stores personal data in clear.
    pub fn key_provider(mut self, provider: Arc<dyn KeyProvider>) -> Self {
        self.key_provider = Some(provider);
        self
    }

    /// Validates the registry, migrates, provisions the stream.
    pub async fn build(self) -> Result<Runtime, RuntimeError> {
        Registry::global().validate()?;
        // Before anything subscribes under it (the erasure follower) or provisions with it.
        crate::publish::validate_prefix(&self.prefix)
            .map_err(|err| RuntimeError::Publish(err.into()))?;
        let mut pool = self
            .pool
            .ok_or(RuntimeError::Missing("a PostgreSQL pool"))?;
        let nats = self
            .nats
            .ok_or(RuntimeError::Missing(
                "the NATS servers (nats): a service that only appends builds a `store::Store` \
                 instead, which needs no NATS",
            ))?
            .map_err(RuntimeError::NatsServers)?;
        if let Some(schema) = &self.schema {
            use crate::store::schema_name::{Missing, pool_in_schema_with};
            let missing = if self.migrate {
                Missing::Create
            } else {
                Missing::Refuse
            };
            pool = pool_in_schema_with(&pool, schema, missing).await?;
        }
        let mut store = Store::new(pool, self.prefix.clone()).with_partitions(self.partitions);
        let has_pii = Registry::global()
            .descriptors()
            .any(|d| !d.pii_fields().is_empty());
        let keys = match self.key_provider {
            Some(provider) => Some(Arc::new(KeyStore::new(provider))),
            None if has_pii => {
                return Err(RuntimeError::Missing(
                    "a key provider (key_provider): registered events have #[event(pii)] fields",
                ));
            }
            None => None,
        };
        if let Some(keys) = &keys {
            store = store.with_keys(keys.clone());
            keys.follow_erasures(&nats.connect().await?, &self.prefix)
                .await?;
        }
        if self.migrate {
            store.migrate().await?;
        } else {
            store.check_partitions().await?;
        }
        let settings = StreamSettings {
            name: self.stream,
            prefix: self.prefix,
            ..self.stream_settings
        };
        let publisher = Publisher::provision(nats.connect().await?, settings).await?;
        Ok(Runtime {
            store,
            publisher,
            nats,
            relay_config: self.relay_config,
            keys,
        })
    }
}
